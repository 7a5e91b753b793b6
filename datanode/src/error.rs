//! The datanode's one error type, and how each variant answers over HTTP.

use std::path::PathBuf;

use axum::response::{IntoResponse, Response};
use blob_common::presign::PresignError;
use blob_common::ChunkId;
use blob_server::ApiError;

/// Everything that can go wrong in the datanode. Each variant says what the
/// caller should do next: fix the request (4xx), try another replica or
/// node (5xx), or look at the disk (I/O).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The path does not name a chunk (not 64 lowercase hex characters).
    #[error("invalid chunk id {0:?}")]
    InvalidChunkId(String),
    /// The query string could not be parsed.
    #[error("invalid query string: {0}")]
    InvalidQuery(String),
    /// The pre-signed URL does not allow this request.
    #[error(transparent)]
    Presign(#[from] PresignError),
    /// This node does not hold the chunk.
    #[error("chunk {0} not found")]
    ChunkNotFound(ChunkId),
    /// The body does not hash to the chunk id: nothing was stored.
    #[error("chunk {chunk}: body hashes to {actual}")]
    DigestMismatch {
        /// The chunk the request named.
        chunk: ChunkId,
        /// What the body hashed to.
        actual: ChunkId,
    },
    /// The body is shorter or longer than the signed size: nothing was stored.
    #[error("chunk {chunk}: expected {expected} bytes, received {received}")]
    IncompleteBody {
        /// The chunk the request named.
        chunk: ChunkId,
        /// The signed size.
        expected: u64,
        /// Bytes received (at least this many, when too long).
        received: u64,
    },
    /// The chunk file on disk failed verification; it has been quarantined
    /// and another replica should be used.
    #[error("chunk {chunk} is corrupt on this node: {reason}")]
    Corrupt {
        /// The chunk.
        chunk: ChunkId,
        /// What failed (block CRC, footer).
        reason: String,
    },
    /// Free space is below the configured minimum: the node takes no writes.
    #[error("node is read-only: {available} bytes free, minimum {min_free}")]
    NodeFull {
        /// Free bytes on the data disk.
        available: u64,
        /// The configured minimum.
        min_free: u64,
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
    /// A blocking disk task ended without an answer (it panicked or was
    /// cancelled at shutdown).
    #[error("disk task ended unexpectedly: {0}")]
    TaskFailed(String),
    /// The node's budget of bytes in flight stayed full: retry shortly.
    #[error(transparent)]
    Busy(#[from] blob_server::limits::Busy),
}

impl Error {
    /// Wraps an I/O error with the path it happened on.
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    /// True for an I/O error caused by a full disk.
    pub fn is_disk_full(&self) -> bool {
        matches!(self, Error::Io { source, .. } if is_enospc(source))
    }

    /// The HTTP status and code this error answers with.
    pub fn to_api(&self) -> ApiError {
        let (status, code) = match self {
            Error::InvalidChunkId(_) => (400, "InvalidChunkId"),
            Error::InvalidQuery(_) => (400, "InvalidArgument"),
            Error::Presign(_) => (403, "AccessDenied"),
            Error::ChunkNotFound(_) => (404, "NoSuchChunk"),
            Error::DigestMismatch { .. } => (400, "BadDigest"),
            Error::IncompleteBody { .. } => (400, "IncompleteBody"),
            Error::Corrupt { .. } => (500, "CorruptChunk"),
            Error::NodeFull { .. } => (507, "NodeFull"),
            Error::Io { source, .. } if is_enospc(source) => (507, "NodeFull"),
            Error::Io { .. } | Error::Serve(_) | Error::TaskFailed(_) => (500, "InternalError"),
            Error::Busy(_) => (503, "SlowDown"),
        };
        ApiError::new(status, code, self.to_string())
    }
}

pub(crate) fn is_enospc(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::StorageFull || e.raw_os_error() == Some(libc::ENOSPC)
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
