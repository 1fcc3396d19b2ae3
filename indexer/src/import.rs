//! `nadir index import`: precomputed embeddings into the same index format as `nadir index add`,
//! under their own model id. This module owns the readers of the two supported sources and the
//! import run:
//!
//! - Clay GeoParquet ([`Format::Clay`]): one row per Sentinel-2 chip, a `list<float>` embedding
//!   and a WKB polygon in OGC:CRS84. One row becomes one patch.
//! - AlphaEarth-style embedding GeoTIFFs ([`Format::AlphaEarth`]): one band per dimension, one
//!   vector per pixel. The raster is tiled like a scene and each window becomes one patch: the
//!   mean of the vectors of its valid pixels.
//!
//! Every stored vector is L2-normalised: the index ranks by dot product, so it must hold unit
//! vectors whatever the source's own scaling (Clay's are not unit length).
//!
//! The model id: the name (`clay-v0`, `alphaearth-v1`, or the one given) and, as there are no
//! weights to hash, the sha256 of the first file imported into the index. Later imports of the
//! same model (same name) into that index reuse its id, so one index can hold many files of one
//! model; an index built by another model refuses them with the writer's error, as vectors of two
//! models cannot be compared. Such an index has no text tower (`text: false`): it answers
//! similarity (query-by-example) searches only.
//!
//! Each source file is one scene (its id from [`sources::scene_id`]): importing an unchanged file
//! again is a no-op, a changed one replaces its rows.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::Instant;

use arrow_array::cast::AsArray;
use arrow_array::types::{Date32Type, Date64Type, Float32Type, Float64Type};
use arrow_array::types::{
    TimestampMicrosecondType, TimestampMillisecondType, TimestampNanosecondType, TimestampSecondType,
};
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::{DataType, TimeUnit};
use gdal::raster::{GdalDataType, RasterBand, ResampleAlg};
use gdal::Dataset;
use geo::{Area, Centroid, GeodesicArea, Orient, Polygon};
use image::{Rgb, RgbImage};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::cells;
use crate::error::{Error, Result};
use crate::manifest::{Manifest, ModelInfo, SceneEntry};
use crate::pipeline::Report;
use crate::raster::{RasterOptions, Scene, Window};
use crate::sources;
use crate::table::{PatchId, PatchRecord};
use crate::thumbs::{self, THUMB_SIDE};
use crate::tiling::{Edge, Tiling};
use crate::wkb;
use crate::writer::{IndexWriter, SceneRows};

/// The model name recorded for Clay embeddings (the file does not name its model; the Clay v0
/// release's are from Clay Model v0.1).
pub const CLAY_MODEL: &str = "clay-v0";
/// Side of a Clay v0 chip in Sentinel-2 pixels (512 px of 10 m: 5.12 km).
pub const CLAY_CHIP_PX: u32 = 512;
/// Ground size of a Clay v0 input pixel: Sentinel-2's 10 m bands.
pub const CLAY_GSD_M: f64 = 10.0;
/// The default model name of AlphaEarth-style GeoTIFFs.
pub const ALPHAEARTH_MODEL: &str = "alphaearth-v1";
/// Default window side for AlphaEarth-style rasters, in pixels: 16 px of 10 m, 160 m patches.
pub const ALPHAEARTH_PATCH: u32 = 16;

/// A strip of all bands read at once is at most this large (bytes of f32); wider rows of windows
/// are read in several strips.
const STRIP_BYTES: usize = 64 << 20;
/// The grey of placeholder thumbnails.
const PLACEHOLDER_GREY: u8 = 128;

/// The kind of precomputed embeddings to import.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Clay GeoParquet: columns `embeddings` (`list<float>`), `geometry` (WKB polygon, OGC:CRS84),
    /// optionally `date` (acquisition day).
    Clay,
    /// A GeoTIFF (or any raster GDAL reads) whose floating-point bands are the dimensions of a
    /// per-pixel embedding, georeferenced in any CRS. Band nodata values and NaN mark pixels
    /// without an embedding.
    AlphaEarth,
}

impl Format {
    /// The model name used unless one is given.
    pub fn default_model(self) -> &'static str {
        match self {
            Format::Clay => CLAY_MODEL,
            Format::AlphaEarth => ALPHAEARTH_MODEL,
        }
    }

    /// Tags stored with every patch (before the caller's).
    fn tags(self) -> Vec<String> {
        match self {
            Format::Clay => vec!["clay".into(), "sentinel-2".into()],
            Format::AlphaEarth => vec!["alphaearth".into()],
        }
    }
}

