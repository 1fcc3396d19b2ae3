//! The text tower: open_clip's `CLIP` text side (top-level `token_embedding`,
//! `positional_embedding`, `transformer.*`, `ln_final`, `text_projection` in a checkpoint).
//!
//! Reference: `open_clip/model.py::CLIP.encode_text`: causal attention, `ln_final`, then the
//! token at the position of the largest id (the end-of-text token, 49407) is projected.

use candle_core::{Module, Tensor};
use candle_nn::{Embedding, LayerNorm, VarBuilder};

use crate::config::{Activation, TextConfig};
use crate::transformer::{causal_mask, gather_rows, layer_norm_1e5, Transformer};

/// The causal text encoder.
#[derive(Debug, Clone)]
pub struct TextTransformer {
    token_embedding: Embedding,
    positional_embedding: Tensor,
    transformer: Transformer,
    ln_final: LayerNorm,
    text_projection: Tensor,
    cfg: TextConfig,
}

impl TextTransformer {
    /// Loads the tower from `vb` at the checkpoint's root.
    pub fn new(
        vb: VarBuilder,
        cfg: &TextConfig,
        embed_dim: usize,
        activation: Activation,
    ) -> candle_core::Result<Self> {
        let w = cfg.width;
        Ok(Self {
            token_embedding: Embedding::new(vb.get((cfg.vocab_size, w), "token_embedding.weight")?, w),
            positional_embedding: vb.get((cfg.context_length, w), "positional_embedding")?,
            transformer: Transformer::new(
                w,
                cfg.layers,
                cfg.heads,
                cfg.mlp_width,
                activation,
                vb.pp("transformer"),
            )?,
            ln_final: layer_norm_1e5(w, vb.pp("ln_final"))?,
            text_projection: vb.get((w, embed_dim), "text_projection")?,
            cfg: cfg.clone(),
        })
    }

    /// The context length in tokens.
    pub fn context_length(&self) -> usize {
        self.cfg.context_length
    }
}

impl Module for TextTransformer {
    /// `tokens` [B, T] (u32, T <= context length) -> unnormalised embeddings [B, E].
    ///
    /// The attention is causal and the pooled token is the end-of-text token (the largest id in
    /// each row), so the padding after the last end-of-text token of the batch cannot change the
    /// result: it is cut off before the transformer runs. Captions are short, so this saves most
    /// of the text tower's work.
    fn forward(&self, tokens: &Tensor) -> candle_core::Result<Tensor> {
        let (_, t) = tokens.dims2()?;
        if t > self.cfg.context_length {
            candle_core::bail!("{t} tokens exceed the context length {}", self.cfg.context_length);
        }
        let rows = tokens.to_vec2::<u32>()?;
        let eot: Vec<usize> = rows
            .iter()
            .map(|row| {
                // First position of the maximum, as torch.argmax.
                let max = row.iter().copied().max().unwrap_or(0);
                row.iter().position(|&id| id == max).unwrap_or(0)
            })
            .collect();
        let used = eot.iter().copied().max().map_or(1, |m| m + 1).min(t);
        let tokens = tokens.narrow(1, 0, used)?;
        let x = self
            .token_embedding
            .forward(&tokens)?
            .broadcast_add(&self.positional_embedding.narrow(0, 0, used)?)?;
        let mask = causal_mask(used, x.device())?;
        let x = self.transformer.forward(&x, Some(&mask))?;
        let x = self.ln_final.forward(&x)?;
        gather_rows(&x, &eot)?.matmul(&self.text_projection)
    }
}
