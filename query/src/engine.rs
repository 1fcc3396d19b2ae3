//! The query engine: an opened index, its H3 lookup and the index's own encoder, loaded once and
//! shared by every query. An encoder whose model id differs from the one recorded in the index is
//! refused: its vectors live in another space.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use nadir_clip::registry::{load_encoder, ModelSpec};
use nadir_clip::Encoder;
use nadir_indexer::{Index, PatchId};
use serde::Serialize;
use utoipa::ToSchema;

use crate::cells::CellLookup;
use crate::error::{Error, Result};
use crate::geofilter::GeoFilter;
use crate::hit::{Hit, SearchResponse};
use crate::labels::LabelStore;
use crate::plan::{self, Plan};
use crate::request::SearchRequest;
use crate::search;

/// An index ready to answer queries.
pub struct Engine {
    index: Index,
    cells: CellLookup,
    /// Shared with the engines that replace this one when the index changes ([`Engine::reopen`]).
    encoder: Option<Arc<dyn Encoder>>,
    /// The index's label store, opened on first use.
    labels: Mutex<Option<Arc<LabelStore>>>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("index", &self.index.dir())
            .field("encoder", &self.encoder.is_some())
            .finish()
    }
}

/// What `/api/info` reports.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct IndexInfo {
    pub model: String,
    pub model_sha256: String,
    pub dim: usize,
    /// Whether text queries work.
    pub text: bool,
    pub patches: usize,
    pub scenes: usize,
    /// Whether any patch has a footprint (else the UI shows a gallery).
    pub georeferenced: bool,
    /// `[min_lon, min_lat, max_lon, max_lat]` of all footprints.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bbox: Option<[f64; 4]>,
}

impl Engine {
    /// Opens the index in `dir` and loads its model: `model` when given (it must be the index's
    /// model), else the one the manifest names. An index of imported embeddings has no encoder.
    pub fn open(dir: &Path, model: Option<ModelSpec>) -> Result<Self> {
        let index = Index::open(dir)?;
        let info = index.model().clone();
        let encoder = if !info.text && model.is_none() {
            None
        } else {
            let mut spec = model.unwrap_or_else(|| ModelSpec {
                model: Some(info.source.clone().unwrap_or(info.name.clone())),
                ..Default::default()
            });
            // nadir-lite: load the bundled adapters version that built this index.
            spec.sha256.get_or_insert_with(|| info.sha256.clone());
            Some(load_encoder(&spec)?)
        };
        Self::new(index, encoder)
    }

    /// Wraps an opened index and an encoder, checking that the encoder is the index's model.
    pub fn new(index: Index, encoder: Option<Box<dyn Encoder>>) -> Result<Self> {
        if let Some(enc) = &encoder {
            index.model().id().ensure_same(&enc.model_id()?)?;
        }
        let cells = CellLookup::new(index.records());
        Ok(Engine {
            index,
            cells,
            encoder: encoder.map(Arc::from),
            labels: Mutex::new(None),
        })
    }

    /// The engine over the index as committed now, when a writer committed since this one opened
    /// (another generation, or derived structures rebuilt); `None` when nothing changed. The
    /// encoder and the label store are shared, not loaded again. The new index opens fully
    /// before it is returned, so callers swap from one whole engine to the next.
    pub fn reopen(&self) -> Result<Option<Engine>> {
        let dir = self.index.dir();
        let on_disk = nadir_indexer::Manifest::load(dir)?;
        if &on_disk == self.index.manifest() {
            return Ok(None);
        }
        let index = Index::open(dir)?;
        if index.manifest() == self.index.manifest() {
            return Ok(None);
        }
        if let Some(enc) = &self.encoder {
            index.model().id().ensure_same(&enc.model_id()?)?;
        }
        let cells = CellLookup::new(index.records());
        let labels = self.labels.lock().unwrap_or_else(|p| p.into_inner()).clone();
        Ok(Some(Engine {
            index,
            cells,
            encoder: self.encoder.clone(),
            labels: Mutex::new(labels),
        }))
    }

