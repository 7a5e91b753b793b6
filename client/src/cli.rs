//! `blobctl`, the command line: argument parsing, configuration layering,
//! output formatting and exit codes, on top of [`Client`].
//!
//! Data goes to stdout, everything else (progress, summaries, logs,
//! errors) to stderr.

use std::ffi::OsString;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{anyhow, bail, Context};
use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::config::{
    default_config_path, ClientConfig, ConfigLayer, MAX_CHUNK_SIZE, MIN_CHUNK_SIZE,
};
use crate::{
    Client, ClusterStatus, DownloadOptions, FsckQuery, FsckReport, ListFilesQuery, NodeId,
    NodeStatus, UploadOptions,
};

const ENV_ENDPOINT: &str = "BLOBCTL_ENDPOINT";
const ENV_ACCESS_KEY: &str = "BLOBCTL_ACCESS_KEY";
const ENV_SECRET_KEY: &str = "BLOBCTL_SECRET_KEY";
const ENV_CONFIG: &str = "BLOBCTL_CONFIG";
const ENV_ZONE: &str = "BLOBCTL_ZONE";

const AFTER_HELP: &str = "\
Configuration (first found wins, per setting):
  1. --endpoint, --access-key, --secret-key, --zone
  2. BLOBCTL_ENDPOINT, BLOBCTL_ACCESS_KEY, BLOBCTL_SECRET_KEY, BLOBCTL_ZONE
  3. the TOML file named by --config or BLOBCTL_CONFIG
  4. ~/.config/blobctl/config.toml
  The file holds: endpoint = \"http://127.0.0.1:9870\", access_key = \"...\",
  secret_key = \"...\", optionally zone = \"...\" (the client.toml that
  `blobd dev` writes). The zone picks the edge cache reads go through.

Remote paths are written BUCKET/PATH; `-` as a local file is stdin/stdout.
Logs go to stderr at level warn; RUST_LOG overrides.

Exit status:
  0  success (a broken pipe on stdout, as in `blobctl cat b/f | head`, too)
  1  not found: no such bucket or file; for `admin fsck`, missing chunks too
  2  any other error";

const FSCK_AFTER_HELP: &str = "\
Prints one line per file with trouble
  BUCKET/PATH: M missing, U under-replicated, C corrupt chunks
then a summary ending in one of
  Status: HEALTHY           every chunk has all the replicas asked for
  Status: UNDER-REPLICATED  no chunk is lost, but some have fewer good
                            replicas than asked for (or a corrupt one)
  Status: CORRUPT           some chunk has no live replica: data is missing
--json prints the namenode's report (with the chunk ids) instead.

Exit status:
  0  nothing is missing (HEALTHY or UNDER-REPLICATED)
  1  some chunk is missing (CORRUPT), or no such bucket
  2  any other error (bad arguments, not an admin key, unreachable, ...)";

/// The blob store's command line.
#[derive(Debug, Parser)]
#[command(name = "blobctl", version, about, after_help = AFTER_HELP)]
struct Cli {
    /// Namenode URL, e.g. http://127.0.0.1:9870 [env: BLOBCTL_ENDPOINT]
    #[arg(long, global = true, value_name = "URL")]
    endpoint: Option<String>,
    /// Access key id [env: BLOBCTL_ACCESS_KEY]
    #[arg(long, global = true, value_name = "KEY")]
    access_key: Option<String>,
    /// Secret key; visible to other local users in the process list, so
    /// prefer the environment or the config file [env: BLOBCTL_SECRET_KEY]
    #[arg(long, global = true, value_name = "SECRET")]
    secret_key: Option<String>,
    /// Config file (TOML) [env: BLOBCTL_CONFIG]
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// This reader's zone: reads go through its edge cache, if the cluster
    /// has edges [env: BLOBCTL_ZONE]
    #[arg(long, global = true, value_name = "ZONE")]
    zone: Option<String>,
    /// No progress bar or summary
    #[arg(short, long, global = true)]
    quiet: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Make a bucket
    Mb {
        /// Bucket name
        bucket: String,
    },
    /// Remove an empty bucket
    Rb {
        /// Bucket name
        bucket: String,
    },
    /// List buckets, or files of BUCKET[/PREFIX] (directories as `PRE dir/`)
    Ls {
        /// BUCKET[/PREFIX]; none lists the buckets
        target: Option<String>,
        /// List every file under the prefix instead of one level
        #[arg(short, long)]
        recursive: bool,
        /// Print JSON
        #[arg(long)]
        json: bool,
    },
    /// Show a file's size, chunks, replication, version and creation time
    Stat {
        /// BUCKET/PATH
        target: String,
        /// Print JSON, with the chunk list
        #[arg(long)]
        json: bool,
    },
    /// Remove a file
    Rm {
        /// BUCKET/PATH
        target: String,
    },
    /// Rename a file inside a bucket
    Mv {
        /// BUCKET/FROM
        from: String,
        /// BUCKET/TO (ending in `/`: keep the file name)
        to: String,
    },
    /// Upload a local file or stdin
    Upload {
        /// Local file, or `-` for stdin
        local: String,
        /// BUCKET/PATH; `BUCKET/` or a path ending in `/` keeps the local name
        target: String,
        /// Chunk size, 64KiB to 256MiB (e.g. 8MiB, 512KiB, 1M, 65536)
        #[arg(long, default_value = "8MiB", value_parser = parse_chunk_size)]
        chunk_size: u64,
        /// Chunks in flight
        #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=1024))]
        parallel: u16,
        /// Replication factor (default: the cluster's)
        #[arg(long, value_parser = clap::value_parser!(u8).range(1..))]
        replication: Option<u8>,
    },
    /// Download a file to a local path (a directory keeps the name) or stdout
    Download {
        /// BUCKET/PATH
        target: String,
        /// Local file or directory, or `-` for stdout
        local: String,
        /// Chunks fetched at once
        #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=1024))]
        parallel: u16,
    },
    /// Write a file to stdout
    Cat {
        /// BUCKET/PATH
        target: String,
    },
    /// Mount a bucket as a directory tree (FUSE) until unmounted
    #[command(after_help = MOUNT_AFTER_HELP)]
    Mount(MountArgs),
    /// Cluster administration (needs an admin key)
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
    },
}

#[derive(Debug, clap::Args)]
struct MountArgs {
    /// Bucket to mount
    bucket: String,
    /// An existing empty directory (see --nonempty)
    mountpoint: PathBuf,
    /// Detach and run in the background once mounted (logs to --log-file)
    #[arg(short, long)]
    daemon: bool,
    /// Where a daemon writes its log (default: ~/.cache/blobctl/mount-BUCKET.log)
    #[arg(long, value_name = "FILE")]
    log_file: Option<PathBuf>,
    /// How long file and directory answers are cached (e.g. 1s, 500ms, 0)
    #[arg(long, default_value = "1s", value_parser = blob_common::parse_duration)]
    ttl: std::time::Duration,
    /// Longest a read or metadata call may take before it fails with EIO
    #[arg(long, default_value = "30s", value_parser = blob_common::parse_duration)]
    timeout: std::time::Duration,
    /// Memory for whole chunks cached for readers (read-ahead windows come on top)
    #[arg(long, default_value = "128MiB", value_parser = parse_size)]
    cache_size: u64,
    /// Most chunks fetched ahead of a sequential reader
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=256))]
    readahead: u16,
    /// Chunk size of files written, 64KiB to 256MiB
    #[arg(long, default_value = "8MiB", value_parser = parse_chunk_size)]
    chunk_size: u64,
    /// Chunks in flight per file written
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=1024))]
    parallel: u16,
    /// Replication factor of files written (default: the cluster's)
    #[arg(long, value_parser = clap::value_parser!(u8).range(1..))]
    replication: Option<u8>,
    /// Let other users use the mount
    #[arg(long)]
    allow_other: bool,
    /// Refuse every change (EROFS)
    #[arg(long)]
    read_only: bool,
    /// Where files written out of order are staged (default: ~/.cache/blobctl/mount)
    #[arg(long, value_name = "DIR")]
    cache_dir: Option<PathBuf>,
    /// Most bytes staged at once, all files together; 0 turns staging off
    #[arg(long, default_value = "16GiB", value_parser = parse_size)]
    write_cache_size: u64,
    /// Mount over a directory that is not empty (its entries are hidden while mounted)
    #[arg(long)]
    nonempty: bool,
}