/// How to import.
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// The model name recorded in the manifest; default [`Format::default_model`].
    pub name: Option<String>,
    /// AlphaEarth: window side in pixels; default: the index's own, or [`ALPHAEARTH_PATCH`] for a
    /// new index. Ignored for Clay, whose rows are chips already.
    pub patch: Option<u32>,
    /// Tags stored with every patch, after the format's own (`clay`, `sentinel-2`; `alphaearth`).
    pub tags: Vec<String>,
}

/// Imports `files` of `format` into the index in `dir`, creating it if needed. A file that cannot
/// be read is reported in [`Report::failed`] with the reason and the others go on; an index built
/// by another model (or with another `patch`) is refused.
pub fn import(dir: &Path, format: Format, files: &[PathBuf], opts: &ImportOptions) -> Result<Report> {
    let start = Instant::now();
    let name = opts
        .name
        .clone()
        .unwrap_or_else(|| format.default_model().to_string());
    if name.trim().is_empty() {
        return Err(Error::Invalid("the model name is empty".into()));
    }
    let mut report = Report::default();
    let mut inputs: Vec<Input> = Vec::new();
    for path in files {
        match path.canonicalize() {
            Ok(canonical) if inputs.iter().all(|i| i.canonical != canonical) => inputs.push(Input {
                path: path.clone(),
                canonical,
                sha256: None,
            }),
            Ok(_) => {}
            Err(e) => report.failed.push((path.clone(), Error::io(path, e).to_string())),
        }
    }
    let existing = if Manifest::exists(dir) {
        Some(Manifest::load(dir)?)
    } else {
        None
    };
    let same_model = existing
        .as_ref()
        .filter(|m| m.model.name == name && !m.model.text);
    let model = match (same_model, &existing) {
        (Some(m), _) => m.model.clone(),
        // Another model's index: the writer refuses it, naming both; nothing to probe.
        (None, Some(other)) => ModelInfo {
            name,
            sha256: inputs
                .first_mut()
                .and_then(|i| i.checksum().ok())
                .unwrap_or_default(),
            dim: other.model.dim,
            text: false,
            source: None,
        },
        (None, None) => first_model(format, &name, &mut inputs, &mut report)?,
    };
    let tiling = match format {
        Format::Clay => square_tiling(CLAY_CHIP_PX),
        Format::AlphaEarth => square_tiling(
            opts.patch
                .or_else(|| same_model.map(|m| m.tiling.patch))
                .unwrap_or(ALPHAEARTH_PATCH),
        ),
    };
    let raster = same_model.map(|m| m.raster.clone()).unwrap_or_default();
    let mut writer = IndexWriter::open(dir, model, tiling.clone(), raster)?;
    let mut tags = format.tags();
    tags.extend(opts.tags.iter().cloned());
    let t = &mut report.timings;
    let (mut added, mut replaced, mut unchanged, mut patches, mut skipped) = (0, 0, 0, 0, 0);
    let mut failed = Vec::new();
    for input in &mut inputs {
        let read = Instant::now();
        let scene = input.checksum().and_then(|sha256| {
            let scene = SceneInfo {
                id: sources::scene_id(&input.canonical),
                path: &input.canonical,
                sha256,
                dim: writer.manifest().model.dim,
                tags: &tags,
            };
            if writer.has_scene(&scene.id, &scene.sha256) {
                tracing::debug!(file = %input.path.display(), "unchanged, skipped");
                return Ok(None);
            }
            match format {
                Format::Clay => read_clay(&scene).map(Some),
                Format::AlphaEarth => read_alphaearth(&scene, &tiling).map(Some),
            }
        });
        t.read += read.elapsed();
        match scene {
            Ok(None) => unchanged += 1,
            Ok(Some(scene)) => {
                if writer.manifest().scene(&scene.entry.id).is_some() {
                    replaced += 1;
                } else {
                    added += 1;
                }
                patches += scene.rows.len();
                skipped += scene.entry.skipped;
                let write = Instant::now();
                writer.add_scene(scene)?;
                t.write += write.elapsed();
            }
            Err(e @ (Error::Input { .. } | Error::Io { .. })) => {
                tracing::warn!("{e}");
                failed.push((input.path.clone(), e.to_string()));
            }
            Err(e) => return Err(e),
        }
    }
    let write = Instant::now();
    writer.commit()?;
    t.write += write.elapsed();
    let derived = Instant::now();
    let manifest = writer.finish()?;
    t.derived = derived.elapsed();
    report.added = added;
    report.replaced = replaced;
    report.unchanged = unchanged;
    report.patches = patches;
    report.skipped_windows = skipped;
    report.failed.extend(failed);
    report.total_rows = manifest.rows();
    report.elapsed = start.elapsed();
    Ok(report)
}

