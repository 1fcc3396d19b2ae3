//! Training the decoder: chips with dense or sparse labels, partial cross-entropy with class
//! weights ([`crate::loss`]), flips and quarter turns, AdamW, early stopping on validation mIoU.
//!
//! The encoder is frozen, so the features of each (chip, augmentation) are computed once and kept
//! in a bounded cache; an epoch then costs little more than the decoder's forward and backward.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use candle_core::{DType, Tensor};
use candle_nn::optim::{AdamW, Optimizer, ParamsAdamW};
use indicatif::{ProgressBar, ProgressStyle};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use crate::config::IGNORE;
use crate::dataset::Chip;
use crate::error::{Error, Result};
use crate::loss::upsampled_cross_entropy;
use crate::metrics::{Confusion, Scores};
use crate::model::Segmenter;

/// How to train.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainOptions {
    pub max_epochs: usize,
    /// A budget of optimiser steps: fewer epochs are run when the set is large (None: no budget).
    pub max_steps: Option<usize>,
    /// Stop after this many epochs without a better validation mIoU.
    pub patience: usize,
    pub batch_size: usize,
    pub learning_rate: f64,
    pub weight_decay: f64,
    /// Random flips and quarter turns of each chip.
    pub augment: bool,
    pub seed: u64,
    /// Memory for cached encoder features, in bytes.
    pub cache_bytes: usize,
    pub progress: bool,
}

impl Default for TrainOptions {
    fn default() -> Self {
        Self {
            max_epochs: 40,
            max_steps: Some(600),
            patience: 8,
            batch_size: 8,
            learning_rate: 2e-3,
            weight_decay: 1e-4,
            augment: true,
            seed: 0,
            cache_bytes: 3 << 30,
            progress: false,
        }
    }
}

/// One epoch of training.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EpochLog {
    pub epoch: usize,
    pub loss: f64,
    pub val_miou: f64,
    pub seconds: f64,
}

/// What training did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TrainReport {
    pub encoder: String,
    pub train_chips: usize,
    pub val_chips: usize,
    /// Labelled training pixels (all of them with dense masks, the clicks with sparse ones).
    pub labelled_pixels: u64,
    pub class_weights: Vec<f32>,
    pub history: Vec<EpochLog>,
    /// The epoch whose weights were kept (1-based).
    pub best_epoch: usize,
    /// Validation scores of the kept weights (on the training chips when there was no
    /// validation chip).
    pub val: Scores,
    pub stopped_early: bool,
    pub seconds: f64,
}

