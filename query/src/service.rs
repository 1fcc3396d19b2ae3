//! The HTTP service (axum): search, similar, patch metadata, thumbnails, index info, health, and
//! the OpenAPI document at `/openapi.json`. One [`ApiError`] turns every failure into a response:
//! 4xx with a message for the caller's mistakes, 5xx logged and generic for ours. Bodies are
//! limited in size, queries in time; the engine is shared, read-only, by every request.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, OpenApi, ToSchema};

use crate::engine::{Engine, IndexInfo};
use crate::error::Error;
use crate::geofilter::GeoFilter;
use crate::hit::{Hit, SearchResponse};
use crate::request::{Example, SearchRequest, TimeRange};
use crate::search::Strategy;

/// Largest request body (an uploaded example image, base64-encoded, fits).
pub const MAX_BODY_BYTES: usize = 16 << 20;

/// Service settings.
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    /// A query taking longer is answered 503.
    pub query_timeout: Duration,
    /// The host names (without port) a request's `Host` header may carry ([`guard`]); `*`
    /// allows any.
    pub allowed_hosts: Vec<String>,
    /// Connection limits of the socket ([`crate::server`]).
    pub limits: crate::server::Limits,
    /// Web origins whose pages may read the API's answers (CORS, see [`guard`]); none by default.
    pub allowed_origins: Vec<String>,
}

/// The hosts a server answers by default: loopback only.
pub const LOOPBACK_HOSTS: [&str; 3] = ["localhost", "127.0.0.1", "[::1]"];

impl Default for ServiceConfig {
    fn default() -> Self {
        ServiceConfig {
            query_timeout: Duration::from_secs(30),
            allowed_hosts: LOOPBACK_HOSTS.iter().map(|h| h.to_string()).collect(),
            limits: crate::server::Limits::default(),
            allowed_origins: Vec::new(),
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct AppState {
    live: Arc<crate::live::LiveEngine>,
    config: ServiceConfig,
    /// The OpenAPI document served, as JSON.
    doc: Arc<Value>,
}

/// The error body of every 4xx and 5xx answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: String,
}

/// An HTTP error: a status and a message for the caller.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
        }
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        match e {
            Error::BadRequest(m) => ApiError::new(StatusCode::BAD_REQUEST, m),
            Error::UnknownPatch(id) => ApiError::new(StatusCode::NOT_FOUND, format!("unknown patch {id}")),
            Error::NothingAt(m) | Error::NotFound(m) => ApiError::new(StatusCode::NOT_FOUND, m),
            Error::Conflict(m) => ApiError::new(StatusCode::CONFLICT, m),
            Error::Busy(m) => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, m),
            Error::Model(nadir_clip::Error::InvalidInput(m)) => ApiError::new(StatusCode::BAD_REQUEST, m),
            Error::Index(nadir_indexer::Error::Invalid(m)) => ApiError::new(StatusCode::BAD_REQUEST, m),
            other => {
                tracing::error!(error = %other, "query failed");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal error (logged by the server)",
                )
            }
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        ApiError::new(r.status(), r.body_text())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> Self {
        ApiError::new(r.status(), r.body_text())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(ErrorBody { error: self.message })).into_response()
    }
}

pub(crate) type ApiResult<T> = Result<T, ApiError>;

/// Runs blocking engine work off the async threads, within the query time limit.
pub(crate) async fn run<T: Send + 'static>(
    state: &AppState,
    work: impl FnOnce(&Engine) -> crate::Result<T> + Send + 'static,
) -> ApiResult<T> {
    let engine = state.live.get();
    let token = crate::cancel::Token::new();
    let inner = token.clone();
    let task = tokio::task::spawn_blocking(move || inner.run(|| work(&engine)));
    match tokio::time::timeout(state.config.query_timeout, task).await {
        Err(_) => {
            // The work stops at its next check (and an export removes what it wrote).
            token.cancel();
            Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "the query took longer than {} s",
                    state.config.query_timeout.as_secs_f64()
                ),
            ))
        }
        Ok(Err(join)) => {
            tracing::error!(error = %join, "query task panicked");
            Err(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal error (logged by the server)",
            ))
        }
        Ok(Ok(result)) => Ok(result?),
    }
}

