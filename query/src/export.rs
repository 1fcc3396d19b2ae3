//! Export for segmentation (or classification) fine-tuning: chosen or labelled patches become a
//! training set that TorchGeo and STAC tools read.
//!
//! ```text
//! out/images/{split}/{patch_id}.tif   the source pixels of the patch window, full resolution,
//!                                     every band, original data type, no stretch; georeferenced
//!                                     (scene geotransform offset by the window origin, scene CRS)
//! out/masks/{split}/{patch_id}.tif    uint8 mask, 1 inside a mask polygon, 0 outside (pixel centre
//!                                     test), same grid as the chip; only when polygons are given
//! out/labels.csv                      patch_id, split, class, positive, scene (a row per label;
//!                                     class empty for an unlabelled chosen patch)
//! out/classes.json                    the mask values' classes (0 background, 1 the mask class),
//!                                     as `nadir finetune` reads them; only when masks are written
//! out/labels/{patch_id}.geojson       the patch's labels as GeoJSON features (footprint, class,
//!                                     positive); for exports without masks
//! out/catalog.json                    STAC 1.1.0 Catalog, a `child` link to the collection
//! out/collection.json                 STAC 1.1.0 Collection (extent, licence), an `item` link per
//!                                     chip
//! out/items/{patch_id}.json           STAC Item with the label (v1.0.1) and projection (v2.0.0)
//!                                     extensions: `proj:code` (or `proj:wkt2`), `proj:bbox`,
//!                                     `proj:shape`, `proj:transform` of the chip, `gsd`, the
//!                                     image's `bands` (data types), a `labels` asset (the mask or
//!                                     the labels GeoJSON) and a `source` link to the scene file
//! ```
//!
//! Plain images (no georeference) get a chip without geotransform or CRS, no mask (polygons
//! cannot be placed on them) and a STAC item with a null geometry.
//!
//! The split is spatial: chips are grouped by the H3 cell [`ExportRequest::group_levels`]
//! resolutions coarser than their patch cell (by scene for plain images) and whole groups go to
//! train, val or test (seeded, deterministic, greedily towards the requested ratios), so a group
//! never straddles splits. Neighbours on either side of a group border can still land in
//! different splits; coarser groups make that rarer.
//!
//! STAC items carry `datetime` = the patch's acquisition time, or the export time when the scene
//! does not say (STAC requires one; `nadir:datetime_source` tells which). The catalog is
//! self-contained: relative links, and no `self` links (they must be absolute).
//!
//! Every file is written to a temporary name and renamed into place; the output folder must be
//! empty or absent.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use gdal::raster::{Buffer, GdalDataType, GdalType};
use gdal::spatial_ref::{AxisMappingStrategy, CoordTransform, SpatialRef};
use gdal::{Dataset, DriverManager, GeoTransformEx};
use geo::{BoundingRect, Contains, Coord, LineString, Point, Polygon, Rect};
use nadir_indexer::raster::Window;
use nadir_indexer::time::rfc3339;
use nadir_indexer::PatchId;
use serde::Serialize;
use serde_json::{json, Value};
use utoipa::ToSchema;

use crate::engine::Engine;
use crate::error::{Error, Result};

/// The label extension the items declare.
pub const LABEL_EXTENSION: &str = "https://stac-extensions.github.io/label/v1.0.1/schema.json";
/// The projection extension the items declare.
pub const PROJECTION_EXTENSION: &str = "https://stac-extensions.github.io/projection/v2.0.0/schema.json";
/// The three splits, in order.
pub const SPLITS: [&str; 3] = ["train", "val", "test"];

/// Which patches to export.
#[derive(Debug, Clone, PartialEq)]
pub enum Selection {
    /// These patch ids (their labels, when any, go along).
    Patches(Vec<String>),
    /// Every labelled patch still in the index, of one class or of all.
    Labelled { class: Option<String> },
    /// A class's labelled positives and every patch its probe finds at least `min_probability`
    /// probable (`learn::probable`), all labelled as the class.
    Probable { class: String, min_probability: f32 },
}

/// An export to run.
#[derive(Debug, Clone)]
pub struct ExportRequest {
    pub out_dir: PathBuf,
    pub selection: Selection,
    /// GeoJSON (geometry, Feature or FeatureCollection) of (Multi)Polygons, in WGS84 or in the
    /// CRS its `crs` member names (`urn:ogc:def:crs:EPSG::32616`, `EPSG:32616`).
    pub masks: Option<Value>,
    /// The name of the masks' class (mask value 1).
    pub mask_class: String,
    /// Train, val, test shares (non-negative, summing to 1).
    pub split: [f64; 3],
    pub seed: u64,
    /// How many H3 resolutions coarser than the patch cell the split groups are.
    pub group_levels: u8,
    /// How the output folder is named in messages and in the report (the HTTP service:
    /// `exports/{name}`, relative to the index folder, so no server path leaks); `None`: the path.
    pub shown_as: Option<String>,
}

