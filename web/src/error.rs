//! The crate's one error type (the page's routes, tiles and interactive sessions), and how it is
//! answered over HTTP (the query service's shape:
//! `{"error": "..."}`, 4xx with a message for the caller's mistakes, 5xx logged and generic).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

/// What can go wrong in the web layer.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A tile address out of range or malformed.
    #[error("bad tile: {0}")]
    BadTile(String),
    /// A malformed query parameter.
    #[error("{0}")]
    BadRequest(String),
    /// No such asset.
    #[error("no asset {0}")]
    NoAsset(String),
    /// Reading a source raster failed.
    #[error(transparent)]
    Index(#[from] nadir_indexer::Error),
    /// Reading a raster's nodata mask failed.
    #[error("reading a nodata mask: {0}")]
    Mask(String),
    /// Encoding a tile failed.
    #[error("encoding a tile: {0}")]
    Image(#[from] image::ImageError),
    /// No such session or scene.
    #[error("{0}")]
    NotFound(String),
    /// At the limit of open sessions.
    #[error("{0}")]
    Busy(String),
    /// The segmentation encoder cannot be loaded here.
    #[error("interactive segmentation is unavailable: {0}")]
    Unavailable(String),
    /// A session refused an input or failed.
    #[error(transparent)]
    Segment(#[from] nadir_segment::Error),
    /// A rendering task died.
    #[error("rendering task failed: {0}")]
    Task(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let (status, message) = match &self {
            Error::BadTile(_) | Error::BadRequest(_) => (StatusCode::BAD_REQUEST, self.to_string()),
            Error::NoAsset(_) | Error::NotFound(_) => (StatusCode::NOT_FOUND, self.to_string()),
            Error::Busy(_) | Error::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, self.to_string()),
            Error::Segment(nadir_segment::Error::Invalid(_) | nadir_segment::Error::Input { .. }) => {
                (StatusCode::BAD_REQUEST, self.to_string())
            }
            _ => {
                tracing::error!(error = %self, "web request failed");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal error (logged by the server)".to_string(),
                )
            }
        };
        (status, Json(json!({ "error": message }))).into_response()
    }
}
