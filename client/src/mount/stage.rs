//! Local staging for files written out of order: where an open file's
//! bytes live once it cannot be streamed front to back any more.
//!
//! A [`StagingArea`] is one directory per running mount under the cache
//! directory, held by an exclusive `flock` for the mount's life; the next
//! mount to start there removes the directories whose lock nobody holds
//! (a mount that was killed), so a crash leaves nothing behind for long.
//! Its budget counts the disk blocks the staging files really take
//! (holes are free), and a write that would go over it fails with
//! `ENOSPC` instead of being lost.
//!
//! A [`Layout`] says where each byte of a staged file is: in a chunk of the
//! version the open started from (kept by id, never copied while unchanged),
//! or in the staging file at the same offset. A write into a stored chunk
//! first copies that one chunk into the staging file; the commit re-cuts
//! only the local runs into chunks, so unchanged chunks keep their ids.

use std::fs::File;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::Context;
use blob_common::ChunkId;
use bytes::{Bytes, BytesMut};
use nix::fcntl::{Flock, FlockArg};

/// Names of the directories (and their lock files) of running mounts.
const INSTANCE_PREFIX: &str = "mount-";

/// The staging directory of one running mount, with its byte budget.
pub(super) struct StagingArea {
    dir: PathBuf,
    capacity: u64,
    used: Mutex<u64>,
    next: AtomicU64,
    /// Held while the mount runs: tells a mount starting later that this
    /// directory is in use.
    _lock: Flock<File>,
}

impl StagingArea {
    /// Opens a fresh staging directory under `root` (created if missing)
    /// with room for `capacity` bytes, after removing the directories of
    /// mounts that are gone.
    pub(super) fn open(root: &Path, capacity: u64) -> anyhow::Result<Arc<Self>> {
        std::fs::create_dir_all(root)
            .with_context(|| format!("creating the cache directory {}", root.display()))?;
        // Sweeps and creations take the root's lock, so a sweep never sees
        // a directory whose lock is not taken yet.
        let root_lock = lock_file(&root.join(".lock"), FlockArg::LockExclusive)
            .with_context(|| format!("locking {}", root.display()))?;
        let removed = sweep(root);
        if removed > 0 {
            tracing::info!(root = %root.display(), files = removed, "removed staging files left by a mount that stopped");
        }
        let name = format!(
            "{INSTANCE_PREFIX}{}-{}",
            std::process::id(),
            hex::encode(rand::random::<[u8; 4]>())
        );
        let lock = lock_file(
            &root.join(format!("{name}.lock")),
            FlockArg::LockExclusiveNonblock,
        )
        .context("locking the staging directory")?;
        let dir = root.join(&name);
        std::fs::create_dir(&dir)
            .with_context(|| format!("creating the staging directory {}", dir.display()))?;
        drop(root_lock);
        Ok(Arc::new(Self {
            dir,
            capacity,
            used: Mutex::new(0),
            next: AtomicU64::new(1),
            _lock: lock,
        }))
    }

    /// Removes this mount's directory: a mount that stops cleanly leaves
    /// nothing behind. Staging files still open lose their data.
    pub(super) fn remove(&self) {
        // The lock file first: a directory left without one (the process
        // killed right here) is swept by the next mount.
        let mut lock = self.dir.clone().into_os_string();
        lock.push(".lock");
        let _ = std::fs::remove_file(lock);
        match std::fs::remove_dir_all(&self.dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(dir = %self.dir.display(), error = %e, "could not remove the staging directory")
            }
        }
    }

    /// This mount's directory.
    pub(super) fn dir(&self) -> &Path {
        &self.dir
    }

    /// Bytes staged now.
    pub(super) fn used(&self) -> u64 {
        *self.used.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A new, empty staging file.
    pub(super) fn create(self: &Arc<Self>) -> std::io::Result<StageFile> {
        let path = self
            .dir
            .join(self.next.fetch_add(1, Ordering::Relaxed).to_string());
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)?;
        Ok(StageFile {
            file: Arc::new(file),
            path,
            area: self.clone(),
            reserved: 0,
        })
    }

    /// Takes `n` bytes of the budget; false (nothing taken) when they are
    /// not there.
    fn reserve(&self, n: u64) -> bool {
        let mut used = self.used.lock().unwrap_or_else(|p| p.into_inner());
        if used.saturating_add(n) > self.capacity {
            return false;
        }
        *used += n;
        true
    }

    /// Takes `n` bytes whatever the budget (blocks already on disk).
    fn force(&self, n: u64) {
        let mut used = self.used.lock().unwrap_or_else(|p| p.into_inner());
        *used = used.saturating_add(n);
    }

    fn release(&self, n: u64) {
        let mut used = self.used.lock().unwrap_or_else(|p| p.into_inner());
        *used = used.saturating_sub(n);
    }
}

