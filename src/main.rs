//! `nadir`: the command-line interface. It parses arguments and calls the libraries; all the work
//! lives in the workspace crates.

/// `println!` for the CLI's output: when standard output is a closed pipe (`nadir ... | head
/// -1`) the process ends quietly with success, as Unix tools do (what was done is done, and no
/// reader is left to tell); `println!` would panic.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        if let Err(e) = writeln!(std::io::stdout(), $($arg)*) {
            $crate::stdout_failed(e);
        }
    }};
}

/// `print!` for the CLI's output, as [`outln!`].
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        if let Err(e) = write!(std::io::stdout(), $($arg)*) {
            $crate::stdout_failed(e);
        }
    }};
}

/// What a failed write to standard output does: a closed pipe ends the process with success,
/// anything else with an error.
fn stdout_failed(e: std::io::Error) -> ! {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        std::process::exit(0);
    }
    eprintln!("Error: writing to standard output: {e}");
    std::process::exit(1);
}

/// Whether an error is a write to a closed pipe (the reader went away: not a failure).
fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

mod index;
mod labels;
mod learn_bench;
mod search;
mod segment;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use nadir_clip::adapter::{Positives, TrainConfig};
use nadir_clip::registry::{load_encoder, ModelSpec};
use nadir_clip::training::{align, AlignOptions, DataSet};
use nadir_clip::{Activation, ClipConfig, Encoder};

#[derive(Parser, Debug)]
#[command(
    name = "nadir",
    version,
    about = "Semantic search for satellite and aerial imagery"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args, Debug, Clone)]
struct ModelArgs {
    /// Model: nadir-lite (the default, offline), a CLIP name (remoteclip-vit-b-32,
    /// remoteclip-vit-l-14, openai-vit-b-32), a CLIP weights file (open_clip .pt/.safetensors or
    /// Hugging Face CLIP .safetensors) or a nadir-lite adapters file.
    #[arg(long, short = 'm')]
    model: Option<String>,
    /// nadir-lite: an adapters file to use instead of the bundled one.
    #[arg(long)]
    adapters: Option<PathBuf>,
    /// Model config (open_clip or Hugging Face JSON); default: found next to the weights, or the
    /// named model's preset, or inferred from the weights.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Override the MLP activation of the model.
    #[arg(long, value_enum)]
    activation: Option<ActivationArg>,
    /// nadir-lite: the model id an existing index recorded (picks the bundled adapters version).
    #[arg(skip)]
    sha256: Option<String>,
}

#[derive(ValueEnum, Debug, Clone, Copy)]
enum ActivationArg {
    QuickGelu,
    Gelu,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Print the embedding of each text, one JSON array per line.
    EmbedText {
        #[command(flatten)]
        model: ModelArgs,
        /// The texts.
        #[arg(required = true)]
        texts: Vec<String>,
    },
    /// Print the embedding of each image file, one JSON array per line.
    EmbedImage {
        #[command(flatten)]
        model: ModelArgs,
        /// Image files (PNG, JPEG, TIFF, WebP).
        #[arg(required = true)]
        images: Vec<PathBuf>,
    },
    /// Rank image files by similarity to a text: the smallest search there is.
    Rank {
        #[command(flatten)]
        model: ModelArgs,
        /// The query.
        query: String,
        /// Image files.
        #[arg(required = true)]
        images: Vec<PathBuf>,
    },
    /// Train the nadir-lite adapters on UCM-captions (train split; epoch chosen on val) and report
    /// val retrieval recall and zero-shot accuracy.
    TrainAdapters(TrainArgs),
    /// Build, extend and inspect an index of imagery.
    Index {
        #[command(subcommand)]
        what: index::IndexCommand,
    },
    /// Search an index by text and/or example patches, within filters.
    Search(search::SearchArgs),
    /// Find patches similar to a patch or to the place at a location.
    Similar(search::SimilarArgs),
    /// Serve an index over HTTP (JSON API, OpenAPI at /openapi.json).
    Serve(search::ServeArgs),
    /// Label patches per class, and learn from the labels (linear probes, suggestions).
    Labels {
        #[command(subcommand)]
        what: labels::LabelsCommand,
    },
    /// Export patches as a training set: GeoTIFF chips, masks from GeoJSON polygons, a spatial
    /// train/val/test split, labels.csv and a STAC catalog (label extension).
    Export(labels::ExportArgs),
    /// Train a segmentation model on a training set (an export, or images/ and masks/ folders):
    /// a frozen pretrained encoder and a light decoder, from dense masks or a few clicks.
    Finetune(segment::FinetuneArgs),
    /// Predict a class map (GeoTIFF) and polygons (GeoJSON) of a scene with a fine-tuned model.
    Predict(segment::PredictArgs),
    /// Segment a scene from an analyst's inputs in a file (clicks, scribbles), as the page's
    /// interactive sessions do: a class map (GeoTIFF) and polygons (GeoJSON).
    Segment(segment::SegmentArgs),
    /// Measure throughput and print a table.
    Bench {
        #[command(subcommand)]
        what: BenchWhat,
    },
}

