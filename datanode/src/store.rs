//! The on-disk chunk store.
//!
//! Layout under the data directory:
//!
//! ```text
//! DATA/chunks/<first 2 hex>/<64 hex>   one file per chunk
//! DATA/tmp/                            chunks being received (emptied at start)
//! DATA/corrupt/                        chunks that failed verification
//! ```
//!
//! A chunk file is the chunk's bytes, then one CRC32C (u32 LE) per 64 KiB
//! block, then a 16-byte footer: `b"BLOBCHK1"` and the data length (u64 LE).
//! One file means one fsync and one rename per chunk; the block CRCs let a
//! range read verify only the blocks it touches.
//!
//! Every function here does blocking I/O: callers on the async runtime run
//! them in `spawn_blocking` ([`Store::spawn_writer`] does this for writes).

use std::collections::{HashMap, HashSet};
use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use blob_common::checksum::BlockCrcs;
use blob_common::chunkfile::{self, ReadFailure};
use blob_common::proto::namenode::ChunkRef;
use blob_common::ChunkId;
use blob_server::limits::Held;
use bytes::Bytes;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{debug, error, info, warn};

use crate::error::Error;
use crate::metrics::Metrics;

pub use blob_common::chunkfile::{file_len, FOOTER_LEN, MAGIC, READ_FRAME};

/// Frames a writer may have queued before the sender waits.
const WRITE_QUEUE: usize = 16;
/// Buffer between the hasher and the temp file.
const WRITE_BUFFER: usize = 256 * 1024;

/// Tells the kernel `[start, end)` of a chunk's data is about to be read
/// front to back (read-ahead over the range; best effort).
fn advise_sequential(file: &File, start: u64, end: u64) {
    use nix::fcntl::{posix_fadvise, PosixFadviseAdvice};
    use std::os::fd::AsRawFd;
    let (Ok(at), Ok(len)) = (i64::try_from(start), i64::try_from(end - start)) else {
        return;
    };
    for advice in [
        PosixFadviseAdvice::POSIX_FADV_SEQUENTIAL,
        PosixFadviseAdvice::POSIX_FADV_WILLNEED,
    ] {
        if let Err(e) = posix_fadvise(file.as_raw_fd(), at, len, advice) {
            tracing::debug!(error = %e, "posix_fadvise");
            return;
        }
    }
}

/// Where a chunk's file lives under `data_dir`.
pub fn chunk_path(data_dir: &Path, id: &ChunkId) -> PathBuf {
    let hex = id.to_string();
    data_dir.join("chunks").join(&hex[..2]).join(hex)
}

/// Capacity and free space of the filesystem holding a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiskSpace {
    /// Bytes the filesystem holds in all.
    pub capacity: u64,
    /// Bytes an unprivileged writer may still use.
    pub available: u64,
}

/// statvfs of the filesystem holding `path`.
pub fn disk_space(path: &Path) -> io::Result<DiskSpace> {
    let s = rustix::fs::statvfs(path)?;
    let unit = if s.f_frsize > 0 {
        s.f_frsize
    } else {
        s.f_bsize
    };
    Ok(DiskSpace {
        capacity: s.f_blocks.saturating_mul(unit),
        available: s.f_bavail.saturating_mul(unit),
    })
}

/// What a successful write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteOutcome {
    /// The chunk was already stored; the verified bytes were discarded.
    pub existed: bool,
}

#[derive(Default)]
struct Inner {
    /// Chunk → data length, for everything in `chunks/`.
    index: HashMap<ChunkId, u64>,
    /// Sum of the data lengths in `index`.
    used: u64,
    /// Stored since the last report.
    added: HashMap<ChunkId, u64>,
    /// Removed (quarantined or deleted) since the last report.
    removed: HashSet<ChunkId>,
    /// Quarantined since the last report.
    corrupt: HashSet<ChunkId>,
    /// When a chunk was last written (stored, or stored again and
    /// verified) by this process, ms since the epoch: a delete decided
    /// before that is stale and is not carried out.
    written: HashMap<ChunkId, u64>,
}

