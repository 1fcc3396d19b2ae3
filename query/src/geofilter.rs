//! Geofilters: the area a search is restricted to (bbox, GeoJSON polygon or multipolygon with
//! holes, H3 cells, point plus radius), validated into an [`Area`] that plans its H3 covering and
//! answers exact containment. A patch is inside when its centroid is: the invariant every result
//! keeps.

use std::collections::HashSet;

use geo::{
    Contains, Coord, Destination, Distance, Haversine, LineString, MultiPolygon, Point, Polygon, Validation,
};
use h3o::geom::{ContainmentMode, TilerBuilder};
use h3o::{CellIndex, LatLng, Resolution};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::error::{Error, Result};

/// Coverings larger than this use a coarser resolution.
const MAX_COVERING: usize = 20_000;
/// Largest accepted radius.
const MAX_RADIUS_M: f64 = 2_000_000.0;

/// The area a search is restricted to: exactly one of `bbox`, `geojson`, `h3`, or `point` with
/// `radius_m`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GeoFilter {
    /// `[min_lon, min_lat, max_lon, max_lat]` in WGS84 degrees.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bbox: Option<Vec<f64>>,
    /// A GeoJSON Polygon or MultiPolygon (holes allowed), or a Feature or FeatureCollection of them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub geojson: Option<Value>,
    /// H3 cells as hex strings, any resolution.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub h3: Option<Vec<String>>,
    /// `[lon, lat]`, with `radius_m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub point: Option<Vec<f64>>,
    /// Radius around `point` in metres.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub radius_m: Option<f64>,
}

/// A validated area.
#[derive(Debug, Clone)]
pub enum Area {
    Polygons(MultiPolygon<f64>),
    Cells(HashSet<CellIndex>),
    Circle { center: Point<f64>, radius_m: f64 },
}

fn check_lonlat(lon: f64, lat: f64, what: &str) -> Result<()> {
    if !(lon.is_finite()
        && lat.is_finite()
        && (-180.0..=180.0).contains(&lon)
        && (-90.0..=90.0).contains(&lat))
    {
        return Err(Error::bad(format!(
            "{what}: ({lon}, {lat}) is not a WGS84 longitude, latitude"
        )));
    }
    Ok(())
}

fn ring(value: &Value, what: &str) -> Result<LineString<f64>> {
    let points = value
        .as_array()
        .ok_or_else(|| Error::bad(format!("{what}: a ring must be an array of positions")))?;
    let mut coords = Vec::with_capacity(points.len());
    for p in points {
        let xy = p
            .as_array()
            .filter(|a| a.len() >= 2)
            .and_then(|a| Some((a[0].as_f64()?, a[1].as_f64()?)));
        let (x, y) = xy.ok_or_else(|| Error::bad(format!("{what}: a position must be [lon, lat]")))?;
        check_lonlat(x, y, what)?;
        coords.push(Coord { x, y });
    }
    if coords.len() < 4 || coords.first() != coords.last() {
        return Err(Error::bad(format!(
            "{what}: a ring needs at least 4 positions and must be closed"
        )));
    }
    Ok(LineString(coords))
}

fn polygon(value: &Value, what: &str) -> Result<Polygon<f64>> {
    let rings = value
        .as_array()
        .ok_or_else(|| Error::bad(format!("{what}: coordinates must be an array of rings")))?;
    let mut rings = rings
        .iter()
        .map(|r| ring(r, what))
        .collect::<Result<Vec<_>>>()?
        .into_iter();
    let exterior = rings
        .next()
        .ok_or_else(|| Error::bad(format!("{what}: a polygon needs an exterior ring")))?;
    Ok(Polygon::new(exterior, rings.collect()))
}

