//! Adapters: the small projection heads that map the two frozen `nadir-lite` towers (a sentence
//! encoder and an ImageNet CNN) into one shared space, their safetensors file, and their
//! training with a symmetric contrastive (CLIP) loss.
//!
//! Each head standardises its input with statistics of the training features, then applies a
//! linear map or a two-layer MLP (GELU); outputs are L2-normalised. Training is deterministic for
//! a seed: weights are drawn from a seeded generator and batches from a seeded shuffle.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Module, Tensor, Var, D};
use candle_nn::{Linear, Optimizer};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_distr::Distribution;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::eval::{macro_average, retrieval_metrics, RetrievalMetrics};
use crate::transformer::l2_normalize;

/// Shape of the two heads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdapterConfig {
    pub image_in: usize,
    pub text_in: usize,
    /// The shared embedding dimension.
    pub dim: usize,
    /// Hidden width of a two-layer MLP head; `None` for a linear head.
    pub hidden: Option<usize>,
    /// The image head also holds a trained copy of the image tower's last layer (a pointwise
    /// convolution, ReLU6, average pooling): its input is then the tower's trunk output,
    /// `positions` x `channels` values per image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pre: Option<PreConfig>,
}

/// Shape of a trained pointwise layer in front of the image head.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreConfig {
    /// Spatial positions per image (7 x 7 at 224 px).
    pub positions: usize,
    /// Input channels (320 for EfficientNet-Lite0).
    pub channels: usize,
    /// Output channels (1280).
    pub out: usize,
}

/// A pointwise layer + ReLU6 + average pooling, `[N, P*C] -> [N, out]`.
#[derive(Debug, Clone)]
struct Pre {
    cfg: PreConfig,
    weight_t: Tensor,
    bias: Tensor,
}

impl Pre {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let PreConfig {
            positions,
            channels,
            out,
        } = self.cfg;
        let n = x.dim(0)?;
        x.reshape((n * positions, channels))?
            .matmul(&self.weight_t)?
            .broadcast_add(&self.bias)?
            .clamp(0f32, 6f32)?
            .reshape((n, positions, out))?
            .mean(1)
    }
}

/// One projection head.
#[derive(Debug, Clone)]
pub struct Head {
    pre: Option<Pre>,
    mean: Tensor,
    inv_std: Tensor,
    layers: Vec<Linear>,
}

impl Head {
    fn from_tensors(
        prefix: &str,
        t: &HashMap<String, Tensor>,
        hidden: bool,
        pre: Option<PreConfig>,
    ) -> Result<Self> {
        let get = |name: &str| {
            t.get(&format!("{prefix}.{name}"))
                .cloned()
                .ok_or_else(|| Error::InvalidInput(format!("adapter tensor `{prefix}.{name}` is missing")))
        };
        let mut layers = vec![Linear::new(get("fc1.weight")?, Some(get("fc1.bias")?))];
        if hidden {
            layers.push(Linear::new(get("fc2.weight")?, Some(get("fc2.bias")?)));
        }
        let pre = match pre {
            Some(cfg) => Some(Pre {
                cfg,
                weight_t: get("pre.weight_t")?,
                bias: get("pre.bias")?,
            }),
            None => None,
        };
        Ok(Self {
            pre,
            mean: get("mean")?,
            inv_std: get("inv_std")?,
            layers,
        })
    }

    /// Whether this head expects trunk features (see [`AdapterConfig::image_pre`]).
    pub fn has_pre(&self) -> bool {
        self.pre.is_some()
    }

    fn tensors(&self, prefix: &str, out: &mut HashMap<String, Tensor>) {
        if let Some(pre) = &self.pre {
            out.insert(format!("{prefix}.pre.weight_t"), pre.weight_t.clone());
            out.insert(format!("{prefix}.pre.bias"), pre.bias.clone());
        }
        out.insert(format!("{prefix}.mean"), self.mean.clone());
        out.insert(format!("{prefix}.inv_std"), self.inv_std.clone());
        for (i, l) in self.layers.iter().enumerate() {
            out.insert(format!("{prefix}.fc{}.weight", i + 1), l.weight().clone());
            if let Some(b) = l.bias() {
                out.insert(format!("{prefix}.fc{}.bias", i + 1), b.clone());
            }
        }
    }
}

