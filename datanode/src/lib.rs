//! The datanode: keeps immutable, content-addressed chunks on local disk,
//! serves them over HTTP to holders of pre-signed URLs, forwards writes
//! along the replica pipeline, and reports to the namenode.
//!
//! What it owns: the chunk files under its data directory ([`store`]), the
//! chunk HTTP API ([`data`]), and its heartbeats and chunk reports
//! ([`control`]).
//!
//! Request flow of a write:
//! 1. `PUT /v1/chunks/{id}?t=&s=&hop=`: the pre-signed URL is verified
//!    locally (no namenode round trip), with the declared size and this
//!    node's place in the signed pipeline, before any byte is read.
//! 2. The body streams, frame by frame, to a blocking writer (SHA-256 and
//!    block CRCs as it goes, temp file, fsync, rename, fsync directory) and
//!    at the same time to the next node of the pipeline.
//! 3. The answer carries a signed receipt per node that durably holds the
//!    chunk, and the nodes that failed; the next incremental report tells
//!    the namenode.
//!
//! Reads (`GET`) stream from disk, verifying each 64 KiB block's CRC32C as
//! it goes; a corrupt chunk is quarantined and the response aborted.
//!
//! Memory is bounded: at most `limits.max_connections` connections, and
//! every chunk byte held in memory (a PUT's frames queued toward the disk
//! and the next node, a read's or a copy's read-ahead) is reserved first in
//! one budget of `limits.max_bytes_in_flight`; past it requests wait, then
//! get `503` with `Retry-After`.
//!
//! What it must never do: store or serve bytes whose hash or block CRC did
//! not verify, serve or report a half-written chunk, buffer a whole chunk
//! in memory, touch metadata (that is the namenode's), or let a client's
//! mistake become a 500 or a panic.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use blob_common::presign::Keyring;
use blob_common::NodeId;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, Instrument};

pub mod control;
pub mod data;
pub mod error;
pub mod metrics;
pub mod repair;
pub mod store;

pub use control::node_id;
pub use error::Error;
pub use store::chunk_path;

use metrics::Metrics;
use store::Store;

/// Datanode configuration. Every field has a working local default.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    /// Address the datanode's HTTP server listens on (the binary binds it;
    /// [`serve`] takes an already bound listener).
    pub listen: SocketAddr,
    /// Base URL clients and other datanodes reach this node at. Default:
    /// `http://<bound address>` (`https://` when it serves TLS): the URL it
    /// registers with, so pre-signed chunk URLs have its scheme.
    pub public_url: Option<String>,
    /// Directory holding the node id, chunk files, temp files and
    /// quarantined chunks.
    pub data_dir: PathBuf,
    /// Base URL of the namenode, for heartbeats and chunk reports.
    pub namenode: String,
    /// Interval between heartbeats, in milliseconds.
    pub heartbeat_ms: u64,
    /// Interval at which newly stored chunks are reported, in milliseconds.
    pub report_ms: u64,
    /// fsync chunk files and directories before acknowledging a write.
    /// Turn off only for throwaway test clusters.
    pub fsync: bool,
    /// Below this many free bytes on the data disk the node refuses writes
    /// and reports itself read-only.
    pub min_free_bytes: u64,
    /// Interval between full chunk reports (besides the one at start), ms.
    pub full_report_ms: u64,
    /// Interval between scrubber passes over every chunk, ms; 0 disables
    /// the scrubber.
    pub scrub_interval_ms: u64,
    /// Read rate the scrubber keeps to, bytes per second.
    pub scrub_rate: u64,
    /// Replica copies (ordered by the namenode) this node sends at once.
    pub max_copies: usize,
    /// Connection cap and budget of chunk bytes in memory (frames queued
    /// toward the disk and the next pipeline node, read-ahead of reads and
    /// copies).
    pub limits: blob_server::limits::Limits,
    /// TLS: the certificate served (plain HTTP without one) and the CA
    /// trusted when calling other services (`[tls]`, `--tls-cert`,
    /// `--tls-key`, `--ca-file`).
    pub tls: blob_server::tls::TlsConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 9871)),
            public_url: None,
            data_dir: PathBuf::from("./.blobstore/datanode"),
            namenode: "http://127.0.0.1:9870".into(),
            heartbeat_ms: 3000,
            report_ms: 1000,
            fsync: true,
            min_free_bytes: 64 * 1024 * 1024,
            full_report_ms: 3_600_000,
            scrub_interval_ms: 24 * 3_600_000,
            scrub_rate: 64 * 1024 * 1024,
            max_copies: 4,
            limits: blob_server::limits::Limits::with_budget(256 << 20),
            tls: Default::default(),
        }
    }
}