/// The chunk store of one data directory.
pub struct Store {
    dir: PathBuf,
    fsync: bool,
    metrics: Metrics,
    inner: Mutex<Inner>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("dir", &self.dir)
            .field("fsync", &self.fsync)
            .finish_non_exhaustive()
    }
}

/// Removes a temp file when dropped, unless it was renamed into place.
struct TempGuard {
    path: PathBuf,
    armed: bool,
}

impl Drop for TempGuard {
    fn drop(&mut self) {
        if self.armed {
            if let Err(e) = fs::remove_file(&self.path) {
                if e.kind() != io::ErrorKind::NotFound {
                    warn!(path = %self.path.display(), error = %e, "could not remove temp file");
                }
            }
        }
    }
}

/// An open chunk file whose footer has been checked.
#[derive(Debug)]
pub struct ChunkFile {
    id: ChunkId,
    file: File,
    len: u64,
    ino: u64,
}

impl ChunkFile {
    /// The chunk.
    pub fn id(&self) -> &ChunkId {
        &self.id
    }

    /// The chunk's data length.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// True for the empty chunk.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Reads `[start, end)` (within the data, `start < end`), verifying the
    /// CRC of every block touched.
    fn read_verified(&self, start: u64, end: u64) -> Result<Vec<u8>, ReadFailure> {
        chunkfile::read_verified(&self.file, self.len, start, end)
    }
}

