//! Reading one input raster or image through GDAL: band selection, the per-scene percentile stretch
//! to 8-bit RGB, nodata handling (band nodata, alpha, GDAL masks), resampled window reads into RGB
//! patches, and the scene's georeference (pixel <-> WGS84 lon/lat, footprints, ground pixel size).
//! Every error names the file it is about.

use std::path::{Path, PathBuf};

use gdal::errors::GdalError;
use gdal::raster::{ColorInterpretation as Ci, GdalDataType, GdalType, RasterBand, ResampleAlg};
use gdal::spatial_ref::{AxisMappingStrategy, CoordTransform, SpatialRef};
use gdal::{Dataset, DatasetOptions, GdalOpenFlags, GeoTransformEx, Metadata};
use geo::{Distance, Geodesic, Orient, Point, Polygon};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Long side of the decimated read used for the stretch statistics (and the open-time probe).
const PROBE_SIDE: f64 = 1024.0;

/// A source rectangle: x, y, width, height in pixels.
type Rect = (usize, usize, usize, usize);

/// How to turn source pixels into 8-bit RGB.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RasterOptions {
    /// 1-based band numbers to use as R,G,B (1 band = replicated to grey RGB; 3 bands). None = default
    /// choice: bands whose colour interpretation is Red/Green/Blue if present, else 1,2,3; a 1-band (or
    /// 2-band) raster uses band 1 replicated.
    pub bands: Option<Vec<usize>>,
    /// Percentile stretch for non-uint8 data, per band, computed once per scene over valid pixels of a
    /// decimated read (<= 1024 px on the long side). uint8 data is used as is unless `stretch_u8`.
    pub stretch: (f64, f64),
    pub stretch_u8: bool,
    /// A window whose share of nodata pixels (band nodata, alpha == 0, GDAL mask, outside the raster)
    /// is above this is skipped.
    pub max_nodata: f64,
}

impl Default for RasterOptions {
    fn default() -> Self {
        RasterOptions {
            bands: None,
            stretch: (2.0, 98.0),
            stretch_u8: false,
            max_nodata: 0.5,
        }
    }
}

/// A pixel window in the source raster (pixel coordinates, origin top-left).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Window {
    pub x: u32,
    pub y: u32,
    pub width: u32,
    pub height: u32,
}

impl Window {
    pub const fn new(x: u32, y: u32, width: u32, height: u32) -> Self {
        Window { x, y, width, height }
    }

    /// Corners and edge midpoints in pixel coordinates, clockwise on screen from the top-left.
    fn ring(&self) -> [(f64, f64); 8] {
        let (x0, y0) = (self.x as f64, self.y as f64);
        let (x1, y1) = (x0 + self.width as f64, y0 + self.height as f64);
        let (xm, ym) = ((x0 + x1) / 2.0, (y0 + y1) / 2.0);
        [
            (x0, y0),
            (xm, y0),
            (x1, y0),
            (x1, ym),
            (x1, y1),
            (xm, y1),
            (x0, y1),
            (x0, ym),
        ]
    }
}

/// An opened input raster.
pub struct Scene {
    path: PathBuf,
    ds: Dataset,
    size: (u32, u32),
    band_count: usize,
    /// Source band (1-based) of each of R, G, B.
    rgb: [usize; 3],
    /// Linear map (low, high) -> (0, 255) per channel; None: values used as is (uint8).
    stretch: [Option<(f64, f64)>; 3],
    /// Bands whose GDAL mask (nodata, alpha, mask band) must be read; a per-dataset mask only once.
    mask_bands: Vec<usize>,
    max_nodata: f64,
    georef: Option<Georef>,
    acquired_ms: Option<i64>,
}

impl std::fmt::Debug for Scene {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scene")
            .field("path", &self.path)
            .field("size", &self.size)
            .field("band_count", &self.band_count)
            .field("rgb", &self.rgb)
            .field("stretch", &self.stretch)
            .field("georef", &self.georef)
            .finish_non_exhaustive()
    }
}

