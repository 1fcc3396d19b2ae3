//! Throughput measurement of the encoders (`nadir bench clip`): images/s and texts/s per batch
//! size, model work only (inputs already preprocessed and tokenized), on random weights of a
//! real architecture, so that no checkpoint is needed and the work equals the real model's.

use std::time::{Duration, Instant};

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};

use crate::config::ClipConfig;
use crate::error::Result;
use crate::model::Clip;
use crate::tokenizer::ClipTokenizer;

/// One row of the table.
#[derive(Debug, Clone, PartialEq)]
pub struct BenchRow {
    pub batch: usize,
    pub images_per_s: f64,
    pub texts_per_s: f64,
}

/// Captions of realistic length for the text side.
const CAPTIONS: &[&str] = &[
    "dense residential near the coast",
    "many buildings and green trees are around a playground",
    "an airplane is stopped at the airport",
    "a river with a bridge over it, surrounded by farmland",
    "several storage tanks next to a parking lot",
    "a baseball diamond beside some green trees",
    "there are many white boats in the harbor",
    "a long runway with marks on it",
];

/// Times `cfg` with random weights at each batch size, for about `min_time` per cell.
pub fn bench_clip(cfg: &ClipConfig, batches: &[usize], min_time: Duration) -> Result<Vec<BenchRow>> {
    let device = Device::Cpu;
    let varmap = VarMap::new();
    let model = Clip::new(VarBuilder::from_varmap(&varmap, DType::F32, &device), cfg)?;
    let tokenizer = ClipTokenizer::new(cfg.text.context_length)?;
    let s = cfg.vision.image_size;
    let mut rows = Vec::new();
    for &batch in batches {
        let pixels = Tensor::randn(0f32, 1.0, (batch, 3, s, s), &device)?;
        let texts: Vec<&str> = CAPTIONS.iter().cycle().take(batch).copied().collect();
        let ids: Vec<u32> = tokenizer.tokenize_batch(&texts)?.into_iter().flatten().collect();
        let tokens = Tensor::from_vec(ids, (batch, cfg.text.context_length), &device)?;
        let images_per_s = throughput(batch, min_time, || model.encode_image(&pixels).map(drop))?;
        let texts_per_s = throughput(batch, min_time, || model.encode_text(&tokens).map(drop))?;
        tracing::info!(batch, images_per_s, texts_per_s, "bench cell done");
        rows.push(BenchRow {
            batch,
            images_per_s,
            texts_per_s,
        });
    }
    Ok(rows)
}

fn throughput(
    batch: usize,
    min_time: Duration,
    mut f: impl FnMut() -> candle_core::Result<()>,
) -> Result<f64> {
    f()?; // warm-up
    let start = Instant::now();
    let mut done = 0;
    while done == 0 || start.elapsed() < min_time {
        f()?;
        done += batch;
    }
    Ok(done as f64 / start.elapsed().as_secs_f64())
}
