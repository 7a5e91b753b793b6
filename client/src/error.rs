//! The client library's one error type.
//!
//! Each variant says what the caller can do next: fix a name or an option,
//! retry later (transport trouble, replicas unavailable), re-read the file
//! (it changed underneath), or report a bug in a server (protocol). URLs in
//! errors never carry their query string: pre-signed URLs are credentials.

use blob_common::names::NameError;
use blob_common::ChunkId;

/// Everything that can go wrong in a client call.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A service answered with an error status and (usually) an
    /// [`ErrorBody`](blob_common::error::ErrorBody).
    #[error("{code} (HTTP {status}): {message}{}", request_id_suffix(request_id))]
    Api {
        /// HTTP status.
        status: u16,
        /// Stable machine-readable code, e.g. `NoSuchBucket`.
        code: String,
        /// Human-readable explanation from the server.
        message: String,
        /// The request's id, for finding it in the server's logs.
        request_id: String,
    },
    /// A bucket name or path was refused locally; nothing was sent.
    #[error(transparent)]
    InvalidName(#[from] NameError),
    /// The request could not be sent or its answer not received
    /// (connection refused or reset, timeout, truncated body). Retrying
    /// later may help.
    #[error("request to {url} failed")]
    Transport {
        /// The URL, without its query string.
        url: String,
        /// The underlying error (its URL removed).
        #[source]
        source: reqwest::Error,
    },
    /// A call got no complete answer within the time allowed for it
    /// ([`crate::ClientConfig::request_timeout`]). Not retried: the
    /// caller's time for the call is used up. Retrying later may help.
    #[error(
        "no answer from {url} within {}: the server is overloaded, stopped or unreachable",
        format_secs(*after)
    )]
    Timeout {
        /// The URL, without its query string.
        url: String,
        /// The time that was allowed.
        after: std::time::Duration,
    },
    /// A server answered something that does not follow the protocol
    /// (malformed JSON, a plan for other chunks than asked). A bug in that
    /// server or a version mismatch.
    #[error("unexpected answer from {url}: {detail}")]
    Protocol {
        /// The URL, without its query string.
        url: String,
        /// What was wrong.
        detail: String,
    },
    /// Bytes read back do not match the chunk's id or size.
    #[error("chunk {chunk}: {detail}")]
    Integrity {
        /// The chunk.
        chunk: ChunkId,
        /// What did not match.
        detail: String,
    },
    /// A local read or write failed.
    #[error("{context}")]
    Io {
        /// What was being done, e.g. `reading /tmp/x`.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The client configuration or the options of a call are not usable.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A chunk could not be transferred after every retry; `last` is the
    /// final failure. The cluster may be degraded: retry later.
    #[error("chunk {chunk}: gave up after {attempts} attempts")]
    Exhausted {
        /// The chunk.
        chunk: ChunkId,
        /// How many attempts were made.
        attempts: u32,
        /// The last failure.
        #[source]
        last: Box<Error>,
    },
    /// A chunk PUT stored fewer replicas than the session requires (a
    /// pipeline node failed); the upload retargets and retries.
    #[error(
        "chunk {chunk}: {stored} of {wanted} replicas stored{}",
        detail_suffix(detail)
    )]
    Underreplicated {
        /// The chunk.
        chunk: ChunkId,
        /// Replicas with receipts so far.
        stored: usize,
        /// Replicas the session requires.
        wanted: u8,
        /// Why pipeline nodes failed, as they reported it.
        detail: String,
    },
    /// The namenode lists no replica to read a chunk from.
    #[error("chunk {chunk}: no replica available")]
    NoReplica {
        /// The chunk.
        chunk: ChunkId,
    },
    /// The file was replaced while it was being read; read it again.
    #[error("{bucket}/{path} changed while it was being read")]
    Changed {
        /// Bucket.
        bucket: String,
        /// Path.
        path: String,
    },
    /// A byte range starts past the end of the file.
    #[error("range starting at {start} is past the end of the file ({size} bytes)")]
    RangeNotSatisfiable {
        /// First byte asked for.
        start: u64,
        /// The file's size.
        size: u64,
    },
    /// An internal task panicked or was cancelled.
    #[error("internal task failed: {0}")]
    Task(String),
    /// The file is encrypted with a customer's key (SSE-C) and none was
    /// given ([`crate::Client::with_customer_key`]).
    #[error("{bucket}/{path} is encrypted with a customer key; give that key to read it")]
    KeyRequired {
        /// Bucket.
        bucket: String,
        /// Path.
        path: String,
    },
    /// The customer key given is not the one the file was encrypted with.
    #[error("{bucket}/{path} was encrypted with another customer key than the one given")]
    WrongKey {
        /// Bucket.
        bucket: String,
        /// Path.
        path: String,
    },
    /// The caller's [`crate::UploadOptions::before_commit`] check refused
    /// the upload; nothing was committed.
    #[error("upload refused before commit: {0}")]
    Refused(String),
}

fn detail_suffix(detail: &str) -> String {
    if detail.is_empty() {
        String::new()
    } else {
        format!(" ({detail})")
    }
}