const MOUNT_AFTER_HELP: &str = "\
Files are read with read-ahead for sequential readers. A file written front
to back streams into the store; any other writer (a muxer patching its
header, an edit in place, truncate) is staged in --cache-dir and only the
chunks that changed are sent. Either way the file is committed on close or
fsync: other readers see the old version or the new one, never a part. A
write the write cache has no room for fails with ENOSPC, and that open then
commits nothing. A stopped cluster gives EIO after --timeout.

Unmount with `fusermount3 -u MOUNTPOINT`, or SIGTERM/Ctrl-C to blobctl.";

#[derive(Debug, Subcommand)]
enum AdminCommand {
    /// Show every datanode (state, heartbeat, space, chunks, load) and the
    /// cluster's chunk health counts
    Status {
        /// Print the namenode's answer as JSON
        #[arg(long)]
        json: bool,
    },
    /// Check that every file's chunks have their replicas; exit status 1
    /// when a chunk is missing
    #[command(after_help = FSCK_AFTER_HELP)]
    Fsck {
        /// BUCKET[/PREFIX]; none checks every bucket
        target: Option<String>,
        /// Print the namenode's report as JSON
        #[arg(long)]
        json: bool,
    },
    /// Edge caches: fill one on demand, or show their hit ratios
    Edge {
        #[command(subcommand)]
        command: EdgeCommand,
    },
    /// Drain a datanode: it takes no new replicas and its chunks are copied
    /// elsewhere; follow with `admin status`
    Decommission {
        /// Node id: 16 hex characters, as shown by `blobctl admin status`
        #[arg(value_parser = parse_node_id)]
        node: NodeId,
        /// Print the node's new status as JSON
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
enum EdgeCommand {
    /// Fill this client's edge (the one the namenode picks for --zone) with
    /// every chunk of every file under BUCKET[/PREFIX]
    Warm {
        /// BUCKET[/PREFIX]
        target: String,
        /// Print the result as JSON
        #[arg(long)]
        json: bool,
    },
    /// Show every edge's tiers, hits, misses and origin traffic
    Stats {
        /// Print the edges' answers as JSON
        #[arg(long)]
        json: bool,
    },
}

/// Runs `blobctl` with the process's arguments; returns its exit status.
pub fn main() -> ExitCode {
    main_with_args(std::env::args_os())
}

/// Runs `blobctl` with `args` (the first is the program name).
pub fn main_with_args(args: impl IntoIterator<Item = OsString>) -> ExitCode {
    let raw: Vec<OsString> = args.into_iter().collect();
    let cli = match Cli::try_parse_from(&raw) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    if let Command::Mount(m) = &cli.command {
        if m.daemon {
            return match daemonize(m, &raw) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => exit_for(&e),
            };
        }
    }
    blob_common::telemetry::init("warn");
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("blobctl: starting the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let result = runtime.block_on(run(cli));
    // Do not wait for blocking-pool threads (e.g. a pending stdin read).
    runtime.shutdown_background();
    match result {
        Ok(code) => code,
        Err(e) => exit_for(&e),
    }
}

/// Prints the error (unless it is a broken pipe) and picks the exit status.
fn exit_for(e: &anyhow::Error) -> ExitCode {
    if is_broken_pipe(e) {
        return ExitCode::SUCCESS;
    }
    eprintln!("blobctl: {e:#}");
    if is_not_found(e) {
        ExitCode::from(1)
    } else {
        ExitCode::from(2)
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

fn is_not_found(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<crate::Error>()
            .is_some_and(crate::Error::is_not_found)
    })
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let flags = ConfigLayer {
        endpoint: cli.endpoint.clone(),
        access_key: cli.access_key.clone(),
        secret_key: cli.secret_key.clone(),
        zone: cli.zone.clone(),
    };
    let cfg = load_config(
        flags,
        cli.config.clone(),
        &|k| std::env::var(k).ok(),
        default_config_path(),
    )?;
    let client = Client::new(cfg).context("configuring the client")?;
    let quiet = cli.quiet;
    match cli.command {
        Command::Mb { bucket } => {
            client
                .create_bucket(&bucket)
                .await
                .with_context(|| format!("creating bucket {bucket}"))?;
            note(quiet, format_args!("created bucket {bucket}"));
        }
        Command::Rb { bucket } => {
            client
                .delete_bucket(&bucket)
                .await
                .with_context(|| format!("removing bucket {bucket}"))?;
            note(quiet, format_args!("removed bucket {bucket}"));
        }
        Command::Ls {
            target,
            recursive,
            json,
        } => ls(&client, target.as_deref(), recursive, json).await?,
        Command::Stat { target, json } => stat(&client, &target, json).await?,
        Command::Rm { target } => {
            let (bucket, path) = parse_file(&target)?;
            client
                .delete_file(&bucket, &path)
                .await
                .with_context(|| format!("removing {target}"))?;
            note(quiet, format_args!("removed {bucket}/{path}"));
        }
        Command::Mv { from, to } => {
            let (bucket, from_path, to_path) = parse_move(&from, &to)?;
            client
                .rename(&bucket, &from_path, &to_path)
                .await
                .with_context(|| format!("renaming {bucket}/{from_path} to {bucket}/{to_path}"))?;
            note(
                quiet,
                format_args!("renamed {bucket}/{from_path} to {bucket}/{to_path}"),
            );
        }
        Command::Upload {
            local,
            target,
            chunk_size,
            parallel,
            replication,
        } => {
            let opts = UploadOptions {
                chunk_size,
                parallel: usize::from(parallel),
                replication,
                ..UploadOptions::default()
            };
            upload(&client, &local, &target, opts, quiet).await?;
        }
        Command::Download {
            target,
            local,
            parallel,
        } => download(&client, &target, &local, usize::from(parallel), quiet).await?,
        Command::Cat { target } => download(&client, &target, "-", 8, true).await?,
        Command::Mount(m) => {
            let opts = crate::mount::MountOptions {
                meta_ttl: m.ttl,
                timeout: m.timeout,
                cache_bytes: m.cache_size,
                readahead_chunks: usize::from(m.readahead),
                upload: UploadOptions {
                    chunk_size: m.chunk_size,
                    parallel: usize::from(m.parallel),
                    replication: m.replication,
                    abort_on_error: true,
                    ..UploadOptions::default()
                },
                allow_other: m.allow_other,
                read_only: m.read_only,
                cache_dir: m
                    .cache_dir
                    .clone()
                    .unwrap_or_else(crate::mount::default_cache_dir),
                write_cache_bytes: m.write_cache_size,
                nonempty: m.nonempty,
            };
            crate::mount::run(client, &m.bucket, &m.mountpoint, opts).await?;
        }
        Command::Admin { command } => return admin(&client, command, quiet).await,
    }
    Ok(ExitCode::SUCCESS)
}

/// `mount --daemon`: runs the same command without `--daemon` in its own
/// process group with its output in the log file, and returns once the
/// mount is up (or fails with the log's last lines if it never comes up).
fn daemonize(m: &MountArgs, raw: &[OsString]) -> anyhow::Result<()> {
    let log = match &m.log_file {
        Some(p) => p.clone(),
        None => dirs::cache_dir()
            .unwrap_or_else(std::env::temp_dir)
            .join("blobctl")
            .join(format!("mount-{}.log", m.bucket)),
    };
    if let Some(dir) = log.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .with_context(|| format!("opening log file {}", log.display()))?;
    let err = out.try_clone().context("opening the log file")?;
    let exe = std::env::current_exe().context("finding this program")?;
    let args: Vec<&OsString> = raw
        .iter()
        .skip(1)
        .filter(|a| *a != "--daemon" && *a != "-d")
        .collect();
    use std::os::unix::process::CommandExt;
    let mut child = std::process::Command::new(exe)
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(out)
        .stderr(err)
        .process_group(0)
        .spawn()
        .context("starting the mount process")?;
    let deadline = Instant::now() + std::time::Duration::from_secs(30);
    loop {
        if crate::mount::is_mounted(&m.mountpoint) {
            eprintln!(
                "blobctl: mounted {} at {} (pid {}, log {})",
                m.bucket,
                m.mountpoint.display(),
                child.id(),
                log.display()
            );
            return Ok(());
        }
        if let Ok(Some(status)) = child.try_wait() {
            bail!(
                "the mount process exited ({status}):\n{}",
                tail_lines(&log, 10)
            );
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            bail!("not mounted after 30 s:\n{}", tail_lines(&log, 10));
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

fn tail_lines(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// A line for the user on stderr, unless `-q`.
fn note(quiet: bool, msg: std::fmt::Arguments<'_>) {
    if !quiet {
        eprintln!("{msg}");
    }
}

/// Lays the configuration sources over each other: flags, then the
/// environment (`env` looks a variable up), then the file named by
/// `--config` or `BLOBCTL_CONFIG` (which must exist), then `home_file`
/// (if it exists).
fn load_config(
    flags: ConfigLayer,
    config_flag: Option<PathBuf>,
    env: &dyn Fn(&str) -> Option<String>,
    home_file: Option<PathBuf>,
) -> anyhow::Result<ClientConfig> {
    let mut flags = flags;
    flags.drop_empty();
    let mut from_env = ConfigLayer {
        endpoint: env(ENV_ENDPOINT),
        access_key: env(ENV_ACCESS_KEY),
        secret_key: env(ENV_SECRET_KEY),
        zone: env(ENV_ZONE),
    };
    from_env.drop_empty();
    let explicit =
        config_flag.or_else(|| env(ENV_CONFIG).filter(|s| !s.is_empty()).map(PathBuf::from));
    let file = match &explicit {
        Some(p) => ConfigLayer::load(p)?
            .ok_or_else(|| anyhow!("config file {} does not exist", p.display()))?,
        None => ConfigLayer::default(),
    };
    let home = match &home_file {
        Some(p) => ConfigLayer::load(p)?.unwrap_or_default(),
        None => ConfigLayer::default(),
    };
    let merged = flags.or(&from_env).or(&file).or(&home);
    let missing = |what: &str, flag: &str, var: &str, key: &str| {
        anyhow!(
            "no {what} configured: pass {flag}, set {var}, or put `{key} = \"...\"` in the file \
             named by --config/{ENV_CONFIG} or in ~/.config/blobctl/config.toml"
        )
    };
    let endpoint = merged
        .endpoint
        .ok_or_else(|| missing("endpoint", "--endpoint", ENV_ENDPOINT, "endpoint"))?;
    let access_key = merged
        .access_key
        .ok_or_else(|| missing("access key", "--access-key", ENV_ACCESS_KEY, "access_key"))?;
    let secret_key = merged
        .secret_key
        .ok_or_else(|| missing("secret key", "--secret-key", ENV_SECRET_KEY, "secret_key"))?;
    Ok(ClientConfig::new(endpoint, access_key, secret_key).with_zone(merged.zone))
}

/// Parses a size: plain bytes or a number with a unit. `K`, `Ki`, `KiB`
/// (and M, G, T alike) are powers of 1024; `KB`, `MB`, `GB`, `TB` powers
/// of 1000. Units are case-insensitive.
pub(crate) fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    if num.is_empty() {
        return Err(format!("invalid size {s:?}: expected a number, e.g. 8MiB"));
    }
    let n: u64 = num
        .parse()
        .map_err(|_| format!("invalid size {s:?}: number too large"))?;
    let unit = unit.trim().to_ascii_lowercase();
    let mult: u64 = match unit.as_str() {
        "" | "b" => 1,
        "k" | "ki" | "kib" => 1 << 10,
        "m" | "mi" | "mib" => 1 << 20,
        "g" | "gi" | "gib" => 1 << 30,
        "t" | "ti" | "tib" => 1 << 40,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        _ => {
            return Err(format!(
                "invalid size {s:?}: unknown unit {unit:?} (use B, KiB, MiB, GiB, KB, MB, GB)"
            ))
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("invalid size {s:?}: too large"))
}

/// [`parse_size`] within the chunk size bounds.
fn parse_chunk_size(s: &str) -> Result<u64, String> {
    let n = parse_size(s)?;
    if !(MIN_CHUNK_SIZE..=MAX_CHUNK_SIZE).contains(&n) {
        return Err(format!(
            "chunk size {} is out of range: it must be between 64 KiB and 256 MiB",
            human(n)
        ));
    }
    Ok(n)
}

/// Splits `BUCKET[/PATH]`; the path may be empty.
fn parse_remote(s: &str) -> anyhow::Result<(String, String)> {
    let (bucket, path) = s.split_once('/').unwrap_or((s, ""));
    if bucket.is_empty() {
        bail!("expected BUCKET/PATH, got {s:?}: the bucket is missing");
    }
    Ok((bucket.to_string(), path.to_string()))
}

/// Splits `BUCKET/PATH`, both required.
fn parse_file(s: &str) -> anyhow::Result<(String, String)> {
    let (bucket, path) = parse_remote(s)?;
    if path.is_empty() {
        bail!("expected BUCKET/PATH, got {s:?}: the path is missing");
    }
    Ok((bucket, path))
}

/// `mv` arguments: same bucket; a destination ending in `/` keeps the name.
fn parse_move(from: &str, to: &str) -> anyhow::Result<(String, String, String)> {
    let (bucket, from_path) = parse_file(from)?;
    let (to_bucket, mut to_path) = parse_remote(to)?;
    if to_bucket != bucket {
        bail!(
            "mv works inside one bucket ({bucket} vs {to_bucket}): \
             download and upload to copy across buckets"
        );
    }
    if to_path.is_empty() || to_path.ends_with('/') {
        to_path.push_str(last_segment(&from_path));
    }
    Ok((bucket, from_path, to_path))
}

/// The last segment of a remote path (`a/b/c.txt` → `c.txt`).
fn last_segment(path: &str) -> &str {
    let p = path.strip_suffix('/').unwrap_or(path);
    p.rsplit('/').next().unwrap_or(p)
}

/// Where an upload goes: `BUCKET/` or `dir/` keeps the local file's name.
fn upload_destination(local: &str, target: &str) -> anyhow::Result<(String, String)> {
    let (bucket, mut path) = parse_remote(target)?;
    if path.is_empty() || path.ends_with('/') {
        if local == "-" {
            bail!("uploading stdin needs a file name: give BUCKET/PATH, not {target:?}");
        }
        let name = Path::new(local)
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| anyhow!("{local:?} has no usable file name: give BUCKET/PATH"))?;
        path.push_str(name);
    }
    Ok((bucket, path))
}

/// Where a download goes: an existing directory or a path ending in `/`
/// keeps the remote file's name.
fn download_destination(local: &str, remote_path: &str) -> PathBuf {
    let p = PathBuf::from(local);
    if local.ends_with('/') || local.ends_with(std::path::MAIN_SEPARATOR) || p.is_dir() {
        p.join(last_segment(remote_path))
    } else {
        p
    }
}

async fn ls(
    client: &Client,
    target: Option<&str>,
    recursive: bool,
    json: bool,
) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    let Some(target) = target else {
        let list = client.list_buckets().await.context("listing buckets")?;
        if json {
            writeln!(out, "{}", serde_json::to_string_pretty(&list)?)
                .context("writing to stdout")?;
        } else {
            for b in &list.buckets {
                writeln!(out, "{} {}", format_date(b.created_ms), b.name)
                    .context("writing to stdout")?;
            }
        }
        return Ok(());
    };
    let (bucket, prefix) = parse_remote(target)?;
    let query = ListFilesQuery {
        prefix: (!prefix.is_empty()).then(|| prefix.clone()),
        delimiter: (!recursive).then(|| "/".to_string()),
        ..ListFilesQuery::default()
    };
    let list = client
        .list_all(&bucket, &query)
        .await
        .with_context(|| format!("listing {target}"))?;
    if json {
        writeln!(out, "{}", serde_json::to_string_pretty(&list)?).context("writing to stdout")?;
        return Ok(());
    }
    // Like `aws s3 ls`: one level shows names relative to the prefix's
    // directory; a recursive listing shows full paths.
    let base = if recursive {
        ""
    } else {
        prefix.rfind('/').map_or("", |i| &prefix[..=i])
    };
    let rel = |p: &str| p.strip_prefix(base).unwrap_or(p).to_string();
    for p in &list.common_prefixes {
        writeln!(out, "{:>32} {}", "PRE", rel(p)).context("writing to stdout")?;
    }
    for f in &list.files {
        writeln!(
            out,
            "{} {:>12} {}",
            format_date(f.created_ms),
            f.size,
            rel(&f.path)
        )
        .context("writing to stdout")?;
    }
    Ok(())
}

async fn stat(client: &Client, target: &str, json: bool) -> anyhow::Result<()> {
    let (bucket, path) = parse_file(target)?;
    let info = client
        .stat(&bucket, &path)
        .await
        .with_context(|| format!("stat {target}"))?;
    let mut out = std::io::stdout().lock();
    if json {
        writeln!(out, "{}", serde_json::to_string_pretty(&info)?).context("writing to stdout")?;
        return Ok(());
    }
    let text = format!(
        "path:        {}/{}\nsize:        {} ({})\nchunks:      {} (chunk size {})\n\
         replication: {}\nversion:     {}\ncreated:     {}\n",
        info.bucket,
        info.path,
        info.size,
        human(info.size),
        info.chunks.len(),
        human(info.chunk_size),
        info.replication,
        info.version,
        format_rfc3339(info.created_ms),
    );
    out.write_all(text.as_bytes())
        .context("writing to stdout")?;
    for (k, v) in &info.meta {
        writeln!(out, "meta:        {k}: {v}").context("writing to stdout")?;
    }
    Ok(())
}

async fn upload(
    client: &Client,
    local: &str,
    target: &str,
    mut opts: UploadOptions,
    quiet: bool,
) -> anyhow::Result<()> {
    let (bucket, path) = upload_destination(local, target)?;
    let started = Instant::now();
    let outcome = if local == "-" {
        let bar = progress_bar(quiet, None);
        opts.progress = bar.as_ref().map(progress_fn);
        let r = client
            .upload(tokio::io::stdin(), &bucket, &path, &opts)
            .await;
        finish(bar);
        r
    } else {
        let file = tokio::fs::File::open(local)
            .await
            .with_context(|| format!("opening {local}"))?;
        let meta = file
            .metadata()
            .await
            .with_context(|| format!("reading the metadata of {local}"))?;
        if meta.is_dir() {
            bail!("{local} is a directory");
        }
        let bar = progress_bar(quiet, Some(meta.len()));
        opts.progress = bar.as_ref().map(progress_fn);
        let r = client.upload(file, &bucket, &path, &opts).await;
        finish(bar);
        r
    }
    .with_context(|| format!("uploading {local} to {bucket}/{path}"))?;
    let secs = started.elapsed().as_secs_f64();
    note(
        quiet,
        format_args!(
            "uploaded {} in {secs:.1} s ({}/s), {} chunks sent, {} already stored",
            human(outcome.file.size),
            human((outcome.file.size as f64 / secs.max(0.001)) as u64),
            outcome.chunks_sent,
            outcome.chunks_skipped,
        ),
    );
    Ok(())
}

async fn download(
    client: &Client,
    target: &str,
    local: &str,
    parallel: usize,
    quiet: bool,
) -> anyhow::Result<()> {
    let (bucket, path) = parse_file(target)?;
    let mut opts = DownloadOptions {
        parallel,
        progress: None,
    };
    let bar = if quiet || !std::io::stderr().is_terminal() {
        None
    } else {
        // One extra call for the total; only when a bar is shown.
        let size = client.stat(&bucket, &path).await.ok().map(|i| i.size);
        progress_bar(quiet, size)
    };
    opts.progress = bar.as_ref().map(progress_fn);
    let result = if local == "-" {
        client
            .download(&bucket, &path, tokio::io::stdout(), &opts)
            .await
            .with_context(|| format!("downloading {bucket}/{path}"))
    } else {
        let dest = download_destination(local, &path);
        client
            .download_to_path(&bucket, &path, &dest, &opts)
            .await
            .with_context(|| format!("downloading {bucket}/{path} to {}", dest.display()))
    };
    finish(bar);
    result.map(drop)
}

async fn admin(client: &Client, command: AdminCommand, quiet: bool) -> anyhow::Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    match command {
        AdminCommand::Status { json } => {
            let st = client
                .cluster_status()
                .await
                .context("getting the cluster status")?;
            let text = if json {
                format!("{}\n", serde_json::to_string_pretty(&st)?)
            } else {
                render_status(&st)
            };
            out.write_all(text.as_bytes())
                .context("writing to stdout")?;
        }
        AdminCommand::Fsck { target, json } => {
            let query = match target.as_deref() {
                None | Some("") => FsckQuery::default(),
                Some(t) => {
                    let (bucket, prefix) = parse_remote(t)?;
                    FsckQuery {
                        bucket: Some(bucket),
                        prefix: (!prefix.is_empty()).then_some(prefix),
                    }
                }
            };
            let what = target.as_deref().unwrap_or("every bucket");
            let report = client
                .fsck(&query)
                .await
                .with_context(|| format!("checking {what}"))?;
            let text = if json {
                format!("{}\n", serde_json::to_string_pretty(&report)?)
            } else {
                render_fsck(&report)
            };
            out.write_all(text.as_bytes())
                .context("writing to stdout")?;
            return Ok(fsck_exit_code(&report));
        }
        AdminCommand::Edge { command } => return edge(client, command, quiet).await,
        AdminCommand::Decommission { node, json } => {
            let st = client
                .decommission(node)
                .await
                .with_context(|| format!("decommissioning node {node}"))?;
            if json {
                writeln!(out, "{}", serde_json::to_string_pretty(&st)?)
                    .context("writing to stdout")?;
            } else {
                note(
                    quiet,
                    format_args!(
                        "node {} ({}) is {}: it takes no new replicas and its chunks are \
                         being copied elsewhere; follow with `blobctl admin status`",
                        st.node, st.url, st.state
                    ),
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn edge(client: &Client, command: EdgeCommand, quiet: bool) -> anyhow::Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    match command {
        EdgeCommand::Warm { target, json } => {
            let (bucket, prefix) = parse_remote(&target)?;
            let started = Instant::now();
            let r = client
                .warm_edge(&bucket, &prefix)
                .await
                .with_context(|| format!("warming the edge with {target}"))?;
            if json {
                writeln!(out, "{}", serde_json::to_string_pretty(&r)?)
                    .context("writing to stdout")?;
            } else {
                note(
                    quiet,
                    format_args!(
                        "edge {} ({}): {} files, {} chunks, {}: {} filled, {} already cached, {} failed in {:.1}s",
                        r.zone,
                        r.edge,
                        r.files,
                        r.chunks,
                        human(r.bytes),
                        r.result.filled,
                        r.result.cached,
                        r.result.failed,
                        started.elapsed().as_secs_f64()
                    ),
                );
                for e in &r.result.errors {
                    eprintln!("  {e}");
                }
            }
            if r.result.failed > 0 {
                return Ok(ExitCode::from(2));
            }
        }
        EdgeCommand::Stats { json } => {
            let edges = client.list_edges().await.context("listing the edges")?;
            let mut all = Vec::new();
            for e in &edges.edges {
                let st = client
                    .edge_stats(&e.url, &edges.stats_query)
                    .await
                    .map_err(|err| err.to_string());
                all.push((e.clone(), st));
            }
            let text = if json {
                let v: Vec<serde_json::Value> = all
                    .iter()
                    .map(|(e, st)| match st {
                        Ok(s) => serde_json::json!({"zone": e.zone, "url": e.url, "stats": s}),
                        Err(err) => serde_json::json!({"zone": e.zone, "url": e.url, "error": err}),
                    })
                    .collect();
                format!("{}\n", serde_json::to_string_pretty(&v)?)
            } else {
                render_edges(&all)
            };
            out.write_all(text.as_bytes())
                .context("writing to stdout")?;
            if all.iter().any(|(_, st)| st.is_err()) {
                return Ok(ExitCode::from(2));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `admin edge stats` as text: one row per edge.
fn render_edges(all: &[(crate::EdgeInfo, Result<crate::EdgeStats, String>)]) -> String {
    if all.is_empty() {
        return "no edges configured (blobd namenode --edge ZONE=URL)\n".into();
    }
    let header = [
        "ZONE",
        "URL",
        "POLICY",
        "HIT%",
        "MEM HITS",
        "DISK HITS",
        "MISSES",
        "COALESCED",
        "MEMORY",
        "DISK",
        "ORIGIN",
        "EVICTED",
    ];
    let right = [
        false, false, false, true, true, true, true, true, true, true, true, true,
    ];
    let mut rows = Vec::new();
    let mut errors = String::new();
    for (e, st) in all {
        match st {
            Ok(s) => {
                let hits = s.memory.hits + s.disk.hits;
                rows.push(vec![
                    e.zone.clone(),
                    e.url.clone(),
                    s.policy.clone(),
                    percent(hits, hits + s.misses),
                    s.memory.hits.to_string(),
                    s.disk.hits.to_string(),
                    s.misses.to_string(),
                    s.coalesced.to_string(),
                    format!("{}/{}", human(s.memory.used), human(s.memory.capacity)),
                    format!("{}/{}", human(s.disk.used), human(s.disk.capacity)),
                    human(s.origin_bytes),
                    (s.memory.evictions + s.disk.evictions).to_string(),
                ]);
            }
            Err(err) => {
                rows.push(vec![
                    e.zone.clone(),
                    e.url.clone(),
                    "-".into(),
                    "-".into(),
                    "-".into(),
                    "-".into(),
                    "-".into(),
                    "-".into(),
                    "-".into(),
                    "-".into(),
                    "-".into(),
                    "-".into(),
                ]);
                errors.push_str(&format!("{} ({}): {err}\n", e.zone, e.url));
            }
        }
    }
    let mut out = render_table(&header, &right, &rows);
    out.push_str(&errors);
    out
}

/// Parses a node id as `admin status` shows it (16 hex characters;
/// upper case is accepted too).
fn parse_node_id(s: &str) -> Result<NodeId, String> {
    s.trim().to_ascii_lowercase().parse().map_err(|_| {
        format!(
            "invalid node id {s:?}: expected 16 hex characters, as shown in the NODE column \
             of `blobctl admin status`"
        )
    })
}

/// States in the order `admin status` counts them.
const NODE_STATES: [&str; 5] = ["live", "stale", "dead", "decommissioning", "decommissioned"];

/// `admin status` as text: cluster totals and chunk health, then a table
/// of nodes (like `hdfs dfsadmin -report`).
fn render_status(st: &ClusterStatus) -> String {
    let mut states: Vec<(String, usize)> = NODE_STATES.iter().map(|s| (s.to_string(), 0)).collect();
    for n in &st.nodes {
        match states.iter_mut().find(|(s, _)| *s == n.state) {
            Some((_, count)) => *count += 1,
            None => states.push((n.state.clone(), 1)),
        }
    }
    let by_state: Vec<String> = states
        .iter()
        .filter(|(s, c)| *c > 0 || s == "live" || s == "dead")
        .map(|(s, c)| format!("{c} {s}"))
        .collect();
    let sum = |f: fn(&NodeStatus) -> u64| {
        st.nodes
            .iter()
            .map(f)
            .fold(0u64, |a, b| a.saturating_add(b))
    };
    let (capacity, used, available) = (sum(|n| n.capacity), sum(|n| n.used), sum(|n| n.available));
    let mut text = String::new();
    let mut line = |label: &str, value: String| {
        text.push_str(&format!("{:<18}{value}\n", format!("{label}:")));
    };
    line(
        "Nodes",
        format!("{} ({})", st.nodes.len(), by_state.join(", ")),
    );
    line("Capacity", human(capacity));
    line(
        "Used",
        format!("{} ({})", human(used), percent(used, capacity)),
    );
    line("Available", human(available));
    line("Chunks", st.chunks.to_string());
    line("Under-replicated", st.under_replicated.to_string());
    line("Missing", st.missing.to_string());
    line("Corrupt replicas", st.corrupt.to_string());
    line("Copies in flight", st.copies_in_flight.to_string());
    line("Garbage", st.garbage.to_string());
    if st.nodes.is_empty() {
        return text;
    }
    text.push('\n');
    let header = [
        "NODE",
        "URL",
        "STATE",
        "HEARTBEAT",
        "CAPACITY",
        "USED",
        "AVAILABLE",
        "USE%",
        "CHUNKS",
        "LOAD",
        "READ-ONLY",
    ];
    let right = [
        false, false, false, true, true, true, true, true, true, true, false,
    ];
    let rows: Vec<Vec<String>> = st
        .nodes
        .iter()
        .map(|n| {
            vec![
                n.node.to_string(),
                n.url.clone(),
                n.state.clone(),
                format_age(n.heartbeat_age_ms),
                human(n.capacity),
                human(n.used),
                human(n.available),
                percent(n.used, n.capacity),
                n.chunk_count.to_string(),
                n.load.to_string(),
                if n.read_only { "yes" } else { "no" }.to_string(),
            ]
        })
        .collect();
    text.push_str(&render_table(&header, &right, &rows));
    text
}

/// `12.5%` of `total`, `-` when there is no total.
fn percent(part: u64, total: u64) -> String {
    if total == 0 {
        return "-".into();
    }
    format!("{:.1}%", part as f64 * 100.0 / total as f64)
}

/// Columns two spaces apart, each as wide as its widest cell; `right`
/// columns are right-aligned. No trailing spaces.
fn render_table(header: &[&str], right: &[bool], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            let w = cell.chars().count();
            match widths.get_mut(i) {
                Some(max) => *max = (*max).max(w),
                None => widths.push(w),
            }
        }
    }
    let mut text = String::new();
    let header: Vec<String> = header.iter().map(|h| h.to_string()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            let w = widths.get(i).copied().unwrap_or(0);
            if right.get(i).copied().unwrap_or(false) {
                line.push_str(&format!("{cell:>w$}"));
            } else {
                line.push_str(&format!("{cell:<w$}"));
            }
        }
        text.push_str(line.trim_end());
        text.push('\n');
    }
    text
}

/// How long ago a heartbeat was: `never`, `850ms`, `12.3s`, `42s`,
/// `5m12s`, `3h05m`, `2d04h`.
fn format_age(ms: Option<u64>) -> String {
    let Some(ms) = ms else {
        return "never".into();
    };
    let secs = ms / 1000;
    match secs {
        _ if ms < 1000 => format!("{ms}ms"),
        0..=9 => format!("{:.1}s", ms as f64 / 1000.0),
        10..=59 => format!("{secs}s"),
        60..=3599 => format!("{}m{:02}s", secs / 60, secs % 60),
        3600..=86_399 => format!("{}h{:02}m", secs / 3600, secs % 3600 / 60),
        _ => format!("{}d{:02}h", secs / 86_400, secs % 86_400 / 3600),
    }
}

/// The fsck verdict: `CORRUPT` when a chunk is missing, `UNDER-REPLICATED`
/// when anything else is wrong, else `HEALTHY`.
fn fsck_status(r: &FsckReport) -> &'static str {
    if fsck_missing(r) {
        "CORRUPT"
    } else if r.healthy() {
        "HEALTHY"
    } else {
        "UNDER-REPLICATED"
    }
}

fn fsck_missing(r: &FsckReport) -> bool {
    r.missing_files > 0 || r.problems.iter().any(|f| !f.missing.is_empty())
}

/// 1 when a chunk is missing, else 0.
fn fsck_exit_code(r: &FsckReport) -> ExitCode {
    if fsck_missing(r) {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

/// `admin fsck` as text, HDFS style: a line per file with trouble, then
/// the summary and the status.
fn render_fsck(r: &FsckReport) -> String {
    let mut text = String::new();
    for f in &r.problems {
        text.push_str(&format!(
            "{}/{}: {} missing, {} under-replicated, {} corrupt chunks\n",
            f.bucket,
            f.path,
            f.missing.len(),
            f.under_replicated.len(),
            f.corrupt.len()
        ));
    }
    if !r.problems.is_empty() {
        text.push('\n');
    }
    for (label, value) in [
        ("Files", r.files),
        ("Chunks", r.chunks),
        ("Missing files", r.missing_files),
        ("Under-replicated files", r.under_replicated_files),
        ("Corrupt files", r.corrupt_files),
    ] {
        text.push_str(&format!("{:<24}{value}\n", format!("{label}:")));
    }
    text.push_str(&format!("Status: {}\n", fsck_status(r)));
    text
}

/// A progress bar on stderr, only when it is a terminal and not `-q`.
fn progress_bar(quiet: bool, total: Option<u64>) -> Option<ProgressBar> {
    if quiet || !std::io::stderr().is_terminal() {
        return None;
    }
    let (bar, template) = match total {
        Some(t) => (
            ProgressBar::with_draw_target(Some(t), ProgressDrawTarget::stderr()),
            "{wide_bar} {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} ETA {eta}",
        ),
        None => (
            ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr()),
            "{spinner} {binary_bytes} {binary_bytes_per_sec} {elapsed}",
        ),
    };
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style);
    }
    Some(bar)
}

fn progress_fn(bar: &ProgressBar) -> crate::ProgressFn {
    let bar = bar.clone();
    Arc::new(move |done| bar.set_position(done))
}

fn finish(bar: Option<ProgressBar>) {
    if let Some(b) = bar {
        b.finish_and_clear();
    }
}

/// `1.0 GiB`, `512 B`.
pub(crate) fn human(n: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

/// Days since the epoch → (year, month, day), proleptic Gregorian.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn split_ms(ms: u64) -> (i64, u32, u32, u64, u64, u64, u64) {
    let secs = ms / 1000;
    let (y, m, d) = civil_from_days((secs / 86_400) as i64);
    let rem = secs % 86_400;
    (y, m, d, rem / 3600, rem % 3600 / 60, rem % 60, ms % 1000)
}

/// `2024-05-01 12:34:56` (UTC), the listing's date column.
fn format_date(ms: u64) -> String {
    let (y, mo, d, h, mi, s, _) = split_ms(ms);
    format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}")
}

/// `2024-05-01T12:34:56.789Z`.
fn format_rfc3339(ms: u64) -> String {
    let (y, mo, d, h, mi, s, milli) = split_ms(ms);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{milli:03}Z")
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn layer(e: Option<&str>, a: Option<&str>, s: Option<&str>) -> ConfigLayer {
        ConfigLayer {
            endpoint: e.map(String::from),
            access_key: a.map(String::from),
            secret_key: s.map(String::from),
            zone: None,
        }
    }

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap_or_else(|e| panic!("{e}"));
        p
    }

    #[test]
    fn the_zone_comes_from_flag_env_or_file() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let file = write(
            dir.path(),
            "file.toml",
            "endpoint = \"http://file:1\"\naccess_key = \"ak\"\nsecret_key = \"sk\"\nzone = \"file-zone\"\n",
        );
        let none = |_: &str| None;
        let c = load_config(layer(None, None, None), Some(file.clone()), &none, None)
            .unwrap_or_else(|e| panic!("{e:#}"));
        assert_eq!(c.zone.as_deref(), Some("file-zone"));
        let env = |k: &str| (k == ENV_ZONE).then(|| "env-zone".to_string());
        let c = load_config(layer(None, None, None), Some(file.clone()), &env, None)
            .unwrap_or_else(|e| panic!("{e:#}"));
        assert_eq!(c.zone.as_deref(), Some("env-zone"));
        let mut flags = layer(None, None, None);
        flags.zone = Some("flag-zone".into());
        let c =
            load_config(flags, Some(file.clone()), &env, None).unwrap_or_else(|e| panic!("{e:#}"));
        assert_eq!(c.zone.as_deref(), Some("flag-zone"));
        // An empty value means unset.
        let empty = |k: &str| (k == ENV_ZONE).then(String::new);
        let bare = write(
            dir.path(),
            "bare.toml",
            "endpoint = \"http://file:1\"\naccess_key = \"ak\"\nsecret_key = \"sk\"\n",
        );
        let c = load_config(layer(None, None, None), Some(bare), &empty, None)
            .unwrap_or_else(|e| panic!("{e:#}"));
        assert_eq!(c.zone, None);
    }

    #[test]
    fn edge_commands_parse() {
        assert!(Cli::try_parse_from(["blobctl", "admin", "edge", "stats", "--json"]).is_ok());
        assert!(Cli::try_parse_from(["blobctl", "admin", "edge", "warm", "b/pre"]).is_ok());
        assert!(Cli::try_parse_from(["blobctl", "admin", "edge", "warm"]).is_err());
        assert!(Cli::try_parse_from(["blobctl", "--zone", "z1", "cat", "b/f"]).is_ok());
    }

    #[test]
    fn config_precedence_is_flags_env_file_home() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let file = write(
            dir.path(),
            "file.toml",
            "endpoint = \"http://file:1\"\naccess_key = \"file-ak\"\nsecret_key = \"file-sk\"\n",
        );
        let home = write(
            dir.path(),
            "home.toml",
            "endpoint = \"http://home:1\"\naccess_key = \"home-ak\"\nsecret_key = \"home-sk\"\n",
        );
        let env: HashMap<&str, &str> = [
            (ENV_ENDPOINT, "http://env:1"),
            (ENV_ACCESS_KEY, "env-ak"),
            (ENV_CONFIG, "/does/not/matter-when-flag-given"),
        ]
        .into();
        let lookup = |k: &str| env.get(k).map(|v| v.to_string());

        // Each setting from the highest source that has it.
        let c = load_config(
            layer(Some("http://flag:1"), None, None),
            Some(file.clone()),
            &lookup,
            Some(home.clone()),
        )
        .unwrap_or_else(|e| panic!("{e:#}"));
        assert_eq!(c.endpoint, "http://flag:1");
        assert_eq!(c.access_key, "env-ak");
        assert_eq!(c.secret_key, "file-sk");

        // Without flags, env wins over the file.
        let c = load_config(layer(None, None, None), Some(file.clone()), &lookup, None)
            .unwrap_or_else(|e| panic!("{e:#}"));
        assert_eq!(c.endpoint, "http://env:1");

        // Without env or file, the home file answers.
        let none = |_: &str| None;
        let c = load_config(layer(None, None, None), None, &none, Some(home.clone()))
            .unwrap_or_else(|e| panic!("{e:#}"));
        assert_eq!(c.endpoint, "http://home:1");
        assert_eq!(c.secret_key, "home-sk");

        // The file named by BLOBCTL_CONFIG is read when --config is not given,
        // and outranks the home file.
        let file_str = file.to_string_lossy().to_string();
        let via_env = |k: &str| (k == ENV_CONFIG).then(|| file_str.clone());
        let c = load_config(layer(None, None, None), None, &via_env, Some(home.clone()))
            .unwrap_or_else(|e| panic!("{e:#}"));
        assert_eq!(c.access_key, "file-ak");

        // Empty values count as unset.
        let empty = |k: &str| (k == ENV_ENDPOINT).then(String::new);
        let c = load_config(layer(Some(""), None, None), None, &empty, Some(home))
            .unwrap_or_else(|e| panic!("{e:#}"));
        assert_eq!(c.endpoint, "http://home:1");
    }

    #[test]
    fn missing_settings_name_every_place() {
        let none = |_: &str| None;
        let e = match load_config(
            layer(Some("http://x:1"), Some("ak"), None),
            None,
            &none,
            None,
        ) {
            Err(e) => format!("{e:#}"),
            Ok(_) => panic!("expected an error"),
        };
        for place in [
            "--secret-key",
            ENV_SECRET_KEY,
            "--config",
            ENV_CONFIG,
            "config.toml",
            "secret_key",
        ] {
            assert!(e.contains(place), "{e} lacks {place}");
        }
        // An explicitly named file must exist; the home file need not.
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let all = layer(Some("http://x:1"), Some("ak"), Some("sk"));
        assert!(load_config(all.clone(), Some(dir.path().join("nope.toml")), &none, None).is_err());
        assert!(load_config(all, None, &none, Some(dir.path().join("nope.toml"))).is_ok());
    }

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("8MiB"), Ok(8 << 20));
        assert_eq!(parse_size("512KiB"), Ok(512 << 10));
        assert_eq!(parse_size("1M"), Ok(1 << 20));
        assert_eq!(parse_size("1m"), Ok(1 << 20));
        assert_eq!(parse_size("65536"), Ok(65536));
        assert_eq!(parse_size("10B"), Ok(10));
        assert_eq!(parse_size("2 GiB"), Ok(2 << 30));
        assert_eq!(parse_size("1MB"), Ok(1_000_000));
        assert_eq!(parse_size("3kb"), Ok(3_000));
        for bad in [
            "",
            "MiB",
            "8XB",
            "-1",
            "1.5MiB",
            "99999999999999999999",
            "20000000TiB",
        ] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_chunk_size("64KiB"), Ok(64 << 10));
        assert_eq!(parse_chunk_size("256MiB"), Ok(256 << 20));
        let e = parse_chunk_size("1KiB").err().unwrap_or_default();
        assert!(e.contains("between 64 KiB and 256 MiB"), "{e}");
        assert!(parse_chunk_size("257MiB").is_err());
    }

    #[test]
    fn remote_paths_parse() {
        assert_eq!(
            parse_file("b/dir/f.txt").ok(),
            Some(("b".into(), "dir/f.txt".into()))
        );
        assert_eq!(parse_remote("b").ok(), Some(("b".into(), String::new())));
        assert_eq!(parse_remote("b/").ok(), Some(("b".into(), String::new())));
        assert_eq!(parse_remote("b/pre").ok(), Some(("b".into(), "pre".into())));
        let e = parse_file("bucket")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("path is missing"), "{e}");
        let e = parse_file("bucket/")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("path is missing"), "{e}");
        let e = parse_remote("/x")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("bucket is missing"), "{e}");
        assert!(parse_remote("").is_err());
    }

    #[test]
    fn destinations_keep_names_when_asked() {
        assert_eq!(
            upload_destination("/tmp/a/video.mp4", "b/").ok(),
            Some(("b".into(), "video.mp4".into()))
        );
        assert_eq!(
            upload_destination("video.mp4", "b").ok(),
            Some(("b".into(), "video.mp4".into()))
        );
        assert_eq!(
            upload_destination("video.mp4", "b/in/").ok(),
            Some(("b".into(), "in/video.mp4".into()))
        );
        assert_eq!(
            upload_destination("video.mp4", "b/x.mp4").ok(),
            Some(("b".into(), "x.mp4".into()))
        );
        assert!(upload_destination("-", "b/").is_err());
        assert_eq!(
            upload_destination("-", "b/s.bin").ok(),
            Some(("b".into(), "s.bin".into()))
        );

        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let d = dir.path().to_string_lossy().to_string();
        assert_eq!(
            download_destination(&d, "x/y.bin"),
            dir.path().join("y.bin")
        );
        assert_eq!(
            download_destination("out/", "x/y.bin"),
            PathBuf::from("out/y.bin")
        );
        assert_eq!(
            download_destination("out.bin", "x/y.bin"),
            PathBuf::from("out.bin")
        );
    }

    #[test]
    fn mv_stays_in_one_bucket() {
        assert_eq!(
            parse_move("b/a.txt", "b/c.txt").ok(),
            Some(("b".into(), "a.txt".into(), "c.txt".into()))
        );
        assert_eq!(
            parse_move("b/x/a.txt", "b/dir/").ok(),
            Some(("b".into(), "x/a.txt".into(), "dir/a.txt".into()))
        );
        let e = parse_move("b/a", "c/a")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("one bucket"), "{e}");
        assert!(parse_move("b", "b/a").is_err());
    }

    #[test]
    fn dates_and_sizes_format() {
        assert_eq!(format_date(0), "1970-01-01 00:00:00");
        assert_eq!(format_date(1_700_000_000_000), "2023-11-14 22:13:20");
        assert_eq!(format_rfc3339(951_782_400_123), "2000-02-29T00:00:00.123Z");
        assert_eq!(format_date(4_107_542_400_000), "2100-03-01 00:00:00");
        assert_eq!(human(512), "512 B");
        assert_eq!(human(1024), "1.0 KiB");
        assert_eq!(human(1 << 30), "1.0 GiB");
        assert_eq!(human(3 * (1 << 20) / 2), "1.5 MiB");
    }

    #[test]
    fn exit_codes_follow_the_error() {
        let nf = anyhow::Error::new(crate::Error::Api {
            status: 404,
            code: "NoSuchFile".into(),
            message: "m".into(),
            request_id: String::new(),
        })
        .context("stat b/f");
        assert!(is_not_found(&nf));
        assert!(!is_broken_pipe(&nf));
        let pipe = anyhow::Error::new(crate::Error::Io {
            context: "writing the output".into(),
            source: std::io::Error::from(std::io::ErrorKind::BrokenPipe),
        })
        .context("downloading b/f");
        assert!(is_broken_pipe(&pipe));
        assert_eq!(exit_for(&pipe), ExitCode::SUCCESS);
        assert_eq!(exit_for(&nf), ExitCode::from(1));
        assert_eq!(exit_for(&anyhow!("other")), ExitCode::from(2));
    }

    #[test]
    fn arguments_parse() {
        let cli = Cli::try_parse_from([
            "blobctl",
            "upload",
            "-",
            "b/x",
            "--chunk-size",
            "1M",
            "--parallel",
            "4",
            "-q",
        ])
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(cli.quiet);
        match cli.command {
            Command::Upload {
                chunk_size,
                parallel,
                ..
            } => {
                assert_eq!(chunk_size, 1 << 20);
                assert_eq!(parallel, 4);
            }
            other => panic!("{other:?}"),
        }
        assert!(
            Cli::try_parse_from(["blobctl", "upload", "a", "b/x", "--chunk-size", "1K"]).is_err()
        );
        assert!(Cli::try_parse_from(["blobctl", "ls", "-r", "--json", "b/p"]).is_ok());
        assert!(Cli::try_parse_from(["blobctl", "--endpoint", "http://x:1", "ls"]).is_ok());
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    fn node(id: u8, state: &str, age: Option<u64>, read_only: bool) -> NodeStatus {
        NodeStatus {
            node: NodeId([id; 8]),
            url: format!("http://10.0.0.{id}:9871"),
            state: state.into(),
            heartbeat_age_ms: age,
            capacity: 100 << 30,
            used: 25 << 30,
            available: 70 << 30,
            chunk_count: 1000 * u64::from(id),
            load: u64::from(id),
            read_only,
        }
    }

    fn fsck_file(path: &str, missing: usize, under: usize, corrupt: usize) -> crate::FsckFile {
        let ids = |n: usize, seed: u8| -> Vec<blob_common::ChunkId> {
            (0..n)
                .map(|i| blob_common::ChunkId::of(&[seed, i as u8]))
                .collect()
        };
        crate::FsckFile {
            bucket: "b".into(),
            path: path.into(),
            size: 1,
            replication: 3,
            missing: ids(missing, 1),
            under_replicated: ids(under, 2),
            corrupt: ids(corrupt, 3),
        }
    }

    #[test]
    fn admin_arguments_parse() {
        let cli = Cli::try_parse_from([
            "blobctl",
            "admin",
            "decommission",
            "0A0B0C0D0E0F1011",
            "--json",
        ])
        .unwrap_or_else(|e| panic!("{e}"));
        match cli.command {
            Command::Admin {
                command: AdminCommand::Decommission { node, json },
            } => {
                assert_eq!(node.to_string(), "0a0b0c0d0e0f1011");
                assert!(json);
            }
            other => panic!("{other:?}"),
        }
        for bad in [
            "xyz",
            "0a0b0c0d0e0f10",
            "0a0b0c0d0e0f1011aa",
            "0a0b0c0d0e0f101g",
        ] {
            let e = match Cli::try_parse_from(["blobctl", "admin", "decommission", bad]) {
                Err(e) => e,
                Ok(c) => panic!("{bad} parsed: {c:?}"),
            };
            assert!(e.use_stderr());
            assert!(e.to_string().contains("16 hex characters"), "{e}");
        }
        let cli = Cli::try_parse_from(["blobctl", "admin", "fsck", "b/pre", "--json"])
            .unwrap_or_else(|e| panic!("{e}"));
        match cli.command {
            Command::Admin {
                command: AdminCommand::Fsck { target, json },
            } => {
                assert_eq!(target.as_deref(), Some("b/pre"));
                assert!(json);
            }
            other => panic!("{other:?}"),
        }
        assert!(Cli::try_parse_from(["blobctl", "admin", "fsck"]).is_ok());
        assert!(Cli::try_parse_from(["blobctl", "admin", "status", "--json"]).is_ok());
        assert!(Cli::try_parse_from(["blobctl", "admin"]).is_err());
    }

    #[test]
    fn ages_format() {
        assert_eq!(format_age(None), "never");
        assert_eq!(format_age(Some(0)), "0ms");
        assert_eq!(format_age(Some(850)), "850ms");
        assert_eq!(format_age(Some(1_234)), "1.2s");
        assert_eq!(format_age(Some(42_900)), "42s");
        assert_eq!(format_age(Some(312_000)), "5m12s");
        assert_eq!(format_age(Some(3 * 3_600_000 + 5 * 60_000)), "3h05m");
        assert_eq!(format_age(Some(2 * 86_400_000 + 4 * 3_600_000)), "2d04h");
        assert_eq!(percent(1, 4), "25.0%");
        assert_eq!(percent(1, 0), "-");
    }

    #[test]
    fn tables_align() {
        let t = render_table(
            &["A", "NUM", "C"],
            &[false, true, false],
            &[
                vec!["long-name".into(), "1".into(), "x".into()],
                vec!["s".into(), "12345".into(), "".into()],
            ],
        );
        assert_eq!(
            t,
            "A            NUM  C\nlong-name      1  x\ns          12345\n"
        );
    }

    #[test]
    fn status_renders_counts_and_nodes() {
        let st = ClusterStatus {
            nodes: vec![
                node(1, "live", Some(1_200), false),
                node(2, "dead", None, true),
                node(3, "decommissioning", Some(700), false),
            ],
            chunks: 1234,
            under_replicated: 5,
            missing: 1,
            corrupt: 2,
            copies_in_flight: 3,
            garbage: 7,
        };
        let text = render_status(&st);
        for want in [
            "Nodes:            3 (1 live, 1 dead, 1 decommissioning)\n",
            "Capacity:         300.0 GiB\n",
            "Used:             75.0 GiB (25.0%)\n",
            "Available:        210.0 GiB\n",
            "Chunks:           1234\n",
            "Under-replicated: 5\n",
            "Missing:          1\n",
            "Corrupt replicas: 2\n",
            "Copies in flight: 3\n",
            "Garbage:          7\n",
        ] {
            assert!(text.contains(want), "{want:?} not in\n{text}");
        }
        let lines: Vec<&str> = text.lines().collect();
        let header = lines
            .iter()
            .position(|l| l.starts_with("NODE "))
            .unwrap_or_else(|| panic!("no table in\n{text}"));
        assert_eq!(lines.len(), header + 4, "{text}");
        let row: Vec<&str> = lines[header + 2].split_whitespace().collect();
        assert_eq!(
            row,
            [
                "0202020202020202",
                "http://10.0.0.2:9871",
                "dead",
                "never",
                "100.0",
                "GiB",
                "25.0",
                "GiB",
                "70.0",
                "GiB",
                "25.0%",
                "2000",
                "2",
                "yes"
            ]
        );
        assert!(lines[header + 1].contains(" 1.2s "), "{text}");
        assert!(text.lines().all(|l| l == l.trim_end()), "{text}");
        // No nodes: no table.
        let empty = render_status(&ClusterStatus::default());
        assert!(
            empty.contains("Nodes:            0 (0 live, 0 dead)\n"),
            "{empty}"
        );
        assert!(empty.contains("Used:             0 B (-)\n"), "{empty}");
        assert!(!empty.contains("NODE"), "{empty}");
    }

    #[test]
    fn fsck_renders_and_picks_status_and_exit_code() {
        let healthy = FsckReport {
            files: 3,
            chunks: 9,
            ..FsckReport::default()
        };
        assert_eq!(
            render_fsck(&healthy),
            "Files:                  3\nChunks:                 9\nMissing files:          0\n\
             Under-replicated files: 0\nCorrupt files:          0\nStatus: HEALTHY\n"
        );
        assert_eq!(fsck_exit_code(&healthy), ExitCode::SUCCESS);

        let under = FsckReport {
            files: 3,
            chunks: 9,
            under_replicated_files: 1,
            corrupt_files: 1,
            problems: vec![fsck_file("a/x", 0, 1, 0), fsck_file("y", 0, 0, 1)],
            ..FsckReport::default()
        };
        let text = render_fsck(&under);
        assert!(
            text.starts_with(
                "b/a/x: 0 missing, 1 under-replicated, 0 corrupt chunks\n\
                 b/y: 0 missing, 0 under-replicated, 1 corrupt chunks\n\nFiles:"
            ),
            "{text}"
        );
        assert!(text.ends_with("Status: UNDER-REPLICATED\n"), "{text}");
        assert_eq!(fsck_exit_code(&under), ExitCode::SUCCESS);

        let missing = FsckReport {
            files: 3,
            chunks: 9,
            missing_files: 1,
            problems: vec![fsck_file("m", 2, 1, 0)],
            ..FsckReport::default()
        };
        let text = render_fsck(&missing);
        assert!(
            text.starts_with("b/m: 2 missing, 1 under-replicated, 0 corrupt chunks\n"),
            "{text}"
        );
        assert!(text.contains("Missing files:          1\n"), "{text}");
        assert!(text.ends_with("Status: CORRUPT\n"), "{text}");
        assert_eq!(fsck_exit_code(&missing), ExitCode::from(1));
    }
}
