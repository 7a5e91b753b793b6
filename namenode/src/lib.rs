//! The namenode: namespace, chunk → replica map, datanode registry,
//! placement, upload sessions and access keys, kept in RocksDB.
//!
//! Flow of an upload: a client opens a session with the ids (SHA-256) of its
//! chunks; for each the namenode answers "already stored in this bucket" or
//! a pre-signed PUT URL for a pipeline of datanodes it chose. The datanodes
//! sign receipts for what they stored durably; the client hands them back,
//! and its commit atomically makes the file visible (one synced write
//! batch), replacing any previous version. Reads get the chunk list with a
//! pre-signed GET URL per replica, best replica first, preceded by the URL
//! of the reader's edge cache when edges are configured ([`edges`]); the
//! token then also names the replicas, so the edge can fill a miss alone.
//!
//! The namenode never touches chunk bytes: no handler here takes a
//! streaming body, and the data path runs client ↔ datanode only.
//!
//! Where things are:
//! - `api/`: the route table with the role each route requires, request
//!   authentication, and the HTTP handlers by family.
//! - `ops/`: the operations by family (buckets, files, uploads, multipart,
//!   replicas, datanodes, admin), synchronous over the metadata store.
//! - `background/`: re-replication, garbage collection, session expiry and
//!   decommission, run by the repair loop.
//! - `db`: the RocksDB column families and records (crate-private);
//!   `nodes`: the datanode registry and placement; `claims`: corruption
//!   claims; [`edges`]: picking a reader's edge cache.

mod access;
mod api;
mod background;
mod claims;
mod db;
pub mod edges;
mod error;
mod masterkeys;
mod metrics;
mod nodes;
mod ops;
mod ratelimit;
#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use blob_common::presign::Keyring;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use error::Error;

/// Namenode settings. `Default` gives working local values.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    /// Address to listen on (the binary binds it; tests bind port 0).
    pub listen: SocketAddr,
    /// Where the RocksDB metadata and the admin credentials live.
    pub data_dir: PathBuf,
    /// Replication factor for uploads that do not name one.
    pub default_replication: u8,
    /// Lifetime of pre-signed chunk URLs, seconds.
    pub presign_ttl_secs: u64,
    /// Heartbeat interval datanodes are expected to keep, ms.
    pub heartbeat_ms: u64,
    /// Silence after which a datanode is stale (no new replicas), ms.
    pub stale_after_ms: u64,
    /// Silence after which a datanode is dead, ms.
    pub dead_after_ms: u64,
    /// Largest chunk accepted, bytes.
    pub max_chunk_size: u64,
    /// Access key of the admin key made on first start (random if unset).
    pub admin_access_key: Option<String>,
    /// Secret of that admin key (random if unset).
    pub admin_secret_key: Option<String>,
    /// Age after which an unfinished S3 multipart upload is dropped, seconds.
    pub multipart_ttl_secs: u64,
    /// How often stale multipart uploads are looked for, seconds.
    pub multipart_sweep_secs: u64,
    /// The length of a day for buckets' lifecycle rules, ms (24 h; shorter
    /// only in tests). Rules are applied every quarter day, at least
    /// hourly.
    pub lifecycle_day_ms: u64,
    /// How often the repair loop runs (re-replication, trimming, GC), ms.
    pub repair_ms: u64,
    /// Replica copies ordered from one datanode and not yet confirmed (the
    /// datanode itself sends at most `max_copies` at once, so repair does
    /// not starve clients).
    pub max_copies_per_node: usize,
    /// A copy not confirmed within this time is planned again, ms.
    pub copy_timeout_ms: u64,
    /// How long a chunk with no references is kept before its replicas are
    /// deleted (an upload may still reuse it), ms.
    pub gc_grace_ms: u64,
    /// How long a chunk on a datanode that no metadata knows is kept before
    /// it is deleted, ms.
    pub orphan_grace_ms: u64,
    /// Upload sessions not committed within this time are dropped, ms.
    pub upload_ttl_ms: u64,
    /// Edge caches that read URLs point at, in preference order (see
    /// [`edges`]); empty: readers go to the datanodes directly.
    pub edges: Vec<EdgeConfig>,
    /// Replicas of a chunk that must be durable before its write succeeds;
    /// `None`: a majority of the chunk's replication factor (2 of 3). The
    /// missing ones are repaired as soon as capacity allows.
    pub min_write_replicas: Option<u8>,
    /// Fault injection for tests: every WAL sync is delayed this long, ms
    /// (0 in production).
    pub wal_sync_delay_ms: u64,
    /// Connection cap and budget of request bytes in memory.
    pub limits: blob_server::limits::Limits,
    /// TLS: the certificate served (plain HTTP without one; `[tls]`,
    /// `--tls-cert`, `--tls-key`).
    pub tls: blob_server::tls::TlsConfig,
}