impl ExportRequest {
    /// The defaults: 0.7/0.15/0.15, seed 0, groups 2 resolutions up, mask class `foreground`.
    pub fn new(out_dir: PathBuf, selection: Selection) -> Self {
        ExportRequest {
            out_dir,
            selection,
            masks: None,
            mask_class: "foreground".into(),
            split: [0.7, 0.15, 0.15],
            seed: 0,
            group_levels: 2,
            shown_as: None,
        }
    }
}

/// What an export wrote.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ExportReport {
    #[schema(value_type = String)]
    pub out_dir: PathBuf,
    pub chips: usize,
    pub masks: usize,
    /// Chips per split: train, val, test.
    pub splits: [usize; 3],
    /// Spatial groups (each wholly in one split).
    pub groups: usize,
    /// Labelled patches no longer in the index, skipped.
    pub skipped: usize,
}

/// One chip to write.
#[derive(Debug)]
struct Chip {
    row: u32,
    id: String,
    labels: Vec<(String, bool)>,
    group: String,
    split: usize,
}

fn export_err(path: &Path, message: impl std::fmt::Display) -> Error {
    Error::Export {
        path: path.to_path_buf(),
        message: message.to_string(),
    }
}

/// The lock file that claims an output folder for one export.
const CLAIM_FILE: &str = ".nadir-export-in-progress";

/// An output folder claimed by one export: a lock file created exclusively inside it (so two
/// exports into one folder cannot both proceed, whichever comes first) and removed when the
/// export ends, whether it succeeded or not.
struct Claim {
    lock: PathBuf,
}

impl Claim {
    /// Claims `out` (created when absent): 409 while another export holds it, 400 when it holds
    /// anything else.
    fn take(out: &Path, shown: &str) -> Result<Claim> {
        std::fs::create_dir_all(out).map_err(|e| export_err(out, e))?;
        let lock = out.join(CLAIM_FILE);
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&lock)
        {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(Error::Conflict(format!(
                    "{shown}: another export is writing there (remove {CLAIM_FILE} if none is)"
                )))
            }
            Err(e) => return Err(export_err(out, e)),
        }
        let claim = Claim { lock };
        let entries = std::fs::read_dir(out).map_err(|e| export_err(out, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| export_err(out, e))?;
            if entry.file_name() != CLAIM_FILE {
                return Err(Error::bad(format!("{shown}: the output folder is not empty")));
            }
        }
        Ok(claim)
    }
}

impl Claim {
    /// Removes everything written into the claimed folder (it was empty when claimed), so that
    /// a failed or cancelled export can be run again into the same name.
    fn clear(&self) {
        let Some(out) = self.lock.parent() else { return };
        let Ok(entries) = std::fs::read_dir(out) else {
            return;
        };
        for entry in entries.flatten() {
            if entry.file_name() == CLAIM_FILE {
                continue;
            }
            let p = entry.path();
            let _ = if p.is_dir() {
                std::fs::remove_dir_all(&p)
            } else {
                std::fs::remove_file(&p)
            };
        }
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.lock);
    }
}

/// Runs an export.
pub fn export(engine: &Engine, req: &ExportRequest) -> Result<ExportReport> {
    let split = check_split(req.split)?;
    let out = &req.out_dir;
    let shown = req.shown_as.clone().unwrap_or_else(|| out.display().to_string());
    let claim = Claim::take(out, &shown)?;
    let result = write_set(engine, req, split, &shown);
    if result.is_err() {
        claim.clear();
    }
    result
}

