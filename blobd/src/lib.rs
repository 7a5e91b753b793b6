//! `blobd`, the one server binary: `namenode`, `datanode`, `edge`, `s3` and
//! `dev` (a whole local cluster, in one process or as child processes).
//!
//! Configuration is layered: defaults, then a TOML file (`--config` or
//! `BLOB_CONFIG`), then environment (`BLOB_<SERVICE>_<KEY>`), then flags.
//! This crate only parses, loads and wires; the services are libraries.

pub mod cluster;
mod dev;
mod secrets;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use cluster::free_port;
pub use dev::{ClusterFile, ServiceEntry};

/// The blob store server.
#[derive(Debug, Parser)]
#[command(
    name = "blobd",
    version,
    about = "Blob store server: namenode, datanode, or a whole local cluster"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the namenode (metadata, placement, auth).
    Namenode(NamenodeArgs),
    /// Run a datanode (chunk storage).
    Datanode(DatanodeArgs),
    /// Run an edge cache (chunk reads; needs its secret file, edge.secret).
    Edge(EdgeArgs),
    /// Run an S3 gateway (stateless; needs its secret file, s3.secret).
    S3(S3Args),
    /// Run a whole local cluster: a namenode, N datanodes, an S3 gateway
    /// and an edge cache.
    #[command(after_help = DEV_AFTER_HELP)]
    Dev(dev::DevArgs),
}

/// What `blobd dev` starts and writes, for `blobd dev --help`.
const DEV_AFTER_HELP: &str = "\
Starts, on 127.0.0.1 (with the default --port 9870):
  9870       the namenode (metadata, placement, auth)
  9871...    the datanodes, one port each (--datanodes, 3 by default)
  next port  an S3 gateway (region us-east-1; aws and boto3 work against it)
  next port  an edge cache for zone `local` (leave it out with --no-edge)
With --port 0 every service takes any free port; cluster.json says which.

Writes under --data (.blobstore by default):
  client.toml   blobctl's config (export BLOBCTL_CONFIG=$PWD/.blobstore/client.toml)
  s3.env        AWS_ENDPOINT_URL, keys and region for S3 tools (source it)
  cluster.json  every service's URL, data directory, pid and log
  logs/         one log per service (with --processes)
  tls/          with --tls: the local CA (ca.pem) and each service's
                certificate; client.toml (ca_file) and s3.env
                (AWS_CA_BUNDLE) name ca.pem, and every URL is https

Runs in this process until Ctrl-C/SIGTERM; with --processes each service is
its own child process, so a script can kill and restart them one by one.";

/// Flags shared by the services.
#[derive(Debug, Args, Clone, Default)]
pub struct CommonArgs {
    /// TOML config file (flags and env override it).
    #[arg(long, env = "BLOB_CONFIG")]
    pub config: Option<PathBuf>,
    /// Secret file: the namenode's `cluster.secret` (made on first start),
    /// or the file it writes beside it for the service's role
    /// (`datanode.secret`, `edge.secret`, `s3.secret`).
    #[arg(long, env = "BLOB_SECRET_FILE")]
    pub secret_file: Option<PathBuf>,
    /// Write the bound address to this file once listening (for scripts
    /// that bind port 0).
    #[arg(long)]
    pub addr_file: Option<PathBuf>,
    /// Connections served at once; more wait until one closes.
    #[arg(long, env = "BLOB_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// Body bytes held in memory at once across all requests, e.g. 256MiB;
    /// past it requests wait, then get 503 with Retry-After.
    #[arg(long, env = "BLOB_MAX_BYTES_IN_FLIGHT", value_parser = parse_size)]
    pub max_bytes_in_flight: Option<u64>,
    /// PEM certificate chain to serve TLS with (needs --tls-key); without
    /// it, plain HTTP.
    #[arg(long, env = "BLOB_TLS_CERT", value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, env = "BLOB_TLS_KEY", value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// PEM CA certificate(s) that https URLs of other services (namenode,
    /// datanodes, edges) are verified against.
    #[arg(long, env = "BLOB_CA_FILE", value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
}

