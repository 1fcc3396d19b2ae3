//! `nadir finetune`, `nadir predict`, `nadir segment` (interactive inputs from a file), `nadir bench
//! segmentation` and `nadir bench interactive`. The work is in `nadir_segment`.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::ValueEnum;
use nadir_indexer::raster::Window;
use nadir_segment::dataset::TrainingSet;
use nadir_segment::encoder::FrozenEncoder;
use nadir_segment::eval::{self, EvalRun, Labels};
use nadir_segment::interactive::protocol::{self, ProtocolOptions};
use nadir_segment::interactive::script::{self, ScriptOptions};
use nadir_segment::interactive::{HeadOptions, RefineOptions, SessionOptions};
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
    outln!(
        "trained on {} chips ({} labelled pixels) in {:.0} s: {} epochs, kept epoch {}, val mIoU {:.3}",
        report.train_chips,
        report.labelled_pixels,
        report.seconds,
        report.history.len(),
        report.best_epoch,
        report.val.miou
    );
    outln!("model written to {}", a.out.display());
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
    outln!(
        "{}x{} px, {} windows in {:.1} s -> {}",
        r.width,
        r.height,
        r.windows,
        r.seconds,
        a.out.display()
    );
    for (i, c) in model.config().classes.iter().enumerate() {
        outln!(
            "  {:<20} {:>6.2} %",
            c.name,
            100.0 * r.class_pixels[i] as f64 / (r.width as f64 * r.height as f64)
        );
    }
    if let (Some(p), Some(n)) = (&a.geojson, r.polygons) {
        outln!("{n} polygons -> {}", p.display());
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
    outln!("{}", eval::MARKDOWN_HEADER);
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
                    outln!("{}", r.markdown());
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

/// Options of an interactive session shared by `segment` and `bench interactive`.
#[derive(clap::Args, Debug, Clone)]
pub struct SessionArgs {
    /// Radius of a guided filter applied after the superpixels, in pixels (0: none; try 8 without
    /// superpixels).
    #[arg(long, default_value_t = 0)]
    refine_radius: usize,
    /// Regularisation of the edge refinement (grey levels 0-1, squared).
    #[arg(long, default_value_t = 1e-3)]
    refine_eps: f32,
    /// A click labels the stride-4 cells within this radius (0: its own cell only); unused with
    /// superpixels.
    #[arg(long, default_value_t = 1)]
    click_radius: usize,
    /// Side of the superpixels in pixels: a click labels its superpixel, probabilities are
    /// averaged over each (0: no superpixels).
    #[arg(long, default_value_t = 16)]
    superpixels: usize,
    /// How strongly the head holds each superpixel against clicks spreading over the superpixel
    /// graph (0: no propagation).
    #[arg(long, default_value_t = 0.02)]
    propagation: f32,
    /// L2 pull of each class's probe towards its start (zero, or the model's prediction).
    #[arg(long, default_value_t = 1e-2)]
    l2: f32,
    /// The same pull for a class that starts from a `--model`'s prediction.
    #[arg(long, default_value_t = 10.0)]
    prior_l2: f32,
    /// Optimiser steps per update.
    #[arg(long, default_value_t = 150)]
    steps: usize,
    /// Weight of the nearest-exemplar term (cosine to the clicked cells) in the logits (0: none).
    #[arg(long, default_value_t = 15.0)]
    exemplar_weight: f32,
    /// Random cells used as weak negatives.
    #[arg(long, default_value_t = 256)]
    weak_negatives: usize,
    /// Share of a class's negative weight the weak negatives get once it has explicit negatives.
    #[arg(long, default_value_t = 0.3)]
    weak_share: f32,
    /// The largest image a session takes, in megapixels.
    #[arg(long, default_value_t = 16.8)]
    max_megapixels: f64,
}

impl SessionArgs {
    fn options(&self) -> SessionOptions {
        SessionOptions {
            head: HeadOptions {
                l2: self.l2,
                prior_l2: self.prior_l2,
                steps: self.steps,
                weak_share: self.weak_share,
                ..HeadOptions::default()
            },
            refine: RefineOptions {
                radius: self.refine_radius,
                eps: self.refine_eps,
            },
            click_radius: self.click_radius,
            superpixel_size: self.superpixels,
            exemplar_weight: self.exemplar_weight,
            propagation: self.propagation,
            weak_negatives: self.weak_negatives,
            max_pixels: (self.max_megapixels * 1e6) as u64,
            ..SessionOptions::default()
        }
    }
}

#[derive(clap::Args, Debug)]
pub struct SegmentArgs {
    /// The scene: any raster GDAL reads, georeferenced or not.
    #[arg(long)]
    scene: PathBuf,
    /// The inputs: GeoJSON points (clicks) and lines (scribbles) with `class` (a name or index) and
    /// `positive` (default true) properties; lon/lat on a georeferenced scene, pixel x, y otherwise.
    #[arg(long)]
    clicks: PathBuf,
    /// A `nadir finetune` model to start from (its classes start from its prediction).
    #[arg(long, conflicts_with = "sam")]
    model: Option<PathBuf>,
    /// Make the masks with MobileSAM from this checkpoint (`mobile_sam.pt` or safetensors),
    /// prompted with the inputs, instead of the probe.
    #[arg(long)]
    sam: Option<PathBuf>,
    /// Only this window of the scene: x,y,width,height in pixels.
    #[arg(long, value_delimiter = ',', num_args = 4)]
    window: Option<Vec<u32>>,
    /// The class map (GeoTIFF, uint8, 255 = none).
    #[arg(long)]
    out: PathBuf,
    /// Also write the class polygons here (GeoJSON, WGS84 on georeferenced scenes).
    #[arg(long)]
    geojson: Option<PathBuf>,
    /// Regions under this many pixels get no polygon.
    #[arg(long, default_value_t = 16)]
    min_pixels: usize,
    #[command(flatten)]
    session: SessionArgs,
}

pub fn segment(a: SegmentArgs) -> Result<()> {
    let opts = ScriptOptions {
        scene: a.scene.clone(),
        window: a.window.map(|w| Window {
            x: w[0],
            y: w[1],
            width: w[2],
            height: w[3],
        }),
        inputs: a.clicks.clone(),
        model: a.model,
        sam: a.sam,
        out: a.out.clone(),
        geojson: a.geojson.clone(),
        min_pixels: a.min_pixels,
        session: a.session.options(),
    };
    let r = script::run(&opts).with_context(|| format!("segmenting {}", a.scene.display()))?;
    outln!(
        "{}x{} px, {} inputs, features {:.1} s, update {:.0} ms -> {}",
        r.width,
        r.height,
        r.inputs,
        r.features_ms / 1e3,
        r.update.total_ms,
        a.out.display()
    );
    let total = f64::from(r.width) * f64::from(r.height);
    for (i, c) in r.classes.iter().enumerate() {
        outln!(
            "  {:<20} {:>6.2} %",
            c,
            100.0 * r.update.class_pixels[i] as f64 / total
        );
    }
    if let (Some(p), Some(n)) = (&a.geojson, r.polygons) {
        outln!("{n} polygons -> {}", p.display());
    }
    Ok(())
}

#[derive(clap::Args, Debug)]
pub struct BenchInteractiveArgs {
    /// Labelled images (a folder as `nadir finetune` reads: images/ and masks/, all splits); default:
    /// the Dubai test images and the SpaceNet test region.
    #[arg(long)]
    data: Option<PathBuf>,
    /// A classes.json for --data (default: the folder's own).
    #[arg(long)]
    classes: Option<PathBuf>,
    /// The Dubai set (`segmentation/dubai`): its test images (part 9 of each tile).
    #[arg(long, default_value = "../shared/data/segmentation/dubai")]
    dubai: PathBuf,
    /// The SpaceNet sample folder: its test region, buildings only.
    #[arg(long, default_value = "../shared/data/scenes/spacenet")]
    spacenet: PathBuf,
    /// Clicks per target.
    #[arg(long, default_value_t = 20)]
    clicks: usize,
    /// Start every target from this `nadir finetune` model's prediction.
    #[arg(long, conflicts_with = "sam")]
    model: Option<PathBuf>,
    /// Make the masks with MobileSAM from this checkpoint instead of the probe.
    #[arg(long)]
    sam: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "pretrained")]
    encoder: EncoderArg,
    /// Use at most this many images of each set.
    #[arg(long)]
    limit: Option<usize>,
    /// Print the whole report as JSON (per target and per image) instead of tables.
    #[arg(long)]
    json: bool,
    /// Write each target's mask after 1, 5 and the last click here (PNG).
    #[arg(long)]
    dump: Option<PathBuf>,
    #[command(flatten)]
    session: SessionArgs,
}

