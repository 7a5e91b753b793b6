//! The namenode's client API: buckets, files, upload sessions.
//!
//! Routes (all signed, see [`crate::auth`]; errors are [`crate::error::ErrorBody`]).
//! File paths travel in the query string (`?bucket=&path=`), never in the URL
//! path, so no URL normalisation can change them.
//! - `GET /v1/buckets` → [`ListBuckets`]; `PUT /v1/buckets/{bucket}` → [`BucketInfo`]
//!   (409 `BucketAlreadyExists`); `HEAD /v1/buckets/{bucket}` (200/404);
//!   `DELETE /v1/buckets/{bucket}` → 204 (409 `BucketNotEmpty`, 404 `NoSuchBucket`)
//! - `GET /v1/buckets/{bucket}/files?prefix=&delimiter=&start_after=&limit=` → [`ListFiles`]
//! - `GET /v1/file?bucket=&path=` → [`FileInfo`] (404 `NoSuchFile`);
//!   `GET /v1/file/locations?bucket=&path=[&zone=][&first=&limit=]` → [`FileLocations`]
//!   (with edges configured, each chunk's first URL is an edge's; paged
//!   with `first`/`limit`, see [`MAX_PAGE`]);
//!   `DELETE /v1/file?bucket=&path=` → 204
//! - `POST /v1/rename` [`RenameRequest`] → [`FileInfo`]
//! - `POST /v1/uploads` [`CreateUpload`] → [`UploadPlan`];
//!   `POST /v1/uploads/{id}/chunks` [`ChunkBatch`] → [`UploadPlan`];
//!   `POST /v1/uploads/{id}/retarget` [`Retarget`] → [`PutTarget`];
//!   `POST /v1/uploads/{id}/manifest` [`ManifestPage`] → 204;
//!   `POST /v1/uploads/{id}/commit` [`CommitUpload`] → [`FileInfo`]
//!   (409 `MissingReplicas` when a new chunk lacks receipts);
//!   `DELETE /v1/uploads/{id}` → 204 (404 `NoSuchUpload`)
//! - `POST /v1/chunks/bad` [`BadReplica`] → 204 (users and edges)
//! - `POST /v1/chunks/locations` [`LocateChunks`] → [`LocatedChunks`]
//!   (edges with cluster credentials, and admin keys: warm-up by chunk id)
//! - `GET /v1/admin/edges` → [`ListEdges`] (admin keys only)
//! - `GET /v1/admin/nodes` → [`ListNodes`]; `GET /v1/admin/status` → [`ClusterStatus`];
//!   `GET /v1/admin/fsck?bucket=&prefix=` → [`FsckReport`];
//!   `POST /v1/admin/decommission` [`Decommission`] → [`NodeStatus`] (admin keys only)

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::presign::Receipt;
use crate::{ChunkId, NodeId, UploadId};

/// A bucket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BucketInfo {
    /// Its name.
    pub name: String,
    /// Creation time, ms since the epoch.
    pub created_ms: u64,
}

/// Answer to `GET /v1/buckets`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ListBuckets {
    /// Every bucket, by name.
    pub buckets: Vec<BucketInfo>,
}

/// One chunk of a file: its id and length. Offsets follow from the order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkRef {
    /// SHA-256 of the chunk.
    pub id: ChunkId,
    /// Length in bytes.
    pub size: u64,
}

/// A committed file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileInfo {
    /// Bucket.
    pub bucket: String,
    /// Path inside the bucket.
    pub path: String,
    /// Total size in bytes.
    pub size: u64,
    /// Commit time, ms since the epoch.
    pub created_ms: u64,
    /// The upload that wrote this version.
    pub version: UploadId,
    /// Replication factor asked for.
    pub replication: u8,
    /// Chunk size the writer used (the last chunk may be shorter).
    pub chunk_size: u64,
    /// The chunks, in order.
    pub chunks: Vec<ChunkRef>,
    /// User metadata (content type, S3 `x-amz-meta-*`, …).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub meta: BTreeMap<String, String>,
    /// Its version id, for a version written while its bucket's
    /// versioning was enabled (`None`: S3's "null" version).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_id: Option<String>,
}

