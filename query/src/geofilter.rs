//! Geofilters: the area a search is restricted to (bbox, GeoJSON polygon or multipolygon with
//! holes, H3 cells, point plus radius), validated into an [`Area`] that plans its H3 covering and
//! answers exact containment, prepared once per query as a [`Containment`] (an axis-aligned
//! rectangle is four comparisons, any other polygon is first tested against its bounding
//! rectangle). A patch is inside when its centroid is: the invariant every result keeps.

use std::collections::HashSet;

use geo::{
    BoundingRect, Contains, Coord, CoordsIter, Densify, Destination, Distance, Euclidean, Haversine,
    LineString, MultiPolygon, Point, Polygon, Rect, Validation,
};
use h3o::geom::{ContainmentMode, TilerBuilder};
use h3o::{CellIndex, LatLng, Resolution};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::error::{Error, Result};

/// Coverings estimated larger than this use a coarser resolution. Tiling and growing the
/// covering cost microseconds per cell, exact containment over the lookup's centroids nanoseconds
/// per row: a few hundred coarse cells plan fastest (a 10% bbox of a dense 1M-row index: res 5).
pub const MAX_COVERING: usize = 500;
/// Most positions of a GeoJSON area, over all its rings: validity checking is quadratic in them
/// (measured with the release CLI on 2 vCPU: 10,000 cost 0.4 s more than 4, 20,000 cost 1.4 s);
/// a finer outline is to be simplified first.
pub const MAX_AREA_VERTICES: usize = 10_000;
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
#[derive(Debug, Clone, PartialEq)]
pub enum Area {
    Polygons(MultiPolygon<f64>),
    Cells(HashSet<CellIndex>),
    Circle { center: Point<f64>, radius_m: f64 },
}

/// Longest polygon edge, in degrees, that the H3 covering takes as it is; longer ones are
/// densified first.
pub const MAX_EDGE_DEGREES: f64 = 1.0;