/// The export's work, once its folder is claimed.
fn write_set(engine: &Engine, req: &ExportRequest, split: [f64; 3], shown: &str) -> Result<ExportReport> {
    let out = &req.out_dir;
    let index = engine.index();
    // Patches and their labels, by row.
    let mut by_row: BTreeMap<u32, Vec<(String, bool)>> = BTreeMap::new();
    let mut skipped = 0;
    match &req.selection {
        Selection::Patches(ids) => {
            if ids.is_empty() {
                return Err(Error::bad("patches: none given"));
            }
            let store = engine.labels()?;
            let all = store.list(None)?;
            for id in ids {
                let row = engine.row_of(id)?;
                let labels = all
                    .iter()
                    .filter(|l| &l.patch_id == id)
                    .map(|l| (l.class.clone(), l.positive));
                by_row.entry(row).or_default().extend(labels);
            }
        }
        Selection::Labelled { class } => {
            let class = class.as_deref().map(crate::labels::check_class).transpose()?;
            for l in engine.labels()?.list(class)? {
                let row = l.patch_id.parse::<PatchId>().ok().and_then(|p| index.row_of(p));
                match row {
                    Some(row) => by_row.entry(row).or_default().push((l.class, l.positive)),
                    None => skipped += 1,
                }
            }
            if by_row.is_empty() {
                return Err(Error::NotFound(match class {
                    Some(c) => format!("no labelled patch of class {c:?} in the index"),
                    None => "no labelled patch in the index".into(),
                }));
            }
        }
        Selection::Probable {
            class,
            min_probability,
        } => {
            let req = crate::learn::ProbableRequest {
                min_probability: *min_probability,
                geofilter: None,
            };
            let class = crate::labels::check_class(class)?;
            for p in crate::learn::probable(engine, class, &req)? {
                by_row.entry(p.row).or_default().push((class.to_string(), true));
            }
        }
    }
    let masks = req.masks.as_ref().map(parse_polygons).transpose()?;

    let mut chips: Vec<Chip> = by_row
        .into_iter()
        .map(|(row, labels)| {
            let r = index.record(row);
            let group = match r.h3.len() {
                0 => format!("scene:{}", r.scene),
                n => format!("h3:{:x}", r.h3[(n - 1).saturating_sub(req.group_levels as usize)]),
            };
            Chip {
                row,
                id: r.id.to_string(),
                labels,
                group,
                split: 0,
            }
        })
        .collect();
    let groups = assign_splits(&mut chips, split, req.seed);
    // Chips are cut from the scene files: say which are gone before writing anything.
    let mut missing: Vec<&str> = chips
        .iter()
        .filter_map(|c| index.scene_of(c.row))
        .filter(|s| !nadir_indexer::vsi::is_virtual(&s.path) && !s.path.exists())
        .map(|s| s.id.as_str())
        .collect();
    missing.sort_unstable();
    missing.dedup();
    if !missing.is_empty() {
        return Err(Error::Conflict(format!(
            "the scene files of {} are not where the index says (moved or deleted); if they moved, `nadir index relocate --from OLD_FOLDER --to NEW_FOLDER` points the index at them",
            missing.join(", ")
        )));
    }

    for dir in ["images", "masks"] {
        if dir == "masks" && masks.is_none() {
            continue;
        }
        for s in SPLITS {
            std::fs::create_dir_all(out.join(dir).join(s)).map_err(|e| export_err(out, e))?;
        }
    }
    std::fs::create_dir_all(out.join("items")).map_err(|e| export_err(out, e))?;

    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let mut datasets: HashMap<String, (PathBuf, Dataset)> = HashMap::new();
    let mut scene_polys: HashMap<String, Vec<Placed>> = HashMap::new();
    let mut report = ExportReport {
        out_dir: PathBuf::from(&shown),
        chips: 0,
        masks: 0,
        splits: [0; 3],
        groups,
        skipped,
    };
    let mut csv = String::from("patch_id,split,class,positive,scene\n");
    let mut item_links = Vec::new();
    let mut extent = Extent::default();
    if masks.is_none() {
        std::fs::create_dir_all(out.join("labels")).map_err(|e| export_err(out, e))?;
    }
    for chip in &chips {
        crate::cancel::check()?;
        let rec = index.record(chip.row);
        let scene = index.scene_of(chip.row).ok_or_else(|| {
            export_err(
                index.dir(),
                format!("scene {} of patch {} is missing", rec.scene, chip.id),
            )
        })?;
        if !datasets.contains_key(&rec.scene) {
            let ds = Dataset::open(&scene.path).map_err(|e| export_err(&scene.path, e))?;
            datasets.insert(rec.scene.clone(), (scene.path.clone(), ds));
        }
        let (src_path, ds) = &datasets[&rec.scene];
        let split_name = SPLITS[chip.split];
        let image_rel = format!("images/{split_name}/{}.tif", chip.id);
        let georef = write_chip(src_path, ds, rec.window, &out.join(&image_rel))?;
        let band_types: Vec<&'static str> = (1..=ds.raster_count())
            .map(|b| {
                ds.rasterband(b)
                    .map_or("other", |band| stac_data_type(band.band_type()))
            })
            .collect();
        report.chips += 1;
        report.splits[chip.split] += 1;

        let mut mask_rel = None;
        if let (Some(polys), Some((chip_gt, wkt))) = (&masks, &georef) {
            if !scene_polys.contains_key(&rec.scene) {
                let scene_gt = ds.geo_transform().map_err(|e| export_err(src_path, e))?;
                let p = polygons_to_pixels(polys, &ds.projection(), &scene_gt)
                    .map_err(|e| export_err(src_path, format!("masks to the scene's pixels: {e}")))?;
                scene_polys.insert(rec.scene.clone(), p);
            }
            let rel = format!("masks/{split_name}/{}.tif", chip.id);
            let mask = rasterise(&scene_polys[&rec.scene], rec.window);
            write_mask(&out.join(&rel), rec.window, &mask, chip_gt, wkt)?;
            report.masks += 1;
            mask_rel = Some(rel);
        }

        if chip.labels.is_empty() {
            let _ = writeln!(csv, "{},{split_name},,,{}", chip.id, csv_field(&rec.scene));
        }
        for (class, positive) in &chip.labels {
            let _ = writeln!(
                csv,
                "{},{split_name},{},{positive},{}",
                chip.id,
                csv_field(class),
                csv_field(&rec.scene)
            );
        }
        let labels_rel = match &mask_rel {
            Some(m) => m.clone(),
            None => {
                let rel = format!("labels/{}.geojson", chip.id);
                write_json(&out.join(&rel), &labels_geojson(rec, &chip.labels))?;
                rel
            }
        };
        let item = stac_item(
            engine,
            chip,
            &ItemFiles {
                image: &image_rel,
                labels: &labels_rel,
                mask: mask_rel.is_some(),
                georef: georef.as_ref(),
                bands: &band_types,
                scene,
            },
            &req.mask_class,
            now_ms,
        );
        let item_rel = format!("items/{}.json", chip.id);
        write_json(&out.join(&item_rel), &item)?;
        extent.add(&item);
        item_links
            .push(json!({"rel": "item", "href": format!("./{item_rel}"), "type": "application/geo+json"}));
    }
    write_atomic(&out.join("labels.csv"), csv.as_bytes())?;
    if report.masks > 0 {
        // The mask values' classes, in the format `nadir finetune` reads.
        let classes = json!({"classes": [{"name": "background"}, {"name": req.mask_class}]});
        write_json(&out.join("classes.json"), &classes)?;
    }
    let name = index
        .dir()
        .file_name()
        .map_or_else(|| "(unnamed)".into(), |n| n.to_string_lossy());
    let description = format!(
        "Training chips exported by Nadir from the index {name}: {} chips ({} train, {} val, {} test), spatial split by {} groups.",
        report.chips, report.splits[0], report.splits[1], report.splits[2], report.groups
    );
    let mut links = vec![
        json!({"rel": "root", "href": "./catalog.json", "type": "application/json"}),
        json!({"rel": "parent", "href": "./catalog.json", "type": "application/json"}),
    ];
    links.extend(item_links);
    let collection = json!({
        "type": "Collection",
        "stac_version": "1.1.0",
        "stac_extensions": [LABEL_EXTENSION],
        "id": "nadir-export",
        "title": format!("Nadir training set ({name})"),
        "description": description,
        // The imagery's own licence is not known to Nadir: "other", see the scenes' sources.
        "license": "other",
        "extent": extent.to_json(),
        "summaries": {
            "label:type": [if report.masks > 0 { "raster" } else { "vector" }],
            "label:tasks": [if report.masks > 0 { "segmentation" } else { "classification" }],
            "nadir:split": SPLITS,
        },
        "links": links,
    });
    write_json(&out.join("collection.json"), &collection)?;
    let catalog = json!({
        "type": "Catalog",
        "stac_version": "1.1.0",
        "id": "nadir-export-catalog",
        "description": description,
        "links": [
            {"rel": "root", "href": "./catalog.json", "type": "application/json"},
            {"rel": "child", "href": "./collection.json", "type": "application/json"},
        ],
    });
    write_json(&out.join("catalog.json"), &catalog)?;
    Ok(report)
}