#[derive(clap::Args, Debug)]
struct TrainArgs {
    /// UCM folder with captions.csv and images/ (used when --data is not given).
    #[arg(long, default_value = "../shared/data/ucm")]
    ucm: PathBuf,
    /// A folder of data sets in the UCM-captions layout, one subfolder each (as
    /// `scripts/prepare_alignment_data.py` writes them); train on those named by --datasets.
    #[arg(long)]
    data: Option<PathBuf>,
    /// The subfolders of --data to train on, comma separated.
    #[arg(long, value_delimiter = ',', default_value = "ucm,rsicd,eurosat")]
    datasets: Vec<String>,
    /// Where to write the adapters.
    #[arg(long, default_value = "clip/assets/nadir-lite/adapters.safetensors")]
    out: PathBuf,
    /// Where to write the JSON report (default: next to --out, `.report.json`).
    #[arg(long)]
    report: Option<PathBuf>,
    /// Feature cache folder (default: `features` beside the models folder, ~/.cache/nadir/features).
    #[arg(long)]
    cache: Option<PathBuf>,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[arg(long, default_value_t = 256)]
    dim: usize,
    /// Hidden width of MLP heads (default: linear heads).
    #[arg(long)]
    hidden: Option<usize>,
    #[arg(long, default_value_t = 40)]
    epochs: usize,
    #[arg(long, default_value_t = 256)]
    batch_size: usize,
    #[arg(long, default_value_t = 1e-4)]
    lr: f64,
    #[arg(long, default_value_t = 0.05)]
    weight_decay: f64,
    #[arg(long, default_value_t = 0.07)]
    temperature: f64,
    /// Keep the temperature fixed.
    #[arg(long)]
    fixed_temperature: bool,
    /// Which in-batch pairs are positives: pair, same-caption, same-class.
    #[arg(long, value_enum, default_value = "same-caption")]
    positives: PositivesArg,
    /// Ground side in metres recorded in the adapters: georeferenced scenes are tiled to it by
    /// default (UC Merced's views are 77 m, RSICD/AID's mostly 100 to 300 m, EuroSAT's 640 m).
    #[arg(long)]
    ground_size: Option<f64>,
    /// Dihedral views per training image (1 to 8): one value for every set, or one per set in
    /// --datasets order (e.g. 8,2,2: all views of the small UCM, two of the large sets).
    #[arg(long, value_delimiter = ',', default_value = "8")]
    views: Vec<usize>,
    /// How many times each set's training captions enter an epoch: one value, or one per set in
    /// --datasets order (e.g. 4,1,1 weighs the small UCM up against RSICD).
    #[arg(long, value_delimiter = ',', default_value = "1")]
    repeat: Vec<usize>,
    /// Do not add the class prompts ("an aerial photo of {class}." ...) as extra training captions.
    #[arg(long)]
    no_prompts: bool,
    /// Also fine-tune the image tower's last layer (1x1 head convolution).
    #[arg(long)]
    unfreeze_head: bool,
}

#[derive(clap::Args, Debug)]
struct RetrievalArgs {
    /// A folder of data sets as `scripts/prepare_alignment_data.py` writes them.
    #[arg(long)]
    data: PathBuf,
    /// The subfolders of --data to measure, comma separated.
    #[arg(long, value_delimiter = ',', default_value = "rsicd,ucm,eurosat")]
    datasets: Vec<String>,
    /// Adapters file to measure (default: the bundled ones).
    #[arg(long)]
    adapters: Option<PathBuf>,
    /// Feature cache folder (default: ~/.cache/nadir/features).
    #[arg(long)]
    cache: Option<PathBuf>,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(ValueEnum, Debug, Clone, Copy)]
