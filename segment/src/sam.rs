//! SAM-style prompting: MobileSAM (Zhang et al., 2023: SAM's prompt encoder and mask decoder
//! behind a TinyViT-5M image encoder) through `candle-transformers`' `segment_anything`
//! building blocks, with points, boxes, or both as prompts.
//!
//! The image encoder, the dense positional encoding and the mask decoder are candle-transformers';
//! the sparse prompt embedding (points and box corners) is computed here, as the reference does,
//! because candle-transformers' `Sam` takes points only and its box path returns a wrongly shaped
//! tensor. Weights load strictly from the original checkpoint's names (`image_encoder.*`,
//! `prompt_encoder.*`, `mask_decoder.*`), from `.pt` or `.safetensors`: a tensor the model does not
//! read is an error. No weights ship with Nadir: `mobile_sam.pt` (MobileSAM's release) is what a
//! user downloads; tests prove the code on a random-weight checkpoint made with the reference
//! (`scripts/make_sam_fixtures.py`).

use std::path::Path;

use candle_core::{DType, Device, IndexOp, Module, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::segment_anything::mask_decoder::MaskDecoder;
use candle_transformers::models::segment_anything::prompt_encoder::PromptEncoder;
use candle_transformers::models::segment_anything::tiny_vit::{tiny_vit_5m, TinyViT};
use image::RgbImage;

use crate::error::{Error, Result};

/// The side of the square SAM sees.
pub const IMAGE_SIZE: usize = 1024;
/// Channels of the prompt and image embeddings.
const EMBED_DIM: usize = 256;
/// The image embedding's side (IMAGE_SIZE / 16).
const EMBED_SIDE: usize = 64;
/// SAM's pixel normalisation (0-255 scale).
const PIXEL_MEAN: [f32; 3] = [123.675, 116.28, 103.53];
const PIXEL_STD: [f32; 3] = [58.395, 57.12, 57.375];

/// A prompt: points (x, y in the 1024 px input, positive or not) and at most one box
/// (x0, y0, x1, y1).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Prompt {
    pub points: Vec<(f32, f32, bool)>,
    pub box_xyxy: Option<[f32; 4]>,
}

/// MobileSAM, loaded.
pub struct MobileSam {
    encoder: TinyViT,
    prompt: PromptEncoder,
    decoder: MaskDecoder,
    /// `prompt_encoder.pe_layer.positional_encoding_gaussian_matrix` [2, 128].
    gaussian: Tensor,
    /// `prompt_encoder.point_embeddings.{0..3}.weight`: negative point, positive point, box
    /// corners.
    point_embeddings: Vec<Tensor>,
    not_a_point: Tensor,
    device: Device,
}

impl std::fmt::Debug for MobileSam {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MobileSam").finish_non_exhaustive()
    }
}

impl MobileSam {
    /// Loads a MobileSAM checkpoint (`mobile_sam.pt` or its safetensors), strictly.
    pub fn load(path: &Path) -> Result<Self> {
        let device = Device::Cpu;
        let tensors = nadir_clip::checkpoint::read_tensors(path)?.into_iter().collect();
        // Buffers the reference keeps in its state_dict and the model recomputes, and TinyViT's
        // ImageNet classifier, which the reference builds but SAM never runs.
        let ignored = |n: &str| {
            n.ends_with("attention_bias_idxs")
                || n == "pixel_mean"
                || n == "pixel_std"
                || n.starts_with("image_encoder.head.")
                || n.starts_with("image_encoder.norm_head.")
        };
        Ok(nadir_clip::checkpoint::load_strict(
            path,
            tensors,
            &device,
            ignored,
            Self::new,
        )?)
    }

    /// The model from `vb` (checkpoint names).
    pub fn new(vb: VarBuilder) -> candle_core::Result<Self> {
        let encoder = tiny_vit_5m(vb.pp("image_encoder"))?;
        let pvb = vb.pp("prompt_encoder");
        let prompt = PromptEncoder::new(
            EMBED_DIM,
            (EMBED_SIDE, EMBED_SIDE),
            (IMAGE_SIZE, IMAGE_SIZE),
            16,
            pvb.clone(),
        )?;
        let decoder = MaskDecoder::new(EMBED_DIM, 3, 3, 256, vb.pp("mask_decoder"))?;
        let gaussian = pvb
            .pp("pe_layer")
            .get((2, EMBED_DIM / 2), "positional_encoding_gaussian_matrix")?;
        let point_embeddings = (0..4)
            .map(|i| pvb.pp("point_embeddings").pp(i).get((1, EMBED_DIM), "weight"))
            .collect::<candle_core::Result<Vec<_>>>()?;
        let not_a_point = pvb.pp("not_a_point_embed").get((1, EMBED_DIM), "weight")?;
        Ok(Self {
            encoder,
            prompt,
            decoder,
            gaussian,
            point_embeddings,
            not_a_point,
            device: vb.device().clone(),
        })
    }

    /// The image embedding `[1, 256, 64, 64]` of a normalised, padded input `[1, 3, 1024, 1024]`.
    pub fn embed(&self, input: &Tensor) -> Result<Tensor> {
        Ok(self.encoder.forward(input)?)
    }

