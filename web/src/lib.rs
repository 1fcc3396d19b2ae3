//! Nadir's browser UI, served by `nadir serve`: the query API router of `nadir-query` plus
//!
//! - `GET /`: the page (map search, click-to-find-similar, drawn geofilters, labelling; a gallery
//!   for an index without georeference), `GET /assets/{*path}`: its bundled script and styles,
//!   built into the binary ([`assets`]);
//! - `GET /api/tiles/{z}/{x}/{y}.png`: web-mercator tiles rendered from the source rasters
//!   ([`tiles`]);
//! - `GET /api/scenes`, `GET /api/footprints?bbox=`, `GET /api/patches?offset=&limit=`: scene
//!   outlines, patch footprints in a view, pages of patches ([`catalogue`]).
//!
//! - `/api/segment/sessions...`: interactive segmentation of a scene ([`sessions`]), in the
//!   OpenAPI document.
//!
//! The page, tile and catalogue routes are not in the OpenAPI document (`/openapi.json`
//! describes the query API and the sessions).

pub mod assets;
pub mod cache;
pub mod catalogue;
pub mod error;
pub mod mask;
pub mod mercator;
pub mod sessions;
pub mod tiles;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use nadir_query::service::{self, ServiceConfig};
use nadir_query::Engine;
use nadir_query::LiveEngine;
use serde_json::Value;

pub use error::{Error, Result};
pub use mercator::TileId;
pub use tiles::{SceneSource, TileRenderer};

/// What the page's routes answer from: the live engine and, built from the engine they belong
/// to, the tile renderer and the scene outlines (rebuilt when the engine is swapped).
#[derive(Debug, Clone)]
struct WebState {
    live: Arc<LiveEngine>,
    parts: Arc<std::sync::Mutex<Option<Parts>>>,
}

#[derive(Debug, Clone)]
struct Parts {
    engine: Arc<Engine>,
    tiles: Arc<TileRenderer>,
    scenes: Arc<Value>,
}

impl WebState {
    fn parts(&self) -> Parts {
        let engine = self.live.get();
        let mut slot = self.parts.lock().unwrap_or_else(|p| p.into_inner());
        match slot.as_ref() {
            Some(p) if Arc::ptr_eq(&p.engine, &engine) => p.clone(),
            _ => {
                let p = Parts {
                    tiles: Arc::new(TileRenderer::from_index(engine.index())),
                    scenes: Arc::new(catalogue::scenes(engine.index())),
                    engine,
                };
                *slot = Some(p.clone());
                p
            }
        }
    }
}

/// The OpenAPI document of the whole service (served at `/openapi.json`): the query API's, the
/// segmentation sessions' and the page's own routes (tiles, scenes, footprints, patches).
pub fn openapi() -> utoipa::openapi::OpenApi {
    let mut doc = service::openapi();
    doc.merge(<sessions::SessionsDoc as utoipa::OpenApi>::openapi());
    doc.merge(<PageDoc as utoipa::OpenApi>::openapi());
    doc
}

/// The whole service: the query API (`nadir_query::service::router`) with the page, its assets,
/// the tiles and the catalogue routes.
pub fn router(engine: Arc<Engine>, config: ServiceConfig) -> Router {
    router_live(LiveEngine::new(engine), config)
}

/// [`router`] over a live engine: every route answers from the engine `live` holds when the
/// request arrives (a running server picks up what writers commit, see [`serve`]).
pub fn router_live(live: Arc<LiveEngine>, config: ServiceConfig) -> Router {
    let state = WebState {
        live: live.clone(),
        parts: Arc::new(std::sync::Mutex::new(None)),
    };
    let web = Router::new()
        .route("/", get(assets::index))
        .route("/api/docs", get(assets::api_docs))
        .route("/assets/{*path}", get(assets::asset))
        .route("/api/tiles/{z}/{x}/{y}", get(tile))
        .route("/api/scenes", get(scenes))
        .route("/api/footprints", get(footprints))
        .route("/api/patches", get(patches))
        .with_state(state);
    service::router_with_doc(live.clone(), config, openapi())
        .merge(web)
        .merge(sessions::routes(live))
}

