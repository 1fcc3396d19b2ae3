//! `nadir labels`: add, remove, list, import and export the labels of an index, train a class's
//! probe and ask it what to label next. The work is in `nadir_query::labels` and
//! `nadir_query::learn`.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Subcommand, ValueEnum};
use nadir_indexer::Index;
use nadir_query::labels::{self, LabelSource, LabelStore, NewLabel};
use nadir_query::learn::{self, SuggestMode, SuggestRequest};
use nadir_query::{Engine, GeoFilter};

use crate::index::IndexDir;

/// `nadir labels suggest --mode`.
#[derive(ValueEnum, Debug, Clone, Copy)]
pub enum ModeArg {
    Likely,
    Uncertain,
}

#[derive(Subcommand, Debug)]
pub enum LabelsCommand {
    /// Label patches for a class (relabelling replaces); prints each stored label as it is
    /// acknowledged (durable from then on).
    Add {
        #[command(flatten)]
        dir: IndexDir,
        #[arg(long, short = 'c')]
        class: String,
        /// Patch ids.
        #[arg(required = true)]
        patches: Vec<String>,
        /// The patches do not show the class.
        #[arg(long)]
        negative: bool,
        #[arg(long, value_enum, default_value = "search")]
        source: SourceArg,
    },
    /// Remove the labels of patches for a class.
    Remove {
        #[command(flatten)]
        dir: IndexDir,
        #[arg(long, short = 'c')]
        class: String,
        #[arg(required = true)]
        patches: Vec<String>,
    },
    /// List labels (all, or a class's) and the classes' counts.
    List {
        #[command(flatten)]
        dir: IndexDir,
        #[arg(long, short = 'c')]
        class: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Import labels from a GeoJSON file: points (the patch containing each), polygons (every
    /// patch whose centroid is inside) or features with a `patch_id` property.
    Import {
        #[command(flatten)]
        dir: IndexDir,
        #[arg(long, short = 'c')]
        class: String,
        file: PathBuf,
        #[arg(long)]
        negative: bool,
    },
    /// Export labels as a GeoJSON FeatureCollection of the labelled patches' footprints.
    Export {
        #[command(flatten)]
        dir: IndexDir,
        #[arg(long, short = 'c')]
        class: Option<String>,
        /// Instead of the labels: the class's labelled positives and every patch its probe finds
        /// at least this probable (0 to 1), with their probabilities.
        #[arg(long, requires = "class")]
        min_probability: Option<f32>,
        /// Write here instead of standard output.
        #[arg(long, short = 'o')]
        out: Option<PathBuf>,
    },
    /// Train a class's probe; report spatially cross-validated precision and recall.
    Learn {
        #[command(flatten)]
        dir: IndexDir,
        #[arg(long, short = 'c')]
        class: String,
        #[arg(long)]
        json: bool,
    },
    /// What to label next: by default the most probable unlabelled patches (`likely`, the best at
    /// finding a rare class), or `--mode uncertain` (probability nearest 0.5, spread over space).
    Suggest {
        #[command(flatten)]
        dir: IndexDir,
        #[arg(long, short = 'c')]
        class: String,
        #[arg(short, default_value_t = 10)]
        n: usize,
        #[arg(long, value_enum, default_value = "likely", conflicts_with = "likely")]
        mode: ModeArg,
        /// The same as `--mode likely` (the default).
        #[arg(long)]
        likely: bool,
        /// Only patches inside min_lon,min_lat,max_lon,max_lat.
        #[arg(long, value_delimiter = ',', allow_negative_numbers = true)]
        bbox: Option<Vec<f64>>,
        #[arg(long)]
        json: bool,
    },
}

#[derive(ValueEnum, Debug, Clone, Copy)]
pub enum SourceArg {
    Search,
    Suggestion,
    Import,
}

fn engine(dir: &IndexDir) -> Result<Engine> {
    let index = Index::open(&dir.index).with_context(|| format!("opening index {}", dir.index.display()))?;
    Ok(Engine::new(index, None)?)
}

fn store(dir: &IndexDir) -> Result<LabelStore> {
    if !nadir_indexer::Manifest::exists(&dir.index) {
        bail!("{}: no index here", dir.index.display());
    }
    Ok(LabelStore::open(&dir.index)?)
}

pub fn run(cmd: LabelsCommand) -> Result<()> {
    match cmd {
        LabelsCommand::Add {
            dir,
            class,
            patches,
            negative,
            source,
        } => {
            let engine = engine(&dir)?;
            let source = match source {
                SourceArg::Search => LabelSource::Search,
                SourceArg::Suggestion => LabelSource::Suggestion,
                SourceArg::Import => LabelSource::Import,
            };
            let mut out = std::io::stdout().lock();
            for patch_id in patches {
                let l = labels::add_checked(
                    &engine,
                    &NewLabel {
                        patch_id,
                        class: class.clone(),
                        positive: !negative,
                        source,
                        query: None,
                    },
                )?;
                let sign = if l.positive { "+" } else { "-" };
                writeln!(out, "{}\t{}\t{sign}{}", l.id, l.patch_id, l.class)?;
                out.flush()?;
            }
        }
        LabelsCommand::Remove { dir, class, patches } => {
            let store = store(&dir)?;
            for p in patches {
                if !store.remove(&p, &class)? {
                    bail!("patch {p} has no label for class {class:?}");
                }
                outln!("removed {p} from {class:?}");
            }
        }
        LabelsCommand::List { dir, class, json } => {
            let store = store(&dir)?;
            let list = store.list(class.as_deref())?;
            if json {
                let v = serde_json::json!({"labels": list, "classes": store.classes()?});
                outln!("{}", serde_json::to_string_pretty(&v)?);
                return Ok(());
            }
            outln!("| class | positives | negatives |");
            outln!("|---|---:|---:|");
            for c in store.classes()? {
                outln!("| {} | {} | {} |", c.class, c.positives, c.negatives);
            }
            outln!();
            outln!("| id | patch | class | label | source | created |");
            outln!("|---:|---|---|---|---|---|");
            for l in list {
                let sign = if l.positive { "positive" } else { "negative" };
                outln!(
                    "| {} | {} | {} | {sign} | {:?} | {} |",
                    l.id,
                    l.patch_id,
                    l.class,
                    l.source,
                    l.created
                );
            }
        }
        LabelsCommand::Import {
            dir,
            class,
            file,
            negative,
        } => {
            let engine = engine(&dir)?;
            let text = std::fs::read_to_string(&file).with_context(|| file.display().to_string())?;
            let v = serde_json::from_str(&text).with_context(|| format!("{}: not JSON", file.display()))?;
            let r = labels::import_geojson(&engine, &v, &class, !negative)?;
            outln!(
                "imported {} labels; {} points or polygons matched no patch",
                r.added,
                r.unmatched
            );
        }
        LabelsCommand::Export {
            dir,
            class,
            min_probability,
            out,
        } => {
            let engine = engine(&dir)?;
            let fc = match (min_probability, &class) {
                (Some(p), Some(c)) => {
                    let req = learn::ProbableRequest {
                        min_probability: p,
                        geofilter: None,
                    };
                    learn::probable_geojson(&engine, c, &req)?
                }
                _ => labels::export_geojson(&engine, class.as_deref())?,
            };
            let text = serde_json::to_string_pretty(&fc)? + "\n";
            match out {
                Some(p) => std::fs::write(&p, text).with_context(|| p.display().to_string())?,
                None => out!("{text}"),
            }
        }
        LabelsCommand::Learn { dir, class, json } => {
            let engine = engine(&dir)?;
            let r = learn::learn(&engine, &class)?;
            if json {
                outln!("{}", serde_json::to_string_pretty(&r)?);
                return Ok(());
            }
            outln!(
                "class {:?}: {} positives, {} negatives, {} weak negatives; dim {}; trained in {:.1} ms ({} iterations)",
                r.class, r.positives, r.negatives, r.weak_negatives, r.dim, r.train_ms, r.iterations
            );
            match &r.cross_validation {
                Some(cv) => {
                    let pct = |x: Option<f64>| x.map_or("-".to_string(), |v| format!("{:.1}%", 100.0 * v));
                    outln!(
                        "spatial cross-validation ({} folds by {}, {} groups, {} labels): precision {}, recall {}",
                        cv.folds,
                        cv.grouping,
                        cv.groups,
                        cv.evaluated,
                        pct(cv.precision),
                        pct(cv.recall)
                    );
                }
                None => outln!("no cross-validation: {}", r.note.unwrap_or_default()),
            }
        }
        LabelsCommand::Suggest {
            dir,
            class,
            n,
            mode,
            likely,
            bbox,
            json,
        } => {
            let engine = engine(&dir)?;
            let req = SuggestRequest {
                n,
                geofilter: bbox.map(|b| GeoFilter {
                    bbox: Some(b),
                    ..Default::default()
                }),
                mode: match (likely, mode) {
                    (true, _) | (_, ModeArg::Likely) => SuggestMode::Likely,
                    (_, ModeArg::Uncertain) => SuggestMode::Uncertain,
                },
            };
            let r = learn::suggest(&engine, &class, &req)?;
            if json {
                outln!("{}", serde_json::to_string_pretty(&r)?);
                return Ok(());
            }
            outln!("| rank | probability | patch | scene | lon | lat |");
            outln!("|---:|---:|---|---|---:|---:|");
            for (i, s) in r.suggestions.iter().enumerate() {
                let (lon, lat) = s.patch.centroid.map_or(("-".into(), "-".into()), |c| {
                    (format!("{:.6}", c[0]), format!("{:.6}", c[1]))
                });
                outln!(
                    "| {} | {:.3} | {} | {} | {lon} | {lat} |",
                    i + 1,
                    s.probability,
                    s.patch.patch_id,
                    s.patch.scene_name
                );
            }
        }
    }
    Ok(())
}

/// `nadir export`: chips, masks, a spatial split and a STAC catalog for fine-tuning.
#[derive(clap::Args, Debug)]
pub struct ExportArgs {
    #[command(flatten)]
    dir: IndexDir,
    /// The output folder (must be empty or absent).
    #[arg(long, short = 'o')]
    out: PathBuf,
    /// Export these patches (repeatable); their labels go along.
    #[arg(long = "patch", conflicts_with = "labelled")]
    patches: Vec<String>,
    /// Export every labelled patch (of `--class` when given).
    #[arg(long)]
    labelled: bool,
    /// With `--labelled`: only this class's labels; with `--min-probability`: the class.
    #[arg(long, short = 'c')]
    class: Option<String>,
    /// Export the class's labelled positives and every patch its probe finds at least this
    /// probable (0 to 1), all as the class: "find all of these".
    #[arg(long, requires = "class", conflicts_with_all = ["labelled", "patches"])]
    min_probability: Option<f32>,
    /// GeoJSON polygons (WGS84, or the CRS its `crs` member names) rasterised into a mask per chip.
    #[arg(long)]
    masks: Option<PathBuf>,
    /// The masks' class name.
    #[arg(long, default_value = "foreground")]
    mask_class: String,
    /// Train, val, test shares.
    #[arg(long, default_value = "0.7,0.15,0.15", value_delimiter = ',', num_args = 3)]
    split: Vec<f64>,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Split groups: H3 cells this many resolutions coarser than the patches' cells.
    #[arg(long, default_value_t = 2)]
    group_levels: u8,
}

pub fn export(a: ExportArgs) -> Result<()> {
    use nadir_query::export::{ExportRequest, Selection};
    let selection = match (a.min_probability, a.labelled, a.patches.is_empty()) {
        (Some(min_probability), _, _) => Selection::Probable {
            class: a.class.context("--min-probability needs --class")?,
            min_probability,
        },
        (None, true, _) => Selection::Labelled { class: a.class },
        (None, false, false) => Selection::Patches(a.patches),
        (None, false, true) => {
            bail!("give --patch ID (repeatable), --labelled or --class with --min-probability")
        }
    };
    let engine = engine(&a.dir)?;
    let mut req = ExportRequest::new(a.out, selection);
    if let Some(m) = &a.masks {
        let bytes = std::fs::read(m).with_context(|| format!("reading {}", m.display()))?;
        req.masks =
            Some(serde_json::from_slice(&bytes).with_context(|| format!("{}: not JSON", m.display()))?);
    }
    req.mask_class = a.mask_class;
    req.split = [a.split[0], a.split[1], a.split[2]];
    req.seed = a.seed;
    req.group_levels = a.group_levels;
    let report = nadir_query::export::export(&engine, &req)?;
    outln!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}
