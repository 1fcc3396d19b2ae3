//! `nadir index add`: scenes in, committed index out. For each input scene: checksum (an
//! unchanged scene is skipped), open, tile, read and stretch each window, embed in batches, then
//! footprint, H3 cells, zero-shot labels and thumbnail per patch, and hand the scene to the
//! writer. A scene that fails is reported with its path and the batch goes on; the summary lists
//! every failure. Progress: scenes, patches, patches/s and ETA on stderr.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use geo::Centroid;
use indicatif::{ProgressBar, ProgressStyle};
use nadir_clip::image::RgbImage;
use nadir_clip::Encoder;

use crate::cells;
use crate::error::{Error, Result};
use crate::landcover::LandCover;
use crate::manifest::{Manifest, ModelInfo, SceneEntry};
use crate::raster::{RasterOptions, Scene, Window};
use crate::sources;
use crate::table::{PatchId, PatchRecord};
use crate::thumbs;
use crate::tiling::Tiling;
use crate::writer::{IndexWriter, SceneRows};

/// How to index.
#[derive(Debug, Clone)]
pub struct AddOptions {
    /// Tiling; `None`: the index's own, or for a new index windows of the model's input size.
    pub tiling: Option<Tiling>,
    /// Pixel handling; `None`: the index's own, or the defaults.
    pub raster: Option<RasterOptions>,
    /// Tags stored with every patch of these scenes.
    pub tags: Vec<String>,
    /// Patches per forward pass.
    pub batch: usize,
    /// Show a progress bar.
    pub progress: bool,
    /// Commit every this many rows (see [`IndexWriter::set_commit_rows`]).
    pub commit_rows: usize,
    /// Where the model's weights came from (recorded in the manifest; see [`ModelInfo::source`]).
    pub model_source: Option<String>,
}

impl Default for AddOptions {
    fn default() -> Self {
        AddOptions {
            tiling: None,
            raster: None,
            tags: Vec::new(),
            batch: 16,
            progress: true,
            commit_rows: crate::writer::COMMIT_ROWS,
            model_source: None,
        }
    }
}

/// Where the time went.
#[derive(Debug, Default, Clone, Copy)]
pub struct Timings {
    /// Checksums, opening, reading and stretching pixels.
    pub read: Duration,
    /// The image tower.
    pub embed: Duration,
    /// Footprints, H3, labels, thumbnails.
    pub annotate: Duration,
    /// Parquet, packs and manifest commits.
    pub write: Duration,
    /// HNSW graph and text index.
    pub derived: Duration,
}

/// What a run did.
#[derive(Debug, Default)]
pub struct Report {
    /// Scenes indexed for the first time.
    pub added: usize,
    /// Scenes whose bytes changed: rows replaced.
    pub replaced: usize,
    /// Scenes already indexed with the same bytes.
    pub unchanged: usize,
    /// Inputs that failed, with the reason.
    pub failed: Vec<(PathBuf, String)>,
    /// Patches written.
    pub patches: usize,
    /// Windows skipped as nodata or empty.
    pub skipped_windows: usize,
    /// Rows in the index after the run.
    pub total_rows: usize,
    pub timings: Timings,
    pub elapsed: Duration,
}

/// The model info an encoder records in an index.
pub fn model_info(encoder: &dyn Encoder) -> Result<ModelInfo> {
    let id = encoder.model_id()?;
    Ok(ModelInfo {
        name: id.name,
        sha256: id.sha256,
        dim: encoder.dim(),
        text: true,
        source: None,
    })
}

/// Indexes `inputs` (files or folders) into the index in `dir`, creating it if needed.
pub fn add(dir: &Path, encoder: &dyn Encoder, inputs: &[PathBuf], opts: &AddOptions) -> Result<Report> {
    let start = Instant::now();
    let model = ModelInfo {
        source: opts.model_source.clone(),
        ..model_info(encoder)?
    };
    let existing = if Manifest::exists(dir) {
        Some(Manifest::load(dir)?)
    } else {
        None
    };
    let tiling = opts
        .tiling
        .clone()
        .or_else(|| existing.as_ref().map(|m| m.tiling.clone()))
        .unwrap_or_else(|| Tiling::for_encoder(encoder));
    let raster = opts
        .raster
        .clone()
        .or_else(|| existing.map(|m| m.raster))
        .unwrap_or_default();
    let mut writer = IndexWriter::open(dir, model, tiling.clone(), raster.clone())?;
    writer.set_commit_rows(opts.commit_rows);
    let landcover = LandCover::new(encoder)?;
    let (files, mut failed) = sources::expand(inputs);
    let mut report = Report::default();
    let bar = progress_bar(files.len(), opts.progress);
    let mut job = Job {
        encoder,
        tiling: &tiling,
        raster: &raster,
        landcover: &landcover,
        opts,
        timings: Timings::default(),
    };
    for path in &files {
        bar.set_message(format!(
            "{}",
            path.file_name().map(|n| n.to_string_lossy()).unwrap_or_default()
        ));
        match job.scene(path, &writer) {
            Ok(None) => report.unchanged += 1,
            Ok(Some(scene)) => {
                let replaced = writer.manifest().scene(&scene.entry.id).is_some();
                report.patches += scene.rows.len();
                report.skipped_windows += scene.entry.skipped;
                let t = Instant::now();
                writer.add_scene(scene)?;
                job.timings.write += t.elapsed();
                if replaced {
                    report.replaced += 1;
                } else {
                    report.added += 1;
                }
            }
            Err(e @ (Error::Input { .. } | Error::Io { .. })) => {
                tracing::warn!("{e}");
                bar.suspend(|| eprintln!("skipped: {e}"));
                failed.push((path.clone(), e.to_string()));
            }
            Err(e) => return Err(e),
        }
        bar.inc(1);
        let secs = start.elapsed().as_secs_f64().max(1e-9);
        bar.set_prefix(format!(
            "{} patches, {:.1} patches/s",
            report.patches,
            report.patches as f64 / secs
        ));
    }
    bar.set_message("committing, building the HNSW graph and the text index");
    let t = Instant::now();
    writer.commit()?;
    job.timings.write += t.elapsed();
    let t = Instant::now();
    let manifest = writer.finish()?;
    job.timings.derived = t.elapsed();
    bar.finish_and_clear();
    report.failed = failed;
    report.total_rows = manifest.rows();
    report.timings = job.timings;
    report.elapsed = start.elapsed();
    Ok(report)
}