impl CommonArgs {
    /// Lays the limit flags over a service's limits.
    fn apply_limits(&self, limits: &mut blob_server::limits::Limits) {
        if let Some(v) = self.max_connections {
            limits.max_connections = v;
        }
        if let Some(v) = self.max_bytes_in_flight {
            limits.max_bytes_in_flight = v;
        }
    }

    /// Lays the TLS flags over a service's TLS settings, and checks them.
    fn apply_tls(&self, tls: &mut blob_server::tls::TlsConfig) -> Result<()> {
        if let Some(v) = &self.tls_cert {
            tls.cert = Some(v.clone());
        }
        if let Some(v) = &self.tls_key {
            tls.key = Some(v.clone());
        }
        if let Some(v) = &self.ca_file {
            tls.ca_file = Some(v.clone());
        }
        tls.validate().map_err(anyhow::Error::msg)
    }
}

/// `blobd namenode` flags.
#[derive(Debug, Args, Clone)]
pub struct NamenodeArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Address to listen on.
    #[arg(long, env = "BLOB_NAMENODE_LISTEN")]
    pub listen: Option<std::net::SocketAddr>,
    /// Metadata directory.
    #[arg(long, env = "BLOB_NAMENODE_DATA")]
    pub data: Option<PathBuf>,
    /// Default replication factor.
    #[arg(long, env = "BLOB_NAMENODE_REPLICATION")]
    pub replication: Option<u8>,
    /// Expected datanode heartbeat interval, e.g. `3s`.
    #[arg(long, env = "BLOB_NAMENODE_HEARTBEAT", value_parser = parse_duration)]
    pub heartbeat: Option<Duration>,
    /// Silence after which a datanode is stale, e.g. `10s`.
    #[arg(long, env = "BLOB_NAMENODE_STALE_AFTER", value_parser = parse_duration)]
    pub stale_after: Option<Duration>,
    /// Silence after which a datanode is dead, e.g. `60s`.
    #[arg(long, env = "BLOB_NAMENODE_DEAD_AFTER", value_parser = parse_duration)]
    pub dead_after: Option<Duration>,
    /// Lifetime of pre-signed chunk URLs, e.g. `1h`.
    #[arg(long, env = "BLOB_NAMENODE_PRESIGN_TTL", value_parser = parse_duration)]
    pub presign_ttl: Option<Duration>,
    /// How often the repair loop runs, e.g. `1s`.
    #[arg(long, env = "BLOB_NAMENODE_REPAIR_INTERVAL", value_parser = parse_duration)]
    pub repair_interval: Option<Duration>,
    /// How long unreferenced chunks are kept before deletion, e.g. `1h`.
    #[arg(long, env = "BLOB_NAMENODE_GC_GRACE", value_parser = parse_duration)]
    pub gc_grace: Option<Duration>,
    /// How long chunks no metadata knows are kept on datanodes, e.g. `1h`.
    #[arg(long, env = "BLOB_NAMENODE_ORPHAN_GRACE", value_parser = parse_duration)]
    pub orphan_grace: Option<Duration>,
    /// The length of a day for buckets' lifecycle rules (tests only).
    #[arg(long, hide = true, value_parser = parse_duration)]
    pub lifecycle_day: Option<Duration>,
    /// An edge cache readers of ZONE go through, as ZONE=URL (repeatable;
    /// the order is the preference order for zones without their own).
    #[arg(long = "edge", env = "BLOB_NAMENODE_EDGES", value_delimiter = ',', value_parser = blob_namenode::edges::parse_edge)]
    pub edges: Vec<blob_namenode::EdgeConfig>,
    /// Replicas of a chunk that must be durable before its write succeeds
    /// (default: a majority of its replication factor, 2 of 3); the rest
    /// are repaired as soon as nodes allow.
    #[arg(long, env = "BLOB_NAMENODE_MIN_WRITE_REPLICAS")]
    pub min_write_replicas: Option<u8>,
    /// Fault injection for tests: delay every metadata WAL sync, e.g. `2s`.
    #[arg(long, hide = true, value_parser = parse_duration)]
    pub wal_sync_delay: Option<Duration>,
}

