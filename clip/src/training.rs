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
use crate::eval::{macro_average, zero_shot_accuracy, RetrievalMetrics};
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

/// One data set in the UCM-captions layout: `captions.csv` (path, class, split, caption_1..5)
/// next to its images. A scene set (classes, no captions) leaves the captions empty.
#[derive(Debug, Clone, Serialize)]
pub struct DataSet {
    /// A short name (`ucm`, `rsicd`, `eurosat`): the folder's name under `--data`.
    pub name: String,
    #[serde(skip)]
    pub root: PathBuf,
}

impl DataSet {
    /// `dir/<name>` for each name.
    pub fn in_dir(dir: &Path, names: &[String]) -> Vec<DataSet> {
        names
            .iter()
            .map(|n| DataSet {
                name: n.clone(),
                root: dir.join(n),
            })
            .collect()
    }

    /// The set's rows, with its classes (sorted, over every split).
    pub fn read(&self) -> Result<(Vec<UcmRecord>, Vec<String>)> {
        let records = read_ucm(&self.root)?;
        let mut classes: Vec<String> = records.iter().map(|r| r.class.clone()).collect();
        classes.sort();
        classes.dedup();
        Ok((records, classes))
    }
}

/// Options of one alignment run.
#[derive(Debug, Clone, Serialize)]
pub struct AlignOptions {
    /// The data sets trained on (their `train` rows) and validated on (their captioned `val` rows).
    pub datasets: Vec<DataSet>,
    /// Where tower features are cached between runs.
    #[serde(skip)]
    pub cache_dir: PathBuf,
    /// Dihedral views per training image (1 = none; up to 8: rotations and flips), per data set
    /// in `datasets` order; one value applies to every set. A set with fewer views than the
    /// most reuses its views in turn.
    pub image_views: Vec<usize>,
    /// How many times each set's training captions enter an epoch, per data set in `datasets`
    /// order (one value applies to every set; empty: once): weighs a small set against large
    /// ones.
    #[serde(default)]
    pub repeat: Vec<usize>,
    /// Add the class prompts as extra captions of each training image.
    pub prompt_augmentation: bool,
    /// Also fine-tune the image tower's last layer (`_conv_head`, BatchNorm folded).
    pub unfreeze_head: bool,
    /// The ground side (metres) to record in the adapters as the default window of
    /// georeferenced scenes ([`Adapters::ground_size_m`]).
    pub ground_size_m: Option<f64>,
    pub train: TrainConfig,
}

/// Zero-shot accuracy of one data set's split over its own classes.
#[derive(Debug, Clone, Serialize)]
pub struct ZeroShot {
    pub dataset: String,
    pub split: String,
    pub images: usize,
    pub classes: usize,
    /// One per prompt template, then `ensemble` (the mean of the templates' text embeddings).
    pub accuracy: Vec<(String, f32)>,
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
    /// Retrieval on the captioned `val` rows with the chosen epoch: the mean over the sets of each
    /// set's recall in its own gallery.
    pub val: RetrievalMetrics,
    /// Each captioned set's `val` retrieval (each set its own gallery).
    pub val_per_set: Vec<(String, RetrievalMetrics)>,
    /// Zero-shot accuracy on each set's `val` images.
    pub zero_shot: Vec<ZeroShot>,
}