/// 400 unless (lon, lat) is a finite WGS84 position (`what` names the field).
pub(crate) fn check_lonlat(lon: f64, lat: f64, what: &str) -> Result<()> {
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

/// The polygons of a GeoJSON area (Polygon or MultiPolygon, or Features of them), in WGS84.
fn geojson_polygons(value: &Value) -> Result<Vec<Polygon<f64>>> {
    let shapes = crate::shapes::read(value, "geojson")?.into_wgs84("geojson")?;
    let mut out = Vec::new();
    for s in &shapes.shapes {
        let g = s
            .geometry
            .as_ref()
            .ok_or_else(|| Error::bad("geojson Feature has no geometry"))?;
        out.extend(crate::shapes::polygons(g).ok_or_else(|| {
            Error::bad(format!(
                "geojson {}: only Polygon and MultiPolygon areas are supported",
                crate::shapes::type_name(g)
            ))
        })?);
    }
    Ok(out)
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
            let polys = geojson_polygons(g)?;
            if polys.is_empty() {
                return Err(Error::bad("geojson: no polygon"));
            }
            let mp = MultiPolygon(polys);
            let vertices = mp.coords_count();
            if vertices > MAX_AREA_VERTICES {
                return Err(Error::bad(format!(
                    "geojson: {vertices} positions; an area has at most {MAX_AREA_VERTICES}: simplify it first (for example `ogr2ogr -simplify`)"
                )));
            }
            if let Err(e) = mp.check_validation() {
                return Err(Error::bad(format!("geojson: invalid polygon: {e}")));
            }
            // A valid ring whose points lie on one line holds nothing: never a silent empty
            // answer. Collinear points leave a rounding residue, hence the tolerance relative to
            // the bounding box (a real polygon covers far more than a billionth of it).
            for p in &mp.0 {
                let bbox = BoundingRect::bounding_rect(p).map_or(0.0, |r| r.width() * r.height());
                if geo::Area::unsigned_area(p) <= 1e-9 * bbox {
                    return Err(Error::bad("geojson: a polygon encloses no area"));
                }
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

/// One polygon of an area, prepared for containment tests.
#[derive(Debug)]
enum Part<'a> {
    /// A polygon that is exactly an axis-aligned rectangle, without holes.
    Rect(Rect<f64>),
    /// Any other polygon, with its bounding rectangle.
    Polygon(Rect<f64>, &'a Polygon<f64>),
}

/// The rectangle `p` is, when it is exactly an axis-aligned rectangle without holes: four
/// distinct corners of its bounding rectangle joined by axis-parallel edges.
fn as_rect(p: &Polygon<f64>) -> Option<Rect<f64>> {
    let ring = &p.exterior().0;
    if !p.interiors().is_empty() || ring.len() != 5 || ring[0] != ring[4] {
        return None;
    }
    let r = p.bounding_rect()?;
    let (lo, hi) = (r.min(), r.max());
    let mut corners = 0u8;
    for c in &ring[..4] {
        if !((c.x == lo.x || c.x == hi.x) && (c.y == lo.y || c.y == hi.y)) {
            return None;
        }
        corners |= 1 << (2 * u8::from(c.x == hi.x) + u8::from(c.y == hi.y));
    }
    let axis_parallel = ring.windows(2).all(|e| (e[0].x == e[1].x) != (e[0].y == e[1].y));
    (corners == 0b1111 && axis_parallel).then_some(r)
}

/// Whether (x, y) lies in the closed rectangle `r`.
fn in_closed(r: &Rect<f64>, x: f64, y: f64) -> bool {
    r.min().x <= x && x <= r.max().x && r.min().y <= y && y <= r.max().y
}

/// An [`Area`] prepared for many containment tests ([`Area::containment`]). A point on a
/// polygon's boundary is outside, as with `geo::Contains`.
#[derive(Debug)]
pub struct Containment<'a>(Prepared<'a>);

#[derive(Debug)]
enum Prepared<'a> {
    Polygons(Vec<Part<'a>>),
    Cells(&'a HashSet<CellIndex>, Vec<Resolution>),
    Circle(Point<f64>, f64),
}

impl Containment<'_> {
    /// Whether (lon, lat) lies inside.
    #[inline]
    pub fn contains(&self, lon: f64, lat: f64) -> bool {
        match &self.0 {
            // As `geo::Contains`: a point on the boundary is outside, so a rectangle is open.
            Prepared::Polygons(parts) => parts.iter().any(|part| match part {
                Part::Rect(r) => r.min().x < lon && lon < r.max().x && r.min().y < lat && lat < r.max().y,
                Part::Polygon(bounds, p) => in_closed(bounds, lon, lat) && p.contains(&Point::new(lon, lat)),
            }),
            Prepared::Cells(set, resolutions) => LatLng::new(lat, lon)
                .is_ok_and(|ll| resolutions.iter().any(|&r| set.contains(&ll.to_cell(r)))),
            Prepared::Circle(center, radius_m) => {
                Haversine.distance(*center, Point::new(lon, lat)) <= *radius_m
            }
        }
    }
}

impl Area {
    /// Prepares the area for many containment tests.
    pub fn containment(&self) -> Containment<'_> {
        Containment(match self {
            Area::Polygons(mp) => Prepared::Polygons(
                mp.iter()
                    .filter_map(|p| match as_rect(p) {
                        Some(r) => Some(Part::Rect(r)),
                        // An empty polygon contains nothing.
                        None => Some(Part::Polygon(p.bounding_rect()?, p)),
                    })
                    .collect(),
            ),
            Area::Cells(set) => {
                let mut resolutions: Vec<Resolution> = set.iter().map(|c| c.resolution()).collect();
                resolutions.sort_unstable();
                resolutions.dedup();
                Prepared::Cells(set, resolutions)
            }
            Area::Circle { center, radius_m } => Prepared::Circle(*center, *radius_m),
        })
    }

    /// Whether (lon, lat) lies inside; [`Area::containment`] for many points.
    pub fn contains(&self, lon: f64, lat: f64) -> bool {
        self.containment().contains(lon, lat)
    }

    /// Whether every point of the closed rectangle `r` lies inside (false when unsure: only
    /// rectangles are checked). A filter whose area holds the whole index is no filter.
    pub fn holds_rect(&self, r: &Rect<f64>) -> bool {
        let Area::Polygons(mp) = self else {
            return false;
        };
        // Boundaries are outside, so the area's rectangle must be strictly larger.
        mp.iter().filter_map(as_rect).any(|a| {
            a.min().x < r.min().x && r.max().x < a.max().x && a.min().y < r.min().y && r.max().y < a.max().y
        })
    }

    /// Cells covering the area, at `finest` or coarser so that there are at most about
    /// `max_cells` of them ([`MAX_COVERING`] for listing its rows); an H3 filter's own cells, as
    /// many as it names; `None` when the area cannot be tiled (then every row is a candidate).
    pub fn covering(&self, finest: Resolution, max_cells: usize) -> Option<Vec<CellIndex>> {
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
        // Planar longitude and latitude, as GeoJSON (RFC 7946) and the exact containment test
        // read them. An area wider than 180 degrees is not tiled: h3o would take its long edges
        // to cross the antimeridian (a box from -90 to 120 degrees covered nothing), and its
        // size estimate fails there (tens of thousands of cells, minutes); every row is then a
        // candidate for the exact test. Long edges are densified so that the covering follows
        // them rather than great circles.
        if shape.bounding_rect().is_some_and(|r| r.width() > 180.0) {
            return None;
        }
        let shape = Euclidean.densify(&shape, MAX_EDGE_DEGREES);
        // h3o's size hint counts at least one cell per vertex, plus a margin per polygon: those
        // come on top of the cap.
        let allowance = max_cells + shape.coords_count() + 16 * shape.0.len();
        let mut res = finest;
        loop {
            let mut tiler = TilerBuilder::new(res)
                .containment_mode(ContainmentMode::Covers)
                .build();
            for p in &shape.0 {
                tiler.add(p.clone()).ok()?;
            }
            if tiler.coverage_size_hint() <= allowance || res == Resolution::Zero {
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
        let ring: Vec<[f64; 2]> = (0..=MAX_AREA_VERTICES)
            .map(|i| {
                let a = (i % MAX_AREA_VERTICES) as f64 / MAX_AREA_VERTICES as f64 * std::f64::consts::TAU;
                [a.cos(), a.sin()]
            })
            .collect();
        // A valid ring: only the cap, checked before validation, refuses it.
        let e = area(json!({"geojson": {"type": "Polygon", "coordinates": [ring]}}))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("10001 positions") && e.contains("at most 10000"),
            "{e}"
        );
        let line = json!({"geojson": {"type": "Polygon", "coordinates": [[[0,0],[0.5,0.5],[1,1],[0,0]]]}});
        let e = area(line).unwrap_err().to_string();
        assert!(e.contains("encloses no area"), "{e}");
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
    fn only_a_strictly_larger_rectangle_holds_the_extent() {
        let extent = Rect::new(Coord { x: 1.0, y: 1.0 }, Coord { x: 2.0, y: 2.0 });
        let bbox = |b: [f64; 4]| area(json!({ "bbox": b })).unwrap();
        assert!(bbox([0.5, 0.5, 2.5, 2.5]).holds_rect(&extent));
        // The boundary is outside: a rectangle touching the extent does not hold it.
        assert!(!bbox([1.0, 0.5, 2.5, 2.5]).holds_rect(&extent));
        assert!(!bbox([0.5, 0.5, 1.5, 2.5]).holds_rect(&extent));
        // Shapes other than rectangles answer "unsure".
        let circle = area(json!({"point": [1.5, 1.5], "radius_m": 1_000_000.0})).unwrap();
        assert!(!circle.holds_rect(&extent));
    }

    #[test]
    fn circle_and_cells() {
        let c = area(json!({"point": [120.98, 14.59], "radius_m": 1000.0})).unwrap();
        assert!(c.contains(120.98, 14.595));
        assert!(!c.contains(121.0, 14.59));
        let cover = c.covering(Resolution::Nine, MAX_COVERING).unwrap();
        let inside = LatLng::new(14.595, 120.98).unwrap().to_cell(Resolution::Nine);
        assert!(cover
            .iter()
            .any(|cell| inside.parent(cell.resolution()) == Some(*cell)));
        let cell = LatLng::new(14.59, 120.98).unwrap().to_cell(Resolution::Seven);
        let h = area(json!({"h3": [cell.to_string()]})).unwrap();
        assert!(h.contains(120.98, 14.59));
        assert!(!h.contains(0.0, 0.0));
    }

    /// Points on, just inside and just outside every edge and corner of `ring`'s bounding
    /// rectangle, on its vertices, and around.
    fn probes(ring: &[[f64; 2]]) -> Vec<(f64, f64)> {
        let near = |v: f64| [v.next_down(), v, v.next_up(), v - 1e-9, v + 1e-9];
        let xs: Vec<f64> = ring.iter().flat_map(|p| near(p[0])).collect();
        let ys: Vec<f64> = ring.iter().flat_map(|p| near(p[1])).collect();
        let mid = |v: &[f64]| {
            (v.iter().copied().fold(f64::MAX, f64::min) + v.iter().copied().fold(f64::MIN, f64::max)) / 2.0
        };
        let (mx, my) = (mid(&xs), mid(&ys));
        let mut out = Vec::new();
        for &x in xs.iter().chain([mx, mx - 50.0, f64::NAN].iter()) {
            for &y in ys.iter().chain([my, my + 50.0, f64::NAN].iter()) {
                out.push((x, y));
            }
        }
        out
    }

    fn polygons(a: &Area) -> &MultiPolygon<f64> {
        let Area::Polygons(mp) = a else {
            panic!("not polygons")
        };
        mp
    }

    #[test]
    fn fast_containment_matches_geo_on_the_boundary() {
        let rect = |w: f64, s: f64, e: f64, n: f64| vec![[w, s], [e, s], [e, n], [w, n], [w, s]];
        let (w, s, e, n) = (0.1 + 0.2, 14.5, 121.0, 14.6 + 1e-12);
        let mut cases = vec![(
            area(json!({"bbox": [w, s, e, n]})).unwrap(),
            rect(w, s, e, n),
            true,
        )];
        // The same rectangle as GeoJSON, clockwise from another corner: still four comparisons.
        let cw = vec![[e, n], [e, s], [w, s], [w, n], [e, n]];
        cases.push((
            area(json!({"geojson": {"type": "Polygon", "coordinates": [cw]}})).unwrap(),
            cw,
            true,
        ));
        // Not rectangles: a triangle, and a rectangle with a hole (bounds precheck, then geo).
        let tri = vec![[2.0, 2.0], [3.0, 2.0], [2.0, 3.0], [2.0, 2.0]];
        cases.push((
            area(json!({"geojson": {"type": "Polygon", "coordinates": [tri]}})).unwrap(),
            tri,
            false,
        ));
        let (outer, hole) = (rect(0.0, 0.0, 10.0, 10.0), rect(4.0, 4.0, 6.0, 6.0));
        let holed = json!({"geojson": {"type": "Polygon", "coordinates": [outer, hole]}});
        let all: Vec<[f64; 2]> = outer.iter().chain(&hole).copied().collect();
        cases.push((area(holed).unwrap(), all, false));
        for (a, ring, is_rect) in cases {
            let mp = polygons(&a);
            assert_eq!(as_rect(&mp.0[0]).is_some(), is_rect, "{ring:?}");
            let prepared = a.containment();
            let mut inside = 0;
            for (x, y) in probes(&ring) {
                let expected = mp.contains(&Point::new(x, y));
                assert_eq!(prepared.contains(x, y), expected, "({x}, {y}) in {ring:?}");
                inside += usize::from(expected);
            }
            assert!(inside > 0, "{ring:?}");
        }
        // geo's orientation predicate underflows a subnormal distance from an edge at 0 (it counts
        // (-5e-324, 0.5) inside the triangle); bounds and rectangles compare exactly.
        let tri0 = vec![[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 0.0]];
        for shape in [rect(0.0, 0.0, 1.0, 1.0), tri0] {
            let a = area(json!({"geojson": {"type": "Polygon", "coordinates": [shape]}})).unwrap();
            assert!(!a.contains(-5e-324, 0.5) && !a.contains(0.5, -5e-324));
        }
        let unit = area(json!({"bbox": [0.0, 0.0, 1.0, 1.0]})).unwrap();
        assert!(unit.contains(5e-324, 0.5) && unit.contains(0.5, 5e-324));
        // Spikes and degenerate rings are not rectangles.
        let spike = Polygon::new(
            LineString::from(vec![(0., 0.), (1., 0.), (1., 1.), (1., 0.), (0., 0.)]),
            vec![],
        );
        assert!(as_rect(&spike).is_none());
        let flat = Polygon::new(
            LineString::from(vec![(0., 0.), (1., 0.), (0., 0.), (1., 0.), (0., 0.)]),
            vec![],
        );
        assert!(as_rect(&flat).is_none());
    }
}