impl Scene {
    /// Opens `path`, checks it and computes the stretch. Fails, naming the file, on a missing or empty
    /// file, a file GDAL cannot open or read (truncated: the stretch read is a probe of every selected
    /// band), a raster under 2x2 px, a band list naming a missing band, a geotransform without CRS or an
    /// unsupported data type.
    pub fn open(path: &Path, opts: &RasterOptions) -> Result<Scene> {
        let bad = |msg: String| Error::input(path, msg);
        if !crate::vsi::is_virtual(path) {
            let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
            if meta.is_file() && meta.len() == 0 {
                return Err(bad("empty file (0 bytes)".into()));
            }
        }
        let (lo, hi) = opts.stretch;
        if !(0.0 <= lo && lo < hi && hi <= 100.0 && (0.0..=1.0).contains(&opts.max_nodata)) {
            let msg = "bad options: need 0 <= stretch.0 < stretch.1 <= 100 and max_nodata in 0..=1";
            return Err(bad(msg.into()));
        }
        let open_flags = GdalOpenFlags::GDAL_OF_RASTER | GdalOpenFlags::GDAL_OF_READONLY;
        let ds = Dataset::open_ex(
            path,
            DatasetOptions {
                open_flags,
                ..Default::default()
            },
        )
        .map_err(|e| {
            bad(format!(
                "not a raster GDAL can open (unknown format or corrupt): {e}"
            ))
        })?;
        let band_count = ds.raster_count();
        if band_count == 0 {
            return Err(bad("not a raster: no bands".into()));
        }
        let (w, h) = ds.raster_size();
        let size = match (u32::try_from(w), u32::try_from(h)) {
            (Ok(w), Ok(h)) if w >= 2 && h >= 2 => (w, h),
            _ => return Err(bad(format!("{w}x{h} px: too small to tile"))),
        };
        let rgb = select_bands(&ds, opts.bands.as_deref()).map_err(bad)?;

        let (mut stretch, mut mask_bands, mut dataset_mask) = ([None; 3], Vec::new(), false);
        for (c, &b) in rgb.iter().enumerate() {
            let band = ds.rasterband(b).map_err(|e| bad(format!("band {b}: {e}")))?;
            // Complex types are reported as Unknown by the gdal crate.
            let ty = band.band_type();
            if ty == GdalDataType::Unknown {
                return Err(bad(format!(
                    "band {b}: unsupported data type (complex or unknown)"
                )));
            }
            if ty != GdalDataType::UInt8 || opts.stretch_u8 {
                stretch[c] = Some((0.0, 255.0)); // computed by compute_stretch
            }
            let mf = band
                .mask_flags()
                .map_err(|e| bad(format!("band {b} mask: {e}")))?;
            let known = mask_bands.contains(&b) || (mf.is_per_dataset() && dataset_mask);
            if !mf.is_all_valid() && !known {
                dataset_mask |= mf.is_per_dataset();
                mask_bands.push(b);
            }
        }
        let georef = Georef::from_dataset(path, &ds)?;
        let acquired_ms = acquisition_time(&ds);
        let max_nodata = opts.max_nodata;
        let mut scene = Scene {
            path: path.into(),
            ds,
            size,
            band_count,
            rgb,
            stretch,
            mask_bands,
            max_nodata,
            georef,
            acquired_ms,
        };
        scene.compute_stretch(opts.stretch)?;
        tracing::debug!(path = %path.display(), ?scene.size, band_count, ?scene.rgb, ?scene.stretch,
            epsg = ?scene.georef.as_ref().and_then(Georef::epsg), "opened scene");
        Ok(scene)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Width, height in pixels.
    pub fn size(&self) -> (u32, u32) {
        self.size
    }

    /// Number of bands in the file.
    pub fn band_count(&self) -> usize {
        self.band_count
    }

    /// None for plain images (no geotransform, or the default one, and no CRS).
    pub fn georef(&self) -> Option<&Georef> {
        self.georef.as_ref()
    }

    /// The linear map (low, high) -> (0, 255) of each of R, G, B; None where values are used as is
    /// (uint8 data).
    pub fn stretch(&self) -> [Option<(f64, f64)>; 3] {
        self.stretch
    }

    /// Replaces the per-scene stretch, so that pixels read from several files (a model's training
    /// chips, then a scene it predicts) go through the same map.
    pub fn set_stretch(&mut self, stretch: [Option<(f64, f64)>; 3]) {
        self.stretch = stretch;
    }

    /// Acquisition time as unix milliseconds UTC when the file's metadata says (TIFFTAG_DATETIME,
    /// ACQUISITIONDATETIME, EXIF dates...).
    pub fn acquired_ms(&self) -> Option<i64> {
        self.acquired_ms
    }

    /// Reads `win` resampled to `out`x`out` pixels (average when downsampling, bilinear when
    /// upsampling), applies band selection and stretch. Ok(None) when the window is empty: nodata share
    /// above `max_nodata` (outside the raster counts as nodata and is filled with 0), or every valid
    /// pixel has the same colour.
    pub fn read_window(&self, win: Window, out: u32) -> Result<Option<image::RgbImage>> {
        Ok(self.read_window_valid(win, out)?.map(|(img, _)| img))
    }

    /// [`Self::read_window`] with the validity of each output pixel (row-major, `out * out`):
    /// false for nodata, masked and non-finite pixels and for pixels outside the raster.
    pub fn read_window_valid(&self, win: Window, out: u32) -> Result<Option<(image::RgbImage, Vec<bool>)>> {
        if win.width == 0 || win.height == 0 || out == 0 {
            return Err(self.err(format!("cannot read window {win:?} into {out}x{out} px")));
        }
        let (w, h) = self.size;
        if win.x >= w || win.y >= h {
            return Ok(None);
        }
        // The part inside the raster lands at the output's top-left (only right and bottom can be out).
        let (cw, ch) = ((w - win.x).min(win.width), (h - win.y).min(win.height));
        let n = out as usize;
        let scaled = |c: u32, full: u32| ((c as f64 * n as f64 / full as f64).round() as usize).clamp(1, n);
        let (ow, oh) = (scaled(cw, win.width), scaled(ch, win.height));
        let src = (win.x as usize, win.y as usize, cw as usize, ch as usize);
        let alg = if src.2 > ow || src.3 > oh {
            ResampleAlg::Average
        } else if src.2 == ow && src.3 == oh {
            ResampleAlg::NearestNeighbour
        } else {
            ResampleAlg::Bilinear
        };
        let too_empty = |valid: &[bool]| {
            let nodata = n * n - valid.iter().filter(|&&v| v).count();
            nodata as f64 > self.max_nodata * (n * n) as f64
        };
        let mut valid = self.read_valid(src, (ow, oh), alg)?;
        if too_empty(&valid) {
            return Ok(None);
        }
        let mut data: Vec<Vec<f64>> = Vec::with_capacity(3);
        for (c, &b) in self.rgb.iter().enumerate() {
            match self.rgb[..c].iter().position(|&p| p == b) {
                Some(j) => data.push(data[j].clone()),
                None => data.push(self.read_band(b, src, (ow, oh), alg)?),
            }
        }
        for (i, v) in valid.iter_mut().enumerate() {
            *v &= data.iter().all(|d| d[i].is_finite());
        }
        if too_empty(&valid) {
            return Ok(None);
        }
        let mut img = image::RgbImage::new(out, out);
        let (mut first, mut constant) = (None, true);
        for (i, _) in valid.iter().enumerate().filter(|(_, &ok)| ok) {
            let px = image::Rgb(std::array::from_fn(|c| to_u8(data[c][i], self.stretch[c])));
            constant &= *first.get_or_insert(px) == px;
            img.put_pixel((i % ow) as u32, (i / ow) as u32, px);
        }
        if constant {
            return Ok(None);
        }
        let mut full = vec![false; n * n];
        for (i, &v) in valid.iter().enumerate() {
            full[(i / ow) * n + i % ow] = v;
        }
        Ok(Some((img, full)))
    }

    fn err(&self, msg: String) -> Error {
        Error::input(&self.path, msg)
    }

    /// Validity (all masks >= 128) of `src` read at `size` pixels.
    fn read_valid(&self, src: Rect, size: (usize, usize), alg: ResampleAlg) -> Result<Vec<bool>> {
        let mut valid = vec![true; size.0 * size.1];
        for &b in &self.mask_bands {
            let band = self.band(b)?;
            let mask = band
                .open_mask_band()
                .map_err(|e| self.err(format!("band {b} mask: {e}")))?;
            let m = read_as::<u8>(&mask, src, size, alg).map_err(|e| self.read_err(src, e))?;
            valid.iter_mut().zip(m).for_each(|(v, m)| *v &= m >= 128);
        }
        Ok(valid)
    }

    fn read_band(&self, b: usize, src: Rect, size: (usize, usize), alg: ResampleAlg) -> Result<Vec<f64>> {
        read_as::<f64>(&self.band(b)?, src, size, alg).map_err(|e| self.read_err(src, e))
    }

    fn band(&self, b: usize) -> Result<RasterBand<'_>> {
        self.ds
            .rasterband(b)
            .map_err(|e| self.err(format!("band {b}: {e}")))
    }