/// One input file.
struct Input {
    path: PathBuf,
    canonical: PathBuf,
    sha256: Option<String>,
}

impl Input {
    fn checksum(&mut self) -> Result<String> {
        if let Some(s) = &self.sha256 {
            return Ok(s.clone());
        }
        let s = nadir_clip::encoder::sha256_file(&self.canonical)
            .map_err(|e| Error::input(&self.path, e.to_string()))?;
        self.sha256 = Some(s.clone());
        Ok(s)
    }
}

/// The model of a new index: named `name`, the dimension and checksum of the first input that can
/// be read. Inputs before it are moved to the report's failures.
fn first_model(
    format: Format,
    name: &str,
    inputs: &mut Vec<Input>,
    report: &mut Report,
) -> Result<ModelInfo> {
    while !inputs.is_empty() {
        let probed = inputs[0]
            .checksum()
            .and_then(|sha| Ok((sha, probe_dim(format, &inputs[0].canonical)?)));
        match probed {
            Ok((sha256, dim)) => {
                return Ok(ModelInfo {
                    name: name.to_string(),
                    sha256,
                    dim,
                    text: false,
                    source: None,
                })
            }
            Err(e @ (Error::Input { .. } | Error::Io { .. })) => {
                let input = inputs.remove(0);
                report.failed.push((input.path, e.to_string()));
            }
            Err(e) => return Err(e),
        }
    }
    let why: Vec<String> = report.failed.iter().map(|(_, why)| why.clone()).collect();
    Err(Error::Invalid(format!(
        "nothing to import: {}",
        if why.is_empty() {
            "no file given".to_string()
        } else {
            why.join("; ")
        }
    )))
}

/// The embedding dimension of a source file.
fn probe_dim(format: Format, path: &Path) -> Result<usize> {
    match format {
        Format::Clay => {
            let file = ClayFile::open(path)?;
            let reader = file
                .builder
                .build()
                .map_err(|e| Error::input(path, e.to_string()))?;
            for batch in reader {
                let batch = batch.map_err(|e| Error::input(path, format!("unreadable rows: {e}")))?;
                let emb = clay_column(&batch, &file.embeddings, path)?;
                if let Some(v) = (0..emb.len()).find_map(|i| list_values(emb, i, path).transpose()) {
                    return Ok(v?.len());
                }
            }
            Err(Error::input(path, "no row has an embedding"))
        }
        Format::AlphaEarth => {
            let ds = Dataset::open(path)
                .map_err(|e| Error::input(path, format!("not a raster GDAL can open: {e}")))?;
            Ok(ds.raster_count())
        }
    }
}

/// Windows of `side` pixels, not resampled.
fn square_tiling(side: u32) -> Tiling {
    Tiling {
        patch: side,
        stride: 1.0,
        ground_size_m: None,
        edge: Edge::Shift,
        out: side,
    }
}

/// What the readers need to know about the scene they read.
struct SceneInfo<'a> {
    id: String,
    path: &'a Path,
    sha256: String,
    /// The index's dimension: a file of another is refused.
    dim: usize,
    tags: &'a [String],
}

impl SceneInfo<'_> {
    fn entry(&self, (width, height): (u32, u32), epsg: Option<u32>, pixel_size_m: f64) -> SceneEntry {
        SceneEntry {
            id: self.id.clone(),
            path: self.path.to_path_buf(),
            sha256: self.sha256.clone(),
            part: String::new(),
            patches: 0,
            skipped: 0,
            width,
            height,
            epsg,
            georeferenced: true,
            pixel_size_m: Some(pixel_size_m),
            tags: self.tags.to_vec(),
        }
    }

    fn check_dim(&self, dim: usize, what: &str) -> Result<()> {
        if dim == self.dim {
            return Ok(());
        }
        Err(Error::input(
            self.path,
            format!("{what} {dim}-d embeddings; the index holds {}-d ones", self.dim),
        ))
    }

    /// The record of a patch; `thumb` is set by the writer.
    fn record(
        &self,
        window: Window,
        footprint: Polygon<f64>,
        acquired_ms: Option<i64>,
        gsd_m: f64,
    ) -> PatchRecord {
        let centroid = footprint.centroid().map(|c| (c.x(), c.y()));
        let area = footprint.geodesic_area_unsigned();
        let h3 = match centroid {
            Some((lon, lat)) if area > 0.0 => {
                cells::cells_for(lon, lat, cells::resolution_for_area(area)).unwrap_or_default()
            }
            _ => Vec::new(),
        };
        PatchRecord {
            id: PatchId::new(&self.id, &window),
            scene: self.id.clone(),
            window,
            footprint: Some(footprint),
            centroid,
            h3,
            acquired_ms,
            gsd_m: Some(gsd_m),
            tags: self.tags.to_vec(),
            labels: Vec::new(),
            thumb: (0, 0),
        }
    }
}