/// An edge cache readers of one zone go through.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EdgeConfig {
    /// The zone it serves, e.g. `eu-west-1a`.
    pub zone: String,
    /// Its base URL, e.g. `http://10.0.0.5:9880`.
    pub url: String,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 9870)),
            data_dir: PathBuf::from(".blobstore/namenode"),
            default_replication: 3,
            presign_ttl_secs: 3600,
            heartbeat_ms: 3000,
            stale_after_ms: 10_000,
            dead_after_ms: 60_000,
            max_chunk_size: 256 << 20,
            admin_access_key: None,
            admin_secret_key: None,
            multipart_ttl_secs: 7 * 24 * 3600,
            multipart_sweep_secs: 600,
            lifecycle_day_ms: 86_400_000,
            repair_ms: 1000,
            max_copies_per_node: 16,
            copy_timeout_ms: 30_000,
            gc_grace_ms: 3_600_000,
            orphan_grace_ms: 3_600_000,
            upload_ttl_ms: 24 * 3_600_000,
            edges: Vec::new(),
            min_write_replicas: None,
            wal_sync_delay_ms: 0,
            limits: blob_server::limits::Limits::with_budget(128 << 20),
            tls: Default::default(),
        }
    }
}

impl Config {
    /// Checks settings that depend on each other.
    pub fn validate(&self) -> Result<(), String> {
        if self.default_replication == 0 {
            return Err("default_replication must be at least 1".into());
        }
        if self.stale_after_ms < self.heartbeat_ms || self.dead_after_ms < self.stale_after_ms {
            return Err(format!(
                "intervals must grow: heartbeat ({} ms) <= stale_after ({} ms) <= dead_after ({} ms)",
                self.heartbeat_ms, self.stale_after_ms, self.dead_after_ms
            ));
        }
        if self.repair_ms == 0 || self.max_copies_per_node == 0 {
            return Err("repair_ms and max_copies_per_node must be positive".into());
        }
        if self.min_write_replicas == Some(0) {
            return Err("min_write_replicas must be at least 1".into());
        }
        if self.presign_ttl_secs == 0 {
            return Err("presign_ttl_secs must be positive".into());
        }
        for e in &self.edges {
            e.validate()?;
        }
        self.limits.validate(api::LIST_BODY_LIMIT as u64)?;
        self.tls.validate()?;
        Ok(())
    }
}

/// The admin credentials file written on first start, in `blobctl`'s
/// config format.
pub const CREDENTIALS_FILE: &str = "admin-credentials.toml";

pub use masterkeys::MASTER_KEYS_FILE;

/// The namenode's shared state.
pub struct Namenode {
    cfg: Config,
    keyring: Keyring,
    meta: db::Meta,
    /// Serialises read-modify-write of metadata; never held across an await
    /// or a WAL sync.
    write_lock: Mutex<()>,
    nodes: RwLock<nodes::Nodes>,
    repair: Mutex<background::Repair>,
    claims: claims::Claims,
    metrics: metrics::Metrics,
    /// SSE-S3 master keys.
    master_keys: masterkeys::MasterKeys,
    /// Per-key rate limits.
    rate_limits: ratelimit::RateLimits,
    /// Bytes each open session planned, for bucket quotas.
    planned: Mutex<std::collections::HashMap<blob_common::UploadId, u64>>,
}

impl Namenode {
    /// Opens the metadata store, loads the known datanodes, and creates the
    /// admin key on first start.
    pub fn open(cfg: Config, keyring: Keyring) -> Result<Arc<Self>, Error> {
        cfg.validate().map_err(Error::BadRequest)?;
        std::fs::create_dir_all(&cfg.data_dir)
            .map_err(|e| Error::Internal(format!("creating {}: {e}", cfg.data_dir.display())))?;
        let meta = db::Meta::open(&cfg.data_dir.join("meta"))?;
        meta.set_sync_delay_ms(cfg.wal_sync_delay_ms);
        let mut nodes = nodes::Nodes::new(
            Duration::from_millis(cfg.stale_after_ms),
            Duration::from_millis(cfg.dead_after_ms),
        );
        for (id, rec) in ops::load_nodes(&meta)? {
            nodes.add_known(id, rec.url, rec.admin);
        }
        let master_keys = masterkeys::MasterKeys::load_or_create(&cfg.data_dir)?;
        let nn = Arc::new(Self {
            cfg,
            keyring,
            meta,
            write_lock: Mutex::new(()),
            nodes: RwLock::new(nodes),
            repair: Mutex::new(background::Repair::default()),
            claims: claims::Claims::default(),
            metrics: metrics::Metrics::new(),
            master_keys,
            rate_limits: ratelimit::RateLimits::default(),
            planned: Mutex::new(Default::default()),
        });
        db::ensure_usage(&nn.meta)?;
        nn.ensure_admin_key()?;
        Ok(nn)
    }