    fn read_err(&self, (x, y, w, h): Rect, e: GdalError) -> Error {
        self.err(format!(
            "cannot read pixels {x},{y} {w}x{h} (truncated or corrupt file?): {e}"
        ))
    }

    /// Reads every selected band decimated (the open-time probe) and sets the percentile stretches.
    fn compute_stretch(&mut self, (p_lo, p_hi): (f64, f64)) -> Result<()> {
        let (w, h) = self.size;
        let f = (PROBE_SIDE / w.max(h) as f64).min(1.0);
        let size = (
            ((w as f64 * f).round() as usize).max(1),
            ((h as f64 * f).round() as usize).max(1),
        );
        let src = (0, 0, w as usize, h as usize);
        let valid = self.read_valid(src, size, ResampleAlg::NearestNeighbour)?;
        for c in 0..3 {
            let b = self.rgb[c];
            if let Some(j) = self.rgb[..c].iter().position(|&p| p == b) {
                self.stretch[c] = self.stretch[j];
                continue;
            }
            let data = self.read_band(b, src, size, ResampleAlg::NearestNeighbour)?;
            if self.stretch[c].is_none() {
                continue;
            }
            let ok = data
                .into_iter()
                .zip(&valid)
                .filter(|(v, &ok)| ok && v.is_finite());
            let mut vals: Vec<f64> = ok.map(|(v, _)| v).collect();
            self.stretch[c] = Some(if vals.is_empty() {
                tracing::warn!(path = %self.path.display(), band = b, "no valid pixels to stretch");
                (0.0, 1.0)
            } else {
                let (lo, hi) = (percentile(&mut vals, p_lo), percentile(&mut vals, p_hi));
                (lo, if hi > lo { hi } else { lo + 1.0 })
            });
        }
        Ok(())
    }
}