/// `v` scaled to unit length, or `None` for a zero or non-finite vector.
fn l2_normalised(v: &[f64]) -> Option<Vec<f32>> {
    let norm = v.iter().map(|x| x * x).sum::<f64>().sqrt();
    (norm.is_finite() && norm > 0.0).then(|| v.iter().map(|x| (x / norm) as f32).collect())
}

// ---------------------------------------------------------------------------------------------
// Clay GeoParquet

/// An opened Clay GeoParquet file: the reader and the names of its columns.
struct ClayFile {
    builder: ParquetRecordBatchReaderBuilder<File>,
    geometry: String,
    embeddings: String,
    date: Option<String>,
}

impl ClayFile {
    /// Opens `path` and checks its GeoParquet metadata: a WKB primary geometry column in WGS84
    /// longitude, latitude (OGC:CRS84, the GeoParquet default, or EPSG:4326).
    fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        let builder = ParquetRecordBatchReaderBuilder::try_new(file)
            .map_err(|e| Error::input(path, format!("not a Parquet file: {e}")))?;
        let geo = builder
            .metadata()
            .file_metadata()
            .key_value_metadata()
            .and_then(|kv| kv.iter().find(|kv| kv.key == "geo"))
            .and_then(|kv| kv.value.clone())
            .ok_or_else(|| Error::input(path, "not GeoParquet: no `geo` metadata"))?;
        let geo: serde_json::Value = serde_json::from_str(&geo)
            .map_err(|e| Error::input(path, format!("`geo` metadata is not JSON: {e}")))?;
        let geometry = geo["primary_column"].as_str().unwrap_or("geometry").to_string();
        let column = &geo["columns"][&geometry];
        let encoding = column["encoding"].as_str().unwrap_or_default();
        if !encoding.eq_ignore_ascii_case("wkb") {
            return Err(Error::input(
                path,
                format!("geometry column {geometry:?} is encoded as {encoding:?}; only WKB is read"),
            ));
        }
        if let Some(crs) = column.get("crs") {
            let id = &crs["id"];
            let code = id["code"]
                .as_str()
                .map(str::to_string)
                .or_else(|| id["code"].as_u64().map(|c| c.to_string()));
            let lonlat = matches!(
                (id["authority"].as_str(), code.as_deref()),
                (Some("OGC"), Some("CRS84")) | (Some("EPSG"), Some("4326"))
            );
            if !lonlat {
                return Err(Error::input(
                    path,
                    format!(
                        "geometry CRS {} is not WGS84 longitude, latitude (OGC:CRS84): reproject first",
                        crs["name"].as_str().unwrap_or("(unnamed)")
                    ),
                ));
            }
        }
        let schema = builder.schema().clone();
        let has = |n: &str| schema.column_with_name(n).is_some();
        if !has(&geometry) {
            return Err(Error::input(path, format!("no geometry column {geometry:?}")));
        }
        let embeddings = ["embeddings", "embedding"]
            .into_iter()
            .find(|n| has(n))
            .ok_or_else(|| Error::input(path, "no `embeddings` column"))?
            .to_string();
        let date = ["date", "datetime"]
            .into_iter()
            .find(|n| has(n))
            .map(str::to_string);
        Ok(ClayFile {
            builder,
            geometry,
            embeddings,
            date,
        })
    }
}

fn clay_column<'a>(batch: &'a RecordBatch, name: &str, path: &Path) -> Result<&'a ArrayRef> {
    batch
        .column_by_name(name)
        .ok_or_else(|| Error::input(path, format!("no column {name:?}")))
}