/// `2 s`, `1.5 s`, `250 ms`.
fn format_secs(d: std::time::Duration) -> String {
    if d < std::time::Duration::from_secs(1) {
        format!("{} ms", d.as_millis())
    } else if d.subsec_millis() == 0 {
        format!("{} s", d.as_secs())
    } else {
        format!("{:.1} s", d.as_secs_f64())
    }
}

fn request_id_suffix(id: &str) -> String {
    if id.is_empty() {
        String::new()
    } else {
        format!(" (request id {id})")
    }
}

impl Error {
    /// True for a 404: no such bucket, file or upload session.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::Api { status: 404, .. })
    }

    /// True when the server refused because something already exists or is
    /// in the way (HTTP 409: bucket exists, bucket not empty, …).
    pub fn is_conflict(&self) -> bool {
        matches!(self, Error::Api { status: 409, .. })
    }

    /// The server's error code, if this is an [`Error::Api`].
    pub fn code(&self) -> Option<&str> {
        match self {
            Error::Api { code, .. } => Some(code),
            _ => None,
        }
    }

    /// True when the same call may succeed if tried again soon: transport
    /// failures, 5xx, 408 and 429. Any other 4xx is final, and so are
    /// answers that a retry a moment later cannot change: too few
    /// datanodes for the replication asked for (`NotEnoughNodes`), a full
    /// cluster (`ClusterFull`, 507), and a call that used up its
    /// [`Error::Timeout`].
    pub fn is_retryable(&self) -> bool {
        match self {
            // An untrusted certificate stays untrusted.
            Error::Transport { source, .. } => !blob_rpc::tls::is_certificate_error(source),
            Error::Api { status, code, .. } => {
                (*status >= 500 || *status == 408 || *status == 429)
                    && !matches!(code.as_str(), "NotEnoughNodes" | "ClusterFull")
            }
            _ => false,
        }
    }

    /// True when the server could not be reached at all (connection
    /// refused or timed out), as opposed to an answer or a broken transfer.
    pub(crate) fn is_unreachable(&self) -> bool {
        matches!(self, Error::Transport { source, .. } if source.is_connect() || (source.is_timeout() && !source.is_body()))
    }

    /// An I/O error with what was being done.
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    /// A transport error; the URL is stripped of its query (pre-signed URLs
    /// carry a signature there) and removed from the source error too.
    pub(crate) fn transport(url: &reqwest::Url, source: reqwest::Error) -> Self {
        Error::Transport {
            url: redact_url(url),
            source: source.without_url(),
        }
    }

    /// A call to `url` that got no answer within `after`.
    pub(crate) fn timeout(url: &reqwest::Url, after: std::time::Duration) -> Self {
        Error::Timeout {
            url: redact_url(url),
            after,
        }
    }

    /// A protocol error for `url`.
    pub(crate) fn protocol(url: &reqwest::Url, detail: impl Into<String>) -> Self {
        Error::Protocol {
            url: redact_url(url),
            detail: detail.into(),
        }
    }
}

pub(crate) use blob_rpc::{redact_str, redact_url};

impl From<blob_rpc::Error> for Error {
    /// A failed namenode call, in the variant that says what to do next.
    fn from(e: blob_rpc::Error) -> Self {
        match e {
            blob_rpc::Error::Api {
                status,
                code,
                message,
                request_id,
            } => Error::Api {
                status,
                code,
                message,
                request_id,
            },
            blob_rpc::Error::Transport { url, source } => Error::Transport { url, source },
            blob_rpc::Error::Protocol { url, detail } => Error::Protocol { url, detail },
            blob_rpc::Error::InvalidUrl { url, detail } => {
                Error::Config(format!("namenode URL {url:?}: {detail}"))
            }
            other => Error::Protocol {
                url: String::new(),
                detail: other.to_string(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retryable_statuses() {
        let api = |status| Error::Api {
            status,
            code: "X".into(),
            message: "m".into(),
            request_id: String::new(),
        };
        assert!(api(500).is_retryable());
        assert!(api(503).is_retryable());
        assert!(api(408).is_retryable());
        assert!(api(429).is_retryable());
        assert!(!api(400).is_retryable());
        assert!(!api(403).is_retryable());
        assert!(!api(409).is_retryable());
        let coded = |status, code: &str| Error::Api {
            status,
            code: code.into(),
            message: "m".into(),
            request_id: String::new(),
        };
        assert!(!coded(503, "NotEnoughNodes").is_retryable());
        assert!(!coded(507, "ClusterFull").is_retryable());
        assert!(coded(503, "SlowDown").is_retryable());
        let url = reqwest::Url::parse("http://nn:1/v1/file?bucket=b&sig=secret")
            .unwrap_or_else(|e| panic!("{e}"));
        let t = Error::timeout(&url, std::time::Duration::from_secs(2));
        assert!(!t.is_retryable());
        let text = t.to_string();
        assert!(
            text.contains("within 2 s") && !text.contains("secret"),
            "{text}"
        );
        assert!(api(404).is_not_found());
        assert!(!api(403).is_not_found());
        assert_eq!(api(409).to_string(), "X (HTTP 409): m");
    }
}