fn read_as<T: GdalType + Copy + Default>(
    band: &RasterBand<'_>,
    (x, y, w, h): Rect,
    size: (usize, usize),
    alg: ResampleAlg,
) -> gdal::errors::Result<Vec<T>> {
    let mut buf = vec![T::default(); size.0 * size.1];
    band.read_into_slice::<T>((x as isize, y as isize), (w, h), size, &mut buf, Some(alg))?;
    Ok(buf)
}

/// The value at percentile `p` (0..=100) of `vals` (non-empty; reordered).
fn percentile(vals: &mut [f64], p: f64) -> f64 {
    let i = ((p / 100.0) * (vals.len() - 1) as f64).round() as usize;
    *vals.select_nth_unstable_by(i, f64::total_cmp).1
}

fn to_u8(v: f64, stretch: Option<(f64, f64)>) -> u8 {
    let v = stretch.map_or(v, |(lo, hi)| (v - lo) / (hi - lo) * 255.0);
    v.round().clamp(0.0, 255.0) as u8
}

/// The R, G, B source bands: the explicit list, else the Red/Green/Blue colour interpretations, else
/// 1,2,3, else (under 3 bands) band 1 as grey.
fn select_bands(ds: &Dataset, bands: Option<&[usize]>) -> std::result::Result<[usize; 3], String> {
    let count = ds.raster_count();
    if let Some(list) = bands {
        if let Some(&b) = list.iter().find(|&&b| b == 0 || b > count) {
            let s = if count == 1 { "" } else { "s" };
            return Err(format!(
                "band {b} requested but the file has {count} band{s} (numbered from 1)"
            ));
        }
        return match *list {
            [g] => Ok([g; 3]),
            [r, g, b] => Ok([r, g, b]),
            _ => Err(format!(
                "{} bands requested: give 1 (grey) or 3 (R,G,B)",
                list.len()
            )),
        };
    }
    let find = |ci: Ci| (1..=count).find(|&b| ds.rasterband(b).is_ok_and(|x| x.color_interpretation() == ci));
    Ok(
        match (find(Ci::RedBand), find(Ci::GreenBand), find(Ci::BlueBand)) {
            _ if count < 3 => [1; 3],
            (Some(r), Some(g), Some(b)) => [r, g, b],
            _ => [1, 2, 3],
        },
    )
}

/// The first acquisition time found in the usual metadata items.
fn acquisition_time(ds: &Dataset) -> Option<i64> {
    const ITEMS: [(&str, &str); 9] = [
        ("IMAGERY", "ACQUISITIONDATETIME"),
        ("", "ACQUISITIONDATETIME"),
        ("", "ACQUISITION_DATETIME"),
        ("", "ACQUISITION_DATE"),
        ("", "EXIF_DateTimeOriginal"),
        ("", "TIFFTAG_DATETIME"),
        ("", "EXIF_DateTime"),
        ("", "DATETIME"),
        ("", "DATE_TIME"),
    ];
    ITEMS
        .iter()
        .find_map(|(domain, key)| crate::time::parse_recorded(&ds.metadata_item(key, domain)?))
}

/// The georeference of a scene: geotransform + CRS, with transforms to and from WGS84 lon/lat.
///
/// Plain data (Send + Sync): the GDAL coordinate transformations are built per call (GDAL caches them).
#[derive(Debug, Clone, PartialEq)]
pub struct Georef {
    path: PathBuf,
    gt: [f64; 6],
    inv: [f64; 6],
    wkt: String,
    epsg: Option<u32>,
}

