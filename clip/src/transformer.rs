//! The residual attention transformer shared by both towers, with open_clip's parameter names
//! (`resblocks.N.{ln_1,attn.in_proj_weight,attn.out_proj,ln_2,mlp.c_fc,mlp.c_proj}`).
//!
//! Reference: `open_clip/transformer.py` (`Transformer`, `ResidualAttentionBlock`, with
//! `nn.MultiheadAttention`).

use candle_core::{Module, Tensor, D};
use candle_nn::{layer_norm, linear, LayerNorm, LayerNormConfig, Linear, VarBuilder};

use crate::config::Activation;

/// `nn.LayerNorm` with PyTorch's default epsilon.
pub(crate) fn layer_norm_1e5(width: usize, vb: VarBuilder) -> candle_core::Result<LayerNorm> {
    layer_norm(width, LayerNormConfig::from(1e-5), vb)
}

/// `nn.MultiheadAttention` with a packed input projection (`in_proj_weight` [3W, W]).
#[derive(Debug, Clone)]
struct MultiheadAttention {
    in_proj: Linear,
    out_proj: Linear,
    heads: usize,
    head_dim: usize,
}

impl MultiheadAttention {
    fn new(width: usize, heads: usize, vb: VarBuilder) -> candle_core::Result<Self> {
        if heads == 0 || !width.is_multiple_of(heads) {
            candle_core::bail!("width {width} is not divisible by {heads} attention heads");
        }
        let w = vb.get((3 * width, width), "in_proj_weight")?;
        let b = vb.get(3 * width, "in_proj_bias")?;
        Ok(Self {
            in_proj: Linear::new(w, Some(b)),
            out_proj: linear(width, width, vb.pp("out_proj"))?,
            heads,
            head_dim: width / heads,
        })
    }

    /// Self-attention over `x` [B, T, W], with an optional additive mask [T, T].
    fn forward(&self, x: &Tensor, mask: Option<&Tensor>) -> candle_core::Result<Tensor> {
        let (b, t, w) = x.dims3()?;
        let qkv = self
            .in_proj
            .forward(x)?
            .reshape((b, t, 3, self.heads, self.head_dim))?
            .permute((2, 0, 3, 1, 4))?; // [3, B, H, T, D]
        let scale = 1.0 / (self.head_dim as f64).sqrt();
        let q = (qkv.get(0)? * scale)?.contiguous()?;
        let k = qkv.get(1)?.contiguous()?;
        let v = qkv.get(2)?.contiguous()?;
        let mut scores = q.matmul(&k.t()?)?; // [B, H, T, T]
        if let Some(mask) = mask {
            scores = scores.broadcast_add(mask)?;
        }
        let probs = candle_nn::ops::softmax_last_dim(&scores)?;
        let out = probs
            .matmul(&v)? // [B, H, T, D]
            .transpose(1, 2)?
            .reshape((b, t, w))?;
        self.out_proj.forward(&out)
    }
}

/// `c_fc`, activation, `c_proj`.
#[derive(Debug, Clone)]
struct Mlp {
    c_fc: Linear,
    c_proj: Linear,
    activation: Activation,
}

impl Module for Mlp {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let h = self.c_fc.forward(x)?;
        let h = match self.activation {
            Activation::QuickGelu => (&h * candle_nn::ops::sigmoid(&(&h * 1.702)?)?)?,
            Activation::Gelu => h.gelu_erf()?,
        };
        self.c_proj.forward(&h)
    }
}

/// Pre-norm block: `x + attn(ln_1(x))`, then `x + mlp(ln_2(x))`.
#[derive(Debug, Clone)]
struct ResidualAttentionBlock {
    ln_1: LayerNorm,
    attn: MultiheadAttention,
    ln_2: LayerNorm,
    mlp: Mlp,
}

impl ResidualAttentionBlock {
    fn new(
        width: usize,
        heads: usize,
        mlp_width: usize,
        activation: Activation,
        vb: VarBuilder,
    ) -> candle_core::Result<Self> {
        Ok(Self {
            ln_1: layer_norm_1e5(width, vb.pp("ln_1"))?,
            attn: MultiheadAttention::new(width, heads, vb.pp("attn"))?,
            ln_2: layer_norm_1e5(width, vb.pp("ln_2"))?,
            mlp: Mlp {
                c_fc: linear(width, mlp_width, vb.pp("mlp.c_fc"))?,
                c_proj: linear(mlp_width, width, vb.pp("mlp.c_proj"))?,
                activation,
            },
        })
    }

    fn forward(&self, x: &Tensor, mask: Option<&Tensor>) -> candle_core::Result<Tensor> {
        let x = (x + self.attn.forward(&self.ln_1.forward(x)?, mask)?)?;
        &x + self.mlp.forward(&self.ln_2.forward(&x)?)?
    }
}

/// A stack of residual attention blocks (`transformer.resblocks.*`).
#[derive(Debug, Clone)]
pub(crate) struct Transformer {
    blocks: Vec<ResidualAttentionBlock>,
}

impl Transformer {
    pub(crate) fn new(
        width: usize,
        layers: usize,
        heads: usize,
        mlp_width: usize,
        activation: Activation,
        vb: VarBuilder,
    ) -> candle_core::Result<Self> {
        let vb = vb.pp("resblocks");
        let blocks = (0..layers)
            .map(|i| ResidualAttentionBlock::new(width, heads, mlp_width, activation, vb.pp(i)))
            .collect::<candle_core::Result<_>>()?;
        Ok(Self { blocks })
    }

    /// Runs every block over `x` [B, T, W]; `mask` [T, T] is added to the attention scores.
    pub(crate) fn forward(&self, x: &Tensor, mask: Option<&Tensor>) -> candle_core::Result<Tensor> {
        let mut x = x.clone();
        for block in &self.blocks {
            x = block.forward(&x, mask)?;
        }
        Ok(x)
    }
}

/// The additive causal mask of the text tower: 0 on and below the diagonal, -inf above.
pub(crate) fn causal_mask(t: usize, device: &candle_core::Device) -> candle_core::Result<Tensor> {
    let mask: Vec<f32> = (0..t)
        .flat_map(|i| (0..t).map(move |j| if j > i { f32::NEG_INFINITY } else { 0.0 }))
        .collect();
    Tensor::from_vec(mask, (t, t), device)
}

/// Selects, for each row `b`, the vector `x[b, index[b]]`: [B, T, W] -> [B, W].
pub(crate) fn gather_rows(x: &Tensor, index: &[usize]) -> candle_core::Result<Tensor> {
    let rows = index
        .iter()
        .enumerate()
        .map(|(b, &t)| x.get(b)?.get(t))
        .collect::<candle_core::Result<Vec<_>>>()?;
    Tensor::stack(&rows, 0)
}

/// L2-normalises the last dimension, as `torch.nn.functional.normalize` (norm clamped to 1e-12).
pub(crate) fn l2_normalize(x: &Tensor) -> candle_core::Result<Tensor> {
    let norm = x.sqr()?.sum_keepdim(D::Minus1)?.sqrt()?.maximum(1e-12)?;
    x.broadcast_div(&norm)
}
