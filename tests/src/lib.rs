//! A whole cluster for tests and benchmarks: a namenode and N datanodes as
//! real `blobd` processes on 127.0.0.1 ephemeral ports, each with its own
//! data directory under one temp dir.
//!
//! `TestCluster::builder().datanodes(4).start(bin)` returns once every
//! datanode heartbeats. `.edge(EdgeSpec::new("z1"))` adds edge caches,
//! which the namenode is configured with (`--edge ZONE=URL`); an S3
//! gateway then reads in the first edge's zone. Faults are methods: [`TestCluster::kill_datanode`]
//! (SIGKILL), [`TestCluster::restart_datanode`], the same for the namenode,
//! and [`TestCluster::corrupt_chunk`]. Dropping the cluster kills every
//! process and removes the directory, unless the thread is panicking: then
//! the directory is kept and its path and each service's last log lines are
//! printed.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use blob_client::{Client, ClientConfig};
use blob_common::proto::namenode::ListNodes;
use blob_common::{ChunkId, NodeId};

/// Cluster settings.
#[derive(Debug, Clone)]
pub struct Builder {
    datanodes: usize,
    replication: u8,
    heartbeat: Duration,
    stale_after: Duration,
    dead_after: Duration,
    fsync: bool,
    s3: bool,
    netns: Option<usize>,
    repair_interval: Duration,
    gc_grace: Duration,
    orphan_grace: Duration,
    namenode_args: Vec<String>,
    datanode_args: Vec<(Option<usize>, Vec<String>)>,
    datanode_dirs: Vec<(usize, PathBuf)>,
    edges: Vec<EdgeSpec>,
}

/// An edge cache to start with the cluster.
#[derive(Debug, Clone)]
pub struct EdgeSpec {
    /// Its zone.
    pub zone: String,
    /// Eviction policy (`lru`, `lfu`, `fifo`, `tinylfu`).
    pub policy: String,
    /// Memory tier capacity, bytes.
    pub memory: u64,
    /// Disk tier capacity, bytes.
    pub disk: u64,
    /// Extra `blobd edge` flags.
    pub args: Vec<String>,
}

impl EdgeSpec {
    /// An edge for `zone`: TinyLFU, 64 MiB of memory, 256 MiB of disk.
    pub fn new(zone: &str) -> Self {
        Self {
            zone: zone.to_string(),
            policy: "tinylfu".into(),
            memory: 64 << 20,
            disk: 256 << 20,
            args: Vec::new(),
        }
    }

    /// With this eviction policy.
    pub fn policy(mut self, p: &str) -> Self {
        self.policy = p.to_string();
        self
    }

    /// With these tier capacities.
    pub fn capacity(mut self, memory: u64, disk: u64) -> Self {
        self.memory = memory;
        self.disk = disk;
        self
    }

    /// With extra flags.
    pub fn args(mut self, args: &[&str]) -> Self {
        self.args.extend(args.iter().map(|a| a.to_string()));
        self
    }
}

/// One service process.
#[derive(Debug)]
pub struct Service {
    /// What it is, e.g. `datanode-2`.
    pub name: String,
    /// The command line (the port is pinned after the first start).
    pub command: Vec<String>,
    /// Its data directory.
    pub data: PathBuf,
    /// Its log file.
    pub log: PathBuf,
    /// Its address file.
    addr_file: PathBuf,
    /// Bound address.
    pub addr: std::net::SocketAddr,
    /// The running process, if any.
    child: Option<Child>,
}