enum PositivesArg {
    Pair,
    SameCaption,
    SameClass,
}

#[derive(Subcommand, Debug)]
enum BenchWhat {
    /// Segmentation with few labels: mIoU on held-out Dubai and SpaceNet images when training on
    /// 5, 10, 25 and all images, dense or from clicks, pretrained vs random encoder.
    Segmentation(segment::BenchArgs),
    /// Interactive segmentation with a simulated analyst (the standard click protocol): IoU after
    /// 1 to 20 clicks, clicks to reach 80/85/90 % IoU, time per click.
    Interactive(segment::BenchInteractiveArgs),
    /// The default model on the field's retrieval and scene benchmarks (RSICD and UCM-captions
    /// retrieval, zero-shot scene accuracy on AID/RSICD, EuroSAT and UC Merced), each on its
    /// held-out split, next to RemoteCLIP's published figures.
    Retrieval(RetrievalArgs),
    /// CLIP encoders on CPU with random weights of a real architecture.
    Clip {
        /// Architecture preset: ViT-B-32 or ViT-L-14.
        #[arg(long, default_value = "ViT-B-32")]
        arch: String,
        /// Batch sizes, comma separated.
        #[arg(long, value_delimiter = ',', default_value = "1,16,64")]
        batch: Vec<usize>,
        /// Minimum seconds timed per cell.
        #[arg(long, default_value_t = 5.0)]
        seconds: f64,
    },
    /// Indexing throughput on one scene: the whole pipeline against the model alone, by stage.
    Index {
        #[command(flatten)]
        model: ModelArgs,
        /// The scene (default: the Manila drone orthophoto of the demo data).
        #[arg(default_value = "data/scenes/manila-pasig-river.tif")]
        scene: PathBuf,
        /// Patches per forward pass.
        #[arg(long, default_value_t = 16)]
        batch: usize,
    },
    /// Simulated active learning: on an index whose scene names carry the class (UC Merced,
    /// mean average precision per labelling strategy, as CSV), or rare targets in an archive of
    /// scene sets (positives found, recall and AP per round, as CSV, and a summary table).
    ActiveLearning(learn_bench::ActiveLearningArgs),
    /// The query path on a synthetic index: build time, memory, latency, QPS and recall@10 with
    /// and without geofilters, the raw graph at several ef, and a flat int8 scan.
    Query {
        #[arg(long, default_value_t = 1_000_000)]
        n: usize,
        #[arg(long, default_value_t = 512)]
        dim: usize,
        #[arg(long, default_value_t = 1000)]
        queries: usize,
        /// Intrinsic dimension of the clusters (0: noisy clusters in the full space, the hard case).
        #[arg(long, default_value_t = 48)]
        latent_dim: usize,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// ef values of the raw graph sweep, comma separated.
        #[arg(long, value_delimiter = ',', default_value = "10,20,40,64,80,160,320")]
        ef: Vec<usize>,
        /// Build the index here and keep it (reused when it holds the same data); default: a
        /// temporary folder.
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Write the data set and ground truth as .npy here, for scripts/bench_ann_hnswlib.py.
        #[arg(long)]
        dump: Option<PathBuf>,
        /// Skip the int8 experiment.
        #[arg(long)]
        skip_int8: bool,
    },
}

impl ModelArgs {
    fn load(&self) -> Result<Box<dyn Encoder>> {
        let spec = ModelSpec {
            model: self.model.clone(),
            config: self.config.clone(),
            activation: self.activation.map(|a| match a {
                ActivationArg::QuickGelu => Activation::QuickGelu,
                ActivationArg::Gelu => Activation::Gelu,
            }),
            adapters: self.adapters.clone(),
            sha256: self.sha256.clone(),
        };
        load_encoder(&spec).with_context(|| format!("loading model `{}`", spec.name()))
    }
}

fn load_images(paths: &[PathBuf]) -> Result<Vec<nadir_clip::image::RgbImage>> {
    Ok(paths
        .iter()
        .map(|p| nadir_clip::load_rgb(p))
        .collect::<Result<_, _>>()?)
}

