//! The cluster a whole-cluster test runs against: a namenode and N
//! datanodes (optionally edge caches and an S3 gateway) as real `blobd`
//! processes on 127.0.0.1 ephemeral ports, each with its own data directory
//! under one temp dir, started through `blobd::cluster` (the launcher
//! `blobd dev` uses too).
//!
//! `TestCluster::builder().datanodes(4).start(bin)` returns once every
//! datanode heartbeats. `.edge(EdgeSpec::new("z1"))` adds edge caches,
//! which the namenode is configured with (`--edge ZONE=URL`); an S3 gateway
//! then reads in the first edge's zone. `.tls(true)` starts every service
//! with TLS (a local CA under the temp dir; [`TestCluster::ca_file`]), and
//! the clients it hands out trust that CA. Dropping the cluster kills every
//! process and removes the directory, unless the thread is panicking: then
//! the directory is kept and its path, and each service's log and last log
//! lines, are printed.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use blob_client::{Client, ClientConfig};
use blobd::cluster::{
    free_port, write_client_config, Credentials, Launcher, Layout, Service, ServiceArgs,
};
use blobd::{CommonArgs, DatanodeArgs, EdgeArgs, NamenodeArgs, S3Args};

use crate::netns::Netns;

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
    s3_direct: bool,
    netns: Option<usize>,
    repair_interval: Duration,
    gc_grace: Duration,
    orphan_grace: Duration,
    lifecycle_day: Option<Duration>,
    namenode_args: Vec<String>,
    datanode_args: Vec<(Option<usize>, Vec<String>)>,
    datanode_dirs: Vec<(usize, PathBuf)>,
    edges: Vec<EdgeSpec>,
    tls: bool,
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
    /// A second S3 gateway that reads straight from the datanodes
    /// (`--no-edge`), when asked for.
    pub s3_direct: Option<Service>,
    /// The edge caches, in the order they were asked for.
    pub edges: Vec<Service>,
    /// Their zones.
    pub edge_zones: Vec<String>,
    /// The network namespace of the namespaced datanode, if any.
    pub(crate) netns: Option<Netns>,
    /// Admin access key.
    pub access_key: String,
    /// Admin secret.
    pub secret_key: String,
    /// The CA the services' certificates chain to, when it runs TLS.
    pub ca_file: Option<PathBuf>,
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
            s3_direct: false,
            netns: None,
            repair_interval: Duration::from_millis(200),
            gc_grace: Duration::from_secs(3600),
            orphan_grace: Duration::from_secs(3600),
            lifecycle_day: None,
            namenode_args: Vec::new(),
            datanode_args: Vec::new(),
            datanode_dirs: Vec::new(),
            edges: Vec::new(),
            tls: false,
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

    /// Silence after which the namenode declares a datanode dead.
    pub fn dead_after(&self) -> Duration {
        self.dead_after
    }

    /// How long unreferenced chunks are kept before deletion.
    pub fn gc_grace(&self) -> Duration {
        self.gc_grace
    }

    /// Also start an S3 gateway (default off), with multipart parts of at
    /// least [`TEST_MIN_PART_SIZE`] so tests need not move 5 MiB per part.
    pub fn s3(mut self, on: bool) -> Self {
        self.s3 = on;
        self
    }

    /// Also start a second S3 gateway outside every zone, reading straight
    /// from the datanodes (to compare with the first, which reads through
    /// the first edge's zone).
    pub fn s3_direct(mut self, on: bool) -> Self {
        self.s3_direct = on;
        self
    }

    /// Garbage-collection and orphan grace periods (default 1 h each).
    pub fn grace(mut self, gc: Duration, orphan: Duration) -> Self {
        self.gc_grace = gc;
        self.orphan_grace = orphan;
        self
    }

    /// The length of a day for lifecycle rules (default 24 h).
    pub fn lifecycle_day(mut self, day: Duration) -> Self {
        self.lifecycle_day = Some(day);
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

    /// Every service serves TLS with a certificate from a local CA, and
    /// calls the others over https (default off).
    pub fn tls(mut self, on: bool) -> Self {
        self.tls = on;
        self
    }

    /// Starts the cluster with the `blobd` binary at `bin`, and waits until
    /// every datanode is live.
    pub async fn start(self, bin: &Path) -> Result<TestCluster> {
        let dir = tempfile::Builder::new()
            .prefix("blobstore-test-")
            .tempdir()
            .context("creating temp dir")?;
        let mut launcher = Launcher::new(bin.to_path_buf(), Layout::flat(dir.path()));
        launcher.start_timeout = Duration::from_secs(30);
        // A pinned port may be held for a moment as the local port of some
        // outgoing connection: a restart tries again until it is free.
        launcher.retry_busy_port = true;
        launcher.env = vec![("RUST_LOG".into(), "info".into())];
        if self.tls {
            launcher = launcher.with_tls()?;
        }
        launcher.prepare()?;
        let scheme = launcher.scheme();
        let layout = launcher.layout.clone();
        let netns = match self.netns {
            Some(i) => Some((i, Netns::create()?)),
            None => None,
        };
        let host_ip: IpAddr = match &netns {
            Some((_, n)) => n.host_ip.parse().context("the host end's address")?,
            None => IpAddr::from([127, 0, 0, 1]),
        };
        // Edges get their ports first: the namenode hands out their URLs.
        let mut edge_addrs = Vec::new();
        for _ in &self.edges {
            edge_addrs.push(free_port(host_ip).context("finding a port for an edge")?);
        }
        let nn_args = NamenodeArgs {
            common: CommonArgs::default(),
            listen: Some(SocketAddr::new(host_ip, 0)),
            data: Some(layout.data("namenode")),
            replication: Some(self.replication),
            heartbeat: Some(self.heartbeat),
            stale_after: Some(self.stale_after),
            dead_after: Some(self.dead_after),
            presign_ttl: None,
            repair_interval: Some(self.repair_interval),
            gc_grace: Some(self.gc_grace),
            orphan_grace: Some(self.orphan_grace),
            lifecycle_day: self.lifecycle_day,
            edges: self
                .edges
                .iter()
                .zip(&edge_addrs)
                .map(|(e, addr)| blob_namenode::EdgeConfig {
                    zone: e.zone.clone(),
                    url: format!("{scheme}://{addr}"),
                })
                .collect(),
            min_write_replicas: None,
            wal_sync_delay: None,
        };
        let mut namenode = launcher.service(
            "namenode",
            ServiceArgs::Namenode(nn_args),
            &self.namenode_args,
        )?;
        // Pinned so that a restart comes back on it (datanodes find it by
        // URL); datanodes re-register with whatever port they get.
        namenode.pin_port = true;
        namenode.start()?;
        let creds = Credentials::read(&layout.credentials())?;
        let mut cluster = TestCluster {
            dir: Some(dir),
            access_key: creds.access_key,
            secret_key: creds.secret_key,
            ca_file: launcher.tls.as_ref().map(blobd::cluster::Certs::ca_file),
            datanodes: Vec::new(),
            s3: None,
            s3_direct: None,
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
                .map_or_else(|| layout.data(&name), |(_, d)| d.clone());
            let in_ns = netns.as_ref().filter(|(w, _)| *w == i).map(|(_, n)| n);
            let listen_ip = match in_ns {
                Some(n) => n.ns_ip.parse().context("the namespace end's address")?,
                None => host_ip,
            };
            let args = DatanodeArgs {
                common: CommonArgs::default(),
                listen: Some(SocketAddr::new(listen_ip, 0)),
                public_url: None,
                data: Some(data),
                namenode: Some(cluster.namenode.url()),
                heartbeat: Some(self.heartbeat),
                no_fsync: !self.fsync,
                scrub_interval: None,
                full_report_interval: None,
                min_free_bytes: None,
            };
            let extra: Vec<String> = self
                .datanode_args
                .iter()
                .filter(|(which, _)| which.is_none_or(|w| w == i))
                .flat_map(|(_, extra)| extra.iter().cloned())
                .collect();
            let mut dn = launcher.service(&name, ServiceArgs::Datanode(args), &extra)?;
            if let Some(n) = in_ns {
                dn.wrap(&["ip".into(), "netns".into(), "exec".into(), n.name.clone()]);
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
            let args = EdgeArgs {
                common: CommonArgs::default(),
                listen: Some(*addr),
                data: Some(layout.data(&name)),
                zone: Some(e.zone.clone()),
                namenode: Some(cluster.namenode.url()),
                policy: Some(e.policy.parse().map_err(anyhow::Error::msg)?),
                memory: Some(e.memory),
                disk: Some(e.disk),
                warm_file: None,
                no_fsync: false,
            };
            let svc = launcher.start(&name, ServiceArgs::Edge(args), &e.args)?;
            cluster.edges.push(svc);
        }
        let gateway = |zone: Option<String>, no_edge: bool| S3Args {
            common: CommonArgs::default(),
            listen: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
            namenode: Some(cluster.namenode.url()),
            region: Some("us-east-1".into()),
            min_part_size: Some(TEST_MIN_PART_SIZE),
            domains: vec![],
            zone,
            no_edge,
        };
        let zoned = gateway(self.edges.first().map(|e| e.zone.clone()), false);
        let direct = gateway(None, true);
        if self.s3 {
            cluster.s3 = Some(launcher.start("s3", ServiceArgs::S3(zoned), &[])?);
        }
        if self.s3_direct {
            let svc = launcher.start("s3-direct", ServiceArgs::S3(direct), &[])?;
            cluster.s3_direct = Some(svc);
        }
        Ok(cluster)
    }
}

impl TestCluster {
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

    /// Namenode base URL.
    pub fn endpoint(&self) -> String {
        self.namenode.url()
    }

    /// S3 gateway base URL (panics when the cluster has none).
    pub fn s3_endpoint(&self) -> String {
        self.s3
            .as_ref()
            .map(Service::url)
            .expect("the cluster was started with .s3(true)")
    }

    /// The edge-less second gateway's base URL (panics when the cluster
    /// has none).
    pub fn s3_direct_endpoint(&self) -> String {
        self.s3_direct
            .as_ref()
            .map(Service::url)
            .expect("the cluster was started with .s3_direct(true)")
    }

    /// Base URL of edge `i`.
    pub fn edge_url(&self, i: usize) -> String {
        self.edges[i].url()
    }

    /// The admin key's client configuration (trusting the cluster's CA,
    /// when it runs TLS).
    pub fn client_config_admin(&self) -> ClientConfig {
        ClientConfig::new(self.endpoint(), &self.access_key, &self.secret_key)
            .with_ca_file(self.ca_file.clone())
    }

    /// A client with the admin key.
    pub fn client(&self) -> Client {
        Client::new(self.client_config_admin()).expect("a valid client config")
    }

    /// A client with the admin key that reads from the datanodes only,
    /// whatever edges the cluster has.
    pub fn client_direct(&self) -> Client {
        let cfg = self.client_config_admin().with_direct(true);
        Client::new(cfg).expect("a valid client config")
    }

    /// A client with the admin key, reading in `zone` (through its edge).
    pub fn client_in(&self, zone: &str) -> Client {
        let cfg = self.client_config_admin().with_zone(Some(zone.to_string()));
        Client::new(cfg).expect("a valid client config")
    }

    /// Writes a blobctl config file for this cluster and returns its path.
    pub fn client_config(&self) -> Result<PathBuf> {
        let path = self.root().join("client.toml");
        self.write_client_config(&path, None)?;
        Ok(path)
    }

    /// Writes a blobctl config file that reads from the datanodes only
    /// (`no_edge = true`, whatever edges the cluster has) and returns its
    /// path.
    pub fn client_config_direct(&self) -> Result<PathBuf> {
        let path = self.root().join("client-direct.toml");
        self.write_client_config(&path, None)?;
        let mut text = std::fs::read_to_string(&path)?;
        text.push_str("no_edge = true\n");
        std::fs::write(&path, text)?;
        Ok(path)
    }

    /// Writes a blobctl config file reading in `zone` and returns its path.
    pub fn client_config_in(&self, zone: &str) -> Result<PathBuf> {
        let path = self.root().join(format!("client-{zone}.toml"));
        self.write_client_config(&path, Some(zone))?;
        Ok(path)
    }

    fn write_client_config(&self, path: &Path, zone: Option<&str>) -> Result<()> {
        let creds = Credentials {
            access_key: self.access_key.clone(),
            secret_key: self.secret_key.clone(),
        };
        let heading = format!(
            "blobctl config for the test cluster in {}",
            self.root().display()
        );
        write_client_config(
            path,
            &heading,
            &self.endpoint(),
            &creds,
            zone,
            self.ca_file.as_deref(),
        )
    }

    /// The cluster keyring (to sign URLs in tests).
    pub fn keyring(&self) -> Result<blob_common::presign::Keyring> {
        let text = std::fs::read_to_string(self.root().join("cluster.secret"))
            .context("reading the cluster secret")?;
        blob_common::presign::Keyring::parse(&text).map_err(anyhow::Error::msg)
    }

    /// Process id of the namenode.
    pub fn namenode_pid(&self) -> Option<u32> {
        self.namenode.pid()
    }

    /// The default replication factor it started with.
    pub fn replication(&self) -> u8 {
        self.settings.replication
    }

    /// Whether its datanodes fsync.
    pub fn fsync(&self) -> bool {
        self.settings.fsync
    }

    /// Settings this cluster started with.
    pub fn settings(&self) -> &Builder {
        &self.settings
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        for s in std::iter::once(&mut self.namenode)
            .chain(&mut self.datanodes)
            .chain(self.s3.as_mut())
            .chain(self.s3_direct.as_mut())
            .chain(&mut self.edges)
        {
            s.kill();
        }
        if std::thread::panicking() {
            if let Some(dir) = self.dir.take() {
                let path = dir.keep();
                eprintln!("test failed; cluster kept at {}", path.display());
                for s in std::iter::once(&self.namenode)
                    .chain(&self.datanodes)
                    .chain(self.s3.as_ref())
                    .chain(self.s3_direct.as_ref())
                    .chain(&self.edges)
                {
                    eprintln!(
                        "--- {} ({}, log {}) last log lines:\n{}",
                        s.name,
                        s.addr,
                        s.log.display(),
                        s.log_tail(20)
                    );
                }
            }
        }
    }
}
