//! `nadir index ...`: arguments for building and inspecting an index; the work is in
//! `nadir-indexer`.

use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::Subcommand;
use nadir_indexer::raster::RasterOptions;
use nadir_indexer::{Edge, Manifest, Report, Tiling};

use crate::ModelArgs;

/// Where the index lives (default: `./nadir-index`, or $NADIR_INDEX).
#[derive(clap::Args, Debug, Clone)]
pub struct IndexDir {
    #[arg(long, short = 'i', env = "NADIR_INDEX", default_value = "nadir-index")]
    pub index: PathBuf,
}

#[derive(Subcommand, Debug)]
pub enum IndexCommand {
    /// Index scenes (rasters GDAL reads, or folders of them; plain JPEG/PNG/TIFF images too).
    /// Unchanged scenes are skipped, changed ones replaced; an interrupted run resumes.
    Add(AddArgs),
    /// Import precomputed embeddings (Clay GeoParquet, AlphaEarth-style GeoTIFFs) under their own
    /// model id. Such an index answers similarity searches (by example), not text queries.
    Import {
        #[command(subcommand)]
        what: ImportCommand,
    },
    /// Print the manifest summary of an index (with a quick check: every file present, of the
    /// size it was committed with).
    Info {
        #[command(flatten)]
        dir: IndexDir,
    },
    /// Verify every file the manifest names against the checksum recorded when it was committed
    /// (parts, thumbnails, graph, text index) and list scene files that are missing. Exit status
    /// 1 when something is damaged.
    Check {
        #[command(flatten)]
        dir: IndexDir,
        /// Sizes only (a stat per file), no checksums.
        #[arg(long)]
        quick: bool,
    },
    /// Repair a damaged index: rebuild the graph and text index from the parts, drop the scenes
    /// whose part is damaged (it prints the command that indexes them again).
    Repair {
        #[command(flatten)]
        dir: IndexDir,
    },
    /// Bring an index of an older format to the current one (the next `index add` does it too).
    Upgrade {
        #[command(flatten)]
        dir: IndexDir,
    },
    /// Point the index at scenes that moved: every scene path under FROM becomes the same path
    /// under TO. Nothing changes unless every such scene is found at its new place.
    Relocate {
        #[command(flatten)]
        dir: IndexDir,
        /// The folder the scenes were indexed from.
        #[arg(long)]
        from: PathBuf,
        /// The folder they are in now.
        #[arg(long)]
        to: PathBuf,
        /// Also check that each file has the indexed bytes (reads them all).
        #[arg(long)]
        verify: bool,
        /// Say what would change, write nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum ImportCommand {
    /// Clay GeoParquet files (embeddings of Sentinel-2 chips): one patch per row, model `clay-v0`.
    Clay {
        #[command(flatten)]
        dir: IndexDir,
        /// GeoParquet files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Tags stored with every patch (repeatable), after `clay`, `sentinel-2`.
        #[arg(long = "tag")]
        tags: Vec<String>,
    },
    /// AlphaEarth-style embedding GeoTIFFs (one float band per dimension, one vector per pixel):
    /// one patch per window, its valid pixels' mean vector.
    #[command(name = "alphaearth")]
    AlphaEarth {
        #[command(flatten)]
        dir: IndexDir,
        /// GeoTIFF files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Window side in pixels (default: the index's own, or 16 for a new index).
        #[arg(long)]
        patch: Option<u32>,
        /// Model name recorded in the index (default: alphaearth-v1).
        #[arg(long)]
        name: Option<String>,
        /// Tags stored with every patch (repeatable), after `alphaearth`.
        #[arg(long = "tag")]
        tags: Vec<String>,
    },
}

#[derive(clap::Args, Debug)]
pub struct AddArgs {
    #[command(flatten)]
    dir: IndexDir,
    #[command(flatten)]
    model: ModelArgs,
    /// Scene files or folders.
    #[arg(required = true)]
    scenes: Vec<PathBuf>,
    /// Window side in source pixels (default: on georeferenced scenes the model's training
    /// ground size, see --ground-size; elsewhere the model's input size).
    #[arg(long)]
    patch: Option<u32>,
    /// Step between windows as a share of the window (0.5: half overlap).
    #[arg(long, default_value_t = 1.0)]
    stride: f64,
    /// Window side on the ground in metres (resamples so every patch covers the same area).
    /// Default: the ground size the model was trained at, when it records one (the default
    /// model does), unless --patch is given.
    #[arg(long)]
    ground_size: Option<f64>,
    /// Edge handling: shift (last window moved inward), drop, pad.
    #[arg(long, default_value = "shift")]
    edge: Edge,
    /// 1-based bands to use as RGB, e.g. 1,2,3 (one band: replicated to grey).
    #[arg(long, value_delimiter = ',')]
    bands: Option<Vec<usize>>,
    /// Percentile stretch for 16-bit and float data, low,high.
    #[arg(long, value_delimiter = ',', default_value = "2,98")]
    stretch: Vec<f64>,
    /// Stretch 8-bit data too.
    #[arg(long)]
    stretch_u8: bool,
    /// Skip windows with more than this share of nodata.
    #[arg(long, default_value_t = 0.5)]
    max_nodata: f64,
    /// Tags stored with every patch (repeatable).
    #[arg(long = "tag")]
    tags: Vec<String>,
    /// Patches per forward pass.
    #[arg(long, default_value_t = 16)]
    batch: usize,
    /// Commit to disk every N patches (work lost to a crash is at most this).
    #[arg(long, default_value_t = nadir_indexer::writer::COMMIT_ROWS)]
    commit_every: usize,
    /// Hide the progress bar.
    #[arg(long)]
    quiet: bool,
}

pub fn run(cmd: IndexCommand) -> Result<()> {
    match cmd {
        IndexCommand::Add(a) => add(a),
        IndexCommand::Import { what } => import(what),
        IndexCommand::Info { dir } => info(&dir),
        IndexCommand::Check { dir, quick } => check(&dir, quick),
        IndexCommand::Repair { dir } => repair(&dir),
        IndexCommand::Upgrade { dir } => upgrade(&dir),
        IndexCommand::Relocate {
            dir,
            from,
            to,
            verify,
            dry_run,
        } => relocate(&dir, &from, &to, verify, dry_run),
    }
}

fn add(a: AddArgs) -> Result<()> {
    if a.stretch.len() != 2 {
        bail!("--stretch takes two percentiles, low,high (got {:?})", a.stretch);
    }
    let mut model = a.model.clone();
    if model.model.is_none() && Manifest::exists(&a.dir.index) {
        // Keep adding with the model that built the index.
        let m = Manifest::load(&a.dir.index)?.model;
        model.model = Some(m.source.unwrap_or(m.name));
        model.sha256 = Some(m.sha256);
    }
    let model_source = model
        .model
        .as_deref()
        .map(std::path::Path::new)
        .filter(|p| p.is_file())
        .and_then(|p| p.canonicalize().ok())
        .map(|p| p.display().to_string())
        // nadir-lite with its own adapters: the adapters file identifies the model.
        .or_else(|| {
            model
                .adapters
                .as_deref()
                .and_then(|p| p.canonicalize().ok())
                .map(|p| p.display().to_string())
        });
    let encoder = model.load()?;
    let exists = Manifest::exists(&a.dir.index);
    // Adding to an index without pixel or tiling flags keeps the index's own settings (the
    // model's defaults could differ from what the index was built with).
    let default_pixels =
        a.bands.is_none() && a.stretch == [2.0, 98.0] && !a.stretch_u8 && a.max_nodata == 0.5;
    let raster = (!(exists && default_pixels)).then(|| RasterOptions {
        bands: a.bands,
        stretch: (a.stretch[0], a.stretch[1]),
        stretch_u8: a.stretch_u8,
        max_nodata: a.max_nodata,
    });
    // The model's default tiling, with what was given on the command line; --patch alone also
    // turns off the model's ground size.
    let default_tiling =
        a.patch.is_none() && a.ground_size.is_none() && a.stride == 1.0 && matches!(a.edge, Edge::Shift);
    let default = Tiling::for_encoder(encoder.as_ref());
    let tiling = (!(exists && default_tiling)).then(|| Tiling {
        patch: a.patch.unwrap_or(default.patch),
        stride: a.stride,
        ground_size_m: a
            .ground_size
            .or(default.ground_size_m.filter(|_| a.patch.is_none())),
        edge: a.edge,
        ..default
    });
    let opts = nadir_indexer::AddOptions {
        tiling,
        raster,
        tags: a.tags,
        batch: a.batch,
        progress: !a.quiet,
        commit_rows: a.commit_every,
        model_source,
    };
    let report = nadir_indexer::add(&a.dir.index, encoder.as_ref(), &a.scenes, &opts)?;
    print_report(&a.dir.index, &report);
    if !report.failed.is_empty() {
        let others = report.added + report.replaced + report.unchanged;
        if others == 0 {
            bail!(
                "{} of the inputs failed (listed above); nothing else was given",
                report.failed.len()
            );
        }
        bail!(
            "{} of the inputs failed (listed above); the other {others} are indexed",
            report.failed.len()
        );
    }
    Ok(())
}

fn import(what: ImportCommand) -> Result<()> {
    use nadir_indexer::import::{Format, ImportOptions};
    let (format, dir, files, opts) = match what {
        ImportCommand::Clay { dir, files, tags } => (
            Format::Clay,
            dir,
            files,
            ImportOptions {
                tags,
                ..Default::default()
            },
        ),
        ImportCommand::AlphaEarth {
            dir,
            files,
            patch,
            name,
            tags,
        } => (
            Format::AlphaEarth,
            dir,
            files,
            ImportOptions { name, patch, tags },
        ),
    };
    let r = nadir_indexer::import::import(&dir.index, format, &files, &opts)?;
    let model = Manifest::load(&dir.index)?.model;
    outln!(
        "{}: {} files imported, {} replaced, {} unchanged, {} failed; {} patches written ({} skipped: no embedding or no valid pixel); {} patches of {} ({}-d) in the index; {:.1} s",
        dir.index.display(),
        r.added,
        r.replaced,
        r.unchanged,
        r.failed.len(),
        r.patches,
        r.skipped_windows,
        r.total_rows,
        model.name,
        model.dim,
        r.elapsed.as_secs_f64()
    );
    for (path, why) in &r.failed {
        outln!("failed: {} ({why})", path.display());
    }
    if !r.failed.is_empty() {
        bail!(
            "{} of the inputs failed (listed above); the others are imported",
            r.failed.len()
        );
    }
    Ok(())
}

fn print_report(dir: &std::path::Path, r: &Report) {
    let secs = r.elapsed.as_secs_f64();
    outln!(
        "{}: {} scenes added, {} replaced, {} unchanged, {} failed; {} patches written ({} windows skipped as nodata or empty); {} patches in the index",
        dir.display(),
        r.added,
        r.replaced,
        r.unchanged,
        r.failed.len(),
        r.patches,
        r.skipped_windows,
        r.total_rows
    );
    let t = &r.timings;
    outln!(
        "time {secs:.1} s ({:.1} patches/s): read {:.1} s, embed {:.1} s, annotate {:.1} s, write {:.1} s, graph and text index {:.1} s",
        r.patches as f64 / secs.max(1e-9),
        t.read.as_secs_f64(),
        t.embed.as_secs_f64(),
        t.annotate.as_secs_f64(),
        t.write.as_secs_f64(),
        t.derived.as_secs_f64()
    );
    for (path, why) in &r.failed {
        outln!("failed: {} ({why})", path.display());
    }
}

fn info(dir: &IndexDir) -> Result<()> {
    let m = Manifest::load(&dir.index)?;
    outln!(
        "index {} (format {} version {})",
        dir.index.display(),
        m.format,
        m.version
    );
    outln!(
        "model {} ({}-d, sha256 {}, text tower: {})",
        m.model.name,
        m.model.dim,
        m.model.sha256,
        m.model.text
    );
    outln!(
        "{} patches in {} scenes, {} parts, generation {}",
        m.rows(),
        m.scenes.len(),
        m.parts.len(),
        m.generation
    );
    outln!("graph and text index current: {}", m.derived_current());
    if m.needs_upgrade() {
        outln!(
            "format version {} is older than this build's {}: `nadir index upgrade --index {}`",
            m.version,
            nadir_indexer::manifest::FORMAT_VERSION,
            dir.index.display()
        );
    }
    let quick = nadir_indexer::check::quick(&dir.index, &m);
    if quick.ok() {
        outln!("files: {} present with their committed sizes", quick.files);
    }
    for d in &quick.damaged {
        outln!("damaged: {d}");
    }
    for s in &quick.missing_scenes {
        outln!("scene file missing: {} ({})", s.id, s.path.display());
    }
    for s in &m.scenes {
        outln!(
            "  {} {}x{} px, {} patches, {} skipped, EPSG {}, {}",
            s.id,
            s.width,
            s.height,
            s.patches,
            s.skipped,
            s.epsg.map_or("-".to_string(), |e| e.to_string()),
            s.path.display()
        );
    }
    Ok(())
}

fn bar(len: usize, what: &str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(len as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template(&format!(
            "{{bar:30}} {{pos}}/{{len}} {what} [{{elapsed}} < {{eta}}]"
        ))
        .expect("valid template"),
    );
    bar
}

fn check(dir: &IndexDir, quick: bool) -> Result<()> {
    use nadir_indexer::check::Depth;
    let m = Manifest::load(&dir.index)?;
    let depth = if quick { Depth::Quick } else { Depth::Full };
    let progress = bar(0, "files");
    let r = nadir_indexer::check::check(&dir.index, &m, depth, &mut |done, total| {
        progress.set_length(total as u64);
        progress.set_position(done as u64);
    });
    progress.finish_and_clear();
    for d in &r.damaged {
        outln!("damaged: {d}");
    }
    for s in &r.missing_scenes {
        outln!("scene file missing: {} ({})", s.id, s.path.display());
    }
    outln!(
        "{}: {} files checked ({}), {} damaged, {} without a recorded checksum (format version {}), {} scene files missing",
        dir.index.display(),
        r.files,
        if quick { "sizes".to_string() } else { format!("{:.1} MB read", r.bytes_read as f64 / 1e6) },
        r.damaged.len(),
        r.unsummed,
        m.version,
        r.missing_scenes.len()
    );
    if !r.ok() {
        bail!(
            "index {} is damaged; `nadir index repair --index {}` rebuilds the graph and text index and drops damaged parts' scenes",
            dir.index.display(),
            dir.index.display()
        );
    }
    if !r.missing_scenes.is_empty() {
        outln!(
            "search works; tiles and exports of the missing scenes do not. If they moved: `nadir index relocate --index {} --from OLD_FOLDER --to NEW_FOLDER`",
            dir.index.display()
        );
    }
    Ok(())
}

fn repair(dir: &IndexDir) -> Result<()> {
    let progress = bar(0, "files checked");
    let r = nadir_indexer::check::repair(&dir.index, &mut |done, total| {
        progress.set_length(total as u64);
        progress.set_position(done as u64);
    })?;
    progress.finish_and_clear();
    for d in &r.found {
        outln!("damaged: {d}");
    }
    if r.found.is_empty() && !r.rebuilt_derived {
        outln!("{}: nothing damaged, nothing to repair", dir.index.display());
        return Ok(());
    }
    outln!(
        "{}: {} scenes dropped with their damaged parts; graph and text index {}",
        dir.index.display(),
        r.dropped_scenes.len(),
        if r.rebuilt_derived { "rebuilt" } else { "kept" }
    );
    if !r.dropped_scenes.is_empty() {
        let paths: Vec<String> = r
            .dropped_scenes
            .iter()
            .map(|s| format!("'{}'", s.path.display()))
            .collect();
        outln!(
            "index them again with: nadir index add --index {} {}",
            dir.index.display(),
            paths.join(" ")
        );
    }
    Ok(())
}

fn upgrade(dir: &IndexDir) -> Result<()> {
    let before = Manifest::load(&dir.index)?.version;
    let m = nadir_indexer::IndexWriter::open_existing(&dir.index)?.finish()?;
    if before == m.version {
        outln!("{}: already format version {}", dir.index.display(), m.version);
    } else {
        outln!(
            "{}: format version {before} -> {} ({} parts rewritten)",
            dir.index.display(),
            m.version,
            m.parts.len()
        );
    }
    Ok(())
}

fn relocate(
    dir: &IndexDir,
    from: &std::path::Path,
    to: &std::path::Path,
    verify: bool,
    dry_run: bool,
) -> Result<()> {
    let r = nadir_indexer::relocate::relocate(&dir.index, from, to, verify, dry_run)?;
    for (id, path) in &r.moved {
        outln!("{id} -> {}", path.display());
    }
    outln!(
        "{}: {} scenes {}",
        dir.index.display(),
        r.moved.len(),
        if r.committed {
            "relocated"
        } else {
            "would be relocated (dry run)"
        }
    );
    for (id, path) in &r.still_missing {
        outln!("still missing: {id} ({})", path.display());
    }
    Ok(())
}