/// One row of a listing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// Path inside the bucket.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// Commit time, ms since the epoch.
    pub created_ms: u64,
    /// Version id.
    pub version: UploadId,
    /// S3 ETag (unquoted), when the writer stored one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
}

/// Query of `GET /v1/buckets/{bucket}/files`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ListFilesQuery {
    /// Only paths starting with this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// Roll paths up at the first delimiter after the prefix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delimiter: Option<String>,
    /// Only paths (or common prefixes) after this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_after: Option<String>,
    /// At most this many entries plus common prefixes (default and cap 1000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
}

/// Answer to a listing.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ListFiles {
    /// Files, in byte order of path.
    pub files: Vec<FileEntry>,
    /// Rolled-up prefixes (each ends with the delimiter).
    pub common_prefixes: Vec<String>,
    /// When set, more remain: pass this as `start_after`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_start_after: Option<String>,
}

/// A replica to read a chunk from, with its pre-signed GET URL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaUrl {
    /// The datanode (for an edge: an id derived from its URL, see
    /// [`edge_node_id`]).
    pub node: NodeId,
    /// Pre-signed GET URL.
    pub url: String,
    /// Set when the URL points at an edge cache (its zone), not at a
    /// datanode: a reader falls back to the next URL if the edge fails,
    /// and never reports an edge as a bad replica.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edge: Option<String>,
}

/// The id an edge's URLs carry in [`ReplicaUrl::node`]: the first 8 bytes
/// of the SHA-256 of its base URL (stable, and distinct from datanodes').
pub fn edge_node_id(url: &str) -> NodeId {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(url.trim_end_matches('/').as_bytes());
    let mut id = [0u8; 8];
    id.copy_from_slice(&digest[..8]);
    NodeId(id)
}

/// Where one chunk of a file can be read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkLocation {
    /// SHA-256 of the chunk.
    pub id: ChunkId,
    /// Length.
    pub size: u64,
    /// Offset of the chunk in the file.
    pub offset: u64,
    /// Replicas, best first (live and least loaded).
    pub replicas: Vec<ReplicaUrl>,
}

/// Answer to `GET /v1/locations/...`: the file plus a URL per replica.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileLocations {
    /// The file. In a paged answer (`limit` given) its `chunks` list is
    /// empty: the pages' `chunks` carry it.
    pub file: FileInfo,
    /// Its chunks with locations, in order (from `first` in a paged answer).
    pub chunks: Vec<ChunkLocation>,
    /// Paged answers: the index of the next page's first chunk, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<u64>,
    /// True when the query named the file's current version
    /// (`unless_version`): `chunks` is then empty, and the asker's copy of
    /// the locations still holds.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unchanged: bool,
}

/// Query naming one file: `?bucket=&path=`, and for locations the
/// reader's zone (`&zone=`), which picks the edge its URLs point at.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FileQuery {
    /// Bucket.
    pub bucket: String,
    /// Path inside the bucket.
    pub path: String,
    /// The reader's zone (locations only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
    /// Locations only: URLs of the datanodes alone, whatever the zone and
    /// the edges configured (a reader next to the datanodes, or one
    /// comparing the two paths).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub direct: bool,
    /// Locations only: index of the first chunk to locate (paging).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first: Option<u64>,
    /// Locations only: at most this many chunks (capped at [`MAX_PAGE`]);
    /// absent: every chunk in one answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
    /// A version id of the file (versioned buckets; `null` for the null
    /// version) instead of the current version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Locations only: the version the asker already has locations for;
    /// when it is still the file's version the answer is the file alone,
    /// marked [`FileLocations::unchanged`] (nothing located or signed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unless_version: Option<UploadId>,
}

/// Body of `POST /v1/chunks/locations`: chunks to locate by id (an edge
/// warming its cache from a list of chunk ids).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LocateChunks {
    /// The chunks.
    pub chunks: Vec<ChunkId>,
    /// The reader's zone, as for file locations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
}