#[derive(Debug, Serialize, ToSchema)]
struct Health {
    status: String,
}

/// Liveness.
#[utoipa::path(get, path = "/health", responses((status = 200, body = Health)))]
async fn health() -> Json<Health> {
    Json(Health { status: "ok".into() })
}

/// What the index holds.
#[utoipa::path(get, path = "/api/info", responses((status = 200, body = IndexInfo)))]
async fn info(State(s): State<AppState>) -> Json<IndexInfo> {
    Json(s.live.get().info())
}

/// Search by text and/or examples, within a geofilter, keywords and time range.
#[utoipa::path(post, path = "/api/search", request_body = SearchRequest,
    responses((status = 200, body = SearchResponse), (status = 400, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 413, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn search(
    State(s): State<AppState>,
    body: Result<Json<SearchRequest>, JsonRejection>,
) -> ApiResult<Json<SearchResponse>> {
    let Json(req) = body?;
    Ok(Json(run(&s, move |e| e.search(&req)).await?))
}

/// The same search, answered as a GeoJSON FeatureCollection.
#[utoipa::path(post, path = "/api/search/geojson", request_body = SearchRequest,
    responses((status = 200, body = Object, description = "GeoJSON FeatureCollection"), (status = 400, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn search_geojson(
    State(s): State<AppState>,
    body: Result<Json<SearchRequest>, JsonRejection>,
) -> ApiResult<Json<Value>> {
    let Json(req) = body?;
    Ok(Json(run(&s, move |e| e.search(&req)).await?.feature_collection()))
}

/// Parameters of `/api/similar`: a patch id, or a location.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct SimilarParams {
    /// Patch id.
    #[param(pattern = "^[0-9a-f]{16}$")]
    patch: Option<String>,
    #[param(minimum = -180.0, maximum = 180.0)]
    lon: Option<f64>,
    #[param(minimum = -90.0, maximum = 90.0)]
    lat: Option<f64>,
    /// Results (default 20).
    #[param(minimum = 1, maximum = 1000)]
    k: Option<usize>,
}

/// Patches that look like a patch, or like the place at a location.
#[utoipa::path(get, path = "/api/similar", params(SimilarParams),
    responses((status = 200, body = SearchResponse), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn similar(
    State(s): State<AppState>,
    p: Result<Query<SimilarParams>, QueryRejection>,
) -> ApiResult<Json<SearchResponse>> {
    let Query(p) = p?;
    let example = Example {
        patch: p.patch,
        lon: p.lon,
        lat: p.lat,
        image_base64: None,
    };
    let req = SearchRequest {
        positives: vec![example],
        k: p.k.unwrap_or(20),
        negative_weight: 0.5,
        ..Default::default()
    };
    Ok(Json(run(&s, move |e| e.search(&req)).await?))
}

/// One patch's metadata.
#[utoipa::path(get, path = "/api/patches/{id}", params(("id" = String, Path, description = "patch id", pattern = "^[0-9a-f]{16}$")),
    responses((status = 200, body = Hit), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn patch(State(s): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<Hit>> {
    Ok(Json(run(&s, move |e| e.patch(&id)).await?))
}

/// Location parameters.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct LonLat {
    #[param(minimum = -180.0, maximum = 180.0)]
    lon: f64,
    #[param(minimum = -90.0, maximum = 90.0)]
    lat: f64,
}

/// The patch whose footprint contains a location.
#[utoipa::path(get, path = "/api/patch_at", params(LonLat),
    responses((status = 200, body = Hit), (status = 400, body = ErrorBody)))]
async fn patch_at(
    State(s): State<AppState>,
    p: Result<Query<LonLat>, QueryRejection>,
) -> ApiResult<Json<Hit>> {
    let Query(p) = p?;
    Ok(Json(run(&s, move |e| e.patch_at(p.lon, p.lat)).await?))
}

/// A patch's JPEG thumbnail.
#[utoipa::path(get, path = "/api/patches/{id}/thumbnail.jpg", params(("id" = String, Path, description = "patch id", pattern = "^[0-9a-f]{16}$")),
    responses((status = 200, content_type = "image/jpeg", body = Vec<u8>), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn thumbnail(State(s): State<AppState>, Path(id): Path<String>) -> ApiResult<Response> {
    let bytes = run(&s, move |e| e.thumbnail(&id)).await?;
    Ok((
        [
            (header::CONTENT_TYPE, "image/jpeg"),
            (header::CACHE_CONTROL, "max-age=3600"),
        ],
        bytes,
    )
        .into_response())
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Nadir",
        description = "Semantic search for satellite and aerial imagery."
    ),
    paths(
        health,
        openapi_json,
        info,
        search,
        search_geojson,
        similar,
        patch,
        patch_at,
        thumbnail
    ),
    components(schemas(
        SearchRequest,
        Example,
        TimeRange,
        GeoFilter,
        SearchResponse,
        Hit,
        IndexInfo,
        ErrorBody,
        Strategy
    ))
)]
struct ApiDoc;

/// The OpenAPI document of the service.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    doc.merge(crate::labels_api::LabelsDoc::openapi());
    doc
}

/// This document.
#[utoipa::path(get, path = "/openapi.json",
    responses((status = 200, description = "The OpenAPI 3.1 document of every route", body = Object)))]
