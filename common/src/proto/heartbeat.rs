//! Datanode → namenode control messages, signed with the cluster keyring.
//!
//! - `POST /v1/datanodes/heartbeat` [`Heartbeat`] → [`HeartbeatResponse`]
//!   (also registers a node the namenode has not seen)
//! - `POST /v1/datanodes/report` [`ChunkReport`]

use serde::{Deserialize, Serialize};

use crate::proto::namenode::ChunkRef;
use crate::{ChunkId, NodeId};

/// A datanode's periodic state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heartbeat {
    /// The node.
    pub node: NodeId,
    /// Base URL clients reach it at.
    pub url: String,
    /// Bytes the data disk holds in all.
    pub capacity: u64,
    /// Bytes used by chunks.
    pub used: u64,
    /// Bytes free on the data disk.
    pub available: u64,
    /// Chunks stored.
    pub chunk_count: u64,
    /// Transfers in progress (reads + writes).
    pub load: u64,
    /// True when the node takes no new writes (disk full or failing).
    #[serde(default)]
    pub read_only: bool,
}

/// Work the namenode hands a datanode in its heartbeat answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Command {
    /// Send a full chunk report now (the namenode lost track of this node).
    Report,
    /// Copy a local chunk to other datanodes: read it (verifying it), PUT
    /// it to `url` (a pre-signed PUT whose pipeline is the targets), and let
    /// the targets report what they received. Used for re-replication and
    /// decommission.
    Copy {
        /// The chunk.
        chunk: ChunkId,
        /// Its size.
        size: u64,
        /// Pre-signed PUT URL on the first target.
        url: String,
        /// Every target node, pipeline order.
        targets: Vec<NodeId>,
    },
    /// Re-verify local chunks (a reader claimed they are corrupt): read each
    /// whole, check its CRCs and SHA-256; a mismatch quarantines it and is
    /// reported in `corrupt`, a match in `verified`.
    Verify {
        /// The chunks.
        chunks: Vec<ChunkId>,
    },
    /// Delete local chunks (garbage, excess or orphan replicas). A chunk
    /// written or re-written after `issued_ms` (a concurrent upload stored it
    /// again) is kept.
    Delete {
        /// The chunks.
        chunks: Vec<ChunkId>,
        /// When the namenode decided, ms since the epoch.
        issued_ms: u64,
    },
}

/// Answer to a heartbeat.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct HeartbeatResponse {
    /// Commands to carry out.
    #[serde(default)]
    pub commands: Vec<Command>,
}

/// The slice of chunk ids one page of a full report covers, in byte order
/// of the ids: from `start` (inclusive; none: from the first id) to `end`
/// (exclusive; none: past the last id). Pages of at most
/// [`crate::proto::namenode::MAX_PAGE`] chunks cover the whole id space.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportRange {
    /// First id covered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<ChunkId>,
    /// First id past the page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<ChunkId>,
}

impl ReportRange {
    /// Whether `id` falls in the range.
    pub fn contains(&self, id: &ChunkId) -> bool {
        self.start.is_none_or(|s| id.as_bytes() >= s.as_bytes())
            && self.end.is_none_or(|e| id.as_bytes() < e.as_bytes())
    }
}

/// Chunks a node holds (full report) or gained/lost (incremental).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChunkReport {
    /// The node.
    pub node: NodeId,
    /// True: `chunks` is everything the node holds (within `range`).
    pub full: bool,
    /// A page of a full report: the ids it covers (none: all of them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub range: Option<ReportRange>,
    /// Chunks held (full) or received since the last report.
    #[serde(default)]
    pub chunks: Vec<ChunkRef>,
    /// Chunks deleted since the last report.
    #[serde(default)]
    pub deleted: Vec<ChunkId>,
    /// Chunks found corrupt (by a read or the scrubber) and quarantined
    /// since the last report; also listed in `deleted`.
    #[serde(default)]
    pub corrupt: Vec<ChunkId>,
    /// Chunks re-verified good on the namenode's request ([`Command::Verify`])
    /// since the last report.
    #[serde(default)]
    pub verified: Vec<ChunkId>,
}
