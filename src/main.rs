//! `nadir`: the command-line interface. It parses arguments and calls the libraries; all the work
//! lives in the workspace crates.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use nadir_clip::{Activation, ClipConfig, ClipEncoder, ClipSpec, Encoder};

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
    /// Weights file (open_clip .pt/.safetensors or Hugging Face CLIP .safetensors), or a model
    /// name: remoteclip-vit-b-32, remoteclip-vit-l-14, openai-vit-b-32.
    #[arg(long, short = 'm')]
    model: String,
    /// Model config (open_clip or Hugging Face JSON); default: found next to the weights, or the
    /// named model's preset, or inferred from the weights.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Override the MLP activation of the model.
    #[arg(long, value_enum)]
    activation: Option<ActivationArg>,
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
    /// Measure throughput and print a table.
    Bench {
        #[command(subcommand)]
        what: BenchWhat,
    },
}

#[derive(Subcommand, Debug)]
enum BenchWhat {
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
}

impl ModelArgs {
    fn load(&self) -> Result<ClipEncoder> {
        let spec = ClipSpec {
            model: self.model.clone(),
            config: self.config.clone(),
            activation: self.activation.map(|a| match a {
                ActivationArg::QuickGelu => Activation::QuickGelu,
                ActivationArg::Gelu => Activation::Gelu,
            }),
        };
        Ok(ClipEncoder::load(&spec)?)
    }
}

fn print_vectors(vectors: &[Vec<f32>]) -> Result<()> {
    for v in vectors {
        println!("{}", serde_json::to_string(v)?);
    }
    Ok(())
}

fn main() -> Result<()> {
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
            let imgs = images
                .iter()
                .map(|p| nadir_clip::load_rgb(p))
                .collect::<Result<Vec<_>, _>>()?;
            print_vectors(&enc.embed_images(&imgs)?)?;
        }
        Command::Bench {
            what: BenchWhat::Clip { arch, batch, seconds },
        } => {
            let cfg = ClipConfig::preset(&arch).with_context(|| format!("unknown architecture {arch:?}"))?;
            let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
            println!("CLIP {arch} on CPU, random weights, {threads} threads (model only: preprocessed pixels, tokenized captions)");
            println!("| batch | images/s | texts/s |");
            println!("|---:|---:|---:|");
            let rows = nadir_clip::bench::bench_clip(&cfg, &batch, Duration::from_secs_f64(seconds))?;
            for r in rows {
                println!("| {} | {:.2} | {:.2} |", r.batch, r.images_per_s, r.texts_per_s);
            }
        }
    }
    Ok(())
}
