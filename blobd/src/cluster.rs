//! Launching a cluster of `blobd` services as child processes. `blobd dev`
//! and the whole-cluster test harness (`blob-tests`) both start clusters
//! through this module, so there is one answer to each of:
//!
//! - where things go: [`Layout`] (data dirs, logs, address files, the
//!   cluster secret) and the files made for clients ([`Credentials`],
//!   [`write_client_config`], [`write_s3_env`]);
//! - what a service is started with: its typed flags ([`ServiceArgs`],
//!   the same structs `blobd` parses) turned into a command line;
//! - how TLS is set up: [`Certs`], a local CA that issues each service its
//!   certificate (`ROOT/tls`), and [`Launcher::tls`];
//! - how it is started and awaited: [`Service::start`] spawns it with its
//!   output in its log and returns once it has written its bound address;
//! - how it is stopped: [`Service::kill`] (SIGKILL), [`stop_all`] (SIGTERM,
//!   then SIGKILL after a grace period).
//!
//! What differs between the users are options on [`Launcher`] and
//! [`Service`]: `blobd dev` pins every port so that its recorded command
//! lines restart a service where it was; the harness pins the namenode's,
//! retries a start whose pinned port is briefly taken, and kills and
//! restarts single services.

use std::fmt::Display;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use blob_common::presign::Keyring;
use serde::Deserialize;

use crate::{secrets, DatanodeArgs, EdgeArgs, NamenodeArgs, S3Args};
use blob_common::auth::ServiceRole;

/// Where a cluster keeps its files.
#[derive(Debug, Clone)]
pub struct Layout {
    /// Data directories (`ROOT/NAME`) and the cluster secret.
    pub root: PathBuf,
    /// Service logs (`NAME.log`).
    pub logs: PathBuf,
    /// Address files (`NAME.addr`), written by each service once listening.
    pub run: PathBuf,
}

impl Layout {
    /// Everything directly under `root`.
    pub fn flat(root: &Path) -> Layout {
        Layout {
            root: root.to_path_buf(),
            logs: root.to_path_buf(),
            run: root.to_path_buf(),
        }
    }

    /// Logs under `root/logs`, address files under `root/run`.
    pub fn split(root: &Path) -> Layout {
        Layout {
            root: root.to_path_buf(),
            logs: root.join("logs"),
            run: root.join("run"),
        }
    }

    /// Creates the directories.
    pub fn create(&self) -> Result<()> {
        for d in [&self.root, &self.logs, &self.run] {
            std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
        }
        Ok(())
    }

    /// The cluster secret file.
    pub fn secret(&self) -> PathBuf {
        self.root.join("cluster.secret")
    }

    /// Data directory of service `name`.
    pub fn data(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    /// Log file of service `name`.
    pub fn log(&self, name: &str) -> PathBuf {
        self.logs.join(format!("{name}.log"))
    }

    /// The local CA and the services' certificates.
    pub fn tls(&self) -> PathBuf {
        self.root.join("tls")
    }

    /// Address file of service `name`.
    pub fn addr_file(&self, name: &str) -> PathBuf {
        self.run.join(format!("{name}.addr"))
    }

    /// The admin credentials the namenode (data in `data("namenode")`)
    /// writes on first start.
    pub fn credentials(&self) -> PathBuf {
        blob_namenode::Namenode::credentials_path(&self.data("namenode"))
    }
}

/// The admin key pair the namenode makes on first start.
#[derive(Debug, Clone, Deserialize)]
pub struct Credentials {
    /// Access key id.
    pub access_key: String,
    /// Secret key.
    pub secret_key: String,
}

impl Credentials {
    /// Reads the credentials file at `path` (see [`Layout::credentials`]).
    pub fn read(path: &Path) -> Result<Credentials> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading admin credentials {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))
    }
}

/// Writes `text` to `path` through a temporary file, so readers never see
/// half of it.
pub fn write_atomic(path: &Path, text: &str) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
}

/// Writes a file holding a secret: owner-only, atomically.
fn write_secret_file(path: &Path, text: &str) -> Result<()> {
    blob_common::write_private(path, text.as_bytes())
        .with_context(|| format!("writing {}", path.display()))
}

