//! The datanode's chunk API (data path; authorized by pre-signed URLs).
//!
//! - `PUT /v1/chunks/{id}?t=&s=[&hop=]` body = the chunk → [`PutChunkResponse`]
//! - `GET /v1/chunks/{id}?t=&s=` whole chunk, or one `Range: bytes=a-b`
//! - `GET /metrics` Prometheus text; `GET /v1/health`

use serde::{Deserialize, Serialize};

use crate::presign::Receipt;
use crate::{ChunkId, NodeId};

/// A node of the pipeline that did not store the chunk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PipelineFailure {
    /// The node.
    pub node: NodeId,
    /// Why.
    pub error: String,
}

/// Answer to a chunk PUT: one receipt per node of the pipeline (from this
/// hop on) that durably stored it, and the nodes that failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PutChunkResponse {
    /// The chunk.
    pub chunk: ChunkId,
    /// Receipts, in pipeline order.
    pub receipts: Vec<Receipt>,
    /// Downstream nodes that failed.
    #[serde(default)]
    pub failed: Vec<PipelineFailure>,
}
