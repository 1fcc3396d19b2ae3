//! The CLIP model: both towers and the learned temperature, in candle-transformers shape.
//!
//! Reference: `open_clip/model.py::CLIP` (ViT vision tower, causal text tower). Weights: open_clip
//! state dicts such as RemoteCLIP's `RemoteCLIP-ViT-B-32.pt` / `RemoteCLIP-ViT-L-14.pt`
//! (hub repo `chendelong/RemoteCLIP`) and OpenAI CLIP; Hugging Face checkpoints are renamed to
//! open_clip's names by [`crate::checkpoint`] before they reach this module.

use candle_core::{Module, Tensor};
use candle_nn::VarBuilder;

use crate::config::ClipConfig;
use crate::text::TextTransformer;
use crate::transformer::l2_normalize;
use crate::vision::VisionTransformer;

/// A CLIP model with open_clip's parameter names.
#[derive(Debug, Clone)]
pub struct Clip {
    pub vision: VisionTransformer,
    pub text: TextTransformer,
    /// `logit_scale` (log of the inverse temperature), when the checkpoint has it.
    pub logit_scale: Option<Tensor>,
}

impl Clip {
    /// Builds the model from a `VarBuilder` rooted at the checkpoint's top level.
    pub fn new(vb: VarBuilder, cfg: &ClipConfig) -> candle_core::Result<Self> {
        let vision = VisionTransformer::new(vb.pp("visual"), &cfg.vision, cfg.embed_dim, cfg.activation)?;
        let text = TextTransformer::new(vb.clone(), &cfg.text, cfg.embed_dim, cfg.activation)?;
        let logit_scale = if vb.contains_tensor("logit_scale") {
            Some(vb.get_unchecked("logit_scale")?.flatten_all()?)
        } else {
            None
        };
        Ok(Self {
            vision,
            text,
            logit_scale,
        })
    }

    /// L2-normalised image embeddings [B, E] of normalised pixels [B, 3, S, S].
    pub fn encode_image(&self, pixel_values: &Tensor) -> candle_core::Result<Tensor> {
        l2_normalize(&self.vision.forward(pixel_values)?)
    }

    /// L2-normalised text embeddings [B, E] of token rows [B, T].
    pub fn encode_text(&self, tokens: &Tensor) -> candle_core::Result<Tensor> {
        l2_normalize(&self.text.forward(tokens)?)
    }

    /// `exp(logit_scale) * images @ texts^T`: CLIP's image-to-text logits.
    pub fn logits(&self, image_embeds: &Tensor, text_embeds: &Tensor) -> candle_core::Result<Tensor> {
        let sims = image_embeds.matmul(&text_embeds.t()?)?;
        match &self.logit_scale {
            Some(s) => sims.broadcast_mul(&s.exp()?),
            None => Ok(sims),
        }
    }
}
