//! `blobd dev`: a whole local cluster under one directory, in this process
//! or (with `--processes`) as child processes that a script can kill and
//! restart one by one, with an S3 gateway and an edge cache (zone `local`,
//! which `client.toml` and the gateway name, so their reads go through it). Writes `DIR/client.toml` for
//! blobctl, `DIR/s3.env` for S3 tools (`AWS_ENDPOINT_URL`, keys, region) and
//! `DIR/cluster.json` describing every service. With `--tls` every service
//! serves TLS with a certificate from a local CA (`DIR/tls/ca.pem`), and
//! both files name that CA (`ca_file`, `AWS_CA_BUNDLE`).
//!
//! Both modes build each service's flags the same way (the `*_args`
//! functions below); the processes mode starts them through
//! [`crate::cluster`], the launcher the whole-cluster tests use too.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;
use serde::{Deserialize, Serialize};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::cluster::{
    free_port, stop_all, write_atomic, write_client_config, write_s3_env, Certs, Credentials,
    Launcher, Layout, Service, ServiceArgs,
};
use crate::{bind, cancel_on_signals, parse_duration, secrets, CommonArgs};
use blob_common::auth::ServiceRole;

/// `blobd dev` flags.
#[derive(Debug, Args, Clone)]
pub struct DevArgs {
    /// Directory for all data, logs and generated config.
    #[arg(long, default_value = ".blobstore")]
    pub data: PathBuf,
    /// Number of datanodes.
    #[arg(long, default_value_t = 3)]
    pub datanodes: usize,
    /// Run each service as its own child process.
    #[arg(long)]
    pub processes: bool,
    /// Namenode port; datanodes take the following ones. 0: any free ports.
    #[arg(long, default_value_t = 9870)]
    pub port: u16,
    /// Default replication factor (at most the number of datanodes).
    #[arg(long)]
    pub replication: Option<u8>,
    /// Datanode heartbeat interval, e.g. `3s`.
    #[arg(long, value_parser = parse_duration)]
    pub heartbeat: Option<Duration>,
    /// Silence after which a datanode is stale, e.g. `10s`.
    #[arg(long, value_parser = parse_duration)]
    pub stale_after: Option<Duration>,
    /// Silence after which a datanode is dead, e.g. `60s`.
    #[arg(long, value_parser = parse_duration)]
    pub dead_after: Option<Duration>,
    /// Replicas of a chunk that must be durable before its write succeeds
    /// (default: a majority of the replication factor, 2 of 3).
    #[arg(long)]
    pub min_write_replicas: Option<u8>,
    /// Skip fsync on datanodes (never for data you want to keep).
    #[arg(long)]
    pub no_fsync: bool,
    /// Start no edge cache (reads go to the datanodes directly).
    #[arg(long)]
    pub no_edge: bool,
    /// Serve every service over TLS, with certificates from a local CA
    /// made under DATA/tls (kept across restarts); client.toml and s3.env
    /// trust it.
    #[arg(long)]
    pub tls: bool,
}

/// The zone of the dev cluster's edge.
const DEV_ZONE: &str = "local";

/// One service of a dev cluster.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServiceEntry {
    /// Base URL.
    pub url: String,
    /// Its data directory.
    pub data: PathBuf,
    /// Process id, when it runs as its own process.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    /// The command line that starts it (processes mode), to restart it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    /// Its log file (processes mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log: Option<PathBuf>,
}

/// `DIR/cluster.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClusterFile {
    /// The namenode.
    pub namenode: ServiceEntry,
    /// The datanodes.
    pub datanodes: Vec<ServiceEntry>,
    /// The S3 gateway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3: Option<ServiceEntry>,
    /// The edge cache.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edge: Option<ServiceEntry>,
    /// blobctl config file for this cluster.
    pub client_config: PathBuf,
    /// PID of the `blobd dev` process.
    pub pid: u32,
}