/// `blobd datanode` flags.
#[derive(Debug, Args, Clone)]
pub struct DatanodeArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Address to listen on.
    #[arg(long, env = "BLOB_DATANODE_LISTEN")]
    pub listen: Option<std::net::SocketAddr>,
    /// URL clients reach this node at (default: http://<listen address>).
    #[arg(long, env = "BLOB_DATANODE_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Chunk directory.
    #[arg(long, env = "BLOB_DATANODE_DATA")]
    pub data: Option<PathBuf>,
    /// Namenode base URL.
    #[arg(long, env = "BLOB_DATANODE_NAMENODE")]
    pub namenode: Option<String>,
    /// Heartbeat interval, e.g. `3s`.
    #[arg(long, env = "BLOB_DATANODE_HEARTBEAT", value_parser = parse_duration)]
    pub heartbeat: Option<Duration>,
    /// Skip fsync (benchmarks of the network path only; loses data on power loss).
    #[arg(long, env = "BLOB_DATANODE_NO_FSYNC")]
    pub no_fsync: bool,
    /// Interval between scrubber passes, e.g. `24h`; `0` disables it.
    #[arg(long, env = "BLOB_DATANODE_SCRUB_INTERVAL", value_parser = parse_duration)]
    pub scrub_interval: Option<Duration>,
    /// Interval between full chunk reports, e.g. `1h`.
    #[arg(long, env = "BLOB_DATANODE_FULL_REPORT_INTERVAL", value_parser = parse_duration)]
    pub full_report_interval: Option<Duration>,
    /// Below this many free bytes the node takes no writes (bytes).
    #[arg(long, env = "BLOB_DATANODE_MIN_FREE_BYTES")]
    pub min_free_bytes: Option<u64>,
}

/// `blobd s3` flags.
#[derive(Debug, Args, Clone)]
pub struct S3Args {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Address to listen on.
    #[arg(long, env = "BLOB_S3_LISTEN")]
    pub listen: Option<std::net::SocketAddr>,
    /// Namenode base URL.
    #[arg(long, env = "BLOB_S3_NAMENODE")]
    pub namenode: Option<String>,
    /// Region to answer for (SigV4 scope).
    #[arg(long, env = "BLOB_S3_REGION")]
    pub region: Option<String>,
    /// Smallest multipart part but the last, bytes (S3: 5 MiB).
    #[arg(long, env = "BLOB_S3_MIN_PART_SIZE")]
    pub min_part_size: Option<u64>,
    /// Base domain for virtual-host-style requests (repeatable).
    #[arg(long = "domain", env = "BLOB_S3_DOMAINS", value_delimiter = ',')]
    pub domains: Vec<String>,
    /// The gateway's zone: reads go through that zone's edge cache.
    #[arg(long, env = "BLOB_S3_ZONE")]
    pub zone: Option<String>,
    /// Read objects from the datanodes only, never through an edge cache.
    #[arg(long, env = "BLOB_S3_NO_EDGE")]
    pub no_edge: bool,
}

/// `blobd edge` flags.
#[derive(Debug, Args, Clone)]
pub struct EdgeArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Address to listen on.
    #[arg(long, env = "BLOB_EDGE_LISTEN")]
    pub listen: Option<std::net::SocketAddr>,
    /// Disk tier directory.
    #[arg(long, env = "BLOB_EDGE_DATA")]
    pub data: Option<PathBuf>,
    /// The zone this edge serves (as in the namenode's --edge ZONE=URL).
    #[arg(long, env = "BLOB_EDGE_ZONE")]
    pub zone: Option<String>,
    /// Namenode base URL (bad-replica reports, warm-up list).
    #[arg(long, env = "BLOB_EDGE_NAMENODE")]
    pub namenode: Option<String>,
    /// Eviction policy: lru, lfu, fifo or tinylfu.
    #[arg(long, env = "BLOB_EDGE_POLICY")]
    pub policy: Option<blob_edge::PolicyKind>,
    /// Memory tier capacity, e.g. 256MiB (0: none).
    #[arg(long, env = "BLOB_EDGE_MEMORY", value_parser = parse_size)]
    pub memory: Option<u64>,
    /// Disk tier capacity, e.g. 100GiB (0: none).
    #[arg(long, env = "BLOB_EDGE_DISK", value_parser = parse_size)]
    pub disk: Option<u64>,
    /// File listing chunks to fill at start: one chunk id (64 hex) or
    /// BUCKET/PATH per line, `#` comments.
    #[arg(long, env = "BLOB_EDGE_WARM_FILE")]
    pub warm_file: Option<PathBuf>,
    /// Skip fsync of disk-tier files.
    #[arg(long, env = "BLOB_EDGE_NO_FSYNC")]
    pub no_fsync: bool,
}

