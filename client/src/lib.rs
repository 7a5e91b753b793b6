//! Client library of the blob store.
//!
//! This crate owns everything a user-side program needs: signed metadata
//! calls to the namenode (module `namenode`, methods on [`Client`]), parallel
//! chunk transfers straight to the datanodes with retries and verification
//! (module `transfer`: [`Client::upload`], [`Client::download`],
//! [`Client::read_range`]), the client configuration ([`config`]) and
//! chunk-by-chunk upload sessions for writers that compose a file
//! themselves ([`session`]). Everything goes through [`Client`], so tests
//! and other crates (`blobctl`, the S3 gateway, the FUSE mount in
//! `blob-mount`) drive it the same way. It has no command line, terminal or
//! FUSE code, so what links it links none of that.
//!
//! With edge caches configured at the namenode, each chunk's first URL
//! points at the edge of the client's zone ([`ClientConfig::zone`]) and
//! the datanodes' follow: an edge that fails is skipped for a while and
//! the datanodes are read directly, so every read path (download, range
//! reads, the S3 gateway and the mount above them) goes through the edge
//! and survives its loss.
//!
//! Flow of an upload: the input is cut into chunks and each is hashed
//! (SHA-256 = chunk id) → batches of ids go to the namenode, which answers
//! "already stored" or a pre-signed PUT per chunk → chunks are PUT in
//! parallel to their primary datanode, which forwards along the pipeline and
//! returns one receipt per durable replica → receipts are reported as they
//! arrive (so re-running an interrupted upload sends only what is missing)
//! → the commit makes the file visible atomically. A download fetches the
//! chunk list with pre-signed GET URLs, fetches chunks in parallel, checks
//! each against its id and writes them in order.
//!
//! What this crate must never do: send chunk bytes through the namenode,
//! hold more than `parallel` chunks in memory, log or display a secret or a
//! pre-signed URL's query (its signature), or abort an upload session on an
//! error (that would throw away what a retry could resume from).
#![warn(missing_docs)]

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncWrite};

pub mod aligned;
pub mod config;
mod edge;
pub mod error;
mod namenode;
mod objects;
pub mod session;
pub mod sse;
mod transfer;

pub use blob_common::proto::edge::{EdgeStats, TierStats, WarmResponse};
pub use blob_common::proto::keys::{
    BucketDetails, BucketGrant, CreateKey, GrantChange, KeyCreated, KeyDetails, KeyGrant,
    KeyLimits, KeySummary, ListKeys, Permissions, Quota, RotateKey, Usage,
};
pub use blob_common::proto::multipart::{
    decode_part_sizes, CompleteMultipart, CompletePart, CopyFile, CopyPart, CreateMultipart,
    ListMultipart, ListMultipartQuery, ListParts, ListPartsQuery, MultipartInfo, PartInfo,
    PartTarget, PART_SIZES,
};
pub use blob_common::proto::namenode::{
    BucketInfo, ChunkRef, ClusterStatus, DeleteOutcome, FileEntry, FileInfo, FileLocations,
    FsckFile, FsckQuery, FsckReport, ListBuckets, ListFiles, ListFilesQuery, ListNodes,
    ListVersions, ListVersionsQuery, NodeStatus, UpdateMeta, VersionEntry, WriteCondition,
};
pub use blob_common::proto::namenode::{EdgeInfo, ListEdges};
pub use blob_common::NodeId;
pub use config::ClientConfig;
pub use edge::EdgeWarmReport;
pub use error::Error;

/// A progress callback: called with the total number of bytes done so far
/// (stored or found already stored for an upload, written for a download).
pub type ProgressFn = Arc<dyn Fn(u64) + Send + Sync>;

/// A last check before an upload commits, given the file's chunks once the
/// input ended: returns metadata to add (e.g. an MD5 computed while
/// streaming), or a reason to refuse the upload (a digest mismatch).
pub type CommitHook =
    Arc<dyn Fn(&[ChunkRef]) -> Result<BTreeMap<String, String>, String> + Send + Sync>;

