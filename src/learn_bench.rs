//! `nadir bench active-learning`: the balanced simulation on an index, or the rare-target one on
//! scene sets embedded with the default model. The work is in `nadir_query::learn_bench`.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use nadir_clip::training::DataSet;
use nadir_query::acquisition::Strategy;
use nadir_query::learn_bench::{self, Archive, Simulation, Target};

#[derive(clap::Args, Debug)]
pub struct ActiveLearningArgs {
    /// Balanced task: an index whose scene names carry the class (UC Merced's `harbor07.jpg`).
    #[arg(long, short = 'i', conflicts_with = "archive")]
    index: Option<PathBuf>,
    /// A folder of scene sets as `scripts/prepare_alignment_data.py` writes them, embedded with
    /// the default model (every split; classes named `set/class`): the rare-target task with
    /// --target, else the balanced task over the sets' classes.
    #[arg(long)]
    archive: Option<PathBuf>,
    /// The subfolders of --archive to take, comma separated.
    #[arg(long, value_delimiter = ',', default_value = "ucm,rsicd,eurosat")]
    datasets: Vec<String>,
    /// A rare target, `NAME=CLASS[,CLASS...]` (classes as `set/class`); repeatable.
    #[arg(long = "target")]
    targets: Vec<String>,
    /// Shares of the archive the target is kept at (its other images are left out), comma
    /// separated.
    #[arg(long, value_delimiter = ',', default_value = "0.001,0.005,0.01")]
    prevalence: Vec<f64>,
    /// Feature cache folder (default: ~/.cache/nadir/features).
    #[arg(long)]
    cache: Option<PathBuf>,
    /// Write the summary table (Markdown) here as well.
    #[arg(long)]
    summary: Option<PathBuf>,
    #[arg(long, default_value_t = 2)]
    start_positives: usize,
    #[arg(long, default_value_t = 10)]
    rounds: usize,
    #[arg(long, default_value_t = 10)]
    per_round: usize,
    /// Repetitions with different seeds per class (and per target and prevalence).
    #[arg(long, default_value_t = 3)]
    seeds: u64,
    /// Draw weak negatives only while no negative is labelled (the service before this
    /// benchmark) instead of topping them up to max(2 x positives, 50) as the service does.
    #[arg(long)]
    no_top_up: bool,
    /// Strategies to compare, comma separated (default: all): likely, likely+uncertain,
    /// uncertainty+diversity, uncertainty, nearest, random.
    #[arg(long, value_delimiter = ',')]
    strategies: Vec<String>,
    /// Also time scoring this many synthetic 256-d patches with a probe (0: skip).
    #[arg(long, default_value_t = 0)]
    score_rows: usize,
}

/// Most labels one simulated session may give (rounds x per round).
pub const MAX_SIMULATED_LABELS: usize = 10_000;

