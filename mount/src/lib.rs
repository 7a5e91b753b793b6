//! `blob-mount`: a bucket as a directory tree, through FUSE (what
//! `blobctl mount` runs), on top of `blob_client::Client`.
//!
//! Every FUSE request is answered from a task on the tokio runtime, so a
//! slow chunk fetch never holds up a `stat` or another file's read, and
//! every task is bounded by a timeout: a dead cluster gives `EIO`, never a
//! hung process. The entry points are in [`fuse`], handing off to
//! [`names`] (lookup, attributes, mkdir, unlink, rename), [`files`] (open,
//! read, write, release) and [`listing`] (readdir); the shared state and
//! handle table are in [`state`] and [`shared`]. Reads are in [`read`],
//! writes in [`write`] (staged ones in [`stage`] and [`commit`]), the inode
//! table and metadata cache in [`inodes`].
//!
//! What it maps: files are files, directories are path prefixes (and
//! `mkdir` writes the empty marker `DIR/` that S3 tools use), `rename` of a
//! file is the namenode's atomic rename (replacing the target), `unlink`
//! deletes, `statfs` sums the datanodes. Any writer works: front to back
//! streams, anything else (seeks back, in-place edits, truncation to any
//! size) is staged locally within `--write-cache-size` and committed on
//! close, sending only the chunks that changed. A file open for writing
//! here reads as written so far, through this mount. What it refuses:
//! links, special files, and a write the write cache has no room for
//! (`ENOSPC`; that open then commits nothing).
//!
//! What it must never do: make part of a write visible before its commit,
//! drop a write without an error, or block the FUSE thread on the network.

mod commit;
mod files;
mod fuse;
mod inodes;
mod listing;
mod names;
mod read;
mod shared;
mod stage;
mod state;
mod write;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};

use self::stage::StagingArea;
use crate::state::BlobFs;
use blob_client::{Client, UploadOptions};

/// How a mount behaves.
#[derive(Debug, Clone)]
pub struct MountOptions {
    /// How long answers about paths (exists, size, directory) are cached,
    /// here and in the kernel. Changes made through this mount are seen at
    /// once; other writers' after at most this long.
    pub meta_ttl: Duration,
    /// Longest a read or a metadata operation may take before it fails
    /// with `EIO` (also the client's network timeouts).
    pub timeout: Duration,
    /// Bytes of whole chunks kept in memory for readers.
    pub cache_bytes: u64,
    /// Most chunks fetched ahead of a sequential reader.
    pub readahead_chunks: usize,
    /// How files written through the mount are uploaded.
    pub upload: UploadOptions,
    /// Let other users use the mount (needs `user_allow_other` in
    /// `/etc/fuse.conf` unless root).
    pub allow_other: bool,
    /// Refuse every change with `EROFS`.
    pub read_only: bool,
    /// Where files written out of order are staged (a directory per running
    /// mount is made below it; what a killed mount left is removed when
    /// the next one starts).
    pub cache_dir: PathBuf,
    /// Most bytes staged at once, all files together; 0 turns staging off
    /// (then only front-to-back writes and appends work). A write that
    /// needs more fails with `ENOSPC`.
    pub write_cache_bytes: u64,
    /// Mount over a directory that is not empty (its entries are hidden
    /// while mounted).
    pub nonempty: bool,
}

/// The default `--cache-dir`: `~/.cache/blobctl/mount`.
pub fn default_cache_dir() -> PathBuf {
    dirs::cache_dir()
        .unwrap_or_else(std::env::temp_dir)
        .join("blobctl")
        .join("mount")
}

impl Default for MountOptions {
    fn default() -> Self {
        Self {
            meta_ttl: Duration::from_secs(1),
            timeout: Duration::from_secs(30),
            cache_bytes: 128 << 20,
            readahead_chunks: 8,
            upload: UploadOptions {
                abort_on_error: true,
                ..UploadOptions::default()
            },
            allow_other: false,
            read_only: false,
            cache_dir: default_cache_dir(),
            write_cache_bytes: 16 << 30,
            nonempty: false,
        }
    }
}

