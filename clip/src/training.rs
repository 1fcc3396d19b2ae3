//! `nadir train-adapters`: aligning the `nadir-lite` towers on UCM-captions. Reads the dataset,
//! computes (and caches) frozen tower features, trains the adapters on `train`, chooses the
//! epoch on `val`, and reports retrieval recall and zero-shot accuracy on `val`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Module, Tensor};
use image::RgbImage;
use serde::Serialize;
use sha2::Digest;

use crate::adapter::{
    evaluate, train_with, Adapters, PairedFeatures, PreConfig, PreInit, TrainConfig, TrainReport,
};
use crate::error::{Error, Result};
use crate::eval::{zero_shot_accuracy, RetrievalMetrics};
use crate::lite::LiteTowers;
use crate::preprocess::load_rgb;
use crate::ucm::{class_phrase, read_ucm, UcmRecord};

/// Prompt templates for zero-shot classification (and for prompt augmentation in training).
pub const PROMPTS: &[&str] = &[
    "an aerial photo of {}.",
    "a satellite image of {}.",
    "an aerial image showing {}.",
    "a remote sensing image of {}.",
];

/// Options of one alignment run.
#[derive(Debug, Clone, Serialize)]
pub struct AlignOptions {
    /// The folder with `captions.csv` and `images/`.
    #[serde(skip)]
    pub ucm_root: PathBuf,
    /// Where tower features are cached between runs.
    #[serde(skip)]
    pub cache_dir: PathBuf,
    /// Dihedral views per training image (1 = none; up to 8: rotations and flips).
    pub image_views: usize,
    /// Add the class prompts as extra captions of each training image.
    pub prompt_augmentation: bool,
    /// Also fine-tune the image tower's last layer (`_conv_head`, BatchNorm folded).
    pub unfreeze_head: bool,
    pub train: TrainConfig,
}

/// What an alignment run measured on `val`.
#[derive(Debug, Clone, Serialize)]
pub struct AlignReport {
    pub options: AlignOptions,
    pub train_images: usize,
    pub train_captions: usize,
    pub val_images: usize,
    pub val_captions: usize,
    pub train_report: TrainReport,
    /// Retrieval on `val` with the chosen epoch.
    pub val: RetrievalMetrics,
    /// Zero-shot accuracy on `val` images, one per prompt template, then the template ensemble.
    pub zero_shot: Vec<(String, f32)>,
}

/// Runs one alignment and returns the adapters and their report.
pub fn align(towers: &LiteTowers, opts: &AlignOptions) -> Result<(Adapters, AlignReport)> {
    let records = read_ucm(&opts.ucm_root)?;
    let classes: Vec<String> = {
        let mut c: Vec<String> = records.iter().map(|r| r.class.clone()).collect();
        c.sort();
        c.dedup();
        c
    };
    let split = |name: &str| {
        records
            .iter()
            .filter(|r| r.split == name)
            .cloned()
            .collect::<Vec<_>>()
    };
    let (train_recs, val_recs) = (split("train"), split("val"));
    if train_recs.is_empty() || val_recs.is_empty() {
        return Err(Error::InvalidInput(format!(
            "{}: need both `train` and `val` rows",
            opts.ucm_root.join("captions.csv").display()
        )));
    }
    let cache = FeatureCache::new(&opts.cache_dir, &towers.files_sha256)?;
    let trunk = opts.unfreeze_head;
    let train_set = paired(
        towers,
        &cache,
        &train_recs,
        &classes,
        opts.image_views,
        opts.prompt_augmentation,
        trunk,
    )?;
    let val_set = paired(towers, &cache, &val_recs, &classes, 1, false, trunk)?;
    let pre = if trunk {
        let (weight_t, bias) = towers.image.head_parameters();
        let (channels, out) = weight_t.dims2()?;
        Some(PreInit {
            cfg: PreConfig {
                positions: train_set.images.dim(1)? / channels,
                channels,
                out,
            },
            weight_t,
            bias,
        })
    } else {
        None
    };
    let (adapters, train_report) = train_with(&train_set, &val_set, &opts.train, pre)?;
    let val = evaluate(&adapters, &val_set)?;
    let zero_shot = zero_shot(towers, &adapters, &val_set, &classes)?;
    let report = AlignReport {
        options: opts.clone(),
        train_images: train_recs.len(),
        train_captions: train_set.text_image.len(),
        val_images: val_recs.len(),
        val_captions: val_set.text_image.len(),
        train_report,
        val,
        zero_shot,
    };
    Ok((adapters, report))
}