/// Serves the UI and the API for `engine` on `addr` until Ctrl-C or SIGTERM, picking up new
/// generations of the index as writers commit them (checked every
/// [`nadir_query::live::CHECK_EVERY`]).
pub async fn serve(engine: Arc<Engine>, addr: SocketAddr, config: ServiceConfig) -> std::io::Result<()> {
    let hosts = config.allowed_hosts.clone();
    let limits = config.limits;
    let origins = config.allowed_origins.clone();
    let live = LiveEngine::new(engine);
    let watcher = tokio::spawn(live.clone().watch(nadir_query::live::CHECK_EVERY));
    let result = service::serve(router_live(live, config), addr, &hosts, &origins, limits).await;
    watcher.abort();
    result
}

async fn blocking<T: Send + 'static>(work: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| Error::Task(e.to_string()))?
}

/// The page's own routes in the OpenAPI document.
#[derive(utoipa::OpenApi)]
#[openapi(paths(tile, scenes, footprints, patches))]
struct PageDoc;

/// `GET /api/tiles/{z}/{x}/{y}.png`.
#[utoipa::path(get, path = "/api/tiles/{z}/{x}/{y}.png", tag = "page",
    params(("z" = u8, Path, description = "zoom"), ("x" = u32, Path, description = "column"),
           ("y" = u32, Path, description = "row")),
    responses((status = 200, description = "A 256 px web-mercator PNG of the indexed scenes (transparent where none)", content_type = "image/png"),
              (status = 400, description = "Not a tile address", body = Object)))]
async fn tile(
    State(s): State<WebState>,
    Path((z, x, y)): Path<(String, String, String)>,
) -> Result<Response> {
    let bad = || Error::BadTile(format!("{z}/{x}/{y}: use /api/tiles/{{z}}/{{x}}/{{y}}.png"));
    let y_num = y.strip_suffix(".png").ok_or_else(bad)?;
    let id = TileId::new(
        z.parse().map_err(|_| bad())?,
        x.parse().map_err(|_| bad())?,
        y_num.parse().map_err(|_| bad())?,
    )?;
    let tiles = s.parts().tiles;
    let png = blocking(move || tiles.png(id)).await?;
    let headers = [
        (header::CONTENT_TYPE, "image/png"),
        (header::CACHE_CONTROL, "public, max-age=3600"),
    ];
    Ok((headers, png).into_response())
}

/// `GET /api/scenes`.
#[utoipa::path(get, path = "/api/scenes", tag = "page",
    responses((status = 200, description = "The scenes' outlines as a GeoJSON FeatureCollection (WGS84)", body = Object)))]
async fn scenes(State(s): State<WebState>) -> Json<Value> {
    Json(s.parts().scenes.as_ref().clone())
}

/// `GET /api/footprints?bbox=&limit=`.
#[utoipa::path(get, path = "/api/footprints", tag = "page", params(catalogue::ViewParams),
    responses((status = 200, description = "The footprints of the patches in the view, as GeoJSON", body = Object),
              (status = 400, description = "A malformed bbox or limit", body = Object)))]
async fn footprints(
    State(s): State<WebState>,
    p: std::result::Result<Query<catalogue::ViewParams>, QueryRejection>,
) -> Result<Json<Value>> {
    let Query(p) = p.map_err(|e| Error::BadRequest(e.body_text()))?;
    let engine = s.live.get();
    Ok(Json(
        blocking(move || catalogue::footprints(engine.index(), &p)).await?,
    ))
}

/// `GET /api/patches?offset=&limit=`.
#[utoipa::path(get, path = "/api/patches", tag = "page", params(catalogue::PageParams),
    responses((status = 200, description = "A page of patches in row order: {total, offset, patches}", body = Object),
              (status = 400, description = "A malformed offset or limit", body = Object)))]
async fn patches(
    State(s): State<WebState>,
    p: std::result::Result<Query<catalogue::PageParams>, QueryRejection>,
) -> Result<Json<Value>> {
    let Query(p) = p.map_err(|e| Error::BadRequest(e.body_text()))?;
    let engine = s.live.get();
    Ok(Json(
        blocking(move || Ok(catalogue::page(engine.index(), &p))).await?,
    ))
}
