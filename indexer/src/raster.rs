//! Reading one input raster or image through GDAL: band selection, the per-scene percentile stretch
//! to 8-bit RGB, nodata handling (band nodata, alpha, GDAL masks), resampled window reads into RGB
//! patches, and the scene's georeference (pixel <-> WGS84 lon/lat, footprints, ground pixel size).
//! Every error names the file it is about.

use std::path::{Path, PathBuf};

use gdal::raster::{ColorInterpretation, GdalDataType, RasterBand, ResampleAlg};
use gdal::spatial_ref::{AxisMappingStrategy, CoordTransform, SpatialRef};
use gdal::{Dataset, DatasetOptions, GdalOpenFlags, GeoTransformEx, Metadata};
use geo::{Distance, Geodesic, Orient, Point, Polygon};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Long side of the decimated read used for the stretch statistics (and the open-time probe).
const PROBE_SIDE: f64 = 1024.0;

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

/// An opened input raster.
pub struct Scene {
    path: PathBuf,
    ds: Dataset,
    size: (u32, u32),
    band_count: usize,
    /// Source band (1-based) of each of R, G, B.
    rgb: [usize; 3],
    /// Linear map (low, high) -> (0, 255) per band of `rgb`; None: the values are used as is.
    stretch: [Option<(f64, f64)>; 3],
    /// Bands whose GDAL mask must be read (per-dataset masks once).
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
            .field("acquired_ms", &self.acquired_ms)
            .finish_non_exhaustive()
    }
}

