//! The HTTP side of labels and active learning, on the service's state: add, remove, list,
//! import and export labels; train a class's probe (with spatial cross-validation), ask it for
//! suggestions and scores. Registered by [`crate::service::router`]; documented in the same
//! OpenAPI document. Every failure goes through the service's `ApiError` (4xx with a message).

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, OpenApi, ToSchema};

use crate::error::Error;
use crate::export::{self, ExportReport, ExportRequest, Selection};
use crate::geofilter::GeoFilter;
use crate::hit::Hit;
use crate::labels::{self, ClassSummary, ImportReport, Label, LabelSource, NewLabel};
use crate::learn::{
    self, CrossValidation, LearnReport, ProbableRequest, Scores, ScoresRequest, SuggestMode, SuggestRequest,
    SuggestResponse, Suggestion,
};
use crate::service::{run, ApiError, ApiResult, AppState, ErrorBody};

impl From<PathRejection> for ApiError {
    fn from(r: PathRejection) -> Self {
        ApiError::new(r.status(), r.body_text())
    }
}

/// The labels and their classes.
#[derive(Debug, Serialize, ToSchema)]
pub struct LabelList {
    pub labels: Vec<Label>,
    /// Every class with its counts (all classes, whatever the filter).
    pub classes: Vec<ClassSummary>,
}

/// An optional class filter.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ClassParam {
    /// Only this class.
    class: Option<String>,
}

/// A GeoJSON import.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ImportRequest {
    /// Points (the patch containing each), polygons (every patch whose centroid is inside), or
    /// features with a `patch_id` property; as a geometry, Feature or FeatureCollection. A
    /// feature's `class` and `positive` properties override the fields below.
    #[schema(value_type = Object)]
    pub geojson: Value,
    pub class: String,
    /// Default true.
    #[serde(default = "yes")]
    pub positive: bool,
}

fn yes() -> bool {
    true
}

/// A removed label.
#[derive(Debug, Serialize, ToSchema)]
pub struct Removed {
    pub removed: Label,
}

/// Labels a patch for a class (relabelling replaces the earlier label).
#[utoipa::path(post, path = "/api/labels", request_body = NewLabel,
    responses((status = 200, body = Label), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub(crate) async fn add_label(
    State(s): State<AppState>,
    body: Result<Json<NewLabel>, JsonRejection>,
) -> ApiResult<Json<Label>> {
    let Json(label) = body?;
    Ok(Json(run(&s, move |e| labels::add_checked(e, &label)).await?))
}

/// Removes the label of a patch for a class.
#[utoipa::path(delete, path = "/api/labels/{class}/{patch_id}",
    params(("class" = String, Path, description = "class name"),
           ("patch_id" = String, Path, description = "patch id", pattern = "^[0-9a-f]{16}$")),
    responses((status = 200, body = Removed), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(crate) async fn remove_label(
    State(s): State<AppState>,
    p: Result<Path<(String, String)>, PathRejection>,
) -> ApiResult<Json<Removed>> {
    let Path((class, patch_id)) = p?;
    let removed = run(&s, move |e| {
        let store = e.labels()?;
        let class = labels::check_class(&class)?;
        let label = store
            .get(&patch_id, class)?
            .ok_or_else(|| Error::NotFound(format!("patch {patch_id} has no label for class {class:?}")))?;
        store.remove(&patch_id, class)?;
        Ok(label)
    })
    .await?;
    Ok(Json(Removed { removed }))
}

/// Every label, or a class's, oldest first, with the classes' counts.
#[utoipa::path(get, path = "/api/labels", params(ClassParam),
    responses((status = 200, body = LabelList), (status = 400, body = ErrorBody)))]
pub(crate) async fn list_labels(
    State(s): State<AppState>,
    p: Result<Query<ClassParam>, QueryRejection>,
) -> ApiResult<Json<LabelList>> {
    let Query(p) = p?;
    let list = run(&s, move |e| {
        let store = e.labels()?;
        Ok(LabelList {
            labels: store.list(p.class.as_deref())?,
            classes: store.classes()?,
        })
    })
    .await?;
    Ok(Json(list))
}

