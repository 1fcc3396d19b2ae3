//! The frozen encoder's maps of one whole scene, computed once per session: the image is encoded
//! in overlapping tiles (so that memory stays bounded for large scenes) and each tile's core is
//! stitched into one map per stride; every channel is then standardised over the scene.
//!
//! The head reads them through two operations that agree exactly: [`FeatureGrid::sample`], the
//! feature vector of one stride-4 cell (each map bilinearly upsampled to stride 4), and
//! [`FeatureGrid::project`], `W · features + b` at every stride-4 cell.

use image::RgbImage;

use crate::encoder::FrozenEncoder;
use crate::error::{Error, Result};
use crate::model::Segmenter;

/// The stride of the grid the head works on (the finest map's).
pub const CELL: usize = 4;
/// Side of a tile's core, and the margin encoded around it (multiples of 32).
const TILE: usize = 512;
const MARGIN: usize = 64;

/// What each standardised map is multiplied by (strides 4, 8, 16, 32): under one L2 penalty, a
/// map weighed less is used less. Measured on the interactive benchmark (Dubai, 2 images, 10
/// clicks): all 1 gave mean IoU 0.354 at 10 clicks, (1, 1, 0.5, 0.1) 0.526; with few clicks the
/// deep, coarse maps pull masks into blobs. A cell's mean colour and texture as a fifth map
/// brought nothing (0.495 to 0.503) and was left out.
const LEVEL_SCALE: [f32; 4] = [1.0, 1.0, 0.5, 0.1];

/// One stitched map: `[channels, h, w]`, row-major.
#[derive(Debug, Clone)]
pub(crate) struct Level {
    pub stride: usize,
    pub channels: usize,
    pub h: usize,
    pub w: usize,
    pub data: Vec<f32>,
}

/// All maps of a scene, standardised, plus optional extra channels at stride 4 (a model's prior
/// log-odds), and the stride-4 grid size.
#[derive(Debug, Clone)]
pub struct FeatureGrid {
    pub(crate) levels: Vec<Level>,
    /// Grid cells across and down (ceil(width / 4), ceil(height / 4)).
    pub cols: usize,
    pub rows: usize,
}

impl FeatureGrid {
    /// Encodes `image` with `encoder` (EfficientNet maps at strides 4..32), tile by tile; with a
    /// `prior` model (whose encoder `encoder` must be), its per-class log-odds are appended as
    /// one more level at stride 4.
    pub fn compute(encoder: &FrozenEncoder, image: &RgbImage, prior: Option<&Segmenter>) -> Result<Self> {
        if encoder.strides().first() != Some(&CELL) {
            return Err(Error::Invalid(
                "interactive segmentation needs an encoder with a stride-4 map (EfficientNet-Lite0)".into(),
            ));
        }
        let (w, h) = (image.width() as usize, image.height() as usize);
        let (pw, ph) = (w.div_ceil(32) * 32, h.div_ceil(32) * 32);
        let mut levels: Vec<Level> = encoder
            .strides()
            .iter()
            .zip(encoder.channels())
            .map(|(&s, &c)| Level {
                stride: s,
                channels: c,
                h: ph / s,
                w: pw / s,
                data: vec![0.0; c * (ph / s) * (pw / s)],
            })
            .collect();
        let mut prior_level = prior.map(|m| {
            let k = m.config().num_classes();
            Level {
                stride: CELL,
                channels: k,
                h: ph / CELL,
                w: pw / CELL,
                data: vec![0.0; k * (ph / CELL) * (pw / CELL)],
            }
        });
        for ty in (0..ph).step_by(TILE) {
            for tx in (0..pw).step_by(TILE) {
                let (core_w, core_h) = (TILE.min(pw - tx), TILE.min(ph - ty));
                let (x0, y0) = (tx.saturating_sub(MARGIN), ty.saturating_sub(MARGIN));
                let (x1, y1) = ((tx + core_w + MARGIN).min(pw), (ty + core_h + MARGIN).min(ph));
                let tile = crop_clamped(image, x0, y0, x1 - x0, y1 - y0);
                let mut maps = encoder.features(std::slice::from_ref(&tile))?;
                let mut targets: Vec<&mut Level> = levels.iter_mut().collect();
                if let (Some(model), Some(level)) = (prior, prior_level.as_mut()) {
                    maps.push(model.coarse_logits(&maps)?);
                    targets.push(level);
                }
                for (level, map) in targets.into_iter().zip(&maps) {
                    let s = level.stride;
                    let (_, c, mh, mw) = map.dims4()?;
                    let v: Vec<f32> = map.flatten_all()?.to_vec1()?;
                    let (ox, oy) = ((tx - x0) / s, (ty - y0) / s);
                    let (cw, ch) = (core_w / s, core_h / s);
                    for ci in 0..c {
                        for r in 0..ch {
                            let src = ci * mh * mw + (oy + r) * mw + ox;
                            let dst = ci * level.h * level.w + (ty / s + r) * level.w + tx / s;
                            level.data[dst..dst + cw].copy_from_slice(&v[src..src + cw]);
                        }
                    }
                }
            }
        }
        for (level, scale) in levels.iter_mut().zip(LEVEL_SCALE) {
            standardise(level);
            level.data.iter_mut().for_each(|x| *x *= scale);
        }
        if let Some(mut level) = prior_level {
            log_odds(&mut level);
            levels.push(level);
        }
        Ok(Self {
            levels,
            cols: w.div_ceil(CELL),
            rows: h.div_ceil(CELL),
        })
    }