/// Answer to `POST /v1/chunks/locations`: the chunks the namenode knows,
/// in the order asked (unknown ids are left out), each with offset 0.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LocatedChunks {
    /// The chunks found.
    pub chunks: Vec<ChunkLocation>,
}

/// An edge cache the namenode hands out URLs for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EdgeInfo {
    /// Its zone.
    pub zone: String,
    /// Its base URL.
    pub url: String,
}

/// Answer to `GET /v1/admin/edges`: the configured edges, in preference
/// order, each with a short-lived signed query for its admin routes.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ListEdges {
    /// The edges.
    pub edges: Vec<EdgeInfo>,
    /// Query string granting `GET {edge}/v1/admin/stats` (see
    /// [`crate::presign::EdgeAdminQuery`]).
    pub stats_query: String,
}

/// Body of `POST /v1/rename`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RenameRequest {
    /// Bucket.
    pub bucket: String,
    /// Existing path.
    pub from: String,
    /// New path; an existing file there is replaced.
    pub to: String,
}

/// Body of `POST /v1/file/meta`: changes a file's metadata in place (its
/// chunks, ETag and time stay). The record gets a new `version`, so that
/// readers that keep what they looked up see the change. 412
/// `PreconditionFailed` when `if_version` is not the current version.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct UpdateMeta {
    /// Bucket.
    pub bucket: String,
    /// Path.
    pub path: String,
    /// Only if this is the file's version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub if_version: Option<UploadId>,
    /// Entries to add or replace.
    #[serde(default)]
    pub set: BTreeMap<String, String>,
    /// Entries to remove.
    #[serde(default)]
    pub remove: Vec<String>,
}

/// Body of `POST /v1/uploads`: opens a session, optionally with a first batch.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CreateUpload {
    /// Bucket.
    pub bucket: String,
    /// Path the commit will write.
    pub path: String,
    /// Replication factor (default: the namenode's, 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replication: Option<u8>,
    /// Chunk size the client cuts at.
    pub chunk_size: u64,
    /// First batch of chunk ids.
    #[serde(default)]
    pub chunks: Vec<ChunkRef>,
}

/// A pre-signed PUT for one chunk: send the bytes to `url` (the primary),
/// which forwards along `targets`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PutTarget {
    /// Pre-signed PUT URL on the primary.
    pub url: String,
    /// Every node of the pipeline, primary first.
    pub targets: Vec<NodeId>,
}

/// The namenode's answer for one chunk of a batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkPlan {
    /// The chunk.
    pub id: ChunkId,
    /// `None`: already stored in this bucket, nothing to send.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub put: Option<PutTarget>,
}

/// Answer to opening a session or sending a batch.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UploadPlan {
    /// The session.
    pub upload: UploadId,
    /// Replication factor the session will commit with.
    pub replication: u8,
    /// Replicas a chunk needs before its write counts (the write quorum,
    /// a majority of `replication` by default); the namenode repairs the
    /// rest. 0 (older namenodes): all of `replication`.
    #[serde(default)]
    pub min_replicas: u8,
    /// One plan per chunk of the batch, in order.
    pub chunks: Vec<ChunkPlan>,
}

/// Body of `POST /v1/uploads/{id}/chunks`: more chunk ids, plus receipts of
/// chunks stored since the last call (so a resumed upload skips them).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ChunkBatch {
    /// Chunks to plan.
    #[serde(default)]
    pub chunks: Vec<ChunkRef>,
    /// Receipts from datanodes for chunks already sent.
    #[serde(default)]
    pub receipts: Vec<Receipt>,
}

/// Body of `POST /v1/uploads/{id}/retarget`: a new pipeline for a chunk whose
/// pipeline failed, avoiding nodes that hold it or failed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Retarget {
    /// The chunk.
    pub chunk: ChunkRef,
    /// Nodes that already hold it (receipts in hand).
    #[serde(default)]
    pub have: Vec<NodeId>,
    /// Nodes that failed.
    #[serde(default)]
    pub exclude: Vec<NodeId>,
}