pub fn run(a: ActiveLearningArgs) -> Result<()> {
    let strategies = if a.strategies.is_empty() {
        Strategy::ALL.to_vec()
    } else {
        a.strategies
            .iter()
            .map(|s| {
                Strategy::from_name(s).with_context(|| {
                    let names: Vec<&str> = Strategy::ALL.iter().map(|s| s.name()).collect();
                    format!(
                        "--strategies: unknown strategy {s:?} (known: {})",
                        names.join(", ")
                    )
                })
            })
            .collect::<Result<_>>()?
    };
    if a.rounds.saturating_mul(a.per_round) > MAX_SIMULATED_LABELS {
        bail!("--rounds x --per-round is at most {MAX_SIMULATED_LABELS}");
    }
    if a.start_positives == 0 {
        bail!("--start-positives must be at least 1");
    }
    let sim = Simulation {
        start_positives: a.start_positives,
        rounds: a.rounds,
        per_round: a.per_round,
        seeds: a.seeds,
        no_top_up: a.no_top_up,
        strategies,
    };
    let mut scoring = String::new();
    if a.score_rows > 0 {
        let t = learn_bench::time_scoring(a.score_rows, 256, 3)?;
        scoring = format!(
            "Scoring {} x 256-d patches ({} threads): the probe over all {:.1} ms, 10 suggestions from them {:.1} ms (best of 3).\n",
            a.score_rows,
            std::thread::available_parallelism().map_or(1, |n| n.get()),
            t.score.as_secs_f64() * 1e3,
            t.choose.as_secs_f64() * 1e3
        );
        eprint!("{scoring}");
        if a.index.is_none() && a.archive.is_none() {
            return Ok(());
        }
    }
    let start = std::time::Instant::now();
    let balanced = |archive: &Archive| -> Result<()> {
        let (classes, curve) = learn_bench::simulate(archive, &sim)?;
        eprintln!(
            "{} patches, {} classes, {} seeds, {:.1} s",
            archive.len(),
            classes.len(),
            sim.seeds,
            start.elapsed().as_secs_f64()
        );
        outln!("strategy,labels,mean_average_precision");
        for (strategy, labels, map) in curve {
            outln!("{},{labels},{map:.4}", strategy.name());
        }
        Ok(())
    };
    match (&a.index, &a.archive) {
        (Some(dir), None) => balanced(&Archive::from_index(&nadir_indexer::Index::open(dir)?))?,
        (None, Some(data)) if a.targets.is_empty() => {
            balanced(&embed_archive(data, &a.datasets, a.cache.clone())?)?
        }
        (None, Some(data)) => {
            let targets: Vec<Target> = a
                .targets
                .iter()
                .map(|t| t.parse::<Target>())
                .collect::<std::result::Result<_, _>>()?;
            let archive = embed_archive(data, &a.datasets, a.cache.clone())?;
            eprintln!(
                "archive: {} images, {} s to embed",
                archive.len(),
                start.elapsed().as_secs()
            );
            let bar = indicatif::ProgressBar::new(0).with_style(
                indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} sessions, ETA {eta}")
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            let points =
                learn_bench::simulate_rare(&archive, &targets, &a.prevalence, &sim, &mut |done, total| {
                    bar.set_length(total as u64);
                    bar.set_position(done as u64);
                })?;
            bar.finish_and_clear();
            let mut out = std::io::stdout().lock();
            writeln!(
                out,
                "target,prevalence,members,archive,strategy,labels,found,recall,average_precision"
            )?;
            for p in &points {
                writeln!(
                    out,
                    "{},{},{},{},{},{},{:.3},{:.4},{:.4}",
                    p.target,
                    p.prevalence,
                    p.members,
                    p.archive,
                    p.strategy.name(),
                    p.labels,
                    p.found,
                    p.recall,
                    p.average_precision
                )?;
            }
            let mut summary = learn_bench::rare_summary(&points, &sim);
            if !scoring.is_empty() {
                summary = format!("{summary}\n{scoring}");
            }
            eprint!("{summary}");
            if let Some(path) = &a.summary {
                std::fs::write(path, &summary).with_context(|| format!("writing {}", path.display()))?;
            }
            eprintln!("{:.1} s", start.elapsed().as_secs_f64());
        }
        _ => bail!("give --index DIR or --archive DIR (with --target for the rare task)"),
    }
    Ok(())
}

/// Every image of the scene sets under `data`, embedded with the bundled default model; classes
/// named `set/class`.
fn embed_archive(data: &std::path::Path, datasets: &[String], cache: Option<PathBuf>) -> Result<Archive> {
    let towers = nadir_clip::lite::LiteTowers::load(&nadir_clip::lite::models_dir())?;
    let adapters = nadir_clip::lite::bundled_adapters()?;
    let sets = nadir_clip::archive::embed_scene_sets(
        &towers,
        &adapters,
        &DataSet::in_dir(data, datasets),
        &cache.unwrap_or_else(nadir_clip::lite::features_dir),
    )?;
    Ok(Archive {
        dim: sets.dim,
        class: sets
            .dataset
            .iter()
            .zip(&sets.class)
            .map(|(d, c)| format!("{d}/{c}"))
            .collect(),
        vectors: sets.vectors,
    })
}
