//! The one error type of the `segment` crate.

use std::path::{Path, PathBuf};

/// Everything that can go wrong while reading a training set, training, or predicting.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file of the training set, a model folder or a scene is missing or malformed.
    #[error("{path}: {message}")]
    Input { path: PathBuf, message: String },

    /// A request that cannot be carried out (bad options, no training data).
    #[error("{0}")]
    Invalid(String),

    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// A tensor operation failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),

    /// The encoder could not be loaded.
    #[error(transparent)]
    Model(#[from] nadir_clip::Error),

    /// A raster could not be read.
    #[error(transparent)]
    Raster(#[from] nadir_indexer::Error),
}

/// The `segment` crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn input(path: &Path, message: impl std::fmt::Display) -> Self {
        Error::Input {
            path: path.to_path_buf(),
            message: message.to_string(),
        }
    }

    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        Error::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}
