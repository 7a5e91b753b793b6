//! `mount`: a bucket as a directory tree through FUSE ([`blob_mount`]),
//! in the foreground or detached (`--daemon`). Built without the `fuse`
//! feature, the command is still there and says the build cannot mount.

#[cfg(feature = "fuse")]
use std::ffi::OsString;
#[cfg(feature = "fuse")]
use std::path::Path;
#[cfg(feature = "fuse")]
use std::time::Instant;

#[cfg(feature = "fuse")]
use anyhow::{bail, Context};
use blob_client::Client;
#[cfg(feature = "fuse")]
use blob_client::UploadOptions;

use crate::cli::MountArgs;

/// What `mount` says when this build has no FUSE support.
#[cfg(not(feature = "fuse"))]
const NO_FUSE: &str =
    "this blobctl was built without FUSE support (the `fuse` feature); it cannot mount";

/// Mounts `m.bucket` at `m.mountpoint` and serves it until unmounted.
#[cfg(feature = "fuse")]
pub(crate) async fn mount(
    client: Client,
    m: &MountArgs,
    encrypt: Option<blob_client::sse::Encrypt>,
) -> anyhow::Result<()> {
    let opts = blob_mount::MountOptions {
        meta_ttl: m.ttl,
        timeout: client.config().request_timeout,
        cache_bytes: m.cache_size,
        readahead_chunks: usize::from(m.readahead),
        upload: UploadOptions {
            chunk_size: m.chunk_size,
            parallel: usize::from(m.parallel),
            replication: m.replication,
            abort_on_error: true,
            encrypt,
            ..UploadOptions::default()
        },
        allow_other: m.allow_other,
        read_only: m.read_only,
        cache_dir: m
            .cache_dir
            .clone()
            .unwrap_or_else(blob_mount::default_cache_dir),
        write_cache_bytes: m.write_cache_size,
        nonempty: m.nonempty,
    };
    blob_mount::run(client, &m.bucket, &m.mountpoint, opts).await
}

/// Without FUSE support: fails, saying so.
#[cfg(not(feature = "fuse"))]
pub(crate) async fn mount(
    _client: Client,
    _m: &MountArgs,
    _encrypt: Option<blob_client::sse::Encrypt>,
) -> anyhow::Result<()> {
    anyhow::bail!(NO_FUSE)
}

#[cfg(feature = "fuse")]
/// `mount --daemon`: runs the same command without `--daemon` in its own
/// process group with its output in the log file, and returns once the
/// mount is up (or fails with the log's last lines if it never comes up).
pub(crate) fn daemonize(m: &MountArgs, raw: &[OsString]) -> anyhow::Result<()> {
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
        if blob_mount::is_mounted(&m.mountpoint) {
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

#[cfg(feature = "fuse")]
fn tail_lines(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Without FUSE support: fails, saying so.
#[cfg(not(feature = "fuse"))]
pub(crate) fn daemonize(_m: &MountArgs, _raw: &[std::ffi::OsString]) -> anyhow::Result<()> {
    anyhow::bail!(NO_FUSE)
}