impl Drop for StagingArea {
    fn drop(&mut self) {
        self.remove();
    }
}

/// Opens (creating) and locks `path`.
fn lock_file(path: &Path, how: FlockArg) -> anyhow::Result<Flock<File>> {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    Flock::lock(f, how).map_err(|(_, e)| anyhow::anyhow!("locking {}: {e}", path.display()))
}

/// Removes the staging directories under `root` whose lock no running
/// mount holds (and directories that never got a lock); returns how many
/// files they held.
fn sweep(root: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(root) else {
        return 0;
    };
    // Each mount's directory and lock file, whichever of the two is left.
    let names: std::collections::BTreeSet<String> = entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let name = name.strip_suffix(".lock").unwrap_or(&name).to_string();
            name.starts_with(INSTANCE_PREFIX).then_some(name)
        })
        .collect();
    let mut removed = 0;
    for name in names {
        let lock_path = root.join(format!("{name}.lock"));
        let lock = match lock_file(&lock_path, FlockArg::LockExclusiveNonblock) {
            Ok(l) => l,
            // Held: a running mount's.
            Err(_) => continue,
        };
        let dir = root.join(&name);
        removed += std::fs::read_dir(&dir).map_or(0, |d| d.count());
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(dir = %dir.display(), error = %e, "could not remove a stale staging directory");
                continue;
            }
        }
        let _ = std::fs::remove_file(&lock_path);
        drop(lock);
    }
    removed
}

/// Why a staging file operation failed.
#[derive(Debug)]
pub(super) enum StageError {
    /// The write would take the staging area over its budget.
    Full { want: u64, used: u64, capacity: u64 },
    /// The local file system failed.
    Io(std::io::Error),
}

impl std::fmt::Display for StageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StageError::Full {
                want,
                used,
                capacity,
            } => write!(
                f,
                "the write cache is full: {want} more bytes wanted, {used} of {capacity} in use (--write-cache-size)"
            ),
            StageError::Io(e) => write!(f, "staging file: {e}"),
        }
    }
}

/// One staged file: bytes at the same offsets as in the file being
/// written, sparse where nothing is local. Removed when dropped.
pub(super) struct StageFile {
    file: Arc<File>,
    path: PathBuf,
    area: Arc<StagingArea>,
    /// Budget taken: the blocks the file holds (measured after each
    /// change).
    reserved: u64,
}

/// Blocks a write of `len` bytes may allocate (a partial block at each
/// end takes a whole one).
fn worst_case_blocks(len: u64) -> u64 {
    const BLOCK: u64 = 4096;
    len.div_ceil(BLOCK) * BLOCK + BLOCK
}

impl StageFile {
    /// Writes `data` at `offset`; `Full` (nothing written) when the
    /// area's budget cannot take it.
    pub(super) async fn write_at(&mut self, offset: u64, data: Bytes) -> Result<(), StageError> {
        let want = worst_case_blocks(data.len() as u64);
        if !self.area.reserve(want) {
            return Err(StageError::Full {
                want,
                used: self.area.used(),
                capacity: self.area.capacity,
            });
        }
        self.reserved += want;
        let file = self.file.clone();
        let res = blocking(move || file.write_all_at(&data, offset)).await;
        self.settle();
        res.map_err(StageError::Io)
    }

    /// `len` bytes from `offset` (zeros where the file has none).
    pub(super) async fn read_at(&self, offset: u64, len: u64) -> std::io::Result<Bytes> {
        let file = self.file.clone();
        blocking(move || read_padded(&file, offset, len)).await
    }