/// Runs one alignment and returns the adapters and their report.
pub fn align(towers: &LiteTowers, opts: &AlignOptions) -> Result<(Adapters, AlignReport)> {
    if opts.datasets.is_empty() {
        return Err(Error::InvalidInput("no data set to train on".into()));
    }
    let cache = FeatureCache::new(&opts.cache_dir, &towers.files_sha256)?;
    let trunk = opts.unfreeze_head;
    let mut train_parts = Vec::new();
    let mut val_parts = Vec::new();
    let mut zero_shot_sets = Vec::new();
    let (mut train_images, mut class_offset) = (0, 0);
    let image_views = per_set(&opts.image_views, opts.datasets.len(), "view", None)?;
    let repeats = per_set(&opts.repeat, opts.datasets.len(), "repeat", Some(1))?;
    for ((ds, &views), &repeat) in opts.datasets.iter().zip(&image_views).zip(&repeats) {
        let (records, classes) = ds.read()?;
        let split = |name: &str| {
            records
                .iter()
                .filter(|r| r.split == name)
                .cloned()
                .collect::<Vec<_>>()
        };
        let (train_recs, val_recs) = (split("train"), split("val"));
        tracing::info!(
            dataset = ds.name,
            train = train_recs.len(),
            val = val_recs.len(),
            classes = classes.len(),
            "data set"
        );
        train_images += train_recs.len();
        if !train_recs.is_empty() {
            let p = paired(
                towers,
                &cache,
                &train_recs,
                &classes,
                class_offset,
                views,
                opts.prompt_augmentation,
                trunk,
            )?;
            train_parts.push(repeat_texts(p, repeat.max(1))?);
        }
        if !val_recs.is_empty() {
            let v = paired(towers, &cache, &val_recs, &classes, class_offset, 1, false, trunk)?;
            if !v.text_image.is_empty() {
                val_parts.push((ds.name.clone(), v.clone()));
            }
            zero_shot_sets.push((ds.name.clone(), classes.clone(), class_offset, v));
        }
        class_offset += classes.len();
    }
    if train_parts.is_empty() || val_parts.is_empty() {
        return Err(Error::InvalidInput(format!(
            "{}: need `train` rows and captioned `val` rows",
            opts.datasets
                .iter()
                .map(|d| d.root.join("captions.csv").display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    let train_set = concat(&train_parts)?;
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
    let (mut adapters, train_report) = train_with(
        &train_set,
        &val_parts.iter().map(|(_, v)| v).collect::<Vec<_>>(),
        &opts.train,
        pre,
    )?;
    adapters.trained_on = opts.datasets.iter().map(|d| d.name.clone()).collect();
    adapters.ground_size_m = opts.ground_size_m;
    let val_per_set = val_parts
        .iter()
        .map(|(name, v)| Ok((name.clone(), evaluate(&adapters, v)?)))
        .collect::<Result<Vec<_>>>()?;
    let val = macro_average(&val_per_set.iter().map(|(_, m)| m.clone()).collect::<Vec<_>>());
    let zero_shot = zero_shot_sets
        .iter()
        .map(|(name, classes, offset, v)| {
            let local: Vec<usize> = v.image_class.iter().map(|c| c - offset).collect();
            Ok(ZeroShot {
                dataset: name.clone(),
                split: "val".into(),
                images: local.len(),
                classes: classes.len(),
                accuracy: zero_shot(towers, &adapters, &v.images, &local, classes)?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let report = AlignReport {
        options: opts.clone(),
        train_images,
        train_captions: train_set.text_image.len(),
        val_images: val_parts.iter().map(|(_, v)| v.image_class.len()).sum(),
        val_captions: val_parts.iter().map(|(_, v)| v.text_image.len()).sum(),
        train_report,
        val,
        val_per_set,
        zero_shot,
    };
    Ok((adapters, report))
}

/// Zero-shot accuracy of `images` (tower rows, view 0 first) whose classes are `image_class`
/// (indices into `classes`), per template and for the mean of the templates' text embeddings.
pub fn zero_shot(
    towers: &LiteTowers,
    adapters: &Adapters,
    images: &Tensor,
    image_class: &[usize],
    classes: &[String],
) -> Result<Vec<(String, f32)>> {
    let images = images.narrow(0, 0, image_class.len())?;
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
        out.push((template.to_string(), zero_shot_accuracy(&scores, image_class)));
        sum = Some(match sum {
            None => zt,
            Some(s) => (s + zt)?,
        });
    }
    if let Some(s) = sum {
        let scores: Vec<Vec<f32>> = zi.matmul(&s.t()?)?.to_vec2()?;
        out.push(("ensemble".to_string(), zero_shot_accuracy(&scores, image_class)));
    }
    Ok(out)
}

/// One value per data set from an option that takes one value for every set or one per set
/// (`empty`: what no value means; `None`: an error).
fn per_set(values: &[usize], sets: usize, what: &str, empty: Option<usize>) -> Result<Vec<usize>> {
    match (values, empty) {
        ([], Some(v)) => Ok(vec![v; sets]),
        ([v], _) => Ok(vec![*v; sets]),
        (vs, _) if vs.len() == sets => Ok(vs.to_vec()),
        (vs, _) => Err(Error::InvalidInput(format!(
            "{} {what} counts for {sets} data sets: give one, or one per set",
            vs.len()
        ))),
    }
}

/// Joins the paired features of several sets, keeping the view-major row order
/// [`PairedFeatures::views`] documents; a set with fewer views than the most repeats its views
/// in turn (view `v` is its view `v % views`).
fn concat(parts: &[PairedFeatures]) -> Result<PairedFeatures> {
    let views = parts.iter().map(|p| p.views).max().unwrap_or(1);
    let mut image_blocks = Vec::new();
    for v in 0..views {
        for p in parts {
            let n = p.image_class.len();
            image_blocks.push(p.images.narrow(0, (v % p.views) * n, n)?);
        }
    }
    let mut out = PairedFeatures {
        images: Tensor::cat(&image_blocks, 0)?,
        texts: Tensor::cat(&parts.iter().map(|p| p.texts.clone()).collect::<Vec<_>>(), 0)?,
        text_image: Vec::new(),
        text_strings: Vec::new(),
        image_class: Vec::new(),
        views,
    };
    for p in parts {
        let offset = out.image_class.len();
        out.text_image.extend(p.text_image.iter().map(|i| i + offset));
        out.text_strings.extend(p.text_strings.iter().cloned());
        out.image_class.extend(p.image_class.iter().copied());
    }
    Ok(out)
}

/// `p` with its captions listed `times` times (each pairing with its image as before).
fn repeat_texts(mut p: PairedFeatures, times: usize) -> Result<PairedFeatures> {
    if times > 1 {
        p.texts = Tensor::cat(&vec![p.texts.clone(); times], 0)?;
        p.text_image = p.text_image.repeat(times);
        p.text_strings = (0..times).flat_map(|_| p.text_strings.iter().cloned()).collect();
    }
    Ok(p)
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

/// The tower features of view `v` (of `views`) of `recs`' images, from the cache or computed.
pub(crate) fn image_features(
    towers: &LiteTowers,
    cache: &FeatureCache,
    recs: &[UcmRecord],
    v: usize,
    views: usize,
    trunk: bool,
) -> Result<Tensor> {
    let key: Vec<String> = recs
        .iter()
        .map(|r| format!("{}#{v}", r.image.display()))
        .collect();
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
    })
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn paired(
    towers: &LiteTowers,
    cache: &FeatureCache,
    recs: &[UcmRecord],
    classes: &[String],
    class_offset: usize,
    views: usize,
    prompts: bool,
    trunk: bool,
) -> Result<PairedFeatures> {
    let views = views.clamp(1, 8);
    // Rows: view-major blocks, so that view 0 of every image comes first.
    let blocks = (0..views)
        .map(|v| image_features(towers, cache, recs, v, views, trunk))
        .collect::<Result<Vec<_>>>()?;
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
    // Each distinct string once (scene sets repeat a few prompts thousands of times).
    let mut unique: Vec<String> = Vec::new();
    let mut slot: HashMap<&str, u32> = HashMap::new();
    let rows: Vec<u32> = text_strings
        .iter()
        .map(|t| {
            *slot.entry(t.as_str()).or_insert_with(|| {
                unique.push(t.clone());
                (unique.len() - 1) as u32
            })
        })
        .collect();
    let distinct = cache.get_or_compute("text", &unique, || {
        let refs: Vec<&str> = unique.iter().map(String::as_str).collect();
        tracing::info!(texts = refs.len(), "computing text features");
        if refs.is_empty() {
            return Ok(Tensor::zeros((0, 384), candle_core::DType::F32, &Device::Cpu)?);
        }
        towers.text_features(&refs)
    })?;
    let texts = if rows.is_empty() {
        distinct
    } else {
        distinct.index_select(&Tensor::new(rows.as_slice(), &Device::Cpu)?, 0)?
    };
    let image_class = recs
        .iter()
        .map(|r| class_offset + classes.iter().position(|c| *c == r.class).unwrap_or(0))
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
pub(crate) struct FeatureCache {
    dir: PathBuf,
}

impl FeatureCache {
    pub(crate) fn new(root: &Path, towers_sha256: &str) -> Result<Self> {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// `n` images with `views` views; image `i`'s view `v` is the row `[100 * set + 10 * v + i]`.
    fn set(set: usize, n: usize, views: usize) -> PairedFeatures {
        let rows: Vec<f32> = (0..views)
            .flat_map(|v| (0..n).map(move |i| (100 * set + 10 * v + i) as f32))
            .collect();
        PairedFeatures {
            images: Tensor::from_vec(rows, (views * n, 1), &Device::Cpu).unwrap(),
            texts: Tensor::zeros((n, 1), candle_core::DType::F32, &Device::Cpu).unwrap(),
            text_image: (0..n).collect(),
            text_strings: (0..n).map(|i| format!("caption {set} {i}")).collect(),
            image_class: vec![set; n],
            views,
        }
    }

    #[test]
    fn concat_keeps_view_major_rows_and_cycles_the_views_of_smaller_sets() {
        let joined = concat(&[set(0, 2, 3), set(1, 1, 1)]).unwrap();
        assert_eq!(joined.views, 3);
        let rows: Vec<f32> = joined.images.flatten_all().unwrap().to_vec1().unwrap();
        // View-major: every image's view 0, then view 1, ...; set 1 has only view 0.
        assert_eq!(rows, vec![0., 1., 100., 10., 11., 100., 20., 21., 100.]);
        // Texts point at their image in the joined numbering.
        assert_eq!(joined.text_image, vec![0, 1, 2]);
        assert_eq!(joined.image_class, vec![0, 0, 1]);
    }

    #[test]
    fn per_set_options_take_one_value_or_one_per_set() {
        assert_eq!(per_set(&[8], 3, "view", None).unwrap(), vec![8, 8, 8]);
        assert_eq!(per_set(&[8, 2, 2], 3, "view", None).unwrap(), vec![8, 2, 2]);
        assert_eq!(per_set(&[], 2, "repeat", Some(1)).unwrap(), vec![1, 1]);
        let err = per_set(&[8, 2], 3, "view", None).unwrap_err().to_string();
        assert!(err.contains("2 view counts for 3 data sets"), "{err}");
        assert!(per_set(&[], 2, "view", None).is_err());
    }

    #[test]
    fn repeated_captions_keep_their_images() {
        let p = repeat_texts(set(0, 2, 1), 3).unwrap();
        assert_eq!(p.text_image, vec![0, 1, 0, 1, 0, 1]);
        assert_eq!(p.texts.dims(), &[6, 1]);
        assert_eq!(p.text_strings[4], "caption 0 0");
    }
}
