//! The crate's one error type, and how it is answered over HTTP (the query service's shape:
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
    /// A rendering task died.
    #[error("rendering task failed: {0}")]
    Task(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let (status, message) = match &self {
            Error::BadTile(_) | Error::BadRequest(_) => (StatusCode::BAD_REQUEST, self.to_string()),
            Error::NoAsset(_) => (StatusCode::NOT_FOUND, self.to_string()),
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
