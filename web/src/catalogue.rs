//! What the page browses before any search: the scenes (outlines for the map and a list to fly
//! to), the patch footprints in the map's view, and pages of patches for the gallery of an index
//! without georeference.

use geo::{ConvexHull, Coord, MultiPoint};
use nadir_indexer::Index;
use nadir_query::Hit;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::error::{Error, Result};

/// Most footprints one view request returns.
pub const MAX_FOOTPRINTS: usize = 5000;
/// Most patches one gallery page holds.
pub const MAX_PAGE: usize = 500;

/// The scenes of an index as a GeoJSON FeatureCollection: one Feature per scene, its geometry the
/// convex hull of its patches' footprints (null without georeference), its properties `id`,
/// `name`, `patches` and `bbox`.
pub fn scenes(index: &Index) -> Value {
    let manifest = index.manifest();
    let mut coords: Vec<Vec<Coord<f64>>> = vec![Vec::new(); manifest.scenes.len()];
    let place: std::collections::HashMap<&str, usize> = manifest
        .scenes
        .iter()
        .enumerate()
        .map(|(i, s)| (s.id.as_str(), i))
        .collect();
    for r in index.records() {
        if let (Some(fp), Some(&i)) = (&r.footprint, place.get(r.scene.as_str())) {
            coords[i].extend(fp.exterior().0.iter().copied());
        }
    }
    let features: Vec<Value> = manifest
        .scenes
        .iter()
        .zip(coords)
        .map(|(s, pts)| {
            let name = s
                .path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let (geometry, bbox) = if pts.is_empty() {
                (Value::Null, Value::Null)
            } else {
                let hull = MultiPoint::from(pts).convex_hull();
                let ring: Vec<Value> = hull.exterior().0.iter().map(|c| json!([c.x, c.y])).collect();
                let (mut w, mut so, mut e, mut n) = (f64::MAX, f64::MAX, f64::MIN, f64::MIN);
                for c in &hull.exterior().0 {
                    (w, so, e, n) = (w.min(c.x), so.min(c.y), e.max(c.x), n.max(c.y));
                }
                (
                    json!({"type": "Polygon", "coordinates": [ring]}),
                    json!([w, so, e, n]),
                )
            };
            json!({
                "type": "Feature",
                "id": s.id,
                "geometry": geometry,
                "properties": {"id": s.id, "name": name, "patches": s.patches, "bbox": bbox},
            })
        })
        .collect();
    json!({"type": "FeatureCollection", "features": features})
}

/// Parameters of `/api/footprints`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ViewParams {
    /// `min_lon,min_lat,max_lon,max_lat`.
    pub bbox: String,
    /// Most features (default and at most [`MAX_FOOTPRINTS`]).
    pub limit: Option<usize>,
}

fn parse_bbox(s: &str) -> Result<[f64; 4]> {
    let bad = || Error::BadRequest(format!("bbox {s:?}: give min_lon,min_lat,max_lon,max_lat"));
    let v: Vec<f64> = s
        .split(',')
        .map(|p| p.trim().parse::<f64>().map_err(|_| bad()))
        .collect::<Result<_>>()?;
    match v[..] {
        [w, so, e, n] if v.iter().all(|x| x.is_finite()) && w <= e && so <= n => Ok([w, so, e, n]),
        _ => Err(bad()),
    }
}

/// The footprints of the patches whose centroid lies in the view, as a GeoJSON FeatureCollection
/// (properties `patch_id`, `scene`) with a `truncated` member when more were there.
pub fn footprints(index: &Index, p: &ViewParams) -> Result<Value> {
    let [w, s, e, n] = parse_bbox(&p.bbox)?;
    let limit = p.limit.unwrap_or(MAX_FOOTPRINTS).clamp(1, MAX_FOOTPRINTS);
    let inside = |&(x, y): &(f64, f64)| w <= x && x <= e && s <= y && y <= n;
    let mut rows = (0..index.len() as u32).filter(|&r| index.record(r).centroid.as_ref().is_some_and(inside));
    let features: Vec<Value> = rows
        .by_ref()
        .take(limit)
        .map(|r| {
            let h = Hit::new(index, r, None);
            json!({"type": "Feature", "id": h.patch_id, "geometry": h.footprint,
                   "properties": {"patch_id": h.patch_id, "scene": h.scene}})
        })
        .collect();
    let truncated = rows.next().is_some();
    Ok(json!({"type": "FeatureCollection", "features": features, "truncated": truncated}))
}

/// Parameters of `/api/patches`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    /// The first row (default 0).
    pub offset: Option<usize>,
    /// Default 60, at most [`MAX_PAGE`].
    pub limit: Option<usize>,
}

/// A page of patches in row order: `{"total": n, "offset": o, "patches": [Hit...]}`.
pub fn page(index: &Index, p: &PageParams) -> Value {
    let offset = p.offset.unwrap_or(0).min(index.len());
    let limit = p.limit.unwrap_or(60).clamp(1, MAX_PAGE);
    let end = (offset + limit).min(index.len());
    let patches: Vec<Hit> = (offset..end).map(|r| Hit::new(index, r as u32, None)).collect();
    json!({"total": index.len(), "offset": offset, "patches": patches})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bboxes_parse() {
        assert_eq!(parse_bbox("1,2,3,4").unwrap(), [1.0, 2.0, 3.0, 4.0]);
        for bad in ["1,2,3", "3,2,1,4", "a,b,c,d", "1,2,3,NaN"] {
            assert!(parse_bbox(bad).is_err(), "{bad}");
        }
    }
}