impl Module for Head {
    /// Features [N, in] -> L2-normalised embeddings [N, dim].
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let pooled;
        let x = match &self.pre {
            Some(pre) => {
                pooled = pre.forward(x)?;
                &pooled
            }
            None => x,
        };
        let mut h = x.broadcast_sub(&self.mean)?.broadcast_mul(&self.inv_std)?;
        for (i, l) in self.layers.iter().enumerate() {
            if i > 0 {
                h = h.gelu_erf()?;
            }
            h = l.forward(&h)?;
        }
        l2_normalize(&h)
    }
}

/// The largest safetensors header [`Adapters::is_adapters_file`] reads (the format's own limit).
pub const MAX_HEADER_BYTES: u64 = 100_000_000;

/// The image and text heads plus the learned temperature.
#[derive(Debug, Clone)]
pub struct Adapters {
    pub config: AdapterConfig,
    pub image: Head,
    pub text: Head,
    /// `exp(logit_scale)` multiplies cosine similarities in the contrastive loss.
    pub logit_scale: f32,
    /// The data sets the heads were trained on (`ucm`, `rsicd`, ...), recorded in the file's
    /// metadata; empty when the file does not say.
    pub trained_on: Vec<String>,
    /// The ground side (metres) of the views the heads were trained on, which georeferenced
    /// scenes are tiled to by default; recorded in the file's metadata (`ground_size_m`), `None`
    /// when the file does not say.
    pub ground_size_m: Option<f64>,
}

impl Adapters {
    /// Reads an adapters file written by [`Adapters::save`].
    pub fn load(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        Self::from_bytes(&bytes, path)
    }

    /// Whether `path` is a readable adapters file (a safetensors file whose metadata holds an
    /// adapters `config`), as opposed to CLIP weights or anything else. Reads only the file's
    /// header (at most [`MAX_HEADER_BYTES`]), not the tensors: a CLIP weights file of hundreds
    /// of megabytes is then loaded once, by its own loader.
    pub fn is_adapters_file(path: &Path) -> bool {
        use std::io::Read;
        if path.extension().and_then(|e| e.to_str()) != Some("safetensors") {
            return false;
        }
        let Ok(mut file) = std::fs::File::open(path) else {
            return false;
        };
        let mut len = [0u8; 8];
        if file.read_exact(&mut len).is_err() {
            return false;
        }
        let len = u64::from_le_bytes(len);
        if len > MAX_HEADER_BYTES {
            return false;
        }
        let mut header = vec![0u8; len as usize];
        if file.read_exact(&mut header).is_err() {
            return false;
        }
        serde_json::from_slice::<serde_json::Value>(&header).is_ok_and(|h| {
            h["__metadata__"]["config"]
                .as_str()
                .is_some_and(|c| serde_json::from_str::<AdapterConfig>(c).is_ok())
        })
    }

    /// Parses the bytes of an adapters file (`path` names it in errors).
    pub fn from_bytes(bytes: &[u8], path: &Path) -> Result<Self> {
        let bad = |m: String| Error::checkpoint(path, m);
        let (_, meta) = safetensors::SafeTensors::read_metadata(bytes).map_err(|e| bad(e.to_string()))?;
        let cfg_json = meta
            .metadata()
            .as_ref()
            .and_then(|m| m.get("config").cloned())
            .ok_or_else(|| bad("no `config` in the metadata: not a nadir adapters file".into()))?;
        let config: AdapterConfig = serde_json::from_str(&cfg_json).map_err(|e| bad(e.to_string()))?;
        let tensors = candle_core::safetensors::load_buffer(bytes, &Device::Cpu)?;
        let hidden = config.hidden.is_some();
        let logit_scale = tensors
            .get("logit_scale")
            .ok_or_else(|| bad("missing `logit_scale`".into()))?
            .flatten_all()?
            .to_vec1::<f32>()?[0];
        Ok(Self {
            image: Head::from_tensors("image", &tensors, hidden, config.image_pre)
                .map_err(|e| bad(e.to_string()))?,
            text: Head::from_tensors("text", &tensors, hidden, None).map_err(|e| bad(e.to_string()))?,
            config,
            logit_scale,
            trained_on: match meta.metadata().as_ref().and_then(|m| m.get("trained_on")) {
                Some(j) => serde_json::from_str(j).map_err(|e| bad(format!("`trained_on`: {e}")))?,
                None => Vec::new(),
            },
            ground_size_m: match meta.metadata().as_ref().and_then(|m| m.get("ground_size_m")) {
                Some(j) => match j.parse::<f64>() {
                    Ok(g) if g.is_finite() && g > 0.0 => Some(g),
                    _ => return Err(bad(format!("`ground_size_m`: {j:?} is not a positive number"))),
                },
                None => None,
            },
        })
    }