fn port_at(base: u16, offset: usize) -> Result<SocketAddr> {
    let port = if base == 0 {
        0
    } else {
        u16::try_from(base as usize + offset).context("port out of range: choose a lower --port")?
    };
    Ok(SocketAddr::from(([127, 0, 0, 1], port)))
}

fn absolute(p: &Path) -> Result<PathBuf> {
    if p.is_absolute() {
        Ok(p.to_path_buf())
    } else {
        Ok(std::env::current_dir()
            .context("reading the current directory")?
            .join(p))
    }
}

fn edge_addr(a: &DevArgs) -> Result<SocketAddr> {
    if a.port == 0 {
        free_port(std::net::IpAddr::from([127, 0, 0, 1]))
    } else {
        port_at(a.port, a.datanodes + 2)
    }
}

/// Region the dev cluster's S3 gateway answers for.
const DEV_REGION: &str = "us-east-1";

fn print_usage(dir: &Path, cluster: &ClusterFile) {
    let cfg = cluster.client_config.display();
    eprintln!(
        "\nblobstore dev cluster is up: namenode {} with {} datanodes, data in {}\n\n  \
         export BLOBCTL_CONFIG={cfg}\n  \
         blobctl mb my-bucket\n  \
         blobctl upload ./some-file my-bucket/some-file\n  \
         blobctl ls my-bucket\n  \
         blobctl download my-bucket/some-file ./copy\n\n\
         S3: {} (set -a; . {}/s3.env; aws s3 ls)\n\
         Edge cache: {} (zone {DEV_ZONE}; blobctl admin edge stats)\n\
         Services: {}/cluster.json. Stop with Ctrl-C; a restart on the same --data keeps everything.\n{}",
        cluster.namenode.url,
        cluster.datanodes.len(),
        dir.display(),
        cluster.s3.as_ref().map_or("-", |s| s.url.as_str()),
        dir.display(),
        cluster.edge.as_ref().map_or("-", |s| s.url.as_str()),
        dir.display(),
        if cluster.namenode.url.starts_with("https://") {
            format!(
                "TLS on every service: clients trust the CA {}/tls/ca.pem (ca_file in client.toml, AWS_CA_BUNDLE in s3.env).\n",
                dir.display()
            )
        } else {
            String::new()
        },
    );
}

/// Runs `blobd dev`.
pub async fn run(a: DevArgs) -> Result<()> {
    if a.datanodes == 0 {
        bail!("--datanodes must be at least 1");
    }
    if let Some(r) = a.replication {
        if r == 0 || r as usize > a.datanodes {
            bail!(
                "--replication {r} needs at least {r} datanodes (have {})",
                a.datanodes
            );
        }
    }
    let dir = absolute(&a.data)?;
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let shutdown = CancellationToken::new();
    cancel_on_signals(shutdown.clone());
    if a.processes {
        run_processes(a, dir, shutdown).await
    } else {
        run_in_process(a, dir, shutdown).await
    }
}

/// The scheme of the dev cluster's URLs.
fn scheme(a: &DevArgs) -> &'static str {
    if a.tls {
        "https"
    } else {
        "http"
    }
}

fn replication(a: &DevArgs) -> u8 {
    a.replication.unwrap_or_else(|| a.datanodes.min(3) as u8)
}

/// The namenode's flags; with an edge at `edge`, readers of zone `local`
/// are sent to it.
fn namenode_args(
    a: &DevArgs,
    layout: &Layout,
    edge: Option<SocketAddr>,
) -> Result<crate::NamenodeArgs> {
    Ok(crate::NamenodeArgs {
        common: CommonArgs::default(),
        listen: Some(port_at(a.port, 0)?),
        data: Some(layout.data("namenode")),
        replication: Some(replication(a)),
        heartbeat: a.heartbeat,
        stale_after: a.stale_after,
        dead_after: a.dead_after,
        presign_ttl: None,
        repair_interval: None,
        gc_grace: None,
        orphan_grace: None,
        lifecycle_day: None,
        min_write_replicas: a.min_write_replicas,
        wal_sync_delay: None,
        edges: edge
            .iter()
            .map(|addr| blob_namenode::EdgeConfig {
                zone: DEV_ZONE.into(),
                url: format!("{}://{addr}", scheme(a)),
            })
            .collect(),
    })
}