    /// A grid with no maps over an image of `width` x `height` px (sessions whose masks come from
    /// another model).
    pub fn empty(width: usize, height: usize) -> Self {
        Self {
            levels: Vec::new(),
            cols: width.div_ceil(CELL),
            rows: height.div_ceil(CELL),
        }
    }

    /// Rows and columns of the padded stride-4 grid [`Self::project`] fills.
    pub fn padded(&self) -> (usize, usize) {
        self.levels.first().map_or((self.rows, self.cols), |l| (l.h, l.w))
    }

    /// Length of a cell's feature vector.
    pub fn dim(&self) -> usize {
        self.levels.iter().map(|l| l.channels).sum()
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.levels.iter().map(|l| l.data.len() * 4).sum()
    }

    /// The feature vector of stride-4 cell (`col`, `row`), appended to `out`.
    pub fn sample(&self, col: usize, row: usize, out: &mut Vec<f32>) {
        let (gh, gw) = self.padded();
        for l in &self.levels {
            // The ratio of the sizes, as `project`'s upsampling takes it (4 / stride).
            let (fx, fy) = (l.w as f64 / gw as f64, l.h as f64 / gh as f64);
            let (x0, x1, tx) = tap((col as f64 + 0.5) * fx - 0.5, l.w);
            let (y0, y1, ty) = tap((row as f64 + 0.5) * fy - 0.5, l.h);
            let wts = [(1.0 - ty) * (1.0 - tx), (1.0 - ty) * tx, ty * (1.0 - tx), ty * tx];
            let idx = [y0 * l.w + x0, y0 * l.w + x1, y1 * l.w + x0, y1 * l.w + x1];
            let plane = l.h * l.w;
            for c in 0..l.channels {
                let base = c * plane;
                out.push((0..4).map(|j| wts[j] * l.data[base + idx[j]]).sum());
            }
        }
    }

    /// `weights · features + bias` at every stride-4 cell: `[k, rows_p, cols_p]` over the padded
    /// grid (the finest level's size); `weights` is `[k, dim]`.
    pub fn project(&self, weights: &[f32], bias: &[f32]) -> Vec<f32> {
        let k = bias.len();
        let d = self.dim();
        debug_assert_eq!(weights.len(), k * d);
        let (gh, gw) = (self.levels[0].h, self.levels[0].w);
        let mut out = vec![0f32; k * gh * gw];
        for (ki, b) in bias.iter().enumerate() {
            out[ki * gh * gw..(ki + 1) * gh * gw].fill(*b);
        }
        let mut offset = 0;
        for l in &self.levels {
            let plane = l.h * l.w;
            let mut z = vec![0f32; k * plane];
            for ki in 0..k {
                let zk = &mut z[ki * plane..(ki + 1) * plane];
                for c in 0..l.channels {
                    let wv = weights[ki * d + offset + c];
                    if wv == 0.0 {
                        continue;
                    }
                    let src = &l.data[c * plane..(c + 1) * plane];
                    for (o, s) in zk.iter_mut().zip(src) {
                        *o += wv * s;
                    }
                }
            }
            offset += l.channels;
            for ki in 0..k {
                upsample_add(
                    &z[ki * plane..(ki + 1) * plane],
                    (l.h, l.w),
                    &mut out[ki * gh * gw..(ki + 1) * gh * gw],
                    (gh, gw),
                );
            }
        }
        out
    }
}

/// Bilinear taps (`align_corners=False`, clamped) at source coordinate `src` of an axis of `n`.
fn tap(src: f64, n: usize) -> (usize, usize, f32) {
    let src = src.max(0.0);
    let i0 = (src.floor() as usize).min(n - 1);
    (i0, (i0 + 1).min(n - 1), (src - i0 as f64) as f32)
}

/// Adds the bilinear upsampling of `src` (`[h, w]`) to `dst` (`[dh, dw]`), `align_corners=False`.
pub(crate) fn upsample_add(src: &[f32], (h, w): (usize, usize), dst: &mut [f32], (dh, dw): (usize, usize)) {
    if (h, w) == (dh, dw) {
        for (d, s) in dst.iter_mut().zip(src) {
            *d += s;
        }
        return;
    }
    let xs: Vec<(usize, usize, f32)> = (0..dw)
        .map(|o| tap((o as f64 + 0.5) * w as f64 / dw as f64 - 0.5, w))
        .collect();
    let mut row0 = vec![0f32; dw];
    let mut row1 = vec![0f32; dw];
    let interp_row = |r: usize, out: &mut [f32]| {
        let s = &src[r * w..(r + 1) * w];
        for (o, &(x0, x1, t)) in out.iter_mut().zip(&xs) {
            *o = s[x0] + t * (s[x1] - s[x0]);
        }
    };
    let mut cached = (usize::MAX, usize::MAX);
    for oy in 0..dh {
        let (y0, y1, t) = tap((oy as f64 + 0.5) * h as f64 / dh as f64 - 0.5, h);
        if cached != (y0, y1) {
            interp_row(y0, &mut row0);
            interp_row(y1, &mut row1);
            cached = (y0, y1);
        }
        let d = &mut dst[oy * dw..(oy + 1) * dw];
        for ((o, a), b) in d.iter_mut().zip(&row0).zip(&row1) {
            *o += a + t * (b - a);
        }
    }
}