    /// Writes the heads atomically (temporary file, then rename).
    pub fn save(&self, path: &Path) -> Result<()> {
        let mut t = HashMap::new();
        self.image.tensors("image", &mut t);
        self.text.tensors("text", &mut t);
        t.insert(
            "logit_scale".into(),
            Tensor::new(&[self.logit_scale], &Device::Cpu)?,
        );
        let mut meta = HashMap::from([(
            "config".to_string(),
            serde_json::to_string(&self.config).map_err(|e| Error::InvalidInput(e.to_string()))?,
        )]);
        if !self.trained_on.is_empty() {
            meta.insert(
                "trained_on".to_string(),
                serde_json::to_string(&self.trained_on).map_err(|e| Error::InvalidInput(e.to_string()))?,
            );
        }
        if let Some(g) = self.ground_size_m {
            meta.insert("ground_size_m".to_string(), g.to_string());
        }
        let owned = t
            .iter()
            .map(|(k, v)| {
                let data: Vec<f32> = v.flatten_all()?.to_vec1()?;
                Ok((
                    k.clone(),
                    v.dims().to_vec(),
                    data.iter().flat_map(|x| x.to_le_bytes()).collect(),
                ))
            })
            .collect::<Result<Vec<(String, Vec<usize>, Vec<u8>)>>>()?;
        let views = owned
            .iter()
            .map(|(k, shape, data)| {
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), data)
                    .map(|v| (k.clone(), v))
            })
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| Error::checkpoint(path, e.to_string()))?;
        let bytes =
            safetensors::serialize(views, Some(meta)).map_err(|e| Error::checkpoint(path, e.to_string()))?;
        crate::atomic::write(path, &bytes)
    }
}

/// Paired features of one split: images, captions, and which image each caption describes.
#[derive(Debug, Clone)]
pub struct PairedFeatures {
    /// [N_images, image_in]
    pub images: Tensor,
    /// [N_texts, text_in]
    pub texts: Tensor,
    /// For each text, the row of its image.
    pub text_image: Vec<usize>,
    /// For each text, its string (identical captions are positives of each other).
    pub text_strings: Vec<String>,
    /// Class of each image (for the optional class-aware positives and for zero-shot tests).
    pub image_class: Vec<usize>,
    /// Augmented views per image: `images` holds `views` blocks of `image_class.len()` rows
    /// (view-major, view 0 first); training draws one view per caption per epoch, evaluation uses
    /// view 0.
    pub views: usize,
}

/// Which pairs in a batch count as positives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Positives {
    /// A caption and its own image only (plain CLIP).
    Pair,
    /// Also any pair whose captions are the same string (UCM-captions repeats captions across
    /// images).
    #[default]
    SameCaption,
    /// Also any two items of the same class.
    SameClass,
}

/// Training hyper-parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    pub dim: usize,
    pub hidden: Option<usize>,
    pub epochs: usize,
    pub batch_size: usize,
    pub lr: f64,
    pub weight_decay: f64,
    /// Initial temperature; `exp(logit_scale) = 1 / temperature`.
    pub temperature: f64,
    pub learn_temperature: bool,
    pub positives: Positives,
    pub seed: u64,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            dim: 256,
            hidden: None,
            epochs: 60,
            batch_size: 256,
            lr: 1e-3,
            weight_decay: 0.05,
            temperature: 0.07,
            learn_temperature: true,
            positives: Positives::SameCaption,
            seed: 0,
        }
    }
}

/// What training reports: the chosen epoch and its validation metrics.
#[derive(Debug, Clone, Serialize)]
pub struct TrainReport {
    pub best_epoch: usize,
    pub val: RetrievalMetrics,
    pub final_loss: f32,
}

