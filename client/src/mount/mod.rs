//! `blobctl mount`: a bucket as a directory tree, through FUSE.
//!
//! Every FUSE request is answered from a task on the tokio runtime, so a
//! slow chunk fetch never holds up a `stat` or another file's read, and
//! every task is bounded by a timeout: a dead cluster gives `EIO`, never a
//! hung process. Reads are in [`read`], writes in [`write`] (staged ones in
//! [`stage`] and [`commit`]), the inode table and metadata cache in
//! [`inodes`].
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
mod inodes;
mod read;
mod stage;
mod write;

use std::collections::HashMap;
use std::ffi::OsStr;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use bytes::Bytes;
use fuser::{
    Errno, FileAttr, FileHandle, FileType, FopenFlags, Generation, INodeNo, KernelConfig,
    LockOwner, OpenAccMode, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData,
    ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, Request, TimeOrNow,
    WriteFlags,
};

use self::inodes::{join, parent_of, Inodes, Kind, MetaCache, ROOT};
use self::read::{ChunkCache, Reader};
use self::stage::StagingArea;
use self::write::{Opened, WriteError, Writer};
use crate::{Client, Error, ListFilesQuery, UploadOptions};

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
    let client = Client::new(cfg)?;
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

/// What an open handle is.
enum Handle {
    Read(Arc<Reader>),
    Write(Arc<Writer>),
    /// Opened for reading while this mount writes the file: reads what was
    /// written so far (muxers read back what they wrote).
    Live(Arc<Writer>),
    Dir(Arc<tokio::sync::Mutex<DirList>>),
}

/// A directory being listed: one page of entries at a time, so a huge
/// directory streams instead of being listed whole first.
struct DirList {
    path: String,
    /// Cookie of the first entry of `page`.
    page_start: u64,
    page: Vec<(String, Kind)>,
    /// Where the next page starts, or `None` at the end.
    next: Option<String>,
    started: bool,
}

/// The first listing cookies are taken by `.` and `..`.
const FIRST_ENTRY_COOKIE: u64 = 3;

struct Shared {
    client: Client,
    bucket: String,
    opts: MountOptions,
    uid: u32,
    gid: u32,
    inodes: Mutex<Inodes>,
    meta: Mutex<MetaCache>,
    handles: Mutex<HashMap<u64, Handle>>,
    next_fh: AtomicU64,
    /// Files open for writing, by path (their size while written).
    writers: Mutex<HashMap<String, Arc<Writer>>>,
    /// Where out-of-order writes are staged (`None`: off).
    staging: Option<Arc<StagingArea>>,
    /// Directories that existed only through their files until this mount
    /// removed or moved those: they stay (empty) directories, as on a local
    /// file system, until removed or for [`EMPTIED_TTL`], so `rm -r` can
    /// remove them last.
    emptied: Mutex<HashMap<String, std::time::Instant>>,
    chunks: Arc<ChunkCache>,
    statfs: Mutex<Option<(std::time::Instant, StatFs)>>,
    /// Directories (which have no times of their own) show this.
    mounted_ms: u64,
}

#[derive(Clone, Copy)]
struct StatFs {
    capacity: u64,
    available: u64,
}

/// The FUSE filesystem: hands each request to a task.
struct BlobFs {
    rt: tokio::runtime::Handle,
    shared: Arc<Shared>,
}

/// Block size reported to `stat` (programs size their buffers by it).
const BLKSIZE: u32 = 1 << 20;

/// How long a directory emptied through this mount stays (see
/// `Shared::emptied`).
const EMPTIED_TTL: Duration = Duration::from_secs(300);

impl BlobFs {
    fn new(
        client: Client,
        bucket: String,
        opts: MountOptions,
        staging: Option<Arc<StagingArea>>,
    ) -> anyhow::Result<Self> {
        let rt = tokio::runtime::Handle::try_current().context("no async runtime")?;
        let chunks = Arc::new(ChunkCache::new(opts.cache_bytes, opts.upload.chunk_size));
        let (uid, gid) = current_ids();
        Ok(Self {
            rt,
            shared: Arc::new(Shared {
                client,
                bucket,
                meta: Mutex::new(MetaCache::new(opts.meta_ttl)),
                opts,
                uid,
                gid,
                inodes: Mutex::new(Inodes::new()),
                handles: Mutex::new(HashMap::new()),
                next_fh: AtomicU64::new(1),
                writers: Mutex::new(HashMap::new()),
                staging,
                emptied: Mutex::new(HashMap::new()),
                chunks,
                statfs: Mutex::new(None),
                mounted_ms: blob_common::now_ms(),
            }),
        })
    }