    /// Cuts or extends the file to `len` bytes (an extension is a hole).
    pub(super) async fn set_len(&mut self, len: u64) -> Result<(), StageError> {
        let file = self.file.clone();
        let res = blocking(move || file.set_len(len)).await;
        self.settle();
        res.map_err(StageError::Io)
    }

    /// Brings the budget taken to the blocks the file really holds.
    fn settle(&mut self) {
        self.settle_with(0);
    }

    /// [`StageFile::settle`], with `pending` bytes of writes under way on
    /// top.
    fn settle_with(&mut self, pending: u64) {
        let Ok(meta) = self.file.metadata() else {
            return;
        };
        let held = meta.blocks() * 512 + pending;
        if held > self.reserved {
            self.area.force(held - self.reserved);
        } else {
            self.area.release(self.reserved - held);
        }
        self.reserved = held;
    }

    /// The file, for reads on the blocking pool.
    pub(super) fn handle(&self) -> Arc<File> {
        self.file.clone()
    }

    /// Takes `n` bytes of the budget for a write about to be made.
    fn reserve(&mut self, n: u64) -> Result<(), StageError> {
        if !self.area.reserve(n) {
            return Err(StageError::Full {
                want: n,
                used: self.area.used(),
                capacity: self.area.capacity,
            });
        }
        self.reserved += n;
        Ok(())
    }

    /// A second handle on the file that writes around the page cache
    /// (`O_DIRECT`), where the file system allows it.
    fn open_direct(&self) -> std::io::Result<File> {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_DIRECT)
            .open(&self.path)
    }
}

/// Bytes a [`Tee`] gathers before it writes them out: a multiple of any
/// block size `O_DIRECT` asks for.
const TEE_BLOCK: usize = 4 << 20;
/// Alignment of a [`Tee`]'s buffers in memory (`O_DIRECT` needs it).
const TEE_ALIGN: usize = 4096;
/// Blocks a [`Tee`] has being written at once: the writer waits for the
/// disk only when it is this far behind.
const TEE_IN_FLIGHT: usize = 4;

/// A block being written out; gives its buffer back.
type BlockWrite = tokio::task::JoinHandle<(std::io::Result<()>, AlignedBuf)>;

/// A buffer of [`TEE_BLOCK`] bytes starting at a [`TEE_ALIGN`]ed address.
struct AlignedBuf {
    vec: Vec<u8>,
    start: usize,
    len: usize,
}

impl AlignedBuf {
    fn new() -> Self {
        let vec = vec![0u8; TEE_BLOCK + TEE_ALIGN];
        let start = (TEE_ALIGN - vec.as_ptr() as usize % TEE_ALIGN) % TEE_ALIGN;
        Self { vec, start, len: 0 }
    }

    fn room(&self) -> usize {
        TEE_BLOCK - self.len
    }

    fn push(&mut self, b: &[u8]) {
        let at = self.start + self.len;
        self.vec[at..at + b.len()].copy_from_slice(b);
        self.len += b.len();
    }

    fn bytes(&self) -> &[u8] {
        &self.vec[self.start..self.start + self.len]
    }
}

/// The local copy of a file being streamed, so that it can be staged at
/// any point. Appended in [`TEE_BLOCK`]s written with `O_DIRECT` in the
/// background (up to [`TEE_IN_FLIGHT`] at once): filling the page cache
/// with a copy nobody may ever read costs more CPU than the upload itself
/// on a busy machine, and evicts what readers use.
pub(super) struct Tee {
    file: StageFile,
    direct: Option<Arc<File>>,
    /// Bytes from `buf_at` on, not written out yet.
    buf: AlignedBuf,
    spares: Vec<AlignedBuf>,
    /// Blocks before `buf_at` still being written, oldest first.
    writing: std::collections::VecDeque<BlockWrite>,
    buf_at: u64,
}

impl Tee {
    pub(super) fn new(file: StageFile) -> Self {
        let direct = match file.open_direct() {
            Ok(f) => Some(Arc::new(f)),
            Err(e) => {
                tracing::debug!(error = %e, "no O_DIRECT for the write cache: local copies go through the page cache");
                None
            }
        };
        Self {
            file,
            direct,
            buf: AlignedBuf::new(),
            spares: Vec::new(),
            writing: std::collections::VecDeque::new(),
            buf_at: 0,
        }
    }

