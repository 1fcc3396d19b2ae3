//! The one error type of the `query` crate.

/// Everything that can go wrong while planning or running a query.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request is malformed or asks for something the index cannot do: the caller's fault
    /// (the service answers 4xx with this message).
    #[error("{0}")]
    BadRequest(String),

    /// A patch id that is not in the index.
    #[error("unknown patch {0}")]
    UnknownPatch(String),

    /// No indexed patch contains a location.
    #[error("{0}")]
    NothingAt(String),

    /// The index could not be read.
    #[error(transparent)]
    Index(#[from] nadir_indexer::Error),

    /// The encoder failed.
    #[error(transparent)]
    Model(#[from] nadir_clip::Error),

    /// Something the request names does not exist (a label, a class without labels).
    #[error("{0}")]
    NotFound(String),

    /// The request collides with work in progress (another export writing the same folder).
    #[error("{0}")]
    Conflict(String),

    /// Too much of a costly kind of work is running: retry shortly (the service answers 503).
    #[error("{0}")]
    Busy(String),

    /// The label store (`labels.sqlite`) could not be read or written.
    #[error("label store {path}: {source}")]
    Labels {
        path: std::path::PathBuf,
        #[source]
        source: rusqlite::Error,
    },

    /// An export (`crate::export`) could not read a source or write a file.
    #[error("export {path}: {message}")]
    Export {
        path: std::path::PathBuf,
        message: String,
    },
}

/// The `query` crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn bad(message: impl Into<String>) -> Self {
        Error::BadRequest(message.into())
    }
}