    /// Runs `op` as a task, bounded by `timeout`, and answers with `done`.
    fn spawn<T: Send + 'static>(
        &self,
        name: &'static str,
        timeout: Duration,
        op: impl Future<Output = Result<T, Errno>> + Send + 'static,
        done: impl FnOnce(Result<T, Errno>) + Send + 'static,
    ) {
        self.rt.spawn(async move {
            let res = match tokio::time::timeout(timeout, op).await {
                Ok(r) => r,
                Err(_) => {
                    tracing::warn!(op = name, ?timeout, "timed out: EIO");
                    Err(Errno::EIO)
                }
            };
            done(res);
        });
    }

    fn timeout(&self) -> Duration {
        self.shared.opts.timeout
    }

    /// Commits wait for the chunks still in flight: allowed longer.
    fn commit_timeout(&self) -> Duration {
        self.shared.opts.timeout.saturating_mul(4)
    }

    /// The commit of `w`: a staged file may have all its bytes to hash and
    /// send, so it gets time for that too, at a floor of 4 MiB/s.
    fn commit_timeout_for(&self, w: &Writer) -> Duration {
        self.commit_timeout() + Duration::from_secs(w.size() / (4 << 20))
    }
}

fn current_ids() -> (u32, u32) {
    // `std` has no getuid; the owner of /proc/self is this process's uid.
    use std::os::unix::fs::MetadataExt;
    match std::fs::metadata("/proc/self") {
        Ok(m) => (m.uid(), m.gid()),
        Err(_) => (0, 0),
    }
}

/// The errno for a client error, logging what is not self-explanatory.
fn errno(op: &str, path: &str, e: &Error) -> Errno {
    if e.is_not_found() {
        return Errno::ENOENT;
    }
    match e {
        Error::InvalidName(_) => Errno::EINVAL,
        _ => {
            tracing::warn!(op, path, error = %format!("{e:#}"), "EIO");
            Errno::EIO
        }
    }
}

fn write_errno(op: &str, path: &str, e: WriteError) -> Errno {
    match e {
        WriteError::Unsupported(why) => {
            tracing::warn!(op, path, %why, "EOPNOTSUPP");
            Errno::EOPNOTSUPP
        }
        WriteError::NoSpace(why) => {
            tracing::warn!(op, path, %why, "ENOSPC");
            Errno::ENOSPC
        }
        WriteError::Failed(why) => {
            tracing::warn!(op, path, error = %why, "EIO");
            Errno::EIO
        }
    }
}

fn name_str(name: &OsStr) -> Result<&str, Errno> {
    let s = name.to_str().ok_or(Errno::EINVAL)?;
    if s.is_empty() || s.contains('/') {
        return Err(Errno::EINVAL);
    }
    Ok(s)
}

