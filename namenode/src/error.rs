//! The namenode's error type and its mapping to HTTP.

use blob_common::auth::AuthError;
use blob_common::names::NameError;
use blob_common::presign::PresignError;
use blob_common::ChunkId;
use blob_server::ApiError;

/// Everything a namenode call can fail with. Each variant maps to one HTTP
/// status and code; a client's mistake is always a 4xx.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Credentials missing or wrong.
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// The caller may not do this (e.g. a user calling a datanode route).
    #[error("access denied: {0}")]
    Forbidden(String),
    /// A bucket or path breaks the naming rules.
    #[error(transparent)]
    Name(#[from] NameError),
    /// A request that makes no sense.
    #[error("{0}")]
    BadRequest(String),
    /// No such bucket.
    #[error("bucket {0:?} does not exist")]
    NoSuchBucket(String),
    /// The bucket exists already.
    #[error("bucket {0:?} already exists")]
    BucketExists(String),
    /// The bucket still holds files.
    #[error("bucket {0:?} is not empty")]
    BucketNotEmpty(String),
    /// No such file.
    #[error("{bucket}/{path} does not exist")]
    NoSuchFile {
        /// Bucket.
        bucket: String,
        /// Path.
        path: String,
    },
    /// The bucket has no such setting.
    #[error("{0}")]
    NoSuchSetting(String),
    /// No such (open) upload session.
    #[error("upload {0} does not exist (committed, aborted or expired)")]
    NoSuchUpload(String),
    /// A commit named chunks that were not uploaded with enough replicas.
    #[error("{count} chunk(s) lack replicas, e.g. {first} has {have} of {want}")]
    MissingReplicas {
        /// How many chunks are short.
        count: usize,
        /// The first one.
        first: ChunkId,
        /// Replicas it has.
        have: usize,
        /// Replicas needed.
        want: usize,
    },
    /// A receipt failed verification.
    #[error("invalid receipt: {0}")]
    BadReceipt(#[from] PresignError),
    /// Fewer live datanodes than the replication factor asks for.
    #[error("not enough live datanodes: need {want}, {live} available")]
    NotEnoughNodes {
        /// Nodes needed.
        want: usize,
        /// Nodes available.
        live: usize,
    },
    /// A multipart complete named a part that is missing or whose ETag
    /// differs.
    #[error("invalid part: {0}")]
    InvalidPart(String),
    /// A multipart complete listed parts out of order.
    #[error("invalid part order: {0}")]
    InvalidPartOrder(String),
    /// A part other than the last is below the minimum size.
    #[error("part too small: {0}")]
    EntityTooSmall(String),
    /// A multipart complete request that makes no sense.
    #[error("malformed complete request: {0}")]
    MalformedComplete(String),
    /// A conditional write whose condition did not hold.
    #[error("precondition failed: {0}")]
    PreconditionFailed(String),
    /// A conditional write whose condition was broken by another write
    /// made while it was under way; retry.
    #[error("conditional write conflict: {0}")]
    ConditionalConflict(String),
    /// No version with that id of that file.
    #[error("no version {version} of {bucket}/{path}")]
    NoSuchVersion {
        /// Bucket.
        bucket: String,
        /// Path.
        path: String,
        /// The version asked for.
        version: String,
    },
    /// The version asked for is a delete marker: it has no bytes.
    #[error("version {0} is a delete marker")]
    DeleteMarker(String),
    /// A part copy whose source has no single-part MD5.
    #[error("cannot copy as a part: {0}")]
    NotCopyable(String),
    /// Not enough datanodes with free space.
    #[error(
        "cluster full: need {want} datanodes with free space, {writable} have room ({full} full)"
    )]
    ClusterFull {
        /// Nodes needed.
        want: usize,
        /// Nodes with room.
        writable: usize,
        /// Nodes that are full.
        full: usize,
    },
    /// No such access key.
    #[error("no such access key: {0}")]
    NoSuchKey(String),
    /// The key is past its rate limit; retry after a second.
    #[error("slow down: {0}")]
    RateLimited(String),
    /// The change would take a bucket past its quota.
    #[error("quota exceeded: {0}")]
    QuotaExceeded(String),
    /// The caller sends more than its rate allows; retry later.
    #[error("slow down: {0}")]
    SlowDown(String),
    /// RocksDB failed.
    #[error("metadata store: {context}: {source}")]
    Db {
        /// What was being done.
        context: String,
        /// The cause.
        #[source]
        source: rocksdb::Error,
    },
    /// A stored record could not be decoded.
    #[error("corrupt metadata: {0}")]
    Corrupt(String),
    /// Anything else on the server's side (I/O, a task that died).
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    fn api(&self) -> ApiError {
        let (status, code) = match self {
            Error::Auth(e) => (
                e.status(),
                match e {
                    AuthError::Missing | AuthError::Malformed(_) => "Unauthenticated",
                    AuthError::UnknownKey(_) => "InvalidAccessKeyId",
                    AuthError::Skewed { .. } => "RequestTimeTooSkewed",
                    AuthError::BodyMismatch => "BadDigest",
                    AuthError::SessionExpired => "ExpiredToken",
                    _ => "SignatureDoesNotMatch",
                },
            ),
            Error::Forbidden(_) => (403, "AccessDenied"),
            Error::Name(NameError::Bucket { .. }) => (400, "InvalidBucketName"),
            Error::Name(_) => (400, "InvalidPath"),
            Error::BadRequest(_) => (400, "BadRequest"),
            Error::NoSuchBucket(_) => (404, "NoSuchBucket"),
            Error::BucketExists(_) => (409, "BucketAlreadyExists"),
            Error::BucketNotEmpty(_) => (409, "BucketNotEmpty"),
            Error::NoSuchFile { .. } => (404, "NoSuchFile"),
            Error::NoSuchUpload(_) => (404, "NoSuchUpload"),
            Error::NoSuchSetting(_) => (404, "NoSuchSetting"),
            Error::MissingReplicas { .. } => (409, "MissingReplicas"),
            Error::InvalidPart(_) => (400, "InvalidPart"),
            Error::InvalidPartOrder(_) => (400, "InvalidPartOrder"),
            Error::EntityTooSmall(_) => (400, "EntityTooSmall"),
            Error::MalformedComplete(_) => (400, "MalformedXML"),
            Error::NotCopyable(_) => (400, "NotCopyable"),
            Error::NoSuchVersion { .. } => (404, "NoSuchVersion"),
            Error::DeleteMarker(_) => (405, "MethodNotAllowed"),
            Error::PreconditionFailed(_) => (412, "PreconditionFailed"),
            Error::ConditionalConflict(_) => (409, "ConditionalRequestConflict"),
            Error::BadReceipt(_) => (403, "InvalidReceipt"),
            Error::NotEnoughNodes { .. } => (503, "NotEnoughNodes"),
            Error::ClusterFull { .. } => (507, "ClusterFull"),
            Error::SlowDown(_) => (429, "SlowDown"),
            Error::QuotaExceeded(_) => (403, "QuotaExceeded"),
            Error::RateLimited(_) => (503, "SlowDown"),
            Error::NoSuchKey(_) => (404, "NoSuchAccessKey"),
            Error::Db { .. } | Error::Corrupt(_) | Error::Internal(_) => (500, "InternalError"),
        };
        ApiError::new(status, code, self.to_string())
    }
}

impl axum::response::IntoResponse for Error {
    fn into_response(self) -> axum::response::Response {
        let limited = matches!(self, Error::RateLimited(_));
        let mut resp = self.api().into_response();
        if limited {
            resp.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from_static("1"),
            );
        }
        resp
    }
}