/// Datanode `i`'s flags.
fn datanode_args(
    a: &DevArgs,
    layout: &Layout,
    i: usize,
    nn_url: &str,
) -> Result<crate::DatanodeArgs> {
    Ok(crate::DatanodeArgs {
        common: CommonArgs::default(),
        listen: Some(port_at(a.port, i + 1)?),
        public_url: None,
        data: Some(layout.data(&format!("datanode-{i}"))),
        namenode: Some(nn_url.to_string()),
        heartbeat: a.heartbeat,
        no_fsync: a.no_fsync,
        scrub_interval: None,
        full_report_interval: None,
        min_free_bytes: None,
    })
}

/// The S3 gateway's flags; with a zone, it reads through that zone's edge.
fn s3_args(a: &DevArgs, nn_url: &str, zone: Option<&str>) -> Result<crate::S3Args> {
    Ok(crate::S3Args {
        common: CommonArgs::default(),
        listen: Some(port_at(a.port, a.datanodes + 1)?),
        namenode: Some(nn_url.to_string()),
        region: Some(DEV_REGION.into()),
        min_part_size: None,
        domains: vec![],
        zone: zone.map(String::from),
        no_edge: false,
    })
}

/// The edge's flags.
fn edge_args(layout: &Layout, addr: SocketAddr, nn_url: &str) -> crate::EdgeArgs {
    crate::EdgeArgs {
        common: CommonArgs::default(),
        listen: Some(addr),
        data: Some(layout.data("edge")),
        zone: Some(DEV_ZONE.into()),
        namenode: Some(nn_url.to_string()),
        policy: None,
        memory: None,
        disk: None,
        warm_file: None,
        no_fsync: false,
    }
}

/// Writes `DIR/client.toml` (blobctl) and `DIR/s3.env` (S3 tools), both
/// with the admin key (and the CA, with TLS).
fn write_client_files(
    layout: &Layout,
    nn_url: &str,
    s3_url: &str,
    zone: Option<&str>,
    certs: Option<&Certs>,
) -> Result<PathBuf> {
    let ca_file = certs.map(Certs::ca_file);
    let creds = Credentials::read(&layout.credentials())?;
    let dir = &layout.root;
    let client_config = dir.join("client.toml");
    write_client_config(
        &client_config,
        &format!("blobctl config for the dev cluster in {}", dir.display()),
        nn_url,
        &creds,
        zone,
        ca_file.as_deref(),
    )?;
    write_s3_env(
        &dir.join("s3.env"),
        s3_url,
        &creds,
        DEV_REGION,
        ca_file.as_deref(),
    )?;
    Ok(client_config)
}

fn in_process_entry(url: String, data: PathBuf) -> ServiceEntry {
    ServiceEntry {
        url,
        data,
        pid: None,
        command: vec![],
        log: None,
    }
}

fn write_cluster_file(cluster: &ClusterFile) -> Result<()> {
    let dir = cluster
        .client_config
        .parent()
        .context("the client config has a directory")?;
    write_atomic(
        &dir.join("cluster.json"),
        &serde_json::to_string_pretty(cluster)?,
    )?;
    print_usage(dir, cluster);
    Ok(())
}