    /// Bytes copied so far.
    pub(super) fn len(&self) -> u64 {
        self.buf_at + self.buf.len as u64
    }

    /// Appends `data`; `Full` when the write cache cannot take it.
    pub(super) async fn append(&mut self, mut data: &[u8]) -> Result<(), StageError> {
        while !data.is_empty() {
            let k = data.len().min(self.buf.room());
            self.buf.push(&data[..k]);
            data = &data[k..];
            if self.buf.room() == 0 {
                self.write_block().await?;
            }
        }
        Ok(())
    }

    /// Starts writing the full buffer out at `buf_at`, once fewer than
    /// [`TEE_IN_FLIGHT`] blocks are under way.
    async fn write_block(&mut self) -> Result<(), StageError> {
        while self.writing.len() >= TEE_IN_FLIGHT {
            self.wait_one().await?;
        }
        self.file.reserve(TEE_BLOCK as u64)?;
        let spare = self.spares.pop().unwrap_or_else(AlignedBuf::new);
        let full = std::mem::replace(&mut self.buf, spare);
        let (at, direct, file) = (self.buf_at, self.direct.clone(), self.file.handle());
        self.writing.push_back(tokio::task::spawn_blocking(move || {
            let res = match &direct {
                Some(d) => d.write_all_at(full.bytes(), at),
                None => file.write_all_at(full.bytes(), at),
            };
            (res, full)
        }));
        self.buf_at += TEE_BLOCK as u64;
        Ok(())
    }

    /// Waits for the oldest block under way.
    async fn wait_one(&mut self) -> Result<(), StageError> {
        let Some(h) = self.writing.pop_front() else {
            return Ok(());
        };
        let (res, mut buf) = h
            .await
            .map_err(|e| StageError::Io(std::io::Error::other(format!("staging I/O task: {e}"))))?;
        buf.len = 0;
        self.spares.push(buf);
        self.file
            .settle_with(self.writing.len() as u64 * TEE_BLOCK as u64);
        res.map_err(StageError::Io)
    }

    /// Waits until every block under way is written.
    async fn drain(&mut self) -> Result<(), StageError> {
        while !self.writing.is_empty() {
            self.wait_one().await?;
        }
        Ok(())
    }

    /// The copy as a staging file, what was still buffered written out.
    pub(super) async fn finish(mut self) -> Result<StageFile, StageError> {
        self.drain().await?;
        if self.buf.len > 0 {
            let tail = Bytes::copy_from_slice(self.buf.bytes());
            self.file.write_at(self.buf_at, tail).await?;
        }
        Ok(self.file)
    }

    /// `len` bytes from `offset` of the copy (cut at its end).
    pub(super) async fn read_at(&mut self, offset: u64, len: u64) -> std::io::Result<Bytes> {
        let end = offset.saturating_add(len).min(self.len());
        if end <= offset {
            return Ok(Bytes::new());
        }
        if offset < self.buf_at {
            self.drain().await.map_err(|e| match e {
                StageError::Io(e) => e,
                other => std::io::Error::other(other.to_string()),
            })?;
        }
        let mut out = BytesMut::with_capacity((end - offset) as usize);
        if offset < self.buf_at {
            let to = end.min(self.buf_at);
            out.extend_from_slice(&self.file.read_at(offset, to - offset).await?);
        }
        if end > self.buf_at {
            let from = (offset.max(self.buf_at) - self.buf_at) as usize;
            let to = (end - self.buf_at) as usize;
            out.extend_from_slice(&self.buf.bytes()[from..to]);
        }
        Ok(out.freeze())
    }
}

impl Drop for StageFile {
    fn drop(&mut self) {
        self.area.release(self.reserved);
        if let Err(e) = std::fs::remove_file(&self.path) {
            tracing::warn!(path = %self.path.display(), error = %e, "could not remove a staging file");
        }
    }
}

