//! The edge's one error type, and how each variant answers over HTTP.

use std::path::PathBuf;

use axum::response::{IntoResponse, Response};
use blob_common::presign::PresignError;
use blob_common::ChunkId;
use blob_server::ApiError;

/// Everything that can go wrong in the edge. A 4xx tells the caller to fix
/// the request; a 502 to read from a datanode directly instead.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The path does not name a chunk.
    #[error("invalid chunk id {0:?}")]
    InvalidChunkId(String),
    /// The query string or body could not be parsed.
    #[error("invalid request: {0}")]
    BadRequest(String),
    /// The pre-signed URL (or admin grant) does not allow this request.
    #[error(transparent)]
    Presign(#[from] PresignError),
    /// Not cached, and the signed URL names no origin to fill from.
    #[error("chunk {0} is not cached and the signed URL names no origin to fill it from")]
    NoOrigin(ChunkId),
    /// Every origin failed.
    #[error("chunk {chunk}: every origin failed: {reason}")]
    FillFailed {
        /// The chunk.
        chunk: ChunkId,
        /// The last origin's failure.
        reason: String,
    },
    /// A disk operation failed.
    #[error("I/O on {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The HTTP server failed.
    #[error("HTTP server: {0}")]
    Serve(#[source] std::io::Error),
    /// A blocking disk task ended without an answer.
    #[error("disk task ended unexpectedly: {0}")]
    TaskFailed(String),
    /// The edge's budget of bytes in flight stayed full: retry shortly.
    #[error(transparent)]
    Busy(#[from] blob_server::limits::Busy),
    /// A request body over its route's limit.
    #[error(transparent)]
    TooLarge(#[from] blob_server::limits::TooLarge),
}

impl Error {
    /// Wraps an I/O error with the path it happened on.
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    /// The HTTP status and code this error answers with.
    pub fn to_api(&self) -> ApiError {
        let (status, code) = match self {
            Error::InvalidChunkId(_) => (400, "InvalidChunkId"),
            Error::BadRequest(_) => (400, "InvalidArgument"),
            Error::Presign(_) => (403, "AccessDenied"),
            Error::NoOrigin(_) => (404, "NoSuchChunk"),
            Error::FillFailed { .. } => (502, "OriginFailed"),
            Error::Io { .. } | Error::Serve(_) | Error::TaskFailed(_) => (500, "InternalError"),
            Error::Busy(_) => (503, "SlowDown"),
            Error::TooLarge(_) => (413, "EntityTooLarge"),
        };
        ApiError::new(status, code, self.to_string())
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        match self {
            // With its Retry-After header.
            Error::Busy(b) => b.into_response(),
            e => e.to_api().into_response(),
        }
    }
}