fn ms_to_time(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

impl Shared {
    fn path_of(&self, ino: u64) -> Result<String, Errno> {
        self.inodes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .path(ino)
            .ok_or(Errno::ENOENT)
    }

    fn child_path(&self, parent: u64, name: &OsStr) -> Result<String, Errno> {
        let parent = self.path_of(parent)?;
        let path = join(&parent, name_str(name)?);
        if path.len() > blob_common::names::MAX_PATH_LEN {
            return Err(Errno::ENAMETOOLONG);
        }
        Ok(path)
    }

    /// The path of `parent/name` for an operation that changes it:
    /// `EROFS` on a read-only mount.
    fn path_to_change(&self, parent: u64, name: &OsStr) -> Result<String, Errno> {
        if self.opts.read_only {
            return Err(Errno::EROFS);
        }
        self.child_path(parent, name)
    }

    fn remember(&self, path: &str) -> u64 {
        self.inodes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remember(path)
    }

    fn writer(&self, path: &str) -> Option<Arc<Writer>> {
        self.writers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(path)
            .cloned()
    }

    fn handle_reader(&self, fh: u64) -> Option<Arc<Reader>> {
        match self
            .handles
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&fh)
        {
            Some(Handle::Read(r)) => Some(r.clone()),
            _ => None,
        }
    }

    fn handle_writer(&self, fh: u64) -> Option<Arc<Writer>> {
        match self
            .handles
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&fh)
        {
            Some(Handle::Write(w)) => Some(w.clone()),
            _ => None,
        }
    }

    /// The writer behind a handle that reads through one (opened for
    /// writing, or for reading while written here).
    fn handle_written(&self, fh: u64) -> Option<Arc<Writer>> {
        match self
            .handles
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&fh)
        {
            Some(Handle::Write(w) | Handle::Live(w)) => Some(w.clone()),
            _ => None,
        }
    }

    /// A writer for `path`, registered as the one whose size `stat` shows.
    fn new_writer(&self, path: &str, opened: Opened) -> Arc<Writer> {
        let w = Arc::new(Writer::new(
            self.client.clone(),
            self.bucket.clone(),
            path.to_string(),
            self.opts.upload.clone(),
            self.staging.clone(),
            opened,
        ));
        self.writers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(path.to_string(), w.clone());
        w
    }

    fn add_handle(&self, h: Handle) -> u64 {
        let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
        self.handles
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(fh, h);
        fh
    }

    fn invalidate(&self, path: &str) {
        self.meta
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .invalidate(path);
    }

    fn cache(&self, path: &str, kind: Option<Kind>) {
        self.meta
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .put(path, kind);
    }

    fn attr(&self, ino: u64, kind: Kind) -> FileAttr {
        let (size, mtime, ftype, perm, nlink) = match kind {
            Kind::File { size, mtime_ms } => {
                (size, ms_to_time(mtime_ms), FileType::RegularFile, 0o644, 1)
            }
            Kind::Dir => (
                0,
                ms_to_time(self.mounted_ms),
                FileType::Directory,
                0o755,
                2,
            ),
        };
        let perm = if self.opts.read_only {
            perm & 0o555
        } else {
            perm
        };
        FileAttr {
            ino: INodeNo(ino),
            size,
            blocks: size.div_ceil(512),
            atime: mtime,
            mtime,
            ctime: mtime,
            crtime: mtime,
            kind: ftype,
            perm,
            nlink,
            uid: self.uid,
            gid: self.gid,
            rdev: 0,
            blksize: BLKSIZE,
            flags: 0,
        }
    }

    /// What `path` is: a file open for writing here, a cached answer, or
    /// the namenode's (file first, else a directory if anything is below).
    async fn resolve(&self, path: &str) -> Result<Option<Kind>, Errno> {
        if path.is_empty() {
            return Ok(Some(Kind::Dir));
        }
        if let Some(w) = self.writer(path) {
            return Ok(Some(Kind::File {
                size: w.size(),
                mtime_ms: blob_common::now_ms(),
            }));
        }
        let cached = self
            .meta
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(path);
        if let Some(k) = cached {
            if k.is_none() && self.was_emptied(path) {
                return Ok(Some(Kind::Dir));
            }
            return Ok(k);
        }
        let below = ListFilesQuery {
            prefix: Some(format!("{path}/")),
            delimiter: Some("/".into()),
            start_after: None,
            limit: Some(1),
        };
        let (stat, list) = tokio::join!(
            self.client.stat(&self.bucket, path),
            self.client.list_files(&self.bucket, &below)
        );
        let kind = match stat {
            Ok(f) => Some(Kind::File {
                size: f.size,
                mtime_ms: f.created_ms,
            }),
            Err(e) if e.is_not_found() => match list {
                Ok(l) if !l.files.is_empty() || !l.common_prefixes.is_empty() => Some(Kind::Dir),
                Ok(_) => None,
                Err(e) => return Err(errno("lookup", path, &e)),
            },
            Err(e) => return Err(errno("lookup", path, &e)),
        };
        self.cache(path, kind);
        if kind.is_none() && self.was_emptied(path) {
            return Ok(Some(Kind::Dir));
        }
        Ok(kind)
    }

    /// The directories above `path` may have lost their last file.
    fn note_emptied(&self, path: &str) {
        let now = std::time::Instant::now();
        let mut e = self.emptied.lock().unwrap_or_else(|p| p.into_inner());
        e.retain(|_, at| at.elapsed() < EMPTIED_TTL);
        let mut dir = parent_of(path);
        while !dir.is_empty() {
            e.insert(dir.to_string(), now);
            dir = parent_of(dir);
        }
    }

    fn was_emptied(&self, dir: &str) -> bool {
        self.emptied
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(dir)
            .is_some_and(|at| at.elapsed() < EMPTIED_TTL)
    }

    /// `dir` was removed: it and what was below it are gone for good.
    fn forget_emptied(&self, dir: &str) {
        let below = format!("{dir}/");
        self.emptied
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|p, _| p != dir && !p.starts_with(&below));
    }

    /// Files (and the directory marker) below `path`, any depth.
    async fn list_below(&self, path: &str) -> Result<Vec<String>, Errno> {
        let q = ListFilesQuery {
            prefix: Some(format!("{path}/")),
            ..ListFilesQuery::default()
        };
        let list = self
            .client
            .list_all(&self.bucket, &q)
            .await
            .map_err(|e| errno("list", path, &e))?;
        Ok(list.files.into_iter().map(|f| f.path).collect())
    }

    /// Has `path` (a directory) anything in it besides its marker?
    async fn dir_has_entries(&self, path: &str) -> Result<bool, Errno> {
        let below = format!("{path}/");
        let busy = self
            .writers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .any(|p| p.starts_with(&below));
        if busy {
            return Ok(true);
        }
        let q = ListFilesQuery {
            prefix: Some(below.clone()),
            delimiter: Some("/".into()),
            start_after: Some(below.clone()),
            limit: Some(1),
        };
        let l = self
            .client
            .list_files(&self.bucket, &q)
            .await
            .map_err(|e| errno("rmdir", path, &e))?;
        Ok(!l.files.is_empty() || !l.common_prefixes.is_empty())
    }

    /// Stores an empty file at `path` (a new empty file, a truncation, or a
    /// directory marker).
    async fn put_empty(&self, path: &str) -> Result<crate::FileInfo, Errno> {
        let opts = UploadOptions {
            progress: None,
            ..self.opts.upload.clone()
        };
        self.client
            .upload(tokio::io::empty(), &self.bucket, path, &opts)
            .await
            .map(|o| o.file)
            .map_err(|e| errno("create", path, &e))
    }

    async fn statfs(&self) -> StatFs {
        if let Some((at, s)) = *self.statfs.lock().unwrap_or_else(|p| p.into_inner()) {
            if at.elapsed() < Duration::from_secs(5) {
                return s;
            }
        }
        // Node usage needs an admin key; others see a nominal 1 PiB.
        let s = match self.client.list_nodes().await {
            Ok(l) => {
                let live = l.nodes.iter().filter(|n| n.state == "live");
                let (cap, avail) =
                    live.fold((0u64, 0u64), |(c, a), n| (c + n.capacity, a + n.available));
                StatFs {
                    capacity: cap,
                    available: avail,
                }
            }
            Err(_) => StatFs {
                capacity: 1 << 50,
                available: 1 << 50,
            },
        };
        *self.statfs.lock().unwrap_or_else(|p| p.into_inner()) =
            Some((std::time::Instant::now(), s));
        s
    }

    /// The next page of a directory listing after `start_after`.
    async fn list_page(
        &self,
        dir: &str,
        start_after: Option<String>,
    ) -> Result<(Vec<(String, Kind)>, Option<String>), Errno> {
        let prefix = if dir.is_empty() {
            String::new()
        } else {
            format!("{dir}/")
        };
        let q = ListFilesQuery {
            prefix: (!prefix.is_empty()).then(|| prefix.clone()),
            delimiter: Some("/".into()),
            start_after,
            limit: Some(1000),
        };
        let l = self
            .client
            .list_files(&self.bucket, &q)
            .await
            .map_err(|e| errno("readdir", dir, &e))?;
        let mut out: Vec<(String, Kind)> = Vec::with_capacity(l.files.len());
        for f in &l.files {
            let name = &f.path[prefix.len().min(f.path.len())..];
            if name.is_empty() || !f.path.starts_with(&prefix) {
                continue; // the directory's own marker
            }
            let kind = Kind::File {
                size: f.size,
                mtime_ms: f.created_ms,
            };
            self.cache(&f.path, Some(kind));
            out.push((name.to_string(), kind));
        }
        for p in &l.common_prefixes {
            let name = p
                .strip_prefix(&prefix)
                .unwrap_or(p)
                .trim_end_matches('/')
                .to_string();
            if !name.is_empty() {
                out.push((name, Kind::Dir));
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok((out, l.next_start_after))
    }

    /// New files open for writing directly in `dir` (not yet in listings).
    fn new_files_in(&self, dir: &str) -> Vec<(String, Kind)> {
        self.writers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|(p, w)| w.is_new() && parent_of(p) == dir)
            .map(|(p, w)| {
                let name = p.rsplit('/').next().unwrap_or(p).to_string();
                (
                    name,
                    Kind::File {
                        size: w.size(),
                        mtime_ms: blob_common::now_ms(),
                    },
                )
            })
            .collect()
    }

    /// `truncate(2)` of a file no handle here writes: a version of `size`
    /// bytes is committed (stored chunks kept where they still fit).
    async fn truncate_closed(&self, path: &str, size: u64) -> Result<(), Errno> {
        let current = match self.resolve(path).await? {
            Some(Kind::File { size, .. }) => size,
            Some(Kind::Dir) => return Err(Errno::EISDIR),
            None => return Err(Errno::ENOENT),
        };
        if size == current {
            return Ok(());
        }
        if size == 0 {
            self.put_empty(path).await?;
            self.invalidate(path);
            return Ok(());
        }
        if self.staging.is_none() {
            tracing::warn!(%path, size, current, "truncation to a size other than 0 with the write cache off: EOPNOTSUPP");
            return Err(Errno::EOPNOTSUPP);
        }
        let locs = self
            .client
            .locations(&self.bucket, path)
            .await
            .map_err(|e| errno("truncate", path, &e))?;
        let w = Arc::new(Writer::new(
            self.client.clone(),
            self.bucket.clone(),
            path.to_string(),
            self.opts.upload.clone(),
            self.staging.clone(),
            Opened::Existing(Arc::new(locs)),
        ));
        w.truncate(size)
            .await
            .map_err(|e| write_errno("truncate", path, e))?;
        self.commit(&w).await
    }

    /// Commits a writer and updates the caches; `EIO`/`EOPNOTSUPP` on
    /// failure.
    async fn commit(&self, w: &Arc<Writer>) -> Result<(), Errno> {
        let path = w.path();
        match w.commit().await {
            Ok(Some(file)) => {
                self.invalidate(&path);
                self.cache(
                    &path,
                    Some(Kind::File {
                        size: file.size,
                        mtime_ms: file.created_ms,
                    }),
                );
                Ok(())
            }
            Ok(None) => Ok(()),
            Err(e) => Err(write_errno("commit", &path, e)),
        }
    }
}