/// Reads `len` bytes at `offset` of `file`, zeros past its end.
pub(super) fn read_padded(file: &File, offset: u64, len: u64) -> std::io::Result<Bytes> {
    let len = usize::try_from(len).map_err(std::io::Error::other)?;
    let mut buf = BytesMut::zeroed(len);
    let mut done = 0;
    while done < len {
        match file.read_at(&mut buf[done..], offset + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(buf.freeze())
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> std::io::Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(format!("staging I/O task: {e}"))))
}

/// A chunk of the version a staged file started from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct BaseChunk {
    pub(super) id: ChunkId,
    pub(super) offset: u64,
    pub(super) size: u64,
    /// Its bytes are in the staging file (it was written into).
    pub(super) local: bool,
}

/// Where the bytes of a staged file are: `base` chunks cover
/// `0..base_end` (each either still stored or copied into the staging
/// file), and `base_end..size` is in the staging file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Layout {
    pub(super) base: Vec<BaseChunk>,
    base_end: u64,
    size: u64,
}

/// A part of the file at commit: a stored chunk kept by id, or a range of
/// the staging file to cut into a new chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Piece {
    Stored {
        index: usize,
        id: ChunkId,
        size: u64,
    },
    Local {
        offset: u64,
        size: u64,
    },
}

/// Part of a read: from base chunk `index` (`range` within it), or from
/// the staging file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Segment {
    Stored {
        index: usize,
        range: std::ops::Range<u64>,
    },
    Local {
        offset: u64,
        len: u64,
    },
}

impl Layout {
    /// A file whose bytes are all local (`size` of them).
    pub(super) fn local(size: u64) -> Self {
        Self {
            base: Vec::new(),
            base_end: 0,
            size,
        }
    }

    /// The version made of `chunks` (in order), nothing local.
    pub(super) fn stored(chunks: impl IntoIterator<Item = (ChunkId, u64)>) -> Self {
        let mut base = Vec::new();
        let mut offset = 0;
        for (id, size) in chunks {
            base.push(BaseChunk {
                id,
                offset,
                size,
                local: false,
            });
            offset += size;
        }
        Self {
            base,
            base_end: offset,
            size: offset,
        }
    }

    pub(super) fn size(&self) -> u64 {
        self.size
    }

    /// Stored chunks a write of `offset..end` needs copied into the staging
    /// file first: `(index, whether its old bytes must be fetched)`. A
    /// chunk the write covers whole needs no fetch. Growing the file past a
    /// stored last chunk shorter than `chunk_size` takes that chunk too, so
    /// the file stays cut at `chunk_size` rather than collecting small
    /// chunks append after append.
    pub(super) fn to_copy(&self, offset: u64, end: u64, chunk_size: u64) -> Vec<(usize, bool)> {
        let mut out = Vec::new();
        if end <= offset {
            return out;
        }
        for (i, c) in self.base.iter().enumerate() {
            let c_end = c.offset + c.size;
            if c_end <= offset {
                continue;
            }
            if c.offset >= end {
                break;
            }
            if !c.local {
                out.push((i, !(offset <= c.offset && end >= c_end)));
            }
        }
        if end > self.base_end {
            if let Some(last) = self.base.last() {
                let i = self.base.len() - 1;
                if !last.local && last.size < chunk_size && out.last().map(|x| x.0) != Some(i) {
                    out.push((i, true));
                }
            }
        }
        out
    }

    /// Base chunk `index` is now in the staging file.
    pub(super) fn mark_local(&mut self, index: usize) {
        if let Some(c) = self.base.get_mut(index) {
            c.local = true;
        }
    }

    /// The file now reaches at least `end`.
    pub(super) fn extend(&mut self, end: u64) {
        self.size = self.size.max(end);
    }

    /// The stored chunk cut by a truncation to `len`, if any: it must be
    /// copied into the staging file before [`Layout::truncate`].
    pub(super) fn cut_by(&self, len: u64) -> Option<usize> {
        self.base
            .iter()
            .position(|c| !c.local && c.offset < len && len < c.offset + c.size)
    }