/// A handle on a cluster. Cheap to clone: clones share one connection pool.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
    /// The `x-request-id` every call of this handle sends; `None` makes a
    /// fresh one per call.
    request_id: Option<Arc<str>>,
    /// The customer key SSE-C files are read and written with.
    customer_key: Option<Arc<sse::CustomerKey>>,
}

struct Inner {
    /// Every namenode call goes through this handle.
    nn: blob_rpc::Namenode,
    cfg: ClientConfig,
    http: reqwest::Client,
    /// For edge caches: a short connect timeout, so that a dead edge costs
    /// little before the datanodes are read instead.
    edge_http: reqwest::Client,
    /// Until when edge URLs are skipped after an edge could not be reached.
    edge_down_until: std::sync::Mutex<Option<std::time::Instant>>,
    /// SSE-S3 data keys in clear, by wrapped key ([`sse`]).
    keys: std::sync::Mutex<std::collections::HashMap<String, blob_common::seal::DataKey>>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("cfg", &self.inner.cfg)
            .field("request_id", &self.request_id)
            .finish()
    }
}

impl Client {
    /// A client for the cluster behind `cfg.endpoint`. Checks the
    /// configuration; sends nothing.
    pub fn new(cfg: ClientConfig) -> Result<Client, Error> {
        let base = cfg.validate()?;
        let trusting = |b| {
            blob_rpc::tls::trust(b, cfg.ca_file.as_deref())
                .map_err(|e| Error::Config(e.to_string()))
        };
        let http = trusting(reqwest::Client::builder())?
            // Up to 64 chunk transfers in flight, mostly to a few hosts.
            .pool_max_idle_per_host(64)
            .tcp_nodelay(true)
            .connect_timeout(cfg.connect_timeout)
            .read_timeout(cfg.data_idle_timeout)
            .user_agent(concat!("blobctl/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Error::Config(format!("building the HTTP client: {e}")))?;
        let edge_http = trusting(reqwest::Client::builder())?
            .pool_max_idle_per_host(64)
            .tcp_nodelay(true)
            .connect_timeout(cfg.edge_connect_timeout.min(cfg.connect_timeout))
            .read_timeout(cfg.data_idle_timeout)
            .user_agent(concat!("blobctl/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Error::Config(format!("building the HTTP client: {e}")))?;
        let nn = blob_rpc::Namenode::builder(
            base.as_str(),
            blob_rpc::Credentials::new(cfg.access_key.clone(), cfg.secret_key.as_bytes()),
        )
        .http(http.clone())
        .timeout(cfg.request_timeout)
        .build()?;
        Ok(Client {
            inner: Arc::new(Inner {
                nn,
                cfg,
                http,
                edge_http,
                edge_down_until: std::sync::Mutex::new(None),
                keys: Default::default(),
            }),
            request_id: None,
            customer_key: None,
        })
    }

    /// The configuration this client was built with.
    pub fn config(&self) -> &ClientConfig {
        &self.inner.cfg
    }

    /// A handle whose every call carries `request_id` as `x-request-id`
    /// (e.g. to forward the id of a request being served).
    pub fn with_request_id(&self, request_id: impl Into<String>) -> Client {
        let id: String = request_id.into();
        Client {
            inner: self.inner.clone(),
            request_id: Some(id.into()),
            customer_key: self.customer_key.clone(),
        }
    }

    /// A handle with one request id for a whole operation: this handle's
    /// if it has one, else a fresh one.
    pub fn scoped(&self) -> Client {
        match &self.request_id {
            Some(_) => self.clone(),
            None => self.with_request_id(blob_common::new_request_id()),
        }
    }

    /// The request id for the next call: this handle's, else a fresh one.
    pub fn request_id(&self) -> String {
        match &self.request_id {
            Some(id) => id.to_string(),
            None => blob_common::new_request_id(),
        }
    }

    /// Uploads everything `reader` yields to `bucket/path`, replacing any
    /// file there when the commit succeeds.
    ///
    /// Memory stays bounded by `opts.parallel` chunk buffers whatever the
    /// input size. Chunks the bucket already holds (from another file or an
    /// interrupted run of this upload) are not sent again. On error the
    /// session is left for the namenode to expire, so running the same
    /// upload again resumes it.
    pub async fn upload<R>(
        &self,
        reader: R,
        bucket: &str,
        path: &str,
        opts: &UploadOptions,
    ) -> Result<UploadOutcome, Error>
    where
        R: AsyncRead + Unpin + Send,
    {
        transfer::upload::upload(self, reader, bucket, path, opts).await
    }

    /// Writes the file `bucket/path` to `writer`, in order, fetching up to
    /// `opts.parallel` chunks at once and verifying each.
    pub async fn download<W>(
        &self,
        bucket: &str,
        path: &str,
        writer: W,
        opts: &DownloadOptions,
    ) -> Result<FileInfo, Error>
    where
        W: AsyncWrite + Unpin + Send,
    {
        transfer::download::download(self, bucket, path, writer, opts).await
    }

    /// Downloads `bucket/path` into the local file `local`: written to a
    /// temporary file beside it and renamed into place only once complete
    /// and synced, removed on failure. An existing device, FIFO or socket
    /// (e.g. `/dev/null`) is written in place instead.
    pub async fn download_to_path(
        &self,
        bucket: &str,
        path: &str,
        local: &Path,
        opts: &DownloadOptions,
    ) -> Result<FileInfo, Error> {
        transfer::download::download_to_path(self, bucket, path, local, opts).await
    }

    /// Reads up to `len` bytes of `bucket/path` from byte `start`: fewer
    /// when the file ends first, an error when `start` is past the end.
    /// Fetches only the chunks the range touches; whole chunks are verified
    /// against their ids, partial ones rely on the datanode's block CRCs.
    pub async fn read_range(
        &self,
        bucket: &str,
        path: &str,
        start: u64,
        len: u64,
    ) -> Result<bytes::Bytes, Error> {
        let client = self.scoped();
        let locs = client.locations(bucket, path).await?;
        transfer::download::read_range_at(&client, Arc::new(locs), start, len).await
    }

    /// [`Client::read_range`] with locations already in hand (as returned
    /// by [`Client::locations`]), saving a namenode round trip per read.
    /// Expired URLs are refreshed as needed.
    pub async fn read_range_at(
        &self,
        locations: Arc<FileLocations>,
        start: u64,
        len: u64,
    ) -> Result<bytes::Bytes, Error> {
        transfer::download::read_range_at(&self.scoped(), locations, start, len).await
    }

    /// [`Client::read_range_at`] as the frames received, in order, without
    /// gathering them into one buffer (a copy of every byte): for callers
    /// that pass the bytes on as they are, like the S3 gateway's bodies.
    pub async fn read_range_frames_at(
        &self,
        locations: Arc<FileLocations>,
        start: u64,
        len: u64,
    ) -> Result<Vec<bytes::Bytes>, Error> {
        transfer::download::read_range_frames(&self.scoped(), locations, start, len)
            .await
            .map(|b| b.frames)
    }
}

/// How to upload.
#[derive(Clone)]
pub struct UploadOptions {
    /// Chunk size, between [`config::MIN_CHUNK_SIZE`] and
    /// [`config::MAX_CHUNK_SIZE`] (default 8 MiB).
    pub chunk_size: u64,
    /// Chunks in flight (read, hashed, planned or being PUT) at once; this
    /// bounds memory to `parallel × chunk_size` (default 8).
    pub parallel: usize,
    /// Replication factor; `None` takes the namenode's default.
    pub replication: Option<u8>,
    /// User metadata stored with the file.
    pub meta: BTreeMap<String, String>,
    /// Called as chunks are stored or found already stored.
    pub progress: Option<ProgressFn>,
    /// Checked once the input ended, before the commit.
    pub before_commit: Option<CommitHook>,
    /// Commit into this part of a multipart upload instead of writing the
    /// file (`meta["etag"]` must then hold the part's hex MD5).
    pub part: Option<PartTarget>,
    /// Abort the session on failure instead of leaving it to be resumed
    /// (for callers, like the S3 gateway, that never resume).
    pub abort_on_error: bool,
    /// The SHA-256 of the whole input, when the reader checks it before it
    /// ends (as the S3 gateway's does for a signed payload). An input of
    /// one chunk then takes it as the chunk's id rather than hashing the
    /// bytes again.
    pub input_sha256: Option<[u8; 32]>,
    /// Commit only if the file now at the path meets this (S3's
    /// conditional writes); checked atomically with the commit.
    pub condition: Option<WriteCondition>,
    /// Seal every chunk with this ([`sse`]): encryption at rest. Its
    /// metadata is added to the file's (or, for a part, must be the
    /// multipart upload's).
    pub sealing: Option<sse::Sealing>,
    /// Without `sealing`: seal each upload with a fresh sealing of this
    /// kind (a new SSE-S3 data key, or a new salt for a customer key).
    pub encrypt: Option<sse::Encrypt>,
}

impl Default for UploadOptions {
    fn default() -> Self {
        Self {
            chunk_size: config::DEFAULT_CHUNK_SIZE,
            parallel: config::DEFAULT_PARALLEL,
            replication: None,
            meta: BTreeMap::new(),
            progress: None,
            before_commit: None,
            part: None,
            abort_on_error: false,
            input_sha256: None,
            condition: None,
            sealing: None,
            encrypt: None,
        }
    }
}

impl std::fmt::Debug for UploadOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UploadOptions")
            .field("chunk_size", &self.chunk_size)
            .field("parallel", &self.parallel)
            .field("replication", &self.replication)
            .field("meta", &self.meta)
            .field("progress", &self.progress.is_some())
            .field("before_commit", &self.before_commit.is_some())
            .field("part", &self.part)
            .field("abort_on_error", &self.abort_on_error)
            .field("input_sha256", &self.input_sha256.is_some())
            .field("condition", &self.condition)
            .field("sealing", &self.sealing)
            .field("encrypt", &self.encrypt)
            .finish()
    }
}

impl UploadOptions {
    /// Checks the options, with a message naming the bad one.
    pub fn validate(&self) -> Result<(), Error> {
        if !(config::MIN_CHUNK_SIZE..=config::MAX_CHUNK_SIZE).contains(&self.chunk_size) {
            return Err(Error::Config(format!(
                "chunk size {} is out of range: it must be between 64 KiB and 256 MiB",
                self.chunk_size
            )));
        }
        if !(1..=1024).contains(&self.parallel) {
            return Err(Error::Config(format!(
                "parallel {} is out of range: it must be between 1 and 1024",
                self.parallel
            )));
        }
        if self.replication == Some(0) {
            return Err(Error::Config("replication must be at least 1".into()));
        }
        Ok(())
    }
}

/// What an upload did.
#[derive(Debug, Clone)]
pub struct UploadOutcome {
    /// The committed file.
    pub file: FileInfo,
    /// Chunks sent to datanodes.
    pub chunks_sent: u64,
    /// Chunks not sent: already stored in the bucket, or repeated earlier
    /// in the same file.
    pub chunks_skipped: u64,
    /// Bytes sent to datanodes (each chunk once, however many replicas).
    pub bytes_sent: u64,
}

/// How to download.
#[derive(Clone)]
pub struct DownloadOptions {
    /// Chunks fetched at once; memory is bounded by `parallel × chunk size`
    /// (default 8).
    pub parallel: usize,
    /// Called as bytes are written.
    pub progress: Option<ProgressFn>,
}

impl Default for DownloadOptions {
    fn default() -> Self {
        Self {
            parallel: config::DEFAULT_PARALLEL,
            progress: None,
        }
    }
}

impl std::fmt::Debug for DownloadOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DownloadOptions")
            .field("parallel", &self.parallel)
            .field("progress", &self.progress.is_some())
            .finish()
    }
}