/// State shared by the HTTP handlers and the control loop.
pub(crate) struct Node {
    pub(crate) cfg: Config,
    pub(crate) keyring: Keyring,
    pub(crate) id: NodeId,
    pub(crate) url: String,
    pub(crate) store: Arc<Store>,
    pub(crate) metrics: Metrics,
    /// Client for pipeline forwards (connect timeout ~2 s, 60 s overall).
    pub(crate) pipeline_http: reqwest::Client,
    /// Client for namenode calls (short timeouts: a heartbeat is small).
    /// Heartbeats and chunk reports go through this handle (cluster key).
    pub(crate) namenode: blob_rpc::Namenode,
    /// Bounds the replica copies this node sends at once.
    pub(crate) copies: Arc<tokio::sync::Semaphore>,
    /// Chunk bytes held in memory at once, across all requests.
    pub(crate) budget: blob_server::limits::Budget,
}

impl Node {
    /// Free space of the data disk and whether it is below the minimum.
    pub(crate) fn space(&self) -> (store::DiskSpace, bool) {
        match store::disk_space(self.store.dir()) {
            Ok(s) => (s, s.available < self.cfg.min_free_bytes),
            Err(e) => {
                tracing::warn!(error = %e, "statvfs of the data directory failed");
                // A disk we cannot even stat takes no writes.
                (
                    store::DiskSpace {
                        capacity: 0,
                        available: 0,
                    },
                    true,
                )
            }
        }
    }
}

/// Runs a datanode on `listener` until `shutdown` is cancelled: opens the
/// chunk store (removing half-written temp files, indexing what is on
/// disk), serves the chunk API, and heartbeats and reports to the namenode.
pub async fn serve(
    cfg: Config,
    keyring: Keyring,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    let addr = listener.local_addr().map_err(Error::Serve)?;
    let url = cfg
        .public_url
        .clone()
        .map(|u| u.trim_end_matches('/').to_string())
        .unwrap_or_else(|| format!("{}://{addr}", cfg.tls.scheme()));
    let acceptor = cfg
        .tls
        .acceptor()
        .map_err(|e| Error::Serve(std::io::Error::other(e.to_string())))?;
    let trusting = |b| {
        blob_rpc::tls::trust(b, cfg.tls.ca_file.as_deref())
            .map_err(|e| Error::Serve(std::io::Error::other(e.to_string())))
    };
    let metrics = Metrics::new();
    let (id, store) = {
        let dir = cfg.data_dir.clone();
        let fsync = cfg.fsync;
        let metrics = metrics.clone();
        tokio::task::spawn_blocking(move || -> Result<_, Error> {
            std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
            let id = node_id(&dir).map_err(|e| Error::io(dir.join("node_id"), e))?;
            let store = Store::open(&dir, fsync, metrics)?;
            Ok((id, store))
        })
        .await
        .map_err(|e| Error::TaskFailed(e.to_string()))??
    };
    let pipeline_http = trusting(reqwest::Client::builder())?
        .connect_timeout(std::time::Duration::from_secs(2))
        .timeout(std::time::Duration::from_secs(60))
        .build()
        .map_err(|e| Error::Serve(std::io::Error::other(e)))?;
    let control_http = trusting(reqwest::Client::builder())?
        .connect_timeout(std::time::Duration::from_secs(2))
        .timeout(std::time::Duration::from_secs(10))
        .build()
        .map_err(|e| Error::Serve(std::io::Error::other(e)))?;
    // Not retried per call: the control loop's next tick is the retry.
    let namenode = blob_rpc::Namenode::builder(
        &cfg.namenode,
        blob_rpc::Credentials::service(&keyring, blob_common::auth::ServiceRole::Datanode),
    )
    .http(control_http)
    .retry(blob_rpc::RetryPolicy::NONE)
    .build()
    .map_err(|e| Error::Serve(std::io::Error::other(e.to_string())))?;
    let max_copies = cfg.max_copies.max(1);
    cfg.limits
        .validate(data::GET_WINDOW)
        .map_err(|e| Error::Serve(std::io::Error::other(format!("invalid limits: {e}"))))?;
    let slots = cfg.limits.connection_slots();
    let node = Arc::new(Node {
        budget: cfg.limits.budget(),
        cfg,
        keyring,
        id,
        url,
        store: Arc::new(store),
        metrics,
        copies: Arc::new(tokio::sync::Semaphore::new(max_copies)),
        pipeline_http,
        namenode,
    });
    let span = tracing::info_span!("datanode", node = %id);
    span.in_scope(|| info!(%addr, url = %node.url, data_dir = %node.cfg.data_dir.display(), "datanode serving"));

    // A child token: the loops stop with the caller's token, or when this
    // server ends on its own, without cancelling the caller's other services.
    let stop_loops = shutdown.child_token();
    let tracker = TaskTracker::new();
    tracker.spawn(control::run(Arc::clone(&node), stop_loops.clone()));
    tracker.spawn(repair::scrub(Arc::clone(&node), stop_loops.clone()));
    tracker.close();

    let app = data::router(Arc::clone(&node));
    let graceful = shutdown.cancelled_owned();
    let listener = blob_server::limits::LimitedListener::new(
        blob_server::tls::TlsListener::new(listener, acceptor),
        slots,
    );
    let res = async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(graceful)
            .await
    }
    .instrument(span.clone())
    .await;
    stop_loops.cancel();
    tracker.wait().await;
    span.in_scope(|| info!("datanode stopped"));
    res.map_err(Error::Serve)
}

#[cfg(test)]
mod tests;
