//! `blobd dev`: a whole local cluster under one directory, in this process
//! or (with `--processes`) as child processes that a script can kill and
//! restart one by one, with an S3 gateway and an edge cache (zone `local`,
//! which `client.toml` and the gateway name, so their reads go through it). Writes `DIR/client.toml` for
//! blobctl, `DIR/s3.env` for S3 tools (`AWS_ENDPOINT_URL`, keys, region) and
//! `DIR/cluster.json` describing every service.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Args;
use serde::{Deserialize, Serialize};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::{bind, cancel_on_signals, parse_duration, secrets};

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

fn port_at(base: u16, offset: usize) -> Result<std::net::SocketAddr> {
    let port = if base == 0 {
        0
    } else {
        u16::try_from(base as usize + offset).context("port out of range: choose a lower --port")?
    };
    Ok(std::net::SocketAddr::from(([127, 0, 0, 1], port)))
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

fn write_atomic(path: &Path, text: &str) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
}

#[derive(Deserialize)]
struct Credentials {
    access_key: String,
    secret_key: String,
}

fn read_credentials(creds_file: &Path) -> Result<Credentials> {
    let text = std::fs::read_to_string(creds_file)
        .with_context(|| format!("reading admin credentials {}", creds_file.display()))?;
    toml::from_str(&text).with_context(|| format!("parsing {}", creds_file.display()))
}

/// Writes a file holding the admin secret: owner-only, atomically.
fn write_secret_file(path: &Path, text: &str) -> Result<()> {
    blob_common::write_private(path, text.as_bytes())
        .with_context(|| format!("writing {}", path.display()))
}

fn write_client_config(
    dir: &Path,
    endpoint: &str,
    creds_file: &Path,
    zone: Option<&str>,
) -> Result<PathBuf> {
    let c = read_credentials(creds_file)?;
    let path = dir.join("client.toml");
    let zone = zone.map_or(String::new(), |z| format!("zone = \"{z}\"\n"));
    write_secret_file(
        &path,
        &format!(
            "# blobctl config for the dev cluster in {}\nendpoint = \"{endpoint}\"\naccess_key = \"{}\"\nsecret_key = \"{}\"\n{zone}",
            dir.display(),
            c.access_key,
            c.secret_key
        ),
    )?;
    Ok(path)
}

/// A free port on `host` for a service whose URL others need before it
/// starts: bound and released here, bound again by the service. It is
/// taken below the kernel's ephemeral range, so that no outgoing
/// connection can take it as its local port in between.
pub fn free_port(host: std::net::IpAddr) -> Result<std::net::SocketAddr> {
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    let (low, high) = (10_000u16, ephemeral_low.saturating_sub(1));
    if high > low {
        for _ in 0..200 {
            let port = rand::Rng::gen_range(&mut rand::thread_rng(), low..high);
            if let Ok(l) = std::net::TcpListener::bind((host, port)) {
                return l.local_addr().context("reading a free port");
            }
        }
    }
    let l = std::net::TcpListener::bind((host, 0)).context("finding a free port")?;
    l.local_addr().context("reading a free port")
}

fn edge_addr(a: &DevArgs) -> Result<std::net::SocketAddr> {
    if a.port == 0 {
        free_port(std::net::IpAddr::from([127, 0, 0, 1]))
    } else {
        port_at(a.port, a.datanodes + 2)
    }
}

/// Region the dev cluster's S3 gateway answers for.
const DEV_REGION: &str = "us-east-1";

/// Writes `DIR/s3.env`: what S3 tools need to reach the dev gateway as the
/// admin key (`set -a; . DIR/s3.env`).
fn write_s3_env(dir: &Path, endpoint: &str, creds_file: &Path) -> Result<PathBuf> {
    let c = read_credentials(creds_file)?;
    let path = dir.join("s3.env");
    write_secret_file(
        &path,
        &format!(
            "AWS_ENDPOINT_URL={endpoint}\nAWS_ACCESS_KEY_ID={}\nAWS_SECRET_ACCESS_KEY={}\nAWS_REGION={DEV_REGION}\n",
            c.access_key, c.secret_key
        ),
    )?;
    Ok(path)
}

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
         Services: {}/cluster.json. Stop with Ctrl-C; a restart on the same --data keeps everything.\n",
        cluster.namenode.url,
        cluster.datanodes.len(),
        dir.display(),
        cluster.s3.as_ref().map_or("-", |s| s.url.as_str()),
        dir.display(),
        cluster.edge.as_ref().map_or("-", |s| s.url.as_str()),
        dir.display(),
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

