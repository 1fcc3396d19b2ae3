//! Prediction over a whole scene: overlapping windows, their class probabilities blended with a
//! Hann weight, streamed out row by row so that memory holds one window-high strip of
//! probabilities (classes x window x scene width floats), never the whole scene.
//!
//! Outputs: a class map as a Cloud Optimized GeoTIFF (uint8, 255 = no prediction, the scene's
//! grid and CRS, a colour table; 512 px tiles, DEFLATE, internal overviews by nearest neighbour),
//! and optionally the class polygons as GeoJSON ([`crate::geojson`]); polygons need the label map
//! whole, one byte per pixel. Rows stream into a staged tiled GeoTIFF that GDAL's COG driver then
//! copies into place (a COG's overviews come before the full-resolution tiles, so it cannot be
//! written row by row).

use std::path::{Path, PathBuf};
use std::time::Instant;

use gdal::raster::{Buffer, ColorEntry, ColorTable, PaletteInterpretation, RasterCreationOptions};
use gdal::DriverManager;
use indicatif::{ProgressBar, ProgressStyle};
use nadir_indexer::raster::{Georef, Scene, Window};
use serde::Serialize;

use crate::config::{ClassInfo, IGNORE};
use crate::dataset::open_scene;
use crate::error::{Error, Result};
use crate::grid;
use crate::model::Segmenter;

/// How to predict.
#[derive(Debug, Clone, PartialEq)]
pub struct PredictOptions {
    /// Share of a window its neighbour overlaps (0 to 0.9).
    pub overlap: f64,
    pub batch_size: usize,
    /// Where to write the polygons, if anywhere.
    pub geojson: Option<PathBuf>,
    /// Regions smaller than this many pixels get no polygon of their own.
    pub min_pixels: usize,
    pub progress: bool,
}

impl Default for PredictOptions {
    fn default() -> Self {
        Self {
            overlap: 0.5,
            batch_size: 8,
            geojson: None,
            min_pixels: 16,
            progress: false,
        }
    }
}

/// What a prediction produced.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PredictReport {
    pub width: u32,
    pub height: u32,
    pub windows: usize,
    /// Pixels of each class (the last entry: pixels without a prediction).
    pub class_pixels: Vec<u64>,
    pub polygons: Option<usize>,
    pub georeferenced: bool,
    pub seconds: f64,
}

/// Opens `path` the way `model` was trained to see pixels (bands, stretch); windows mostly outside
/// the raster are still read when the raster is smaller than a window.
pub fn open_for(model: &Segmenter, path: &Path) -> Result<Scene> {
    let cfg = model.config();
    open_scene(path, cfg.bands.as_deref(), Some(cfg.stretch))
}

/// Predicts `scene_path` into the class GeoTIFF `out` (written atomically), and the GeoJSON
/// polygons when `opts.geojson` is set.
pub fn predict_scene(
    model: &Segmenter,
    scene_path: &Path,
    out: &Path,
    opts: &PredictOptions,
) -> Result<PredictReport> {
    let start = Instant::now();
    let scene = open_for(model, scene_path)?;
    let (w, h) = scene.size();
    let tmp = tmp_path(out);
    let mut ds = create_geotiff(&model.config().classes, scene.size(), scene.georef(), &tmp)?;
    let keep_labels = opts.geojson.is_some();
    let mut labels = Vec::new();
    let mut class_pixels = vec![0u64; model.config().num_classes() + 1];
    let res = (|| -> Result<usize> {
        let mut band = ds.rasterband(1).map_err(|e| Error::input(&tmp, e))?;
        let windows = predict_rows(model, &scene, opts, |y0, rows| {
            let n = rows.len() / w as usize;
            let last = class_pixels.len() - 1;
            for &v in rows {
                class_pixels[usize::from(v).min(last)] += 1;
            }
            if keep_labels {
                labels.extend_from_slice(rows);
            }
            let mut buf = Buffer::new((w as usize, n), rows.to_vec());
            band.write((0, y0 as isize), (w as usize, n), &mut buf)
                .map_err(|e| Error::input(&tmp, format!("cannot write rows {y0}..: {e}")))
        })?;
        ds.flush_cache().map_err(|e| Error::input(&tmp, e))?;
        Ok(windows)
    })();
    drop(ds);
    let windows = match res {
        Ok(n) => n,
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
    };
    publish_cog(&tmp, out)?;
    let polygons = match &opts.geojson {
        Some(path) => Some(crate::geojson::write_polygons(
            path,
            &labels,
            (w, h),
            scene.georef(),
            &model.config().classes,
            opts.min_pixels,
        )?),
        None => None,
    };
    Ok(PredictReport {
        width: w,
        height: h,
        windows,
        class_pixels,
        polygons,
        georeferenced: scene.georef().is_some(),
        seconds: start.elapsed().as_secs_f64(),
    })
}

/// Predicts a scene already opened (see [`open_for`]) into its label map, whole: for evaluation.
pub fn predict_labels(model: &Segmenter, scene: &Scene, opts: &PredictOptions) -> Result<Vec<u8>> {
    let mut labels = Vec::new();
    predict_rows(model, scene, opts, |_, rows| {
        labels.extend_from_slice(rows);
        Ok(())
    })?;
    Ok(labels)
}