fn check_split(s: [f64; 3]) -> Result<[f64; 3]> {
    let sum: f64 = s.iter().sum();
    if s.iter().any(|v| !v.is_finite() || *v < 0.0) || (sum - 1.0).abs() > 1e-6 {
        return Err(Error::bad(format!(
            "split: need three non-negative shares summing to 1, got {s:?}"
        )));
    }
    Ok(s)
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn hash_str(s: &str, seed: u64) -> u64 {
    s.bytes().fold(splitmix(seed), |h, b| splitmix(h ^ u64::from(b)))
}

/// Assigns whole groups to splits: groups in a seeded order, each to the split furthest below its
/// target share. Returns the number of groups.
fn assign_splits(chips: &mut [Chip], ratios: [f64; 3], seed: u64) -> usize {
    let mut groups: BTreeMap<&str, usize> = BTreeMap::new();
    for c in chips.iter() {
        *groups.entry(c.group.as_str()).or_default() += 1;
    }
    let mut order: Vec<(u64, String, usize)> = groups
        .into_iter()
        .map(|(g, n)| (hash_str(g, seed), g.to_string(), n))
        .collect();
    order.sort();
    let total = chips.len() as f64;
    let mut counts = [0usize; 3];
    let mut assigned: HashMap<String, usize> = HashMap::new();
    for (_, g, n) in &order {
        let best = (0..3)
            .filter(|&s| ratios[s] > 0.0)
            .max_by(|&a, &b| {
                let da = ratios[a] * total - counts[a] as f64;
                let db = ratios[b] * total - counts[b] as f64;
                da.total_cmp(&db).then(b.cmp(&a))
            })
            .unwrap_or(0);
        counts[best] += n;
        assigned.insert(g.clone(), best);
    }
    for c in chips.iter_mut() {
        c.split = assigned[&c.group];
    }
    order.len()
}

/// The geotransform of a window of a grid.
pub fn window_geotransform(gt: &[f64; 6], w: Window) -> [f64; 6] {
    let (x, y) = (f64::from(w.x), f64::from(w.y));
    [
        gt[0] + x * gt[1] + y * gt[2],
        gt[1],
        gt[2],
        gt[3] + x * gt[4] + y * gt[5],
        gt[4],
        gt[5],
    ]
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = tmp_path(path);
    let res = (|| -> std::io::Result<()> {
        use std::io::Write;
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    res.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        export_err(path, e)
    })
}

fn write_json(path: &Path, v: &Value) -> Result<()> {
    let bytes = serde_json::to_vec_pretty(v).map_err(|e| export_err(path, e))?;
    write_atomic(path, &bytes)
}

fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    path.with_file_name(name)
}

