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
use blob_common::limits::Held;
use blob_common::proto::namenode::ChunkRef;
use blob_common::ChunkId;
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
mod tests {
    use super::*;
    use blob_common::checksum::BLOCK_SIZE;

    fn data(len: usize, seed: u8) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 9) as u8)
            .collect()
    }

    fn frames(buf: &[u8], step: usize) -> Vec<Bytes> {
        buf.chunks(step).map(Bytes::copy_from_slice).collect()
    }

    fn open(dir: &Path) -> Store {
        Store::open(dir, true, Metrics::new()).unwrap_or_else(|e| panic!("open: {e}"))
    }

    fn tmp_is_empty(dir: &Path) -> bool {
        fs::read_dir(dir.join("tmp"))
            .map(|mut d| d.next().is_none())
            .unwrap_or(false)
    }

    #[test]
    fn write_then_read_ranges_across_block_boundaries() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let store = open(dir.path());
        let buf = data(3 * BLOCK_SIZE + 1234, 7);
        let id = ChunkId::of(&buf);
        let out = store.write_chunk(&id, buf.len() as u64, frames(&buf, 10_000));
        assert_eq!(out.ok(), Some(WriteOutcome { existed: false }));
        let path = chunk_path(dir.path(), &id);
        let on_disk = fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        assert_eq!(on_disk, buf.len() as u64 + 4 * 4 + FOOTER_LEN);
        assert!(tmp_is_empty(dir.path()));
        assert_eq!(store.chunk_count(), 1);
        assert_eq!(store.used(), buf.len() as u64);

        let bs = BLOCK_SIZE as u64;
        let len = buf.len() as u64;
        for (a, b) in [
            (0, len),
            (0, 1),
            (bs - 1, bs + 1),
            (bs - 10, 3 * bs + 5),
            (2 * bs, 3 * bs),
            (len - 1, len),
            (5, 5 + bs * 2),
        ] {
            let got = store
                .read_range(&id, a, b)
                .unwrap_or_else(|e| panic!("read {a}..{b}: {e}"));
            assert_eq!(got, &buf[a as usize..b as usize], "range {a}..{b}");
        }
        let f = store.open_chunk(&id).unwrap_or_else(|e| panic!("{e}"));
        let mut streamed = Vec::new();
        let res = store.read_frames(&f, 100, len, |b| {
            assert!(b.len() <= READ_FRAME);
            streamed.extend_from_slice(&b);
            true
        });
        assert!(res.is_ok());
        assert_eq!(streamed, &buf[100..]);
    }

    #[test]
    fn a_flipped_byte_fails_its_block_and_quarantines_the_chunk() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let metrics = Metrics::new();
        let store =
            Store::open(dir.path(), false, metrics.clone()).unwrap_or_else(|e| panic!("{e}"));
        let buf = data(4 * BLOCK_SIZE, 3);
        let id = ChunkId::of(&buf);
        assert!(store
            .write_chunk(&id, buf.len() as u64, frames(&buf, 65_000))
            .is_ok());
        let path = chunk_path(dir.path(), &id);
        let mut raw = fs::read(&path).unwrap_or_default();
        let bad = 2 * BLOCK_SIZE + 77;
        raw[bad] ^= 0x40;
        fs::write(&path, &raw).unwrap_or_else(|e| panic!("{e}"));

        // Ranges in other blocks still verify.
        let bs = BLOCK_SIZE as u64;
        let ok = store.read_range(&id, 0, 2 * bs);
        assert_eq!(ok.ok().as_deref(), Some(&buf[..2 * BLOCK_SIZE]));
        let ok = store.read_range(&id, 3 * bs, 4 * bs);
        assert_eq!(ok.ok().as_deref(), Some(&buf[3 * BLOCK_SIZE..]));

        // A range touching the bad block fails and moves the file aside.
        let err = store.read_range(&id, 2 * bs - 5, 2 * bs + 100);
        assert!(matches!(err, Err(Error::Corrupt { chunk, .. }) if chunk == id));
        assert!(!path.exists());
        assert!(!store.contains(&id));
        assert_eq!(store.chunk_count(), 0);
        assert_eq!(metrics.corrupt_chunks.get(), 1);
        let quarantined = fs::read_dir(dir.path().join("corrupt"))
            .map(|d| d.count())
            .unwrap_or(0);
        assert_eq!(quarantined, 1);
        assert!(matches!(
            store.read_range(&id, 0, 10),
            Err(Error::ChunkNotFound(_))
        ));
        let (_, removed) = store.take_changes();
        assert_eq!(removed, vec![id]);
    }

    #[test]
    fn a_truncated_file_is_quarantined_on_open() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let store = open(dir.path());
        let buf = data(1000, 1);
        let id = ChunkId::of(&buf);
        assert!(store.write_chunk(&id, 1000, frames(&buf, 100)).is_ok());
        let path = chunk_path(dir.path(), &id);
        let raw = fs::read(&path).unwrap_or_default();
        fs::write(&path, &raw[..raw.len() - 3]).unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(store.open_chunk(&id), Err(Error::Corrupt { .. })));
        assert!(!path.exists());
    }

    #[test]
    fn wrong_hash_or_length_stores_nothing() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let store = open(dir.path());
        let buf = data(BLOCK_SIZE + 5, 9);
        let id = ChunkId::of(&buf);
        let n = buf.len() as u64;

        let mut other = buf.clone();
        other[10] ^= 1;
        let res = store.write_chunk(&id, n, frames(&other, 4096));
        assert!(matches!(res, Err(Error::DigestMismatch { .. })));

        let res = store.write_chunk(&id, n, frames(&buf[..buf.len() - 1], 4096));
        assert!(matches!(
            res,
            Err(Error::IncompleteBody { received, .. }) if received == n - 1
        ));

        let mut longer = buf.clone();
        longer.push(0);
        let res = store.write_chunk(&id, n, frames(&longer, 4096));
        assert!(matches!(res, Err(Error::IncompleteBody { .. })));

        assert!(!chunk_path(dir.path(), &id).exists());
        assert!(!store.contains(&id));
        assert!(tmp_is_empty(dir.path()));
        assert_eq!(store.take_changes().0, vec![]);
    }

    #[test]
    fn rewriting_a_stored_chunk_verifies_and_keeps_one_copy() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let store = open(dir.path());
        let buf = data(5000, 2);
        let id = ChunkId::of(&buf);
        assert_eq!(
            store.write_chunk(&id, 5000, frames(&buf, 999)).ok(),
            Some(WriteOutcome { existed: false })
        );
        assert_eq!(
            store.write_chunk(&id, 5000, frames(&buf, 999)).ok(),
            Some(WriteOutcome { existed: true })
        );
        assert!(tmp_is_empty(dir.path()));
        assert_eq!(store.chunk_count(), 1);
        assert_eq!(store.used(), 5000);
    }

    #[test]
    fn empty_chunk_round_trips() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let store = open(dir.path());
        let id = ChunkId::of(b"");
        assert!(store.write_chunk(&id, 0, Vec::new()).is_ok());
        let f = store.open_chunk(&id).unwrap_or_else(|e| panic!("{e}"));
        assert!(f.is_empty());
        assert_eq!(store.read_range(&id, 0, 0).ok(), Some(Vec::new()));
    }

    #[test]
    fn restart_removes_temp_files_and_rebuilds_the_index() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let a = data(100_000, 4);
        let b = data(3, 5);
        {
            let store = open(dir.path());
            for buf in [&a, &b] {
                let id = ChunkId::of(buf);
                assert!(store
                    .write_chunk(&id, buf.len() as u64, frames(buf, 7000))
                    .is_ok());
            }
        }
        let leftover = dir.path().join("tmp").join("half-written");
        fs::write(&leftover, b"partial").unwrap_or_else(|e| panic!("{e}"));
        fs::write(dir.path().join("chunks").join("stray"), b"x").unwrap_or_else(|e| panic!("{e}"));

        let store = open(dir.path());
        assert!(!leftover.exists());
        assert_eq!(store.chunk_count(), 2);
        assert_eq!(store.used(), 100_003);
        assert_eq!(store.size_of(&ChunkId::of(&a)), Some(100_000));
        let mut report = store.full_report();
        report.sort_by_key(|c| c.size);
        assert_eq!(
            report,
            vec![
                ChunkRef {
                    id: ChunkId::of(&b),
                    size: 3
                },
                ChunkRef {
                    id: ChunkId::of(&a),
                    size: 100_000
                }
            ]
        );
        assert_eq!(
            store
                .read_range(&ChunkId::of(&a), 99_990, 100_000)
                .ok()
                .as_deref(),
            Some(&a[99_990..])
        );
    }

    #[test]
    fn changes_are_reported_once_and_requeued_on_failure() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let store = open(dir.path());
        let buf = data(10, 1);
        let id = ChunkId::of(&buf);
        assert!(store.write_chunk(&id, 10, frames(&buf, 3)).is_ok());
        let (added, removed) = store.take_changes();
        assert_eq!(added, vec![ChunkRef { id, size: 10 }]);
        assert!(removed.is_empty());
        assert_eq!(store.take_changes().0, vec![]);
        store.requeue_changes(added.clone(), removed);
        assert_eq!(store.take_changes().0, added);
        assert!(store.write_chunk(&id, 10, frames(&buf, 3)).is_ok());
        assert_eq!(store.full_report(), added);
        assert_eq!(store.take_changes().0, vec![]);
    }

    #[tokio::test]
    async fn spawned_writer_streams_frames_to_disk() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let store = Arc::new(open(dir.path()));
        let buf = data(2 * BLOCK_SIZE + 3, 8);
        let id = ChunkId::of(&buf);
        let budget = blob_common::limits::Budget::new(1 << 20, std::time::Duration::from_secs(1));
        let held = |n: usize| {
            let b = budget.clone();
            async move { Arc::new(b.admit(n as u64).await.unwrap_or_else(|e| panic!("{e}"))) }
        };
        let w = store.spawn_writer(id, buf.len() as u64);
        for f in frames(&buf, 16 * 1024) {
            let h = held(f.len()).await;
            assert!(w.send(f, h).await);
        }
        assert_eq!(w.finish().await.ok(), Some(WriteOutcome { existed: false }));
        assert!(store.contains(&id));
        // Every frame left the budget once written.
        assert_eq!(budget.in_flight_bytes(), 0);

        // A writer dropped mid-body leaves nothing behind.
        let other = data(1000, 9);
        let w = store.spawn_writer(ChunkId::of(&other), 1000);
        let h = held(500).await;
        assert!(w.send(Bytes::copy_from_slice(&other[..500]), h).await);
        assert!(matches!(
            w.finish().await,
            Err(Error::IncompleteBody { received: 500, .. })
        ));
        assert!(tmp_is_empty(dir.path()));
        assert!(!store.contains(&ChunkId::of(&other)));
        assert_eq!(budget.in_flight_bytes(), 0);
    }
}
