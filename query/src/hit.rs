//! Results as the API returns them: one [`Hit`] per patch (id, score, footprint as GeoJSON,
//! centroid, scene, thumbnail URL, labels), the search response, and the GeoJSON
//! FeatureCollection form.

use nadir_indexer::{Index, PatchRecord};
use serde::Serialize;
use serde_json::{json, Value};
use utoipa::ToSchema;

use crate::search::Strategy;

/// One patch in a result list.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Hit {
    /// Stable patch id (16 hex digits).
    pub patch_id: String,
    /// Cosine similarity to the query (absent for plain lookups).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub score: Option<f32>,
    /// Scene id.
    pub scene: String,
    /// Scene file name.
    pub scene_name: String,
    /// Source pixel window `[x, y, width, height]`.
    pub window: [u32; 4],
    /// `[lon, lat]` of the footprint's centroid (absent without georeference).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub centroid: Option<[f64; 2]>,
    /// The footprint as a GeoJSON Polygon (WGS84).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub footprint: Option<Value>,
    /// The patch's finest H3 cell.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub h3: Option<String>,
    /// Acquisition time, RFC 3339 (UTC).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub acquired: Option<String>,
    /// The same, unix milliseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub acquired_ms: Option<i64>,
    /// Ground size of a patch pixel in metres.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gsd_m: Option<f64>,
    /// Zero-shot land-cover labels, best first.
    pub labels: Vec<String>,
    pub tags: Vec<String>,
    /// Where to get the JPEG thumbnail.
    pub thumbnail_url: String,
}

/// A search's answer.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SearchResponse {
    pub hits: Vec<Hit>,
    /// Rows the filters allowed: exact when listed, estimated from a sample for an area too large
    /// to list (which the graph walk then tests row by row).
    pub candidates: usize,
    /// Rows in the index.
    pub total: usize,
    pub strategy: Strategy,
    /// Milliseconds spent, encoding included.
    pub took_ms: f64,
}

fn polygon_json(p: &geo::Polygon<f64>) -> Value {
    let ring = |r: &geo::LineString<f64>| r.0.iter().map(|c| json!([c.x, c.y])).collect::<Vec<_>>();
    let mut rings = vec![ring(p.exterior())];
    rings.extend(p.interiors().iter().map(ring));
    json!({"type": "Polygon", "coordinates": rings})
}

impl Hit {
    /// The hit for a row.
    pub fn new(index: &Index, row: u32, score: Option<f32>) -> Self {
        let r: &PatchRecord = index.record(row);
        let scene_name = index
            .scene_of(row)
            .and_then(|s| s.path.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_default();
        Hit {
            patch_id: r.id.to_string(),
            score,
            scene: r.scene.clone(),
            scene_name,
            window: [r.window.x, r.window.y, r.window.width, r.window.height],
            centroid: r.centroid.map(|(x, y)| [x, y]),
            footprint: r.footprint.as_ref().map(polygon_json),
            h3: r
                .h3
                .last()
                .and_then(|c| h3o::CellIndex::try_from(*c).ok())
                .map(|c| c.to_string()),
            acquired: r.acquired_ms.map(nadir_indexer::time::rfc3339),
            acquired_ms: r.acquired_ms,
            gsd_m: r.gsd_m,
            labels: r.labels.clone(),
            tags: r.tags.clone(),
            thumbnail_url: format!("/api/patches/{}/thumbnail.jpg", r.id),
        }
    }

    /// This hit as a GeoJSON Feature (null geometry without georeference).
    pub fn feature(&self) -> Value {
        let mut props = serde_json::to_value(self).expect("a hit serialises");
        if let Some(obj) = props.as_object_mut() {
            obj.remove("footprint");
        }
        json!({"type": "Feature", "id": self.patch_id, "geometry": self.footprint, "properties": props})
    }
}

impl SearchResponse {
    /// The hits as a GeoJSON FeatureCollection, best first.
    pub fn feature_collection(&self) -> Value {
        json!({"type": "FeatureCollection", "features": self.hits.iter().map(Hit::feature).collect::<Vec<_>>()})
    }
}