/// Reads the polygons of a GeoJSON geometry, Feature or FeatureCollection.
fn geojson_polygons(value: &Value, out: &mut Vec<Polygon<f64>>) -> Result<()> {
    let kind = value.get("type").and_then(Value::as_str).unwrap_or_default();
    let coords = || {
        value
            .get("coordinates")
            .ok_or_else(|| Error::bad(format!("geojson {kind} has no coordinates")))
    };
    match kind {
        "Polygon" => out.push(polygon(coords()?, "geojson Polygon")?),
        "MultiPolygon" => {
            let polys = coords()?
                .as_array()
                .ok_or_else(|| Error::bad("geojson MultiPolygon: coordinates must be an array"))?;
            for p in polys {
                out.push(polygon(p, "geojson MultiPolygon")?);
            }
        }
        "Feature" => geojson_polygons(
            value
                .get("geometry")
                .ok_or_else(|| Error::bad("geojson Feature has no geometry"))?,
            out,
        )?,
        "FeatureCollection" => {
            let features = value.get("features").and_then(Value::as_array);
            for f in features.ok_or_else(|| Error::bad("geojson FeatureCollection has no features"))? {
                geojson_polygons(f, out)?;
            }
        }
        "" => return Err(Error::bad("geojson: missing \"type\"")),
        other => {
            return Err(Error::bad(format!(
                "geojson {other}: only Polygon and MultiPolygon areas are supported"
            )))
        }
    }
    Ok(())
}

impl GeoFilter {
    /// Validates the filter into an area.
    pub fn area(&self) -> Result<Area> {
        let given = [
            self.bbox.is_some(),
            self.geojson.is_some(),
            self.h3.is_some(),
            self.point.is_some(),
        ];
        if given.iter().filter(|g| **g).count() != 1 {
            return Err(Error::bad(
                "geofilter: give exactly one of bbox, geojson, h3, or point with radius_m",
            ));
        }
        if self.radius_m.is_some() && self.point.is_none() {
            return Err(Error::bad("geofilter: radius_m needs a point"));
        }
        if let Some(b) = &self.bbox {
            let &[w, s, e, n] = b.as_slice() else {
                return Err(Error::bad(
                    "geofilter bbox: give [min_lon, min_lat, max_lon, max_lat]",
                ));
            };
            check_lonlat(w, s, "geofilter bbox")?;
            check_lonlat(e, n, "geofilter bbox")?;
            if w >= e || s >= n {
                return Err(Error::bad(
                    "geofilter bbox: min must be below max (an area across the antimeridian is two polygons)",
                ));
            }
            return Ok(Area::Polygons(MultiPolygon(vec![
                geo::Rect::new((w, s), (e, n)).to_polygon()
            ])));
        }
        if let Some(g) = &self.geojson {
            let mut polys = Vec::new();
            geojson_polygons(g, &mut polys)?;
            if polys.is_empty() {
                return Err(Error::bad("geojson: no polygon"));
            }
            let mp = MultiPolygon(polys);
            if let Err(e) = mp.check_validation() {
                return Err(Error::bad(format!("geojson: invalid polygon: {e}")));
            }
            return Ok(Area::Polygons(mp));
        }
        if let Some(cells) = &self.h3 {
            if cells.is_empty() {
                return Err(Error::bad("geofilter h3: no cells"));
            }
            let set = cells
                .iter()
                .map(|c| {
                    c.parse::<CellIndex>()
                        .map_err(|_| Error::bad(format!("geofilter h3: {c:?} is not an H3 cell")))
                })
                .collect::<Result<HashSet<_>>>()?;
            return Ok(Area::Cells(set));
        }
        let p = self.point.as_deref().unwrap_or_default();
        let &[lon, lat] = p else {
            return Err(Error::bad("geofilter point: give [lon, lat]"));
        };
        check_lonlat(lon, lat, "geofilter point")?;
        let radius_m = self
            .radius_m
            .ok_or_else(|| Error::bad("geofilter point: radius_m is required"))?;
        if !(radius_m > 0.0 && radius_m <= MAX_RADIUS_M) {
            return Err(Error::bad(format!(
                "geofilter radius_m must be in (0, {MAX_RADIUS_M}]"
            )));
        }
        Ok(Area::Circle {
            center: Point::new(lon, lat),
            radius_m,
        })
    }
}

impl Area {
    /// Whether (lon, lat) lies inside.
    pub fn contains(&self, lon: f64, lat: f64) -> bool {
        match self {
            Area::Polygons(mp) => mp.contains(&Point::new(lon, lat)),
            Area::Cells(set) => LatLng::new(lat, lon).is_ok_and(|ll| {
                let mut resolutions: Vec<Resolution> = set.iter().map(|c| c.resolution()).collect();
                resolutions.sort_unstable();
                resolutions.dedup();
                resolutions.into_iter().any(|r| set.contains(&ll.to_cell(r)))
            }),
            Area::Circle { center, radius_m } => {
                Haversine.distance(*center, Point::new(lon, lat)) <= *radius_m
            }
        }
    }