/// Row `i` of a list column of floats; `None` when null or when a value is null.
fn list_values(col: &ArrayRef, i: usize, path: &Path) -> Result<Option<Vec<f64>>> {
    if col.is_null(i) {
        return Ok(None);
    }
    let values = match col.data_type() {
        DataType::List(_) => col.as_list::<i32>().value(i),
        DataType::LargeList(_) => col.as_list::<i64>().value(i),
        DataType::FixedSizeList(..) => col.as_fixed_size_list().value(i),
        t => {
            return Err(Error::input(
                path,
                format!("embeddings are {t}, not a list of floats"),
            ))
        }
    };
    if values.null_count() > 0 {
        return Ok(None);
    }
    Ok(Some(match values.data_type() {
        DataType::Float32 => values
            .as_primitive::<Float32Type>()
            .values()
            .iter()
            .map(|&v| f64::from(v))
            .collect(),
        DataType::Float64 => values.as_primitive::<Float64Type>().values().to_vec(),
        t => {
            return Err(Error::input(
                path,
                format!("embedding values are {t}, not floats"),
            ))
        }
    }))
}

/// Row `i` of a WKB column.
fn wkb_at<'a>(col: &'a ArrayRef, i: usize, path: &Path) -> Result<Option<&'a [u8]>> {
    if col.is_null(i) {
        return Ok(None);
    }
    match col.data_type() {
        DataType::Binary => Ok(Some(col.as_binary::<i32>().value(i))),
        DataType::LargeBinary => Ok(Some(col.as_binary::<i64>().value(i))),
        t => Err(Error::input(path, format!("geometry is {t}, not WKB binary"))),
    }
}

/// Row `i` of a date or timestamp column as unix milliseconds.
fn time_at(col: &ArrayRef, i: usize, path: &Path) -> Result<Option<i64>> {
    if col.is_null(i) {
        return Ok(None);
    }
    Ok(Some(match col.data_type() {
        DataType::Date32 => i64::from(col.as_primitive::<Date32Type>().value(i)) * 86_400_000,
        DataType::Date64 => col.as_primitive::<Date64Type>().value(i),
        DataType::Timestamp(TimeUnit::Second, _) => col.as_primitive::<TimestampSecondType>().value(i) * 1000,
        DataType::Timestamp(TimeUnit::Millisecond, _) => {
            col.as_primitive::<TimestampMillisecondType>().value(i)
        }
        DataType::Timestamp(TimeUnit::Microsecond, _) => {
            col.as_primitive::<TimestampMicrosecondType>().value(i) / 1000
        }
        DataType::Timestamp(TimeUnit::Nanosecond, _) => {
            col.as_primitive::<TimestampNanosecondType>().value(i) / 1_000_000
        }
        t => {
            return Err(Error::input(
                path,
                format!("date column is {t}, not a date or timestamp"),
            ))
        }
    }))
}

/// The footprint of a WKB (multi)polygon in lon/lat: its largest polygon, counter-clockwise.
fn footprint_of(wkb: &[u8], row: usize, path: &Path) -> Result<Polygon<f64>> {
    let bad = |msg: String| Error::input(path, format!("row {row}: geometry: {msg}"));
    let mp = wkb::read_multipolygon(wkb).map_err(bad)?;
    let poly =
        mp.0.into_iter()
            .max_by(|a, b| a.unsigned_area().total_cmp(&b.unsigned_area()))
            .filter(|p| p.exterior().0.len() >= 4)
            .ok_or_else(|| bad("empty polygon".into()))?;
    let lonlat = poly
        .exterior()
        .coords()
        .all(|c| (-180.0..=180.0).contains(&c.x) && (-90.0..=90.0).contains(&c.y));
    if !lonlat {
        return Err(bad("coordinates are not longitude, latitude degrees".into()));
    }
    Ok(poly.orient(geo::orient::Direction::Default))
}