/// The streaming core: runs the windows row of windows by row of windows, and hands every run of
/// finished label rows to `sink(first_row, rows)` in order, top to bottom. Returns the number of
/// windows predicted.
pub fn predict_rows(
    model: &Segmenter,
    scene: &Scene,
    opts: &PredictOptions,
    mut sink: impl FnMut(u32, &[u8]) -> Result<()>,
) -> Result<usize> {
    if !(0.0..=0.9).contains(&opts.overlap) || opts.batch_size == 0 {
        return Err(Error::Invalid(
            "overlap must be in 0..=0.9 and the batch size positive".into(),
        ));
    }
    let side = model.config().chip;
    let k = model.config().num_classes();
    let (w, h) = scene.size();
    let step = ((f64::from(side) * (1.0 - opts.overlap)).round() as u32).clamp(1, side);
    let xs = grid::starts(w, side, step);
    let ys = grid::starts(h, side, step);
    let weights = grid::blend_weights(side);
    let bar = if opts.progress {
        let b = ProgressBar::new((xs.len() * ys.len()) as u64);
        b.set_style(
            ProgressStyle::with_template(
                "{spinner} predicting [{elapsed_precise}] {bar:30} {pos}/{len} windows ({eta})",
            )
            .expect("valid template"),
        );
        b
    } else {
        ProgressBar::hidden()
    };
    let mut strip = Strip::new(w as usize, k);
    let mut done = 0;
    for &y in &ys {
        strip.flush_to(y, &mut sink)?;
        strip.grow_to((y + side).min(h));
        let row: Vec<Window> = xs
            .iter()
            .map(|&x| Window {
                x,
                y,
                width: side,
                height: side,
            })
            .collect();
        for batch in row.chunks(opts.batch_size) {
            let (mut wins, mut chips, mut valid) = (Vec::new(), Vec::new(), Vec::new());
            for &win in batch {
                if let Some((img, ok)) = scene.read_window_valid(win, side)? {
                    wins.push(win);
                    chips.push(img);
                    valid.push(ok);
                }
            }
            bar.inc(batch.len() as u64);
            done += batch.len();
            if chips.is_empty() {
                continue;
            }
            let probs: Vec<f32> = model.probabilities(&chips)?.flatten_all()?.to_vec1()?;
            let plane = (side * side) as usize;
            for (i, win) in wins.iter().enumerate() {
                strip.add(
                    win,
                    &valid[i],
                    (w, h),
                    &probs[i * k * plane..(i + 1) * k * plane],
                    &weights,
                    side as usize,
                );
            }
        }
    }
    strip.flush_to(h, &mut sink)?;
    bar.finish_and_clear();
    Ok(done)
}

/// Accumulated weighted probabilities of the rows not yet final: `rows` rows from `y0`, each
/// `k` planes of `width` values, plus the weight sums.
struct Strip {
    width: usize,
    k: usize,
    y0: u32,
    acc: Vec<f32>,
    wsum: Vec<f32>,
}

impl Strip {
    fn new(width: usize, k: usize) -> Self {
        Self {
            width,
            k,
            y0: 0,
            acc: Vec::new(),
            wsum: Vec::new(),
        }
    }

    fn rows(&self) -> u32 {
        (self.wsum.len() / self.width) as u32
    }

    /// Makes room up to row `end` (exclusive).
    fn grow_to(&mut self, end: u32) {
        let rows = end.saturating_sub(self.y0) as usize;
        if rows * self.width > self.wsum.len() {
            self.wsum.resize(rows * self.width, 0.0);
            self.acc.resize(rows * self.width * self.k, 0.0);
        }
    }

    /// Adds a window's probabilities `[k, side, side]` with the blending weights, at its valid
    /// pixels (nodata stays without a prediction).
    fn add(
        &mut self,
        win: &Window,
        valid: &[bool],
        (w, h): (u32, u32),
        probs: &[f32],
        weights: &[f32],
        side: usize,
    ) {
        let plane = side * side;
        for yy in 0..(side as u32).min(h - win.y) {
            let r = (win.y + yy - self.y0) as usize;
            for xx in 0..(side as u32).min(w - win.x) {
                let src = yy as usize * side + xx as usize;
                if !valid[src] {
                    continue;
                }
                let x = (win.x + xx) as usize;
                let wt = weights[src];
                self.wsum[r * self.width + x] += wt;
                let base = r * self.width * self.k;
                for c in 0..self.k {
                    self.acc[base + c * self.width + x] += wt * probs[c * plane + src];
                }
            }
        }
    }

