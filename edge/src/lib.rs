//! The edge cache: a CDN-style HTTP cache of chunks in front of the
//! datanodes. Chunks are immutable and content-addressed, so a cached
//! chunk is never stale: there is nothing to invalidate, only hits to
//! serve fast, misses to fill once, and bytes to evict well.
//!
//! Request flow of `GET /v1/chunks/{id}?t=&s=` (the same pre-signed URL a
//! datanode takes; the namenode points readers here when edges are
//! configured, see `blob_namenode::edges`):
//! 1. The signature is verified locally ([`blob_common::presign`]): an
//!    expired or tampered URL is a 403 before any other work.
//!    `If-None-Match: "<id>"` is a 304.
//! 2. The memory tier, then the disk tier ([`store`]): a hit is served from
//!    there; a disk hit streams, each frame checked against its block CRCs
//!    (a range reads and checks only the blocks it touches), and a file that
//!    fails is dropped and the request filled as a miss.
//! 3. A miss joins the chunk's fill in flight or starts one ([`fill`]):
//!    the chunk is fetched once from the origins signed into the URL, in
//!    order, whatever the number of waiting requests, and streamed to them
//!    as it arrives; its SHA-256 is checked before it is cached or a
//!    reader gets its last bytes.
//! 4. The verified chunk is offered to both tiers, whose eviction
//!    [`policy`] (LRU, LFU, FIFO or TinyLFU) picks victims before it is
//!    stored, so a capacity is never exceeded.
//!
//! Memory is bounded: `limits.max_connections` connections, fills bounded
//! by `max_fills`, and disk reads and warm bodies reserved in a budget of
//! `limits.max_bytes_in_flight` bytes (503 with `Retry-After` past it).
//!
//! What it must never do: serve or cache bytes that did not verify, fetch
//! a chunk twice for concurrent readers, do any work for a request whose
//! signature fails, hold its lock across I/O on chunk data, or let a
//! client's mistake become a 500.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use blob_common::presign::Keyring;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn, Instrument};

pub mod error;
mod fill;
pub mod metrics;
pub mod policy;
mod read;
mod routes;
mod store;
mod warm;

pub use error::Error;
pub use policy::{Policy, PolicyKind};

/// Edge configuration. Every field has a working local default.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    /// Address to listen on (the binary binds it; [`serve`] takes a bound
    /// listener).
    pub listen: SocketAddr,
    /// Directory of the disk tier (`chunks/`, `tmp/`).
    pub data_dir: PathBuf,
    /// The zone this edge serves (the namenode's `--edge ZONE=URL`).
    pub zone: String,
    /// Namenode base URL: for reporting corrupt origin replicas and for the
    /// warm-up list. Optional: without it the edge still serves and fills.
    pub namenode: Option<String>,
    /// Eviction policy of both tiers: `lru`, `lfu`, `fifo` or `tinylfu`.
    pub policy: PolicyKind,
    /// Memory tier capacity, bytes (0: no memory tier).
    pub memory_capacity: u64,
    /// Disk tier capacity, bytes (0: no disk tier).
    pub disk_capacity: u64,
    /// fsync disk-tier files before they are used (a crash then never
    /// leaves a torn file behind a cached name).
    pub fsync: bool,
    /// Chunks to fill at start: chunk ids (64 hex) or `bucket/path` of
    /// files, located through the namenode with the edge's service identity.
    pub warm: Vec<String>,
    /// Time allowed to connect to an origin, ms.
    pub connect_timeout_ms: u64,
    /// Time an origin may stay silent during a fill, ms.
    pub origin_idle_timeout_ms: u64,
    /// Chunks filled at once by a warm-up.
    pub warm_parallel: usize,
    /// Fills from origins running at once; more wait their turn. Bounds
    /// the memory of fills in flight to about twice this many chunks.
    pub max_fills: usize,
    /// Most bytes of verified chunks waiting for their disk-tier write.
    /// Writes happen beside the readers, never in their way; a fill that
    /// finds this many bytes still queued skips the disk tier.
    pub disk_write_backlog: u64,
    /// Connection cap and budget of bytes in memory (disk-tier reads, warm
    /// request bodies).
    pub limits: blob_server::limits::Limits,
    /// TLS: the certificate served (plain HTTP without one) and the CA
    /// trusted when calling other services (`[tls]`, `--tls-cert`,
    /// `--tls-key`, `--ca-file`).
    pub tls: blob_server::tls::TlsConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 9880)),
            data_dir: PathBuf::from("./.blobstore/edge"),
            zone: "local".into(),
            namenode: None,
            policy: PolicyKind::default(),
            memory_capacity: 256 << 20,
            disk_capacity: 10 << 30,
            fsync: true,
            warm: Vec::new(),
            connect_timeout_ms: 2_000,
            origin_idle_timeout_ms: 30_000,
            warm_parallel: 4,
            max_fills: 32,
            disk_write_backlog: 256 << 20,
            limits: blob_server::limits::Limits::with_budget(256 << 20),
            tls: Default::default(),
        }
    }
}