impl Georef {
    /// The dataset's georeference: None without a geotransform (or with the default one); an error for a
    /// geotransform without CRS, a singular geotransform, or a CRS that cannot be mapped to WGS84.
    fn from_dataset(path: &Path, ds: &Dataset) -> Result<Option<Georef>> {
        let bad = |msg: String| Error::input(path, msg);
        let wkt = ds.projection();
        let Some(gt) = ds
            .geo_transform()
            .ok()
            .filter(|gt| *gt != [0.0, 1.0, 0.0, 0.0, 0.0, 1.0])
        else {
            if !wkt.trim().is_empty() {
                tracing::warn!(path = %path.display(), "a CRS but no geotransform: read as a plain image");
            }
            return Ok(None);
        };
        if wkt.trim().is_empty() {
            return Err(bad(
                "georeferenced pixels but no CRS (a geotransform without coordinate system)".into(),
            ));
        }
        let inv = gt
            .invert()
            .map_err(|e| bad(format!("geotransform {gt:?} is not invertible: {e}")))?;
        let srs = SpatialRef::from_wkt(&wkt).map_err(|e| bad(format!("unreadable CRS: {e}")))?;
        let epsg = match srs.auth_name().as_deref() {
            Some("EPSG") => srs.auth_code().ok().and_then(|c| u32::try_from(c).ok()),
            _ => None,
        };
        let georef = Georef {
            path: path.into(),
            gt,
            inv,
            wkt,
            epsg,
        };
        let (w, h) = ds.raster_size();
        georef.pixel_to_lonlat(w as f64 / 2.0, h as f64 / 2.0)?;
        Ok(Some(georef))
    }

    pub fn geotransform(&self) -> [f64; 6] {
        self.gt
    }

    /// The georeference of the pixels of `win`: the same CRS, the origin moved to its corner.
    pub fn window(&self, win: &Window) -> Result<Georef> {
        let (x, y) = (f64::from(win.x), f64::from(win.y));
        let g = self.gt;
        let gt = [
            g[0] + x * g[1] + y * g[2],
            g[1],
            g[2],
            g[3] + x * g[4] + y * g[5],
            g[4],
            g[5],
        ];
        let inv = gt
            .invert()
            .map_err(|e| Error::input(&self.path, format!("geotransform {gt:?} is not invertible: {e}")))?;
        Ok(Georef {
            gt,
            inv,
            ..self.clone()
        })
    }

    /// The EPSG code of the CRS; None for custom CRSs.
    pub fn epsg(&self) -> Option<u32> {
        self.epsg
    }

    pub fn crs_wkt(&self) -> &str {
        &self.wkt
    }

    /// Pixel (x, y) (fractional; pixel corners at integers) to (lon, lat) in WGS84 degrees.
    pub fn pixel_to_lonlat(&self, x: f64, y: f64) -> Result<(f64, f64)> {
        Ok(self.pixels_to_lonlat(&[(x, y)])?[0])
    }

    /// (lon, lat) in WGS84 degrees to fractional pixel (x, y).
    pub fn lonlat_to_pixel(&self, lon: f64, lat: f64) -> Result<(f64, f64)> {
        let (mut xs, mut ys) = ([lon], [lat]);
        self.transform(false, &mut xs, &mut ys)?;
        Ok(self.inv.apply(xs[0], ys[0]))
    }

    /// Many pixels to (lon, lat) with one coordinate transformation.
    pub fn pixels_to_lonlat(&self, pixels: &[(f64, f64)]) -> Result<Vec<(f64, f64)>> {
        let (mut xs, mut ys): (Vec<f64>, Vec<f64>) = pixels.iter().map(|&(x, y)| self.gt.apply(x, y)).unzip();
        self.transform(true, &mut xs, &mut ys)?;
        Ok(xs.into_iter().zip(ys).collect())
    }

    /// The window's footprint in WGS84 (lon, lat): corners and edge midpoints (8 vertices), closed, with
    /// a counter-clockwise exterior.
    pub fn footprint(&self, win: &Window) -> Result<Polygon<f64>> {
        let pts = self.pixels_to_lonlat(&win.ring())?;
        Ok(Polygon::new(pts.into(), vec![]).orient(geo::orient::Direction::Default))
    }

    /// Ground size of one pixel in metres at the scene centre: the geodesic length of one pixel step in x
    /// and in y, averaged (the true ground size, whatever the CRS).
    pub fn pixel_size_m(&self, width: u32, height: u32) -> Result<f64> {
        let (cx, cy) = (width as f64 / 2.0, height as f64 / 2.0);
        let p = self.pixels_to_lonlat(&[(cx, cy), (cx + 1.0, cy), (cx, cy + 1.0)])?;
        let pt = |i: usize| Point::new(p[i].0, p[i].1);
        Ok((Geodesic.distance(pt(0), pt(1)) + Geodesic.distance(pt(0), pt(2))) / 2.0)
    }