/// Most chunks, receipts or locations in one control request or answer:
/// longer lists go in pages (a commit's chunk list as [`ManifestPage`]s, a
/// file's locations with `first`/`limit`, a datanode's full report by id
/// range).
pub const MAX_PAGE: usize = 10_000;

/// A bucket's named setting: body of `PUT /v1/buckets/{bucket}/settings/{name}`
/// and answer of `GET /v1/bucket-settings/{bucket}/{name}` (404
/// `NoSuchSetting` when unset). The namenode keeps the value as given (the
/// S3 gateway keeps a bucket's CORS rules as JSON under `cors`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BucketSetting {
    /// The value, at most 64 KiB.
    pub value: String,
}

/// Body of `POST /v1/uploads/{id}/manifest`: one page of the chunk list a
/// later commit names with [`CommitUpload::manifest`]. Pages are staged in
/// order; sending a page again (a retry) replaces it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ManifestPage {
    /// Index in the file's chunk list of the page's first chunk.
    pub start: u64,
    /// At most [`MAX_PAGE`] chunks.
    pub chunks: Vec<ChunkRef>,
}

/// Body of `POST /v1/uploads/{id}/commit`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CommitUpload {
    /// Every chunk of the file, in order (at most [`MAX_PAGE`]; longer lists
    /// are staged as manifest pages and named by `manifest`).
    #[serde(default)]
    pub chunks: Vec<ChunkRef>,
    /// The file's chunk list is the session's staged manifest, of this many
    /// chunks (`chunks` is then empty).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest: Option<u64>,
    /// Receipts not yet reported.
    #[serde(default)]
    pub receipts: Vec<Receipt>,
    /// User metadata to store with the file.
    #[serde(default)]
    pub meta: BTreeMap<String, String>,
    /// Commit into this part of a multipart upload instead of writing the
    /// file (`meta["etag"]` is then the part's MD5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub part: Option<crate::proto::multipart::PartTarget>,
    /// Commit only if the file now at the path meets this (checked
    /// atomically with the commit; 412 `PreconditionFailed` otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub condition: Option<WriteCondition>,
}

/// A condition on the version a write replaces, checked at its commit
/// (S3's conditional writes). A file written while the upload was under
/// way that makes the condition fail is a conflict (409
/// `ConditionalRequestConflict`: retry), one there before it a failed
/// precondition (412 `PreconditionFailed`); a missing file for `Etag` is
/// 404 `NoSuchFile`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WriteCondition {
    /// Only if no file exists at the path (`If-None-Match: *`).
    Absent,
    /// Only if the file at the path has this ETag (`If-Match`), without
    /// quotes: its stored `etag` metadata, or its version for a file that
    /// has none.
    Etag(String),
}

/// Body of `POST /v1/chunks/bad`: a reader found a replica that does not
/// match its id. A claim, not a verdict: the replica becomes suspect, its
/// holder re-verifies it, and only a confirmed mismatch takes it out
/// (answered 204 either way; 429 past the reporter's rate limit).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BadReplica {
    /// The chunk (its id is the SHA-256 the reader expected).
    pub chunk: ChunkId,
    /// The node that served bad bytes.
    pub node: NodeId,
    /// What was wrong.
    pub reason: String,
    /// The SHA-256 the reader computed over what it received, when it got
    /// the whole chunk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actual: Option<ChunkId>,
}

/// One datanode as the namenode sees it (`GET /v1/admin/nodes`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStatus {
    /// The node.
    pub node: NodeId,
    /// Base URL.
    pub url: String,
    /// `live`, `stale` or `dead`.
    pub state: String,
    /// Milliseconds since its last heartbeat (absent: none since start).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heartbeat_age_ms: Option<u64>,
    /// Disk capacity, bytes.
    pub capacity: u64,
    /// Bytes used by chunks.
    pub used: u64,
    /// Bytes free.
    pub available: u64,
    /// Chunks held.
    pub chunk_count: u64,
    /// Transfers in progress.
    pub load: u64,
    /// Takes no writes.
    pub read_only: bool,
}

