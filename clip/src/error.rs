//! The one error type of the `clip` crate.

use std::path::PathBuf;

/// Everything that can go wrong while loading or running an encoder.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A tensor operation failed (shape mismatch, dtype, device).
    #[error(transparent)]
    Candle(#[from] candle_core::Error),

    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// A checkpoint was read but does not fit the expected model.
    #[error("checkpoint {path}: {message}")]
    Checkpoint { path: PathBuf, message: String },

    /// A model configuration file is malformed.
    #[error("model config {path}: {message}")]
    Config { path: PathBuf, message: String },

    /// A model name is neither a known preset nor an existing file, or its weights are not available
    /// offline.
    #[error("{0}")]
    ModelNotFound(String),

    /// An image could not be decoded.
    #[error("cannot decode image {path}: {message}")]
    Image { path: PathBuf, message: String },

    /// The tokenizer failed to build or to encode.
    #[error("tokenizer: {0}")]
    Tokenizer(String),

    /// The caller passed something the encoder cannot use.
    #[error("invalid input: {0}")]
    InvalidInput(String),
}

/// The `clip` crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn checkpoint(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Error::Checkpoint {
            path: path.into(),
            message: message.into(),
        }
    }
}