/// Zero-shot accuracy per template and for the mean of the templates' text embeddings.
pub fn zero_shot(
    towers: &LiteTowers,
    adapters: &Adapters,
    split: &PairedFeatures,
    classes: &[String],
) -> Result<Vec<(String, f32)>> {
    let images = split.images.narrow(0, 0, split.image_class.len())?;
    let zi = adapters.image.forward(&images)?;
    let mut out = Vec::new();
    let mut sum: Option<Tensor> = None;
    for template in PROMPTS {
        let prompts: Vec<String> = classes
            .iter()
            .map(|c| template.replace("{}", &class_phrase(c)))
            .collect();
        let refs: Vec<&str> = prompts.iter().map(String::as_str).collect();
        let zt = adapters.text.forward(&towers.text_features(&refs)?)?;
        let scores: Vec<Vec<f32>> = zi.matmul(&zt.t()?)?.to_vec2()?;
        out.push((
            template.to_string(),
            zero_shot_accuracy(&scores, &split.image_class),
        ));
        sum = Some(match sum {
            None => zt,
            Some(s) => (s + zt)?,
        });
    }
    if let Some(s) = sum {
        let scores: Vec<Vec<f32>> = zi.matmul(&s.t()?)?.to_vec2()?;
        out.push((
            "ensemble".to_string(),
            zero_shot_accuracy(&scores, &split.image_class),
        ));
    }
    Ok(out)
}

/// The eight symmetries of the square; aerial scenes have no up.
fn view(img: &RgbImage, v: usize) -> RgbImage {
    use image::imageops::{flip_horizontal, rotate180, rotate270, rotate90};
    match v % 8 {
        0 => img.clone(),
        1 => flip_horizontal(img),
        2 => rotate90(img),
        3 => rotate180(img),
        4 => rotate270(img),
        5 => rotate90(&flip_horizontal(img)),
        6 => rotate180(&flip_horizontal(img)),
        _ => rotate270(&flip_horizontal(img)),
    }
}

fn paired(
    towers: &LiteTowers,
    cache: &FeatureCache,
    recs: &[UcmRecord],
    classes: &[String],
    views: usize,
    prompts: bool,
    trunk: bool,
) -> Result<PairedFeatures> {
    let views = views.clamp(1, 8);
    // Rows: view-major blocks, so that view 0 of every image comes first.
    let mut blocks = Vec::new();
    for v in 0..views {
        let key: Vec<String> = recs
            .iter()
            .map(|r| format!("{}#{v}", r.image.display()))
            .collect();
        blocks.push(
            cache.get_or_compute(if trunk { "trunk" } else { "image" }, &key, || {
                tracing::info!(images = recs.len(), view = v, "computing image features");
                let bar = indicatif::ProgressBar::new(recs.len() as u64).with_style(
                    indicatif::ProgressStyle::with_template(
                        "{msg} {bar:30} {pos}/{len} images, {per_sec}, ETA {eta}",
                    )
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
                );
                bar.set_message(format!("image features, view {}/{views}", v + 1));
                let mut parts = Vec::new();
                for chunk in recs.chunks(64) {
                    let imgs = chunk
                        .iter()
                        .map(|r| load_rgb(&r.image).map(|i| view(&i, v)))
                        .collect::<Result<Vec<_>>>()?;
                    parts.push(towers.image_rows(&imgs, trunk)?);
                    bar.inc(chunk.len() as u64);
                }
                bar.finish_and_clear();
                Ok(Tensor::cat(&parts, 0)?)
            })?,
        );
    }
    let images = Tensor::cat(&blocks, 0)?;
    let mut text_strings = Vec::new();
    let mut text_image = Vec::new();
    for (i, r) in recs.iter().enumerate() {
        for c in &r.captions {
            text_strings.push(c.clone());
            text_image.push(i);
        }
        if prompts {
            for t in PROMPTS {
                text_strings.push(t.replace("{}", &class_phrase(&r.class)));
                text_image.push(i);
            }
        }
    }
    let texts = cache.get_or_compute("text", &text_strings, || {
        let refs: Vec<&str> = text_strings.iter().map(String::as_str).collect();
        tracing::info!(texts = refs.len(), "computing text features");
        towers.text_features(&refs)
    })?;
    let image_class = recs
        .iter()
        .map(|r| classes.iter().position(|c| *c == r.class).unwrap_or(0))
        .collect();
    Ok(PairedFeatures {
        images,
        texts,
        text_image,
        text_strings,
        image_class,
        views,
    })
}

/// Tower features on disk, keyed by the towers' checksum and the exact list of inputs.
struct FeatureCache {
    dir: PathBuf,
}

impl FeatureCache {
    fn new(root: &Path, towers_sha256: &str) -> Result<Self> {
        let dir = root.join(&towers_sha256[..16.min(towers_sha256.len())]);
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        Ok(Self { dir })
    }

    fn get_or_compute(
        &self,
        kind: &str,
        key: &[String],
        f: impl FnOnce() -> Result<Tensor>,
    ) -> Result<Tensor> {
        let mut h = sha2::Sha256::new();
        for k in key {
            h.update(k.as_bytes());
            h.update([0]);
        }
        let path = self
            .dir
            .join(format!("{kind}-{}.safetensors", &hex::encode(h.finalize())[..20]));
        if let Ok(t) = candle_core::safetensors::load(&path, &Device::Cpu) {
            if let Some(x) = t.get("features") {
                return Ok(x.clone());
            }
        }
        let x = f()?;
        let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
        candle_core::safetensors::save(&HashMap::from([("features".to_string(), x.clone())]), &tmp)?;
        std::fs::rename(&tmp, &path).map_err(|e| Error::io(&path, e))?;
        Ok(x)
    }
}