impl Service {
    /// Base URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn spawn(&self) -> Result<Child> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .with_context(|| format!("opening {}", self.log.display()))?;
        Command::new(&self.command[0])
            .args(&self.command[1..])
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", self.name))
    }

    fn start(&mut self) -> Result<()> {
        let _ = std::fs::remove_file(&self.addr_file);
        self.child = Some(self.spawn()?);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(text) = std::fs::read_to_string(&self.addr_file) {
                if let Ok(addr) = text.trim().parse() {
                    self.addr = addr;
                    // Pin the namenode's port so that a restart comes back on
                    // it (datanodes find it by URL); datanodes re-register
                    // with whatever port they get.
                    if self.name == "namenode" {
                        if let Some(i) = self.command.iter().position(|c| c == "--listen") {
                            self.command[i + 1] = addr.to_string();
                        }
                    }
                    return Ok(());
                }
            }
            let exited = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            if let Some(status) = exited {
                // A pinned port may be held for a moment as the local port of
                // some outgoing connection: try again until it is free.
                if tail(&self.log, 5).contains("Address already in use")
                    && Instant::now() < deadline
                {
                    std::thread::sleep(Duration::from_millis(200));
                    self.child = Some(self.spawn()?);
                    continue;
                }
                bail!(
                    "{} exited with {status} during start:\n{}",
                    self.name,
                    tail(&self.log, 30)
                );
            }
            if Instant::now() > deadline {
                // Not left running behind a cluster that failed to start.
                self.kill();
                bail!(
                    "{} did not start within 30 s:\n{}",
                    self.name,
                    tail(&self.log, 30)
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL, then reap.
    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Its process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether the process is running.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }
}

/// The last `n` lines of a file.
pub fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Smallest multipart part (but the last) the test gateway accepts.
pub const TEST_MIN_PART_SIZE: u64 = 5 * 1024;

/// A running cluster.
pub struct TestCluster {
    dir: Option<tempfile::TempDir>,
    /// The namenode.
    pub namenode: Service,
    /// The datanodes.
    pub datanodes: Vec<Service>,
    /// The S3 gateway, when asked for.
    pub s3: Option<Service>,
    /// The edge caches, in the order they were asked for.
    pub edges: Vec<Service>,
    /// Their zones.
    pub edge_zones: Vec<String>,
    /// The network namespace of the namespaced datanode, if any.
    netns: Option<Netns>,
    /// Admin access key.
    pub access_key: String,
    /// Admin secret.
    pub secret_key: String,
    settings: Builder,
}

impl Default for Builder {
    fn default() -> Self {
        Self {
            datanodes: 3,
            replication: 3,
            heartbeat: Duration::from_millis(500),
            stale_after: Duration::from_secs(3),
            dead_after: Duration::from_secs(6),
            fsync: true,
            s3: false,
            netns: None,
            repair_interval: Duration::from_millis(200),
            gc_grace: Duration::from_secs(3600),
            orphan_grace: Duration::from_secs(3600),
            namenode_args: Vec::new(),
            datanode_args: Vec::new(),
            datanode_dirs: Vec::new(),
            edges: Vec::new(),
        }
    }
}

impl Builder {
    /// Number of datanodes (default 3).
    pub fn datanodes(mut self, n: usize) -> Self {
        self.datanodes = n;
        self
    }

    /// Default replication factor (default 3).
    pub fn replication(mut self, r: u8) -> Self {
        self.replication = r;
        self
    }

    /// Datanode liveness intervals (defaults: 500 ms, 3 s, 6 s).
    pub fn intervals(
        mut self,
        heartbeat: Duration,
        stale_after: Duration,
        dead_after: Duration,
    ) -> Self {
        self.heartbeat = heartbeat;
        self.stale_after = stale_after;
        self.dead_after = dead_after;
        self
    }

    /// Also start an S3 gateway (default off), with multipart parts of at
    /// least [`TEST_MIN_PART_SIZE`] so tests need not move 5 MiB per part.
    pub fn s3(mut self, on: bool) -> Self {
        self.s3 = on;
        self
    }

    /// Garbage-collection and orphan grace periods (default 1 h each).
    pub fn grace(mut self, gc: Duration, orphan: Duration) -> Self {
        self.gc_grace = gc;
        self.orphan_grace = orphan;
        self
    }

    /// Extra `blobd namenode` flags.
    pub fn namenode_args(mut self, args: &[&str]) -> Self {
        self.namenode_args
            .extend(args.iter().map(|a| a.to_string()));
        self
    }

    /// Extra `blobd datanode` flags for datanode `i` (all when `None`).
    pub fn datanode_args(mut self, i: Option<usize>, args: &[&str]) -> Self {
        self.datanode_args
            .push((i, args.iter().map(|a| a.to_string()).collect()));
        self
    }

    /// Puts datanode `i`'s data in `dir` (e.g. a small filesystem).
    pub fn datanode_dir(mut self, i: usize, dir: PathBuf) -> Self {
        self.datanode_dirs.push((i, dir));
        self
    }

    /// Runs datanode `i` in its own network namespace, joined to the host by
    /// a veth pair whose link [`TestCluster::cut_link`] can cut (the other
    /// services then listen on the host end's address instead of
    /// 127.0.0.1, so that the namespaced node can reach them). Needs root.
    pub fn netns(mut self, i: usize) -> Self {
        self.netns = Some(i);
        self
    }

    /// Also start this edge cache (repeatable).
    pub fn edge(mut self, e: EdgeSpec) -> Self {
        self.edges.push(e);
        self
    }

    /// fsync on datanodes (default on).
    pub fn fsync(mut self, on: bool) -> Self {
        self.fsync = on;
        self
    }

    /// Starts the cluster with the `blobd` binary at `bin`, and waits until
    /// every datanode is live.
    pub async fn start(self, bin: &Path) -> Result<TestCluster> {
        let dir = tempfile::Builder::new()
            .prefix("blobstore-test-")
            .tempdir()
            .context("creating temp dir")?;
        let root = dir.path().to_path_buf();
        let bin = bin.display().to_string();
        let secret = root.join("cluster.secret");
        let ms = |d: Duration| format!("{}ms", d.as_millis());
        let netns = match self.netns {
            Some(i) => Some((i, Netns::create()?)),
            None => None,
        };
        let host_ip = netns
            .as_ref()
            .map_or("127.0.0.1".to_string(), |(_, n)| n.host_ip.clone());
        let listen_host = format!("{host_ip}:0");
        let service = |name: &str, args: Vec<String>, data: PathBuf| Service {
            name: name.to_string(),
            command: std::iter::once(bin.clone()).chain(args).collect(),
            data,
            log: root.join(format!("{name}.log")),
            addr_file: root.join(format!("{name}.addr")),
            addr: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
            child: None,
        };
        let nn_data = root.join("namenode");
        // Edges get their ports first: the namenode hands out their URLs.
        let mut edge_addrs = Vec::new();
        let mut edge_flags = Vec::new();
        for e in &self.edges {
            let ip: std::net::IpAddr = host_ip.parse().context("the host address")?;
            let addr = blobd::free_port(ip).context("finding a port for an edge")?;
            edge_flags.extend(["--edge".to_string(), format!("{}=http://{addr}", e.zone)]);
            edge_addrs.push(addr);
        }
        let mut namenode = service(
            "namenode",
            vec![
                "namenode".into(),
                "--listen".into(),
                listen_host.clone(),
                "--data".into(),
                nn_data.display().to_string(),
                "--secret-file".into(),
                secret.display().to_string(),
                "--addr-file".into(),
                root.join("namenode.addr").display().to_string(),
                "--replication".into(),
                self.replication.to_string(),
                "--heartbeat".into(),
                ms(self.heartbeat),
                "--stale-after".into(),
                ms(self.stale_after),
                "--dead-after".into(),
                ms(self.dead_after),
                "--repair-interval".into(),
                ms(self.repair_interval),
                "--gc-grace".into(),
                ms(self.gc_grace),
                "--orphan-grace".into(),
                ms(self.orphan_grace),
            ]
            .into_iter()
            .chain(edge_flags)
            .chain(self.namenode_args.iter().cloned())
            .collect(),
            nn_data.clone(),
        );
        namenode.start()?;
        let creds = std::fs::read_to_string(blob_namenode::Namenode::credentials_path(&nn_data))
            .context("reading admin credentials")?;
        let creds: toml::Table = toml::from_str(&creds).context("parsing admin credentials")?;
        let get = |k: &str| {
            creds
                .get(k)
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_string()
        };
        let mut cluster = TestCluster {
            dir: Some(dir),
            access_key: get("access_key"),
            secret_key: get("secret_key"),
            datanodes: Vec::new(),
            s3: None,
            edges: Vec::new(),
            edge_zones: self.edges.iter().map(|e| e.zone.clone()).collect(),
            settings: self.clone(),
            namenode,
            netns: None,
        };
        for i in 0..self.datanodes {
            let name = format!("datanode-{i}");
            let data = self
                .datanode_dirs
                .iter()
                .find(|(w, _)| *w == i)
                .map_or_else(|| root.join(&name), |(_, d)| d.clone());
            let in_ns = netns.as_ref().filter(|(w, _)| *w == i).map(|(_, n)| n);
            let listen = in_ns.map_or(listen_host.clone(), |n| format!("{}:0", n.ns_ip));
            let mut args = vec![
                "datanode".into(),
                "--listen".into(),
                listen,
                "--data".into(),
                data.display().to_string(),
                "--namenode".into(),
                cluster.namenode.url(),
                "--secret-file".into(),
                secret.display().to_string(),
                "--addr-file".into(),
                root.join(format!("{name}.addr")).display().to_string(),
                "--heartbeat".into(),
                ms(self.heartbeat),
            ];
            if !self.fsync {
                args.push("--no-fsync".into());
            }
            for (which, extra) in &self.datanode_args {
                if which.is_none_or(|w| w == i) {
                    args.extend(extra.iter().cloned());
                }
            }
            let mut dn = service(&name, args, data);
            if let Some(n) = in_ns {
                let prefix = [
                    "ip".to_string(),
                    "netns".into(),
                    "exec".into(),
                    n.name.clone(),
                ];
                dn.command = prefix.into_iter().chain(dn.command).collect();
            }
            dn.start()?;
            cluster.datanodes.push(dn);
        }
        cluster.netns = netns.map(|(_, n)| n);
        cluster
            .wait_live(self.datanodes, Duration::from_secs(30))
            .await?;
        for (i, (e, addr)) in self.edges.iter().zip(&edge_addrs).enumerate() {
            let name = format!("edge-{i}");
            let data = root.join(&name);
            let mut args = vec![
                "edge".to_string(),
                "--listen".into(),
                addr.to_string(),
                "--data".into(),
                data.display().to_string(),
                "--zone".into(),
                e.zone.clone(),
                "--namenode".into(),
                cluster.namenode.url(),
                "--secret-file".into(),
                secret.display().to_string(),
                "--addr-file".into(),
                root.join(format!("{name}.addr")).display().to_string(),
                "--policy".into(),
                e.policy.clone(),
                "--memory".into(),
                e.memory.to_string(),
                "--disk".into(),
                e.disk.to_string(),
            ];
            args.extend(e.args.iter().cloned());
            let mut svc = service(&name, args, data);
            svc.start()?;
            cluster.edges.push(svc);
        }
        if self.s3 {
            let mut zone = Vec::new();
            if let Some(e) = self.edges.first() {
                zone = vec!["--zone".to_string(), e.zone.clone()];
            }
            let mut gw = service(
                "s3",
                vec![
                    "s3".into(),
                    "--listen".into(),
                    "127.0.0.1:0".into(),
                    "--namenode".into(),
                    cluster.namenode.url(),
                    "--secret-file".into(),
                    secret.display().to_string(),
                    "--addr-file".into(),
                    root.join("s3.addr").display().to_string(),
                    "--region".into(),
                    "us-east-1".into(),
                    "--min-part-size".into(),
                    TEST_MIN_PART_SIZE.to_string(),
                ]
                .into_iter()
                .chain(zone)
                .collect(),
                root.join("s3"),
            );
            gw.start()?;
            cluster.s3 = Some(gw);
        }
        Ok(cluster)
    }
}

/// A network namespace joined to the host by a veth pair.
#[derive(Debug)]
struct Netns {
    name: String,
    host_if: String,
    host_ip: String,
    ns_ip: String,
}

fn ip(args: &[&str]) -> Result<()> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .context("running ip")?;
    if !out.status.success() {
        bail!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

impl Netns {
    fn create() -> Result<Netns> {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // Unique per process and per cluster; a /30 subnet of 10.231/16 each.
        let tag = (std::process::id() % 4000) * 16 + n % 16;
        let name = format!("blobt{tag}");
        let (a, b) = ((tag * 4) / 256 % 256, (tag * 4) % 256);
        let net = Netns {
            name: name.clone(),
            host_if: format!("bth{tag}"),
            host_ip: format!("10.231.{a}.{}", b + 1),
            ns_ip: format!("10.231.{a}.{}", b + 2),
        };
        let ns_if = format!("btn{tag}");
        let _ = ip(&["netns", "del", &name]);
        ip(&["netns", "add", &name])?;
        ip(&[
            "link",
            "add",
            &net.host_if,
            "type",
            "veth",
            "peer",
            "name",
            &ns_if,
        ])?;
        ip(&["link", "set", &ns_if, "netns", &name])?;
        ip(&[
            "addr",
            "add",
            &format!("{}/30", net.host_ip),
            "dev",
            &net.host_if,
        ])?;
        ip(&["link", "set", &net.host_if, "up"])?;
        ip(&[
            "netns",
            "exec",
            &name,
            "ip",
            "addr",
            "add",
            &format!("{}/30", net.ns_ip),
            "dev",
            &ns_if,
        ])?;
        ip(&["netns", "exec", &name, "ip", "link", "set", &ns_if, "up"])?;
        ip(&["netns", "exec", &name, "ip", "link", "set", "lo", "up"])?;
        Ok(net)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = ip(&["netns", "del", &self.name]);
        let _ = ip(&["link", "del", &self.host_if]);
    }
}

impl TestCluster {
    /// Cuts the namespaced datanode's network link (a partition).
    pub fn cut_link(&self) -> Result<()> {
        tracing::info!("--- cut the link");
        let n = self
            .netns
            .as_ref()
            .context("the cluster has no namespaced datanode")?;
        ip(&["link", "set", &n.host_if, "down"])
    }

    /// Restores the namespaced datanode's link.
    pub fn restore_link(&self) -> Result<()> {
        tracing::info!("--- restore the link");
        let n = self
            .netns
            .as_ref()
            .context("the cluster has no namespaced datanode")?;
        ip(&["link", "set", &n.host_if, "up"])
    }

    /// Settings to start a cluster with.
    pub fn builder() -> Builder {
        Builder::default()
    }

    /// The cluster's root directory.
    pub fn root(&self) -> &Path {
        self.dir
            .as_ref()
            .map(|d| d.path())
            .unwrap_or(Path::new("/nonexistent"))
    }

    /// S3 gateway base URL (panics when the cluster has none).
    pub fn s3_endpoint(&self) -> String {
        self.s3
            .as_ref()
            .map(Service::url)
            .expect("the cluster was started with .s3(true)")
    }

    /// Namenode base URL.
    pub fn endpoint(&self) -> String {
        self.namenode.url()
    }

    /// A client with the admin key.
    pub fn client(&self) -> Client {
        let cfg = ClientConfig::new(self.endpoint(), &self.access_key, &self.secret_key);
        Client::new(cfg).expect("a valid client config")
    }

    /// A client with the admin key, reading in `zone` (through its edge).
    pub fn client_in(&self, zone: &str) -> Client {
        let cfg = ClientConfig::new(self.endpoint(), &self.access_key, &self.secret_key)
            .with_zone(Some(zone.to_string()));
        Client::new(cfg).expect("a valid client config")
    }

    /// Base URL of edge `i`.
    pub fn edge_url(&self, i: usize) -> String {
        self.edges[i].url()
    }

    /// SIGKILLs edge `i`.
    pub fn kill_edge(&mut self, i: usize) {
        tracing::info!("--- kill edge {i}");
        self.edges[i].kill();
    }

    /// Restarts edge `i` on its port and data (with any flags added to its
    /// `command` meanwhile).
    pub fn restart_edge(&mut self, i: usize) -> Result<()> {
        tracing::info!("--- restart edge {i}");
        self.edges[i].kill();
        self.edges[i].start()
    }

    /// The cluster keyring (to sign URLs in tests).
    pub fn keyring(&self) -> Result<blob_common::presign::Keyring> {
        let text = std::fs::read_to_string(self.root().join("cluster.secret"))
            .context("reading the cluster secret")?;
        blob_common::presign::Keyring::parse(&text).map_err(anyhow::Error::msg)
    }

    /// Writes a blobctl config file for this cluster and returns its path.
    pub fn client_config(&self) -> Result<PathBuf> {
        let path = self.root().join("client.toml");
        std::fs::write(
            &path,
            format!(
                "endpoint = \"{}\"\naccess_key = \"{}\"\nsecret_key = \"{}\"\n",
                self.endpoint(),
                self.access_key,
                self.secret_key
            ),
        )?;
        Ok(path)
    }

    /// Writes a blobctl config file reading in `zone` and returns its path.
    pub fn client_config_in(&self, zone: &str) -> Result<PathBuf> {
        let path = self.root().join(format!("client-{zone}.toml"));
        std::fs::write(
            &path,
            format!(
                "endpoint = \"{}\"\naccess_key = \"{}\"\nsecret_key = \"{}\"\nzone = \"{zone}\"\n",
                self.endpoint(),
                self.access_key,
                self.secret_key
            ),
        )?;
        Ok(path)
    }

    /// Datanode liveness as the namenode sees it.
    pub async fn nodes(&self) -> Result<ListNodes> {
        Ok(self.client().list_nodes().await?)
    }

    /// Cluster status (nodes and chunk health).
    pub async fn status(&self) -> Result<blob_common::proto::namenode::ClusterStatus> {
        Ok(self.client().cluster_status().await?)
    }

    /// fsck of everything.
    pub async fn fsck(&self) -> Result<blob_common::proto::namenode::FsckReport> {
        Ok(self.client().fsck(&Default::default()).await?)
    }

    /// Chunk files on datanode `i`'s disk.
    pub fn chunk_files(&self, i: usize) -> usize {
        let dir = self.datanodes[i].data.join("chunks");
        std::fs::read_dir(&dir)
            .map(|d| {
                d.flatten()
                    .map(|sub| {
                        std::fs::read_dir(sub.path())
                            .map(|f| f.count())
                            .unwrap_or(0)
                    })
                    .sum()
            })
            .unwrap_or(0)
    }

    /// Waits until `n` datanodes are live.
    pub async fn wait_live(&self, n: usize, timeout: Duration) -> Result<()> {
        wait_until(&format!("{n} live datanodes"), timeout, || async {
            Ok(self
                .nodes()
                .await
                .ok()
                .is_some_and(|l| l.nodes.iter().filter(|s| s.state == "live").count() >= n))
        })
        .await
    }

    /// SIGKILLs datanode `i`.
    pub fn kill_datanode(&mut self, i: usize) {
        tracing::info!("--- kill datanode {i}");
        self.datanodes[i].kill();
    }

    /// Restarts datanode `i` on its port and data.
    pub fn restart_datanode(&mut self, i: usize) -> Result<()> {
        tracing::info!("--- restart datanode {i}");
        self.datanodes[i].kill();
        self.datanodes[i].start()
    }

    /// SIGKILLs the namenode.
    pub fn kill_namenode(&mut self) {
        tracing::info!("--- kill namenode");
        self.namenode.kill();
    }

    /// Restarts the namenode on its port and data, and waits until every
    /// running datanode heartbeats to it again.
    pub async fn restart_namenode(&mut self) -> Result<()> {
        tracing::info!("--- restart namenode");
        self.namenode.kill();
        self.namenode.start()?;
        let running = self
            .datanodes
            .iter_mut()
            .filter_map(|d| d.is_running().then_some(()))
            .count();
        self.wait_live(running, Duration::from_secs(30)).await
    }

    /// Datanode `i`'s node id.
    pub fn node_id(&self, i: usize) -> Result<NodeId> {
        Ok(blob_datanode::node_id(&self.datanodes[i].data)?)
    }

    /// Index of the datanode with this id.
    pub fn datanode_index(&self, id: &NodeId) -> Option<usize> {
        (0..self.datanodes.len()).find(|&i| self.node_id(i).ok().as_ref() == Some(id))
    }

    /// Path of a chunk's file on datanode `i`.
    pub fn chunk_file(&self, i: usize, id: &ChunkId) -> PathBuf {
        blob_datanode::chunk_path(&self.datanodes[i].data, id)
    }

    /// Flips one byte of a chunk's stored data on datanode `i`.
    pub fn corrupt_chunk(&self, i: usize, id: &ChunkId, offset: u64) -> Result<()> {
        use std::io::{Read, Seek, SeekFrom, Write};
        let path = self.chunk_file(i, id);
        let mut f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        f.seek(SeekFrom::Start(offset))?;
        let mut b = [0u8; 1];
        f.read_exact(&mut b)?;
        f.seek(SeekFrom::Start(offset))?;
        f.write_all(&[b[0] ^ 0xff])?;
        f.sync_all()?;
        Ok(())
    }

    /// A metric's value on one service (sum over its label sets).
    pub async fn metric(&self, url: &str, name: &str) -> Result<f64> {
        let text = reqwest::get(format!("{url}/metrics"))
            .await?
            .error_for_status()?
            .text()
            .await?;
        Ok(metric_value(&text, name))
    }

    /// Sum of a metric over the datanodes that were not killed.
    pub async fn datanode_metric(&self, name: &str) -> Result<f64> {
        let mut sum = 0.0;
        let urls: Vec<String> = self
            .datanodes
            .iter()
            .filter(|d| d.child.is_some())
            .map(|d| d.url())
            .collect();
        for url in urls {
            sum += self.metric(&url, name).await?;
        }
        Ok(sum)
    }

    /// Process id of the namenode.
    pub fn namenode_pid(&self) -> Option<u32> {
        self.namenode.child.as_ref().map(Child::id)
    }

    /// Settings this cluster started with.
    pub fn settings(&self) -> &Builder {
        &self.settings
    }
}

/// Sum of every sample of metric `name` in Prometheus text.
pub fn metric_value(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|r| r.starts_with(' ') || r.starts_with('{'))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        self.namenode.kill();
        for d in &mut self.datanodes {
            d.kill();
        }
        if let Some(s) = &mut self.s3 {
            s.kill();
        }
        for e in &mut self.edges {
            e.kill();
        }
        if std::thread::panicking() {
            if let Some(dir) = self.dir.take() {
                let path = dir.keep();
                eprintln!("test failed; cluster kept at {}", path.display());
                for s in std::iter::once(&self.namenode)
                    .chain(&self.datanodes)
                    .chain(self.s3.as_ref())
                    .chain(&self.edges)
                {
                    eprintln!(
                        "--- {} ({}) last log lines:\n{}",
                        s.name,
                        s.addr,
                        tail(&s.log, 20)
                    );
                }
            }
        }
    }
}

