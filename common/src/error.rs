//! The JSON error body every service answers with (servers build it from
//! `blob_server::ApiError`; clients read it).

use serde::{Deserialize, Serialize};

/// Body of every error response: `{"code", "message", "request_id"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// Stable machine-readable code, e.g. `NoSuchBucket`.
    pub code: String,
    /// Human-readable explanation.
    pub message: String,
    /// The request's id, for finding it in logs.
    #[serde(default)]
    pub request_id: String,
}