async fn run_in_process(a: DevArgs, dir: PathBuf, shutdown: CancellationToken) -> Result<()> {
    let layout = Layout::split(&dir);
    let keyring = secrets::load_or_create(&layout.secret())?;
    let certs = match a.tls {
        true => Some(Certs::open(&layout.tls())?),
        false => None,
    };
    // With TLS, each service's flags name its certificate and the CA.
    let secure = |name: &str, mut common: CommonArgs| -> Result<CommonArgs> {
        if let Some(c) = &certs {
            c.configure(name, &[], &mut common)?;
        }
        Ok(common)
    };
    let scheme = scheme(&a);
    // The edge is bound first: the namenode hands out its URL.
    let edge_listener = match a.no_edge {
        true => None,
        false => Some(bind(edge_addr(&a)?, "edge").await?),
    };
    let edge_at = match &edge_listener {
        Some(l) => Some(l.local_addr().context("reading edge address")?),
        None => None,
    };
    let zone = edge_at.map(|_| DEV_ZONE);
    let mut nn_args = namenode_args(&a, &layout, edge_at)?;
    nn_args.common = secure("namenode", nn_args.common)?;
    let nn_cfg = crate::namenode_config(&nn_args)?;
    let nn_listener = bind(nn_cfg.listen, "namenode").await?;
    let nn_addr = nn_listener
        .local_addr()
        .context("reading namenode address")?;
    let nn_url = format!("{scheme}://{nn_addr}");
    let nn = blob_namenode::Namenode::open(nn_cfg.clone(), keyring.clone())
        .context("opening the namenode")?;

    let mut tasks = JoinSet::new();
    let token = shutdown.clone();
    tasks.spawn(async move {
        blob_namenode::serve_with(nn, nn_listener, token)
            .await
            .context("namenode")
    });

    let mut datanodes = Vec::new();
    for i in 0..a.datanodes {
        let name = format!("datanode-{i}");
        let mut args = datanode_args(&a, &layout, i, &nn_url)?;
        args.common = secure(&name, args.common)?;
        let cfg = crate::datanode_config(&args)?;
        let listener = bind(cfg.listen, "datanode").await?;
        let addr = listener.local_addr().context("reading datanode address")?;
        datanodes.push(in_process_entry(
            format!("{scheme}://{addr}"),
            cfg.data_dir.clone(),
        ));
        let (ring, token) = (keyring.for_role(ServiceRole::Datanode), shutdown.clone());
        tasks.spawn(async move {
            blob_datanode::serve(cfg, ring, listener, token)
                .await
                .with_context(|| format!("datanode {i}"))
        });
    }
    let mut s3 = s3_args(&a, &nn_url, zone)?;
    s3.common = secure("s3", s3.common)?;
    let s3_cfg = crate::s3_config(&s3)?;
    let s3_listener = bind(s3_cfg.listen, "S3 gateway").await?;
    let s3_addr = s3_listener
        .local_addr()
        .context("reading S3 gateway address")?;
    let s3_url = format!("{scheme}://{s3_addr}");
    let client_config = write_client_files(&layout, &nn_url, &s3_url, zone, certs.as_ref())?;
    let (ring, token) = (keyring.for_role(ServiceRole::Gateway), shutdown.clone());
    tasks.spawn(async move {
        blob_s3::serve(s3_cfg, ring, s3_listener, token)
            .await
            .context("S3 gateway")
    });
    let mut edge = None;
    if let (Some(listener), Some(addr)) = (edge_listener, edge_at) {
        let mut args = edge_args(&layout, addr, &nn_url);
        args.common = secure("edge", args.common)?;
        let edge_cfg = crate::edge_config(&args)?;
        edge = Some(in_process_entry(
            format!("{scheme}://{addr}"),
            edge_cfg.data_dir.clone(),
        ));
        let (ring, token) = (keyring.for_role(ServiceRole::Edge), shutdown.clone());
        tasks.spawn(async move {
            blob_edge::serve(edge_cfg, ring, listener, token)
                .await
                .context("edge")
        });
    }
    write_cluster_file(&ClusterFile {
        namenode: in_process_entry(nn_url, nn_cfg.data_dir.clone()),
        datanodes,
        s3: Some(in_process_entry(s3_url, dir.clone())),
        edge,
        client_config,
        pid: std::process::id(),
    })?;

    // Run until a signal, or until any service fails (then stop the rest).
    let mut result = Ok(());
    while let Some(done) = tasks.join_next().await {
        let r = done.context("service task panicked").and_then(|r| r);
        if let Err(e) = r {
            if result.is_ok() {
                result = Err(e);
            }
            shutdown.cancel();
        }
    }
    result
}