/// Parses a size: bytes, or a number with K/M/G/T (powers of 1024; `KiB`,
/// `MB`… accepted the same way).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("invalid size {s:?}: expected e.g. 512MiB, 10GiB or bytes"))?;
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "ki" | "kib" => 10,
        "m" | "mb" | "mi" | "mib" => 20,
        "g" | "gb" | "gi" | "gib" => 30,
        "t" | "tb" | "ti" | "tib" => 40,
        _ => return Err(format!("invalid size unit in {s:?}: use K, M, G or T")),
    };
    n.checked_mul(1u64 << shift)
        .ok_or_else(|| format!("size {s:?} is too large"))
}

pub use blob_common::parse_duration;

fn load_toml<T: serde::de::DeserializeOwned + Default>(path: Option<&Path>) -> Result<T> {
    match path {
        None => Ok(T::default()),
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("reading config {}", p.display()))?;
            toml::from_str(&text).with_context(|| format!("parsing config {}", p.display()))
        }
    }
}

/// The effective namenode config: defaults, file, env, flags.
pub fn namenode_config(a: &NamenodeArgs) -> Result<blob_namenode::Config> {
    let mut cfg: blob_namenode::Config = load_toml(a.common.config.as_deref())?;
    if let Some(v) = a.listen {
        cfg.listen = v;
    }
    if let Some(v) = &a.data {
        cfg.data_dir = v.clone();
    }
    if let Some(v) = a.replication {
        cfg.default_replication = v;
    }
    if let Some(v) = a.heartbeat {
        cfg.heartbeat_ms = v.as_millis() as u64;
    }
    if let Some(v) = a.stale_after {
        cfg.stale_after_ms = v.as_millis() as u64;
    }
    if let Some(v) = a.dead_after {
        cfg.dead_after_ms = v.as_millis() as u64;
    }
    if let Some(v) = a.presign_ttl {
        cfg.presign_ttl_secs = v.as_secs().max(1);
    }
    if let Some(v) = a.repair_interval {
        cfg.repair_ms = v.as_millis().max(1) as u64;
    }
    if let Some(v) = a.gc_grace {
        cfg.gc_grace_ms = v.as_millis() as u64;
    }
    if let Some(v) = a.orphan_grace {
        cfg.orphan_grace_ms = v.as_millis() as u64;
    }
    if let Some(v) = a.lifecycle_day {
        cfg.lifecycle_day_ms = v.as_millis().max(1) as u64;
    }
    if !a.edges.is_empty() {
        cfg.edges = a.edges.clone();
    }
    if let Some(v) = a.min_write_replicas {
        cfg.min_write_replicas = Some(v);
    }
    if let Some(v) = a.wal_sync_delay {
        cfg.wal_sync_delay_ms = v.as_millis() as u64;
    }
    a.common.apply_limits(&mut cfg.limits);
    a.common.apply_tls(&mut cfg.tls)?;
    // Short dead intervals (tests) imply a short stale interval.
    if cfg.stale_after_ms > cfg.dead_after_ms {
        cfg.stale_after_ms = cfg.dead_after_ms;
    }
    if cfg.heartbeat_ms > cfg.stale_after_ms {
        cfg.heartbeat_ms = cfg.stale_after_ms;
    }
    cfg.validate()
        .map_err(anyhow::Error::msg)
        .context("invalid namenode config")?;
    Ok(cfg)
}

