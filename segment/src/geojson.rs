//! Class polygons as GeoJSON: the label map vectorised ([`crate::vectorize`]), pixel corners
//! mapped through the scene's geotransform and CRS to WGS84 lon/lat (RFC 7946: exteriors
//! counter-clockwise). A plain image (no georeference) keeps pixel coordinates and says so in a
//! top-level `nadir:coordinates` member.

use std::path::Path;

use geo::orient::{Direction, Orient};
use geo::{Coord, LineString, Polygon};
use nadir_indexer::raster::Georef;
use serde_json::{json, Value};

use crate::config::{ClassInfo, IGNORE};
use crate::error::{Error, Result};
use crate::vectorize::polygonize;

/// Writes the polygons of `labels` (`size` pixels, row-major) to `path` atomically; returns how
/// many features it holds. Regions under `min_pixels` pixels are left out.
pub fn write_polygons(
    path: &Path,
    labels: &[u8],
    size: (u32, u32),
    georef: Option<&Georef>,
    classes: &[ClassInfo],
    min_pixels: usize,
) -> Result<usize> {
    let fc = polygons(labels, size, georef, classes, min_pixels).map_err(|e| Error::input(path, e))?;
    let n = fc["features"].as_array().map_or(0, Vec::len);
    let bytes = serde_json::to_vec(&fc).map_err(|e| Error::input(path, e))?;
    nadir_indexer::fsutil::write_atomic(path, &bytes)?;
    Ok(n)
}

/// The polygons of `labels` as a GeoJSON FeatureCollection (see [`write_polygons`]).
pub fn polygons(
    labels: &[u8],
    (w, h): (u32, u32),
    georef: Option<&Georef>,
    classes: &[ClassInfo],
    min_pixels: usize,
) -> Result<Value> {
    let regions = polygonize(labels, w as usize, h as usize, Some(IGNORE), min_pixels.max(1))
        .map_err(Error::Invalid)?;
    let pixel_area_m2 = match georef {
        Some(g) => Some(g.pixel_size_m(w, h)?.powi(2)),
        None => None,
    };
    let mut features = Vec::with_capacity(regions.len());
    for r in &regions {
        let polygon = match georef {
            Some(g) => to_lonlat(&r.polygon, g)?,
            None => r.polygon.clone(),
        };
        let class = usize::from(r.class);
        let mut props = json!({
            "class": class,
            "name": classes.get(class).map_or("", |c| c.name.as_str()),
            "pixels": r.pixels,
        });
        if let Some(a) = pixel_area_m2 {
            props["area_m2"] = json!((a * r.pixels as f64).round());
        }
        features.push(json!({
            "type": "Feature",
            "properties": props,
            "geometry": polygon_json(&polygon),
        }));
    }
    let mut fc = json!({"type": "FeatureCollection", "features": features});
    if georef.is_none() {
        fc["nadir:coordinates"] = json!("pixel (x right, y down) of a plain image without georeference");
    }
    Ok(fc)
}

/// A pixel-space polygon in WGS84, exterior counter-clockwise.
fn to_lonlat(p: &Polygon<f64>, g: &Georef) -> Result<Polygon<f64>> {
    let ring = |ls: &LineString<f64>| -> Result<LineString<f64>> {
        let px: Vec<(f64, f64)> = ls.coords().map(|c| (c.x, c.y)).collect();
        Ok(g.pixels_to_lonlat(&px)?
            .into_iter()
            .map(|(x, y)| Coord { x, y })
            .collect())
    };
    let interiors = p.interiors().iter().map(ring).collect::<Result<Vec<_>>>()?;
    Ok(Polygon::new(ring(p.exterior())?, interiors).orient(Direction::Default))
}

fn polygon_json(p: &Polygon<f64>) -> Value {
    let ring = |ls: &LineString<f64>| -> Value { ls.coords().map(|c| json!([c.x, c.y])).collect() };
    let mut rings = vec![ring(p.exterior())];
    rings.extend(p.interiors().iter().map(ring));
    json!({"type": "Polygon", "coordinates": rings})
}
