//! Pillow's bicubic resampling, ported pass for pass so that resized pixels equal
//! `PIL.Image.resize(size, Image.BICUBIC)` byte for byte.
//!
//! Reference: Pillow `src/libImaging/Resample.c` (`precompute_coeffs`, `normalize_coeffs_8bpc`,
//! `ImagingResampleHorizontal_8bpc`, `ImagingResampleVertical_8bpc`, `ImagingResampleInner`):
//! separable convolution with the a = -0.5 cubic kernel widened by the scale when shrinking,
//! 22-bit fixed-point coefficients, the horizontal pass first, each pass clamped to u8.
//! General-purpose resizers (`image`, `fast_image_resize`) differ from Pillow by up to 22 levels
//! on noise, which is why this port exists (see `../shared/notes/clip-on-candle.md`).

use image::RgbImage;

const PRECISION_BITS: u32 = 32 - 8 - 2;
const SUPPORT: f64 = 2.0;

fn bicubic(x: f64) -> f64 {
    const A: f64 = -0.5;
    let x = x.abs();
    if x < 1.0 {
        ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        (((x - 5.0) * x + 8.0) * x - 4.0) * A
    } else {
        0.0
    }
}

/// Per output index: the first input index, the number of taps, and fixed-point weights.
struct Coefficients {
    ksize: usize,
    bounds: Vec<(usize, usize)>,
    weights: Vec<i32>,
}

fn precompute(in_size: usize, out_size: usize) -> Coefficients {
    let scale = in_size as f64 / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = SUPPORT * filterscale;
    let ksize = support.ceil() as usize * 2 + 1;
    let mut bounds = Vec::with_capacity(out_size);
    let mut weights = vec![0i32; out_size * ksize];
    let mut k = vec![0f64; ksize];
    for xx in 0..out_size {
        let center = (xx as f64 + 0.5) * scale;
        let ss = 1.0 / filterscale;
        // C's (int) cast truncates towards zero.
        let xmin = ((center - support + 0.5) as i64).max(0) as usize;
        let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize - xmin;
        let mut ww = 0.0;
        for (x, kx) in k.iter_mut().enumerate().take(xmax) {
            let w = bicubic((x as f64 + xmin as f64 - center + 0.5) * ss);
            *kx = w;
            ww += w;
        }
        for (x, &kx) in k.iter().enumerate().take(xmax) {
            let w = if ww != 0.0 { kx / ww } else { kx };
            let fixed = w * f64::from(1u32 << PRECISION_BITS);
            weights[xx * ksize + x] = if w < 0.0 {
                (-0.5 + fixed) as i32
            } else {
                (0.5 + fixed) as i32
            };
        }
        bounds.push((xmin, xmax));
    }
    Coefficients {
        ksize,
        bounds,
        weights,
    }
}

fn clip8(v: i64) -> u8 {
    (v >> PRECISION_BITS).clamp(0, 255) as u8
}

/// Resizes like `PIL.Image.resize((width, height), Image.BICUBIC)`.
pub fn resize_bicubic(img: &RgbImage, width: u32, height: u32) -> RgbImage {
    let (in_w, in_h) = (img.width() as usize, img.height() as usize);
    let (out_w, out_h) = (width as usize, height as usize);
    if (in_w, in_h) == (out_w, out_h) {
        return img.clone();
    }
    let horiz = precompute(in_w, out_w);
    let mut vert = precompute(in_h, out_h);
    let half = 1i64 << (PRECISION_BITS - 1);

    // The horizontal pass only computes the rows the vertical pass will read.
    let (mut src, mut src_w, mut src_h) = (img.as_raw().clone(), in_w, in_h);
    if out_w != in_w {
        let first = vert.bounds[0].0;
        let last = vert.bounds[out_h - 1].0 + vert.bounds[out_h - 1].1;
        for b in &mut vert.bounds {
            b.0 -= first;
        }
        let rows = last - first;
        let mut tmp = vec![0u8; rows * out_w * 3];
        for y in 0..rows {
            let row = &src[(y + first) * in_w * 3..(y + first + 1) * in_w * 3];
            for (xx, &(xmin, xmax)) in horiz.bounds.iter().enumerate() {
                let k = &horiz.weights[xx * horiz.ksize..xx * horiz.ksize + xmax];
                for c in 0..3 {
                    let mut ss = half;
                    for (x, &w) in k.iter().enumerate() {
                        ss += i64::from(row[(x + xmin) * 3 + c]) * i64::from(w);
                    }
                    tmp[(y * out_w + xx) * 3 + c] = clip8(ss);
                }
            }
        }
        (src, src_w, src_h) = (tmp, out_w, rows);
    }
    if out_h != in_h {
        let mut out = vec![0u8; out_h * src_w * 3];
        for (yy, &(ymin, ymax)) in vert.bounds.iter().enumerate() {
            let k = &vert.weights[yy * vert.ksize..yy * vert.ksize + ymax];
            for xx in 0..src_w * 3 {
                let mut ss = half;
                for (y, &w) in k.iter().enumerate() {
                    ss += i64::from(src[(y + ymin) * src_w * 3 + xx]) * i64::from(w);
                }
                out[yy * src_w * 3 + xx] = clip8(ss);
            }
        }
        (src, src_h) = (out, out_h);
    }
    RgbImage::from_raw(src_w as u32, src_h as u32, src).expect("buffer size matches")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_size_is_a_copy() {
        let img = RgbImage::from_fn(7, 5, |x, y| image::Rgb([x as u8, y as u8, 3]));
        assert_eq!(resize_bicubic(&img, 7, 5), img);
    }

    #[test]
    fn constant_image_stays_constant() {
        let img = RgbImage::from_pixel(31, 17, image::Rgb([200, 10, 99]));
        for (w, h) in [(10, 10), (64, 40), (31, 8), (5, 17)] {
            let out = resize_bicubic(&img, w, h);
            assert_eq!(out.dimensions(), (w, h));
            assert!(out.pixels().all(|p| p.0 == [200, 10, 99]));
        }
    }

    #[test]
    fn kernel_weights_sum_to_one() {
        for (i, o) in [(256, 224), (100, 224), (2048, 224), (3, 1)] {
            let c = precompute(i, o);
            for (xx, &(_, n)) in c.bounds.iter().enumerate() {
                let s: i64 = c.weights[xx * c.ksize..xx * c.ksize + n]
                    .iter()
                    .map(|&w| i64::from(w))
                    .sum();
                assert!(
                    (s - (1 << PRECISION_BITS)).abs() <= n as i64,
                    "{i}->{o} at {xx}: {s}"
                );
            }
        }
    }
}