/// Trains `model`'s decoder on `train` chips, keeping the weights of the epoch with the best mIoU
/// on `val` (on `train` itself when `val` is empty).
pub fn train(model: &Segmenter, train: &[Chip], val: &[Chip], opts: &TrainOptions) -> Result<TrainReport> {
    let start = Instant::now();
    let k = model.config().num_classes();
    if train.is_empty() {
        return Err(Error::Invalid("no training chip has a label".into()));
    }
    if opts.batch_size == 0 || opts.max_epochs == 0 {
        return Err(Error::Invalid("batch size and epochs must be positive".into()));
    }
    let (val, val_is_train) = if val.is_empty() {
        tracing::warn!("no validation chips: early stopping watches the training chips");
        (train, true)
    } else {
        (val, false)
    };
    let class_weights = class_weights(train, k);
    let labelled_pixels = train.iter().map(|c| c.labelled() as u64).sum();
    let mut cache = FeatureCache::new(opts.cache_bytes);
    let mut rng = rand::rngs::StdRng::seed_from_u64(opts.seed);
    let params = ParamsAdamW {
        lr: opts.learning_rate,
        weight_decay: opts.weight_decay,
        ..Default::default()
    };
    let mut opt = AdamW::new(model.varmap().all_vars(), params)?;
    let batches = train.len().div_ceil(opts.batch_size);
    let max_epochs = opts.max_steps.map_or(opts.max_epochs, |s| {
        opts.max_epochs.min(s.div_ceil(batches)).max(1)
    });
    let bar = progress_bar(opts.progress, (max_epochs * batches) as u64);
    let mut history = Vec::new();
    let (mut best, mut best_epoch, mut best_weights) = (None::<Confusion>, 0, snapshot(model)?);
    let mut stopped_early = false;
    let mut order: Vec<usize> = (0..train.len()).collect();
    for epoch in 1..=max_epochs {
        let t0 = Instant::now();
        order.shuffle(&mut rng);
        let mut loss_sum = 0.0;
        for batch in order.chunks(opts.batch_size) {
            let keys: Vec<(usize, u8)> = batch
                .iter()
                .map(|&i| (i, if opts.augment { rng.random_range(0..8) } else { 0 }))
                .collect();
            let chips: Vec<Chip> = keys.iter().map(|&(i, v)| train[i].dihedral(v)).collect();
            let maps = cache.features(model, &keys, &chips)?;
            let (w, h) = chips[0].image.dimensions();
            let logits = model.coarse_logits(&maps)?;
            let (targets, weights) = targets(&chips, &class_weights);
            let loss = upsampled_cross_entropy(&logits, targets, weights, (h as usize, w as usize))?;
            opt.backward_step(&loss)?;
            let l = f64::from(loss.to_scalar::<f32>()?);
            loss_sum += l;
            bar.inc(1);
            let last = history.last().map_or(String::new(), |h: &EpochLog| {
                format!("  val mIoU {:.3}", h.val_miou)
            });
            bar.set_message(format!("epoch {epoch} loss {l:.3}{last}"));
        }
        let conf = evaluate(
            model,
            val,
            &mut cache,
            if val_is_train { 0 } else { train.len() },
            opts.batch_size,
        )?;
        let log = EpochLog {
            epoch,
            loss: loss_sum / batches as f64,
            val_miou: conf.miou(),
            seconds: t0.elapsed().as_secs_f64(),
        };
        tracing::info!(epoch, loss = log.loss, val_miou = log.val_miou, "epoch done");
        bar.println(format!(
            "epoch {epoch:>3}  loss {:.4}  val mIoU {:.3}  ({:.1} s)",
            log.loss, log.val_miou, log.seconds
        ));
        let better = best.as_ref().is_none_or(|b| conf.miou() > b.miou() + 1e-6);
        history.push(log);
        if better {
            best = Some(conf);
            best_epoch = epoch;
            best_weights = snapshot(model)?;
        } else if epoch - best_epoch >= opts.patience {
            stopped_early = epoch < max_epochs;
            break;
        }
    }
    bar.finish_and_clear();
    restore(model, &best_weights)?;
    Ok(TrainReport {
        encoder: model.config().encoder.label().into(),
        train_chips: train.len(),
        val_chips: if val_is_train { 0 } else { val.len() },
        labelled_pixels,
        class_weights,
        history,
        best_epoch,
        val: Scores::from(&best.unwrap_or_else(|| Confusion::new(k))),
        stopped_early,
        seconds: start.elapsed().as_secs_f64(),
    })
}

/// Per-class loss weights: `sqrt(median frequency / frequency)` over the labelled training
/// pixels (median-frequency balancing, softened), scaled to mean 1 over the classes present; 0 for
/// a class with no pixel.
pub fn class_weights(chips: &[Chip], k: usize) -> Vec<f32> {
    let mut counts = vec![0u64; k];
    for c in chips {
        for &v in c.mask.as_raw() {
            if usize::from(v) < k {
                counts[usize::from(v)] += 1;
            }
        }
    }
    let mut present: Vec<u64> = counts.iter().copied().filter(|&c| c > 0).collect();
    if present.is_empty() {
        return vec![1.0; k];
    }
    present.sort_unstable();
    let median = present[present.len() / 2] as f64;
    let raw: Vec<f64> = counts
        .iter()
        .map(|&c| if c == 0 { 0.0 } else { (median / c as f64).sqrt() })
        .collect();
    let mean = raw.iter().sum::<f64>() / present.len() as f64;
    raw.iter().map(|w| (w / mean) as f32).collect()
}

/// Targets (u32, unlabelled as 0) and pixel weights (0 where unlabelled), `[B * H * W]`.
fn targets(chips: &[Chip], class_weights: &[f32]) -> (Arc<Vec<u32>>, Arc<Vec<f32>>) {
    let n: usize = chips.iter().map(|c| c.mask.as_raw().len()).sum();
    let (mut t, mut wt) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for c in chips {
        for &v in c.mask.as_raw() {
            if v == IGNORE {
                t.push(0u32);
                wt.push(0f32);
            } else {
                t.push(u32::from(v));
                wt.push(class_weights[usize::from(v)]);
            }
        }
    }
    (Arc::new(t), Arc::new(wt))
}

