//! The one error type of the `indexer` crate.

use std::path::PathBuf;

/// Everything that can go wrong while reading imagery or reading and writing an index.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The encoder failed to load or to run.
    #[error(transparent)]
    Model(#[from] nadir_clip::Error),

    /// A file or folder could not be read or written.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// An input raster or image cannot be indexed (unreadable, truncated, no CRS, too small,
    /// bad band list, all nodata...). The message says why; the path names the file.
    #[error("{path}: {message}")]
    Input { path: PathBuf, message: String },

    /// An index on disk is malformed, of another format version, or inconsistent.
    #[error("index {path}: {message}")]
    Format { path: PathBuf, message: String },

    /// The caller asked for something the index cannot do (other patch parameters, other model).
    #[error("{0}")]
    Invalid(String),

    /// The parquet patch table could not be written or read.
    #[error("patch table {path}: {message}")]
    Table { path: PathBuf, message: String },

    /// The tantivy metadata index failed.
    #[error("text index: {0}")]
    Text(#[from] tantivy::TantivyError),
}

/// The `indexer` crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn input(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Error::Input {
            path: path.into(),
            message: message.into(),
        }
    }

    pub(crate) fn format(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Error::Format {
            path: path.into(),
            message: message.into(),
        }
    }

    pub(crate) fn table(path: impl Into<PathBuf>, message: impl std::fmt::Display) -> Self {
        Error::Table {
            path: path.into(),
            message: message.to_string(),
        }
    }
}
