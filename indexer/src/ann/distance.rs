//! The dot product every vector comparison uses, vectorised for the CPU it runs on (AVX2+FMA or
//! AVX-512 where present, chosen once at run time through `pulp`, the dispatcher candle's GEMM
//! already uses). Embeddings are L2-normalised, so the dot product is the cosine similarity.

use std::sync::OnceLock;

use pulp::{Arch, Simd, WithSimd};

struct Dot<'a>(&'a [f32], &'a [f32]);

impl WithSimd for Dot<'_> {
    type Output = f32;

    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) -> f32 {
        let (a, a_tail) = S::as_simd_f32s(self.0);
        let (b, b_tail) = S::as_simd_f32s(self.1);
        // Four accumulators hide the FMA latency.
        let mut acc = [simd.splat_f32s(0.0); 4];
        let (a4, a_rest) = a.split_at(a.len() / 4 * 4);
        let (b4, b_rest) = b.split_at(a4.len());
        for (x, y) in a4.chunks_exact(4).zip(b4.chunks_exact(4)) {
            for i in 0..4 {
                acc[i] = simd.mul_add_f32s(x[i], y[i], acc[i]);
            }
        }
        for (x, y) in a_rest.iter().zip(b_rest) {
            acc[0] = simd.mul_add_f32s(*x, *y, acc[0]);
        }
        let sum = simd.add_f32s(simd.add_f32s(acc[0], acc[1]), simd.add_f32s(acc[2], acc[3]));
        let tail: f32 = a_tail.iter().zip(b_tail).map(|(x, y)| x * y).sum();
        simd.reduce_sum_f32s(sum) + tail
    }
}

/// Dot products of one query with many rows, under one dispatch.
struct DotRows<'a> {
    q: &'a [f32],
    vectors: &'a [f32],
    rows: &'a [u32],
    out: &'a mut Vec<f32>,
}

impl WithSimd for DotRows<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) {
        let d = self.q.len();
        self.out.clear();
        // Ask for every row's first cache lines before computing any: the walk is bound by memory
        // latency, and the rows are scattered.
        for &r in self.rows {
            prefetch(&self.vectors[r as usize * d..(r as usize + 1) * d]);
        }
        for &r in self.rows {
            let v = &self.vectors[r as usize * d..(r as usize + 1) * d];
            self.out.push(Dot(self.q, v).with_simd(simd));
        }
    }
}

/// Hints the CPU to fetch the first two cache lines of `v`; the hardware prefetcher streams the
/// rest.
#[inline(always)]
#[allow(unsafe_code)]
pub(super) fn prefetch<T>(v: &[T]) {
    #[cfg(target_arch = "x86_64")]
    for line in v.chunks((64 / std::mem::size_of::<T>().max(1)).max(1)).take(2) {
        // SAFETY: a prefetch is only a hint: it reads nothing architecturally and never faults,
        // and the pointer comes from a live slice anyway. SSE is part of the x86_64 baseline.
        unsafe {
            core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(line.as_ptr().cast());
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = v;
}

fn arch() -> Arch {
    static ARCH: OnceLock<Arch> = OnceLock::new();
    *ARCH.get_or_init(Arch::new)
}

/// `a . b` (slices of equal length).
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    debug_assert_eq!(a.len(), b.len());
    arch().dispatch(Dot(a, b))
}

/// `q . row` for each of `rows` of the row-major `vectors` (rows of `q.len()`), into `out`: one
/// dispatch for the batch, the graph walk's inner loop.
pub fn dot_rows(q: &[f32], vectors: &[f32], rows: &[u32], out: &mut Vec<f32>) {
    arch().dispatch(DotRows {
        q,
        vectors,
        rows,
        out,
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_plain_sum_at_every_length() {
        for n in [0, 1, 7, 8, 15, 16, 17, 63, 64, 65, 127, 512, 777] {
            let a: Vec<f32> = (0..n).map(|i| ((i * 37 % 101) as f32 - 50.0) / 50.0).collect();
            let b: Vec<f32> = (0..n).map(|i| ((i * 53 % 89) as f32 - 44.0) / 44.0).collect();
            let want: f64 = a.iter().zip(&b).map(|(x, y)| f64::from(*x) * f64::from(*y)).sum();
            let got = dot(&a, &b);
            assert!(
                (f64::from(got) - want).abs() < 1e-4 * (1.0 + want.abs()),
                "n {n}: {got} vs {want}"
            );
            let mut out = Vec::new();
            let rows = [a.clone(), b.clone()].concat();
            dot_rows(&a, &rows, &[1, 0, 1], &mut out);
            assert_eq!(out, vec![got, dot(&a, &a), got]);
        }
    }
}
