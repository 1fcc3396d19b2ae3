//! The evaluation behind `nadir bench segmentation`: train on 5, 10, 25 and all training images
//! (dense masks, or a few clicks per image), with the pretrained or a random encoder, and score
//! mIoU and per-class IoU on held-out images predicted whole (the same windowed, blended
//! prediction `nadir predict` runs).
//!
//! Data (see `../shared/data/README.md`):
//! - Dubai (`segmentation/dubai`, 6 tiles x 9 plain RGB images, colour masks): per tile, images
//!   1 to 7 are the training pool, 8 is validation, 9 is test (6 test images, one per tile).
//!   "Unlabeled" (155,155,155) is not a class here: it is ignored in training and scoring, so
//!   scores are over the 5 real classes.
//! - SpaceNet (`scenes/spacenet/sample_geotiff.tif`, 900x900 px pan at 0.5 m, Atlanta, with the
//!   building mask `sample_fp_mask_from_geojson.tif`): building vs background; the left half
//!   trains, the top of the right half validates, the rest (450x600 px) is test.

use std::path::{Path, PathBuf};
use std::time::Instant;

use nadir_indexer::raster::{Scene, Window};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::Serialize;

use crate::config::{ClassInfo, ClassList, EncoderSpec, SegmenterConfig, IGNORE};
use crate::dataset::{self, keep_clicks, Chip};
use crate::error::{Error, Result};
use crate::metrics::Confusion;
use crate::model::Segmenter;
use crate::predict::{open_for, predict_labels, PredictOptions};
use crate::train::{train, TrainOptions};

/// A labelled image of an evaluation set, or a region of one.
#[derive(Debug, Clone)]
pub struct EvalImage {
    pub image: PathBuf,
    /// Class indices, `IGNORE` unlabelled, the size of the whole image.
    pub mask: Vec<u8>,
    /// The part of the image this item is (None: all of it).
    pub region: Option<Window>,
}

/// A dataset with fixed train pool, validation and test images.
#[derive(Debug, Clone)]
pub struct EvalSet {
    pub name: String,
    pub classes: ClassList,
    pub train: Vec<EvalImage>,
    pub val: Vec<EvalImage>,
    pub test: Vec<EvalImage>,
}

/// The Dubai classes, with the mask colours the pixels really have (the hex codes of the
/// dataset's own `classes.json` do not match them).
pub fn dubai_classes() -> ClassList {
    let c = |name: &str, color: [u8; 3]| ClassInfo {
        name: name.into(),
        color: Some(color),
    };
    ClassList {
        classes: vec![
            c("building", [60, 16, 152]),
            c("land", [132, 41, 246]),
            c("road", [110, 193, 228]),
            c("vegetation", [254, 221, 58]),
            c("water", [226, 169, 41]),
        ],
        ignore_color: Some([155, 155, 155]),
    }
}

/// The Dubai set under `root` (`segmentation/dubai`).
pub fn dubai(root: &Path) -> Result<EvalSet> {
    let classes = dubai_classes();
    let (mut train, mut val, mut test) = (Vec::new(), Vec::new(), Vec::new());
    for tile in 1..=6 {
        for part in 1..=9 {
            let dir = root.join(format!("tile{tile}"));
            let image = dir.join(format!("images/image_part_{part:03}.jpg"));
            let mask_path = dir.join(format!("masks/image_part_{part:03}.png"));
            let (_, _, mask) = dataset::read_mask(&mask_path, &classes)?;
            let item = EvalImage {
                image,
                mask,
                region: None,
            };
            match part {
                9 => test.push(item),
                8 => val.push(item),
                _ => train.push(item),
            }
        }
    }
    Ok(EvalSet {
        name: "dubai".into(),
        classes,
        train,
        val,
        test,
    })
}