/// Mounts `bucket` at `mountpoint` and serves it until it is unmounted
/// (`fusermount3 -u`, `umount`) or the process gets SIGTERM or SIGINT,
/// which unmount it.
pub async fn run(
    client: Client,
    bucket: &str,
    mountpoint: &Path,
    opts: MountOptions,
) -> anyhow::Result<()> {
    blob_common::names::validate_bucket(bucket)?;
    opts.upload.validate()?;
    let meta = std::fs::metadata(mountpoint)
        .with_context(|| format!("mount point {}", mountpoint.display()))?;
    if !meta.is_dir() {
        bail!("mount point {} is not a directory", mountpoint.display());
    }
    let has_entries = std::fs::read_dir(mountpoint)
        .with_context(|| format!("reading the mount point {}", mountpoint.display()))?
        .next()
        .is_some();
    if has_entries && !opts.nonempty {
        bail!(
            "mount point {} is not empty (its files would be hidden); use an empty directory, or --nonempty",
            mountpoint.display()
        );
    }
    // Network waits bounded by the mount's timeout.
    let mut cfg = client.config().clone();
    cfg.connect_timeout = cfg.connect_timeout.min(opts.timeout);
    cfg.request_timeout = opts.timeout;
    cfg.data_idle_timeout = opts.timeout;
    let mut fresh = Client::new(cfg)?;
    // SSE-C files stay readable with the key the caller's handle holds.
    if let Some(key) = client.customer_key() {
        fresh = fresh.with_customer_key(key.clone());
    }
    let client = fresh;
    if !client
        .head_bucket(bucket)
        .await
        .with_context(|| format!("checking bucket {bucket}"))?
    {
        bail!("no such bucket: {bucket}");
    }

    let staging = if opts.write_cache_bytes > 0 && !opts.read_only {
        Some(StagingArea::open(&opts.cache_dir, opts.write_cache_bytes)?)
    } else {
        None
    };
    if let Some(area) = &staging {
        tracing::info!(dir = %area.dir().display(), bytes = opts.write_cache_bytes, "write cache");
    }
    // However this function ends, the staging directory goes with it.
    let _staging_dir = StagingCleanup(staging.clone());
    let fs = BlobFs::new(client, bucket.to_string(), opts.clone(), staging)?;
    let mut config = fuser::Config::default();
    config.mount_options = vec![
        fuser::MountOption::FSName(format!("blob:{bucket}")),
        fuser::MountOption::Subtype("blob".into()),
        fuser::MountOption::NoAtime,
        fuser::MountOption::NoDev,
        fuser::MountOption::NoSuid,
        // The kernel checks permissions against the attributes given.
        fuser::MountOption::DefaultPermissions,
        if opts.read_only {
            fuser::MountOption::RO
        } else {
            fuser::MountOption::RW
        },
    ];
    if opts.allow_other {
        config.acl = fuser::SessionACL::All;
    }
    let mut session = fuser::Session::new(fs, mountpoint, &config)
        .with_context(|| format!("mounting {bucket} at {}", mountpoint.display()))?;
    let mut unmounter = session.unmount_callable();
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("fuse-session".into())
        .spawn(move || {
            let _ = done_tx.send(session.run());
        })
        .context("starting the FUSE session")?;
    raise_readahead(mountpoint, READAHEAD_KB);
    tracing::info!(bucket, mountpoint = %mountpoint.display(), "mounted");
    eprintln!("blobctl: mounted {bucket} at {}", mountpoint.display());

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("listening for SIGTERM")?;
    let mut done_rx = done_rx;
    tokio::select! {
        res = &mut done_rx => {
            // Unmounted from outside (fusermount3 -u, umount).
            return match res {
                Ok(Ok(())) => {
                    eprintln!("blobctl: unmounted {}", mountpoint.display());
                    Ok(())
                }
                Ok(Err(e)) => Err(e).context("FUSE session"),
                Err(_) => bail!("the FUSE session thread stopped"),
            };
        }
        _ = term.recv() => tracing::info!("SIGTERM: unmounting"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: unmounting"),
    }
    if let Err(e) = unmounter.unmount() {
        if !is_mounted(mountpoint) {
            // Unmounted from outside just before the signal.
            let _ = tokio::time::timeout(Duration::from_secs(10), done_rx).await;
            eprintln!("blobctl: unmounted {}", mountpoint.display());
            return Ok(());
        }
        // Busy (a process still has a file open): detach it now; the
        // kernel finishes when the last file closes.
        tracing::warn!(error = %e, "unmount failed; detaching lazily");
        let status = std::process::Command::new("fusermount3")
            .arg("-u")
            .arg("-z")
            .arg(mountpoint)
            .status();
        if !matches!(status, Ok(s) if s.success()) {
            bail!("could not unmount {}: {e}", mountpoint.display());
        }
    }
    match tokio::time::timeout(Duration::from_secs(10), done_rx).await {
        Ok(_) => eprintln!("blobctl: unmounted {}", mountpoint.display()),
        Err(_) => tracing::warn!("the FUSE session did not end within 10 s; exiting"),
    }
    Ok(())
}

/// Removes a mount's staging directory when dropped.
struct StagingCleanup(Option<Arc<StagingArea>>);

impl Drop for StagingCleanup {
    fn drop(&mut self) {
        if let Some(area) = &self.0 {
            area.remove();
        }
    }
}

/// Kernel read-ahead for the mount. Files are opened for direct I/O, so it
/// only serves mmap readers (the page cache); for those the kernel's
/// default for a FUSE mount, 128 KiB, keeps one small read in flight.
const READAHEAD_KB: u32 = 16 * 1024;

/// Sets the mount's kernel read-ahead (`/sys/class/bdi/DEV/read_ahead_kb`).
/// Needs root; others keep the kernel's default, with a note in the log.
fn raise_readahead(mountpoint: &Path, kb: u32) {
    let Some(dev) = mount_device(mountpoint) else {
        return;
    };
    let knob = format!("/sys/class/bdi/{dev}/read_ahead_kb");
    if let Err(e) = std::fs::write(&knob, kb.to_string()) {
        tracing::info!(%knob, error = %e, "kernel read-ahead left at its default; sequential reads are slower");
    }
}

/// The `major:minor` of the mount at `path`, per `/proc/self/mountinfo`.
fn mount_device(path: &Path) -> Option<String> {
    let path = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    info.lines().rev().find_map(|line| {
        let mut fields = line.split(' ');
        let dev = fields.nth(2)?;
        let mnt = fields.nth(1)?;
        (Path::new(&unescape_mountinfo(mnt)) == path).then(|| dev.to_string())
    })
}

/// True when `path` is a mount point (per `/proc/self/mountinfo`).
pub fn is_mounted(path: &Path) -> bool {
    mount_device(path).is_some()
}

/// Undoes mountinfo's octal escapes (`\040` for a space).
fn unescape_mountinfo(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() {
            if let Some(v) = std::str::from_utf8(&b[i + 1..i + 4])
                .ok()
                .and_then(|d| u8::from_str_radix(d, 8).ok())
            {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