    /// The file is now `len` bytes long (see [`Layout::cut_by`]).
    pub(super) fn truncate(&mut self, len: u64) {
        if len >= self.size {
            self.size = len;
            return;
        }
        if len < self.base_end {
            // Chunks from the one holding `len` on go; what is kept of
            // that one is local (copied before), so it joins the tail.
            let keep = self.base.partition_point(|c| c.offset + c.size <= len);
            self.base.truncate(keep);
            self.base_end = self.base.last().map_or(0, |c| c.offset + c.size);
        }
        self.size = len;
    }

    /// The file as chunks for a commit: stored chunks by id, and each run of
    /// local bytes cut into `chunk_size` pieces from its start.
    pub(super) fn pieces(&self, chunk_size: u64) -> Vec<Piece> {
        let chunk_size = chunk_size.max(1);
        let mut out = Vec::new();
        let mut run: Option<u64> = None;
        let cut = |out: &mut Vec<Piece>, from: u64, to: u64| {
            let mut at = from;
            while at < to {
                let size = chunk_size.min(to - at);
                out.push(Piece::Local { offset: at, size });
                at += size;
            }
        };
        for (index, c) in self.base.iter().enumerate() {
            if c.local {
                run.get_or_insert(c.offset);
                continue;
            }
            if let Some(from) = run.take() {
                cut(&mut out, from, c.offset);
            }
            out.push(Piece::Stored {
                index,
                id: c.id,
                size: c.size,
            });
        }
        let from = run.unwrap_or(self.base_end);
        cut(&mut out, from, self.size);
        out
    }

    /// Where the bytes `offset..offset+len` (cut at the end of the file)
    /// are.
    pub(super) fn segments(&self, offset: u64, len: u64) -> Vec<Segment> {
        let end = offset.saturating_add(len).min(self.size);
        let mut out: Vec<Segment> = Vec::new();
        if end <= offset {
            return out;
        }
        let local = |out: &mut Vec<Segment>, from: u64, to: u64| {
            if let Some(Segment::Local { offset, len }) = out.last_mut() {
                if *offset + *len == from {
                    *len += to - from;
                    return;
                }
            }
            out.push(Segment::Local {
                offset: from,
                len: to - from,
            });
        };
        for (index, c) in self.base.iter().enumerate() {
            let c_end = c.offset + c.size;
            if c_end <= offset {
                continue;
            }
            if c.offset >= end {
                break;
            }
            let (from, to) = (offset.max(c.offset), end.min(c_end));
            if c.local {
                local(&mut out, from, to);
            } else {
                out.push(Segment::Stored {
                    index,
                    range: from - c.offset..to - c.offset,
                });
            }
        }
        if end > self.base_end {
            local(&mut out, offset.max(self.base_end), end);
        }
        out
    }