/// The SpaceNet building sample under `dir` (`scenes/spacenet`).
pub fn spacenet(dir: &Path) -> Result<EvalSet> {
    let image = dir.join("sample_geotiff.tif");
    let mask_path = dir.join("sample_fp_mask_from_geojson.tif");
    let ds = gdal::Dataset::open(&mask_path).map_err(|e| Error::input(&mask_path, e))?;
    let (w, h) = ds.raster_size();
    let band = ds.rasterband(1).map_err(|e| Error::input(&mask_path, e))?;
    let raw = band
        .read_as::<u8>((0, 0), (w, h), (w, h), None)
        .map_err(|e| Error::input(&mask_path, e))?;
    let mask: Vec<u8> = raw.data().iter().map(|&v| u8::from(v > 0)).collect();
    let (w, h) = (w as u32, h as u32);
    let region = |x, y, width, height| EvalImage {
        image: image.clone(),
        mask: mask.clone(),
        region: Some(Window { x, y, width, height }),
    };
    let half = w / 2;
    let top = h / 3;
    Ok(EvalSet {
        name: "spacenet".into(),
        classes: ClassList {
            classes: vec![
                ClassInfo {
                    name: "background".into(),
                    color: Some([0, 0, 0]),
                },
                ClassInfo {
                    name: "building".into(),
                    color: Some([255, 0, 0]),
                },
            ],
            ignore_color: None,
        },
        train: vec![region(0, 0, half, h)],
        val: vec![region(half, 0, w - half, top)],
        test: vec![region(half, top, w - half, h - top)],
    })
}

/// Labels an evaluation run trains on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Labels {
    Dense,
    /// This many clicks per image (per region).
    Clicks(usize),
}

impl std::fmt::Display for Labels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Labels::Dense => write!(f, "dense"),
            Labels::Clicks(n) => write!(f, "{n} clicks"),
        }
    }
}

/// One evaluation run.
#[derive(Debug, Clone)]
pub struct EvalRun {
    pub encoder: EncoderSpec,
    pub labels: Labels,
    /// Training images taken from the pool (None: all), after a seeded shuffle.
    pub train_images: Option<usize>,
    pub chip: u32,
    pub train: TrainOptions,
}

/// The result of one run.
#[derive(Debug, Clone, Serialize)]
pub struct EvalRow {
    pub dataset: String,
    pub encoder: String,
    pub labels: String,
    pub train_images: usize,
    pub train_chips: usize,
    pub labelled_pixels: u64,
    pub epochs: usize,
    pub best_epoch: usize,
    pub train_seconds: f64,
    pub predict_seconds: f64,
    pub test_miou: f64,
    pub test_accuracy: f64,
    /// Per class, NaN where the class is in neither truth nor prediction.
    pub test_iou: Vec<f64>,
    /// The class names, in `test_iou` order.
    pub classes: Vec<String>,
    pub val_miou: f64,
}

/// Trains and scores one run on `set`.
pub fn run(set: &EvalSet, run: &EvalRun) -> Result<EvalRow> {
    let mut pool: Vec<&EvalImage> = set.train.iter().collect();
    pool.shuffle(&mut rand::rngs::StdRng::seed_from_u64(run.train.seed));
    let n = run.train_images.unwrap_or(pool.len()).min(pool.len());
    let train_items = &pool[..n];
    let mut cfg = SegmenterConfig::lite0_fpn(set.classes.classes.clone());
    cfg.encoder = run.encoder.clone();
    cfg.chip = run.chip;
    // The stretch of non-8-bit data: the median over the training images.
    let (train_scenes, stretch) =
        dataset::open_training(train_items.iter().map(|i| i.image.as_path()), None)?;
    cfg.stretch = stretch;
    let model = Segmenter::new(cfg, run.train.seed)?;
    let val_items: Vec<&EvalImage> = set.val.iter().collect();
    let val_scenes = val_items
        .iter()
        .map(|i| open_for(&model, &i.image))
        .collect::<Result<Vec<_>>>()?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(run.train.seed ^ 0x5eed);
    let mut to_chips = |scenes: Vec<Scene>, items: &[&EvalImage]| -> Result<Vec<Chip>> {
        let mut out = Vec::new();
        for (scene, item) in scenes.into_iter().zip(items) {
            let (w, h) = scene.size();
            let mut mask = item.mask.clone();
            let region = item.region.unwrap_or(Window {
                x: 0,
                y: 0,
                width: w,
                height: h,
            });
            outside_unlabelled(&mut mask, w, region);
            if let Labels::Clicks(k) = run.labels {
                keep_clicks(&mut mask, k, &mut rng);
            }
            out.extend(dataset::chips_in(
                &scene,
                &mask,
                &item.image,
                region,
                model.config().chip,
            )?);
        }
        Ok(out)
    };
    let train_chips = to_chips(train_scenes, train_items)?;
    let val_chips = to_chips(val_scenes, &val_items)?;
    let report = train(&model, &train_chips, &val_chips, &run.train)?;
    let t0 = Instant::now();
    let mut conf = Confusion::new(set.classes.classes.len());
    for item in &set.test {
        let scene = open_for(&model, &item.image)?;
        let (w, _) = scene.size();
        let pred = predict_labels(&model, &scene, &PredictOptions::default())?;
        let mut truth = item.mask.clone();
        if truth.len() != pred.len() {
            return Err(Error::input(&item.image, "the mask is not the size of the image"));
        }
        if let Some(r) = item.region {
            outside_unlabelled(&mut truth, w, r);
        }
        conf.add(&truth, &pred);
    }
    Ok(EvalRow {
        dataset: set.name.clone(),
        encoder: run.encoder.label().into(),
        labels: run.labels.to_string(),
        train_images: n,
        train_chips: train_chips.len(),
        labelled_pixels: report.labelled_pixels,
        epochs: report.history.len(),
        best_epoch: report.best_epoch,
        train_seconds: report.seconds,
        predict_seconds: t0.elapsed().as_secs_f64(),
        test_miou: conf.miou(),
        test_accuracy: conf.accuracy(),
        test_iou: conf.iou().into_iter().map(|v| v.unwrap_or(f64::NAN)).collect(),
        classes: set.classes.classes.iter().map(|c| c.name.clone()).collect(),
        val_miou: report.val.miou,
    })
}