    /// Cells covering the area, at `finest` or coarser so that there are at most ~20k of them,
    /// or `None` when the area cannot be tiled (then every row is a candidate).
    pub fn covering(&self, finest: Resolution) -> Option<Vec<CellIndex>> {
        let shape = match self {
            Area::Cells(set) => return Some(set.iter().copied().collect()),
            Area::Polygons(mp) => mp.clone(),
            Area::Circle { center, radius_m } => {
                // A 64-gon 2% outside the circle covers it.
                let r = radius_m * 1.02;
                let ring: Vec<Coord<f64>> = (0..=64)
                    .map(|i| {
                        Haversine
                            .destination(*center, f64::from(i % 64) * 360.0 / 64.0, r)
                            .0
                    })
                    .collect();
                MultiPolygon(vec![Polygon::new(LineString(ring), vec![])])
            }
        };
        let mut res = finest;
        loop {
            let mut tiler = TilerBuilder::new(res)
                .containment_mode(ContainmentMode::Covers)
                .build();
            for p in &shape.0 {
                tiler.add(p.clone()).ok()?;
            }
            if tiler.coverage_size_hint() <= MAX_COVERING || res == Resolution::Zero {
                return Some(tiler.into_coverage().collect());
            }
            res = res.pred()?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn area(v: Value) -> Result<Area> {
        serde_json::from_value::<GeoFilter>(v).unwrap().area()
    }

    #[test]
    fn shapes_validate_with_clear_errors() {
        assert!(area(json!({"bbox": [120.9, 14.5, 121.0, 14.6]})).is_ok());
        let e = area(json!({"bbox": [121.0, 14.5, 120.9, 14.6]}))
            .unwrap_err()
            .to_string();
        assert!(e.contains("min must be below max"), "{e}");
        let bowtie =
            json!({"geojson": {"type": "Polygon", "coordinates": [[[0,0],[1,1],[1,0],[0,1],[0,0]]]}});
        let e = area(bowtie).unwrap_err().to_string();
        assert!(e.contains("invalid polygon"), "{e}");
        let open = json!({"geojson": {"type": "Polygon", "coordinates": [[[0,0],[1,0],[1,1],[0,1]]]}});
        assert!(area(open).unwrap_err().to_string().contains("closed"));
        assert!(area(json!({"h3": ["zzz"]}))
            .unwrap_err()
            .to_string()
            .contains("not an H3 cell"));
        assert!(area(json!({"point": [0, 0]}))
            .unwrap_err()
            .to_string()
            .contains("radius_m"));
        assert!(area(json!({})).unwrap_err().to_string().contains("exactly one"));
    }

    #[test]
    fn holes_are_outside() {
        let a = area(
            json!({"geojson": {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [
            [[0,0],[10,0],[10,10],[0,10],[0,0]], [[4,4],[6,4],[6,6],[4,6],[4,4]]]}}}),
        )
        .unwrap();
        assert!(a.contains(2.0, 2.0));
        assert!(!a.contains(5.0, 5.0));
        assert!(!a.contains(11.0, 5.0));
    }

    #[test]
    fn circle_and_cells() {
        let c = area(json!({"point": [120.98, 14.59], "radius_m": 1000.0})).unwrap();
        assert!(c.contains(120.98, 14.595));
        assert!(!c.contains(121.0, 14.59));
        let cover = c.covering(Resolution::Nine).unwrap();
        let inside = LatLng::new(14.595, 120.98).unwrap().to_cell(Resolution::Nine);
        assert!(cover
            .iter()
            .any(|cell| inside.parent(cell.resolution()) == Some(*cell)));
        let cell = LatLng::new(14.59, 120.98).unwrap().to_cell(Resolution::Seven);
        let h = area(json!({"h3": [cell.to_string()]})).unwrap();
        assert!(h.contains(120.98, 14.59));
        assert!(!h.contains(0.0, 0.0));
    }
}