struct TrainableHead {
    pre: Option<(PreConfig, Var, Var)>,
    mean: Tensor,
    inv_std: Tensor,
    vars: Vec<(Var, Var)>,
}

impl TrainableHead {
    fn new(
        features: &Tensor,
        cfg: &TrainConfig,
        rng: &mut rand::rngs::StdRng,
        pre: Option<PreInit>,
    ) -> Result<Self> {
        let (pre, features) = match pre {
            Some(p) => {
                let frozen = Pre {
                    cfg: p.cfg,
                    weight_t: p.weight_t.clone(),
                    bias: p.bias.clone(),
                };
                // Standardisation statistics of the pretrained layer's pooled output, in chunks.
                let n = features.dim(0)?;
                let parts = (0..n)
                    .step_by(512)
                    .map(|i| frozen.forward(&features.narrow(0, i, 512.min(n - i))?))
                    .collect::<candle_core::Result<Vec<_>>>()?;
                let pooled = Tensor::cat(&parts, 0)?;
                let pre = (p.cfg, Var::from_tensor(&p.weight_t)?, Var::from_tensor(&p.bias)?);
                (Some(pre), pooled)
            }
            None => (None, features.clone()),
        };
        let features = &features;
        let mean = features.mean_keepdim(0)?;
        let var = features.broadcast_sub(&mean)?.sqr()?.mean_keepdim(0)?;
        let inv_std = (var + 1e-6)?.sqrt()?.recip()?;
        let d_in = features.dim(1)?;
        let mut dims = vec![d_in];
        dims.extend(cfg.hidden);
        dims.push(cfg.dim);
        let vars = dims
            .windows(2)
            .map(|w| {
                let (i, o) = (w[0], w[1]);
                let std = (1.0 / i as f64).sqrt() as f32;
                let normal =
                    rand_distr::Normal::new(0.0f32, std).map_err(|e| Error::InvalidInput(e.to_string()))?;
                let data: Vec<f32> = (0..i * o).map(|_| normal.sample(rng)).collect();
                let w = Var::from_tensor(&Tensor::from_vec(data, (o, i), &Device::Cpu)?)?;
                let b = Var::from_tensor(&Tensor::zeros(o, DType::F32, &Device::Cpu)?)?;
                Ok((w, b))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            pre,
            mean,
            inv_std,
            vars,
        })
    }

    fn head(&self) -> Head {
        Head {
            pre: self.pre.as_ref().map(|(cfg, w, b)| Pre {
                cfg: *cfg,
                weight_t: w.as_tensor().clone(),
                bias: b.as_tensor().clone(),
            }),
            mean: self.mean.clone(),
            inv_std: self.inv_std.clone(),
            layers: self
                .vars
                .iter()
                .map(|(w, b)| Linear::new(w.as_tensor().clone(), Some(b.as_tensor().clone())))
                .collect(),
        }
    }

    /// A copy of the current weights that later optimizer steps do not change (a `Var`'s tensor
    /// is updated in place).
    fn snapshot(&self) -> Result<Head> {
        let pre = match &self.pre {
            Some((cfg, w, b)) => Some(Pre {
                cfg: *cfg,
                weight_t: w.as_tensor().copy()?,
                bias: b.as_tensor().copy()?,
            }),
            None => None,
        };
        Ok(Head {
            pre,
            mean: self.mean.clone(),
            inv_std: self.inv_std.clone(),
            layers: self
                .vars
                .iter()
                .map(|(w, b)| Ok(Linear::new(w.as_tensor().copy()?, Some(b.as_tensor().copy()?))))
                .collect::<Result<_>>()?,
        })
    }

    fn params(&self) -> Vec<Var> {
        let mut p: Vec<Var> = self
            .vars
            .iter()
            .flat_map(|(w, b)| [w.clone(), b.clone()])
            .collect();
        if let Some((_, w, b)) = &self.pre {
            p.push(w.clone());
            p.push(b.clone());
        }
        p
    }
}

/// The pretrained pointwise layer that [`train_with`] fine-tunes in front of the image head.
#[derive(Debug, Clone)]
pub struct PreInit {
    pub cfg: PreConfig,
    /// [channels, out]
    pub weight_t: Tensor,
    /// [out]
    pub bias: Tensor,
}