/// Moves a finished GDAL file into place (after syncing it).
fn publish(tmp: &Path, path: &Path) -> Result<()> {
    std::fs::File::open(tmp)
        .and_then(|f| f.sync_all())
        .and_then(|()| std::fs::rename(tmp, path))
        .map_err(|e| {
            let _ = std::fs::remove_file(tmp);
            export_err(path, e)
        })
}

/// Writes the window of `ds` to a GeoTIFF at `path`; returns the chip's (geotransform, CRS WKT)
/// when the source is georeferenced.
fn write_chip(src: &Path, ds: &Dataset, w: Window, path: &Path) -> Result<Option<([f64; 6], String)>> {
    let bands = ds.raster_count();
    let ty = ds.rasterband(1).map_err(|e| export_err(src, e))?.band_type();
    let tmp = tmp_path(path);
    let mut chip = match ty {
        GdalDataType::UInt8 => copy_window::<u8>(src, ds, w, &tmp, bands),
        GdalDataType::UInt16 => copy_window::<u16>(src, ds, w, &tmp, bands),
        GdalDataType::Int16 => copy_window::<i16>(src, ds, w, &tmp, bands),
        GdalDataType::UInt32 => copy_window::<u32>(src, ds, w, &tmp, bands),
        GdalDataType::Int32 => copy_window::<i32>(src, ds, w, &tmp, bands),
        GdalDataType::UInt64 => copy_window::<u64>(src, ds, w, &tmp, bands),
        GdalDataType::Int64 => copy_window::<i64>(src, ds, w, &tmp, bands),
        GdalDataType::Float32 => copy_window::<f32>(src, ds, w, &tmp, bands),
        GdalDataType::Float64 => copy_window::<f64>(src, ds, w, &tmp, bands),
        other => Err(export_err(src, format!("unsupported data type {other:?}"))),
    }?;
    let georef = georef_of(ds).map(|(gt, wkt)| (window_geotransform(&gt, w), wkt));
    if let Some((gt, wkt)) = &georef {
        chip.set_geo_transform(gt).map_err(|e| export_err(path, e))?;
        chip.set_projection(wkt).map_err(|e| export_err(path, e))?;
    }
    chip.flush_cache().map_err(|e| export_err(path, e))?;
    drop(chip);
    publish(&tmp, path)?;
    Ok(georef)
}

/// The geotransform and CRS of a dataset, None for a plain image.
fn georef_of(ds: &Dataset) -> Option<([f64; 6], String)> {
    let gt = ds
        .geo_transform()
        .ok()
        .filter(|gt| *gt != [0.0, 1.0, 0.0, 0.0, 0.0, 1.0])?;
    let wkt = ds.projection();
    (!wkt.trim().is_empty()).then_some((gt, wkt))
}

fn copy_window<T: GdalType + Copy + Default>(
    src: &Path,
    ds: &Dataset,
    w: Window,
    tmp: &Path,
    bands: usize,
) -> Result<Dataset> {
    let driver = DriverManager::get_driver_by_name("GTiff").map_err(|e| export_err(tmp, e))?;
    let (sw, sh) = ds.raster_size();
    let (ww, wh) = (w.width as usize, w.height as usize);
    let chip = driver
        .create_with_band_type::<T, _>(tmp, ww, wh, bands)
        .map_err(|e| export_err(tmp, e))?;
    // The part of the window inside the raster; the rest stays 0.
    let (x0, y0) = (w.x as usize, w.y as usize);
    let (rw, rh) = (ww.min(sw.saturating_sub(x0)), wh.min(sh.saturating_sub(y0)));
    for b in 1..=bands {
        let band = ds.rasterband(b).map_err(|e| export_err(src, e))?;
        let mut out = chip.rasterband(b).map_err(|e| export_err(tmp, e))?;
        if let Some(nd) = band.no_data_value() {
            out.set_no_data_value(Some(nd)).map_err(|e| export_err(tmp, e))?;
        }
        if rw == 0 || rh == 0 {
            continue;
        }
        let mut buf: Buffer<T> = band
            .read_as((x0 as isize, y0 as isize), (rw, rh), (rw, rh), None)
            .map_err(|e| export_err(src, format!("band {b}, window {w:?}: {e}")))?;
        out.write((0, 0), (rw, rh), &mut buf)
            .map_err(|e| export_err(tmp, e))?;
    }
    Ok(chip)
}