/// Writes a blobctl config file (owner-only: it holds the secret key),
/// headed by the comment `heading`; with a zone, reads go through that
/// zone's edge; with a CA file, https services are verified against it.
pub fn write_client_config(
    path: &Path,
    heading: &str,
    endpoint: &str,
    creds: &Credentials,
    zone: Option<&str>,
    ca_file: Option<&Path>,
) -> Result<()> {
    let zone = zone.map_or(String::new(), |z| format!("zone = \"{z}\"\n"));
    let ca = ca_file.map_or(String::new(), |p| {
        format!(
            "ca_file = {}\n",
            toml::Value::String(p.display().to_string())
        )
    });
    write_secret_file(
        path,
        &format!(
            "# {heading}\nendpoint = \"{endpoint}\"\naccess_key = \"{}\"\nsecret_key = \"{}\"\n{zone}{ca}",
            creds.access_key, creds.secret_key
        ),
    )
}

/// Writes what S3 tools need to reach a gateway as the admin key
/// (`set -a; . FILE`); with a CA file, `AWS_CA_BUNDLE` names it.
pub fn write_s3_env(
    path: &Path,
    endpoint: &str,
    creds: &Credentials,
    region: &str,
    ca_file: Option<&Path>,
) -> Result<()> {
    let ca = ca_file.map_or(String::new(), |p| {
        format!("AWS_CA_BUNDLE={}\n", p.display())
    });
    write_secret_file(
        path,
        &format!(
            "AWS_ENDPOINT_URL={endpoint}\nAWS_ACCESS_KEY_ID={}\nAWS_SECRET_ACCESS_KEY={}\nAWS_REGION={region}\n{ca}",
            creds.access_key, creds.secret_key
        ),
    )
}

/// A local certificate authority and the certificates it issues to a
/// cluster's services, all in one directory: `ca.pem` (what clients
/// trust), `ca.key`, and `NAME.pem` / `NAME.key` per service. The CA is
/// made once and kept, so clients configured with it keep working across
/// restarts.
#[derive(Debug, Clone)]
pub struct Certs {
    dir: PathBuf,
}

/// The names every certificate is valid for.
const LOCAL_NAMES: [&str; 2] = ["127.0.0.1", "localhost"];

impl Certs {
    /// The CA in `dir`, made there on first use.
    pub fn open(dir: &Path) -> Result<Certs> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let certs = Certs {
            dir: dir.to_path_buf(),
        };
        if !certs.ca_file().exists() || !certs.ca_key().exists() {
            let key = rcgen::KeyPair::generate().context("making the CA's key")?;
            let ca = Self::ca_params()?
                .self_signed(&key)
                .context("making the CA certificate")?;
            write_secret_file(&certs.ca_key(), &key.serialize_pem())?;
            write_atomic(&certs.ca_file(), &ca.pem())?;
        }
        Ok(certs)
    }

    /// The CA certificate (PEM): what clients are given as `ca_file`.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    fn ca_key(&self) -> PathBuf {
        self.dir.join("ca.key")
    }

    /// The CA's certificate parameters. Always the same, so that the CA
    /// rebuilt from its key issues certificates that chain to `ca.pem`.
    fn ca_params() -> Result<rcgen::CertificateParams> {
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new())
            .context("CA certificate parameters")?;
        p.distinguished_name = rcgen::DistinguishedName::new();
        p.distinguished_name
            .push(rcgen::DnType::CommonName, "blobstore local CA");
        p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        p.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        Ok(p)
    }

    /// Issues service `name` a server certificate for 127.0.0.1,
    /// `localhost` and `ips`, and returns its certificate and key files.
    pub fn issue(&self, name: &str, ips: &[IpAddr]) -> Result<(PathBuf, PathBuf)> {
        let ca_key_pem = std::fs::read_to_string(self.ca_key())
            .with_context(|| format!("reading {}", self.ca_key().display()))?;
        let ca_key = rcgen::KeyPair::from_pem(&ca_key_pem)
            .with_context(|| format!("parsing {}", self.ca_key().display()))?;
        let ca = Self::ca_params()?
            .self_signed(&ca_key)
            .context("rebuilding the CA certificate")?;
        let mut names: Vec<String> = LOCAL_NAMES.iter().map(|n| n.to_string()).collect();
        names.extend(
            ips.iter()
                .filter(|ip| !ip.is_loopback() && !ip.is_unspecified())
                .map(IpAddr::to_string),
        );
        let mut params = rcgen::CertificateParams::new(names)
            .with_context(|| format!("certificate parameters for {name}"))?;
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, format!("blobstore {name}"));
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        let key = rcgen::KeyPair::generate().context("making a service key")?;
        let cert = params
            .signed_by(&key, &ca, &ca_key)
            .with_context(|| format!("issuing the certificate of {name}"))?;
        let (cert_file, key_file) = (
            self.dir.join(format!("{name}.pem")),
            self.dir.join(format!("{name}.key")),
        );
        write_secret_file(&key_file, &key.serialize_pem())?;
        write_atomic(&cert_file, &cert.pem())?;
        Ok((cert_file, key_file))
    }

    /// Points `common` at service `name`'s certificate (issued now) and at
    /// the CA it trusts when calling the others.
    pub fn configure(
        &self,
        name: &str,
        ips: &[IpAddr],
        common: &mut crate::CommonArgs,
    ) -> Result<()> {
        let (cert, key) = self.issue(name, ips)?;
        common.tls_cert = Some(cert);
        common.tls_key = Some(key);
        common.ca_file = Some(self.ca_file());
        Ok(())
    }
}