/// Unlabels every pixel of a `width`-wide mask outside `region`.
fn outside_unlabelled(mask: &mut [u8], width: u32, region: Window) {
    for (i, v) in mask.iter_mut().enumerate() {
        let (x, y) = ((i % width as usize) as u32, (i / width as usize) as u32);
        let inside =
            x >= region.x && x < region.x + region.width && y >= region.y && y < region.y + region.height;
        if !inside {
            *v = IGNORE;
        }
    }
}

impl EvalRow {
    /// `name{sep}iou` per class, e.g. `building=0.6612`.
    fn class_ious(&self, sep: &str, digits: usize) -> Vec<String> {
        self.test_iou
            .iter()
            .zip(&self.classes)
            .map(|(v, n)| format!("{n}{sep}{v:.digits$}"))
            .collect()
    }

    /// The row of the Markdown table [`MARKDOWN_HEADER`] heads.
    pub fn markdown(&self) -> String {
        format!(
            "| {} | {} | {} | {} | {} | {} | {} | {:.0} | {:.3} | {:.3} | {} |",
            self.dataset,
            self.encoder,
            self.labels,
            self.train_images,
            self.train_chips,
            self.labelled_pixels,
            self.epochs,
            self.train_seconds,
            self.test_miou,
            self.test_accuracy,
            self.class_ious(" ", 2).join(", ")
        )
    }
}

/// The head of the Markdown table of [`EvalRow::markdown`] rows.
pub const MARKDOWN_HEADER: &str =
    "| data | encoder | labels | images | chips | labelled px | epochs | train s \
     | test mIoU | test acc | per-class IoU |\n|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|";

/// The rows as CSV (per-class IoU as `name=iou` pairs, `;`-separated).
pub fn to_csv(rows: &[EvalRow]) -> String {
    let mut out = String::from(
        "dataset,encoder,labels,train_images,train_chips,labelled_pixels,epochs,best_epoch,train_seconds,\
         predict_seconds,val_miou,test_miou,test_accuracy,test_iou\n",
    );
    for r in rows {
        out.push_str(&format!(
            "{},{},{},{},{},{},{},{},{:.1},{:.1},{:.4},{:.4},{:.4},{}\n",
            r.dataset,
            r.encoder,
            r.labels,
            r.train_images,
            r.train_chips,
            r.labelled_pixels,
            r.epochs,
            r.best_epoch,
            r.train_seconds,
            r.predict_seconds,
            r.val_miou,
            r.test_miou,
            r.test_accuracy,
            r.class_ious("=", 4).join(";")
        ));
    }
    out
}