fn write_mask(path: &Path, w: Window, mask: &[u8], gt: &[f64; 6], wkt: &str) -> Result<()> {
    let tmp = tmp_path(path);
    let driver = DriverManager::get_driver_by_name("GTiff").map_err(|e| export_err(path, e))?;
    let (ww, wh) = (w.width as usize, w.height as usize);
    {
        let mut ds = driver
            .create_with_band_type::<u8, _>(&tmp, ww, wh, 1)
            .map_err(|e| export_err(path, e))?;
        ds.set_geo_transform(gt).map_err(|e| export_err(path, e))?;
        ds.set_projection(wkt).map_err(|e| export_err(path, e))?;
        let mut buf = Buffer::new((ww, wh), mask.to_vec());
        ds.rasterband(1)
            .and_then(|mut b| b.write((0, 0), (ww, wh), &mut buf))
            .map_err(|e| export_err(path, e))?;
        ds.flush_cache().map_err(|e| export_err(path, e))?;
    }
    publish(&tmp, path)
}

/// A mask polygon in a scene's pixel space, with its bounding box.
type Placed = (Polygon<f64>, Rect<f64>);

/// Polygons of a GeoJSON value with the EPSG code of its CRS (4326 unless a `crs` member says).
#[derive(Debug)]
struct Polygons {
    epsg: u32,
    polygons: Vec<Polygon<f64>>,
}

fn parse_polygons(v: &Value) -> Result<Polygons> {
    // Masks stay in the CRS they were given in (the scene's, often): chips are cut in it.
    let shapes = crate::shapes::read(v, "masks")?;
    let mut polygons = Vec::new();
    for g in shapes.shapes.iter().filter_map(|s| s.geometry.as_ref()) {
        // Points and lines mark no area: ignored.
        if let Some(p) = crate::shapes::polygons(g) {
            polygons.extend(p);
        }
    }
    if polygons.is_empty() {
        return Err(Error::bad("masks: no Polygon or MultiPolygon"));
    }
    Ok(Polygons {
        epsg: shapes.epsg,
        polygons,
    })
}

/// The polygons in the pixel space of a scene (CRS `wkt`, geotransform `gt`), with their boxes.
fn polygons_to_pixels(p: &Polygons, wkt: &str, gt: &[f64; 6]) -> std::result::Result<Vec<Placed>, String> {
    let e = |e: gdal::errors::GdalError| e.to_string();
    let mut from = SpatialRef::from_epsg(p.epsg).map_err(e)?;
    let mut to = SpatialRef::from_wkt(wkt).map_err(e)?;
    from.set_axis_mapping_strategy(AxisMappingStrategy::TraditionalGisOrder);
    to.set_axis_mapping_strategy(AxisMappingStrategy::TraditionalGisOrder);
    let ct = CoordTransform::new(&from, &to).map_err(e)?;
    let inv = gt.invert().map_err(e)?;
    let map_ring = |r: &LineString<f64>| -> std::result::Result<LineString<f64>, String> {
        let (mut xs, mut ys): (Vec<f64>, Vec<f64>) = r.coords().map(|c| (c.x, c.y)).unzip();
        ct.transform_coords(&mut xs, &mut ys, &mut []).map_err(e)?;
        Ok(xs
            .into_iter()
            .zip(ys)
            .map(|(x, y)| {
                let (px, py) = inv.apply(x, y);
                Coord { x: px, y: py }
            })
            .collect())
    };
    let mut out = Vec::with_capacity(p.polygons.len());
    for poly in &p.polygons {
        let px = Polygon::new(
            map_ring(poly.exterior())?,
            poly.interiors()
                .iter()
                .map(map_ring)
                .collect::<std::result::Result<_, _>>()?,
        );
        if let Some(bb) = px.bounding_rect() {
            out.push((px, bb));
        }
    }
    Ok(out)
}

/// A row-major uint8 mask of the window: 1 where the pixel centre is inside a polygon.
fn rasterise(polys: &[Placed], w: Window) -> Vec<u8> {
    let (ww, wh) = (w.width as usize, w.height as usize);
    let mut mask = vec![0u8; ww * wh];
    let (x0, y0) = (f64::from(w.x), f64::from(w.y));
    for (poly, bb) in polys {
        let cols = pixel_range(bb.min().x - x0, bb.max().x - x0, ww);
        let rows = pixel_range(bb.min().y - y0, bb.max().y - y0, wh);
        for j in rows {
            for i in cols.clone() {
                let m = &mut mask[j * ww + i];
                if *m == 0 && poly.contains(&Point::new(x0 + i as f64 + 0.5, y0 + j as f64 + 0.5)) {
                    *m = 1;
                }
            }
        }
    }
    mask
}

/// The pixels whose centre may lie in [lo, hi] (window coordinates), clipped to 0..n.
fn pixel_range(lo: f64, hi: f64, n: usize) -> std::ops::Range<usize> {
    let a = (lo - 0.5).ceil().max(0.0);
    let b = ((hi - 0.5).floor() + 1.0).min(n as f64);
    if b <= a {
        0..0
    } else {
        a as usize..b as usize
    }
}

