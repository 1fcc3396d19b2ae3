//! `nadir finetune`, `nadir predict` and `nadir bench segmentation`: few-label segmentation. The
//! work is in `nadir_segment`.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::ValueEnum;
use nadir_segment::encoder::FrozenEncoder;
use nadir_segment::eval::{self, EvalRun, Labels};
use nadir_segment::{EncoderSpec, FinetuneOptions, PredictOptions, Segmenter, TrainOptions};

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum EncoderArg {
    /// ImageNet EfficientNet-Lite0 (the image tower of nadir-lite).
    Pretrained,
    /// The same network with random weights (a baseline).
    Random,
}

impl EncoderArg {
    fn spec(self, seed: u64) -> EncoderSpec {
        match self {
            EncoderArg::Pretrained => EncoderSpec::pretrained(),
            EncoderArg::Random => EncoderSpec::RandomLite0 { seed },
        }
    }
}

/// Training options shared by `finetune` and `bench segmentation`.
#[derive(clap::Args, Debug, Clone)]
pub struct TrainArgs {
    #[arg(long, default_value_t = 40)]
    epochs: usize,
    /// A budget of optimiser steps (batches): large sets get fewer epochs. 0: none.
    #[arg(long, default_value_t = 600)]
    max_steps: usize,
    /// Stop after this many epochs without a better validation mIoU.
    #[arg(long, default_value_t = 8)]
    patience: usize,
    #[arg(long, default_value_t = 8)]
    batch_size: usize,
    #[arg(long, default_value_t = 2e-3)]
    lr: f64,
    #[arg(long, default_value_t = 1e-4)]
    weight_decay: f64,
    /// No flips and quarter turns.
    #[arg(long)]
    no_augment: bool,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Memory for cached encoder features, in MiB.
    #[arg(long, default_value_t = 3072)]
    cache_mib: usize,
}

impl TrainArgs {
    fn options(&self, progress: bool) -> TrainOptions {
        TrainOptions {
            max_epochs: self.epochs,
            max_steps: (self.max_steps > 0).then_some(self.max_steps),
            patience: self.patience,
            batch_size: self.batch_size,
            learning_rate: self.lr,
            weight_decay: self.weight_decay,
            augment: !self.no_augment,
            seed: self.seed,
            cache_bytes: self.cache_mib << 20,
            progress,
        }
    }
}

#[derive(clap::Args, Debug)]
pub struct FinetuneArgs {
    /// Training set: a `nadir export` folder, or any folder with `images/` and `masks/` side by side.
    #[arg(long)]
    train: PathBuf,
    /// Where to write the model (a new or empty folder).
    #[arg(long)]
    out: PathBuf,
    /// A classes.json (names, mask colours) instead of the training set's own.
    #[arg(long)]
    classes: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "pretrained")]
    encoder: EncoderArg,
    /// Use the patch tokens of this CLIP ViT instead (a RemoteCLIP / open_clip checkpoint file,
    /// or a known model name); the chip is then the ViT's input size.
    #[arg(long, conflicts_with = "encoder")]
    vit: Option<String>,
    /// Chip side in pixels (a multiple of 32; default 256, or the ViT's input size).
    #[arg(long)]
    chip: Option<u32>,
    #[arg(long, default_value_t = 64)]
    decoder_channels: usize,
    /// 1-based bands to use as R,G,B (default: the raster's colour bands, or band 1 as grey).
    #[arg(long, value_delimiter = ',')]
    bands: Option<Vec<usize>>,
    /// Keep only this many labelled pixels per image (point labels, as an analyst's clicks).
    #[arg(long)]
    clicks: Option<usize>,
    /// Share of training images held out for validation when the set has no `val` split.
    #[arg(long, default_value_t = 0.15)]
    val_share: f64,
    #[command(flatten)]
    train_args: TrainArgs,
}

pub fn finetune(a: FinetuneArgs) -> Result<()> {
    let mut opts = FinetuneOptions::new(a.train.clone(), a.out.clone());
    opts.classes = a.classes;
    match &a.vit {
        Some(weights) => {
            let enc =
                FrozenEncoder::vit(weights, None).with_context(|| format!("loading the ViT {weights}"))?;
            opts.encoder = FrozenEncoder::vit_spec(weights)?;
            opts.chip = a.chip.or(enc.input_size()).unwrap_or(opts.chip);
        }
        None => {
            opts.encoder = a.encoder.spec(a.train_args.seed);
            opts.chip = a.chip.unwrap_or(opts.chip);
        }
    }
    opts.decoder_channels = a.decoder_channels;
    opts.bands = a.bands;
    opts.clicks = a.clicks;
    opts.val_share = a.val_share;
    opts.train = a.train_args.options(true);
    let report =
        nadir_segment::finetune(&opts).with_context(|| format!("fine-tuning on {}", a.train.display()))?;
    println!(
        "trained on {} chips ({} labelled pixels) in {:.0} s: {} epochs, kept epoch {}, val mIoU {:.3}",
        report.train_chips,
        report.labelled_pixels,
        report.seconds,
        report.history.len(),
        report.best_epoch,
        report.val.miou
    );
    println!("model written to {}", a.out.display());
    Ok(())
}