/// A service's `cluster.json` entry.
fn process_entry(s: &Service) -> ServiceEntry {
    ServiceEntry {
        url: s.url(),
        data: s.data.clone(),
        pid: s.pid(),
        command: s.command.clone(),
        log: Some(s.log.clone()),
    }
}

/// How long stopped services get to exit before they are killed.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// Starts every service as a child process of this one, each on its port
/// (pinned once bound, so that its recorded command line restarts it
/// there). On failure, the ones already started are stopped.
fn start_processes(a: &DevArgs, dir: &Path, started: &mut Vec<Service>) -> Result<ClusterFile> {
    let exe = std::env::current_exe().context("locating the blobd executable")?;
    let mut launcher = Launcher::new(exe, Layout::split(dir));
    if a.tls {
        launcher = launcher.with_tls()?;
    }
    launcher.prepare()?;
    let layout = &launcher.layout;
    let start = |started: &mut Vec<Service>, name: &str, args: ServiceArgs| -> Result<usize> {
        let mut s = launcher.service(name, args, &[])?;
        s.pin_port = true;
        s.start()?;
        started.push(s);
        Ok(started.len() - 1)
    };
    let edge_at = match a.no_edge {
        true => None,
        false => Some(edge_addr(a)?),
    };
    let zone = edge_at.map(|_| DEV_ZONE);
    let nn = start(
        started,
        "namenode",
        ServiceArgs::Namenode(namenode_args(a, layout, edge_at)?),
    )?;
    let nn_url = started[nn].url();
    let mut datanodes = Vec::new();
    for i in 0..a.datanodes {
        let args = ServiceArgs::Datanode(datanode_args(a, layout, i, &nn_url)?);
        datanodes.push(start(started, &format!("datanode-{i}"), args)?);
    }
    let s3 = start(started, "s3", ServiceArgs::S3(s3_args(a, &nn_url, zone)?))?;
    let client_config = write_client_files(
        layout,
        &nn_url,
        &started[s3].url(),
        zone,
        launcher.tls.as_ref(),
    )?;
    let edge = match edge_at {
        Some(addr) => Some(start(
            started,
            "edge",
            ServiceArgs::Edge(edge_args(layout, addr, &nn_url)),
        )?),
        None => None,
    };
    Ok(ClusterFile {
        namenode: process_entry(&started[nn]),
        datanodes: datanodes
            .iter()
            .map(|&i| process_entry(&started[i]))
            .collect(),
        s3: Some(process_entry(&started[s3])),
        edge: edge.map(|i| process_entry(&started[i])),
        client_config,
        pid: std::process::id(),
    })
}

async fn run_processes(a: DevArgs, dir: PathBuf, shutdown: CancellationToken) -> Result<()> {
    // Starting waits on child processes: off the async workers.
    let (cluster, mut services) = tokio::task::spawn_blocking(move || {
        let mut started = Vec::new();
        match start_processes(&a, &dir, &mut started) {
            Ok(cluster) => Ok((cluster, started)),
            Err(e) => {
                stop_all(&mut started, STOP_GRACE);
                Err(e)
            }
        }
    })
    .await
    .context("starting the services")??;
    write_cluster_file(&cluster)?;

    shutdown.cancelled().await;
    tokio::task::spawn_blocking(move || stop_all(&mut services, STOP_GRACE))
        .await
        .context("stopping the services")
}