/// What an item describes besides the patch: its files, the chip's grid and the scene.
struct ItemFiles<'a> {
    image: &'a str,
    /// The `labels` asset: the mask, or the labels GeoJSON.
    labels: &'a str,
    mask: bool,
    /// The chip's geotransform and CRS (WKT), when georeferenced.
    georef: Option<&'a ([f64; 6], String)>,
    /// STAC data types of the image's bands.
    bands: &'a [&'static str],
    scene: &'a nadir_indexer::manifest::SceneEntry,
}

/// The STAC 1.1 `data_type` of a GDAL band type.
fn stac_data_type(t: GdalDataType) -> &'static str {
    match t {
        GdalDataType::UInt8 => "uint8",
        GdalDataType::UInt16 => "uint16",
        GdalDataType::Int16 => "int16",
        GdalDataType::UInt32 => "uint32",
        GdalDataType::Int32 => "int32",
        GdalDataType::UInt64 => "uint64",
        GdalDataType::Int64 => "int64",
        GdalDataType::Float32 => "float32",
        GdalDataType::Float64 => "float64",
        _ => "other",
    }
}

/// The labels of one patch as GeoJSON: a feature per label (class, positive) on its footprint
/// (null geometry for a plain image).
fn labels_geojson(rec: &nadir_indexer::PatchRecord, labels: &[(String, bool)]) -> Value {
    let geometry = rec.footprint.as_ref().map_or(Value::Null, |fp| {
        let ring: Vec<[f64; 2]> = fp.exterior().coords().map(|c| [c.x, c.y]).collect();
        json!({"type": "Polygon", "coordinates": [ring]})
    });
    let features: Vec<Value> = labels
        .iter()
        .map(|(class, positive)| {
            json!({"type": "Feature", "geometry": geometry,
                   "properties": {"patch_id": rec.id.to_string(), "class": class, "positive": positive}})
        })
        .collect();
    json!({"type": "FeatureCollection", "features": features})
}

/// The collection's extent, grown item by item.
#[derive(Default)]
struct Extent {
    bbox: Option<[f64; 4]>,
    times: Option<(String, String)>,
}

impl Extent {
    fn add(&mut self, item: &Value) {
        if let Some(b) = item["bbox"].as_array().filter(|b| b.len() == 4) {
            let b: Vec<f64> = b.iter().filter_map(Value::as_f64).collect();
            if b.len() == 4 {
                let cur = self.bbox.get_or_insert([b[0], b[1], b[2], b[3]]);
                *cur = [
                    cur[0].min(b[0]),
                    cur[1].min(b[1]),
                    cur[2].max(b[2]),
                    cur[3].max(b[3]),
                ];
            }
        }
        if let Some(t) = item["properties"]["datetime"].as_str() {
            // RFC 3339 in UTC with a fixed layout: strings order as times do.
            let cur = self.times.get_or_insert((t.to_string(), t.to_string()));
            if t < cur.0.as_str() {
                cur.0 = t.to_string();
            }
            if t > cur.1.as_str() {
                cur.1 = t.to_string();
            }
        }
    }

    fn to_json(&self) -> Value {
        let bbox = self.bbox.unwrap_or([-180.0, -90.0, 180.0, 90.0]);
        let interval = match &self.times {
            Some((a, b)) => json!([a, b]),
            None => json!([null, null]),
        };
        json!({"spatial": {"bbox": [bbox]}, "temporal": {"interval": [interval]}})
    }
}