    /// Bytes that must be local at commit time (for logs).
    pub(super) fn local_bytes(&self) -> u64 {
        let base: u64 = self.base.iter().filter(|c| c.local).map(|c| c.size).sum();
        base + (self.size - self.base_end.min(self.size))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> ChunkId {
        ChunkId::of(&[n])
    }

    /// Three stored chunks of 10, 10 and 5 bytes.
    fn three() -> Layout {
        Layout::stored([(id(0), 10), (id(1), 10), (id(2), 5)])
    }

    #[test]
    fn an_edit_in_the_middle_copies_one_chunk_and_keeps_the_others() {
        let mut l = three();
        assert_eq!(l.to_copy(12, 14, 10), vec![(1, true)]);
        l.mark_local(1);
        assert_eq!(
            l.pieces(10),
            vec![
                Piece::Stored {
                    index: 0,
                    id: id(0),
                    size: 10
                },
                Piece::Local {
                    offset: 10,
                    size: 10
                },
                Piece::Stored {
                    index: 2,
                    id: id(2),
                    size: 5
                },
            ]
        );
        assert_eq!(l.local_bytes(), 10);
        assert_eq!(
            l.segments(8, 10),
            vec![
                Segment::Stored {
                    index: 0,
                    range: 8..10
                },
                Segment::Local { offset: 10, len: 8 },
            ]
        );
    }

    #[test]
    fn a_write_covering_a_whole_chunk_needs_no_fetch() {
        let l = three();
        assert_eq!(l.to_copy(10, 20, 10), vec![(1, false)]);
        assert_eq!(
            l.to_copy(5, 25, 10),
            vec![(0, true), (1, false), (2, false)]
        );
        assert_eq!(l.to_copy(5, 5, 10), vec![]);
    }

    #[test]
    fn growing_past_a_short_last_chunk_takes_it_and_recuts() {
        let mut l = three();
        // An append at the end: the short last chunk is fetched.
        assert_eq!(l.to_copy(25, 30, 10), vec![(2, true)]);
        l.mark_local(2);
        l.extend(30);
        assert_eq!(
            &l.pieces(10)[2..],
            &[Piece::Local {
                offset: 20,
                size: 10
            }]
        );
        // A full last chunk stays as it is.
        let mut l = Layout::stored([(id(0), 10), (id(1), 10)]);
        assert_eq!(l.to_copy(20, 33, 10), vec![]);
        l.extend(33);
        assert_eq!(
            &l.pieces(10)[2..],
            &[
                Piece::Local {
                    offset: 20,
                    size: 10
                },
                Piece::Local {
                    offset: 30,
                    size: 3
                }
            ]
        );
        assert_eq!(
            l.segments(15, 100),
            vec![
                Segment::Stored {
                    index: 1,
                    range: 5..10
                },
                Segment::Local {
                    offset: 20,
                    len: 13
                }
            ]
        );
    }

    #[test]
    fn local_runs_are_recut_from_their_start() {
        let mut l = three();
        l.mark_local(0);
        l.mark_local(1);
        l.extend(40);
        // Chunks 0 and 1 and the tail are one run from 0: 0..10, 10..20, 20..25 is
        // chunk 2 (stored) in between, so the run stops there.
        assert_eq!(
            l.pieces(8),
            vec![
                Piece::Local { offset: 0, size: 8 },
                Piece::Local { offset: 8, size: 8 },
                Piece::Local {
                    offset: 16,
                    size: 4
                },
                Piece::Stored {
                    index: 2,
                    id: id(2),
                    size: 5
                },
                Piece::Local {
                    offset: 25,
                    size: 8
                },
                Piece::Local {
                    offset: 33,
                    size: 7
                },
            ]
        );
        assert_eq!(l.local_bytes(), 20 + 15);
    }

    #[test]
    fn truncation_down_keeps_whole_chunks_and_localises_the_cut_one() {
        let mut l = three();
        assert_eq!(l.cut_by(20), None, "a chunk boundary cuts nothing");
        assert_eq!(l.cut_by(15), Some(1));
        l.mark_local(1);
        l.truncate(15);
        assert_eq!(l.size(), 15);
        assert_eq!(
            l.pieces(10),
            vec![
                Piece::Stored {
                    index: 0,
                    id: id(0),
                    size: 10
                },
                Piece::Local {
                    offset: 10,
                    size: 5
                },
            ]
        );
        let mut l = three();
        l.truncate(20);
        assert_eq!(l.pieces(10).len(), 2);
        assert_eq!(l.segments(0, 100).len(), 2);
        l.truncate(0);
        assert_eq!(l.pieces(10), vec![]);
        assert_eq!(l.segments(0, 10), vec![]);
    }

    #[test]
    fn truncation_up_adds_a_local_tail_of_zeros() {
        let mut l = Layout::stored([(id(0), 10)]);
        assert_eq!(l.to_copy(10, 30, 10), vec![]);
        l.truncate(30);
        assert_eq!(l.size(), 30);
        assert_eq!(
            l.pieces(10),
            vec![
                Piece::Stored {
                    index: 0,
                    id: id(0),
                    size: 10
                },
                Piece::Local {
                    offset: 10,
                    size: 10
                },
                Piece::Local {
                    offset: 20,
                    size: 10
                },
            ]
        );
    }

    #[test]
    fn an_all_local_file_is_cut_like_a_stream() {
        let l = Layout::local(25);
        assert_eq!(
            l.pieces(10),
            vec![
                Piece::Local {
                    offset: 0,
                    size: 10
                },
                Piece::Local {
                    offset: 10,
                    size: 10
                },
                Piece::Local {
                    offset: 20,
                    size: 5
                },
            ]
        );
        assert_eq!(Layout::local(0).pieces(10), vec![]);
    }

    #[tokio::test]
    async fn staging_files_count_real_blocks_and_refuse_past_the_budget() {
        let root = tempfile::tempdir().expect("tmp");
        let area = StagingArea::open(root.path(), 1 << 20).expect("area");
        let mut f = area.create().expect("file");
        // A write far into the file takes its blocks, not its offset.
        f.write_at(100 << 20, Bytes::from(vec![7u8; 4096]))
            .await
            .expect("write");
        assert!(area.used() <= 64 << 10, "used {}", area.used());
        let got = f.read_at((100 << 20) - 2, 6).await.expect("read");
        assert_eq!(&got[..], &[0, 0, 7, 7, 7, 7]);
        // Past the end: zeros.
        assert_eq!(
            &f.read_at((101 << 20) - 2, 4).await.expect("read")[..],
            &[0; 4]
        );
        let err = f
            .write_at(0, Bytes::from(vec![1u8; 2 << 20]))
            .await
            .expect_err("over the budget");
        assert!(matches!(err, StageError::Full { .. }), "{err}");
        f.set_len(0).await.expect("truncate");
        assert_eq!(area.used(), 0);
        drop(f);
        assert_eq!(std::fs::read_dir(area.dir()).expect("dir").count(), 0);
    }

    #[tokio::test]
    async fn a_tee_keeps_every_byte_across_blocks_and_hands_over_a_staging_file() {
        let root = tempfile::tempdir().expect("tmp");
        let area = StagingArea::open(root.path(), 64 << 20).expect("area");
        let mut tee = Tee::new(area.create().expect("file"));
        // Pieces of odd sizes across several blocks.
        let data: Vec<u8> = (0..(TEE_BLOCK * 2 + 12_345))
            .map(|i| (i % 251) as u8)
            .collect();
        for piece in data.chunks(300_001) {
            tee.append(piece).await.expect("append");
        }
        assert_eq!(tee.len(), data.len() as u64);
        // Reads across the written part and the buffered tail.
        let at = TEE_BLOCK * 2 - 10;
        let got = tee.read_at(at as u64, 100).await.expect("read");
        assert_eq!(&got[..], &data[at..at + 100]);
        let f = tee.finish().await.expect("finish");
        let all = f.read_at(0, data.len() as u64).await.expect("read");
        assert!(all[..] == data[..]);
        assert!(area.used() >= data.len() as u64);
        drop(f);
        assert_eq!(area.used(), 0);

        // Over the budget: refused.
        let small = StagingArea::open(root.path(), 1 << 20).expect("area");
        let mut tee = Tee::new(small.create().expect("file"));
        let err = tee
            .append(&vec![1u8; TEE_BLOCK])
            .await
            .expect_err("a block over the budget");
        assert!(matches!(err, StageError::Full { .. }), "{err}");
    }

    #[test]
    fn a_new_area_removes_what_a_dead_mount_left_and_spares_a_live_one() {
        let root = tempfile::tempdir().expect("tmp");
        // A dead mount's directory: no lock held.
        let dead = root.path().join(format!("{INSTANCE_PREFIX}1-dead"));
        std::fs::create_dir(&dead).expect("mkdir");
        std::fs::write(dead.join("1"), b"left over").expect("write");
        std::fs::write(
            root.path().join(format!("{INSTANCE_PREFIX}1-dead.lock")),
            b"",
        )
        .expect("lock file");
        // A lock file whose directory went already.
        let orphan = root.path().join(format!("{INSTANCE_PREFIX}2-gone.lock"));
        std::fs::write(&orphan, b"").expect("orphan lock");
        let live = StagingArea::open(root.path(), 1 << 20).expect("live");
        assert!(!dead.exists());
        assert!(!orphan.exists());
        assert!(!root
            .path()
            .join(format!("{INSTANCE_PREFIX}1-dead.lock"))
            .exists());
        let f = live.create().expect("file");
        let second = StagingArea::open(root.path(), 1 << 20).expect("second");
        assert!(live.dir().exists(), "a running mount's directory stays");
        assert_eq!(std::fs::read_dir(live.dir()).expect("dir").count(), 1);
        assert_ne!(live.dir(), second.dir());
        drop(f);
    }
}