/// Reads a Clay GeoParquet file: one patch per row with an embedding and a geometry (rows
/// without either are counted as skipped).
///
/// - The window is the row's place in the file (`x` = row number x [`CLAY_CHIP_PX`], `y` = 0): the
///   file has no pixel grid, but ids must be stable and distinct per row.
/// - The footprint is the row's polygon; H3 cells at the resolution closest to its geodesic area.
/// - The acquisition time is the `date` column (the day of the source imagery), when present;
///   the GSD is Sentinel-2's 10 m.
/// - The thumbnail is a placeholder: there are no pixels in the file, so every row gets the same
///   plain grey [`THUMB_SIDE`] px JPEG.
/// - Embeddings are L2-normalised.
fn read_clay(scene: &SceneInfo<'_>) -> Result<SceneRows> {
    let path = scene.path;
    let file = ClayFile::open(path)?;
    let rows_in_file = usize::try_from(file.builder.metadata().file_metadata().num_rows()).unwrap_or(0);
    let strip = u32::try_from(rows_in_file)
        .ok()
        .and_then(|n| n.checked_mul(CLAY_CHIP_PX))
        .ok_or_else(|| Error::input(path, format!("{rows_in_file} rows: too many for one scene")))?;
    let reader = file
        .builder
        .build()
        .map_err(|e| Error::input(path, e.to_string()))?;
    let placeholder = thumbs::encode(&RgbImage::from_pixel(
        THUMB_SIDE,
        THUMB_SIDE,
        Rgb([PLACEHOLDER_GREY; 3]),
    ));
    let mut out = SceneRows {
        entry: scene.entry((strip.max(CLAY_CHIP_PX), CLAY_CHIP_PX), Some(4326), CLAY_GSD_M),
        rows: Vec::new(),
        vectors: Vec::new(),
        thumbnails: Vec::new(),
    };
    let mut row = 0usize;
    for batch in reader {
        let batch = batch.map_err(|e| Error::input(path, format!("unreadable rows: {e}")))?;
        let emb = clay_column(&batch, &file.embeddings, path)?;
        let geom = clay_column(&batch, &file.geometry, path)?;
        let date = file
            .date
            .as_deref()
            .map(|d| clay_column(&batch, d, path))
            .transpose()?;
        for i in 0..batch.num_rows() {
            let n = row;
            row += 1;
            let (Some(v), Some(wkb)) = (list_values(emb, i, path)?, wkb_at(geom, i, path)?) else {
                out.entry.skipped += 1;
                continue;
            };
            scene.check_dim(v.len(), &format!("row {n} has"))?;
            let Some(unit) = l2_normalised(&v) else {
                out.entry.skipped += 1;
                continue;
            };
            let footprint = footprint_of(wkb, n, path)?;
            let acquired_ms = date.map(|d| time_at(d, i, path)).transpose()?.flatten();
            let window = Window {
                x: n as u32 * CLAY_CHIP_PX,
                y: 0,
                width: CLAY_CHIP_PX,
                height: CLAY_CHIP_PX,
            };
            out.rows
                .push(scene.record(window, footprint, acquired_ms, CLAY_GSD_M));
            out.vectors.extend_from_slice(&unit);
            out.thumbnails.push(placeholder.clone());
        }
    }
    if out.rows.is_empty() {
        return Err(Error::input(
            path,
            format!("no row to import: all {row} rows lack an embedding or a geometry"),
        ));
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// AlphaEarth-style embedding rasters

/// Reads an embedding raster: the windows of `tiling` (no resampling), each pooled to one vector,
/// the mean over its valid pixels then L2-normalised. A pixel is valid when every band holds a
/// finite value other than that band's nodata value; a window without a valid pixel is skipped.
///
/// The footprint, H3 cells, GSD (the pixel's ground size) and acquisition time (from the file's
/// metadata, when it says) come from the raster's georeference as for `nadir index add`. The
/// thumbnail renders embedding dimensions 1, 2, 3 of the window's pixels as red, green, blue
/// (false colour; invalid pixels black), each stretched between its 2nd and 98th percentiles
/// over the scene, and enlarged without smoothing to [`THUMB_SIDE`] px: neighbouring patches of
/// different content look different in the UI.
fn read_alphaearth(scene: &SceneInfo<'_>, tiling: &Tiling) -> Result<SceneRows> {
    let path = scene.path;
    let raster = Scene::open(path, &RasterOptions::default())?;
    let georef = raster
        .georef()
        .ok_or_else(|| Error::input(path, "no georeference: embedding rasters must be georeferenced"))?;
    let (width, height) = raster.size();
    let ds =
        Dataset::open(path).map_err(|e| Error::input(path, format!("not a raster GDAL can open: {e}")))?;
    let dim = ds.raster_count();
    scene.check_dim(dim, "the file has")?;
    let mut bands = Vec::with_capacity(dim);
    let mut nodata = Vec::with_capacity(dim);
    for b in 1..=dim {
        let band = ds
            .rasterband(b)
            .map_err(|e| Error::input(path, format!("band {b}: {e}")))?;
        let ty = band.band_type();
        if !matches!(ty, GdalDataType::Float32 | GdalDataType::Float64) {
            return Err(Error::input(
                path,
                format!(
                    "band {b} is {}: embedding bands must be floating point (dequantise first)",
                    ty.name()
                ),
            ));
        }
        nodata.push(band.no_data_value().map(|v| v as f32));
        bands.push(band);
    }
    let pixel_size_m = georef.pixel_size_m(width, height)?;
    let windows = tiling.windows(width, height, Some(pixel_size_m));
    let rgb: Vec<usize> = (0..3).map(|c| c.min(dim - 1)).collect();
    let stretch: Vec<(f32, f32)> = rgb
        .iter()
        .map(|&b| false_colour_stretch(&bands[b], nodata[b], (width, height), path))
        .collect::<Result<_>>()?;
    let acquired_ms = raster.acquired_ms();
    let mut out = SceneRows {
        entry: scene.entry((width, height), georef.epsg(), pixel_size_m),
        rows: Vec::new(),
        vectors: Vec::new(),
        thumbnails: Vec::new(),
    };
    let mut i = 0;
    while i < windows.len() {
        // A run of windows on one row, read as one strip of every band.
        let first = windows[i];
        let mut j = i + 1;
        while j < windows.len()
            && windows[j].y == first.y
            && windows[j].height == first.height
            && (windows[j].x + windows[j].width - first.x) as usize * first.height as usize * dim * 4
                <= STRIP_BYTES
        {
            j += 1;
        }
        let run = &windows[i..j];
        i = j;
        let x0 = first.x.min(width);
        let x1 = run.iter().map(|w| w.x + w.width).max().unwrap_or(x0).min(width);
        let (y0, y1) = (first.y.min(height), (first.y + first.height).min(height));
        let strip = Strip::read(&bands, &nodata, (x0, y0, x1 - x0, y1 - y0), path)?;
        for w in run {
            let Some((sum, count)) = strip.sum(w) else {
                out.entry.skipped += 1;
                continue;
            };
            let mean: Vec<f64> = sum.iter().map(|s| s / count as f64).collect();
            let Some(unit) = l2_normalised(&mean) else {
                out.entry.skipped += 1;
                continue;
            };
            let footprint = georef.footprint(w)?;
            out.rows
                .push(scene.record(*w, footprint, acquired_ms, pixel_size_m));
            out.vectors.extend_from_slice(&unit);
            out.thumbnails.push(strip.false_colour(w, &rgb, &stretch));
        }
    }
    if out.rows.is_empty() {
        return Err(Error::input(
            path,
            format!(
                "no patch to import: none of the {} windows has a valid pixel",
                windows.len()
            ),
        ));
    }
    Ok(out)
}

/// Every band of a rectangle of the raster, and which of its pixels are valid.
struct Strip {
    x: u32,
    y: u32,
    width: usize,
    height: usize,
    /// Band-major values.
    values: Vec<f32>,
    valid: Vec<bool>,
}

impl Strip {
    fn read(
        bands: &[RasterBand<'_>],
        nodata: &[Option<f32>],
        (x, y, w, h): (u32, u32, u32, u32),
        path: &Path,
    ) -> Result<Strip> {
        let (width, height) = (w as usize, h as usize);
        let n = width * height;
        let mut values = vec![0f32; n * bands.len()];
        let mut valid = vec![n > 0; n];
        for (b, (band, nd)) in bands.iter().zip(nodata).enumerate() {
            if n == 0 {
                break;
            }
            let buf = &mut values[b * n..(b + 1) * n];
            band.read_into_slice::<f32>(
                (x as isize, y as isize),
                (width, height),
                (width, height),
                buf,
                None,
            )
            .map_err(|e| {
                Error::input(
                    path,
                    format!(
                        "cannot read band {} pixels {x},{y} {w}x{h} (truncated or corrupt file?): {e}",
                        b + 1
                    ),
                )
            })?;
            for (ok, &v) in valid.iter_mut().zip(buf.iter()) {
                *ok &= v.is_finite() && Some(v) != *nd;
            }
        }
        Ok(Strip {
            x,
            y,
            width,
            height,
            values,
            valid,
        })
    }

    /// Strip-relative pixel indices of the part of `w` inside the strip.
    fn pixels(&self, w: &Window) -> impl Iterator<Item = usize> + '_ {
        let cols = w.x.saturating_sub(self.x) as usize..((w.x + w.width - self.x) as usize).min(self.width);
        let rows = w.y.saturating_sub(self.y) as usize..((w.y + w.height - self.y) as usize).min(self.height);
        rows.flat_map(move |r| cols.clone().map(move |c| r * self.width + c))
    }

    /// The per-band sums over the valid pixels of `w`, and their count; `None` without any.
    fn sum(&self, w: &Window) -> Option<(Vec<f64>, usize)> {
        let pixels: Vec<usize> = self.pixels(w).filter(|&p| self.valid[p]).collect();
        if pixels.is_empty() {
            return None;
        }
        let n = self.width * self.height;
        let sums = self
            .values
            .chunks_exact(n)
            .map(|band| pixels.iter().map(|&p| f64::from(band[p])).sum())
            .collect();
        Some((sums, pixels.len()))
    }

    /// The false-colour thumbnail of `w` (see [`read_alphaearth`]).
    fn false_colour(&self, w: &Window, rgb: &[usize], stretch: &[(f32, f32)]) -> Vec<u8> {
        let n = self.width * self.height;
        let mut img = RgbImage::new(w.width, w.height);
        for p in self.pixels(w) {
            if !self.valid[p] {
                continue;
            }
            let (sx, sy) = ((p % self.width) as u32 + self.x, (p / self.width) as u32 + self.y);
            let px = img.get_pixel_mut(sx - w.x, sy - w.y);
            for (c, (&b, &(lo, hi))) in rgb.iter().zip(stretch).enumerate() {
                let v = (self.values[b * n + p] - lo) / (hi - lo) * 255.0;
                px[c] = v.round().clamp(0.0, 255.0) as u8;
            }
        }
        if img.width() < THUMB_SIDE || img.height() < THUMB_SIDE {
            img = image::imageops::resize(&img, THUMB_SIDE, THUMB_SIDE, image::imageops::FilterType::Nearest);
        }
        thumbs::encode(&img)
    }
}

/// The 2nd and 98th percentiles of a band's valid values, from a read decimated to at most 1024
/// px on the long side.
fn false_colour_stretch(
    band: &RasterBand<'_>,
    nodata: Option<f32>,
    (w, h): (u32, u32),
    path: &Path,
) -> Result<(f32, f32)> {
    let f = (1024.0 / f64::from(w.max(h))).min(1.0);
    let size = (
        ((f64::from(w) * f).round() as usize).max(1),
        ((f64::from(h) * f).round() as usize).max(1),
    );
    let mut buf = vec![0f32; size.0 * size.1];
    band.read_into_slice::<f32>(
        (0, 0),
        (w as usize, h as usize),
        size,
        &mut buf,
        Some(ResampleAlg::NearestNeighbour),
    )
    .map_err(|e| Error::input(path, format!("cannot read the overview for thumbnails: {e}")))?;
    let mut vals: Vec<f32> = buf
        .into_iter()
        .filter(|v| v.is_finite() && Some(*v) != nodata)
        .collect();
    if vals.is_empty() {
        return Ok((-1.0, 1.0));
    }
    let mut at = |p: f64| {
        let i = ((p / 100.0) * (vals.len() - 1) as f64).round() as usize;
        *vals.select_nth_unstable_by(i, f32::total_cmp).1
    };
    let (lo, hi) = (at(2.0), at(98.0));
    Ok(if hi > lo { (lo, hi) } else { (lo - 1.0, lo + 1.0) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vectors_are_normalised_and_zero_is_refused() {
        let v = l2_normalised(&[3.0, 4.0]).unwrap();
        assert_eq!(v, vec![0.6, 0.8]);
        assert!(l2_normalised(&[0.0, 0.0]).is_none());
        assert!(l2_normalised(&[f64::NAN, 1.0]).is_none());
    }

    #[test]
    fn strips_pool_only_valid_pixels() {
        // 2 bands, 4x2 px; pixel (1, 0) invalid.
        let strip = Strip {
            x: 10,
            y: 20,
            width: 4,
            height: 2,
            values: vec![
                1.0, 9.0, 3.0, 5.0, 1.0, 1.0, 1.0, 1.0, 2.0, 9.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0,
            ],
            valid: vec![true, false, true, true, true, true, true, true],
        };
        let w = Window {
            x: 10,
            y: 20,
            width: 2,
            height: 2,
        };
        let (sum, count) = strip.sum(&w).unwrap();
        assert_eq!((sum, count), (vec![3.0, 6.0], 3));
        let beyond = Window {
            x: 13,
            y: 20,
            width: 2,
            height: 2,
        };
        assert_eq!(strip.sum(&beyond).unwrap().1, 2);
    }
}