    pub fn index(&self) -> &Index {
        &self.index
    }

    /// Plans a request (exposed for tests and benchmarks).
    pub fn plan(&self, req: &SearchRequest) -> Result<Plan> {
        plan::plan(&self.index, &self.cells, self.encoder.as_deref(), req)
    }

    /// [`Engine::plan`], listing an area's rows only up to `list_limit` ([`plan::plan_with`]).
    pub fn plan_with(&self, req: &SearchRequest, list_limit: usize) -> Result<Plan> {
        plan::plan_with(&self.index, &self.cells, self.encoder.as_deref(), req, list_limit)
    }

    /// Runs a search.
    pub fn search(&self, req: &SearchRequest) -> Result<SearchResponse> {
        let start = Instant::now();
        let plan = self.plan(req)?;
        let (found, strategy) = search::execute(&self.index, &plan);
        Ok(SearchResponse {
            hits: found
                .into_iter()
                .map(|(r, s)| Hit::new(&self.index, r, Some(s)))
                .collect(),
            candidates: plan.candidates.count(self.index.len()),
            total: self.index.len(),
            strategy,
            took_ms: start.elapsed().as_secs_f64() * 1e3,
        })
    }

    fn row(&self, id: &str) -> Result<u32> {
        let pid: PatchId = id.parse().map_err(Error::BadRequest)?;
        self.index
            .row_of(pid)
            .ok_or_else(|| Error::UnknownPatch(id.to_string()))
    }

    /// The rows whose centroid lies inside a geofilter's area, sorted; every row without one.
    pub fn rows_in(&self, geofilter: Option<&GeoFilter>) -> Result<Vec<u32>> {
        let Some(g) = geofilter else {
            return Ok((0..self.index.len() as u32).collect());
        };
        Ok(plan::rows_in_area(&self.index, &self.cells, &g.area()?))
    }

    /// The row of a patch id (400 for a malformed id, 404 for an unknown one).
    pub fn row_of(&self, id: &str) -> Result<u32> {
        self.row(id)
    }

    /// The label store of this index (`labels.sqlite` in its folder), opened on first use.
    pub fn labels(&self) -> Result<Arc<LabelStore>> {
        let mut slot = self.labels.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(store) = slot.as_ref() {
            return Ok(store.clone());
        }
        let store = Arc::new(LabelStore::open(self.index.dir())?);
        *slot = Some(store.clone());
        Ok(store)
    }

    /// The metadata of one patch.
    pub fn patch(&self, id: &str) -> Result<Hit> {
        Ok(Hit::new(&self.index, self.row(id)?, None))
    }

    /// The patch containing (lon, lat).
    pub fn patch_at(&self, lon: f64, lat: f64) -> Result<Hit> {
        crate::geofilter::check_lonlat(lon, lat, "lon, lat")?;
        let row = plan::row_at(&self.index, &self.cells, lon, lat)
            .ok_or_else(|| Error::NothingAt(format!("no indexed patch contains ({lon}, {lat})")))?;
        Ok(Hit::new(&self.index, row, None))
    }

    /// The JPEG thumbnail of one patch.
    pub fn thumbnail(&self, id: &str) -> Result<Vec<u8>> {
        Ok(self.index.thumbnail(self.row(id)?)?)
    }

    /// A summary of the index.
    pub fn info(&self) -> IndexInfo {
        let m = self.index.model();
        let mut bbox: Option<[f64; 4]> = None;
        for r in self.index.records() {
            if let Some((x, y)) = r.centroid {
                let b = bbox.get_or_insert([x, y, x, y]);
                *b = [b[0].min(x), b[1].min(y), b[2].max(x), b[3].max(y)];
            }
        }
        IndexInfo {
            model: m.name.clone(),
            model_sha256: m.sha256.clone(),
            dim: m.dim,
            text: m.text && self.encoder.is_some(),
            patches: self.index.len(),
            scenes: self.index.manifest().scenes.len(),
            georeferenced: bbox.is_some(),
            bbox,
        }
    }
}