#[derive(clap::Args, Debug)]
pub struct PredictArgs {
    /// A model folder written by `nadir finetune`.
    #[arg(long)]
    model: PathBuf,
    /// The scene: any raster GDAL reads, georeferenced or not.
    scene: PathBuf,
    /// The class map (GeoTIFF, uint8, 255 = no prediction).
    #[arg(long)]
    out: PathBuf,
    /// Also write the class polygons here (GeoJSON, WGS84).
    #[arg(long)]
    geojson: Option<PathBuf>,
    /// Share of each window its neighbours overlap.
    #[arg(long, default_value_t = 0.5)]
    overlap: f64,
    /// Regions under this many pixels get no polygon.
    #[arg(long, default_value_t = 16)]
    min_pixels: usize,
    #[arg(long, default_value_t = 8)]
    batch_size: usize,
}

pub fn predict(a: PredictArgs) -> Result<()> {
    let model =
        Segmenter::load(&a.model).with_context(|| format!("loading the model {}", a.model.display()))?;
    let opts = PredictOptions {
        overlap: a.overlap,
        batch_size: a.batch_size,
        geojson: a.geojson.clone(),
        min_pixels: a.min_pixels,
        progress: true,
    };
    let r = nadir_segment::predict_scene(&model, &a.scene, &a.out, &opts)
        .with_context(|| format!("predicting {}", a.scene.display()))?;
    println!(
        "{}x{} px, {} windows in {:.1} s -> {}",
        r.width,
        r.height,
        r.windows,
        r.seconds,
        a.out.display()
    );
    for (i, c) in model.config().classes.iter().enumerate() {
        println!(
            "  {:<20} {:>6.2} %",
            c.name,
            100.0 * r.class_pixels[i] as f64 / (r.width as f64 * r.height as f64)
        );
    }
    if let (Some(p), Some(n)) = (&a.geojson, r.polygons) {
        println!("{n} polygons -> {}", p.display());
    }
    Ok(())
}

#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// The Dubai set (`segmentation/dubai`); skipped when absent.
    #[arg(long, default_value = "../shared/data/segmentation/dubai")]
    dubai: PathBuf,
    /// The SpaceNet sample folder (`scenes/spacenet`); skipped when absent.
    #[arg(long, default_value = "../shared/data/scenes/spacenet")]
    spacenet: PathBuf,
    /// Training pool sizes (Dubai), comma separated; `all` for the whole pool.
    #[arg(long, value_delimiter = ',', default_value = "5,10,25,all")]
    sizes: Vec<String>,
    /// Clicks per image of the point-label runs (0: none).
    #[arg(long, default_value_t = 10)]
    clicks: usize,
    #[arg(long, value_enum, value_delimiter = ',', default_value = "pretrained,random")]
    encoders: Vec<EncoderArg>,
    /// Also run the click (point-label) runs with the random encoder (default: dense only).
    #[arg(long)]
    random_clicks: bool,
    #[arg(long, default_value_t = 256)]
    chip: u32,
    /// Write the rows as CSV here.
    #[arg(long)]
    csv: Option<PathBuf>,
    #[command(flatten)]
    train_args: TrainArgs,
}

pub fn bench(a: BenchArgs) -> Result<()> {
    let mut sets = Vec::new();
    if a.dubai.is_dir() {
        sets.push(eval::dubai(&a.dubai)?);
    } else {
        eprintln!("skipping Dubai: {} is absent", a.dubai.display());
    }
    if a.spacenet.join("sample_geotiff.tif").is_file() {
        sets.push(eval::spacenet(&a.spacenet)?);
    } else {
        eprintln!("skipping SpaceNet: {} is absent", a.spacenet.display());
    }
    let sizes: Vec<Option<usize>> = a
        .sizes
        .iter()
        .map(|s| if s == "all" { Ok(None) } else { s.parse().map(Some) })
        .collect::<Result<_, _>>()
        .context("--sizes takes numbers or `all`")?;
    let mut labels = vec![Labels::Dense];
    if a.clicks > 0 {
        labels.push(Labels::Clicks(a.clicks));
    }
    println!("{}", eval::MARKDOWN_HEADER);
    let mut rows = Vec::new();
    for set in &sets {
        // SpaceNet is one image: only "all" of it.
        let set_sizes = if set.train.len() > 1 {
            sizes.clone()
        } else {
            vec![None]
        };
        for &enc in &a.encoders {
            for &lab in &labels {
                if enc == EncoderArg::Random && lab != Labels::Dense && !a.random_clicks {
                    continue;
                }
                for &n in &set_sizes {
                    let run = EvalRun {
                        encoder: enc.spec(a.train_args.seed),
                        labels: lab,
                        train_images: n,
                        chip: a.chip,
                        train: a.train_args.options(false),
                    };
                    let r =
                        eval::run(set, &run).with_context(|| format!("{} {enc:?} {lab} {n:?}", set.name))?;
                    println!("{}", r.markdown());
                    rows.push(r);
                    if let Some(p) = &a.csv {
                        let csv = eval::to_csv(&rows);
                        std::fs::write(p, csv).with_context(|| format!("writing {}", p.display()))?;
                    }
                }
            }
        }
    }
    Ok(())
}