/// The effective datanode config: defaults, file, env, flags.
pub fn datanode_config(a: &DatanodeArgs) -> Result<blob_datanode::Config> {
    let mut cfg: blob_datanode::Config = load_toml(a.common.config.as_deref())?;
    if let Some(v) = a.listen {
        cfg.listen = v;
    }
    if let Some(v) = &a.public_url {
        cfg.public_url = Some(v.clone());
    }
    if let Some(v) = &a.data {
        cfg.data_dir = v.clone();
    }
    if let Some(v) = &a.namenode {
        cfg.namenode = v.clone();
    }
    if let Some(v) = a.heartbeat {
        cfg.heartbeat_ms = v.as_millis().max(1) as u64;
    }
    if a.no_fsync {
        cfg.fsync = false;
    }
    if let Some(v) = a.scrub_interval {
        cfg.scrub_interval_ms = v.as_millis() as u64;
    }
    if let Some(v) = a.full_report_interval {
        cfg.full_report_ms = v.as_millis().max(1) as u64;
    }
    if let Some(v) = a.min_free_bytes {
        cfg.min_free_bytes = v;
    }
    a.common.apply_limits(&mut cfg.limits);
    a.common.apply_tls(&mut cfg.tls)?;
    Ok(cfg)
}

/// The effective S3 gateway config: defaults, file, env, flags.
pub fn s3_config(a: &S3Args) -> Result<blob_s3::Config> {
    let mut cfg: blob_s3::Config = load_toml(a.common.config.as_deref())?;
    if let Some(v) = a.listen {
        cfg.listen = v;
    }
    if let Some(v) = &a.namenode {
        cfg.namenode = v.clone();
    }
    if let Some(v) = &a.region {
        cfg.region = v.clone();
    }
    if let Some(v) = a.min_part_size {
        cfg.min_part_size = v;
    }
    if !a.domains.is_empty() {
        cfg.domains = a.domains.clone();
    }
    if let Some(v) = &a.zone {
        cfg.zone = Some(v.clone());
    }
    if a.no_edge {
        cfg.no_edge = true;
    }
    a.common.apply_limits(&mut cfg.limits);
    a.common.apply_tls(&mut cfg.tls)?;
    cfg.validate()
        .map_err(anyhow::Error::msg)
        .context("invalid S3 gateway config")?;
    Ok(cfg)
}

/// The effective edge config: defaults, file, env, flags.
pub fn edge_config(a: &EdgeArgs) -> Result<blob_edge::Config> {
    let mut cfg: blob_edge::Config = load_toml(a.common.config.as_deref())?;
    if let Some(v) = a.listen {
        cfg.listen = v;
    }
    if let Some(v) = &a.data {
        cfg.data_dir = v.clone();
    }
    if let Some(v) = &a.zone {
        cfg.zone = v.clone();
    }
    if let Some(v) = &a.namenode {
        cfg.namenode = Some(v.clone());
    }
    if let Some(v) = a.policy {
        cfg.policy = v;
    }
    if let Some(v) = a.memory {
        cfg.memory_capacity = v;
    }
    if let Some(v) = a.disk {
        cfg.disk_capacity = v;
    }
    if a.no_fsync {
        cfg.fsync = false;
    }
    a.common.apply_limits(&mut cfg.limits);
    a.common.apply_tls(&mut cfg.tls)?;
    if let Some(p) = &a.warm_file {
        let text = std::fs::read_to_string(p)
            .with_context(|| format!("reading the warm-up list {}", p.display()))?;
        cfg.warm.extend(
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(str::to_string),
        );
    }
    cfg.validate()
        .map_err(anyhow::Error::msg)
        .context("invalid edge config")?;
    Ok(cfg)
}

/// Binds `addr`, with a hint when the port is taken.
pub async fn bind(addr: std::net::SocketAddr, what: &str) -> Result<TcpListener> {
    TcpListener::bind(addr).await.with_context(|| {
        format!("binding the {what} to {addr} (is another blobd running? pick another port with --listen)")
    })
}

fn write_addr_file(path: Option<&Path>, listener: &TcpListener) -> Result<()> {
    if let Some(p) = path {
        let addr = listener.local_addr().context("reading bound address")?;
        let tmp = p.with_extension("tmp");
        std::fs::write(&tmp, addr.to_string())
            .with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, p).with_context(|| format!("writing {}", p.display()))?;
    }
    Ok(())
}

