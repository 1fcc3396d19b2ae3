//! The approximate nearest-neighbour graph over the embeddings: hnsw_rs with the dot-product
//! distance (embeddings are L2-normalised, so 1 - cosine), built with the derived structures,
//! dumped to a folder and reloaded without rebuilding. Ids in the graph are row numbers.

use std::path::Path;

use hnsw_rs::api::AnnT;
use hnsw_rs::prelude::{Distance, FilterT, Hnsw, HnswIo};

use crate::error::{Error, Result};

/// Graph parameters (the shared ANN notes measured M=16, efConstruction=200).
const MAX_NB_CONNECTION: usize = 16;
const EF_CONSTRUCTION: usize = 200;
const MAX_LAYER: usize = 16;
const BASENAME: &str = "hnsw";

/// `1 - a.b`, clamped at 0: the distance of unit vectors. hnsw_rs's own `DistDot` asserts the
/// value is not negative, and rounding makes `a.a` exceed 1 for many unit vectors: a repeated
/// vector (a duplicate scene, blank patches) panicked the build. Same name as hnsw_rs's, so
/// dumps made with either reload.
#[derive(Debug, Default, Clone, Copy)]
pub struct DistDot;

impl Distance<f32> for DistDot {
    fn eval(&self, a: &[f32], b: &[f32]) -> f32 {
        (1.0 - dot(a, b)).max(0.0)
    }
}

/// Dot product in 8 independent lanes, so the compiler vectorises it.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0.0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for ((l, p), q) in lanes.iter_mut().zip(x).zip(y) {
            *l += p * q;
        }
    }
    lanes.iter().sum::<f32>() + tail
}

/// A loaded graph.
pub struct Ann {
    hnsw: Hnsw<'static, f32, DistDot>,
}

impl std::fmt::Debug for Ann {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ann")
            .field("points", &self.hnsw.get_nb_point())
            .finish()
    }
}

/// Builds the graph of `vectors` (row-major, `dim` each) and dumps it into the folder `dir`.
pub fn build(dir: &Path, vectors: &[f32], dim: usize) -> Result<()> {
    let n = vectors.len() / dim;
    let hnsw = Hnsw::<f32, DistDot>::new(MAX_NB_CONNECTION, n.max(1), MAX_LAYER, EF_CONSTRUCTION, DistDot);
    let data: Vec<(&[f32], usize)> = vectors
        .chunks_exact(dim)
        .enumerate()
        .map(|(i, v)| (v, i))
        .collect();
    hnsw.parallel_insert_slice(&data);
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    hnsw.file_dump(dir, BASENAME)
        .map_err(|e| Error::format(dir, format!("HNSW dump failed: {e}")))?;
    Ok(())
}

impl Ann {
    /// Loads a dumped graph. The loader is kept alive for the process (hnsw_rs ties the graph's
    /// lifetime to it); an index is loaded once per process.
    pub fn load(dir: &Path) -> Result<Self> {
        let io: &'static mut HnswIo = Box::leak(Box::new(HnswIo::new(dir, BASENAME)));
        let hnsw = io
            .load_hnsw::<f32, DistDot>()
            .map_err(|e| Error::format(dir, format!("cannot load the HNSW graph: {e}")))?;
        Ok(Ann { hnsw })
    }

    /// Points in the graph.
    pub fn len(&self) -> usize {
        self.hnsw.get_nb_point()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The `k` nearest rows to `query` with their cosine similarity, best first; with a filter,
    /// only rows it accepts (hnsw_rs's filtered search).
    pub fn search(
        &self,
        query: &[f32],
        k: usize,
        ef: usize,
        filter: Option<&dyn FilterT>,
    ) -> Vec<(u32, f32)> {
        self.hnsw
            .search_filter(query, k, ef.max(k), filter)
            .into_iter()
            .map(|n| (n.d_id as u32, 1.0 - n.distance))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_vectors_build_and_reload() {
        let dim = 16;
        let mut v = Vec::new();
        for i in 0..20 {
            let mut x: Vec<f32> = (0..dim).map(|j| ((i * 7 + j * 3) % 11) as f32 + 0.5).collect();
            let n = x.iter().map(|a| a * a).sum::<f32>().sqrt();
            x.iter_mut().for_each(|a| *a /= n);
            for _ in 0..10 {
                v.extend_from_slice(&x);
            }
        }
        let dir = tempfile::tempdir().unwrap();
        build(dir.path(), &v, dim).unwrap();
        let ann = Ann::load(dir.path()).unwrap();
        assert_eq!(ann.len(), 200);
        let hits = ann.search(&v[..dim], 10, 64, None);
        assert!(hits.iter().all(|(_, s)| *s > 0.999), "{hits:?}");
        assert!((dot(&v[..dim], &v[..dim]) - 1.0).abs() < 1e-5);
    }
}