impl Scene {
    /// Opens `path`, checks it and computes the stretch. Fails, naming the file, on a missing or empty
    /// file, a file GDAL cannot open or read (truncated: a probe read is done here), a raster under 2x2
    /// px, a band list naming a missing band, a geotransform without CRS or an unsupported data type.
    pub fn open(path: &Path, opts: &RasterOptions) -> Result<Scene> {
        let bad = |msg: String| Error::input(path, msg);
        let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
        if meta.is_file() && meta.len() == 0 {
            return Err(bad("empty file (0 bytes)".into()));
        }
        let (lo, hi) = opts.stretch;
        if !(0.0 <= lo && lo < hi && hi <= 100.0) {
            return Err(bad(format!(
                "stretch percentiles ({lo}, {hi}) must satisfy 0 <= low < high <= 100"
            )));
        }
        if !(0.0..=1.0).contains(&opts.max_nodata) {
            return Err(bad(format!(
                "max_nodata {} is not a share in 0..=1",
                opts.max_nodata
            )));
        }
        let flags = GdalOpenFlags::GDAL_OF_RASTER | GdalOpenFlags::GDAL_OF_READONLY;
        let ds = Dataset::open_ex(
            path,
            DatasetOptions {
                open_flags: flags,
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

        let mut stretch = [None; 3];
        let mut mask_bands = Vec::new();
        let mut dataset_mask = false;
        for (c, &b) in rgb.iter().enumerate() {
            let band = ds.rasterband(b).map_err(|e| bad(format!("band {b}: {e}")))?;
            let ty = band.band_type();
            if !is_supported(ty) {
                return Err(bad(format!("band {b}: unsupported data type {}", ty.name())));
            }
            if ty != GdalDataType::UInt8 || opts.stretch_u8 {
                stretch[c] = Some((0.0, 255.0)); // placeholder, computed below
            }
            let mf = band
                .mask_flags()
                .map_err(|e| bad(format!("band {b} mask: {e}")))?;
            if mf.is_all_valid() || mask_bands.contains(&b) || (mf.is_per_dataset() && dataset_mask) {
                continue;
            }
            dataset_mask |= mf.is_per_dataset();
            mask_bands.push(b);
        }
        let georef = Georef::from_dataset(path, &ds)?;
        let acquired_ms = acquisition_time(&ds);
        let mut scene = Scene {
            path: path.into(),
            ds,
            size,
            band_count,
            rgb,
            stretch,
            mask_bands,
            max_nodata: opts.max_nodata,
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

    /// Acquisition time as unix milliseconds UTC when the file's metadata says.
    pub fn acquired_ms(&self) -> Option<i64> {
        self.acquired_ms
    }

    /// Reads `win` resampled to `out`x`out` pixels (average when downsampling, bilinear when
    /// upsampling), applies band selection and stretch. Ok(None) when the window is empty: nodata share
    /// above `max_nodata` (outside the raster counts as nodata and is filled with 0), or every valid
    /// pixel has the same colour.
    pub fn read_window(&self, win: Window, out: u32) -> Result<Option<image::RgbImage>> {
        if win.width == 0 || win.height == 0 || out == 0 {
            return Err(self.err(format!(
                "cannot read window {win:?} into {out}x{out} px: empty size"
            )));
        }
        let (w, h) = self.size;
        if win.x >= w || win.y >= h {
            return Ok(None);
        }
        // The part inside the raster, and where it lands in the output (x, y >= 0: only the right and
        // bottom edges can be outside).
        let (cw, ch) = ((w - win.x).min(win.width), (h - win.y).min(win.height));
        let n = out as usize;
        let scaled = |c: u32, full: u32| ((c as f64 * out as f64 / full as f64).round() as usize).clamp(1, n);
        let (ow, oh) = (scaled(cw, win.width), scaled(ch, win.height));
        let src = (win.x as usize, win.y as usize, cw as usize, ch as usize);
        let alg = if src.2 > ow || src.3 > oh {
            ResampleAlg::Average
        } else if src.2 == ow && src.3 == oh {
            ResampleAlg::NearestNeighbour
        } else {
            ResampleAlg::Bilinear
        };
        let mut valid = self.read_valid(src, (ow, oh), alg)?;
        let too_empty = |valid: &[bool]| {
            let nodata = n * n - valid.iter().filter(|&&v| v).count();
            nodata as f64 > self.max_nodata * (n * n) as f64
        };
        if too_empty(&valid) {
            return Ok(None);
        }
        let mut channels: Vec<(usize, Vec<f64>)> = Vec::with_capacity(3);
        for &b in &self.rgb {
            if channels.iter().all(|(cb, _)| *cb != b) {
                channels.push((b, self.read_band(b, src, (ow, oh), alg)?));
            }
        }
        for (_, data) in &channels {
            for (v, d) in valid.iter_mut().zip(data) {
                *v &= d.is_finite();
            }
        }
        if too_empty(&valid) {
            return Ok(None);
        }
        let mut img = image::RgbImage::new(out, out);
        for (c, &b) in self.rgb.iter().enumerate() {
            let data = &channels
                .iter()
                .find(|(cb, _)| *cb == b)
                .expect("every selected band was read")
                .1;
            for (i, (&v, &ok)) in data.iter().zip(&valid).enumerate() {
                if ok {
                    img.get_pixel_mut((i % ow) as u32, (i / ow) as u32)[c] = to_u8(v, self.stretch[c]);
                }
            }
        }
        let mut colours = valid
            .iter()
            .enumerate()
            .filter(|(_, &ok)| ok)
            .map(|(i, _)| img.get_pixel((i % ow) as u32, (i / ow) as u32));
        let first = colours.next();
        if colours.all(|p| Some(p) == first) {
            return Ok(None);
        }
        Ok(Some(img))
    }

    fn err(&self, msg: String) -> Error {
        Error::input(&self.path, msg)
    }

    /// Validity of the `size`-pixel read of `src` (x, y, w, h), laid out in an `out`x`out` grid whose
    /// outside part (beyond the read) is invalid.
    fn read_valid(
        &self,
        src: (usize, usize, usize, usize),
        size: (usize, usize),
        alg: ResampleAlg,
    ) -> Result<Vec<bool>> {
        let mut valid = vec![true; size.0 * size.1];
        for &b in &self.mask_bands {
            let band = self.band(b)?;
            let mask = band
                .open_mask_band()
                .map_err(|e| self.err(format!("band {b} mask: {e}")))?;
            let data = read_as::<u8>(&mask, src, size, alg).map_err(|e| self.read_err(src, e))?;
            for (v, m) in valid.iter_mut().zip(data) {
                *v &= m >= 128;
            }
        }
        Ok(valid)
    }

    fn read_band(
        &self,
        b: usize,
        src: (usize, usize, usize, usize),
        size: (usize, usize),
        alg: ResampleAlg,
    ) -> Result<Vec<f64>> {
        read_as::<f64>(&self.band(b)?, src, size, alg).map_err(|e| self.read_err(src, e))
    }

    fn band(&self, b: usize) -> Result<RasterBand<'_>> {
        self.ds
            .rasterband(b)
            .map_err(|e| self.err(format!("band {b}: {e}")))
    }

    fn read_err(&self, (x, y, w, h): (usize, usize, usize, usize), e: gdal::errors::GdalError) -> Error {
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
            if self.rgb[..c].contains(&b) {
                self.stretch[c] = self.stretch[self.rgb[..c].iter().position(|&x| x == b).unwrap_or(0)];
                continue;
            }
            let data = self.read_band(b, src, size, ResampleAlg::NearestNeighbour)?;
            if self.stretch[c].is_none() {
                continue;
            }
            let mut vals: Vec<f64> = data
                .into_iter()
                .zip(&valid)
                .filter(|(v, &ok)| ok && v.is_finite())
                .map(|(v, _)| v)
                .collect();
            self.stretch[c] = Some(if vals.is_empty() {
                tracing::warn!(path = %self.path.display(), band = b, "no valid pixels: nothing to stretch");
                (0.0, 1.0)
            } else {
                let lo = percentile(&mut vals, p_lo);
                let hi = percentile(&mut vals, p_hi);
                (lo, if hi > lo { hi } else { lo + 1.0 })
            });
        }
        Ok(())
    }
}

fn read_as<T: Copy + gdal::raster::GdalType + Default>(
    band: &RasterBand<'_>,
    (x, y, w, h): (usize, usize, usize, usize),
    size: (usize, usize),
    alg: ResampleAlg,
) -> gdal::errors::Result<Vec<T>> {
    let mut buf = vec![T::default(); size.0 * size.1];
    band.read_into_slice::<T>((x as isize, y as isize), (w, h), size, &mut buf, Some(alg))?;
    Ok(buf)
}

/// Real-valued types (complex ones are reported as Unknown by the gdal crate).
fn is_supported(ty: GdalDataType) -> bool {
    ty != GdalDataType::Unknown
}

/// The value at percentile `p` (0..=100) of `vals` (non-empty; reordered).
fn percentile(vals: &mut [f64], p: f64) -> f64 {
    let i = ((p / 100.0) * (vals.len() - 1) as f64).round() as usize;
    *vals.select_nth_unstable_by(i, f64::total_cmp).1
}

fn to_u8(v: f64, stretch: Option<(f64, f64)>) -> u8 {
    let v = match stretch {
        Some((lo, hi)) => (v - lo) / (hi - lo) * 255.0,
        None => v,
    };
    v.round().clamp(0.0, 255.0) as u8
}

/// The R, G, B source bands: the explicit list, else Red/Green/Blue colour interpretations, else 1,2,3,
/// else band 1 as grey.
fn select_bands(ds: &Dataset, bands: Option<&[usize]>) -> std::result::Result<[usize; 3], String> {
    let count = ds.raster_count();
    if let Some(list) = bands {
        if let Some(&b) = list.iter().find(|&&b| b == 0 || b > count) {
            return Err(if b == 0 {
                "band 0 requested: band numbers start at 1".to_string()
            } else {
                format!(
                    "band {b} requested but the file has {count} band{}",
                    if count == 1 { "" } else { "s" }
                )
            });
        }
        return match *list {
            [g] => Ok([g; 3]),
            [r, g, b] => Ok([r, g, b]),
            _ => Err(format!(
                "{} bands requested: give 1 (grey) or 3 (R,G,B) band numbers",
                list.len()
            )),
        };
    }
    if count < 3 {
        return Ok([1; 3]);
    }
    let find = |ci: ColorInterpretation| {
        (1..=count).find(|&b| {
            ds.rasterband(b)
                .is_ok_and(|band| band.color_interpretation() == ci)
        })
    };
    match (
        find(ColorInterpretation::RedBand),
        find(ColorInterpretation::GreenBand),
        find(ColorInterpretation::BlueBand),
    ) {
        (Some(r), Some(g), Some(b)) => Ok([r, g, b]),
        _ => Ok([1, 2, 3]),
    }
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
        .find_map(|(domain, key)| ds.metadata_item(key, domain).and_then(|s| parse_datetime(&s)))
}

/// Parses "YYYY:MM:DD HH:MM:SS" (TIFF/EXIF) and ISO 8601 ("YYYY-MM-DD[THH:MM[:SS[.fff]]][Z|±HH[:MM]]")
/// into unix milliseconds UTC (no zone: UTC).
fn parse_datetime(s: &str) -> Option<i64> {
    let s = s.trim();
    let num = |r: std::ops::Range<usize>| {
        s.get(r)
            .filter(|t| t.bytes().all(|c| c.is_ascii_digit()))?
            .parse::<i64>()
            .ok()
    };
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let sep_ok = |i: usize| matches!(s.as_bytes().get(i), Some(b'-' | b':' | b'/'));
    if !sep_ok(4) || !sep_ok(7) || !(1..=12).contains(&mo) || !(1..=31).contains(&d) {
        return None;
    }
    let mut ms = days_from_civil(y, mo, d) * 86_400_000;
    let rest = &s[10..];
    let Some(time) = rest.strip_prefix(['T', ' ']) else {
        return rest.is_empty().then_some(ms);
    };
    let t = |r: std::ops::Range<usize>| {
        time.get(r)
            .filter(|t| t.bytes().all(|c| c.is_ascii_digit()))?
            .parse::<i64>()
            .ok()
    };
    let (hh, mm) = (t(0..2)?, t(3..5)?);
    let mut i = 5;
    let mut secs = 0.0;
    if time.as_bytes().get(5) == Some(&b':') {
        let end = time[6..]
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .map_or(time.len(), |e| e + 6);
        secs = time[6..end].parse::<f64>().ok()?;
        i = end;
    }
    if hh > 23 || mm > 59 || !(0.0..61.0).contains(&secs) {
        return None;
    }
    ms += hh * 3_600_000 + mm * 60_000 + (secs * 1000.0).round() as i64;
    let zone = time[i..].trim();
    let offset_min = match zone.as_bytes().first() {
        None | Some(b'Z' | b'z') => 0,
        Some(&sign @ (b'+' | b'-')) => {
            let digits: String = zone[1..].chars().filter(char::is_ascii_digit).collect();
            let (oh, om) = (
                digits.get(0..2)?.parse::<i64>().ok()?,
                digits.get(2..4).map_or(Some(0), |m| m.parse().ok())?,
            );
            if sign == b'+' {
                oh * 60 + om
            } else {
                -(oh * 60 + om)
            }
        }
        _ => return None,
    };
    Some(ms - offset_min * 60_000)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
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
        let gt = ds
            .geo_transform()
            .ok()
            .filter(|gt| *gt != [0.0, 1.0, 0.0, 0.0, 0.0, 1.0]);
        let wkt = ds.projection();
        let Some(gt) = gt else {
            if !wkt.trim().is_empty() {
                tracing::warn!(path = %path.display(), "a CRS but no geotransform: treated as a plain image");
            }
            return Ok(None);
        };
        if wkt.trim().is_empty() {
            return Err(Error::input(
                path,
                "georeferenced pixels but no CRS (a geotransform and no coordinate system)",
            ));
        }
        let inv = gt
            .invert()
            .map_err(|e| Error::input(path, format!("geotransform {gt:?} is not invertible: {e}")))?;
        let srs =
            SpatialRef::from_wkt(&wkt).map_err(|e| Error::input(path, format!("unreadable CRS: {e}")))?;
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
        let (mut xs, mut ys) = (vec![lon], vec![lat]);
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
        let ring = window_ring(win);
        let pts = self.pixels_to_lonlat(&ring)?;
        Ok(Polygon::new(pts.into(), vec![]).orient(geo::orient::Direction::Default))
    }

    /// Ground size of one pixel in metres at the scene centre: the geodesic length of one pixel step in x
    /// and in y, averaged (true ground size, whatever the CRS).
    pub fn pixel_size_m(&self, width: u32, height: u32) -> Result<f64> {
        let (cx, cy) = (width as f64 / 2.0, height as f64 / 2.0);
        let p = self.pixels_to_lonlat(&[(cx, cy), (cx + 1.0, cy), (cx, cy + 1.0)])?;
        let pt = |i: usize| Point::new(p[i].0, p[i].1);
        Ok((Geodesic.distance(pt(0), pt(1)) + Geodesic.distance(pt(0), pt(2))) / 2.0)
    }

    /// Transforms in place between the scene CRS and WGS84 (`to_wgs84` sets the direction).
    fn transform(&self, to_wgs84: bool, xs: &mut [f64], ys: &mut [f64]) -> Result<()> {
        let err = |e: gdal::errors::GdalError| {
            Error::input(&self.path, format!("CRS transformation to/from WGS84: {e}"))
        };
        let mut crs = SpatialRef::from_wkt(&self.wkt).map_err(err)?;
        let mut wgs84 = SpatialRef::from_epsg(4326).map_err(err)?;
        crs.set_axis_mapping_strategy(AxisMappingStrategy::TraditionalGisOrder);
        wgs84.set_axis_mapping_strategy(AxisMappingStrategy::TraditionalGisOrder);
        let ct = if to_wgs84 {
            CoordTransform::new(&crs, &wgs84)
        } else {
            CoordTransform::new(&wgs84, &crs)
        };
        ct.and_then(|ct| ct.transform_coords(xs, ys, &mut []))
            .map_err(err)?;
        if xs.iter().chain(ys.iter()).any(|v| !v.is_finite()) {
            return Err(Error::input(
                &self.path,
                "CRS transformation to/from WGS84 gave non-finite coordinates",
            ));
        }
        Ok(())
    }
}

/// Corners and edge midpoints of `win` in pixel coordinates, clockwise on screen from the top-left.
fn window_ring(win: &Window) -> Vec<(f64, f64)> {
    let (x0, y0) = (win.x as f64, win.y as f64);
    let (x1, y1) = (x0 + win.width as f64, y0 + win.height as f64);
    let (xm, ym) = ((x0 + x1) / 2.0, (y0 + y1) / 2.0);
    vec![
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

#[cfg(test)]
mod tests {
    use super::*;
    use gdal::raster::{Buffer, GdalType};
    use gdal::DriverManager;
    use proptest::prelude::*;

    const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/data");
    const MANILA: &str = "scenes/openaerialmap/5b90f92da0d7280005fab355_4310.tif";
    const ATLANTA: &str = "scenes/spacenet/sample_geotiff.tif";

    fn data(rel: &str) -> Option<PathBuf> {
        let p = Path::new(DATA).join(rel);
        if p.exists() {
            Some(p)
        } else {
            eprintln!("skipping: {} not found (shared test data absent)", p.display());
            None
        }
    }

    fn tifs(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                tifs(&p, out);
            } else if p.extension().is_some_and(|x| x == "tif") {
                out.push(p);
            }
        }
    }

    /// Writes a GeoTIFF with `bands` bands of `value(band, x, y)`.
    fn write_tif<T: GdalType + Copy>(
        path: &Path,
        (w, h): (usize, usize),
        bands: usize,
        geo: Option<([f64; 6], Option<u32>)>,
        nodata: Option<f64>,
        value: impl Fn(usize, usize, usize) -> T,
    ) -> anyhow::Result<()> {
        let mut ds =
            DriverManager::get_driver_by_name("GTiff")?.create_with_band_type::<T, _>(path, w, h, bands)?;
        if let Some((gt, epsg)) = geo {
            ds.set_geo_transform(&gt)?;
            if let Some(code) = epsg {
                ds.set_spatial_ref(&SpatialRef::from_epsg(code)?)?;
            }
        }
        for b in 1..=bands {
            let mut band = ds.rasterband(b)?;
            if nodata.is_some() {
                band.set_no_data_value(nodata)?;
            }
            let px = (0..w * h).map(|i| value(b, i % w, i / w)).collect();
            band.write((0, 0), (w, h), &mut Buffer::new((w, h), px))?;
        }
        ds.close()?;
        Ok(())
    }

    const UTM_GT: [f64; 6] = [500_000.0, 0.5, 0.0, 3_700_000.0, 0.0, -0.5];

    fn open_err(path: &Path, opts: &RasterOptions) -> String {
        let msg = Scene::open(path, opts).expect_err("open should fail").to_string();
        assert!(
            msg.contains(&path.display().to_string()),
            "error does not name the file: {msg}"
        );
        msg
    }

    #[test]
    fn every_scene_opens_and_yields_rgb() {
        let Some(dir) = data("scenes") else { return };
        let mut paths = Vec::new();
        tifs(&dir, &mut paths);
        assert!(paths.len() >= 10, "expected the shared scenes, found {paths:?}");
        for p in paths {
            let s = Scene::open(&p, &RasterOptions::default()).unwrap_or_else(|e| panic!("{e}"));
            let (w, h) = s.size();
            let g = s.georef();
            eprintln!(
                "{}: {w}x{h} px, {} bands, rgb {:?}, epsg {:?}, georef {}, {:.3} m/px",
                p.display(),
                s.band_count(),
                s.rgb,
                g.and_then(Georef::epsg),
                g.is_some(),
                g.map_or(f64::NAN, |g| g.pixel_size_m(w, h).unwrap())
            );
            let side = 256.min(w).min(h);
            let windows = (0..4).flat_map(|i| (0..4).map(move |j| (i, j)));
            let mut found = 0;
            for (i, j) in windows {
                let win = Window {
                    x: i * (w - side) / 3,
                    y: j * (h - side) / 3,
                    width: side,
                    height: side,
                };
                if let Some(img) = s.read_window(win, 64).unwrap_or_else(|e| panic!("{e}")) {
                    assert_eq!(img.dimensions(), (64, 64));
                    found += 1;
                }
            }
            assert!(found > 0, "{}: every window empty", p.display());
        }
    }

    #[test]
    fn footprint_round_trips_and_is_ccw() {
        for rel in [
            MANILA,
            ATLANTA,
            "scenes/spacenet/sample_geotiff_custom_proj.tif",
            "scenes/spacenet/road_mask_input.tif",
        ] {
            let Some(p) = data(rel) else { return };
            let s = Scene::open(&p, &RasterOptions::default()).unwrap();
            let g = s.georef().expect("georeferenced");
            let win = Window {
                x: 10,
                y: 20,
                width: 100,
                height: 60,
            };
            let fp = g.footprint(&win).unwrap();
            let ring = &fp.exterior().0;
            assert_eq!(ring.len(), 9);
            assert_eq!(ring[0], ring[8]);
            assert!(geo::Area::signed_area(&fp) > 0.0, "{rel}: not counter-clockwise");
            for c in &ring[..8] {
                let (x, y) = g.lonlat_to_pixel(c.x, c.y).unwrap();
                let d = window_ring(&win)
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
        let s = Scene::open(&manila, &RasterOptions::default()).unwrap();
        let g = s.georef().unwrap();
        assert_eq!(g.epsg(), Some(3395));
        let (w, h) = s.size();
        let m = g.pixel_size_m(w, h).unwrap();
        let lat = g.pixel_to_lonlat(w as f64 / 2.0, h as f64 / 2.0).unwrap().1;
        let nominal = g.geotransform()[1].abs();
        assert!((0.08..0.12).contains(&m), "Manila pixel {m} m");
        // Mercator units are stretched by 1/cos(lat): the ground size is smaller than the nominal one.
        assert!(
            (m / (nominal * lat.to_radians().cos()) - 1.0).abs() < 0.01,
            "{m} vs nominal {nominal}"
        );
        let s = Scene::open(&atlanta, &RasterOptions::default()).unwrap();
        let (w, h) = s.size();
        let m = s.georef().unwrap().pixel_size_m(w, h).unwrap();
        assert!((m - 0.5).abs() < 0.02, "Atlanta pixel {m} m");
    }

    #[test]
    fn plain_jpeg_has_no_georef() {
        let Some(p) = data("ucm/images/agricultural00.jpg") else {
            return;
        };
        let s = Scene::open(&p, &RasterOptions::default()).unwrap();
        assert!(s.georef().is_none());
        assert_eq!(s.band_count(), 3);
        let (w, h) = s.size();
        let img = s
            .read_window(
                Window {
                    x: 0,
                    y: 0,
                    width: w,
                    height: h,
                },
                224,
            )
            .unwrap()
            .expect("not empty");
        assert_eq!(img.dimensions(), (224, 224));
    }

    #[test]
    fn uint16_is_stretched_to_full_range() {
        let Some(p) = data(ATLANTA) else { return };
        let s = Scene::open(&p, &RasterOptions::default()).unwrap();
        let (w, h) = s.size();
        let img = s
            .read_window(
                Window {
                    x: 0,
                    y: 0,
                    width: w,
                    height: h,
                },
                256,
            )
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
        write_tif::<u16>(&p, (100, 100), 1, Some((UTM_GT, Some(32616))), None, |_, x, _| {
            1000 + 40 * x as u16
        })?;
        let s = Scene::open(&p, &RasterOptions::default())?;
        let img = s
            .read_window(
                Window {
                    x: 0,
                    y: 0,
                    width: 100,
                    height: 100,
                },
                100,
            )?
            .unwrap();
        assert!(img.get_pixel(0, 50)[0] == 0 && img.get_pixel(99, 50)[0] == 255);
        // A window half past the right edge: the outside is nodata, filled with 0.
        let img = s
            .read_window(
                Window {
                    x: 60,
                    y: 0,
                    width: 80,
                    height: 80,
                },
                40,
            )?
            .unwrap();
        assert!(img.get_pixel(15, 5)[0] > 100 && img.get_pixel(30, 5)[0] == 0);
        assert!(s
            .read_window(
                Window {
                    x: 80,
                    y: 0,
                    width: 80,
                    height: 80
                },
                40
            )?
            .is_none());
        assert!(s
            .read_window(
                Window {
                    x: 500,
                    y: 0,
                    width: 8,
                    height: 8
                },
                8
            )?
            .is_none());
        Ok(())
    }

    #[test]
    fn bad_inputs_name_the_file_and_say_why() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let opts = RasterOptions::default();
        let missing = dir.path().join("missing.tif");
        assert!(open_err(&missing, &opts).contains("No such file"));
        let empty = dir.path().join("empty.tif");
        std::fs::write(&empty, b"")?;
        assert!(open_err(&empty, &opts).contains("empty file"));
        let text = dir.path().join("notes.tif");
        std::fs::write(&text, b"not a raster at all")?;
        assert!(open_err(&text, &opts).contains("not a raster"));

        let rgb = dir.path().join("rgb.tif");
        write_tif::<u8>(&rgb, (16, 16), 3, Some((UTM_GT, Some(32616))), None, |b, x, y| {
            (b * 40 + x + y) as u8
        })?;
        let five = RasterOptions {
            bands: Some(vec![5]),
            ..RasterOptions::default()
        };
        assert!(open_err(&rgb, &five).contains("band 5 requested but the file has 3 bands"));
        assert!(Scene::open(
            &rgb,
            &RasterOptions {
                bands: Some(vec![3, 2, 1]),
                ..opts.clone()
            }
        )
        .is_ok());

        let tiny = dir.path().join("tiny.tif");
        write_tif::<u8>(&tiny, (1, 1), 1, Some((UTM_GT, Some(32616))), None, |_, _, _| 7)?;
        assert!(open_err(&tiny, &opts).contains("1x1 px: too small to tile"));

        let no_crs = dir.path().join("no_crs.tif");
        write_tif::<u8>(&no_crs, (16, 16), 1, Some((UTM_GT, None)), None, |_, x, _| {
            x as u8
        })?;
        assert!(open_err(&no_crs, &opts).contains("georeferenced pixels but no CRS"));

        let nodata = dir.path().join("nodata.tif");
        write_tif::<u16>(
            &nodata,
            (32, 32),
            1,
            Some((UTM_GT, Some(32616))),
            Some(0.0),
            |_, _, _| 0,
        )?;
        let s = Scene::open(&nodata, &opts)?;
        for (x, y) in [(0, 0), (16, 16), (8, 0)] {
            assert!(s
                .read_window(
                    Window {
                        x,
                        y,
                        width: 16,
                        height: 16
                    },
                    8
                )?
                .is_none());
        }
        assert!(s
            .read_window(
                Window {
                    x: 0,
                    y: 0,
                    width: 0,
                    height: 16
                },
                8
            )
            .is_err());

        if let Some(real) = data(MANILA) {
            let cut = dir.path().join("truncated.tif");
            std::fs::write(&cut, &std::fs::read(real)?[..10 * 1024])?;
            let msg = open_err(&cut, &opts);
            assert!(msg.contains("truncated") || msg.contains("not a raster"), "{msg}");
        }
        Ok(())
    }

    #[test]
    fn datetimes_parse_to_unix_ms() {
        assert_eq!(parse_datetime("2019:06:01 12:30:00"), Some(1_559_392_200_000));
        assert_eq!(
            parse_datetime("2019-06-01T12:30:00.250Z"),
            Some(1_559_392_200_250)
        );
        assert_eq!(
            parse_datetime("2019-06-01T14:30:00+02:00"),
            Some(1_559_392_200_000)
        );
        assert_eq!(parse_datetime("1970-01-01"), Some(0));
        assert_eq!(parse_datetime("2019-13-01"), None);
        assert_eq!(parse_datetime("yesterday"), None);
    }

    fn manila_georef() -> Option<&'static Georef> {
        static GEOREF: std::sync::OnceLock<Option<Georef>> = std::sync::OnceLock::new();
        GEOREF
            .get_or_init(|| {
                let p = data(MANILA)?;
                Scene::open(&p, &RasterOptions::default()).ok()?.georef().cloned()
            })
            .as_ref()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]
        #[test]
        fn footprint_vertices_map_back(x in 0u32..1800, y in 0u32..1800, w in 1u32..600, h in 1u32..600) {
            let Some(g) = manila_georef() else { return Ok(()) };
            let win = Window { x, y, width: w, height: h };
            let fp = g.footprint(&win).unwrap();
            for &(ex, ey) in &window_ring(&win) {
                let d = fp.exterior().0.iter()
                    .map(|c| g.lonlat_to_pixel(c.x, c.y).unwrap())
                    .map(|(px, py)| (px - ex).hypot(py - ey))
                    .fold(f64::MAX, f64::min);
                prop_assert!(d < 1.0, "{win:?}: ({ex}, {ey}) is {d} px from every vertex");
            }
        }
    }
}