    /// The configuration in force.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// Replicas a chunk of replication factor `rf` needs before its write
    /// counts: the configured minimum (never above `rf`), else a majority.
    pub fn write_quorum(&self, rf: u8) -> usize {
        let rf = usize::from(rf.max(1));
        match self.cfg.min_write_replicas {
            Some(m) => usize::from(m).clamp(1, rf),
            None => rf / 2 + 1,
        }
    }

    /// Drops a key's rate-limit buckets (its limits changed, or it is gone).
    pub(crate) fn forget_limits(&self, access_key: &str) {
        self.rate_limits.forget(access_key);
    }

    /// Charges `bytes` of chunk traffic to `access_key`'s byte budget.
    pub(crate) fn charge_bytes(&self, access_key: &str, bytes: u64) -> Result<(), Error> {
        self.rate_limits.admit_bytes(access_key, bytes)
    }

    /// A fresh SSE-S3 data key, in clear and wrapped.
    pub(crate) fn grant_data_key(&self) -> Result<blob_common::proto::keys::DataKeyGrant, Error> {
        self.master_keys.grant()
    }

    /// The SSE-S3 data key `wrapped` holds.
    pub(crate) fn unwrap_data_key(
        &self,
        wrapped: &str,
    ) -> Result<blob_common::proto::keys::DataKeyGrant, Error> {
        self.master_keys.unwrap(wrapped)
    }

    /// Path of the admin credentials file.
    pub fn credentials_path(data_dir: &Path) -> PathBuf {
        data_dir.join(CREDENTIALS_FILE)
    }
}

/// Runs a namenode on `listener` until `shutdown` is cancelled.
pub async fn serve(
    cfg: Config,
    keyring: Keyring,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    serve_with(Namenode::open(cfg, keyring)?, listener, shutdown).await
}

/// Ticks the datanode registry's clock from a plain thread, so that a pause
/// of the whole namenode process (SIGSTOP, a frozen VM) is noticed the
/// moment it ends, before any liveness decision is made on stale numbers.
fn spawn_clock_watch(nn: Arc<Namenode>, shutdown: CancellationToken) {
    let every = (nn.nodes_read().pause_after() / 4)
        .clamp(Duration::from_millis(10), Duration::from_millis(250));
    let spawned = std::thread::Builder::new()
        .name("nn-clock".into())
        .spawn(move || {
            while !shutdown.is_cancelled() {
                std::thread::sleep(every);
                nn.tick_clock();
            }
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "could not start the clock watch; pauses are noticed by the repair loop only");
    }
}

/// Runs an already opened namenode on `listener` until `shutdown` is
/// cancelled (lets a caller read the admin credentials before serving).
pub async fn serve_with(
    nn: Arc<Namenode>,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    let addr = listener.local_addr().ok();
    let acceptor = nn
        .cfg
        .tls
        .acceptor()
        .map_err(|e| Error::BadRequest(e.to_string()))?;
    let repair = tokio::spawn(background::run(nn.clone(), shutdown.clone()));
    spawn_clock_watch(nn.clone(), shutdown.clone());
    tracing::info!(addr = ?addr, tls = acceptor.is_some(), data = %nn.cfg.data_dir.display(), "namenode listening");
    tokio::spawn(background::sweep_loop(nn.clone(), shutdown.clone()));
    tokio::spawn(background::lifecycle_loop(nn.clone(), shutdown.clone()));
    let listener = blob_server::limits::LimitedListener::new(
        blob_server::tls::TlsListener::new(listener, acceptor),
        nn.cfg.limits.connection_slots(),
    );
    let served = axum::serve(listener, api::router(nn))
        .with_graceful_shutdown(shutdown.clone().cancelled_owned())
        .await
        .map_err(|e| Error::Internal(format!("serving: {e}")));
    shutdown.cancel();
    let _ = repair.await;
    served
}