impl fuser::Filesystem for BlobFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        let _ = config.add_capabilities(fuser::InitFlags::FUSE_ATOMIC_O_TRUNC);
        // Files are opened for direct I/O (see `open`); this keeps mmap
        // working on them where the kernel allows it (Linux 6.6 and later).
        let _ = config.add_capabilities(fuser::InitFlags::FUSE_DIRECT_IO_ALLOW_MMAP);
        let _ = config.set_max_write(1 << 20);
        let _ = config.set_max_readahead(1 << 20);
        let _ = config.set_max_background(64);
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let s = self.shared.clone();
        let path = match s.child_path(parent.0, name) {
            Ok(p) => p,
            Err(e) => return reply.error(e),
        };
        let ttl = s.opts.meta_ttl;
        self.spawn(
            "lookup",
            self.timeout(),
            async move {
                let kind = s.resolve(&path).await?.ok_or(Errno::ENOENT)?;
                let ino = s.remember(&path);
                let writing = s.writer(&path).is_some();
                Ok((s.attr(ino, kind), writing))
            },
            move |r| match r {
                Ok((attr, writing)) => {
                    let ttl = if writing { Duration::ZERO } else { ttl };
                    reply.entry(&ttl, &attr, Generation(0))
                }
                Err(e) => reply.error(e),
            },
        );
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        self.shared
            .inodes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .forget(ino.0, nlookup);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        let s = self.shared.clone();
        let ttl = s.opts.meta_ttl;
        self.spawn(
            "getattr",
            self.timeout(),
            async move {
                let path = s.path_of(ino.0)?;
                let kind = s.resolve(&path).await?.ok_or(Errno::ENOENT)?;
                Ok((s.attr(ino.0, kind), s.writer(&path).is_some()))
            },
            move |r| match r {
                Ok((attr, writing)) => {
                    reply.attr(&if writing { Duration::ZERO } else { ttl }, &attr)
                }
                Err(e) => reply.error(e),
            },
        );
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        _mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<TimeOrNow>,
        _mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        // Modes, owners and times are not stored: accepted and ignored, as
        // most object-store mounts do. Only sizes matter.
        let s = self.shared.clone();
        let read_only = s.opts.read_only;
        self.spawn(
            "setattr",
            self.commit_timeout(),
            async move {
                let path = s.path_of(ino.0)?;
                let writer = fh
                    .and_then(|fh| s.handle_writer(fh.0))
                    .or_else(|| s.writer(&path));
                if let Some(size) = size {
                    if read_only {
                        return Err(Errno::EROFS);
                    }
                    match &writer {
                        Some(w) if size != w.size() => w
                            .truncate(size)
                            .await
                            .map_err(|e| write_errno("truncate", &path, e))?,
                        Some(_) => {}
                        None => s.truncate_closed(&path, size).await?,
                    }
                }
                let kind = s.resolve(&path).await?.ok_or(Errno::ENOENT)?;
                Ok(s.attr(ino.0, kind))
            },
            move |r| match r {
                Ok(attr) => reply.attr(&Duration::ZERO, &attr),
                Err(e) => reply.error(e),
            },
        );
    }

    fn mkdir(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        _mode: u32,
        _umask: u32,
        reply: ReplyEntry,
    ) {
        let s = self.shared.clone();
        let path = match s.path_to_change(parent.0, name) {
            Ok(p) => p,
            Err(e) => return reply.error(e),
        };
        let ttl = s.opts.meta_ttl;
        self.spawn(
            "mkdir",
            self.timeout(),
            async move {
                if s.resolve(&path).await?.is_some() {
                    return Err(Errno::EEXIST);
                }
                s.put_empty(&format!("{path}/")).await?;
                s.invalidate(&path);
                s.cache(&path, Some(Kind::Dir));
                let ino = s.remember(&path);
                Ok(s.attr(ino, Kind::Dir))
            },
            move |r| match r {
                Ok(attr) => reply.entry(&ttl, &attr, Generation(0)),
                Err(e) => reply.error(e),
            },
        );
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let s = self.shared.clone();
        let path = match s.path_to_change(parent.0, name) {
            Ok(p) => p,
            Err(e) => return reply.error(e),
        };
        self.spawn(
            "unlink",
            self.timeout(),
            async move {
                let writer = s
                    .writers
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&path);
                let was_new = match &writer {
                    Some(w) => {
                        let new = w.is_new();
                        w.discard().await;
                        new
                    }
                    None => false,
                };
                let res = s.client.delete_file(&s.bucket, &path).await;
                s.invalidate(&path);
                s.note_emptied(&path);
                match res {
                    Ok(()) => Ok(()),
                    Err(e) if e.is_not_found() && was_new => Ok(()),
                    Err(e) => Err(errno("unlink", &path, &e)),
                }
            },
            empty_reply(reply),
        );
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let s = self.shared.clone();
        let path = match s.path_to_change(parent.0, name) {
            Ok(p) => p,
            Err(e) => return reply.error(e),
        };
        self.spawn(
            "rmdir",
            self.timeout(),
            async move {
                match s.resolve(&path).await? {
                    Some(Kind::Dir) => {}
                    Some(Kind::File { .. }) => return Err(Errno::ENOTDIR),
                    // The kernel still knew it: a directory that existed
                    // only through its files, gone with the last of them.
                    None => {
                        s.invalidate(&path);
                        return Ok(());
                    }
                }
                if s.dir_has_entries(&path).await? {
                    return Err(Errno::ENOTEMPTY);
                }
                let res = s.client.delete_file(&s.bucket, &format!("{path}/")).await;
                s.invalidate(&path);
                s.forget_emptied(&path);
                match res {
                    Ok(()) => Ok(()),
                    Err(e) if e.is_not_found() => Ok(()),
                    Err(e) => Err(errno("rmdir", &path, &e)),
                }
            },
            empty_reply(reply),
        );
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        let s = self.shared.clone();
        if s.opts.read_only {
            return reply.error(Errno::EROFS);
        }
        let (from, to) = match (
            s.child_path(parent.0, name),
            s.child_path(newparent.0, newname),
        ) {
            (Ok(f), Ok(t)) => (f, t),
            (Err(e), _) | (_, Err(e)) => return reply.error(e),
        };
        if flags.contains(RenameFlags::RENAME_EXCHANGE)
            || flags.contains(RenameFlags::RENAME_WHITEOUT)
        {
            return reply.error(Errno::EINVAL);
        }
        let noreplace = flags.contains(RenameFlags::RENAME_NOREPLACE);
        self.spawn(
            "rename",
            self.commit_timeout(),
            async move {
                if from == to {
                    return Ok(());
                }
                if to.starts_with(&format!("{from}/")) {
                    return Err(Errno::EINVAL);
                }
                let src = s.resolve(&from).await?.ok_or(Errno::ENOENT)?;
                let dst = s.resolve(&to).await?;
                if noreplace && dst.is_some() {
                    return Err(Errno::EEXIST);
                }
                match (src, dst) {
                    (Kind::File { .. }, Some(Kind::Dir)) => return Err(Errno::EISDIR),
                    (Kind::Dir, Some(Kind::File { .. })) => return Err(Errno::ENOTDIR),
                    (Kind::Dir, Some(Kind::Dir)) if s.dir_has_entries(&to).await? => {
                        return Err(Errno::ENOTEMPTY)
                    }
                    _ => {}
                }
                match src {
                    Kind::File { .. } => {
                        // A file still being written is committed first, and
                        // goes on being written under its new name.
                        let writer = s.writer(&from);
                        if let Some(w) = &writer {
                            s.commit(w).await?;
                        }
                        s.client
                            .rename(&s.bucket, &from, &to)
                            .await
                            .map_err(|e| errno("rename", &from, &e))?;
                        if let Some(w) = writer {
                            let mut ws = s.writers.lock().unwrap_or_else(|p| p.into_inner());
                            ws.remove(&from);
                            w.set_path(to.clone());
                            ws.insert(to.clone(), w);
                        }
                    }
                    Kind::Dir => {
                        // Not atomic: each file below moves on its own.
                        for p in s.list_below(&from).await? {
                            let new = format!("{to}{}", &p[from.len()..]);
                            s.client
                                .rename(&s.bucket, &p, &new)
                                .await
                                .map_err(|e| errno("rename", &p, &e))?;
                        }
                    }
                }
                s.invalidate(&from);
                s.invalidate(&to);
                s.note_emptied(&from);
                s.forget_emptied(&from);
                s.inodes
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .rename(&from, &to);
                Ok(())
            },
            empty_reply(reply),
        );
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let s = self.shared.clone();
        let write = !matches!(flags.acc_mode(), OpenAccMode::O_RDONLY);
        let truncate = flags.0 & libc::O_TRUNC != 0;
        if write && s.opts.read_only {
            return reply.error(Errno::EROFS);
        }
        self.spawn(
            "open",
            self.timeout(),
            async move {
                let path = s.path_of(ino.0)?;
                if write {
                    let opened = match s.resolve(&path).await? {
                        Some(Kind::Dir) => return Err(Errno::EISDIR),
                        None => Opened::New,
                        Some(Kind::File { .. }) if truncate => Opened::Truncated,
                        // Kept as it is: its committed version is the base.
                        Some(Kind::File { .. }) => {
                            match s.client.locations(&s.bucket, &path).await {
                                Ok(l) => Opened::Existing(Arc::new(l)),
                                // Being created here, nothing committed yet.
                                Err(e) if e.is_not_found() => Opened::New,
                                Err(e) => return Err(errno("open", &path, &e)),
                            }
                        }
                    };
                    let w = s.new_writer(&path, opened);
                    return Ok(s.add_handle(Handle::Write(w)));
                }
                if let Some(w) = s.writer(&path) {
                    if w.readable().await {
                        return Ok(s.add_handle(Handle::Live(w)));
                    }
                }
                let reader = match s.client.locations(&s.bucket, &path).await {
                    Ok(l) => Reader::new(Arc::new(l)),
                    // A new file not committed yet reads as empty.
                    Err(e) if e.is_not_found() && s.writer(&path).is_some() => {
                        return Ok(
                            s.add_handle(Handle::Read(Arc::new(Reader::empty(&s.bucket, &path))))
                        )
                    }
                    Err(e) => return Err(errno("open", &path, &e)),
                };
                s.cache(
                    &path,
                    Some(Kind::File {
                        size: reader.size(),
                        mtime_ms: reader.mtime_ms(),
                    }),
                );
                Ok(s.add_handle(Handle::Read(Arc::new(reader))))
            },
            move |r| match r {
                Ok(fh) => reply.opened(FileHandle(fh), FopenFlags::FOPEN_DIRECT_IO),
                Err(e) => reply.error(e),
            },
        );
    }

    fn create(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        _mode: u32,
        _umask: u32,
        _flags: i32,
        reply: ReplyCreate,
    ) {
        let s = self.shared.clone();
        let path = match s.path_to_change(parent.0, name) {
            Ok(p) => p,
            Err(e) => return reply.error(e),
        };
        if blob_common::names::validate_path(&path).is_err() {
            return reply.error(Errno::EINVAL);
        }
        let w = s.new_writer(&path, Opened::New);
        s.invalidate(&path);
        let fh = s.add_handle(Handle::Write(w));
        let ino = s.remember(&path);
        let attr = s.attr(
            ino,
            Kind::File {
                size: 0,
                mtime_ms: blob_common::now_ms(),
            },
        );
        reply.created(
            &Duration::ZERO,
            &attr,
            Generation(0),
            FileHandle(fh),
            FopenFlags::FOPEN_DIRECT_IO,
        );
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let s = self.shared.clone();
        let Some(reader) = s.handle_reader(fh.0) else {
            // A file being written here: what was written so far.
            let Some(w) = s.handle_written(fh.0) else {
                return reply.error(Errno::EBADF);
            };
            return self.spawn(
                "read",
                self.timeout(),
                async move {
                    w.read(offset, u64::from(size))
                        .await
                        .map_err(|e| write_errno("read", &w.path(), e))
                },
                move |r: Result<Bytes, Errno>| match r {
                    Ok(b) => reply.data(&b),
                    Err(e) => reply.error(e),
                },
            );
        };
        // A sequential reader's next bytes are usually fetched already:
        // answered right here, without a task.
        if let Some(b) = reader.read_ready(
            &self.rt,
            &s.client,
            &s.chunks,
            s.opts.readahead_chunks,
            offset,
            u64::from(size),
        ) {
            return reply.data(&b);
        }
        self.spawn(
            "read",
            self.timeout(),
            async move {
                let t = std::time::Instant::now();
                let r = reader
                    .read(
                        &s.client,
                        &s.chunks,
                        s.opts.readahead_chunks,
                        offset,
                        u64::from(size),
                    )
                    .await
                    .map_err(|e| errno("read", &reader.path(), &e));
                tracing::trace!(offset, size, us = t.elapsed().as_micros() as u64, "read");
                r
            },
            move |r: Result<Bytes, Errno>| match r {
                Ok(b) => reply.data(&b),
                Err(e) => reply.error(e),
            },
        );
    }

    fn write(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let s = self.shared.clone();
        let Some(w) = s.handle_writer(fh.0) else {
            return reply.error(Errno::EBADF);
        };
        let data = Bytes::copy_from_slice(data);
        let len = data.len() as u32;
        self.spawn(
            "write",
            self.commit_timeout(),
            async move {
                w.write(offset, data)
                    .await
                    .map_err(|e| write_errno("write", &w.path(), e))
            },
            move |r| match r {
                Ok(()) => reply.written(len),
                Err(e) => reply.error(e),
            },
        );
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        let s = self.shared.clone();
        let Some(w) = s.handle_writer(fh.0) else {
            return reply.ok();
        };
        self.spawn(
            "flush",
            self.commit_timeout_for(&w),
            async move { s.commit(&w).await },
            empty_reply(reply),
        );
    }

    fn fsync(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        self.flush(req, ino, fh, LockOwner(0), reply);
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        let s = self.shared.clone();
        let handle = s
            .handles
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&fh.0);
        let Some(Handle::Write(w)) = handle else {
            return reply.ok();
        };
        self.spawn(
            "release",
            self.commit_timeout_for(&w),
            async move {
                let res = s.commit(&w).await;
                let path = w.path();
                let mut ws = s.writers.lock().unwrap_or_else(|p| p.into_inner());
                if ws.get(&path).is_some_and(|cur| Arc::ptr_eq(cur, &w)) {
                    ws.remove(&path);
                }
                res
            },
            empty_reply(reply),
        );
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        let s = self.shared.clone();
        let path = match s.path_of(ino.0) {
            Ok(p) => p,
            Err(e) => return reply.error(e),
        };
        let fh = s.add_handle(Handle::Dir(Arc::new(tokio::sync::Mutex::new(DirList {
            path,
            page_start: FIRST_ENTRY_COOKIE,
            page: Vec::new(),
            next: None,
            started: false,
        }))));
        reply.opened(FileHandle(fh), FopenFlags::empty());
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let s = self.shared.clone();
        let list = match s
            .handles
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&fh.0)
        {
            Some(Handle::Dir(d)) => d.clone(),
            _ => return reply.error(Errno::EBADF),
        };
        self.spawn(
            "readdir",
            self.timeout(),
            async move {
                let mut d = list.lock().await;
                let mut out: Vec<(u64, u64, FileType, String)> = Vec::new();
                let parent_ino = {
                    let inodes = s.inodes.lock().unwrap_or_else(|p| p.into_inner());
                    inodes.peek(parent_of(&d.path)).unwrap_or(ROOT)
                };
                if offset < 1 {
                    out.push((ino.0, 1, FileType::Directory, ".".into()));
                }
                if offset < 2 {
                    out.push((parent_ino, 2, FileType::Directory, "..".into()));
                }
                let mut want = offset.max(FIRST_ENTRY_COOKIE - 1) + 1;
                if want < d.page_start || !d.started {
                    // From the start (first call, or a rewind).
                    let (mut page, next) = s.list_page(&d.path, None).await?;
                    let mut extra = s.new_files_in(&d.path);
                    extra.retain(|(n, _)| page.binary_search_by(|(p, _)| p.cmp(n)).is_err());
                    page.extend(extra);
                    d.page = page;
                    d.next = next;
                    d.page_start = FIRST_ENTRY_COOKIE;
                    d.started = true;
                }
                loop {
                    let page_end = d.page_start + d.page.len() as u64;
                    if want >= page_end {
                        let Some(after) = d.next.take() else {
                            break;
                        };
                        let (page, next) = s.list_page(&d.path, Some(after)).await?;
                        d.page_start = page_end;
                        d.page = page;
                        d.next = next;
                        want = want.max(d.page_start);
                        if d.page.is_empty() && d.next.is_none() {
                            break;
                        }
                        continue;
                    }
                    let inodes = s.inodes.lock().unwrap_or_else(|p| p.into_inner());
                    for (i, (name, kind)) in d.page.iter().enumerate() {
                        let cookie = d.page_start + i as u64;
                        if cookie < want {
                            continue;
                        }
                        let full = join(&d.path, name);
                        let ino = inodes.peek(&full).unwrap_or_else(|| listing_ino(&full));
                        let ftype = match kind {
                            Kind::Dir => FileType::Directory,
                            Kind::File { .. } => FileType::RegularFile,
                        };
                        out.push((ino, cookie + 1, ftype, name.clone()));
                    }
                    break;
                }
                Ok(out)
            },
            move |r| match r {
                Ok(entries) => {
                    for (ino, next, kind, name) in entries {
                        if reply.add(INodeNo(ino), next, kind, &name) {
                            break;
                        }
                    }
                    reply.ok()
                }
                Err(e) => reply.error(e),
            },
        );
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        self.shared
            .handles
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&fh.0);
        reply.ok();
    }

    fn getxattr(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _name: &OsStr,
        _size: u32,
        reply: fuser::ReplyXattr,
    ) {
        reply.error(Errno::NO_XATTR);
    }

    fn listxattr(&self, _req: &Request, _ino: INodeNo, size: u32, reply: fuser::ReplyXattr) {
        if size == 0 {
            reply.size(0)
        } else {
            reply.data(&[])
        }
    }

    fn setxattr(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _name: &OsStr,
        _value: &[u8],
        _flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        reply.error(Errno::ENOTSUP);
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let s = self.shared.clone();
        self.spawn(
            "statfs",
            self.timeout(),
            async move { Ok(s.statfs().await) },
            move |r| match r {
                Ok(st) => {
                    let bsize = u64::from(BLKSIZE);
                    reply.statfs(
                        st.capacity / bsize,
                        st.available / bsize,
                        st.available / bsize,
                        u64::MAX >> 1,
                        u64::MAX >> 1,
                        BLKSIZE,
                        255,
                        BLKSIZE,
                    )
                }
                Err(e) => reply.error(e),
            },
        );
    }
}

/// Answers a `ReplyEmpty` with an operation's outcome.
fn empty_reply(reply: ReplyEmpty) -> impl FnOnce(Result<(), Errno>) + Send + 'static {
    move |r| match r {
        Ok(()) => reply.ok(),
        Err(e) => reply.error(e),
    }
}

/// An inode number for a listing entry the kernel has not looked up: from
/// a hash of the path, in a range sequential numbers never reach.
fn listing_ino(path: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    path.hash(&mut h);
    h.finish() | (1 << 63)
}