/// The confusion of `model` on `chips` (as they are, no augmentation).
fn evaluate(
    model: &Segmenter,
    chips: &[Chip],
    cache: &mut FeatureCache,
    key_offset: usize,
    batch: usize,
) -> Result<Confusion> {
    let mut conf = Confusion::new(model.config().num_classes());
    for (b, group) in chips.chunks(batch).enumerate() {
        let keys: Vec<(usize, u8)> = (0..group.len())
            .map(|i| (key_offset + b * batch + i, 0))
            .collect();
        let maps = cache.features(model, &keys, group)?;
        let (w, h) = group[0].image.dimensions();
        let pred = model
            .logits(&maps, (h as usize, w as usize))?
            .argmax(1)?
            .to_dtype(DType::U8)?;
        let pred: Vec<u8> = pred.flatten_all()?.to_vec1()?;
        let plane = (w * h) as usize;
        for (i, c) in group.iter().enumerate() {
            conf.add(c.mask.as_raw(), &pred[i * plane..(i + 1) * plane]);
        }
    }
    Ok(conf)
}

/// Encoder features of (chip, augmentation) keys, computed once while memory allows.
struct FeatureCache {
    map: HashMap<(usize, u8), Vec<Tensor>>,
    bytes: usize,
    budget: usize,
}

impl FeatureCache {
    fn new(budget: usize) -> Self {
        Self {
            map: HashMap::new(),
            bytes: 0,
            budget,
        }
    }

    /// The maps of a batch (each `[B, C, h, w]`); `chips[i]` is what `keys[i]` stands for.
    fn features(&mut self, model: &Segmenter, keys: &[(usize, u8)], chips: &[Chip]) -> Result<Vec<Tensor>> {
        let missing: Vec<usize> = (0..keys.len())
            .filter(|&i| !self.map.contains_key(&keys[i]))
            .collect();
        let mut fresh: HashMap<usize, Vec<Tensor>> = HashMap::new();
        if !missing.is_empty() {
            let images: Vec<_> = missing.iter().map(|&i| chips[i].image.clone()).collect();
            let maps = model.encoder().features(&images)?;
            for (j, &i) in missing.iter().enumerate() {
                let one: Vec<Tensor> = maps
                    .iter()
                    .map(|m| m.narrow(0, j, 1).and_then(|t| t.contiguous()))
                    .collect::<candle_core::Result<_>>()?;
                let size: usize = one.iter().map(|t| t.elem_count() * 4).sum();
                if self.bytes + size <= self.budget {
                    self.bytes += size;
                    self.map.insert(keys[i], one.clone());
                }
                fresh.insert(i, one);
            }
        }
        let per_chip: Vec<&Vec<Tensor>> = (0..keys.len())
            .map(|i| {
                fresh
                    .get(&i)
                    .or_else(|| self.map.get(&keys[i]))
                    .expect("computed or cached")
            })
            .collect();
        let levels = per_chip[0].len();
        (0..levels)
            .map(|l| {
                let parts: Vec<&Tensor> = per_chip.iter().map(|m| &m[l]).collect();
                Ok(Tensor::cat(&parts, 0)?)
            })
            .collect()
    }
}

fn snapshot(model: &Segmenter) -> Result<HashMap<String, Tensor>> {
    let data = model.varmap().data().lock().expect("varmap lock");
    data.iter()
        .map(|(n, v)| Ok((n.clone(), v.as_tensor().copy()?)))
        .collect()
}

fn restore(model: &Segmenter, weights: &HashMap<String, Tensor>) -> Result<()> {
    let data = model.varmap().data().lock().expect("varmap lock");
    for (n, v) in data.iter() {
        v.set(&weights[n])?;
    }
    Ok(())
}

fn progress_bar(show: bool, len: u64) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} training [{elapsed_precise}] {bar:30} {pos}/{len} steps  {msg}",
        )
        .expect("valid template"),
    );
    bar
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rare_classes_weigh_more() {
        let mut mask = image::GrayImage::from_pixel(10, 10, image::Luma([0]));
        mask.put_pixel(0, 0, image::Luma([1]));
        mask.put_pixel(1, 0, image::Luma([IGNORE]));
        let chip = Chip {
            image: image::RgbImage::new(10, 10),
            mask,
        };
        let w = class_weights(&[chip], 3);
        assert!(w[1] > w[0] && w[2] == 0.0);
        assert!(((w[0] + w[1]) / 2.0 - 1.0).abs() < 1e-6);
    }
}