async fn openapi_json(State(s): State<AppState>) -> Json<Value> {
    Json((*s.doc).clone())
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "no such route; see /openapi.json")
}

/// The service's router over an engine.
pub fn router(engine: Arc<Engine>, config: ServiceConfig) -> Router {
    router_with_doc(crate::live::LiveEngine::new(engine), config, openapi())
}

/// The service's router, serving `doc` at `/openapi.json` ([`openapi`] merged with the routes a
/// caller adds).
/// Every request takes the engine `live` holds then, so a swap ([`crate::live`]) reaches the
/// next request.
pub fn router_with_doc(
    live: Arc<crate::live::LiveEngine>,
    config: ServiceConfig,
    doc: utoipa::openapi::OpenApi,
) -> Router {
    let state = AppState {
        live,
        config,
        doc: Arc::new(serde_json::to_value(doc).expect("the OpenAPI document serialises")),
    };
    Router::new()
        .route("/health", get(health))
        .route("/openapi.json", get(openapi_json))
        .route("/api/info", get(info))
        .route("/api/search", post(search))
        .route("/api/search/geojson", post(search_geojson))
        .route("/api/similar", get(similar))
        .route("/api/patch_at", get(patch_at))
        .route("/api/patches/{id}", get(patch))
        .route("/api/patches/{id}/thumbnail.jpg", get(thumbnail))
        .merge(crate::labels_api::routes())
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

/// The host of a `Host` header, without its port, lower-cased (`[::1]:8080` is `[::1]`).
fn host_name(value: &str) -> String {
    let v = value.trim().to_ascii_lowercase();
    if v.starts_with('[') {
        return v.split_inclusive(']').next().unwrap_or(&v).to_string();
    }
    v.split(':').next().unwrap_or(&v).to_string()
}

/// Whether an answer's body is JSON.
fn is_json(resp: &Response) -> bool {
    resp.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("json"))
}

/// A 4xx whose body is not JSON (a 405, or the router's own rejections: a path that is not
/// UTF-8) as the service's one error shape, `{"error": "..."}`, its text kept as the message.
async fn json_error(resp: Response) -> Response {
    let status = resp.status();
    let allow = resp.headers().get(header::ALLOW).cloned();
    let bytes = axum::body::to_bytes(resp.into_body(), 16 * 1024)
        .await
        .unwrap_or_default();
    let text = String::from_utf8_lossy(&bytes).trim().to_string();
    let message = match (text.is_empty(), status) {
        (false, _) => text,
        (true, StatusCode::METHOD_NOT_ALLOWED) => {
            "method not allowed on this route; see /openapi.json".into()
        }
        (true, s) => s.canonical_reason().unwrap_or("bad request").to_string(),
    };
    let mut out = ApiError::new(status, message).into_response();
    if let Some(allow) = allow {
        out.headers_mut().insert(header::ALLOW, allow);
    }
    out
}