/// A free port on `host` for a service whose URL others need before it
/// starts: bound and released here, bound again by the service. It is
/// taken below the kernel's ephemeral range, so that no outgoing
/// connection can take it as its local port in between.
pub fn free_port(host: IpAddr) -> Result<SocketAddr> {
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

/// One service's flags: the structs `blobd` parses its subcommands into.
#[derive(Debug, Clone)]
pub enum ServiceArgs {
    /// `blobd namenode`.
    Namenode(NamenodeArgs),
    /// `blobd datanode`.
    Datanode(DatanodeArgs),
    /// `blobd edge`.
    Edge(EdgeArgs),
    /// `blobd s3`.
    S3(S3Args),
}

/// A command line under construction: only flags that are set.
#[derive(Default)]
struct Argv(Vec<String>);

impl Argv {
    fn flag(&mut self, name: &str, v: Option<impl Display>) -> &mut Self {
        if let Some(v) = v {
            self.0.extend([name.to_string(), v.to_string()]);
        }
        self
    }

    fn path(&mut self, name: &str, v: Option<&PathBuf>) -> &mut Self {
        self.flag(name, v.map(|p| p.display()))
    }

    fn duration(&mut self, name: &str, v: Option<Duration>) -> &mut Self {
        self.flag(name, v.map(|d| format!("{}ms", d.as_millis())))
    }

    fn switch(&mut self, name: &str, on: bool) -> &mut Self {
        if on {
            self.0.push(name.to_string());
        }
        self
    }

    fn each<T: Display>(&mut self, name: &str, vs: &[T]) -> &mut Self {
        for v in vs {
            self.flag(name, Some(v));
        }
        self
    }

    fn common(&mut self, c: &crate::CommonArgs) -> &mut Self {
        self.path("--config", c.config.as_ref())
            .path("--secret-file", c.secret_file.as_ref())
            .path("--addr-file", c.addr_file.as_ref())
            .flag("--max-connections", c.max_connections)
            .flag("--max-bytes-in-flight", c.max_bytes_in_flight)
            .path("--tls-cert", c.tls_cert.as_ref())
            .path("--tls-key", c.tls_key.as_ref())
            .path("--ca-file", c.ca_file.as_ref())
    }
}

impl ServiceArgs {
    /// The flags every service shares.
    pub fn common_mut(&mut self) -> &mut crate::CommonArgs {
        match self {
            ServiceArgs::Namenode(a) => &mut a.common,
            ServiceArgs::Datanode(a) => &mut a.common,
            ServiceArgs::Edge(a) => &mut a.common,
            ServiceArgs::S3(a) => &mut a.common,
        }
    }

    /// The address it is told to listen on, if any.
    pub fn listen(&self) -> Option<SocketAddr> {
        match self {
            ServiceArgs::Namenode(a) => a.listen,
            ServiceArgs::Datanode(a) => a.listen,
            ServiceArgs::Edge(a) => a.listen,
            ServiceArgs::S3(a) => a.listen,
        }
    }

    /// Its data directory, if it has one.
    pub fn data(&self) -> Option<&PathBuf> {
        match self {
            ServiceArgs::Namenode(a) => a.data.as_ref(),
            ServiceArgs::Datanode(a) => a.data.as_ref(),
            ServiceArgs::Edge(a) => a.data.as_ref(),
            ServiceArgs::S3(_) => None,
        }
    }

    /// The `blobd` arguments (subcommand first) that parse back into
    /// these flags.
    pub fn argv(&self) -> Vec<String> {
        let mut v = Argv::default();
        match self {
            ServiceArgs::Namenode(a) => {
                let edges: Vec<String> = a
                    .edges
                    .iter()
                    .map(|e| format!("{}={}", e.zone, e.url))
                    .collect();
                v.0.push("namenode".into());
                v.common(&a.common)
                    .flag("--listen", a.listen)
                    .path("--data", a.data.as_ref())
                    .flag("--replication", a.replication)
                    .duration("--heartbeat", a.heartbeat)
                    .duration("--stale-after", a.stale_after)
                    .duration("--dead-after", a.dead_after)
                    .duration("--presign-ttl", a.presign_ttl)
                    .duration("--repair-interval", a.repair_interval)
                    .duration("--gc-grace", a.gc_grace)
                    .duration("--orphan-grace", a.orphan_grace)
                    .duration("--lifecycle-day", a.lifecycle_day)
                    .each("--edge", &edges)
                    .flag("--min-write-replicas", a.min_write_replicas)
                    .duration("--wal-sync-delay", a.wal_sync_delay);
            }
            ServiceArgs::Datanode(a) => {
                v.0.push("datanode".into());
                v.common(&a.common)
                    .flag("--listen", a.listen)
                    .flag("--public-url", a.public_url.as_ref())
                    .path("--data", a.data.as_ref())
                    .flag("--namenode", a.namenode.as_ref())
                    .duration("--heartbeat", a.heartbeat)
                    .switch("--no-fsync", a.no_fsync)
                    .duration("--scrub-interval", a.scrub_interval)
                    .duration("--full-report-interval", a.full_report_interval)
                    .flag("--min-free-bytes", a.min_free_bytes);
            }
            ServiceArgs::Edge(a) => {
                v.0.push("edge".into());
                v.common(&a.common)
                    .flag("--listen", a.listen)
                    .path("--data", a.data.as_ref())
                    .flag("--zone", a.zone.as_ref())
                    .flag("--namenode", a.namenode.as_ref())
                    .flag("--policy", a.policy)
                    .flag("--memory", a.memory)
                    .flag("--disk", a.disk)
                    .path("--warm-file", a.warm_file.as_ref())
                    .switch("--no-fsync", a.no_fsync);
            }
            ServiceArgs::S3(a) => {
                v.0.push("s3".into());
                v.common(&a.common)
                    .flag("--listen", a.listen)
                    .flag("--namenode", a.namenode.as_ref())
                    .flag("--region", a.region.as_ref())
                    .flag("--min-part-size", a.min_part_size)
                    .each("--domain", &a.domains)
                    .flag("--zone", a.zone.as_ref())
                    .switch("--no-edge", a.no_edge);
            }
        }
        v.0
    }
}

/// How a [`Launcher`] starts services.
#[derive(Debug, Clone)]
pub struct Launcher {
    /// The `blobd` executable.
    pub exe: PathBuf,
    /// Where the cluster's files go.
    pub layout: Layout,
    /// How long a service may take to write its address file.
    pub start_timeout: Duration,
    /// Start again, until the timeout, when a pinned port is briefly held
    /// as the local port of some outgoing connection.
    pub retry_busy_port: bool,
    /// Environment set for every service.
    pub env: Vec<(String, String)>,
    /// With certificates, every service serves TLS with one of its own
    /// and trusts their CA ([`Launcher::with_tls`]).
    pub tls: Option<Certs>,
}

impl Launcher {
    /// A launcher for `exe` with files under `layout`: 60 s to start, no
    /// retries, the inherited environment.
    pub fn new(exe: PathBuf, layout: Layout) -> Launcher {
        Launcher {
            exe,
            layout,
            start_timeout: Duration::from_secs(60),
            retry_busy_port: false,
            env: Vec::new(),
            tls: None,
        }
    }

    /// The same launcher starting every service with TLS, with a local CA
    /// under `ROOT/tls` (made there on first use).
    pub fn with_tls(mut self) -> Result<Launcher> {
        self.tls = Some(Certs::open(&self.layout.tls())?);
        Ok(self)
    }

    /// The scheme of its services' URLs.
    pub fn scheme(&self) -> &'static str {
        if self.tls.is_some() {
            "https"
        } else {
            "http"
        }
    }

    /// Creates the cluster's directories and its secret (kept if it is
    /// already there), and returns the keyring.
    pub fn prepare(&self) -> Result<Keyring> {
        self.layout.create()?;
        secrets::load_or_create(&self.layout.secret())
    }

    /// Service `name` with these flags plus `extra` ones, told the cluster
    /// secret and its address file (and, with TLS, its certificate). Not
    /// started yet: see [`Service::start`].
    pub fn service(&self, name: &str, mut args: ServiceArgs, extra: &[String]) -> Result<Service> {
        let addr_file = self.layout.addr_file(name);
        let role = match &args {
            ServiceArgs::Namenode(_) => None,
            ServiceArgs::Datanode(_) => Some(ServiceRole::Datanode),
            ServiceArgs::Edge(_) => Some(ServiceRole::Edge),
            ServiceArgs::S3(_) => Some(ServiceRole::Gateway),
        };
        if let Some(certs) = &self.tls {
            let ips: Vec<IpAddr> = args.listen().map(|a| a.ip()).into_iter().collect();
            certs.configure(name, &ips, args.common_mut())?;
        }
        let common = args.common_mut();
        // Each service gets only its role's secrets; the namenode all.
        common.secret_file = Some(match role {
            Some(r) => secrets::role_file(&self.layout.secret(), r),
            None => self.layout.secret(),
        });
        common.addr_file = Some(addr_file.clone());
        let data = args
            .data()
            .cloned()
            .unwrap_or_else(|| self.layout.root.clone());
        Ok(Service {
            name: name.to_string(),
            command: std::iter::once(self.exe.display().to_string())
                .chain(args.argv())
                .chain(extra.iter().cloned())
                .collect(),
            data,
            log: self.layout.log(name),
            addr_file,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            pin_port: false,
            retry_busy_port: self.retry_busy_port,
            start_timeout: self.start_timeout,
            env: self.env.clone(),
            tls: self.tls.is_some(),
            child: None,
        })
    }

    /// [`Launcher::service`], started.
    pub fn start(&self, name: &str, args: ServiceArgs, extra: &[String]) -> Result<Service> {
        let mut s = self.service(name, args, extra)?;
        s.start()?;
        Ok(s)
    }
}