/// A `file://` URI of an absolute path (percent-encoding what a URI cannot hold).
fn file_uri(path: &Path) -> String {
    let mut out = String::from("file://");
    for b in path.to_string_lossy().bytes() {
        if b.is_ascii_alphanumeric() || b"/-._~".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

fn stac_item(engine: &Engine, chip: &Chip, files: &ItemFiles<'_>, mask_class: &str, now_ms: i64) -> Value {
    let rec = engine.index().record(chip.row);
    let (geometry, bbox) = match &rec.footprint {
        Some(fp) => {
            let ring: Vec<[f64; 2]> = fp.exterior().coords().map(|c| [c.x, c.y]).collect();
            let bb = fp
                .bounding_rect()
                .map(|b| [b.min().x, b.min().y, b.max().x, b.max().y]);
            (json!({"type": "Polygon", "coordinates": [ring]}), bb)
        }
        None => (Value::Null, None),
    };
    let (datetime, source) = match rec.acquired_ms {
        Some(ms) => (rfc3339(ms), "acquisition"),
        None => (rfc3339(now_ms), "export"),
    };
    let mut classes: Vec<&str> = chip.labels.iter().map(|(c, _)| c.as_str()).collect();
    classes.sort_unstable();
    classes.dedup();
    let mut props = json!({
        "datetime": datetime,
        "nadir:datetime_source": source,
        "nadir:split": SPLITS[chip.split],
        "nadir:scene": rec.scene,
        "nadir:group": chip.group,
        "nadir:window": [rec.window.x, rec.window.y, rec.window.width, rec.window.height],
        "nadir:labels": chip.labels.iter().map(|(c, p)| json!({"class": c, "positive": p})).collect::<Vec<_>>(),
    });
    if let Some(gsd) = files.scene.pixel_size_m {
        props["gsd"] = json!(gsd);
    }
    // The chip's own grid (projection extension): CRS, bounds in it, shape, affine transform.
    let (w, h) = (f64::from(rec.window.width), f64::from(rec.window.height));
    if let Some((gt, wkt)) = files.georef {
        match files.scene.epsg {
            Some(epsg) => props["proj:code"] = json!(format!("EPSG:{epsg}")),
            None => {
                props["proj:code"] = Value::Null;
                props["proj:wkt2"] = json!(wkt);
            }
        }
        let xs = [gt[0], gt[0] + w * gt[1] + h * gt[2]];
        let ys = [gt[3], gt[3] + w * gt[4] + h * gt[5]];
        props["proj:bbox"] = json!([
            xs[0].min(xs[1]),
            ys[0].min(ys[1]),
            xs[0].max(xs[1]),
            ys[0].max(ys[1])
        ]);
        props["proj:transform"] = json!([gt[1], gt[2], gt[0], gt[4], gt[5], gt[3]]);
    }
    props["proj:shape"] = json!([rec.window.height, rec.window.width]);
    let label = if files.mask {
        json!({
            "label:description": format!("Mask of {mask_class}: 1 inside, 0 outside (pixel centres)."),
            "label:type": "raster",
            "label:properties": null,
            "label:classes": [{"name": null, "classes": [0, 1]}],
            "label:tasks": ["segmentation"],
        })
    } else {
        let mut l = json!({
            "label:description": "Classes the user labelled this patch with (nadir:labels has the sign).",
            "label:type": "vector",
            "label:properties": ["class"],
            "label:tasks": ["classification"],
        });
        // An empty class list matches both of the schema's list types (strings, numbers): omitted.
        if !classes.is_empty() {
            l["label:classes"] = json!([{"name": "class", "classes": classes}]);
        }
        l
    };
    if let (Some(p), Some(l)) = (props.as_object_mut(), label.as_object()) {
        p.extend(l.clone());
    }
    let bands: Vec<Value> = files
        .bands
        .iter()
        .enumerate()
        .map(|(i, t)| json!({"name": format!("b{}", i + 1), "data_type": t}))
        .collect();
    let mut assets = json!({
        "image": {"href": format!("../{}", files.image), "type": "image/tiff; application=geotiff", "roles": ["data"],
                  "title": "Source pixels, full resolution", "bands": bands},
    });
    assets["labels"] = if files.mask {
        json!({"href": format!("../{}", files.labels), "type": "image/tiff; application=geotiff",
               "roles": ["labels", "labels-raster"], "title": format!("{mask_class} mask"),
               "bands": [{"name": "mask", "data_type": "uint8"}]})
    } else {
        json!({"href": format!("../{}", files.labels), "type": "application/geo+json",
               "roles": ["labels", "labels-vector"], "title": "Labels of the patch"})
    };
    let mut item = json!({
        "type": "Feature",
        "stac_version": "1.1.0",
        "stac_extensions": [LABEL_EXTENSION, PROJECTION_EXTENSION],
        "id": chip.id,
        "collection": "nadir-export",
        "geometry": geometry,
        "properties": props,
        "links": [
            {"rel": "root", "href": "../catalog.json", "type": "application/json"},
            {"rel": "parent", "href": "../collection.json", "type": "application/json"},
            {"rel": "collection", "href": "../collection.json", "type": "application/json"},
            {"rel": "source", "href": file_uri(&files.scene.path), "type": "image/tiff; application=geotiff",
             "title": format!("The scene the chip is cut from ({})", rec.scene)},
        ],
        "assets": assets,
    });
    if let Some(bb) = bbox {
        item["bbox"] = json!(bb);
    }
    item
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_ranges() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_600_000_000_000), "2020-09-13T12:26:40Z");
        assert_eq!(pixel_range(0.0, 2.0, 10), 0..2);
        assert_eq!(pixel_range(-5.0, 0.4, 10), 0..0);
        assert_eq!(pixel_range(3.6, 100.0, 10), 4..10);
    }

    #[test]
    fn crs_and_polygons() {
        let v = json!({"type": "FeatureCollection", "crs": {"type": "name", "properties": {"name": "urn:ogc:def:crs:EPSG::32616"}},
            "features": [{"type": "Feature", "properties": {}, "geometry": {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 0]]]}}]});
        let p = parse_polygons(&v).unwrap();
        assert_eq!((p.epsg, p.polygons.len()), (32616, 1));
        assert!(parse_polygons(&json!({"type": "Point", "coordinates": [0, 0]})).is_err());
    }
}