/// What every answer of the whole app (API, page, tiles) goes through: a request whose `Host`
/// names a host not in `allowed` is refused (403 with a message), so that a web page on another
/// site cannot reach a server on 127.0.0.1 by rebinding its DNS name; requests without `Host`
/// (not from a browser) pass. A 4xx that is not JSON (a 405, a path that is not UTF-8) gets the
/// one error shape. Every answer says it may not be framed by another site (`X-Frame-Options`,
/// CSP `frame-ancestors`) and is not to be sniffed.
///
/// Cross-origin reads (CORS) are off unless `origins` names the web origins allowed to call the
/// API from their pages (`--allow-origin https://maps.example`; `*`: any): a matching preflight
/// is answered 204 with the allowed methods and headers, and a matching request's answer carries
/// `Access-Control-Allow-Origin`. Other origins get no CORS header, so browsers keep their
/// pages from reading the answers.
pub fn guard(app: Router, allowed: &[String], origins: &[String]) -> Router {
    let allowed: Arc<Vec<String>> = Arc::new(allowed.iter().map(|h| host_name(h)).collect());
    let origins: Arc<Vec<String>> = Arc::new(
        origins
            .iter()
            .map(|o| o.trim_end_matches('/').to_string())
            .collect(),
    );
    app.layer(axum::middleware::from_fn(
        move |req: axum::extract::Request, next: axum::middleware::Next| {
            let allowed = allowed.clone();
            let origins = origins.clone();
            async move {
                let origin = req
                    .headers()
                    .get(header::ORIGIN)
                    .and_then(|o| o.to_str().ok())
                    .filter(|o| origins.iter().any(|a| a == "*" || a == o))
                    .and_then(|o| header::HeaderValue::from_str(o).ok());
                let host = req
                    .headers()
                    .get(header::HOST)
                    .map(|h| h.to_str().map(host_name).unwrap_or_default());
                if let Some(host) = host {
                    if !allowed.iter().any(|a| a == "*" || *a == host) {
                        return ApiError::new(
                            StatusCode::FORBIDDEN,
                            format!(
                                "host {host:?} is not served here: start the server with --allowed-host {host} to answer it"
                            ),
                        )
                        .into_response();
                    }
                }
                let preflight = req.method() == axum::http::Method::OPTIONS
                    && req.headers().contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
                let mut resp = match (&origin, preflight) {
                    (Some(_), true) => {
                        let mut r = StatusCode::NO_CONTENT.into_response();
                        let h = r.headers_mut();
                        h.insert(
                            header::ACCESS_CONTROL_ALLOW_METHODS,
                            header::HeaderValue::from_static("GET, POST, DELETE"),
                        );
                        h.insert(
                            header::ACCESS_CONTROL_ALLOW_HEADERS,
                            header::HeaderValue::from_static("content-type"),
                        );
                        h.insert(header::ACCESS_CONTROL_MAX_AGE, header::HeaderValue::from_static("600"));
                        r
                    }
                    _ => next.run(req).await,
                };
                if resp.status().is_client_error() && !is_json(&resp) {
                    resp = json_error(resp).await;
                }
                let h = resp.headers_mut();
                if let Some(o) = origin {
                    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, o);
                    h.append(header::VARY, header::HeaderValue::from_static("origin"));
                }
                h.insert("x-frame-options", header::HeaderValue::from_static("DENY"));
                h.insert(
                    header::CONTENT_SECURITY_POLICY,
                    header::HeaderValue::from_static("frame-ancestors 'none'"),
                );
                h.insert(
                    header::X_CONTENT_TYPE_OPTIONS,
                    header::HeaderValue::from_static("nosniff"),
                );
                resp
            }
        },
    ))
}

/// Serves `app` (this crate's [`router`], or one built on it) on `addr` until Ctrl-C or SIGTERM,
/// behind [`guard`] with `allowed_hosts` (and the address's own IP), within `limits`.
pub async fn serve(
    app: Router,
    addr: std::net::SocketAddr,
    allowed_hosts: &[String],
    allowed_origins: &[String],
    limits: crate::server::Limits,
) -> std::io::Result<()> {
    let mut allowed = allowed_hosts.to_vec();
    if !addr.ip().is_unspecified() {
        allowed.push(match addr.ip() {
            std::net::IpAddr::V6(ip) => format!("[{ip}]"),
            ip => ip.to_string(),
        });
    }
    let app = guard(app, &allowed, allowed_origins);
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(%addr, "serving");
    crate::server::run(listener, app, limits).await
}