impl Config {
    /// Checks settings that depend on each other.
    pub fn validate(&self) -> Result<(), String> {
        if self.zone.trim().is_empty() {
            return Err("zone must not be empty".into());
        }
        if !self.warm.is_empty() && self.namenode.is_none() {
            return Err("a warm-up list needs the namenode's URL (namenode / --namenode)".into());
        }
        if self.warm_parallel == 0
            || self.connect_timeout_ms == 0
            || self.origin_idle_timeout_ms == 0
        {
            return Err("warm_parallel and the timeouts must be positive".into());
        }
        self.limits
            .validate(store::DISK_WINDOW.max(warm::WARM_BODY_LIMIT as u64))?;
        self.tls.validate()?;
        Ok(())
    }
}

/// State shared by the handlers and the fill tasks.
pub(crate) struct Edge {
    pub(crate) cfg: Config,
    pub(crate) keyring: Keyring,
    pub(crate) cache: Arc<store::Cache>,
    pub(crate) metrics: metrics::Metrics,
    /// Client for origins.
    pub(crate) http: reqwest::Client,
    /// Warm-up lookups and bad-replica reports (cluster key), when a
    /// namenode is configured.
    pub(crate) namenode: Option<blob_rpc::Namenode>,
    /// Bounds the fills in flight ([`Config::max_fills`]).
    pub(crate) fill_permits: tokio::sync::Semaphore,
    /// Bytes held in memory for requests (disk reads, warm bodies).
    pub(crate) budget: blob_server::limits::Budget,
}

/// Runs an edge on `listener` until `shutdown` is cancelled: loads the disk
/// tier, serves chunks, and fills the warm-up list in the background.
pub async fn serve(
    cfg: Config,
    keyring: Keyring,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    cfg.validate().map_err(Error::BadRequest)?;
    let addr = listener.local_addr().map_err(Error::Serve)?;
    let metrics = metrics::Metrics::new();
    let cache = {
        let (dir, m) = (cfg.data_dir.clone(), metrics.clone());
        let (policy, mem, disk, fsync) = (
            cfg.policy,
            cfg.memory_capacity,
            cfg.disk_capacity,
            cfg.fsync,
        );
        let backlog = cfg.disk_write_backlog;
        tokio::task::spawn_blocking(move || {
            store::Cache::open(&dir, policy, mem, disk, fsync, backlog, m)
        })
        .await
        .map_err(|e| Error::TaskFailed(e.to_string()))??
    };
    let acceptor = cfg
        .tls
        .acceptor()
        .map_err(|e| Error::BadRequest(e.to_string()))?;
    let http = blob_rpc::tls::trust(reqwest::Client::builder(), cfg.tls.ca_file.as_deref())
        .map_err(|e| Error::BadRequest(e.to_string()))?
        .pool_max_idle_per_host(64)
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_millis(cfg.connect_timeout_ms))
        .read_timeout(Duration::from_millis(cfg.origin_idle_timeout_ms))
        .user_agent(concat!("blob-edge/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| Error::Serve(std::io::Error::other(e)))?;
    let namenode = match &cfg.namenode {
        Some(url) => Some(
            blob_rpc::Namenode::builder(
                url,
                blob_rpc::Credentials::service(&keyring, blob_common::auth::ServiceRole::Edge),
            )
            .http(http.clone())
            .timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| Error::Serve(std::io::Error::other(e.to_string())))?,
        ),
        None => None,
    };
    let slots = cfg.limits.connection_slots();
    let edge = Arc::new(Edge {
        namenode,
        fill_permits: tokio::sync::Semaphore::new(cfg.max_fills),
        budget: cfg.limits.budget(),
        cfg,
        keyring,
        cache: Arc::new(cache),
        metrics,
        http,
    });
    let span = tracing::info_span!("edge", zone = %edge.cfg.zone);
    span.in_scope(|| {
        info!(
            %addr,
            policy = %edge.cfg.policy,
            memory = edge.cfg.memory_capacity,
            disk = edge.cfg.disk_capacity,
            data_dir = %edge.cfg.data_dir.display(),
            "edge serving"
        )
    });
    let tracker = TaskTracker::new();
    let stop = shutdown.child_token();
    if !edge.cfg.warm.is_empty() {
        let (e, s) = (edge.clone(), stop.clone());
        tracker.spawn(
            async move {
                tokio::select! {
                    _ = warm::warm_at_start(e) => {}
                    _ = s.cancelled() => {}
                }
            }
            .instrument(span.clone()),
        );
    }
    tracker.close();
    let cache = edge.cache.clone();
    let app = routes::router(edge);
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
    stop.cancel();
    tracker.wait().await;
    if !cache.settle(Duration::from_secs(30)).await {
        span.in_scope(|| warn!("disk-tier writes still queued at exit are lost"));
    }
    span.in_scope(|| info!("edge stopped"));
    res.map_err(Error::Serve)
}