/// Imports labels from GeoJSON points or polygons (all or nothing).
#[utoipa::path(post, path = "/api/labels/import", request_body = ImportRequest,
    responses((status = 200, body = ImportReport), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub(crate) async fn import_labels(
    State(s): State<AppState>,
    body: Result<Json<ImportRequest>, JsonRejection>,
) -> ApiResult<Json<ImportReport>> {
    let Json(req) = body?;
    let report = run(&s, move |e| {
        labels::import_geojson(e, &req.geojson, &req.class, req.positive)
    })
    .await?;
    Ok(Json(report))
}

/// The labels (all, or a class's) as a GeoJSON FeatureCollection of the patches' footprints.
#[utoipa::path(get, path = "/api/labels/export", params(ClassParam),
    responses((status = 200, body = Object, description = "GeoJSON FeatureCollection"), (status = 400, body = ErrorBody)))]
pub(crate) async fn export_labels(
    State(s): State<AppState>,
    p: Result<Query<ClassParam>, QueryRejection>,
) -> ApiResult<Json<Value>> {
    let Query(p) = p?;
    Ok(Json(
        run(&s, move |e| labels::export_geojson(e, p.class.as_deref())).await?,
    ))
}

/// Trains the class's probe on its labels and reports spatially cross-validated precision and
/// recall.
#[utoipa::path(post, path = "/api/learn/{class}", params(("class" = String, Path, description = "class name")),
    responses((status = 200, body = LearnReport), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(crate) async fn learn_class(
    State(s): State<AppState>,
    p: Result<Path<String>, PathRejection>,
) -> ApiResult<Json<LearnReport>> {
    let Path(class) = p?;
    Ok(Json(run(&s, move |e| learn::learn(e, &class)).await?))
}

/// What to label next: uncertain patches spread over space, or likely positives.
#[utoipa::path(post, path = "/api/learn/{class}/suggest", params(("class" = String, Path, description = "class name")),
    request_body = SuggestRequest,
    responses((status = 200, body = SuggestResponse), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 415, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub(crate) async fn suggest(
    State(s): State<AppState>,
    p: Result<Path<String>, PathRejection>,
    body: Result<Json<SuggestRequest>, JsonRejection>,
) -> ApiResult<Json<SuggestResponse>> {
    let Path(class) = p?;
    let Json(req) = body?;
    Ok(Json(run(&s, move |e| learn::suggest(e, &class, &req)).await?))
}

/// The probe's probability for every unlabelled patch inside the geofilter.
#[utoipa::path(post, path = "/api/learn/{class}/scores", params(("class" = String, Path, description = "class name")),
    request_body = ScoresRequest,
    responses((status = 200, body = Scores), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 415, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub(crate) async fn scores(
    State(s): State<AppState>,
    p: Result<Path<String>, PathRejection>,
    body: Result<Json<ScoresRequest>, JsonRejection>,
) -> ApiResult<Json<Scores>> {
    let Path(class) = p?;
    let Json(req) = body?;
    Ok(Json(
        run(&s, move |e| learn::scores(e, &class, req.geofilter.as_ref())).await?,
    ))
}

/// The class's labelled positives and the patches its probe finds at least `min_probability`
/// probable, as GeoJSON footprints (the "find all of these" result).
#[utoipa::path(post, path = "/api/learn/{class}/geojson", params(("class" = String, Path, description = "class name")),
    request_body = ProbableRequest,
    responses((status = 200, description = "GeoJSON FeatureCollection, most probable first", content_type = "application/geo+json"),
              (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 415, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub(crate) async fn probable_geojson(
    State(s): State<AppState>,
    p: Result<Path<String>, PathRejection>,
    body: Result<Json<ProbableRequest>, JsonRejection>,
) -> ApiResult<impl IntoResponse> {
    let Path(class) = p?;
    let Json(req) = body?;
    let v = run(&s, move |e| learn::probable_geojson(e, &class, &req)).await?;
    Ok(([(header::CONTENT_TYPE, "application/geo+json")], Json(v)))
}

/// An export into `exports/{name}` of the index folder.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExportBody {
    /// The output folder's name under `exports/` in the index folder (1 to 64 of `A-Z a-z 0-9 _ -`,
    /// not starting with `-`); it must not exist yet or be empty.
    #[schema(pattern = "^[A-Za-z0-9_][A-Za-z0-9_-]{0,63}$")]
    pub name: String,
    /// These patch ids; without them, every labelled patch (of `class` when given).
    #[serde(default)]
    pub patches: Option<Vec<String>>,
    #[serde(default)]
    pub class: Option<String>,
    /// With `class`: its labelled positives and every patch its probe finds at least this
    /// probable (0 to 1), instead of the labelled patches.
    #[serde(default)]
    pub min_probability: Option<f32>,
    /// GeoJSON polygons rasterised into masks (WGS84, or the CRS its `crs` member names).
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub masks: Option<Value>,
    #[serde(default)]
    pub mask_class: Option<String>,
    /// Train, val, test shares (default 0.7, 0.15, 0.15).
    #[serde(default)]
    pub split: Option<[f64; 3]>,
    #[serde(default)]
    pub seed: Option<u64>,
}

fn check_export_name(name: &str) -> Result<&str, Error> {
    let ok = (1..=64).contains(&name.len())
        && !name.starts_with('-')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(name)
    } else {
        Err(Error::BadRequest(
            "name: 1 to 64 of A-Z a-z 0-9 _ - (not starting with -)".into(),
        ))
    }
}

/// Exports patches as a training set (GeoTIFF chips, masks, spatial split, STAC catalog) into
/// `exports/{name}` of the index folder: the server writes nowhere else.
#[utoipa::path(post, path = "/api/export", request_body = ExportBody,
    responses((status = 200, body = ExportReport), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub(crate) async fn export_set(
    State(s): State<AppState>,
    body: Result<Json<ExportBody>, JsonRejection>,
) -> ApiResult<Json<ExportReport>> {
    let Json(b) = body?;
    let report = run(&s, move |e| {
        let name = check_export_name(&b.name)?;
        let selection = match (b.patches, b.min_probability, b.class) {
            (Some(_), Some(_), _) => {
                return Err(Error::BadRequest(
                    "give patches or min_probability, not both".into(),
                ))
            }
            (Some(p), None, _) => Selection::Patches(p),
            (None, Some(min_probability), Some(class)) => Selection::Probable {
                class,
                min_probability,
            },
            (None, Some(_), None) => return Err(Error::BadRequest("min_probability needs a class".into())),
            (None, None, class) => Selection::Labelled { class },
        };
        let mut req = ExportRequest::new(e.index().dir().join("exports").join(name), selection);
        // Relative to the index folder: no server path in answers or messages.
        req.shown_as = Some(format!("exports/{name}"));
        req.masks = b.masks;
        if let Some(c) = b.mask_class {
            req.mask_class = crate::labels::check_class(&c)?.to_string();
        }
        if let Some(split) = b.split {
            req.split = split;
        }
        req.seed = b.seed.unwrap_or(0);
        export::export(e, &req)
    })
    .await?;
    Ok(Json(report))
}

/// The OpenAPI part of these routes, merged into the service's document.
#[derive(Debug, OpenApi)]
#[openapi(
    paths(
        add_label,
        remove_label,
        list_labels,
        import_labels,
        export_labels,
        learn_class,
        suggest,
        scores,
        probable_geojson,
        export_set
    ),
    components(schemas(
        NewLabel,
        Label,
        LabelSource,
        LabelList,
        ClassSummary,
        Removed,
        ImportRequest,
        ImportReport,
        LearnReport,
        CrossValidation,
        SuggestRequest,
        SuggestMode,
        Suggestion,
        SuggestResponse,
        ScoresRequest,
        Scores,
        ProbableRequest,
        ExportBody,
        ExportReport,
        GeoFilter,
        Hit,
        ErrorBody
    ))
)]
pub struct LabelsDoc;

/// The routes, for [`crate::service::router`].
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/labels", post(add_label).get(list_labels))
        .route("/api/labels/import", post(import_labels))
        .route("/api/labels/export", get(export_labels))
        .route("/api/labels/{class}/{patch_id}", delete(remove_label))
        .route("/api/learn/{class}", post(learn_class))
        .route("/api/learn/{class}/suggest", post(suggest))
        .route("/api/learn/{class}/scores", post(scores))
        .route("/api/learn/{class}/geojson", post(probable_geojson))
        .route("/api/export", post(export_set))
}
