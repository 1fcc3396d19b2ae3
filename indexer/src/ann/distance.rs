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
            assert!((f64::from(got) - want).abs() < 1e-4 * (1.0 + want.abs()), "n {n}: {got} vs {want}");
        }
    }
}