/// A benchmark set: its name, labelled images, classes, and the classes that are targets.
type BenchSet = (
    String,
    Vec<eval::EvalImage>,
    nadir_segment::ClassList,
    Option<Vec<String>>,
);

pub fn bench_interactive(a: BenchInteractiveArgs) -> Result<()> {
    let mut sets: Vec<BenchSet> = Vec::new();
    if let Some(dir) = &a.data {
        let set = TrainingSet::discover(dir, a.classes.as_deref())?;
        let mut items = Vec::new();
        for li in &set.images {
            let (_, _, mask) = nadir_segment::dataset::read_mask(&li.mask, &set.classes)?;
            items.push(eval::EvalImage {
                image: li.image.clone(),
                mask,
                region: None,
            });
        }
        sets.push((dir.display().to_string(), items, set.classes, None));
    } else {
        if a.dubai.is_dir() {
            let s = eval::dubai(&a.dubai)?;
            sets.push(("dubai".into(), s.test, s.classes, None));
        } else {
            eprintln!("skipping Dubai: {} is absent", a.dubai.display());
        }
        if a.spacenet.join("sample_geotiff.tif").is_file() {
            let s = eval::spacenet(&a.spacenet)?;
            sets.push((
                "spacenet".into(),
                s.test,
                s.classes,
                Some(vec!["building".into()]),
            ));
        } else {
            eprintln!("skipping SpaceNet: {} is absent", a.spacenet.display());
        }
    }
    let prior = a
        .model
        .as_deref()
        .map(|p| Segmenter::load(p).with_context(|| format!("loading the model {}", p.display())))
        .transpose()?;
    let encoder = FrozenEncoder::load(&a.encoder.spec(0))?;
    let sam = a
        .sam
        .as_deref()
        .map(|p| {
            nadir_segment::sam::MobileSam::load(p)
                .map(std::sync::Arc::new)
                .with_context(|| format!("loading MobileSAM from {}", p.display()))
        })
        .transpose()?;
    let mut reports = Vec::new();
    for (name, mut items, classes, targets) in sets {
        if let Some(n) = a.limit {
            items.truncate(n);
        }
        let opts = ProtocolOptions {
            clicks: a.clicks,
            targets,
            session: a.session.options(),
            dump: a.dump.clone(),
            ..ProtocolOptions::default()
        };
        let bar = indicatif::ProgressBar::new_spinner();
        bar.set_message(format!("{name}: computing features"));
        let report = protocol::run(
            &encoder,
            prior.as_ref(),
            sam.as_ref(),
            &items,
            &classes,
            &opts,
            |n, msg| {
                bar.set_message(format!("{name}: {n} targets done, last {msg}"));
                bar.tick();
            },
        )
        .with_context(|| format!("interactive benchmark on {name}"))?;
        bar.finish_and_clear();
        reports.push((name, report));
    }
    if a.json {
        let doc: serde_json::Value = reports
            .iter()
            .map(|(n, r)| (n.clone(), protocol_json(r)))
            .collect::<serde_json::Map<_, _>>()
            .into();
        outln!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(());
    }
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    outln!(
        "encoder {:?}, model {}, refine radius {}, {threads} threads",
        a.encoder,
        a.model
            .as_ref()
            .map_or("none".into(), |p| p.display().to_string()),
        a.session.refine_radius
    );
    outln!();
    outln!("| set | class | targets | IoU@0 | @1 | @3 | @5 | @10 | @20 | NoC@80 | NoC@85 | NoC@90 |");
    outln!("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (name, r) in &reports {
        let mut rows: Vec<Option<String>> = r.classes().into_iter().map(Some).collect();
        rows.push(None);
        for class in rows {
            let c = class.as_deref();
            let n = r
                .targets
                .iter()
                .filter(|t| c.is_none_or(|c| t.class == c))
                .count();
            let ious: Vec<String> = protocol::REPORTED_CLICKS
                .iter()
                .map(|&k| format!("{:.3}", r.mean_iou(k, c)))
                .collect();
            outln!(
                "| {name} | {} | {n} | {} | {:.1} | {:.1} | {:.1} |",
                c.unwrap_or("**all**"),
                ious.join(" | "),
                r.mean_noc(0.80, c),
                r.mean_noc(0.85, c),
                r.mean_noc(0.90, c)
            );
        }
    }
    outln!();
    outln!("| set | images | mean size (px) | features p50 (s) | session memory (MiB) | update p50 (ms) | update p95 (ms) |");
    outln!("|---|---:|---:|---:|---:|---:|---:|");
    for (name, r) in &reports {
        let mut f: Vec<f64> = r.images.iter().map(|i| i.features_ms / 1e3).collect();
        f.sort_by(f64::total_cmp);
        let px = r
            .images
            .iter()
            .map(|i| f64::from(i.width) * f64::from(i.height))
            .sum::<f64>()
            / r.images.len().max(1) as f64;
        let mem = r.images.iter().map(|i| i.memory_bytes).max().unwrap_or(0) as f64 / (1 << 20) as f64;
        outln!(
            "| {name} | {} | {:.0} | {:.2} | {mem:.0} | {:.0} | {:.0} |",
            r.images.len(),
            px,
            f.get(f.len() / 2).copied().unwrap_or(f64::NAN),
            r.update_ms_quantile(0.5),
            r.update_ms_quantile(0.95)
        );
    }
    Ok(())
}

/// A report as JSON with its summary.
fn protocol_json(r: &protocol::ProtocolReport) -> serde_json::Value {
    let summary: serde_json::Map<String, serde_json::Value> = protocol::REPORTED_CLICKS
        .iter()
        .map(|&k| (format!("miou_at_{k}"), serde_json::json!(r.mean_iou(k, None))))
        .collect();
    serde_json::json!({
        "summary": summary,
        "noc": {"80": r.mean_noc(0.80, None), "85": r.mean_noc(0.85, None), "90": r.mean_noc(0.90, None)},
        "update_ms": {"p50": r.update_ms_quantile(0.5), "p95": r.update_ms_quantile(0.95)},
        "images": r.images,
        "targets": r.targets,
    })
}