impl Store {
    /// Opens (creating if needed) the store in `dir`: removes leftover temp
    /// files, then scans `chunks/` into the in-memory index. A chunk file
    /// whose footer does not check out is quarantined.
    pub fn open(dir: &Path, fsync: bool, metrics: Metrics) -> Result<Self, Error> {
        let store = Self {
            dir: dir.to_path_buf(),
            fsync,
            metrics,
            inner: Mutex::new(Inner::default()),
        };
        for sub in ["chunks", "tmp", "corrupt"] {
            let p = dir.join(sub);
            fs::create_dir_all(&p).map_err(|e| Error::io(&p, e))?;
        }
        store.clean_tmp()?;
        store.scan()?;
        Ok(store)
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn tmp_dir(&self) -> PathBuf {
        self.dir.join("tmp")
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // The index stays consistent even if a holder panicked: every
        // critical section is a few map operations.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A half-written chunk is never served or reported: drop them all.
    fn clean_tmp(&self) -> Result<(), Error> {
        let tmp = self.tmp_dir();
        let entries = fs::read_dir(&tmp).map_err(|e| Error::io(&tmp, e))?;
        let mut removed = 0u64;
        for entry in entries {
            let entry = entry.map_err(|e| Error::io(&tmp, e))?;
            let path = entry.path();
            let is_dir = entry.file_type().map(|t| t.is_dir()).unwrap_or(false);
            let res = if is_dir {
                fs::remove_dir_all(&path)
            } else {
                fs::remove_file(&path)
            };
            res.map_err(|e| Error::io(&path, e))?;
            removed += 1;
        }
        if removed > 0 {
            info!(removed, "removed leftover temp files");
        }
        Ok(())
    }

    fn scan(&self) -> Result<(), Error> {
        let chunks = self.dir.join("chunks");
        let shards = fs::read_dir(&chunks).map_err(|e| Error::io(&chunks, e))?;
        let mut found = Vec::new();
        for shard in shards {
            let shard = shard.map_err(|e| Error::io(&chunks, e))?;
            let shard_path = shard.path();
            if !shard.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                warn!(path = %shard_path.display(), "ignoring stray file in chunks/");
                continue;
            }
            let files = fs::read_dir(&shard_path).map_err(|e| Error::io(&shard_path, e))?;
            for file in files {
                let file = file.map_err(|e| Error::io(&shard_path, e))?;
                let path = file.path();
                let id = file
                    .file_name()
                    .to_str()
                    .and_then(|n| n.parse::<ChunkId>().ok())
                    .filter(|id| chunk_path(&self.dir, id) == path);
                match id {
                    Some(id) => found.push(id),
                    None => warn!(path = %path.display(), "ignoring stray file in chunks/"),
                }
            }
        }
        let mut index = HashMap::with_capacity(found.len());
        for id in found {
            match self.open_file(&id) {
                Ok(f) => {
                    index.insert(id, f.len);
                }
                Err(Error::ChunkNotFound(_)) => {}
                Err(Error::Corrupt { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        let used = index.values().sum();
        let count = index.len();
        {
            let mut inner = self.lock();
            inner.index = index;
            inner.used = used;
            self.publish(&inner);
        }
        info!(chunks = count, used, "chunk store opened");
        Ok(())
    }

    fn publish(&self, inner: &Inner) {
        self.metrics.chunks_stored.set(inner.index.len() as i64);
        self.metrics.stored_bytes.set(inner.used);
    }

    /// True if the store holds the chunk.
    pub fn contains(&self, id: &ChunkId) -> bool {
        self.lock().index.contains_key(id)
    }

    /// Data length of a stored chunk.
    pub fn size_of(&self, id: &ChunkId) -> Option<u64> {
        self.lock().index.get(id).copied()
    }

    /// Bytes of chunk data held.
    pub fn used(&self) -> u64 {
        self.lock().used
    }

    /// Number of chunks held.
    pub fn chunk_count(&self) -> u64 {
        self.lock().index.len() as u64
    }

    /// Every chunk held, for a full report. Changes queued for the
    /// incremental report are covered by it, so they are dropped.
    pub fn full_report(&self) -> Vec<ChunkRef> {
        let mut inner = self.lock();
        inner.added.clear();
        inner.removed.clear();
        inner
            .index
            .iter()
            .map(|(id, size)| ChunkRef {
                id: *id,
                size: *size,
            })
            .collect()
    }

    /// Chunks stored and removed since the last call, for an incremental
    /// report.
    pub fn take_changes(&self) -> (Vec<ChunkRef>, Vec<ChunkId>) {
        let mut inner = self.lock();
        let added = inner
            .added
            .drain()
            .map(|(id, size)| ChunkRef { id, size })
            .collect();
        let removed = inner.removed.drain().collect();
        (added, removed)
    }

    /// Puts back changes whose report could not be sent, unless something
    /// newer superseded them.
    pub fn requeue_changes(&self, added: Vec<ChunkRef>, removed: Vec<ChunkId>) {
        let mut inner = self.lock();
        for c in added {
            if inner.index.contains_key(&c.id) && !inner.removed.contains(&c.id) {
                inner.added.insert(c.id, c.size);
            }
        }
        for id in removed {
            if !inner.index.contains_key(&id) && !inner.added.contains_key(&id) {
                inner.removed.insert(id);
            }
        }
    }

    /// Opens a chunk for reading, checking its footer. A chunk whose footer
    /// does not check out is quarantined.
    pub fn open_chunk(&self, id: &ChunkId) -> Result<ChunkFile, Error> {
        self.open_file(id)
    }

    fn open_file(&self, id: &ChunkId) -> Result<ChunkFile, Error> {
        let path = chunk_path(&self.dir, id);
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                self.forget(id);
                return Err(Error::ChunkNotFound(*id));
            }
            Err(e) => return Err(Error::io(&path, e)),
        };
        let meta = file.metadata().map_err(|e| Error::io(&path, e))?;
        let ino = meta.ino();
        match chunkfile::read_footer(&file, meta.len()) {
            Ok(len) => Ok(ChunkFile {
                id: *id,
                file,
                len,
                ino,
            }),
            Err(ReadFailure::Io(e)) => Err(Error::io(&path, e)),
            Err(ReadFailure::Corrupt(reason)) => {
                self.quarantine(id, Some(ino), &reason);
                Err(Error::Corrupt { chunk: *id, reason })
            }
        }
    }

    /// Reads `[start, end)` of a chunk, verifying only the blocks touched.
    /// A CRC mismatch quarantines the chunk and fails with [`Error::Corrupt`].
    pub fn read_range(&self, id: &ChunkId, start: u64, end: u64) -> Result<Vec<u8>, Error> {
        let f = self.open_chunk(id)?;
        let end = end.min(f.len);
        if start >= end {
            return Ok(Vec::new());
        }
        self.read_checked(&f, start, end)
    }

    fn read_checked(&self, f: &ChunkFile, start: u64, end: u64) -> Result<Vec<u8>, Error> {
        match f.read_verified(start, end) {
            Ok(v) => Ok(v),
            Err(ReadFailure::Io(e)) => Err(Error::io(chunk_path(&self.dir, &f.id), e)),
            Err(ReadFailure::Corrupt(reason)) => {
                self.quarantine(&f.id, Some(f.ino), &reason);
                Err(Error::Corrupt {
                    chunk: f.id,
                    reason,
                })
            }
        }
    }

    /// Streams `[start, end)` of an open chunk in frames of about
    /// [`READ_FRAME`] bytes, each verified before it is handed to `each`.
    /// `each` returns false to stop early (the reader went away). A corrupt
    /// block quarantines the chunk and ends the stream with the error.
    pub fn read_frames(
        &self,
        f: &ChunkFile,
        start: u64,
        end: u64,
        mut each: impl FnMut(Bytes) -> bool,
    ) -> Result<(), Error> {
        let end = end.min(f.len);
        if end > start + READ_FRAME as u64 {
            // Read-ahead for the whole range at once, so a chunk that is not
            // in the page cache comes off the disk while earlier frames are
            // being sent.
            advise_sequential(&f.file, start, end);
        }
        let mut pos = start;
        while pos < end {
            let frame_end = chunkfile::frame_end(pos, end);
            let data = self.read_checked(f, pos, frame_end)?;
            if !each(Bytes::from(data)) {
                return Ok(());
            }
            pos = frame_end;
        }
        Ok(())
    }

    /// Moves a chunk that failed verification to `corrupt/`, so it is no
    /// longer served or reported. `ino`, when known, makes sure the file
    /// moved is the one that was found bad, not a good copy stored since.
    pub fn quarantine(&self, id: &ChunkId, ino: Option<u64>, reason: &str) {
        let path = chunk_path(&self.dir, id);
        if let Some(ino) = ino {
            match fs::metadata(&path) {
                Ok(m) if m.ino() == ino => {}
                // Already moved by another reader, or replaced by a good copy.
                _ => return,
            }
        }
        let dest = self
            .dir
            .join("corrupt")
            .join(format!("{id}.{}", blob_common::now_ms()));
        match fs::rename(&path, &dest) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return,
            Err(e) => {
                warn!(chunk = %id.short(), error = %e, "could not move corrupt chunk, deleting it");
                if let Err(e) = fs::remove_file(&path) {
                    warn!(chunk = %id.short(), error = %e, "could not delete corrupt chunk");
                }
            }
        }
        self.metrics.corrupt_chunks.inc();
        error!(chunk = %id.short(), reason, dest = %dest.display(), "corrupt chunk quarantined");
        let mut inner = self.lock();
        if let Some(size) = inner.index.remove(id) {
            inner.used -= size;
        }
        inner.added.remove(id);
        inner.removed.insert(*id);
        inner.corrupt.insert(*id);
        self.publish(&inner);
    }

    /// Chunks quarantined since the last call, for the report.
    pub fn take_corrupt(&self) -> Vec<ChunkId> {
        self.lock().corrupt.drain().collect()
    }

    /// Puts back corrupt chunks whose report could not be sent.
    pub fn requeue_corrupt(&self, ids: Vec<ChunkId>) {
        self.lock().corrupt.extend(ids);
    }

    /// Deletes chunks the namenode no longer wants here (garbage, excess or
    /// orphan replicas). A chunk written at or after `issued_ms` is kept: an
    /// upload stored it again after the namenode decided. Returns how many
    /// were deleted.
    pub fn delete_chunks(&self, ids: &[ChunkId], issued_ms: u64) -> usize {
        let mut deleted = 0;
        for id in ids {
            // One lock from the check to the removal: a concurrent PUT of the
            // same chunk either marked it written before (kept) or finds it
            // gone and stores it anew (see `write_chunk`).
            let mut inner = self.lock();
            let Some(&size) = inner.index.get(id) else {
                continue;
            };
            if inner
                .written
                .get(id)
                .is_some_and(|t| *t + 1000 >= issued_ms)
            {
                // Reported again as received: the namenode, which may
                // have dropped this replica when it decided, learns it
                // is still here and decides anew (a later delete then
                // goes through, or the replica is kept if needed).
                debug!(chunk = %id.short(), "kept a chunk written after its delete was decided");
                inner.added.insert(*id, size);
                continue;
            }
            let path = chunk_path(&self.dir, id);
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => {
                    warn!(chunk = %id.short(), error = %e, "could not delete chunk");
                    continue;
                }
            }
            if let Some(size) = inner.index.remove(id) {
                inner.used -= size;
            }
            inner.added.remove(id);
            inner.written.remove(id);
            inner.removed.insert(*id);
            self.publish(&inner);
            deleted += 1;
        }
        if deleted > 0 {
            info!(deleted, asked = ids.len(), "deleted chunks");
        }
        deleted
    }

    /// Every chunk id held (a snapshot, for the scrubber).
    pub fn ids(&self) -> Vec<ChunkId> {
        self.lock().index.keys().copied().collect()
    }

    /// Drops a chunk whose file vanished from the index.
    fn forget(&self, id: &ChunkId) {
        let mut inner = self.lock();
        if let Some(size) = inner.index.remove(id) {
            inner.used -= size;
            inner.added.remove(id);
            inner.removed.insert(*id);
            self.publish(&inner);
            warn!(chunk = %id.short(), "chunk file vanished from disk");
        }
    }

    /// The one durable write: receives the chunk's bytes from `frames` into a
    /// temp file while hashing them (SHA-256 and block CRCs), checks the
    /// length against `size` and the hash against `id`, appends the CRCs and
    /// footer, fsyncs the file, renames it into place and fsyncs the
    /// directory. Any failure removes the temp file: nothing is stored.
    /// If the chunk is already stored, the bytes are still verified, then
    /// discarded.
    pub fn write_chunk(
        &self,
        id: &ChunkId,
        size: u64,
        frames: impl IntoIterator<Item = Bytes>,
    ) -> Result<WriteOutcome, Error> {
        let tmp = self
            .tmp_dir()
            .join(format!("{id}.{}", hex::encode(rand::random::<[u8; 8]>())));
        let file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(|e| Error::io(&tmp, e))?;
        let mut guard = TempGuard {
            path: tmp.clone(),
            armed: true,
        };
        let mut out = BufWriter::with_capacity(WRITE_BUFFER, file);
        let mut sha = Sha256::new();
        let mut crcs = BlockCrcs::default();
        let mut received = 0u64;
        for frame in frames {
            received += frame.len() as u64;
            if received > size {
                return Err(Error::IncompleteBody {
                    chunk: *id,
                    expected: size,
                    received,
                });
            }
            sha.update(&frame);
            crcs.update(&frame);
            out.write_all(&frame).map_err(|e| Error::io(&tmp, e))?;
        }
        if received != size {
            return Err(Error::IncompleteBody {
                chunk: *id,
                expected: size,
                received,
            });
        }
        let actual = ChunkId::from_hasher(sha);
        if actual != *id {
            return Err(Error::DigestMismatch { chunk: *id, actual });
        }
        let trailer = chunkfile::trailer(&crcs.finish(), size);
        out.write_all(&trailer).map_err(|e| Error::io(&tmp, e))?;
        let file = out
            .into_inner()
            .map_err(|e| Error::io(&tmp, e.into_error()))?;
        if self.fsync {
            file.sync_all().map_err(|e| Error::io(&tmp, e))?;
        }
        drop(file);

        let dest = chunk_path(&self.dir, id);
        {
            // Checked and marked as written under the lock that deletes hold
            // while they remove files: either a delete decided before now
            // keeps this chunk, or it is gone and is stored anew below. A
            // receipt is never issued for a chunk being deleted.
            let mut inner = self.lock();
            if inner.index.contains_key(id) && dest.exists() {
                debug!(chunk = %id.short(), "chunk already stored; verified bytes discarded");
                self.note_stored_locked(&mut inner, id, size);
                return Ok(WriteOutcome { existed: true });
            }
        }
        let parent = dest.parent().unwrap_or(&self.dir).to_path_buf();
        if !parent.exists() {
            fs::create_dir_all(&parent).map_err(|e| Error::io(&parent, e))?;
            if self.fsync {
                let chunks = self.dir.join("chunks");
                sync_dir(&chunks)?;
            }
        }
        fs::rename(&tmp, &dest).map_err(|e| Error::io(&dest, e))?;
        guard.armed = false;
        if self.fsync {
            sync_dir(&parent)?;
        }
        self.note_stored(id, size, true);
        Ok(WriteOutcome { existed: false })
    }

    fn note_stored(&self, id: &ChunkId, size: u64, new: bool) {
        let mut inner = self.lock();
        self.note_stored_locked(&mut inner, id, size);
        drop(inner);
        if new {
            debug!(chunk = %id.short(), size, "chunk stored");
        }
    }

    fn note_stored_locked(&self, inner: &mut Inner, id: &ChunkId, size: u64) {
        if inner.index.insert(*id, size).is_none() {
            inner.used += size;
        }
        inner.removed.remove(id);
        inner.added.insert(*id, size);
        inner.written.insert(*id, blob_common::now_ms());
        self.publish(inner);
    }

    /// Starts a [`Store::write_chunk`] on a blocking thread, fed through a
    /// bounded channel, so hashing and disk writes stay off the runtime and
    /// the chunk is never fully buffered.
    pub fn spawn_writer(self: &Arc<Self>, id: ChunkId, size: u64) -> ChunkWriter {
        let (tx, mut rx) = mpsc::channel::<(Bytes, Arc<Held>)>(WRITE_QUEUE);
        let store = Arc::clone(self);
        let span = tracing::Span::current();
        let task = tokio::task::spawn_blocking(move || {
            let _enter = span.enter();
            // A frame leaves the budget as the writer takes it.
            let frames = std::iter::from_fn(move || rx.blocking_recv().map(|(frame, _held)| frame));
            store.write_chunk(&id, size, frames)
        });
        ChunkWriter { tx, task }
    }
}

/// The async end of a chunk write running on a blocking thread.
#[derive(Debug)]
pub struct ChunkWriter {
    tx: mpsc::Sender<(Bytes, Arc<Held>)>,
    task: JoinHandle<Result<WriteOutcome, Error>>,
}

impl ChunkWriter {
    /// Queues the next frame, with its place in the node's budget of bytes
    /// in flight (given back once the writer took the frame). False if the
    /// writer already stopped (its error comes from
    /// [`ChunkWriter::finish`]).
    pub async fn send(&self, frame: Bytes, held: Arc<Held>) -> bool {
        self.tx.send((frame, held)).await.is_ok()
    }

    /// Ends the body and waits until the chunk is durable (or refused).
    pub async fn finish(self) -> Result<WriteOutcome, Error> {
        drop(self.tx);
        self.task
            .await
            .map_err(|e| Error::TaskFailed(e.to_string()))?
    }
}

fn sync_dir(dir: &Path) -> Result<(), Error> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(dir, e))
}

#[cfg(test)]
mod tests;