fn print_vectors(vectors: &[Vec<f32>]) -> Result<()> {
    for v in vectors {
        outln!("{}", serde_json::to_string(v)?);
    }
    Ok(())
}

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) if is_broken_pipe(&e) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Error: {e:?}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::EmbedText { model, texts } => {
            let enc = model.load()?;
            let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
            print_vectors(&enc.embed_texts(&refs)?)?;
        }
        Command::EmbedImage { model, images } => {
            let enc = model.load()?;
            print_vectors(&enc.embed_images(&load_images(&images)?)?)?;
        }
        Command::Rank { model, query, images } => {
            let enc = model.load()?;
            let q = enc.embed_texts(&[query.as_str()])?;
            let vs = enc.embed_images(&load_images(&images)?)?;
            let mut scored: Vec<(f32, &PathBuf)> = vs
                .iter()
                .map(|v| v.iter().zip(&q[0]).map(|(a, b)| a * b).sum::<f32>())
                .zip(&images)
                .collect();
            scored.sort_by(|a, b| b.0.total_cmp(&a.0));
            outln!("| rank | score | image |");
            outln!("|---:|---:|---|");
            for (i, (score, path)) in scored.iter().enumerate() {
                outln!("| {} | {score:.4} | {} |", i + 1, path.display());
            }
        }
        Command::TrainAdapters(a) => train_adapters(a)?,
        Command::Index { what } => index::run(what)?,
        Command::Search(a) => search::search(a)?,
        Command::Similar(a) => search::similar(a)?,
        Command::Serve(a) => search::serve(a)?,
        Command::Labels { what } => labels::run(what)?,
        Command::Export(a) => labels::export(a)?,
        Command::Finetune(a) => segment::finetune(a)?,
        Command::Predict(a) => segment::predict(a)?,
        Command::Segment(a) => segment::segment(a)?,
        Command::Bench {
            what: BenchWhat::Interactive(a),
        } => segment::bench_interactive(a)?,
        Command::Bench {
            what: BenchWhat::Segmentation(a),
        } => segment::bench(a)?,
        Command::Bench {
            what: BenchWhat::Retrieval(a),
        } => bench_retrieval(a)?,
        Command::Bench {
            what: BenchWhat::Clip { arch, batch, seconds },
        } => {
            let cfg = ClipConfig::preset(&arch).with_context(|| format!("unknown architecture {arch:?}"))?;
            let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
            outln!("CLIP {arch} on CPU, random weights, {threads} threads (model only: preprocessed pixels, tokenized captions)");
            outln!("| batch | images/s | texts/s |");
            outln!("|---:|---:|---:|");
            let rows = nadir_clip::bench::bench_clip(&cfg, &batch, Duration::from_secs_f64(seconds))?;
            for r in rows {
                outln!("| {} | {:.2} | {:.2} |", r.batch, r.images_per_s, r.texts_per_s);
            }
        }
        Command::Bench {
            what: BenchWhat::ActiveLearning(a),
        } => learn_bench::run(a)?,
        Command::Bench {
            what: BenchWhat::Index { model, scene, batch },
        } => {
            let enc = model.load()?;
            let opts = nadir_indexer::AddOptions {
                batch,
                progress: false,
                ..Default::default()
            };
            let b = nadir_indexer::bench::bench_index(enc.as_ref(), &scene, &opts)?;
            let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
            let rate = |d: Duration| b.patches as f64 / d.as_secs_f64().max(1e-9);
            outln!(
                "{}: {} patches, model {}, batch {batch}, {threads} threads",
                scene.display(),
                b.patches,
                enc.model_id()?.name
            );
            outln!("| what | seconds | patches/s |");
            outln!("|---|---:|---:|");
            outln!(
                "| whole pipeline | {:.2} | {:.1} |",
                b.pipeline.as_secs_f64(),
                rate(b.pipeline)
            );
            outln!(
                "| model alone | {:.2} | {:.1} |",
                b.model_only.as_secs_f64(),
                rate(b.model_only)
            );
            let t = &b.timings;
            for (name, d) in [
                ("read + stretch", t.read),
                ("embed", t.embed),
                ("annotate (footprint, H3, labels, thumbnail)", t.annotate),
                ("write (parquet, packs, manifest)", t.write),
                ("graph + text index", t.derived),
            ] {
                outln!("| - {name} | {:.2} | |", d.as_secs_f64());
            }
        }
        Command::Bench {
            what:
                BenchWhat::Query {
                    n,
                    dim,
                    queries,
                    latent_dim,
                    seed,
                    ef,
                    dir,
                    dump,
                    skip_int8,
                },
        } => {
            let opts = nadir_query::bench::QueryBench {
                n,
                dim,
                queries,
                latent_dim,
                seed,
                efs: ef,
                dir,
                dump,
                skip_int8,
            };
            nadir_query::bench::run(&opts, &mut std::io::stdout())?;
        }
    }
    Ok(())
}