fn replication(a: &DevArgs) -> u8 {
    a.replication.unwrap_or_else(|| a.datanodes.min(3) as u8)
}

async fn run_in_process(a: DevArgs, dir: PathBuf, shutdown: CancellationToken) -> Result<()> {
    let keyring = secrets::load_or_create(&dir.join("cluster.secret"))?;
    // The edge is bound first: the namenode hands out its URL.
    let edge_listener = match a.no_edge {
        true => None,
        false => Some(bind(edge_addr(&a)?, "edge").await?),
    };
    let edge_url = match &edge_listener {
        Some(l) => Some(format!(
            "http://{}",
            l.local_addr().context("reading edge address")?
        )),
        None => None,
    };
    let mut nn_args = crate::NamenodeArgs {
        common: crate::CommonArgs {
            config: None,
            secret_file: None,
            addr_file: None,
            ..Default::default()
        },
        listen: Some(port_at(a.port, 0)?),
        data: Some(dir.join("namenode")),
        replication: Some(replication(&a)),
        heartbeat: a.heartbeat,
        stale_after: a.stale_after,
        dead_after: a.dead_after,
        presign_ttl: None,
        repair_interval: None,
        gc_grace: None,
        orphan_grace: None,
        min_write_replicas: a.min_write_replicas,
        wal_sync_delay: None,
        edges: edge_url
            .iter()
            .map(|url| blob_namenode::EdgeConfig {
                zone: DEV_ZONE.into(),
                url: url.clone(),
            })
            .collect(),
    };
    let nn_cfg = crate::namenode_config(&nn_args)?;
    let nn_listener = bind(nn_cfg.listen, "namenode").await?;
    let nn_addr = nn_listener
        .local_addr()
        .context("reading namenode address")?;
    nn_args.listen = Some(nn_addr);
    let nn_url = format!("http://{nn_addr}");
    let nn = blob_namenode::Namenode::open(nn_cfg.clone(), keyring.clone())
        .context("opening the namenode")?;
    let zone = (!a.no_edge).then_some(DEV_ZONE);
    let client_config = write_client_config(
        &dir,
        &nn_url,
        &blob_namenode::Namenode::credentials_path(&nn_cfg.data_dir),
        zone,
    )?;

    let mut tasks = JoinSet::new();
    let token = shutdown.clone();
    tasks.spawn(async move {
        blob_namenode::serve_with(nn, nn_listener, token)
            .await
            .context("namenode")
    });

    let mut datanodes = Vec::new();
    for i in 0..a.datanodes {
        let dn_args = crate::DatanodeArgs {
            common: crate::CommonArgs {
                config: None,
                secret_file: None,
                addr_file: None,
                ..Default::default()
            },
            listen: Some(port_at(a.port, i + 1)?),
            public_url: None,
            data: Some(dir.join(format!("datanode-{i}"))),
            namenode: Some(nn_url.clone()),
            heartbeat: a.heartbeat,
            no_fsync: a.no_fsync,
            scrub_interval: None,
            full_report_interval: None,
            min_free_bytes: None,
        };
        let cfg = crate::datanode_config(&dn_args)?;
        let listener = bind(cfg.listen, "datanode").await?;
        let addr = listener.local_addr().context("reading datanode address")?;
        datanodes.push(ServiceEntry {
            url: format!("http://{addr}"),
            data: cfg.data_dir.clone(),
            pid: None,
            command: vec![],
            log: None,
        });
        let (ring, token) = (keyring.clone(), shutdown.clone());
        tasks.spawn(async move {
            blob_datanode::serve(cfg, ring, listener, token)
                .await
                .with_context(|| format!("datanode {i}"))
        });
    }
    let s3_args = crate::S3Args {
        common: crate::CommonArgs {
            config: None,
            secret_file: None,
            addr_file: None,
            ..Default::default()
        },
        listen: Some(port_at(a.port, a.datanodes + 1)?),
        namenode: Some(nn_url.clone()),
        region: Some(DEV_REGION.into()),
        min_part_size: None,
        domains: vec![],
        zone: zone.map(String::from),
    };
    let s3_cfg = crate::s3_config(&s3_args)?;
    let s3_listener = bind(s3_cfg.listen, "S3 gateway").await?;
    let s3_addr = s3_listener
        .local_addr()
        .context("reading S3 gateway address")?;
    let s3_url = format!("http://{s3_addr}");
    write_s3_env(
        &dir,
        &s3_url,
        &blob_namenode::Namenode::credentials_path(&nn_cfg.data_dir),
    )?;
    let (ring, token) = (keyring.clone(), shutdown.clone());
    tasks.spawn(async move {
        blob_s3::serve(s3_cfg, ring, s3_listener, token)
            .await
            .context("S3 gateway")
    });
    let mut edge = None;
    if let (Some(listener), Some(url)) = (edge_listener, edge_url) {
        let edge_cfg = blob_edge::Config {
            listen: listener.local_addr().context("reading edge address")?,
            data_dir: dir.join("edge"),
            zone: DEV_ZONE.into(),
            namenode: Some(nn_url.clone()),
            ..Default::default()
        };
        edge = Some(ServiceEntry {
            url,
            data: edge_cfg.data_dir.clone(),
            pid: None,
            command: vec![],
            log: None,
        });
        let (ring, token) = (keyring.clone(), shutdown.clone());
        tasks.spawn(async move {
            blob_edge::serve(edge_cfg, ring, listener, token)
                .await
                .context("edge")
        });
    }
    let cluster = ClusterFile {
        namenode: ServiceEntry {
            url: nn_url,
            data: nn_cfg.data_dir.clone(),
            pid: None,
            command: vec![],
            log: None,
        },
        datanodes,
        s3: Some(ServiceEntry {
            url: s3_url,
            data: dir.clone(),
            pid: None,
            command: vec![],
            log: None,
        }),
        edge,
        client_config,
        pid: std::process::id(),
    };
    write_atomic(
        &dir.join("cluster.json"),
        &serde_json::to_string_pretty(&cluster)?,
    )?;
    print_usage(&dir, &cluster);

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

fn service_command(exe: &Path, args: &[String]) -> Vec<String> {
    std::iter::once(exe.display().to_string())
        .chain(args.iter().cloned())
        .collect()
}

fn duration_flags(flag: &str, d: Option<Duration>) -> Vec<String> {
    d.map(|d| vec![flag.to_string(), format!("{}ms", d.as_millis())])
        .unwrap_or_default()
}

/// Starts a service as a child process with its output in `log`, and waits
/// until it has written its address to `addr_file`.
async fn spawn_service(
    command: &[String],
    addr_file: &Path,
    log: &Path,
) -> Result<(tokio::process::Child, std::net::SocketAddr)> {
    let _ = std::fs::remove_file(addr_file);
    let log_file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("opening log {}", log.display()))?;
    let err_file = log_file.try_clone().context("duplicating log handle")?;
    let mut child = tokio::process::Command::new(&command[0])
        .args(&command[1..])
        .stdin(Stdio::null())
        .stdout(log_file)
        .stderr(err_file)
        .spawn()
        .with_context(|| format!("starting {}", command.join(" ")))?;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(text) = std::fs::read_to_string(addr_file) {
            if let Ok(addr) = text.trim().parse() {
                return Ok((child, addr));
            }
        }
        if let Some(status) = child.try_wait().context("checking child")? {
            bail!(
                "{} exited with {status} during start; see {}",
                command[1],
                log.display()
            );
        }
        if Instant::now() > deadline {
            bail!(
                "{} did not start within 60 s; see {}",
                command[1],
                log.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn run_processes(a: DevArgs, dir: PathBuf, shutdown: CancellationToken) -> Result<()> {
    let exe = std::env::current_exe().context("locating the blobd executable")?;
    let run = dir.join("run");
    let logs = dir.join("logs");
    for d in [&run, &logs] {
        std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }
    let secret = dir.join("cluster.secret");
    secrets::load_or_create(&secret)?;
    let edge_at = match a.no_edge {
        true => None,
        false => Some(edge_addr(&a)?),
    };
    let zone = edge_at.map(|_| DEV_ZONE);
    let nn_data = dir.join("namenode");
    let mut args: Vec<String> = vec![
        "namenode".into(),
        "--listen".into(),
        port_at(a.port, 0)?.to_string(),
        "--data".into(),
        nn_data.display().to_string(),
        "--secret-file".into(),
        secret.display().to_string(),
        "--addr-file".into(),
        run.join("namenode.addr").display().to_string(),
        "--replication".into(),
        replication(&a).to_string(),
    ];
    args.extend(duration_flags("--heartbeat", a.heartbeat));
    args.extend(duration_flags("--stale-after", a.stale_after));
    args.extend(duration_flags("--dead-after", a.dead_after));
    if let Some(m) = a.min_write_replicas {
        args.extend(["--min-write-replicas".into(), m.to_string()]);
    }
    if let Some(addr) = edge_at {
        args.extend(["--edge".into(), format!("{DEV_ZONE}=http://{addr}")]);
    }
    let mut command = service_command(&exe, &args);
    let nn_log = logs.join("namenode.log");
    let (nn_child, nn_addr) = spawn_service(&command, &run.join("namenode.addr"), &nn_log).await?;
    // Pin the port so that a restart with this command line comes back on it.
    if let Some(i) = command.iter().position(|c| c == "--listen") {
        command[i + 1] = nn_addr.to_string();
    }
    let nn_url = format!("http://{nn_addr}");
    let client_config = write_client_config(
        &dir,
        &nn_url,
        &blob_namenode::Namenode::credentials_path(&nn_data),
        zone,
    )?;
    let mut children = vec![nn_child];
    let namenode = ServiceEntry {
        url: nn_url.clone(),
        data: nn_data,
        pid: children[0].id(),
        command,
        log: Some(nn_log),
    };

    let mut datanodes = Vec::new();
    for i in 0..a.datanodes {
        let data = dir.join(format!("datanode-{i}"));
        let addr_file = run.join(format!("datanode-{i}.addr"));
        let mut args: Vec<String> = vec![
            "datanode".into(),
            "--listen".into(),
            port_at(a.port, i + 1)?.to_string(),
            "--data".into(),
            data.display().to_string(),
            "--namenode".into(),
            nn_url.clone(),
            "--secret-file".into(),
            secret.display().to_string(),
            "--addr-file".into(),
            addr_file.display().to_string(),
        ];
        args.extend(duration_flags("--heartbeat", a.heartbeat));
        if a.no_fsync {
            args.push("--no-fsync".into());
        }
        let mut command = service_command(&exe, &args);
        let log = logs.join(format!("datanode-{i}.log"));
        let (child, addr) = spawn_service(&command, &addr_file, &log).await?;
        if let Some(i) = command.iter().position(|c| c == "--listen") {
            command[i + 1] = addr.to_string();
        }
        datanodes.push(ServiceEntry {
            url: format!("http://{addr}"),
            data,
            pid: child.id(),
            command,
            log: Some(log),
        });
        children.push(child);
    }
    let addr_file = run.join("s3.addr");
    let args: Vec<String> = vec![
        "s3".into(),
        "--listen".into(),
        port_at(a.port, a.datanodes + 1)?.to_string(),
        "--namenode".into(),
        nn_url.clone(),
        "--secret-file".into(),
        secret.display().to_string(),
        "--addr-file".into(),
        addr_file.display().to_string(),
        "--region".into(),
        DEV_REGION.into(),
    ];
    let mut args = args;
    if let Some(z) = zone {
        args.extend(["--zone".into(), z.into()]);
    }
    let mut command = service_command(&exe, &args);
    let log = logs.join("s3.log");
    let (child, addr) = spawn_service(&command, &addr_file, &log).await?;
    if let Some(i) = command.iter().position(|c| c == "--listen") {
        command[i + 1] = addr.to_string();
    }
    let s3_url = format!("http://{addr}");
    write_s3_env(
        &dir,
        &s3_url,
        &blob_namenode::Namenode::credentials_path(&namenode.data),
    )?;
    let s3 = ServiceEntry {
        url: s3_url,
        data: dir.clone(),
        pid: child.id(),
        command,
        log: Some(log),
    };
    children.push(child);
    let mut edge = None;
    if let Some(addr) = edge_at {
        let addr_file = run.join("edge.addr");
        let data = dir.join("edge");
        let args: Vec<String> = vec![
            "edge".into(),
            "--listen".into(),
            addr.to_string(),
            "--data".into(),
            data.display().to_string(),
            "--zone".into(),
            DEV_ZONE.into(),
            "--namenode".into(),
            nn_url.clone(),
            "--secret-file".into(),
            secret.display().to_string(),
            "--addr-file".into(),
            addr_file.display().to_string(),
        ];
        let command = service_command(&exe, &args);
        let log = logs.join("edge.log");
        let (child, addr) = spawn_service(&command, &addr_file, &log).await?;
        edge = Some(ServiceEntry {
            url: format!("http://{addr}"),
            data,
            pid: child.id(),
            command,
            log: Some(log),
        });
        children.push(child);
    }
    let cluster = ClusterFile {
        namenode,
        datanodes,
        s3: Some(s3),
        edge,
        client_config,
        pid: std::process::id(),
    };
    write_atomic(
        &dir.join("cluster.json"),
        &serde_json::to_string_pretty(&cluster)?,
    )?;
    print_usage(&dir, &cluster);

    shutdown.cancelled().await;
    for child in &mut children {
        if let Some(pid) = child.id() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
    }
    for child in &mut children {
        if tokio::time::timeout(Duration::from_secs(10), child.wait())
            .await
            .is_err()
        {
            let _ = child.kill().await;
        }
    }
    Ok(())
}