/// Polls `f` until it returns true, failing after `timeout`.
pub async fn wait_until<F, Fut>(what: &str, timeout: Duration, mut f: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<bool>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if f().await? {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Deterministic pseudo-random bytes (xorshift), so failures reproduce.
pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Hex SHA-256.
pub fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(data))
}

/// Installs a test log writer once.
pub fn init_logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_test_writer()
        .try_init();
}

/// A `blobctl mount` of a bucket in the foreground, on a fresh temporary
/// directory; unmounted and stopped when dropped.
pub struct Mount {
    dir: tempfile::TempDir,
    child: Option<Child>,
    log: PathBuf,
}

impl Mount {
    /// Mounts `bucket` with `blobctl --config CONFIG mount BUCKET DIR ARGS`
    /// and waits until the kernel shows the mount.
    pub fn start(blobctl: &Path, config: &Path, bucket: &str, args: &[&str]) -> Result<Mount> {
        let dir = tempfile::Builder::new().prefix("blob-mnt-").tempdir()?;
        let log = std::env::temp_dir().join(format!(
            "blob-mount-{}-{}.log",
            std::process::id(),
            hex::encode(rand::random::<[u8; 4]>())
        ));
        let out = std::fs::File::create(&log)?;
        let child = Command::new(blobctl)
            .arg("--config")
            .arg(config)
            .arg("mount")
            .arg(bucket)
            .arg(dir.path())
            .args(args)
            .env_remove("BLOBCTL_ENDPOINT")
            .env_remove("BLOBCTL_ACCESS_KEY")
            .env_remove("BLOBCTL_SECRET_KEY")
            .env("RUST_LOG", "info,fuser=error")
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .context("starting blobctl mount")?;
        let mut m = Mount {
            dir,
            child: Some(child),
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !blob_mount::is_mounted(m.dir.path()) {
            if let Some(c) = m.child.as_mut() {
                if let Ok(Some(status)) = c.try_wait() {
                    bail!("blobctl mount exited ({status}):\n{}", tail(&m.log, 20));
                }
            }
            if Instant::now() > deadline {
                bail!("not mounted after 20 s:\n{}", tail(&m.log, 20));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(m)
    }

    /// The mount point.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `rel` inside the mount.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// The mount process's id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The mount's log so far (last `n` lines).
    pub fn log_tail(&self, n: usize) -> String {
        tail(&self.log, n)
    }

    /// Sends SIGTERM and waits (up to `within`) for the process to unmount
    /// and exit; returns its exit status.
    pub fn terminate(&mut self, within: Duration) -> Result<std::process::ExitStatus> {
        let Some(pid) = self.pid() else {
            bail!("not running");
        };
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGTERM,
        )?;
        self.wait_exit(within).inspect_err(|_| {
            if let Some(mut c) = self.child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        })
    }

    /// Waits (up to `within`) for the process to exit on its own, as it
    /// does when unmounted from outside; returns its exit status.
    pub fn wait_exit(&mut self, within: Duration) -> Result<std::process::ExitStatus> {
        let Some(child) = self.child.as_mut() else {
            bail!("not running");
        };
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = child.try_wait()? {
                self.child = None;
                return Ok(status);
            }
            if Instant::now() > deadline {
                bail!(
                    "blobctl mount still running after {within:?}:\n{}",
                    tail(&self.log, 20)
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether the kernel still shows the mount.
    pub fn is_mounted(&self) -> bool {
        blob_mount::is_mounted(self.dir.path())
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        if self.is_mounted() {
            let _ = Command::new("fusermount3")
                .arg("-u")
                .arg("-z")
                .arg(self.dir.path())
                .stderr(Stdio::null())
                .status();
        }
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_file(&self.log);
    }
}

/// SHA-256 of a file, streamed.
pub fn sha256_file(path: &Path) -> Result<String> {
    use sha2::Digest;
    use std::io::Read;
    let mut f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut h = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f
            .read(&mut buf)
            .with_context(|| format!("reading {}", path.display()))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

/// Helpers the benchmark programs share.
pub mod bench {
    use std::path::{Path, PathBuf};

    use anyhow::{bail, Context, Result};
    use tokio::io::AsyncWriteExt;

    /// A binary built next to the running one (`test-blobd`, `test-blobctl`).
    pub fn sibling(name: &str) -> Result<PathBuf> {
        let exe = std::env::current_exe()?;
        let path = exe.parent().context("exe dir")?.join(name);
        if !path.exists() {
            bail!(
                "{} not found: build with `cargo build --release -p blob-tests --bins`",
                path.display()
            );
        }
        Ok(path)
    }

    /// Writes `mib` MiB of incompressible data (distinct per `seed`) to
    /// `path` without holding it in memory.
    pub async fn make_file(path: &Path, mib: u64, seed: u64) -> Result<()> {
        let mut f = tokio::fs::File::create(path).await?;
        for i in 0..mib {
            f.write_all(&super::random_bytes(1 << 20, seed * 1_000_000 + i))
                .await?;
        }
        f.flush().await?;
        Ok(())
    }

    /// A process's resident memory in MiB (0 when it cannot be read).
    pub fn rss_mib(pid: u32) -> f64 {
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("VmRSS:"))
                    .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
            })
            .map_or(0.0, |kib| kib / 1024.0)
    }
}
