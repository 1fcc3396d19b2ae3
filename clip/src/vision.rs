//! The image tower: open_clip's `VisionTransformer` (`visual.*` in a checkpoint).
//!
//! Reference: `open_clip/transformer.py::VisionTransformer` with the defaults used by every OpenAI
//! and RemoteCLIP ViT: class-token pooling, `ln_pre`, `ln_post` before pooling, a bias-free
//! patch convolution and a linear projection `proj` [width, embed_dim].

use candle_core::{Module, Tensor};
use candle_nn::{LayerNorm, VarBuilder};

use crate::config::{Activation, VisionConfig};
use crate::transformer::{layer_norm_1e5, Transformer};

/// The ViT image encoder.
#[derive(Debug, Clone)]
pub struct VisionTransformer {
    /// `conv1.weight` [W, 3, P, P] flattened to [W, 3*P*P] and transposed, for the
    /// patch-embedding product.
    patch_embed_t: Tensor,
    class_embedding: Tensor,
    positional_embedding: Tensor,
    ln_pre: LayerNorm,
    transformer: Transformer,
    ln_post: LayerNorm,
    proj: Tensor,
    cfg: VisionConfig,
}

impl VisionTransformer {
    /// Loads the tower from `vb` positioned at `visual`.
    pub fn new(
        vb: VarBuilder,
        cfg: &VisionConfig,
        embed_dim: usize,
        activation: Activation,
    ) -> candle_core::Result<Self> {
        let (w, p) = (cfg.width, cfg.patch_size);
        if p == 0 || !cfg.image_size.is_multiple_of(p) {
            candle_core::bail!(
                "image size {} is not a multiple of the patch size {p}",
                cfg.image_size
            );
        }
        let grid = cfg.image_size / p;
        let conv = vb.get((w, 3, p, p), "conv1.weight")?;
        Ok(Self {
            patch_embed_t: conv.reshape((w, 3 * p * p))?.t()?.contiguous()?,
            class_embedding: vb.get(w, "class_embedding")?,
            positional_embedding: vb.get((grid * grid + 1, w), "positional_embedding")?,
            ln_pre: layer_norm_1e5(w, vb.pp("ln_pre"))?,
            transformer: Transformer::new(
                w,
                cfg.layers,
                cfg.heads,
                cfg.mlp_width,
                activation,
                vb.pp("transformer"),
            )?,
            ln_post: layer_norm_1e5(w, vb.pp("ln_post"))?,
            proj: vb.get((w, embed_dim), "proj")?,
            cfg: cfg.clone(),
        })
    }

    /// The input side in pixels.
    pub fn image_size(&self) -> usize {
        self.cfg.image_size
    }

    /// Pixels per patch side (the stride of [`Self::patch_tokens`]).
    pub fn patch_size(&self) -> usize {
        self.cfg.patch_size
    }

    /// The token width.
    pub fn width(&self) -> usize {
        self.cfg.width
    }

    /// The patch tokens as a feature map `[B, width, S/P, S/P]`: `ln_post` over the
    /// transformer's output without the class token, as open_clip's `output_tokens=True` returns
    /// them. The input of a segmentation decoder.
    pub fn patch_tokens(&self, pixel_values: &Tensor) -> candle_core::Result<Tensor> {
        let x = self.encode_tokens(pixel_values)?;
        let (b, n, w) = x.dims3()?;
        let g = self.cfg.image_size / self.cfg.patch_size;
        let tokens = self.ln_post.forward(&x.narrow(1, 1, n - 1)?)?;
        tokens.reshape((b, g, g, w))?.permute((0, 3, 1, 2))?.contiguous()
    }

    /// Patch embedding, class token, positions, `ln_pre` and the transformer: `[B, 1 + G², W]`.
    fn encode_tokens(&self, pixel_values: &Tensor) -> candle_core::Result<Tensor> {
        let (b, c, h, w) = pixel_values.dims4()?;
        let (s, p) = (self.cfg.image_size, self.cfg.patch_size);
        if c != 3 || h != s || w != s {
            candle_core::bail!("expected pixel values [B, 3, {s}, {s}], got [{b}, {c}, {h}, {w}]");
        }
        let g = s / p;
        // A stride-P convolution with a PxP kernel is a product over non-overlapping patches.
        let patches = pixel_values
            .reshape((b, 3, g, p, g, p))?
            .permute((0, 2, 4, 1, 3, 5))?
            .reshape((b * g * g, 3 * p * p))?;
        let x = patches
            .matmul(&self.patch_embed_t)?
            .reshape((b, g * g, self.cfg.width))?;
        let cls = self
            .class_embedding
            .reshape((1, 1, self.cfg.width))?
            .broadcast_as((b, 1, self.cfg.width))?;
        let x = Tensor::cat(&[&cls, &x], 1)?.broadcast_add(&self.positional_embedding)?;
        let x = self.ln_pre.forward(&x)?;
        self.transformer.forward(&x, None)
    }
}

impl Module for VisionTransformer {
    /// `pixel_values` [B, 3, S, S] (normalised) -> unnormalised embeddings [B, E].
    fn forward(&self, pixel_values: &Tensor) -> candle_core::Result<Tensor> {
        let x = self.encode_tokens(pixel_values)?;
        let pooled = self.ln_post.forward(&x.narrow(1, 0, 1)?.squeeze(1)?)?;
        pooled.matmul(&self.proj)
    }
}
