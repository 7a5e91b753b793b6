//! What a running mount holds: the open-handle table ([`Handle`],
//! directory listings in progress), the state every FUSE task shares
//! ([`Shared`]), the [`BlobFs`] that hands each request to a task under a
//! timeout, and the mapping of client errors to errno values.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::future::Future;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use blob_client::{Client, Error};
use fuser::{Errno, ReplyEmpty};

use crate::inodes::{Inodes, Kind, MetaCache};
use crate::read::{ChunkCache, Reader};
use crate::stage::StagingArea;
use crate::write::{WriteError, Writer};
use crate::MountOptions;

/// What an open handle is.
pub(crate) enum Handle {
    Read(Arc<Reader>),
    Write(Arc<Writer>),
    /// Opened for reading while this mount writes the file: reads what was
    /// written so far (muxers read back what they wrote).
    Live(Arc<Writer>),
    Dir(Arc<tokio::sync::Mutex<DirList>>),
}

/// A directory being listed: one page of entries at a time, so a huge
/// directory streams instead of being listed whole first.
pub(crate) struct DirList {
    pub(crate) path: String,
    /// Cookie of the first entry of `page`.
    pub(crate) page_start: u64,
    pub(crate) page: Vec<(String, Kind)>,
    /// Where the next page starts, or `None` at the end.
    pub(crate) next: Option<String>,
    pub(crate) started: bool,
}

/// The first listing cookies are taken by `.` and `..`.
pub(crate) const FIRST_ENTRY_COOKIE: u64 = 3;

pub(crate) struct Shared {
    pub(crate) client: Client,
    pub(crate) bucket: String,
    pub(crate) opts: MountOptions,
    pub(crate) uid: u32,
    pub(crate) gid: u32,
    pub(crate) inodes: Mutex<Inodes>,
    pub(crate) meta: Mutex<MetaCache>,
    pub(crate) handles: Mutex<HashMap<u64, Handle>>,
    pub(crate) next_fh: AtomicU64,
    /// Files open for writing, by path (their size while written).
    pub(crate) writers: Mutex<HashMap<String, Arc<Writer>>>,
    /// Where out-of-order writes are staged (`None`: off).
    pub(crate) staging: Option<Arc<StagingArea>>,
    /// Directories that existed only through their files until this mount
    /// removed or moved those: they stay (empty) directories, as on a local
    /// file system, until removed or for [`EMPTIED_TTL`], so `rm -r` can
    /// remove them last.
    pub(crate) emptied: Mutex<HashMap<String, std::time::Instant>>,
    pub(crate) chunks: Arc<ChunkCache>,
    pub(crate) statfs: Mutex<Option<(std::time::Instant, StatFs)>>,
    /// Directories (which have no times of their own) show this.
    pub(crate) mounted_ms: u64,
}

#[derive(Clone, Copy)]
pub(crate) struct StatFs {
    pub(crate) capacity: u64,
    pub(crate) available: u64,
}

/// The FUSE filesystem: hands each request to a task.
pub(crate) struct BlobFs {
    pub(crate) rt: tokio::runtime::Handle,
    pub(crate) shared: Arc<Shared>,
}

/// Block size reported to `stat` (programs size their buffers by it).
pub(crate) const BLKSIZE: u32 = 1 << 20;

/// How long a directory emptied through this mount stays (see
/// `Shared::emptied`).
pub(crate) const EMPTIED_TTL: Duration = Duration::from_secs(300);

impl BlobFs {
    pub(crate) fn new(
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
    pub(crate) fn spawn<T: Send + 'static>(
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

    pub(crate) fn timeout(&self) -> Duration {
        self.shared.opts.timeout
    }

    /// Commits wait for the chunks still in flight: allowed longer.
    pub(crate) fn commit_timeout(&self) -> Duration {
        self.shared.opts.timeout.saturating_mul(4)
    }

    /// The commit of `w`: a staged file may have all its bytes to hash and
    /// send, so it gets time for that too, at a floor of 4 MiB/s.
    pub(crate) fn commit_timeout_for(&self, w: &Writer) -> Duration {
        self.commit_timeout() + Duration::from_secs(w.size() / (4 << 20))
    }
}

pub(crate) fn current_ids() -> (u32, u32) {
    // `std` has no getuid; the owner of /proc/self is this process's uid.
    use std::os::unix::fs::MetadataExt;
    match std::fs::metadata("/proc/self") {
        Ok(m) => (m.uid(), m.gid()),
        Err(_) => (0, 0),
    }
}

/// The errno for a client error, logging what is not self-explanatory.
pub(crate) fn errno(op: &str, path: &str, e: &Error) -> Errno {
    if e.is_not_found() {
        return Errno::ENOENT;
    }
    match e.code() {
        Some("AccessDenied") => return Errno::EACCES,
        Some("QuotaExceeded") => return Errno::EDQUOT,
        _ => {}
    }
    match e {
        Error::InvalidName(_) => Errno::EINVAL,
        _ => {
            tracing::warn!(op, path, error = %format!("{e:#}"), "EIO");
            Errno::EIO
        }
    }
}

pub(crate) fn write_errno(op: &str, path: &str, e: WriteError) -> Errno {
    match e {
        WriteError::Unsupported(why) => {
            tracing::warn!(op, path, %why, "EOPNOTSUPP");
            Errno::EOPNOTSUPP
        }
        WriteError::NoSpace(why) => {
            tracing::warn!(op, path, %why, "ENOSPC");
            Errno::ENOSPC
        }
        // The namenode's stable codes survive in the upload's message.
        WriteError::Failed(why) if why.contains("AccessDenied") => {
            tracing::warn!(op, path, error = %why, "EACCES");
            Errno::EACCES
        }
        WriteError::Failed(why) if why.contains("QuotaExceeded") => {
            tracing::warn!(op, path, error = %why, "EDQUOT");
            Errno::EDQUOT
        }
        WriteError::Failed(why) => {
            tracing::warn!(op, path, error = %why, "EIO");
            Errno::EIO
        }
    }
}

pub(crate) fn name_str(name: &OsStr) -> Result<&str, Errno> {
    let s = name.to_str().ok_or(Errno::EINVAL)?;
    if s.is_empty() || s.contains('/') {
        return Err(Errno::EINVAL);
    }
    Ok(s)
}

pub(crate) fn ms_to_time(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

/// Answers a `ReplyEmpty` with an operation's outcome.
pub(crate) fn empty_reply(reply: ReplyEmpty) -> impl FnOnce(Result<(), Errno>) + Send + 'static {
    move |r| match r {
        Ok(()) => reply.ok(),
        Err(e) => reply.error(e),
    }
}

/// An inode number for a listing entry the kernel has not looked up: from
/// a hash of the path, in a range sequential numbers never reach.
pub(crate) fn listing_ino(path: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    path.hash(&mut h);
    h.finish() | (1 << 63)
}