    /// Emits the rows before `y` (no later window reaches them) as class labels.
    fn flush_to(&mut self, y: u32, sink: &mut impl FnMut(u32, &[u8]) -> Result<()>) -> Result<()> {
        let n = y.saturating_sub(self.y0).min(self.rows()) as usize;
        if n == 0 {
            if y > self.y0 && self.rows() == 0 {
                self.y0 = y;
            }
            return Ok(());
        }
        let mut out = vec![IGNORE; n * self.width];
        for r in 0..n {
            let base = r * self.width * self.k;
            for x in 0..self.width {
                if self.wsum[r * self.width + x] <= 0.0 {
                    continue;
                }
                let mut best = (0, f32::MIN);
                for c in 0..self.k {
                    let v = self.acc[base + c * self.width + x];
                    if v > best.1 {
                        best = (c, v);
                    }
                }
                out[r * self.width + x] = best.0 as u8;
            }
        }
        sink(self.y0, &out)?;
        self.acc.drain(..n * self.width * self.k);
        self.wsum.drain(..n * self.width);
        self.y0 += n as u32;
        Ok(())
    }
}

fn create_geotiff(
    classes: &[ClassInfo],
    (w, h): (u32, u32),
    georef: Option<&Georef>,
    tmp: &Path,
) -> Result<gdal::Dataset> {
    let driver = DriverManager::get_driver_by_name("GTiff").map_err(|e| Error::input(tmp, e))?;
    let options = RasterCreationOptions::from_iter(["COMPRESS=DEFLATE", "TILED=YES"]);
    let mut ds = driver
        .create_with_band_type_with_options::<u8, _>(tmp, w as usize, h as usize, 1, &options)
        .map_err(|e| Error::input(tmp, format!("cannot create: {e}")))?;
    if let Some(g) = georef {
        ds.set_geo_transform(&g.geotransform())
            .map_err(|e| Error::input(tmp, e))?;
        ds.set_projection(g.crs_wkt()).map_err(|e| Error::input(tmp, e))?;
    }
    {
        let mut band = ds.rasterband(1).map_err(|e| Error::input(tmp, e))?;
        band.set_no_data_value(Some(f64::from(IGNORE)))
            .map_err(|e| Error::input(tmp, e))?;
        let mut table = ColorTable::new(PaletteInterpretation::Rgba);
        for (i, class) in classes.iter().enumerate() {
            let [r, g, b] = class.color.unwrap_or_else(|| default_colour(i));
            table.set_color_entry(i as u16, &ColorEntry::rgba(r.into(), g.into(), b.into(), 255));
        }
        band.set_color_table(&table);
    }
    Ok(ds)
}

/// Writes a whole label map (`size` pixels, row-major, [`IGNORE`] = none) as a class GeoTIFF at
/// `out`, atomically: uint8, the classes' colour table, the georeference when given.
pub fn write_class_map(
    out: &Path,
    labels: &[u8],
    (w, h): (u32, u32),
    georef: Option<&Georef>,
    classes: &[ClassInfo],
) -> Result<()> {
    let tmp = tmp_path(out);
    let res = (|| -> Result<()> {
        let mut ds = create_geotiff(classes, (w, h), georef, &tmp)?;
        {
            let mut band = ds.rasterband(1).map_err(|e| Error::input(&tmp, e))?;
            let mut buf = Buffer::new((w as usize, h as usize), labels.to_vec());
            band.write((0, 0), (w as usize, h as usize), &mut buf)
                .map_err(|e| Error::input(&tmp, format!("cannot write: {e}")))?;
        }
        ds.flush_cache().map_err(|e| Error::input(&tmp, e))?;
        Ok(())
    })();
    if let Err(e) = res {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    publish_cog(&tmp, out)
}

/// Copies the staged tiled GeoTIFF into a Cloud Optimized GeoTIFF at `out`, atomically (a
/// temporary file synced, then renamed), and removes the staged file. Overviews are resampled by
/// nearest neighbour: class values are labels, never averaged.
fn publish_cog(staged: &Path, out: &Path) -> Result<()> {
    let tmp = {
        let mut name = out.file_name().unwrap_or_default().to_os_string();
        name.push(".cog.tmp");
        out.with_file_name(name)
    };
    let res = (|| -> Result<()> {
        let src = gdal::Dataset::open(staged).map_err(|e| Error::input(staged, e))?;
        let driver = DriverManager::get_driver_by_name("COG").map_err(|e| Error::input(out, e))?;
        let options = RasterCreationOptions::from_iter([
            "COMPRESS=DEFLATE",
            "BLOCKSIZE=512",
            "RESAMPLING=NEAREST",
            "OVERVIEWS=AUTO",
        ]);
        let cog = src
            .create_copy(&driver, &tmp, &options)
            .map_err(|e| Error::input(out, format!("cannot write the COG: {e}")))?;
        drop(cog);
        std::fs::File::open(&tmp)
            .and_then(|f| f.sync_all())
            .and_then(|()| std::fs::rename(&tmp, out))
            .map_err(|e| Error::io(out, e))
    })();
    let _ = std::fs::remove_file(staged);
    if res.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    res
}

/// A distinct colour for a class without one.
pub(crate) fn default_colour(i: usize) -> [u8; 3] {
    const PALETTE: [[u8; 3]; 8] = [
        [31, 119, 180],
        [255, 127, 14],
        [44, 160, 44],
        [214, 39, 40],
        [148, 103, 189],
        [140, 86, 75],
        [227, 119, 194],
        [127, 127, 127],
    ];
    PALETTE[i % PALETTE.len()]
}

fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    path.with_file_name(name)
}