/// One service process.
#[derive(Debug)]
pub struct Service {
    /// What it is, e.g. `datanode-2`.
    pub name: String,
    /// Its command line (with a pinned port, the bound one after a start).
    pub command: Vec<String>,
    /// Its data directory.
    pub data: PathBuf,
    /// Its log file (stdout and stderr, appended to across restarts).
    pub log: PathBuf,
    /// The file it writes its bound address to once listening.
    pub addr_file: PathBuf,
    /// Its bound address (after the first start).
    pub addr: SocketAddr,
    /// After a start, put the bound port into `command`, so that a restart
    /// comes back on it.
    pub pin_port: bool,
    /// See [`Launcher::retry_busy_port`].
    pub retry_busy_port: bool,
    /// See [`Launcher::start_timeout`].
    pub start_timeout: Duration,
    /// Environment set for the process.
    pub env: Vec<(String, String)>,
    /// Whether it serves TLS (its URL is `https`).
    pub tls: bool,
    child: Option<Child>,
}

impl Service {
    /// Base URL.
    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// Runs it under `prefix` (e.g. `ip netns exec NAME`).
    pub fn wrap(&mut self, prefix: &[String]) {
        self.command = prefix
            .iter()
            .cloned()
            .chain(self.command.drain(..))
            .collect();
    }

