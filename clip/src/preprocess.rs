//! Image preprocessing, equal to open_clip's eval transform: resize the shortest side to the
//! input size (Pillow bicubic), centre crop, RGB, scale to [0, 1], normalise with the CLIP mean
//! and standard deviation.
//!
//! Reference: `open_clip/transform.py::image_transform(is_train=False)` with torchvision's
//! `Resize(size)` (long side `int(size * long / short)`) and `CenterCrop` (offsets rounded half to
//! even, as Python's `round`).

use std::path::Path;

use candle_core::{Device, Tensor};
use image::RgbImage;

use crate::error::{Error, Result};
use crate::resample::resize_bicubic;

/// OpenAI CLIP's per-channel mean (open_clip `OPENAI_DATASET_MEAN`).
pub const CLIP_MEAN: [f32; 3] = [0.481_454_66, 0.457_827_5, 0.408_210_73];
/// OpenAI CLIP's per-channel standard deviation (open_clip `OPENAI_DATASET_STD`).
#[allow(clippy::excessive_precision)] // the constants as open_clip writes them
pub const CLIP_STD: [f32; 3] = [0.268_629_54, 0.261_302_58, 0.275_777_11];

/// Turns images into normalised `[3, S, S]` pixel tensors.
#[derive(Debug, Clone, PartialEq)]
pub struct Preprocessor {
    pub image_size: u32,
    pub mean: [f32; 3],
    pub std: [f32; 3],
}

impl Preprocessor {
    /// The CLIP eval transform at `image_size` pixels.
    pub fn clip(image_size: u32) -> Self {
        Self {
            image_size,
            mean: CLIP_MEAN,
            std: CLIP_STD,
        }
    }

    /// Shortest side to the input size, then the central square. An image already at the input
    /// size is returned unchanged.
    pub fn resize_and_crop(&self, img: &RgbImage) -> RgbImage {
        let s = self.image_size;
        let (w, h) = img.dimensions();
        if (w, h) == (s, s) {
            return img.clone();
        }
        let (short, long) = if w <= h { (w, h) } else { (h, w) };
        let new_long = (f64::from(s) * f64::from(long) / f64::from(short)) as u32;
        let (nw, nh) = if w <= h { (s, new_long) } else { (new_long, s) };
        let resized = resize_bicubic(img, nw, nh);
        let top = round_half_even(f64::from(nh - s) / 2.0);
        let left = round_half_even(f64::from(nw - s) / 2.0);
        image::imageops::crop_imm(&resized, left, top, s, s).to_image()
    }

    /// Normalised channel-first values of an image already at the input size.
    pub fn normalize(&self, img: &RgbImage) -> Vec<f32> {
        let n = (img.width() * img.height()) as usize;
        let mut out = vec![0f32; 3 * n];
        for (i, p) in img.pixels().enumerate() {
            for c in 0..3 {
                out[c * n + i] = (f32::from(p.0[c]) / 255.0 - self.mean[c]) / self.std[c];
            }
        }
        out
    }

    /// The whole transform for one image: `[3, S, S]` values, channel-first.
    pub fn preprocess(&self, img: &RgbImage) -> Vec<f32> {
        self.normalize(&self.resize_and_crop(img))
    }

    /// The whole transform for a batch: a `[B, 3, S, S]` tensor.
    pub fn batch(&self, images: &[RgbImage], device: &Device) -> Result<Tensor> {
        let s = self.image_size as usize;
        let mut data = Vec::with_capacity(images.len() * 3 * s * s);
        for img in images {
            data.extend(self.preprocess(img));
        }
        Ok(Tensor::from_vec(data, (images.len(), 3, s, s), device)?)
    }
}

/// Opens an image file as 8-bit RGB (grey, alpha and 16-bit images are converted).
pub fn load_rgb(path: &Path) -> Result<RgbImage> {
    let img = image::ImageReader::open(path)
        .map_err(|e| Error::io(path, e))?
        .with_guessed_format()
        .map_err(|e| Error::io(path, e))?
        .decode()
        .map_err(|e| Error::Image {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
    Ok(img.to_rgb8())
}

fn round_half_even(x: f64) -> u32 {
    let r = x.round();
    let r = if (x - x.trunc()).abs() == 0.5 && r % 2.0 != 0.0 {
        r - x.signum()
    } else {
        r
    };
    r as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_round() {
        assert_eq!(round_half_even(0.5), 0);
        assert_eq!(round_half_even(1.5), 2);
        assert_eq!(round_half_even(2.5), 2);
        assert_eq!(round_half_even(16.0), 16);
        assert_eq!(round_half_even(3.4), 3);
    }

    #[test]
    fn shortest_side_then_centre_crop() {
        let p = Preprocessor::clip(224);
        let img = RgbImage::from_fn(300, 180, |x, _| image::Rgb([(x % 256) as u8, 0, 0]));
        assert_eq!(p.resize_and_crop(&img).dimensions(), (224, 224));
        let tall = RgbImage::new(100, 457);
        assert_eq!(p.resize_and_crop(&tall).dimensions(), (224, 224));
    }

    #[test]
    fn input_size_patch_is_not_resized() {
        let p = Preprocessor::clip(4);
        let img = RgbImage::from_fn(4, 4, |x, y| image::Rgb([(x * 60) as u8, (y * 60) as u8, 7]));
        assert_eq!(p.resize_and_crop(&img), img);
        let v = p.normalize(&img);
        assert_eq!(v.len(), 48);
        let expect = (60.0f32 / 255.0 - CLIP_MEAN[0]) / CLIP_STD[0];
        assert!((v[1] - expect).abs() < 1e-7);
    }
}
