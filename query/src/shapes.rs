//! The one GeoJSON reader of the crate: search areas, label imports and export masks read their
//! GeoJSON here (the `geojson` crate into `geo-types`), so every route and command accepts the
//! same inputs and gives the same errors. RFC 7946 coordinates are WGS84 longitude, latitude; the
//! legacy `crs` member (GeoJSON 2008) is read the same way everywhere: CRS84 or EPSG:4326 as
//! WGS84, another EPSG code as that CRS (reprojected to WGS84 where the caller needs degrees),
//! anything else refused with one message.

use gdal::spatial_ref::{AxisMappingStrategy, CoordTransform, SpatialRef};
use geo::{Coord, Geometry, MapCoords, Polygon};
use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::geofilter::check_lonlat;

/// WGS84 longitude, latitude.
pub(crate) const WGS84: u32 = 4326;

/// One geometry read from a GeoJSON document, with its feature's properties.
#[derive(Debug, Clone)]
pub(crate) struct Shape {
    /// `None` for a feature whose geometry is null.
    pub geometry: Option<Geometry<f64>>,
    pub properties: Option<Map<String, Value>>,
}

/// What a GeoJSON document holds: its shapes, in the CRS `epsg`.
#[derive(Debug, Clone)]
pub(crate) struct Shapes {
    pub epsg: u32,
    pub shapes: Vec<Shape>,
}

/// The EPSG code a legacy `crs` member names (4326 when absent).
fn crs_epsg(v: &Value, what: &str) -> Result<u32> {
    let Some(crs) = v.get("crs").filter(|c| !c.is_null()) else {
        return Ok(WGS84);
    };
    let name = crs
        .pointer("/properties/name")
        .and_then(Value::as_str)
        .map(str::to_string)
        .or_else(|| crs.pointer("/properties/code").map(|c| format!("EPSG:{c}")))
        .unwrap_or_else(|| crs.to_string());
    let refuse = || {
        Error::bad(format!(
            "{what}: crs {name:?} is not read: give WGS84 longitude, latitude (RFC 7946, no crs member) or name an EPSG code (urn:ogc:def:crs:EPSG::32616)"
        ))
    };
    if name.contains("CRS84") {
        return Ok(WGS84);
    }
    if !name.contains("EPSG") {
        return Err(refuse());
    }
    name.rsplit(':')
        .next()
        .and_then(|c| c.trim().parse::<u32>().ok())
        .filter(|c| *c > 0)
        .ok_or_else(refuse)
}

/// Reads a GeoJSON geometry, Feature or FeatureCollection. `what` names the field or file in
/// errors. Rings must be closed with at least 4 positions; in WGS84 every position must be a
/// longitude, latitude.
pub(crate) fn read(v: &Value, what: &str) -> Result<Shapes> {
    let epsg = crs_epsg(v, what)?;
    if v.get("type").is_none() {
        return Err(Error::bad(format!("{what}: not GeoJSON (no \"type\")")));
    }
    let doc: geojson::GeoJson = serde_json::from_value(v.clone())
        .map_err(|e| Error::bad(format!("{what}: not valid GeoJSON: {e}")))?;
    let convert = |g: geojson::Geometry| -> Result<Geometry<f64>> {
        let kind = g.value.type_name();
        // Checked on the positions as written: the conversion closes rings silently.
        check_rings(&g.value, what)?;
        Geometry::<f64>::try_from(g).map_err(|e| Error::bad(format!("{what} {kind}: {e}")))
    };
    let mut shapes = Vec::new();
    match doc {
        geojson::GeoJson::Geometry(g) => shapes.push(Shape {
            geometry: Some(convert(g)?),
            properties: None,
        }),
        geojson::GeoJson::Feature(f) => shapes.push(Shape {
            geometry: f.geometry.map(convert).transpose()?,
            properties: f.properties,
        }),
        geojson::GeoJson::FeatureCollection(fc) => {
            for f in fc.features {
                shapes.push(Shape {
                    geometry: f.geometry.map(convert).transpose()?,
                    properties: f.properties,
                });
            }
        }
    }
    for s in &shapes {
        if let (Some(g), true) = (&s.geometry, epsg == WGS84) {
            check_positions(g, what)?;
        }
    }
    Ok(Shapes { epsg, shapes })
}

fn check_rings(g: &geojson::GeometryValue, what: &str) -> Result<()> {
    use geojson::GeometryValue as G;
    let polygon = |rings: &Vec<Vec<geojson::Position>>| -> Result<()> {
        for r in rings {
            if r.len() < 4 || r.first() != r.last() {
                return Err(Error::bad(format!(
                    "{what}: a ring needs at least 4 positions and must be closed"
                )));
            }
        }
        Ok(())
    };
    match g {
        G::Polygon { coordinates } => polygon(coordinates),
        G::MultiPolygon { coordinates } => coordinates.iter().try_for_each(polygon),
        G::GeometryCollection { geometries } => {
            geometries.iter().try_for_each(|g| check_rings(&g.value, what))
        }
        _ => Ok(()),
    }
}

fn check_positions(g: &Geometry<f64>, what: &str) -> Result<()> {
    use geo::CoordsIter;
    g.coords_iter().try_for_each(|c| check_lonlat(c.x, c.y, what))
}