    fn spawn(&self) -> Result<Child> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .with_context(|| format!("opening log {}", self.log.display()))?;
        let err = log.try_clone().context("duplicating the log handle")?;
        Command::new(&self.command[0])
            .args(&self.command[1..])
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .with_context(|| format!("starting {}: {}", self.name, self.command.join(" ")))
    }

    /// Starts the process and waits until it has written its address file
    /// (it is then listening); fails if it exits or takes too long first.
    pub fn start(&mut self) -> Result<()> {
        let _ = std::fs::remove_file(&self.addr_file);
        self.child = Some(self.spawn()?);
        let deadline = Instant::now() + self.start_timeout;
        loop {
            if let Ok(text) = std::fs::read_to_string(&self.addr_file) {
                if let Ok(addr) = text.trim().parse() {
                    self.addr = addr;
                    if self.pin_port {
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
                if self.retry_busy_port
                    && tail(&self.log, 5).contains("Address already in use")
                    && Instant::now() < deadline
                {
                    std::thread::sleep(Duration::from_millis(200));
                    self.child = Some(self.spawn()?);
                    continue;
                }
                self.child = None;
                bail!(
                    "{} exited with {status} during start (log {}):\n{}",
                    self.name,
                    self.log.display(),
                    tail(&self.log, 30)
                );
            }
            if Instant::now() > deadline {
                // Not left running behind a cluster that failed to start.
                self.kill();
                bail!(
                    "{} did not start within {:?} (log {}):\n{}",
                    self.name,
                    self.start_timeout,
                    self.log.display(),
                    tail(&self.log, 30)
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL, then reap.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Sends SIGTERM (a clean shutdown), if it runs.
    pub fn signal_term(&self) {
        if let Some(pid) = self.pid() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
    }

    /// Its process id, while it has one.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether it was started and not killed since (it may have exited).
    pub fn is_started(&self) -> bool {
        self.child.is_some()
    }

    /// Whether the process is running.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Its last `n` log lines.
    pub fn log_tail(&self, n: usize) -> String {
        tail(&self.log, n)
    }
}

/// Stops services: SIGTERM to each, then SIGKILL to those still running
/// after `grace`.
pub fn stop_all<'a>(services: impl IntoIterator<Item = &'a mut Service>, grace: Duration) {
    let mut services: Vec<&mut Service> = services.into_iter().collect();
    for s in &services {
        s.signal_term();
    }
    let deadline = Instant::now() + grace;
    for s in &mut services {
        while s.is_running() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        s.kill();
    }
}

/// The last `n` lines of a file (empty if it cannot be read).
pub fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::{Cli, Command as Sub, CommonArgs};

    fn common() -> CommonArgs {
        CommonArgs {
            config: Some("/etc/blob.toml".into()),
            secret_file: Some("/d/cluster.secret".into()),
            addr_file: Some("/d/x.addr".into()),
            max_connections: Some(7),
            max_bytes_in_flight: Some(1 << 20),
            tls_cert: Some("/d/tls/x.pem".into()),
            tls_key: Some("/d/tls/x.key".into()),
            ca_file: Some("/d/tls/ca.pem".into()),
        }
    }

    fn parse_back(args: &ServiceArgs) -> String {
        let argv = std::iter::once("blobd".to_string()).chain(args.argv());
        match Cli::try_parse_from(argv)
            .unwrap_or_else(|e| panic!("{e}"))
            .command
        {
            Sub::Namenode(a) => format!("{:?}", ServiceArgs::Namenode(a)),
            Sub::Datanode(a) => format!("{:?}", ServiceArgs::Datanode(a)),
            Sub::Edge(a) => format!("{:?}", ServiceArgs::Edge(a)),
            Sub::S3(a) => format!("{:?}", ServiceArgs::S3(a)),
            Sub::Dev(a) => format!("{a:?}"),
        }
    }

    /// Every flag set, turned into a command line and parsed back by
    /// `blobd`'s own parser: the same flags.
    #[test]
    fn command_lines_parse_back_into_the_same_flags() {
        let ms = Duration::from_millis;
        let all = [
            ServiceArgs::Namenode(NamenodeArgs {
                common: common(),
                listen: Some("127.0.0.1:9870".parse().unwrap_or_else(|e| panic!("{e}"))),
                data: Some("/d/nn".into()),
                replication: Some(2),
                heartbeat: Some(ms(500)),
                stale_after: Some(ms(3000)),
                dead_after: Some(ms(6000)),
                presign_ttl: Some(ms(3_600_000)),
                repair_interval: Some(ms(200)),
                gc_grace: Some(ms(2000)),
                orphan_grace: Some(ms(4000)),
                lifecycle_day: None,
                edges: vec![
                    blob_namenode::EdgeConfig {
                        zone: "a".into(),
                        url: "http://127.0.0.1:1".into(),
                    },
                    blob_namenode::EdgeConfig {
                        zone: "b".into(),
                        url: "http://127.0.0.1:2".into(),
                    },
                ],
                min_write_replicas: Some(1),
                wal_sync_delay: Some(ms(1500)),
            }),
            ServiceArgs::Datanode(DatanodeArgs {
                common: common(),
                listen: Some("127.0.0.1:0".parse().unwrap_or_else(|e| panic!("{e}"))),
                public_url: Some("http://dn:1".into()),
                data: Some("/d/dn".into()),
                namenode: Some("http://127.0.0.1:9870".into()),
                heartbeat: Some(ms(250)),
                no_fsync: true,
                scrub_interval: Some(ms(0)),
                full_report_interval: Some(ms(60_000)),
                min_free_bytes: Some(1 << 30),
            }),
            ServiceArgs::Edge(EdgeArgs {
                common: common(),
                listen: Some("127.0.0.1:0".parse().unwrap_or_else(|e| panic!("{e}"))),
                data: Some("/d/edge".into()),
                zone: Some("z1".into()),
                namenode: Some("http://127.0.0.1:9870".into()),
                policy: Some(blob_edge::PolicyKind::Lfu),
                memory: Some(64 << 20),
                disk: Some(256 << 20),
                warm_file: Some("/d/warm.txt".into()),
                no_fsync: true,
            }),
            ServiceArgs::S3(S3Args {
                common: common(),
                listen: Some("127.0.0.1:0".parse().unwrap_or_else(|e| panic!("{e}"))),
                namenode: Some("http://127.0.0.1:9870".into()),
                region: Some("us-east-1".into()),
                min_part_size: Some(5 << 10),
                domains: vec!["s3.local".into(), "s3.test".into()],
                zone: Some("z1".into()),
                no_edge: true,
            }),
        ];
        for args in &all {
            assert_eq!(parse_back(args), format!("{args:?}"));
        }
    }

    #[test]
    fn launcher_points_services_at_the_secret_and_their_address_file() {
        let layout = Layout::split(Path::new("/d"));
        let l = Launcher::new("/bin/blobd".into(), layout);
        let s = l
            .service(
                "s3",
                ServiceArgs::S3(S3Args {
                    common: CommonArgs::default(),
                    listen: None,
                    namenode: Some("http://nn".into()),
                    region: None,
                    min_part_size: None,
                    domains: vec![],
                    zone: None,
                    no_edge: false,
                }),
                &["--region".into(), "eu".into()],
            )
            .unwrap_or_else(|e| panic!("{e:#}"));
        assert_eq!(
            s.command,
            [
                "/bin/blobd",
                "s3",
                "--secret-file",
                "/d/s3.secret",
                "--addr-file",
                "/d/run/s3.addr",
                "--namenode",
                "http://nn",
                "--region",
                "eu"
            ]
        );
        assert_eq!(s.log, Path::new("/d/logs/s3.log"));
        assert_eq!(s.data, Path::new("/d"));
    }
}