fn progress_bar(len: usize, show: bool) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len as u64);
    bar.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} scenes, {prefix} [{elapsed} < {eta}] {msg}")
            .expect("valid template"),
    );
    bar
}

struct Job<'a> {
    encoder: &'a dyn Encoder,
    tiling: &'a Tiling,
    raster: &'a RasterOptions,
    landcover: &'a LandCover,
    opts: &'a AddOptions,
    timings: Timings,
}

impl Job<'_> {
    /// Reads and embeds one scene; `None` when it is already indexed unchanged.
    fn scene(&mut self, path: &Path, writer: &IndexWriter) -> Result<Option<SceneRows>> {
        let t = Instant::now();
        let (canonical, sha256) = if crate::vsi::is_virtual(path) {
            // Read through GDAL: the path is its own name; the bytes are hashed as they stream.
            (path.to_path_buf(), crate::vsi::sha256(path)?)
        } else {
            let canonical = path.canonicalize().map_err(|e| Error::io(path, e))?;
            let sha256 = nadir_clip::encoder::sha256_file(&canonical)
                .map_err(|e| Error::input(path, e.to_string()))?;
            (canonical, sha256)
        };
        // A scene keeps its id where the manifest already knows its path (after a relocation the
        // id no longer derives from the path).
        let id = writer
            .manifest()
            .scenes
            .iter()
            .find(|s| s.path == canonical)
            .map_or_else(|| sources::scene_id(&canonical), |s| s.id.clone());
        if writer.has_scene(&id, &sha256) {
            tracing::debug!(scene = %path.display(), "unchanged, skipped");
            return Ok(None);
        }
        let scene = Scene::open(&canonical, self.raster)?;
        let (width, height) = scene.size();
        let georef = scene.georef();
        let pixel_size_m = georef.map(|g| g.pixel_size_m(width, height)).transpose()?;
        let windows = self.tiling.windows(width, height, pixel_size_m);
        let res = pixel_size_m.map(|p| {
            let side = f64::from(self.tiling.window_px(Some(p))) * p;
            cells::resolution_for_area(side * side)
        });
        self.timings.read += t.elapsed();

        let mut out = SceneRows {
            entry: SceneEntry {
                id: id.clone(),
                path: canonical.clone(),
                sha256,
                part: String::new(),
                patches: 0,
                skipped: 0,
                width,
                height,
                epsg: georef.and_then(|g| g.epsg()),
                georeferenced: georef.is_some(),
                pixel_size_m,
                tags: self.opts.tags.clone(),
            },
            rows: Vec::new(),
            vectors: Vec::new(),
            thumbnails: Vec::new(),
        };
        let acquired_ms = scene.acquired_ms();
        for chunk in windows.chunks(self.opts.batch.max(1)) {
            let t = Instant::now();
            let mut kept: Vec<(Window, RgbImage)> = Vec::with_capacity(chunk.len());
            for w in chunk {
                match scene.read_window(*w, self.tiling.out)? {
                    Some(img) => kept.push((*w, img)),
                    None => out.entry.skipped += 1,
                }
            }
            self.timings.read += t.elapsed();
            if kept.is_empty() {
                continue;
            }
            let t = Instant::now();
            let images: Vec<RgbImage> = kept.iter().map(|(_, img)| img.clone()).collect();
            let vectors = self.encoder.embed_images(&images)?;
            self.timings.embed += t.elapsed();
            let t = Instant::now();
            for ((window, img), v) in kept.iter().zip(vectors) {
                let footprint = georef.map(|g| g.footprint(window)).transpose()?;
                let centroid = footprint
                    .as_ref()
                    .and_then(|p| p.centroid())
                    .map(|c| (c.x(), c.y()));
                let h3 = match (centroid, res) {
                    (Some((lon, lat)), Some(res)) => cells::cells_for(lon, lat, res).unwrap_or_default(),
                    _ => Vec::new(),
                };
                out.rows.push(PatchRecord {
                    id: PatchId::new(&id, window),
                    scene: id.clone(),
                    window: *window,
                    footprint,
                    centroid,
                    h3,
                    acquired_ms,
                    gsd_m: pixel_size_m.map(|p| p * f64::from(window.width) / f64::from(self.tiling.out)),
                    tags: self.opts.tags.clone(),
                    labels: self.landcover.labels(&v),
                    thumb: (0, 0),
                });
                out.thumbnails.push(thumbs::encode(img));
                out.vectors.extend_from_slice(&v);
            }
            self.timings.annotate += t.elapsed();
        }
        if out.rows.is_empty() {
            return Err(Error::input(
                path,
                format!(
                    "no patch to index: all {} windows are nodata or empty",
                    windows.len()
                ),
            ));
        }
        Ok(Some(out))
    }
}