fn bench_retrieval(a: RetrievalArgs) -> Result<()> {
    let cache = a.cache.unwrap_or_else(nadir_clip::lite::features_dir);
    let towers = nadir_clip::lite::LiteTowers::load(&nadir_clip::lite::models_dir())?;
    let adapters = match &a.adapters {
        Some(p) => nadir_clip::adapter::Adapters::load(p)?,
        None => nadir_clip::lite::bundled_adapters()?,
    };
    let opts = nadir_clip::retrieval::RetrievalBench {
        datasets: DataSet::in_dir(&a.data, &a.datasets),
        cache_dir: cache,
    };
    let results = nadir_clip::retrieval::bench_retrieval(&towers, &adapters, &opts)?;
    if a.json {
        outln!("{}", serde_json::to_string_pretty(&results)?);
    } else {
        outln!(
            "nadir-lite adapters {} (trained on: {}), percent",
            a.adapters
                .as_ref()
                .map_or("bundled".to_string(), |p| p.display().to_string()),
            if adapters.trained_on.is_empty() {
                "not recorded".to_string()
            } else {
                adapters.trained_on.join(", ")
            }
        );
        out!("{}", nadir_clip::retrieval::markdown(&results));
    }
    Ok(())
}

fn train_adapters(a: TrainArgs) -> Result<()> {
    let cache = a.cache.unwrap_or_else(nadir_clip::lite::features_dir);
    let datasets = match &a.data {
        Some(dir) => DataSet::in_dir(dir, &a.datasets),
        None => vec![DataSet {
            name: "ucm".into(),
            root: a.ucm.clone(),
        }],
    };
    let opts = AlignOptions {
        datasets,
        cache_dir: cache,
        image_views: a.views,
        repeat: a.repeat,
        prompt_augmentation: !a.no_prompts,
        unfreeze_head: a.unfreeze_head,
        ground_size_m: a.ground_size,
        train: TrainConfig {
            dim: a.dim,
            hidden: a.hidden,
            epochs: a.epochs,
            batch_size: a.batch_size,
            lr: a.lr,
            weight_decay: a.weight_decay,
            temperature: a.temperature,
            learn_temperature: !a.fixed_temperature,
            positives: match a.positives {
                PositivesArg::Pair => Positives::Pair,
                PositivesArg::SameCaption => Positives::SameCaption,
                PositivesArg::SameClass => Positives::SameClass,
            },
            seed: a.seed,
        },
    };
    let towers = nadir_clip::lite::LiteTowers::load(&nadir_clip::lite::models_dir())?;
    let (adapters, report) = align(&towers, &opts)?;
    adapters.save(&a.out)?;
    let report_path = a.report.unwrap_or_else(|| a.out.with_extension("report.json"));
    std::fs::write(&report_path, serde_json::to_string_pretty(&report)? + "\n")
        .with_context(|| report_path.display().to_string())?;
    let pct = |x: f32| format!("{:.2}", 100.0 * x);
    outln!(
        "adapters: {} (epoch {} of {})",
        a.out.display(),
        report.train_report.best_epoch,
        a.epochs
    );
    outln!(
        "val ({} images, {} captions), each set in its own gallery:",
        report.val_images,
        report.val_captions
    );
    outln!("| set | t2i R@1 | R@5 | R@10 | i2t R@1 | R@5 | R@10 | mean R |");
    outln!("|---|---:|---:|---:|---:|---:|---:|---:|");
    let row = |name: &str, m: &nadir_clip::eval::RetrievalMetrics| {
        outln!(
            "| {name} | {} | {} | {} |",
            m.t2i.map(pct).join(" | "),
            m.i2t.map(pct).join(" | "),
            pct(m.mean_recall)
        );
    };
    for (name, m) in &report.val_per_set {
        row(name, m);
    }
    row("mean over sets", &report.val);
    for z in &report.zero_shot {
        for (template, acc) in &z.accuracy {
            outln!(
                "zero-shot {} {} ({} images, {} classes) {template:?}: {}",
                z.dataset,
                z.split,
                z.images,
                z.classes,
                pct(*acc)
            );
        }
    }
    outln!("report: {}", report_path.display());
    Ok(())
}