/// Answer to `GET /v1/admin/nodes`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ListNodes {
    /// Every datanode known.
    pub nodes: Vec<NodeStatus>,
}

/// Answer to `GET /v1/admin/status`: nodes and chunk health at a glance.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ClusterStatus {
    /// Every datanode known.
    pub nodes: Vec<NodeStatus>,
    /// Chunks with a metadata record.
    pub chunks: u64,
    /// Chunks with fewer live replicas than their files ask for.
    pub under_replicated: u64,
    /// Chunks with no live replica at all.
    pub missing: u64,
    /// Replicas reported corrupt and not yet replaced.
    pub corrupt: u64,
    /// Replica copies in flight.
    pub copies_in_flight: u64,
    /// Chunks waiting for garbage collection (no references left).
    pub garbage: u64,
}

/// Query of `GET /v1/admin/fsck`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct FsckQuery {
    /// Only this bucket (all buckets if absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bucket: Option<String>,
    /// Only paths starting with this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
}

/// One file with trouble, in an fsck report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FsckFile {
    /// Bucket.
    pub bucket: String,
    /// Path.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// Replication factor asked for.
    pub replication: u8,
    /// Chunks with no live replica.
    pub missing: Vec<ChunkId>,
    /// Chunks with fewer live replicas than asked for.
    pub under_replicated: Vec<ChunkId>,
    /// Chunks with a replica reported corrupt.
    pub corrupt: Vec<ChunkId>,
}

/// Answer to `GET /v1/admin/fsck`, HDFS-fsck style.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct FsckReport {
    /// Files looked at.
    pub files: u64,
    /// Chunk references looked at.
    pub chunks: u64,
    /// Files with at least one missing chunk.
    pub missing_files: u64,
    /// Files with an under-replicated (but not missing) chunk.
    pub under_replicated_files: u64,
    /// Files with a corrupt replica.
    pub corrupt_files: u64,
    /// Every file with trouble.
    pub problems: Vec<FsckFile>,
}

impl FsckReport {
    /// True when nothing is missing, under-replicated or corrupt.
    pub fn healthy(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Body of `POST /v1/admin/decommission`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Decommission {
    /// The node to drain.
    pub node: NodeId,
}

/// Answer to `DELETE /v1/file` in a bucket whose versioning was turned
/// on, or to a delete of one version (`?version=`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct DeleteOutcome {
    /// The delete marker made, or the version removed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_id: Option<String>,
    /// Whether that is a delete marker.
    #[serde(default)]
    pub delete_marker: bool,
}

/// Query of `GET /v1/buckets/{bucket}/versions`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ListVersionsQuery {
    /// Only paths starting with this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// Resume after this path (all its versions, without a version
    /// marker).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_marker: Option<String>,
    /// With `key_marker`: resume after this version of it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_marker: Option<String>,
    /// At most this many versions (default and cap 1000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
}

/// One version in [`ListVersions`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionEntry {
    /// Path.
    pub path: String,
    /// Version id (`null` for the null version).
    pub version_id: String,
    /// Whether it is the newest version of its path.
    pub latest: bool,
    /// Whether it is a delete marker.
    pub delete_marker: bool,
    /// Bytes.
    pub size: u64,
    /// When it was written, ms since the epoch.
    pub created_ms: u64,
    /// Its ETag, when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
}

/// Answer to `GET /v1/buckets/{bucket}/versions`: path order, and for
/// each path the current version first, then newest first.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ListVersions {
    /// The versions.
    pub versions: Vec<VersionEntry>,
    /// More follow.
    #[serde(default)]
    pub truncated: bool,
    /// Where the next page starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_key_marker: Option<String>,
    /// Where the next page starts (with `next_key_marker`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_version_marker: Option<String>,
}