/// Trains both heads on `train`, choosing the epoch with the best validation mean recall.
pub fn train(
    train: &PairedFeatures,
    val: &PairedFeatures,
    cfg: &TrainConfig,
) -> Result<(Adapters, TrainReport)> {
    train_with(train, &[val], cfg, None)
}

/// [`train`], optionally also fine-tuning the image tower's last layer (`pre`); the image
/// features are then the tower's trunk outputs. With several validation sets the epoch is
/// chosen by their [`macro_average`] (each set counts the same, whatever its size).
pub fn train_with(
    train: &PairedFeatures,
    vals: &[&PairedFeatures],
    cfg: &TrainConfig,
    pre: Option<PreInit>,
) -> Result<(Adapters, TrainReport)> {
    if vals.is_empty() {
        return Err(Error::InvalidInput("no validation set".into()));
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(cfg.seed);
    let image_pre = pre.as_ref().map(|p| p.cfg);
    let img_head = TrainableHead::new(&train.images, cfg, &mut rng, pre)?;
    let txt_head = TrainableHead::new(&train.texts, cfg, &mut rng, None)?;
    let logit_scale = Var::new(&[(1.0 / cfg.temperature).ln() as f32], &Device::Cpu)?;
    let mut params = img_head.params();
    params.extend(txt_head.params());
    if cfg.learn_temperature {
        params.push(logit_scale.clone());
    }
    let mut opt = candle_nn::AdamW::new(
        params,
        candle_nn::ParamsAdamW {
            lr: cfg.lr,
            weight_decay: cfg.weight_decay,
            ..Default::default()
        },
    )?;
    let config = AdapterConfig {
        image_in: img_head.mean.dim(1)?,
        text_in: train.texts.dim(1)?,
        dim: cfg.dim,
        hidden: cfg.hidden,
        image_pre,
    };
    let snapshot = |ls: &Var| -> Result<Adapters> {
        Ok(Adapters {
            config: config.clone(),
            image: img_head.snapshot()?,
            text: txt_head.snapshot()?,
            logit_scale: ls.as_tensor().to_vec1::<f32>()?[0],
            trained_on: Vec::new(),
            ground_size_m: None,
        })
    };
    let mut order: Vec<usize> = (0..train.text_image.len()).collect();
    let mut best: Option<(f32, usize, Adapters, RetrievalMetrics)> = None;
    let mut final_loss = f32::NAN;
    for epoch in 0..cfg.epochs {
        order.shuffle(&mut rng);
        let mut loss_sum = 0.0;
        let mut batches = 0;
        for batch in order.chunks(cfg.batch_size) {
            if batch.len() < 2 {
                continue;
            }
            let n_img = train.image_class.len();
            let img_rows: Vec<u32> = batch
                .iter()
                .map(|&t| {
                    let v = if train.views > 1 {
                        rng.random_range(0..train.views)
                    } else {
                        0
                    };
                    (v * n_img + train.text_image[t]) as u32
                })
                .collect();
            let txt_rows: Vec<u32> = batch.iter().map(|&t| t as u32).collect();
            let imgs = train
                .images
                .index_select(&Tensor::new(img_rows.as_slice(), &Device::Cpu)?, 0)?;
            let txts = train
                .texts
                .index_select(&Tensor::new(txt_rows.as_slice(), &Device::Cpu)?, 0)?;
            let zi = img_head.head().forward(&imgs)?;
            let zt = txt_head.head().forward(&txts)?;
            let logits = zi
                .matmul(&zt.t()?)?
                .broadcast_mul(&logit_scale.as_tensor().clamp(0.0, 4.6052)?.exp()?)?;
            let targets = positive_targets(train, batch, cfg.positives)?;
            let loss = ((soft_cross_entropy(&logits, &targets)?
                + soft_cross_entropy(&logits.t()?, &targets.t()?)?)?
                * 0.5)?;
            opt.backward_step(&loss)?;
            loss_sum += loss.to_scalar::<f32>()?;
            batches += 1;
        }
        final_loss = loss_sum / batches.max(1) as f32;
        let adapters = snapshot(&logit_scale)?;
        let m = macro_average(
            &vals
                .iter()
                .map(|v| evaluate(&adapters, v))
                .collect::<Result<Vec<_>>>()?,
        );
        tracing::info!(
            epoch,
            loss = final_loss,
            mean_recall = m.mean_recall,
            "adapter epoch"
        );
        if best.as_ref().is_none_or(|b| m.mean_recall > b.0) {
            best = Some((m.mean_recall, epoch, adapters, m));
        }
    }
    let (_, best_epoch, adapters, val_metrics) =
        best.ok_or_else(|| Error::InvalidInput("no training epoch ran (epochs = 0?)".into()))?;
    Ok((
        adapters,
        TrainReport {
            best_epoch,
            val: val_metrics,
            final_loss,
        },
    ))
}

/// Retrieval metrics of `adapters` on a split.
pub fn evaluate(adapters: &Adapters, split: &PairedFeatures) -> Result<RetrievalMetrics> {
    let zi = adapters
        .image
        .forward(&split.images.narrow(0, 0, split.image_class.len())?)?;
    let zt = adapters.text.forward(&split.texts)?;
    let scores: Vec<Vec<f32>> = zt.matmul(&zi.t()?)?.to_vec2()?;
    Ok(retrieval_metrics(&scores, &split.text_image))
}

/// Row-normalised target matrix [B, B]: 1 where text `batch[i]` and the image of `batch[j]` match.
fn positive_targets(data: &PairedFeatures, batch: &[usize], rule: Positives) -> Result<Tensor> {
    let n = batch.len();
    let mut t = vec![0f32; n * n];
    for (i, &a) in batch.iter().enumerate() {
        for (j, &b) in batch.iter().enumerate() {
            let (ia, ib) = (data.text_image[a], data.text_image[b]);
            let pos = ia == ib
                || match rule {
                    Positives::Pair => false,
                    Positives::SameCaption => data.text_strings[a] == data.text_strings[b],
                    Positives::SameClass => data.image_class[ia] == data.image_class[ib],
                };
            if pos {
                t[i * n + j] = 1.0;
            }
        }
    }
    let t = Tensor::from_vec(t, (n, n), &Device::Cpu)?;
    Ok(t.broadcast_div(&t.sum_keepdim(1)?)?)
}

/// Cross-entropy against soft targets, averaged over rows.
fn soft_cross_entropy(logits: &Tensor, targets: &Tensor) -> candle_core::Result<Tensor> {
    let logp = candle_nn::ops::log_softmax(logits, D::Minus1)?;
    (targets * logp)?.sum(D::Minus1)?.mean_all()?.neg()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two synthetic "modalities" that are random linear images of shared latent classes: the
    /// heads must learn to align them far above chance.
    fn synthetic(n_img: usize, seed: u64) -> PairedFeatures {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let normal = rand_distr::Normal::new(0.0f32, 1.0).unwrap();
        let latent = 8;
        let mut proj = |d: usize| {
            (0..latent * d)
                .map(|_| normal.sample(&mut rng))
                .collect::<Vec<_>>()
        };
        let (pi, pt) = (proj(40), proj(24));
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed + 1);
        let mut images = Vec::new();
        let mut texts = Vec::new();
        let mut text_image = Vec::new();
        for i in 0..n_img {
            let z: Vec<f32> = (0..latent).map(|_| normal.sample(&mut rng)).collect();
            let map = |p: &[f32], d: usize, rng: &mut rand::rngs::StdRng| {
                (0..d)
                    .map(|k| (0..latent).map(|l| z[l] * p[l * d + k]).sum::<f32>() + 0.1 * normal.sample(rng))
                    .collect::<Vec<f32>>()
            };
            images.extend(map(&pi, 40, &mut rng));
            for _ in 0..2 {
                texts.extend(map(&pt, 24, &mut rng));
                text_image.push(i);
            }
        }
        PairedFeatures {
            images: Tensor::from_vec(images, (n_img, 40), &Device::Cpu).unwrap(),
            texts: Tensor::from_vec(texts, (2 * n_img, 24), &Device::Cpu).unwrap(),
            text_strings: (0..2 * n_img).map(|i| i.to_string()).collect(),
            text_image,
            image_class: vec![0; n_img],
            views: 1,
        }
    }

    /// With a trainable pointwise layer in front of the image head (trunk features in), training
    /// still aligns the modalities, changes that layer, and the file round-trips it.
    #[test]
    fn trains_a_pre_layer_and_round_trips_it() -> Result<()> {
        // Trunk features: 4 positions x 10 channels, each position a noisy copy of the image's
        // 40-d features folded into 10 channels.
        let trunk = |d: &PairedFeatures| -> Result<PairedFeatures> {
            let n = d.images.dim(0)?;
            let x = d.images.reshape((n, 4, 10))?;
            Ok(PairedFeatures {
                images: x.flatten_from(1)?,
                ..d.clone()
            })
        };
        let (train_set, val_set) = (trunk(&synthetic(300, 5))?, trunk(&synthetic(60, 5))?);
        let mut rng = rand::rngs::StdRng::seed_from_u64(9);
        let normal = rand_distr::Normal::new(0.0f32, 0.3).unwrap();
        let w: Vec<f32> = (0..10 * 16).map(|_| normal.sample(&mut rng)).collect();
        let pre = PreInit {
            cfg: PreConfig {
                positions: 4,
                channels: 10,
                out: 16,
            },
            weight_t: Tensor::from_vec(w, (10, 16), &Device::Cpu)?,
            bias: Tensor::full(0.1f32, 16, &Device::Cpu)?,
        };
        let cfg = TrainConfig {
            dim: 16,
            epochs: 30,
            batch_size: 64,
            lr: 1e-2,
            ..Default::default()
        };
        let (adapters, report) = train_with(&train_set, &[&val_set], &cfg, Some(pre.clone()))?;
        assert!(report.val.t2i[0] > 0.2, "{:?}", report.val);
        let trained = adapters.image.pre.as_ref().expect("pre layer kept");
        assert_ne!(
            trained.weight_t.to_vec2::<f32>()?,
            pre.weight_t.to_vec2::<f32>()?,
            "not trained"
        );

        let dir = std::env::temp_dir().join(format!("nadir-adapters-pre-{}", std::process::id()));
        let path = dir.join("a.safetensors");
        adapters.save(&path)?;
        let back = Adapters::load(&path)?;
        assert_eq!(back.config.image_pre, Some(pre.cfg));
        assert_eq!(evaluate(&back, &val_set)?, report.val);
        std::fs::remove_dir_all(&dir).ok();
        Ok(())
    }

    #[test]
    fn snapshots_do_not_follow_later_optimizer_steps() -> Result<()> {
        let data = synthetic(20, 3);
        let mut rng = rand::rngs::StdRng::seed_from_u64(0);
        let head = TrainableHead::new(&data.images, &TrainConfig::default(), &mut rng, None)?;
        let before = head.snapshot()?;
        let w0: Vec<Vec<f32>> = before.layers[0].weight().to_vec2()?;
        let mut opt = candle_nn::SGD::new(head.params(), 0.5)?;
        let loss = head.head().forward(&data.images)?.sum_all()?;
        opt.backward_step(&loss)?;
        assert_eq!(
            before.layers[0].weight().to_vec2::<f32>()?,
            w0,
            "snapshot changed"
        );
        assert_ne!(
            head.head().layers[0].weight().to_vec2::<f32>()?,
            w0,
            "the step did nothing"
        );
        Ok(())
    }

    #[test]
    fn learns_an_alignment_and_round_trips_through_a_file() -> Result<()> {
        let (train_set, val_set) = (synthetic(300, 1), synthetic(60, 1));
        let cfg = TrainConfig {
            dim: 16,
            epochs: 40,
            batch_size: 64,
            lr: 1e-2,
            ..Default::default()
        };
        let (adapters, report) = train(&train_set, &val_set, &cfg)?;
        // Chance R@1 is 1/60.
        assert!(report.val.t2i[0] > 0.5, "{:?}", report.val);

        let dir = std::env::temp_dir().join(format!("nadir-adapters-{}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        let path = dir.join("a.safetensors");
        adapters.save(&path)?;
        let back = Adapters::load(&path)?;
        assert_eq!(back.config, adapters.config);
        let again = evaluate(&back, &val_set)?;
        assert_eq!(again, report.val);
        std::fs::remove_dir_all(&dir).ok();

        // The returned adapters are the chosen epoch's, not the last epoch's.
        assert_eq!(evaluate(&adapters, &val_set)?, report.val);

        // Same seed, same result.
        let (_, report2) = train(&train_set, &val_set, &cfg)?;
        assert_eq!(report2.val, report.val);
        Ok(())
    }
}