/// A model's class logits to each class's log-odds against all others (`log p / (1 - p)` of the
/// softmax), clamped to +-12: a probe with weight 1 on channel `j` and bias 0 predicts exactly the
/// model's probability of class `j`.
fn log_odds(level: &mut Level) {
    let plane = level.h * level.w;
    let k = level.channels;
    let mut z = vec![0f32; k];
    for i in 0..plane {
        for (c, zc) in z.iter_mut().enumerate() {
            *zc = level.data[c * plane + i];
        }
        let m = z.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let e: Vec<f32> = z.iter().map(|v| (v - m).exp()).collect();
        let total: f32 = e.iter().sum();
        for (c, ec) in e.iter().enumerate() {
            let rest = (total - ec).max(1e-30);
            level.data[c * plane + i] = (ec.max(1e-30) / rest).ln().clamp(-12.0, 12.0);
        }
    }
}

/// Each channel to mean 0 and standard deviation 1 over the map.
fn standardise(level: &mut Level) {
    let plane = level.h * level.w;
    for c in 0..level.channels {
        let v = &mut level.data[c * plane..(c + 1) * plane];
        let mean = v.iter().map(|&x| f64::from(x)).sum::<f64>() / plane as f64;
        let var = v.iter().map(|&x| (f64::from(x) - mean).powi(2)).sum::<f64>() / plane as f64;
        let inv = if var > 1e-12 { 1.0 / var.sqrt() } else { 0.0 };
        for x in v.iter_mut() {
            *x = ((f64::from(*x) - mean) * inv) as f32;
        }
    }
}

/// The `w` x `h` piece of `image` at (`x0`, `y0`), edge pixels repeated outside it.
fn crop_clamped(image: &RgbImage, x0: usize, y0: usize, w: usize, h: usize) -> RgbImage {
    let (iw, ih) = (image.width() as usize, image.height() as usize);
    RgbImage::from_fn(w as u32, h as u32, |x, y| {
        let sx = (x0 + x as usize).min(iw - 1);
        let sy = (y0 + y as usize).min(ih - 1);
        *image.get_pixel(sx as u32, sy as u32)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grid() -> FeatureGrid {
        let level = |stride, channels, h: usize, w: usize, seed: u32| Level {
            stride,
            channels,
            h,
            w,
            data: (0..channels * h * w)
                .map(|i| ((i as u32).wrapping_mul(2654435761) ^ seed) as f32 / u32::MAX as f32 - 0.5)
                .collect(),
        };
        FeatureGrid {
            levels: vec![level(4, 3, 8, 12, 1), level(8, 2, 4, 6, 2), level(32, 5, 1, 2, 3)],
            cols: 11,
            rows: 7,
        }
    }

    #[test]
    fn projection_equals_the_sampled_features_times_the_weights() {
        let g = grid();
        let d = g.dim();
        let k = 2;
        let weights: Vec<f32> = (0..k * d).map(|i| (i as f32 * 0.37).sin()).collect();
        let bias = vec![0.5, -0.25];
        let z = g.project(&weights, &bias);
        let (gh, gw) = (g.levels[0].h, g.levels[0].w);
        let mut f = Vec::new();
        for row in 0..gh {
            for col in 0..gw {
                f.clear();
                g.sample(col, row, &mut f);
                for ki in 0..k {
                    let want: f32 = bias[ki]
                        + f.iter()
                            .zip(&weights[ki * d..(ki + 1) * d])
                            .map(|(a, b)| a * b)
                            .sum::<f32>();
                    let got = z[ki * gh * gw + row * gw + col];
                    assert!(
                        (want - got).abs() < 1e-4,
                        "cell ({col}, {row}) class {ki}: {want} vs {got}"
                    );
                }
            }
        }
    }

    #[test]
    fn upsampling_matches_the_decoders_resize() {
        use candle_core::{Device, Tensor};
        let src: Vec<f32> = (0..12).map(|i| (i * i) as f32 * 0.1).collect();
        let mut dst = vec![0f32; 6 * 8];
        upsample_add(&src, (3, 4), &mut dst, (6, 8));
        let t = Tensor::from_vec(src, (1, 1, 3, 4), &Device::Cpu).unwrap();
        let want: Vec<f32> = crate::decoder::resize_bilinear(&t, 6, 8)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        for (a, b) in dst.iter().zip(&want) {
            assert!((a - b).abs() < 1e-5);
        }
    }
}