/// Cancels `token` on SIGINT or SIGTERM.
pub fn cancel_on_signals(token: CancellationToken) {
    tokio::spawn(async move {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot watch SIGTERM");
                    return;
                }
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        tracing::info!("shutting down");
        token.cancel();
    });
}

async fn run_namenode(a: NamenodeArgs) -> Result<()> {
    let cfg = namenode_config(&a)?;
    let secret_file = a
        .common
        .secret_file
        .clone()
        .unwrap_or_else(|| cfg.data_dir.join("cluster.secret"));
    let keyring = secrets::load_or_create(&secret_file)?;
    let listener = bind(cfg.listen, "namenode").await?;
    let nn = blob_namenode::Namenode::open(cfg, keyring).context("opening the namenode")?;
    write_addr_file(a.common.addr_file.as_deref(), &listener)?;
    let shutdown = CancellationToken::new();
    cancel_on_signals(shutdown.clone());
    blob_namenode::serve_with(nn, listener, shutdown)
        .await
        .context("running the namenode")
}

async fn run_datanode(a: DatanodeArgs) -> Result<()> {
    let cfg = datanode_config(&a)?;
    let Some(secret_file) = a.common.secret_file.clone() else {
        bail!("a datanode needs its secret file: pass --secret-file (the namenode writes <its data dir>/datanode.secret)");
    };
    let keyring = secrets::load(&secret_file)?;
    let listener = bind(cfg.listen, "datanode").await?;
    write_addr_file(a.common.addr_file.as_deref(), &listener)?;
    let shutdown = CancellationToken::new();
    cancel_on_signals(shutdown.clone());
    blob_datanode::serve(cfg, keyring, listener, shutdown)
        .await
        .context("running the datanode")
}

async fn run_edge(a: EdgeArgs) -> Result<()> {
    let cfg = edge_config(&a)?;
    let Some(secret_file) = a.common.secret_file.clone() else {
        bail!("an edge needs its secret file to verify URLs: pass --secret-file (the namenode writes <its data dir>/edge.secret)");
    };
    let keyring = secrets::load(&secret_file)?;
    let listener = bind(cfg.listen, "edge").await?;
    write_addr_file(a.common.addr_file.as_deref(), &listener)?;
    let shutdown = CancellationToken::new();
    cancel_on_signals(shutdown.clone());
    blob_edge::serve(cfg, keyring, listener, shutdown)
        .await
        .context("running the edge")
}

async fn run_s3(a: S3Args) -> Result<()> {
    let cfg = s3_config(&a)?;
    let Some(secret_file) = a.common.secret_file.clone() else {
        bail!("an S3 gateway needs its secret file to look up access keys: pass --secret-file (the namenode writes <its data dir>/s3.secret)");
    };
    let keyring = secrets::load(&secret_file)?;
    let listener = bind(cfg.listen, "S3 gateway").await?;
    write_addr_file(a.common.addr_file.as_deref(), &listener)?;
    let shutdown = CancellationToken::new();
    cancel_on_signals(shutdown.clone());
    blob_s3::serve(cfg, keyring, listener, shutdown)
        .await
        .context("running the S3 gateway")
}

/// Entry point of the `blobd` binary (also called by test wrappers).
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    blob_common::telemetry::init("info");
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("blobd: starting the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Namenode(a) => run_namenode(a).await,
            Command::Datanode(a) => run_datanode(a).await,
            Command::Edge(a) => run_edge(a).await,
            Command::S3(a) => run_s3(a).await,
            Command::Dev(a) => dev::run(a).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("blobd: {e:#}");
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("6s"), Ok(Duration::from_secs(6)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert!(parse_duration("3 weeks").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("512"), Ok(512));
        assert_eq!(parse_size("256MiB"), Ok(256 << 20));
        assert_eq!(parse_size("10G"), Ok(10 << 30));
        assert_eq!(parse_size("0"), Ok(0));
        assert!(parse_size("3 apples").is_err());
        assert!(parse_size("99999999999T").is_err());
    }
}
