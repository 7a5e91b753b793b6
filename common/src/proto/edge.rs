//! The edge cache's API (data path; chunk reads authorized by pre-signed
//! URLs, exactly as on a datanode).
//!
//! - `GET|HEAD /v1/chunks/{id}?t=&s=` whole chunk or one `Range`, from the
//!   cache or filled from the signed origins; `ETag: "<id>"`,
//!   `If-None-Match` → 304, `Cache-Control: public, max-age=31536000, immutable`
//! - `POST /v1/warm` [`WarmRequest`] → [`WarmResponse`]: fill the cache
//!   with chunks named by pre-signed GET URLs (each one is verified, so
//!   only holders of namenode-issued URLs can fill the cache)
//! - `GET /v1/admin/stats?scope=stats&exp=&kid=&s=` → [`EdgeStats`]
//!   (a namenode-signed grant, see [`crate::presign::sign_edge_admin`])
//! - `GET /metrics` Prometheus text; `GET /v1/health`

use serde::{Deserialize, Serialize};

use crate::ChunkId;

/// One chunk to warm: its id and the token and signature of a pre-signed
/// GET URL for it (the `t` and `s` query parameters).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WarmChunk {
    /// The chunk.
    pub chunk: ChunkId,
    /// The URL's token.
    pub t: String,
    /// The URL's signature.
    pub s: String,
}

/// Body of `POST /v1/warm`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct WarmRequest {
    /// Chunks to bring into the cache.
    pub chunks: Vec<WarmChunk>,
}

/// Answer to `POST /v1/warm`, once every chunk was handled.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WarmResponse {
    /// Chunks asked for.
    pub requested: u64,
    /// Already cached (nothing fetched).
    pub cached: u64,
    /// Fetched from an origin (and cached, if the policy admitted them).
    pub filled: u64,
    /// Could not be fetched (the first few reasons are in `errors`).
    pub failed: u64,
    /// Why some failed (at most ten).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
}

/// One tier of an edge (memory or disk).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TierStats {
    /// Capacity, bytes.
    pub capacity: u64,
    /// Bytes held.
    pub used: u64,
    /// Chunks held.
    pub chunks: u64,
    /// Requests served from this tier.
    pub hits: u64,
    /// Bytes served from this tier.
    pub served_bytes: u64,
    /// Chunks evicted from this tier.
    pub evictions: u64,
}

/// Answer to `GET /v1/admin/stats`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EdgeStats {
    /// The edge's zone.
    pub zone: String,
    /// Its eviction policy (`lru`, `lfu`, `fifo`, `tinylfu`).
    pub policy: String,
    /// The memory tier.
    pub memory: TierStats,
    /// The disk tier.
    pub disk: TierStats,
    /// Requests that found the chunk in no tier.
    pub misses: u64,
    /// Requests that joined a fill already in flight.
    pub coalesced: u64,
    /// Fills from an origin started.
    pub fills: u64,
    /// Fills that failed on every origin.
    pub fill_failures: u64,
    /// Bytes read from origins.
    pub origin_bytes: u64,
    /// Bytes served to readers while a fill was in flight.
    pub fill_served_bytes: u64,
    /// Origin replicas whose bytes did not match the chunk id.
    pub corrupt_origins: u64,
    /// Chunks in flight from an origin now.
    pub fills_in_flight: u64,
}
