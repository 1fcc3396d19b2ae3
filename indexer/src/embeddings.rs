//! The opened index's embedding matrix (row-major `f32`, `dim` per row) in a page-aligned
//! anonymous mapping that asks the kernel for transparent huge pages (`MADV_HUGEPAGE`, Linux).
//!
//! Why (`nadir bench query` at 1M rows of 512-d, 2 GB):
//! - A graph walk reads a few hundred rows scattered over the whole matrix, so with 4 KiB pages
//!   nearly every row read also misses the TLB; with 2 MiB pages the page walk mostly hits the
//!   cache. Graph QPS +25 % against a `Vec<f32>`.
//! - Alignment: a large `Vec<f32>` starts 16 bytes into its page (glibc's chunk header), so every
//!   row straddles one cache line more and half the SIMD loads split a line. The same `Vec` with
//!   huge pages (`madvise` on its interior) was still 10 % slower than this page-aligned mapping,
//!   exact scans 15 % slower.
//!
//! Where the kernel gives no huge pages (other systems, `never` in
//! `/sys/kernel/mm/transparent_hugepage/enabled`) this is plain, still aligned, anonymous memory.
//! The graph's links (7 % of the bytes) stay in ordinary memory: huge pages there measured within
//! the noise (0-4 %).

use std::ops::{Deref, DerefMut};

use memmap2::MmapMut;

/// A zero-initialised, fixed-length `f32` buffer; derefs to `[f32]`.
#[derive(Default)]
pub struct Embeddings {
    /// `None` when empty (a zero-length mapping is an error).
    map: Option<MmapMut>,
    len: usize,
}

impl std::fmt::Debug for Embeddings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Embeddings").field("len", &self.len).finish()
    }
}

impl Embeddings {
    /// `len` zeros.
    pub fn zeroed(len: usize) -> std::io::Result<Self> {
        if len == 0 {
            return Ok(Embeddings::default());
        }
        let map = MmapMut::map_anon(len * size_of::<f32>())?;
        #[cfg(target_os = "linux")]
        if let Err(e) = map.advise(memmap2::Advice::HugePage) {
            tracing::debug!(error = %e, "no transparent huge pages for the embeddings");
        }
        Ok(Embeddings { map: Some(map), len })
    }

    /// A copy of `v`.
    pub fn from_slice(v: &[f32]) -> std::io::Result<Self> {
        let mut e = Self::zeroed(v.len())?;
        e.copy_from_slice(v);
        Ok(e)
    }
}

impl Deref for Embeddings {
    type Target = [f32];

    fn deref(&self) -> &[f32] {
        // A mapping is page-aligned and `len * 4` bytes long, so the cast cannot fail.
        self.map
            .as_ref()
            .map_or(&[], |m| bytemuck::cast_slice(&m[..self.len * 4]))
    }
}

impl DerefMut for Embeddings {
    fn deref_mut(&mut self) -> &mut [f32] {
        let len = self.len;
        self.map
            .as_mut()
            .map_or(&mut [], |m| bytemuck::cast_slice_mut(&mut m[..len * 4]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_what_it_was_given() {
        assert!(Embeddings::zeroed(0).unwrap().is_empty());
        let v: Vec<f32> = (0..10_000).map(|i| i as f32 * 0.5).collect();
        let mut e = Embeddings::from_slice(&v).unwrap();
        assert_eq!(&e[..], &v[..]);
        e[3] = -1.0;
        assert_eq!(e[3], -1.0);
        assert!(Embeddings::zeroed(7).unwrap().iter().all(|&x| x == 0.0));
    }
}