    /// Transforms in place between the scene CRS and WGS84 (`to_wgs84` sets the direction).
    fn transform(&self, to_wgs84: bool, xs: &mut [f64], ys: &mut [f64]) -> Result<()> {
        let err = |e: String| Error::input(&self.path, format!("CRS transformation to/from WGS84: {e}"));
        let gdal_err = |e: GdalError| err(e.to_string());
        let mut crs = SpatialRef::from_wkt(&self.wkt).map_err(gdal_err)?;
        let mut wgs84 = SpatialRef::from_epsg(4326).map_err(gdal_err)?;
        crs.set_axis_mapping_strategy(AxisMappingStrategy::TraditionalGisOrder);
        wgs84.set_axis_mapping_strategy(AxisMappingStrategy::TraditionalGisOrder);
        let (from, to) = if to_wgs84 { (&crs, &wgs84) } else { (&wgs84, &crs) };
        let ct = CoordTransform::new(from, to).map_err(gdal_err)?;
        ct.transform_coords(xs, ys, &mut []).map_err(gdal_err)?;
        if xs.iter().chain(ys.iter()).any(|v| !v.is_finite()) {
            return Err(err("non-finite coordinates".into()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gdal::raster::Buffer;
    use gdal::DriverManager;
    use proptest::prelude::*;

    const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/data");
    const MANILA: &str = "scenes/openaerialmap/5b90f92da0d7280005fab355_4310.tif";
    const ATLANTA: &str = "scenes/spacenet/sample_geotiff.tif";
    const UTM_GT: [f64; 6] = [500_000.0, 0.5, 0.0, 3_700_000.0, 0.0, -0.5];

    fn data(rel: &str) -> Option<PathBuf> {
        let p = Path::new(DATA).join(rel);
        let found = p.exists();
        if !found {
            eprintln!("skipping: {} not found (shared test data absent)", p.display());
        }
        found.then_some(p)
    }

    fn open(p: &Path) -> Scene {
        Scene::open(p, &RasterOptions::default()).unwrap_or_else(|e| panic!("{e}"))
    }

    fn tifs(dir: &Path, out: &mut Vec<PathBuf>) {
        for p in std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
        {
            if p.is_dir() {
                tifs(&p, out);
            } else if p.extension().is_some_and(|x| x == "tif") {
                out.push(p);
            }
        }
    }

    /// Writes a `side`x`side` GeoTIFF (UTM_GT, CRS `epsg` if any) of `bands` bands of `value(band, i)`.
    fn write_tif<T: GdalType + Copy>(
        path: &Path,
        side: usize,
        bands: usize,
        epsg: Option<u32>,
        nodata: Option<f64>,
        value: impl Fn(usize, usize) -> T,
    ) -> anyhow::Result<()> {
        let driver = DriverManager::get_driver_by_name("GTiff")?;
        let mut ds = driver.create_with_band_type::<T, _>(path, side, side, bands)?;
        ds.set_geo_transform(&UTM_GT)?;
        if let Some(code) = epsg {
            ds.set_spatial_ref(&SpatialRef::from_epsg(code)?)?;
        }
        for b in 1..=bands {
            let mut band = ds.rasterband(b)?;
            if nodata.is_some() {
                band.set_no_data_value(nodata)?;
            }
            let mut buf = Buffer::new((side, side), (0..side * side).map(|i| value(b, i)).collect());
            band.write((0, 0), (side, side), &mut buf)?;
        }
        Ok(ds.close()?)
    }

    fn open_err(path: &Path, opts: &RasterOptions, why: &str) {
        let msg = Scene::open(path, opts).expect_err("open should fail").to_string();
        assert!(
            msg.contains(&path.display().to_string()) && msg.contains(why),
            "{msg}"
        );
    }

    #[test]
    fn every_scene_opens_and_yields_rgb() {
        let Some(dir) = data("scenes") else { return };
        let mut paths = Vec::new();
        tifs(&dir, &mut paths);
        assert!(paths.len() >= 10, "expected the shared scenes, found {paths:?}");
        for p in paths {
            let s = open(&p);
            let ((w, h), g) = (s.size(), s.georef());
            let m = g.map(|g| g.pixel_size_m(w, h).unwrap());
            let (bands, epsg) = (s.band_count(), g.and_then(Georef::epsg));
            eprintln!(
                "{}: {w}x{h} px, {bands} bands, rgb {:?}, epsg {epsg:?}, {m:?} m/px",
                p.display(),
                s.rgb
            );
            let side = 256.min(w).min(h);
            let wins =
                (0..16).map(|k| Window::new(k % 4 * (w - side) / 3, k / 4 * (h - side) / 3, side, side));
            let imgs: Vec<_> = wins.filter_map(|win| s.read_window(win, 64).unwrap()).collect();
            assert!(!imgs.is_empty(), "{}: every window empty", p.display());
            assert!(imgs.iter().all(|img| img.dimensions() == (64, 64)));
        }
    }

    #[test]
    fn footprint_round_trips_and_is_ccw() {
        let custom = "scenes/spacenet/sample_geotiff_custom_proj.tif";
        for rel in [MANILA, ATLANTA, custom, "scenes/spacenet/road_mask_input.tif"] {
            let Some(p) = data(rel) else { return };
            let s = open(&p);
            let g = s.georef().expect("georeferenced");
            assert_eq!(g.epsg().is_none(), rel == custom);
            let win = Window::new(10, 20, 100, 60);
            let fp = g.footprint(&win).unwrap();
            let ring = &fp.exterior().0;
            assert!(ring.len() == 9 && ring[0] == ring[8]);
            assert!(geo::Area::signed_area(&fp) > 0.0, "{rel}: not counter-clockwise");
            for c in &ring[..8] {
                let (x, y) = g.lonlat_to_pixel(c.x, c.y).unwrap();
                let d = win
                    .ring()
                    .iter()
                    .map(|&(ex, ey)| (ex - x).hypot(ey - y))
                    .fold(f64::MAX, f64::min);
                assert!(d < 0.01, "{rel}: vertex maps back {d} px away");
            }
        }
    }

    #[test]
    fn pixel_size_is_true_ground_size() {
        let (Some(manila), Some(atlanta)) = (data(MANILA), data(ATLANTA)) else {
            return;
        };
        let s = open(&manila);
        let ((w, h), g) = (s.size(), s.georef().unwrap());
        assert_eq!(g.epsg(), Some(3395));
        let m = g.pixel_size_m(w, h).unwrap();
        let lat = g.pixel_to_lonlat(w as f64 / 2.0, h as f64 / 2.0).unwrap().1;
        let nominal = g.geotransform()[1].abs();
        assert!((0.08..0.12).contains(&m), "Manila pixel {m} m");
        // Mercator metres are stretched by 1/cos(lat): the ground size is the nominal one times cos(lat).
        assert!(
            (m / (nominal * lat.to_radians().cos()) - 1.0).abs() < 0.01,
            "{m} vs nominal {nominal}"
        );
        let s = open(&atlanta);
        let m = s.georef().unwrap().pixel_size_m(s.size().0, s.size().1).unwrap();
        assert!((m - 0.5).abs() < 0.02, "Atlanta pixel {m} m");
    }

    #[test]
    fn plain_jpeg_has_no_georef() {
        let Some(p) = data("ucm/images/agricultural00.jpg") else {
            return;
        };
        let s = open(&p);
        assert!(s.georef().is_none() && s.band_count() == 3);
        let img = s
            .read_window(Window::new(0, 0, s.size().0, s.size().1), 224)
            .unwrap()
            .expect("not empty");
        assert_eq!(img.dimensions(), (224, 224));
    }

    #[test]
    fn uint16_is_stretched_to_full_range() {
        let Some(p) = data(ATLANTA) else { return };
        let s = open(&p);
        let img = s
            .read_window(Window::new(0, 0, s.size().0, s.size().1), 256)
            .unwrap()
            .unwrap();
        let (lo, hi) = img
            .pixels()
            .fold((255, 0), |(lo, hi), p| (lo.min(p[0]), hi.max(p[0])));
        assert!(lo <= 5 && hi >= 250, "range {lo}..{hi}");
        assert!(img.pixels().all(|p| p[0] == p[1] && p[1] == p[2]), "pan is grey");
    }

    #[test]
    fn synthetic_uint16_stretch_and_edges() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let p = dir.path().join("ramp.tif");
        write_tif::<u16>(&p, 100, 1, Some(32616), None, |_, i| 1000 + 40 * (i % 100) as u16)?;
        let s = Scene::open(&p, &RasterOptions::default())?;
        let img = s.read_window(Window::new(0, 0, 100, 100), 100)?.unwrap();
        assert!(img.get_pixel(0, 50)[0] == 0 && img.get_pixel(99, 50)[0] == 255);
        // Half past the right edge: the outside is nodata, filled with 0; more than half is skipped.
        let img = s.read_window(Window::new(60, 0, 80, 80), 40)?.unwrap();
        assert!(img.get_pixel(15, 5)[0] > 100 && img.get_pixel(30, 5)[0] == 0);
        assert!(s.read_window(Window::new(80, 0, 80, 80), 40)?.is_none());
        assert!(s.read_window(Window::new(500, 0, 8, 8), 8)?.is_none());
        assert!(s.read_window(Window::new(0, 0, 0, 16), 8).is_err());
        Ok(())
    }

    #[test]
    fn bad_inputs_name_the_file_and_say_why() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let (opts, path) = (RasterOptions::default(), |name: &str| dir.path().join(name));
        open_err(&path("missing.tif"), &opts, "No such file");
        std::fs::write(path("empty.tif"), b"")?;
        open_err(&path("empty.tif"), &opts, "empty file");
        std::fs::write(path("notes.tif"), b"not a raster at all")?;
        open_err(&path("notes.tif"), &opts, "not a raster");

        write_tif::<u8>(&path("rgb.tif"), 16, 3, Some(32616), None, |b, i| {
            (b * 40 + i % 50) as u8
        })?;
        let five = RasterOptions {
            bands: Some(vec![5]),
            ..opts.clone()
        };
        open_err(
            &path("rgb.tif"),
            &five,
            "band 5 requested but the file has 3 bands",
        );
        let bgr = Scene::open(
            &path("rgb.tif"),
            &RasterOptions {
                bands: Some(vec![3, 2, 1]),
                ..opts.clone()
            },
        )?;
        assert_eq!(bgr.rgb, [3, 2, 1]);

        write_tif::<u8>(&path("tiny.tif"), 1, 1, Some(32616), None, |_, _| 7)?;
        open_err(&path("tiny.tif"), &opts, "1x1 px: too small to tile");
        write_tif::<u8>(&path("no_crs.tif"), 16, 1, None, None, |_, i| i as u8)?;
        open_err(&path("no_crs.tif"), &opts, "georeferenced pixels but no CRS");

        write_tif::<u16>(&path("nodata.tif"), 32, 1, Some(32616), Some(0.0), |_, _| 0)?;
        let s = Scene::open(&path("nodata.tif"), &opts)?;
        for (x, y) in [(0, 0), (16, 16), (8, 0)] {
            assert!(s.read_window(Window::new(x, y, 16, 16), 8)?.is_none());
        }
        if let Some(real) = data(MANILA) {
            std::fs::write(path("truncated.tif"), &std::fs::read(real)?[..10 * 1024])?;
            open_err(&path("truncated.tif"), &opts, "truncated or corrupt");
        }
        Ok(())
    }

    #[test]
    fn scenes_move_between_threads() {
        fn send<T: Send>() {}
        fn send_sync<T: Send + Sync>() {}
        send::<Scene>();
        send_sync::<Georef>();
    }

    #[test]
    fn datetimes_parse_to_unix_ms() {
        assert_eq!(
            crate::time::parse_recorded("2019:06:01 12:30:00"),
            Some(1_559_392_200_000)
        );
        assert_eq!(
            crate::time::parse_recorded("2019-06-01T12:30:00.250Z"),
            Some(1_559_392_200_250)
        );
        assert_eq!(
            crate::time::parse_recorded("2019-06-01T14:30:00+02:00"),
            Some(1_559_392_200_000)
        );
        assert_eq!(
            crate::time::parse_recorded("2019-06-01T10:30-0200"),
            Some(1_559_392_200_000)
        );
        assert_eq!(crate::time::parse_recorded("1970-01-01"), Some(0));
        assert_eq!(crate::time::parse_recorded("2019-13-01"), None);
        assert_eq!(crate::time::parse_recorded("yesterday"), None);
    }

    fn manila_georef() -> Option<&'static Georef> {
        static GEOREF: std::sync::OnceLock<Option<Georef>> = std::sync::OnceLock::new();
        GEOREF
            .get_or_init(|| open(&data(MANILA)?).georef().cloned())
            .as_ref()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]
        #[test]
        fn footprint_vertices_map_back(x in 0u32..1800, y in 0u32..1800, w in 1u32..600, h in 1u32..600) {
            let Some(g) = manila_georef() else { return Ok(()) };
            let win = Window::new(x, y, w, h);
            let back: Vec<_> = g.footprint(&win).unwrap().exterior().0.iter()
                .map(|c| g.lonlat_to_pixel(c.x, c.y).unwrap()).collect();
            for (ex, ey) in win.ring() {
                let d = back.iter().map(|&(px, py)| (px - ex).hypot(py - ey)).fold(f64::MAX, f64::min);
                prop_assert!(d < 1.0, "{win:?}: ({ex}, {ey}) is {d} px from every vertex");
            }
        }
    }
}