impl Shapes {
    /// The same shapes in WGS84 longitude, latitude (reprojected with GDAL when the document
    /// named another CRS).
    pub(crate) fn into_wgs84(self, what: &str) -> Result<Shapes> {
        if self.epsg == WGS84 {
            return Ok(self);
        }
        let err =
            |e: gdal::errors::GdalError| Error::bad(format!("{what}: EPSG:{} to WGS84: {e}", self.epsg));
        let mut from = SpatialRef::from_epsg(self.epsg).map_err(err)?;
        let mut to = SpatialRef::from_epsg(WGS84).map_err(err)?;
        from.set_axis_mapping_strategy(AxisMappingStrategy::TraditionalGisOrder);
        to.set_axis_mapping_strategy(AxisMappingStrategy::TraditionalGisOrder);
        let t = CoordTransform::new(&from, &to).map_err(err)?;
        let mut shapes = Vec::with_capacity(self.shapes.len());
        for s in self.shapes {
            let geometry = match s.geometry {
                None => None,
                Some(g) => {
                    let g = g.try_map_coords(|c: Coord<f64>| -> Result<Coord<f64>> {
                        let (mut x, mut y) = ([c.x], [c.y]);
                        t.transform_coords(&mut x, &mut y, &mut []).map_err(|e| {
                            Error::bad(format!("{what}: a position does not reproject to WGS84: {e}"))
                        })?;
                        Ok(Coord { x: x[0], y: y[0] })
                    })?;
                    check_positions(&g, what)?;
                    Some(g)
                }
            };
            shapes.push(Shape {
                geometry,
                properties: s.properties,
            });
        }
        Ok(Shapes { epsg: WGS84, shapes })
    }
}

/// The polygons of a geometry (a Polygon, a MultiPolygon, or those inside a collection); `None`
/// when it holds something else (points, lines).
pub(crate) fn polygons(g: &Geometry<f64>) -> Option<Vec<Polygon<f64>>> {
    match g {
        Geometry::Polygon(p) => Some(vec![p.clone()]),
        Geometry::MultiPolygon(mp) => Some(mp.0.clone()),
        Geometry::Rect(r) => Some(vec![r.to_polygon()]),
        Geometry::GeometryCollection(gc) => {
            let mut out = Vec::new();
            for g in &gc.0 {
                out.extend(polygons(g)?);
            }
            Some(out)
        }
        _ => None,
    }
}

/// The GeoJSON type name of a geometry, for messages.
pub(crate) fn type_name(g: &Geometry<f64>) -> &'static str {
    match g {
        Geometry::Point(_) => "Point",
        Geometry::MultiPoint(_) => "MultiPoint",
        Geometry::Line(_) | Geometry::LineString(_) => "LineString",
        Geometry::MultiLineString(_) => "MultiLineString",
        Geometry::Polygon(_) | Geometry::Rect(_) | Geometry::Triangle(_) => "Polygon",
        Geometry::MultiPolygon(_) => "MultiPolygon",
        Geometry::GeometryCollection(_) => "GeometryCollection",
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn every_form_reads_into_shapes() {
        let poly = json!({"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 0]]]});
        assert_eq!(read(&poly, "t").unwrap().shapes.len(), 1);
        let fc = json!({"type": "FeatureCollection", "features": [
            {"type": "Feature", "properties": {"class": "roof"}, "geometry": poly},
            {"type": "Feature", "properties": null, "geometry": null}]});
        let s = read(&fc, "t").unwrap();
        assert_eq!(s.shapes.len(), 2);
        assert_eq!(s.shapes[0].properties.as_ref().unwrap()["class"], "roof");
        assert!(s.shapes[1].geometry.is_none());
    }

    #[test]
    fn the_same_errors_everywhere() {
        let open = json!({"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1]]]});
        assert!(read(&open, "masks")
            .unwrap_err()
            .to_string()
            .contains("must be closed"));
        let far = json!({"type": "Point", "coordinates": [0, 900]});
        assert!(read(&far, "geojson")
            .unwrap_err()
            .to_string()
            .contains("not a WGS84"));
        let e = read(&json!({"coordinates": [0, 0]}), "geojson")
            .unwrap_err()
            .to_string();
        assert!(e.contains("no \"type\""), "{e}");
        let e = read(&json!({"type": "Polygon", "coordinates": "x"}), "geojson")
            .unwrap_err()
            .to_string();
        assert!(e.contains("not valid GeoJSON"), "{e}");
        let odd = json!({"type": "Point", "coordinates": [0, 0],
                         "crs": {"type": "name", "properties": {"name": "urn:ogc:def:crs:OGC::Mars2000"}}});
        let e = read(&odd, "geojson").unwrap_err().to_string();
        assert!(
            e.contains("crs") && e.contains("Mars2000") && e.contains("EPSG"),
            "{e}"
        );
    }

    #[test]
    fn a_projected_crs_is_read_and_reprojected() {
        // UTM 16N, around Atlanta.
        let utm = json!({"type": "Point", "coordinates": [741_000.0, 3_725_000.0],
                         "crs": {"type": "name", "properties": {"name": "urn:ogc:def:crs:EPSG::32616"}}});
        let s = read(&utm, "masks").unwrap();
        assert_eq!(
            s.epsg, 32616,
            "kept as given for callers that work in the scene's CRS"
        );
        let w = s.into_wgs84("masks").unwrap();
        let Some(Geometry::Point(p)) = &w.shapes[0].geometry else {
            panic!()
        };
        assert!((p.x() + 84.4).abs() < 0.2 && (p.y() - 33.6).abs() < 0.2, "{p:?}");
        let crs84 = json!({"type": "Point", "coordinates": [1, 2],
                           "crs": {"type": "name", "properties": {"name": "urn:ogc:def:crs:OGC:1.3:CRS84"}}});
        assert_eq!(read(&crs84, "geojson").unwrap().epsg, WGS84);
    }
}
