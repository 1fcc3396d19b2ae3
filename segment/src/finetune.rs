//! `finetune`: a training set folder in, a model folder out. Finds the image/mask pairs, fixes
//! the input stretch, cuts chips (keeping only clicks when asked), trains, and writes the model
//! with its report.

use std::path::PathBuf;

use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde_json::json;

use crate::config::{EncoderSpec, SegmenterConfig};
use nadir_indexer::raster::Scene;

use crate::dataset::{self, keep_clicks, LabelledImage, Split, TrainingSet};
use crate::error::{Error, Result};
use crate::model::Segmenter;
use crate::predict::open_for;
use crate::train::{train, TrainOptions, TrainReport};

/// What to train, from what, into where.
#[derive(Debug, Clone)]
pub struct FinetuneOptions {
    pub train_dir: PathBuf,
    pub out_dir: PathBuf,
    /// A `classes.json` to use instead of the training set's own.
    pub classes: Option<PathBuf>,
    pub encoder: EncoderSpec,
    pub chip: u32,
    pub decoder_channels: usize,
    pub bands: Option<Vec<usize>>,
    /// Keep only this many labelled pixels (clicks) per image.
    pub clicks: Option<usize>,
    /// Share of the training images held out for validation when the set has no `val` split.
    pub val_share: f64,
    pub train: TrainOptions,
}

impl FinetuneOptions {
    /// The defaults of [`SegmenterConfig::lite0_fpn`] and [`TrainOptions`].
    pub fn new(train_dir: PathBuf, out_dir: PathBuf) -> Self {
        let d = SegmenterConfig::lite0_fpn(Vec::new());
        Self {
            train_dir,
            out_dir,
            classes: None,
            encoder: d.encoder,
            chip: d.chip,
            decoder_channels: d.decoder_channels,
            bands: None,
            clicks: None,
            val_share: 0.15,
            train: TrainOptions::default(),
        }
    }
}

/// Trains a model from `opts.train_dir` and writes it to `opts.out_dir`.
pub fn finetune(opts: &FinetuneOptions) -> Result<TrainReport> {
    let out = &opts.out_dir;
    if out.exists()
        && std::fs::read_dir(out)
            .map_err(|e| Error::io(out, e))?
            .next()
            .is_some()
    {
        return Err(Error::input(out, "the model folder exists and is not empty"));
    }
    if !(0.0..1.0).contains(&opts.val_share) {
        return Err(Error::Invalid(format!(
            "val share must be in 0..1, got {}",
            opts.val_share
        )));
    }
    let set = TrainingSet::discover(&opts.train_dir, opts.classes.as_deref())?;
    let mut train_imgs: Vec<&LabelledImage> = set.split(Split::Train);
    let mut val_imgs: Vec<&LabelledImage> = set.split(Split::Val);
    if val_imgs.is_empty() && train_imgs.len() >= 2 && opts.val_share > 0.0 {
        train_imgs.shuffle(&mut rand::rngs::StdRng::seed_from_u64(opts.train.seed));
        let n = ((train_imgs.len() as f64 * opts.val_share).round() as usize).clamp(1, train_imgs.len() - 1);
        val_imgs = train_imgs.split_off(train_imgs.len() - n);
        train_imgs.sort_by(|a, b| a.image.cmp(&b.image));
    }
    if train_imgs.is_empty() {
        return Err(Error::input(
            &opts.train_dir,
            "no training images (only val/test splits)",
        ));
    }
    tracing::info!(
        train = train_imgs.len(),
        val = val_imgs.len(),
        classes = set.classes.classes.len(),
        "training set"
    );

    let mut cfg = SegmenterConfig::lite0_fpn(set.classes.classes.clone());
    cfg.encoder = opts.encoder.clone();
    cfg.chip = opts.chip;
    cfg.decoder_channels = opts.decoder_channels;
    cfg.bands = opts.bands.clone();
    let (train_scenes, stretch) = dataset::open_training(
        train_imgs.iter().map(|li| li.image.as_path()),
        cfg.bands.as_deref(),
    )?;
    cfg.stretch = stretch;
    let model = Segmenter::new(cfg, opts.train.seed)?;
    let val_scenes = val_imgs
        .iter()
        .map(|li| open_for(&model, &li.image))
        .collect::<Result<Vec<_>>>()?;

    let mut rng = rand::rngs::StdRng::seed_from_u64(opts.train.seed ^ 0xc11c);
    let mut to_chips = |scenes: Vec<Scene>, imgs: &[&LabelledImage]| -> Result<Vec<dataset::Chip>> {
        let mut out = Vec::new();
        for (scene, li) in scenes.into_iter().zip(imgs) {
            let (w, h, mut mask) = dataset::read_mask(&li.mask, &set.classes)?;
            if (w, h) != scene.size() {
                return Err(Error::input(
                    &li.mask,
                    format!(
                        "mask is {w}x{h}, its image {} is {:?}",
                        li.image.display(),
                        scene.size()
                    ),
                ));
            }
            if let Some(n) = opts.clicks {
                keep_clicks(&mut mask, n, &mut rng);
            }
            out.extend(dataset::chips(&scene, &mask, &li.mask, model.config().chip)?);
        }
        Ok(out)
    };
    let train_chips = to_chips(train_scenes, &train_imgs)?;
    let val_chips = to_chips(val_scenes, &val_imgs)?;
    let report = train(&model, &train_chips, &val_chips, &opts.train)?;
    let names =
        |v: &[&LabelledImage]| -> Vec<String> { v.iter().map(|l| l.image.display().to_string()).collect() };
    let doc = json!({
        "training_set": opts.train_dir.display().to_string(),
        "train_images": names(&train_imgs),
        "val_images": names(&val_imgs),
        "clicks_per_image": opts.clicks,
        "options": {
            "max_epochs": opts.train.max_epochs,
            "patience": opts.train.patience,
            "batch_size": opts.train.batch_size,
            "learning_rate": opts.train.learning_rate,
            "weight_decay": opts.train.weight_decay,
            "augment": opts.train.augment,
            "seed": opts.train.seed,
        },
        "report": report,
    });
    model.save(out, &doc)?;
    Ok(report)
}