    /// The input of an image: the longest side resized to 1024 px (bilinear), normalised, padded
    /// at the right and bottom; and the scale from image pixels to input pixels.
    pub fn input(&self, image: &RgbImage) -> Result<(Tensor, f32)> {
        let (w, h) = image.dimensions();
        let scale = IMAGE_SIZE as f32 / w.max(h) as f32;
        let (nw, nh) = (
            ((w as f32 * scale).round() as u32).clamp(1, IMAGE_SIZE as u32),
            ((h as f32 * scale).round() as u32).clamp(1, IMAGE_SIZE as u32),
        );
        let resized = image::imageops::resize(image, nw, nh, image::imageops::FilterType::Triangle);
        let n = IMAGE_SIZE * IMAGE_SIZE;
        let mut data = vec![0f32; 3 * n];
        for (x, y, p) in resized.enumerate_pixels() {
            let i = y as usize * IMAGE_SIZE + x as usize;
            for c in 0..3 {
                data[c * n + i] = (f32::from(p.0[c]) - PIXEL_MEAN[c]) / PIXEL_STD[c];
            }
        }
        let t = Tensor::from_vec(data, (1, 3, IMAGE_SIZE, IMAGE_SIZE), &self.device)?;
        Ok((t, scale))
    }

    /// Low-resolution mask logits `[1, K, 256, 256]` (over the 1024 px input) and predicted IoUs
    /// `[1, K]` for `prompt` on an image embedding; K = 3 with `multimask`, else 1.
    pub fn predict(&self, embedding: &Tensor, prompt: &Prompt, multimask: bool) -> Result<(Tensor, Tensor)> {
        if prompt.points.is_empty() && prompt.box_xyxy.is_none() {
            return Err(Error::Invalid("a SAM prompt needs a point or a box".into()));
        }
        let mut sparse = Vec::new();
        if !prompt.points.is_empty() {
            let mut pts: Vec<(f32, f32, f32)> = prompt
                .points
                .iter()
                .map(|&(x, y, pos)| (x, y, if pos { 1.0 } else { 0.0 }))
                .collect();
            // Without a box the reference pads the points with one "not a point".
            if prompt.box_xyxy.is_none() {
                pts.push((0.0, 0.0, -1.0));
            }
            let coords: Vec<f32> = pts.iter().flat_map(|p| [p.0 + 0.5, p.1 + 0.5]).collect();
            let pe = self.positional(&Tensor::from_vec(coords, (pts.len(), 2), &self.device)?)?;
            let rows = pts
                .iter()
                .enumerate()
                .map(|(i, p)| {
                    let e = pe.i(i..i + 1)?;
                    if p.2 < 0.0 {
                        Ok(self.not_a_point.clone())
                    } else if p.2 == 0.0 {
                        e + &self.point_embeddings[0]
                    } else {
                        e + &self.point_embeddings[1]
                    }
                })
                .collect::<candle_core::Result<Vec<_>>>()?;
            sparse.push(Tensor::cat(&rows, 0)?);
        }
        if let Some([x0, y0, x1, y1]) = prompt.box_xyxy {
            let corners =
                Tensor::from_vec(vec![x0 + 0.5, y0 + 0.5, x1 + 0.5, y1 + 0.5], (2, 2), &self.device)?;
            let pe = self.positional(&corners)?;
            sparse.push((pe.i(0..1)? + &self.point_embeddings[2])?);
            sparse.push((pe.i(1..2)? + &self.point_embeddings[3])?);
        }
        let sparse = Tensor::cat(&sparse, 0)?.unsqueeze(0)?;
        let (_, dense) = self.prompt.forward(None, None, None)?;
        let image_pe = self.prompt.get_dense_pe()?;
        Ok(self
            .decoder
            .forward(embedding, &image_pe, &sparse, &dense, multimask)?)
    }

    /// The random-Fourier positional encoding of input-pixel coordinates `[n, 2]`: `[n, 256]`.
    fn positional(&self, coords: &Tensor) -> Result<Tensor> {
        let c = ((coords / IMAGE_SIZE as f64)? * 2.0)?.affine(1.0, -1.0)?;
        let c = (c.matmul(&self.gaussian)? * (2.0 * std::f64::consts::PI))?;
        Ok(Tensor::cat(&[c.sin()?, c.cos()?], 1)?)
    }

    /// A mask over `(w, h)` image pixels from low-resolution logits `[256, 256]` of an input whose
    /// image part was scaled by `scale`: logits resized to the input, cropped to the image part,
    /// resized to the image (bilinear, as the reference's `postprocess_masks`).
    pub fn to_image(&self, low_res: &Tensor, scale: f32, (w, h): (u32, u32)) -> Result<Tensor> {
        let x = low_res.reshape((1, 1, 256, 256))?;
        let x = crate::decoder::resize_bilinear(&x, IMAGE_SIZE, IMAGE_SIZE)?;
        let (nw, nh) = (
            ((w as f32 * scale).round() as usize).clamp(1, IMAGE_SIZE),
            ((h as f32 * scale).round() as usize).clamp(1, IMAGE_SIZE),
        );
        let x = x.i((.., .., ..nh, ..nw))?.contiguous()?;
        let x = crate::decoder::resize_bilinear(&x, h as usize, w as usize)?;
        Ok(x.reshape((h as usize, w as usize))?.to_dtype(DType::F32)?)
    }
}
