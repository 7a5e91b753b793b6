//! The cache: a memory tier (chunk bytes) and a disk tier (one file per
//! chunk, `chunks/<2 hex>/<id>`, written to `tmp/` first, fsynced and
//! renamed), each with its own byte capacity and an instance of the
//! configured [`Policy`], plus the fills in flight.
//!
//! A disk-tier file has the datanode's format ([`blob_common::chunkfile`]):
//! the bytes, a CRC32C per 64 KiB block, a footer with the length. A disk
//! hit streams frame by frame, each frame checked against its block CRCs
//! before it is sent (a range reads and checks only the blocks it
//! touches); a whole chunk is also checked against its id before its last
//! frame is sent. A file that fails is dropped: if nothing was sent yet the
//! request becomes a miss and is filled from an origin, otherwise its body
//! is aborted. So no request is ever served bytes that rotted on disk.
//!
//! One mutex guards both tiers' indexes and the fill map, so "not cached,
//! not in flight → start a fill" and "fill done → cached, no longer in
//! flight" are each atomic: a chunk is never fetched twice because a
//! request slipped between the two. The lock is never held across an
//! await; the only I/O under it is renaming a new file into place and
//! unlinking evicted ones (metadata operations: no data, no fsync).
//!
//! Each tier's policy sees every request (a hit moves the chunk in its
//! order, TinyLFU counts every request). A verified fill is offered to
//! both tiers; a disk hit of a whole chunk is offered to the memory tier.
//! The memory tier takes a fill at once; the disk tier's write (CRCs, data,
//! fsync, rename) runs on a blocking thread beside the readers, who never
//! wait for it. Until it is in place the chunk is served from the bytes
//! being written, as a disk hit. When more than the configured backlog is
//! queued, a fill skips the disk tier instead of the backlog growing: the
//! disk cannot keep up, and readers come first.
//! The disk index is rebuilt at start from the files (oldest first, so
//! they are the first victims); temp files of a crash are removed.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use blob_common::checksum::{block_crc, BLOCK_SIZE};
use blob_common::chunkfile::{self, ReadFailure};
use blob_common::ChunkId;
use blob_server::limits::Held;
use bytes::{Bytes, BytesMut};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tracing::{info, warn};

use crate::error::Error;
use crate::fill::Fill;
use crate::metrics::{Metrics, DISK, MEMORY};
use crate::policy::{Policy, PolicyKind};

/// What a request found.
pub(crate) enum Lookup {
    /// In the memory tier.
    Memory(Bytes),
    /// In the disk tier (its size).
    Disk(u64),
    /// Admitted to the disk tier, its write still under way (the bytes).
    Writing(Bytes),
    /// Being filled by an earlier request.
    Joined(Arc<Fill>),
    /// Nowhere: this request started the fill, and must spawn its task.
    Started(Arc<Fill>),
    /// Nowhere, and there is no origin to fill from.
    NoOrigin,
}

/// Who asks: a reader (counts for the policies) or a warm-up (does not).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Purpose {
    Read,
    Warm,
}

struct State {
    memory: Policy,
    bytes: HashMap<ChunkId, Bytes>,
    disk: Policy,
    fills: HashMap<ChunkId, Arc<Fill>>,
    /// Chunks being read whole from disk to be offered to the memory tier
    /// (one read per chunk gathers its bytes; others just stream).
    promoting: HashSet<ChunkId>,
    /// Verified chunks the disk tier admitted, on their way to disk.
    writing: HashMap<ChunkId, Bytes>,
    /// Bytes in `writing`.
    writing_bytes: u64,
}

/// Disk-tier writes under way at once.
const DISK_WRITERS: usize = 2;
/// Buffers of evicted chunks kept for the next fills.
const SPARE_BUFFERS: usize = 4;

/// Frames a disk read keeps ahead of its response.
const READ_AHEAD: usize = 2;
/// Most bytes a disk read holds in memory when it does not gather the
/// chunk for the memory tier: frames read ahead, being read and being
/// sent.
pub(crate) const DISK_WINDOW: u64 = (READ_AHEAD as u64 + 2) * chunkfile::READ_FRAME as u64;

/// A disk hit on its way: the first frame (read and verified before
/// answering) and the rest, whose failure aborts the body.
pub(crate) struct DiskRead {
    pub(crate) first: Bytes,
    pub(crate) rest: mpsc::Receiver<Result<Bytes, std::io::Error>>,
    /// The read's place in the budget: keep it until the body is done.
    pub(crate) held: Arc<Held>,
}

/// The two tiers and the fills in flight.
pub(crate) struct Cache {
    state: Mutex<State>,
    dir: PathBuf,
    fsync: bool,
    /// Most bytes queued for the disk tier ([`crate::Config::disk_write_backlog`]).
    backlog: u64,
    /// Disk-tier writes queued or under way (waited for by warm-ups and
    /// at shutdown).
    writes: tokio::sync::watch::Sender<usize>,
    /// Disk-tier writes under way at once ([`DISK_WRITERS`]); the rest
    /// wait their turn in the queue.
    writers: Arc<tokio::sync::Semaphore>,
    /// Evicted chunks' buffers, for the next fills.
    spare: Mutex<Vec<BytesMut>>,
    metrics: Metrics,
}

fn chunk_path(dir: &Path, id: &ChunkId) -> PathBuf {
    let hex = id.to_string();
    dir.join("chunks").join(&hex[..2]).join(hex)
}

impl Cache {
    /// Opens the disk tier under `dir` (rebuilding its index) and an empty
    /// memory tier.
    pub(crate) fn open(
        dir: &Path,
        policy: PolicyKind,
        memory_capacity: u64,
        disk_capacity: u64,
        fsync: bool,
        backlog: u64,
        metrics: Metrics,
    ) -> Result<Self, Error> {
        let tmp = dir.join("tmp");
        let chunks = dir.join("chunks");
        for d in [&tmp, &chunks] {
            std::fs::create_dir_all(d).map_err(|e| Error::io(d, e))?;
        }
        for entry in std::fs::read_dir(&tmp).map_err(|e| Error::io(&tmp, e))? {
            let entry = entry.map_err(|e| Error::io(&tmp, e))?;
            let _ = std::fs::remove_file(entry.path());
        }
        let mut found: Vec<(std::time::SystemTime, ChunkId, u64, PathBuf)> = Vec::new();
        for sub in std::fs::read_dir(&chunks).map_err(|e| Error::io(&chunks, e))? {
            let sub = sub.map_err(|e| Error::io(&chunks, e))?.path();
            let Ok(files) = std::fs::read_dir(&sub) else {
                continue;
            };
            for f in files.flatten() {
                let path = f.path();
                let parsed = path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .and_then(|n| n.parse::<ChunkId>().ok());
                match (parsed, f.metadata()) {
                    (Some(id), Ok(m)) if m.is_file() => {
                        let mtime = m.modified().unwrap_or(std::time::UNIX_EPOCH);
                        // The data length is in the footer; a file without a
                        // valid one (torn, or of an older format) is dropped.
                        let len = std::fs::File::open(&path)
                            .map_err(ReadFailure::from)
                            .and_then(|file| chunkfile::read_footer(&file, m.len()));
                        match len {
                            Ok(len) => found.push((mtime, id, len, path)),
                            Err(e) => {
                                warn!(path = %path.display(), error = %e, "dropping a disk-tier file that does not check out");
                                let _ = std::fs::remove_file(&path);
                            }
                        }
                    }
                    _ => warn!(path = %path.display(), "ignoring a stray file in the disk tier"),
                }
            }
        }
        found.sort_by_key(|(t, ..)| *t);
        let mut disk = Policy::new(policy, disk_capacity);
        let mut dropped = 0;
        for (_, id, size, path) in found {
            // Oldest first: under a smaller capacity than last time the
            // oldest files go.
            match disk.insert(id, size, true) {
                Some(victims) => {
                    for (v, _) in victims {
                        let _ = std::fs::remove_file(chunk_path(dir, &v));
                        dropped += 1;
                    }
                }
                None => {
                    let _ = std::fs::remove_file(path);
                    dropped += 1;
                }
            }
        }
        info!(
            chunks = disk.len(),
            bytes = disk.used(),
            dropped,
            "disk tier loaded"
        );
        let cache = Self {
            state: Mutex::new(State {
                memory: Policy::new(policy, memory_capacity),
                bytes: HashMap::new(),
                disk,
                fills: HashMap::new(),
                promoting: HashSet::new(),
                writing: HashMap::new(),
                writing_bytes: 0,
            }),
            dir: dir.to_path_buf(),
            fsync,
            backlog,
            writes: tokio::sync::watch::channel(0).0,
            writers: Arc::new(tokio::sync::Semaphore::new(DISK_WRITERS)),
            spare: Mutex::new(Vec::new()),
            metrics,
        };
        metrics_capacity(&cache.metrics, memory_capacity, disk_capacity);
        cache.publish(&cache.lock());
        Ok(cache)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every change under the lock is complete before it is released,
        // so a poisoned lock is safe to reuse.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn publish(&self, st: &State) {
        let m = &self.metrics;
        m.cached_bytes
            .get_or_create(&MEMORY)
            .set(st.memory.used() as i64);
        m.cached_chunks
            .get_or_create(&MEMORY)
            .set(st.memory.len() as i64);
        m.cached_bytes
            .get_or_create(&DISK)
            .set(st.disk.used() as i64);
        m.cached_chunks
            .get_or_create(&DISK)
            .set(st.disk.len() as i64);
    }

    /// Looks `id` up in memory, then on disk, then among the fills in
    /// flight; when it is nowhere and `can_fill`, registers a new fill made
    /// by `new_fill`.
    pub(crate) fn lookup(
        &self,
        id: &ChunkId,
        purpose: Purpose,
        can_fill: bool,
        new_fill: impl FnOnce() -> Arc<Fill>,
    ) -> Lookup {
        let mut st = self.lock();
        let (in_memory, on_disk) = match purpose {
            Purpose::Read => (st.memory.access(id), st.disk.access(id)),
            Purpose::Warm => (st.memory.contains(id), st.disk.contains(id)),
        };
        if in_memory {
            if let Some(b) = st.bytes.get(id) {
                return Lookup::Memory(b.clone());
            }
        }
        if on_disk {
            if let Some(size) = st.disk.size_of(id) {
                return Lookup::Disk(size);
            }
        }
        if let Some(b) = st.writing.get(id) {
            return Lookup::Writing(b.clone());
        }
        if let Some(f) = st.fills.get(id) {
            return Lookup::Joined(f.clone());
        }
        if !can_fill {
            return Lookup::NoOrigin;
        }
        let fill = new_fill();
        st.fills.insert(*id, fill.clone());
        Lookup::Started(fill)
    }

    /// Puts a verified chunk into the tiers that admit it and retires its
    /// fill, without waiting for the disk: the memory tier takes it now,
    /// the disk tier's write is queued on a blocking thread (or skipped when
    /// the backlog is full). `force` skips TinyLFU's admission test
    /// (warm-up). Returns once the chunk is servable from the cache.
    pub(crate) fn complete(self: &Arc<Self>, id: ChunkId, bytes: Bytes, force: bool) {
        let size = bytes.len() as u64;
        let mut st = self.lock();
        let to_disk = !st.disk.contains(&id)
            && !st.writing.contains_key(&id)
            && st.disk.capacity() > 0
            && (if force {
                size <= st.disk.capacity()
            } else {
                st.disk.would_admit(&id, size)
            });
        // One chunk is always let through, however large.
        let queued = to_disk && (st.writing.is_empty() || st.writing_bytes + size <= self.backlog);
        if to_disk && !queued {
            self.metrics.disk_skipped.inc();
        }
        if queued {
            st.writing.insert(id, bytes.clone());
            st.writing_bytes += size;
            self.metrics.disk_backlog.set(st.writing_bytes as i64);
            self.writes.send_replace(st.writing.len());
        }
        self.admit_memory(&mut st, id, bytes.clone(), force);
        st.fills.remove(&id);
        self.publish(&st);
        drop(st);
        if queued {
            let cache = self.clone();
            tokio::spawn(async move {
                // Never closed: the semaphore lives as long as the cache.
                let _turn = cache.writers.clone().acquire_owned().await.ok();
                let writer = cache.clone();
                let written = tokio::task::spawn_blocking(move || {
                    let tmp = match writer.write_tmp(&id, &bytes) {
                        Ok(t) => Some(t),
                        Err(e) => {
                            warn!(chunk = %id.short(), error = %e, "could not write to the disk tier");
                            None
                        }
                    };
                    writer.install(id, size, tmp, force);
                })
                .await;
                if let Err(e) = written {
                    warn!(chunk = %id.short(), error = %e, "a disk-tier write failed");
                    cache.install(id, size, None, force);
                }
            });
        }
    }

    /// Waits (up to `limit`) until no disk-tier write is queued: a
    /// warm-up answers once its chunks are on disk, and the edge waits
    /// before it exits, so what it served is on disk at the next start.
    /// True if none is left.
    pub(crate) async fn settle(&self, limit: std::time::Duration) -> bool {
        let mut rx = self.writes.subscribe();
        let done = tokio::time::timeout(limit, rx.wait_for(|n| *n == 0)).await;
        matches!(done, Ok(Ok(_)))
    }

    fn write_tmp(&self, id: &ChunkId, bytes: &[u8]) -> Result<PathBuf, Error> {
        let tmp = self
            .dir
            .join("tmp")
            .join(format!("{id}.{}", hex::encode(rand::random::<[u8; 4]>())));
        let f = std::fs::File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
        let crcs: Vec<u32> = bytes.chunks(BLOCK_SIZE).map(block_crc).collect();
        let trailer = chunkfile::trailer(&crcs, bytes.len() as u64);
        // Past the page cache: filling it with a copy of every fill cost
        // the edge more CPU than hashing the bytes (perf on a cold 1 GiB
        // read), and the memory tier is what keeps hot chunks in RAM.
        let res = blob_common::aligned::write_direct(&f, &tmp, &[bytes, &trailer]).and_then(|()| {
            if self.fsync {
                f.sync_all()
            } else {
                Ok(())
            }
        });
        if let Err(e) = res {
            let _ = std::fs::remove_file(&tmp);
            return Err(Error::io(&tmp, e));
        }
        Ok(tmp)
    }

    /// Under the lock: a written file takes its place in the disk tier
    /// (victims unlinked first) and leaves the write queue; `tmp` is `None`
    /// when the write failed.
    fn install(&self, id: ChunkId, size: u64, tmp: Option<PathBuf>, force: bool) {
        let mut sync_dir = None;
        let mut st = self.lock();
        if let Some(tmp) = tmp {
            match st.disk.insert(id, size, force) {
                Some(victims) => {
                    for (v, _) in &victims {
                        let _ = std::fs::remove_file(chunk_path(&self.dir, v));
                    }
                    self.metrics
                        .evictions
                        .get_or_create(&DISK)
                        .inc_by(victims.len() as u64);
                    let path = chunk_path(&self.dir, &id);
                    let placed = path
                        .parent()
                        .map_or(Ok(()), std::fs::create_dir_all)
                        .and_then(|()| std::fs::rename(&tmp, &path));
                    if let Err(e) = placed {
                        warn!(chunk = %id.short(), error = %e, "could not place a file in the disk tier");
                        st.disk.remove(&id);
                        let _ = std::fs::remove_file(&tmp);
                    } else if self.fsync {
                        sync_dir = path.parent().map(Path::to_path_buf);
                    }
                }
                None => {
                    let _ = std::fs::remove_file(&tmp);
                }
            }
        }
        // Out of the queue once in place: a backlog of 0 means every file
        // queued so far is where readers look for it.
        if st.writing.remove(&id).is_some() {
            st.writing_bytes = st.writing_bytes.saturating_sub(size);
            self.metrics.disk_backlog.set(st.writing_bytes as i64);
        }
        self.publish(&st);
        let left = st.writing.len();
        drop(st);
        // The rename is made durable outside the lock: readers never wait
        // for a directory fsync.
        if let Some(dir) = sync_dir {
            let _ = std::fs::File::open(dir).and_then(|d| d.sync_all());
        }
        self.writes.send_replace(left);
    }

    fn admit_memory(&self, st: &mut State, id: ChunkId, bytes: Bytes, force: bool) {
        if st.memory.contains(&id) {
            return;
        }
        if let Some(victims) = st.memory.insert(id, bytes.len() as u64, force) {
            for (v, _) in &victims {
                if let Some(b) = st.bytes.remove(v) {
                    self.recycle(b);
                }
            }
            self.metrics
                .evictions
                .get_or_create(&MEMORY)
                .inc_by(victims.len() as u64);
            st.bytes.insert(id, bytes);
        }
    }

    /// A buffer for a fill of `len` bytes: an evicted chunk's, when one of
    /// the right size was kept, else a new one. Reusing them spares the
    /// page faults and zeroing of fresh memory for every chunk filled
    /// (12% of the samples of a cold read through the edge).
    pub(crate) fn fill_buffer(&self, len: usize) -> BytesMut {
        let mut spare = self.spare.lock().unwrap_or_else(|p| p.into_inner());
        // Only about the right size: the memory tier counts a chunk's length,
        // not its buffer's.
        let fits = |b: &BytesMut| b.capacity() >= len && b.capacity() - len <= len / 8;
        match spare.iter().position(fits) {
            Some(i) => {
                let mut b = spare.swap_remove(i);
                b.clear();
                b
            }
            None => BytesMut::with_capacity(len),
        }
    }

    /// Keeps an evicted chunk's buffer for a later fill, if nothing else
    /// holds it and fewer than [`SPARE_BUFFERS`] are kept.
    fn recycle(&self, bytes: Bytes) {
        if let Ok(b) = bytes.try_into_mut() {
            let mut spare = self.spare.lock().unwrap_or_else(|p| p.into_inner());
            if spare.len() < SPARE_BUFFERS {
                spare.push(b);
            }
        }
    }

    /// Offers a whole chunk read from disk to the memory tier.
    fn promote(&self, id: ChunkId, bytes: Bytes) {
        let mut st = self.lock();
        self.admit_memory(&mut st, id, bytes, false);
        self.publish(&st);
    }

    /// Whether a whole read of `id` from disk should gather its bytes for
    /// the memory tier: the tier would admit it now and no other read is
    /// gathering it. True reserves the gathering for the caller.
    pub(crate) fn start_promotion(&self, id: &ChunkId, len: u64) -> bool {
        let mut st = self.lock();
        st.memory.capacity() > 0
            && !st.memory.contains(id)
            && st.memory.would_admit(id, len)
            && st.promoting.insert(*id)
    }

    /// Gives up a promotion [`Cache::start_promotion`] granted.
    pub(crate) fn end_promotion(&self, id: &ChunkId) {
        self.lock().promoting.remove(id);
    }

    /// Retires a fill that failed.
    pub(crate) fn abandon(&self, id: &ChunkId) {
        self.lock().fills.remove(id);
    }

    /// Drops a disk-tier file that is missing or does not verify.
    fn drop_disk(&self, id: &ChunkId) {
        let mut st = self.lock();
        if st.disk.remove(id).is_some() {
            let _ = std::fs::remove_file(chunk_path(&self.dir, id));
        }
        self.publish(&st);
    }

    /// Streams bytes `[start, end)` of a disk-tier chunk of `len` bytes (a
    /// whole chunk is also checked against its id before its last frame
    /// goes out; `promote`: gathered and offered to the memory tier once
    /// verified, as [`Cache::start_promotion`] allowed). `held` is the
    /// read's place in the edge's budget, kept until the read is done.
    /// `None`: the file is gone or failed before its first frame, and has
    /// been dropped from the index (the caller treats it as a miss).
    pub(crate) async fn read_disk(
        self: &Arc<Self>,
        id: ChunkId,
        (start, end): (u64, u64),
        len: u64,
        promote: bool,
        held: Held,
    ) -> Option<DiskRead> {
        let (tx, mut rx) = mpsc::channel(READ_AHEAD);
        let cache = self.clone();
        let held = Arc::new(held);
        let reader_held = held.clone();
        tokio::task::spawn_blocking(move || {
            let _held = reader_held;
            let _promoting = PromotionGuard {
                cache: &cache,
                id,
                on: promote,
            };
            cache.stream_file(id, (start, end), len, promote, &tx);
        });
        match rx.recv().await {
            Some(Ok(first)) => Some(DiskRead {
                first,
                rest: rx,
                held,
            }),
            Some(Err(_)) | None => None,
        }
    }

    /// The blocking half of [`Cache::read_disk`]: sends verified frames to
    /// `tx`, or an error (after dropping the file) at the first that fails.
    fn stream_file(
        &self,
        id: ChunkId,
        (start, end): (u64, u64),
        len: u64,
        promote: bool,
        tx: &mpsc::Sender<Result<Bytes, std::io::Error>>,
    ) {
        let fail = |why: String| {
            warn!(chunk = %id.short(), reason = %why, "disk tier file failed verification; dropped");
            self.metrics.disk_corrupt.inc();
            self.drop_disk(&id);
            let _ = tx.blocking_send(Err(std::io::Error::other(format!(
                "cached chunk {id} failed verification: {why}"
            ))));
        };
        let path = chunk_path(&self.dir, &id);
        let file = match std::fs::File::open(&path) {
            Ok(f) => f,
            Err(e) => {
                if e.kind() != std::io::ErrorKind::NotFound {
                    warn!(chunk = %id.short(), error = %e, "disk tier read failed; dropped");
                }
                self.drop_disk(&id);
                let _ = tx.blocking_send(Err(e));
                return;
            }
        };
        let size = match file.metadata() {
            Ok(m) => m.len(),
            Err(e) => {
                self.drop_disk(&id);
                let _ = tx.blocking_send(Err(e));
                return;
            }
        };
        match chunkfile::read_footer(&file, size) {
            Ok(n) if n == len => {}
            Ok(n) => return fail(format!("footer says {n} bytes, the index {len}")),
            Err(e) => return fail(e.to_string()),
        }
        let whole = (start, end) == (0, len);
        let mut sha = whole.then(Sha256::new);
        let mut gathered = promote.then(|| BytesMut::with_capacity(len as usize));
        let mut pos = start;
        loop {
            let frame_end = chunkfile::frame_end(pos, end);
            let frame = if pos < end {
                match chunkfile::read_verified(&file, len, pos, frame_end) {
                    Ok(v) => Bytes::from(v),
                    Err(e) => return fail(e.to_string()),
                }
            } else {
                Bytes::new()
            };
            if let Some(h) = sha.as_mut() {
                h.update(&frame);
            }
            if let Some(g) = gathered.as_mut() {
                g.extend_from_slice(&frame);
            }
            let last = frame_end >= end;
            if last {
                if let Some(h) = sha.take() {
                    let actual = ChunkId(h.finalize().into());
                    if actual != id {
                        return fail(format!("content hashes to {}", actual.short()));
                    }
                }
            }
            if tx.blocking_send(Ok(frame)).is_err() {
                return;
            }
            if last {
                break;
            }
            pos = frame_end;
        }
        if let Some(g) = gathered {
            self.promote(id, g.freeze());
        }
    }
}

/// Ends a promotion however the read ends.
struct PromotionGuard<'a> {
    cache: &'a Cache,
    id: ChunkId,
    on: bool,
}

impl Drop for PromotionGuard<'_> {
    fn drop(&mut self) {
        if self.on {
            self.cache.end_promotion(&self.id);
        }
    }
}

fn metrics_capacity(m: &Metrics, memory: u64, disk: u64) {
    m.capacity_bytes
        .get_or_create(&MEMORY)
        .set(i64::try_from(memory).unwrap_or(i64::MAX));
    m.capacity_bytes
        .get_or_create(&DISK)
        .set(i64::try_from(disk).unwrap_or(i64::MAX));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(dir: &Path, disk: u64) -> Arc<Cache> {
        Arc::new(
            Cache::open(
                dir,
                PolicyKind::Lru,
                0,
                disk,
                false,
                1 << 30,
                Metrics::new(),
            )
            .unwrap_or_else(|e| panic!("{e}")),
        )
    }

    /// Completes a fill and waits for its disk-tier write.
    async fn complete(cache: &Arc<Cache>, id: ChunkId, bytes: Bytes, force: bool) {
        cache.complete(id, bytes, force);
        assert!(cache.settle(std::time::Duration::from_secs(10)).await);
    }

    fn fill_one(cache: &Arc<Cache>, data: &[u8]) -> ChunkId {
        let id = ChunkId::of(data);
        match cache.lookup(&id, Purpose::Read, true, || Fill::new(id, None)) {
            Lookup::Started(_) => {}
            _ => panic!("expected a new fill"),
        }
        id
    }

    #[tokio::test]
    async fn the_disk_tier_survives_a_restart_and_reads_ranges() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let cache = open(dir.path(), 100);
        let a: Vec<u8> = (0..40u8).collect();
        let id = fill_one(&cache, &a);
        // A second request joins the fill.
        assert!(matches!(
            cache.lookup(&id, Purpose::Read, true, || Fill::new(id, None)),
            Lookup::Joined(_)
        ));
        complete(&cache, id, Bytes::from(a.clone()), false).await;
        drop(cache);
        let cache = open(dir.path(), 100);
        assert!(matches!(
            cache.lookup(&id, Purpose::Read, true, || Fill::new(id, None)),
            Lookup::Disk(40)
        ));
        let part = read(&cache, id, (5, 9), 40).await;
        assert_eq!(part, Some(Ok(a[5..9].to_vec())));
        let whole = read(&cache, id, (0, 40), 40).await;
        assert_eq!(whole, Some(Ok(a.clone())));
        // A file that rotted is dropped on its next read.
        std::fs::write(chunk_path(dir.path(), &id), b"rotten").unwrap_or_else(|e| panic!("{e}"));
        assert!(read(&cache, id, (0, 40), 40).await.is_none());
        assert!(matches!(
            cache.lookup(&id, Purpose::Read, false, || Fill::new(id, None)),
            Lookup::NoOrigin
        ));
    }

    #[tokio::test]
    async fn a_filled_chunk_is_served_while_its_disk_write_is_under_way() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        // No memory tier: only the disk tier takes the chunk.
        let cache = open(dir.path(), 100);
        let a: Vec<u8> = (100..140u8).collect();
        let id = fill_one(&cache, &a);
        cache.complete(id, Bytes::from(a.clone()), false);
        // Before or after the write lands, never a second fill.
        match cache.lookup(&id, Purpose::Read, true, || Fill::new(id, None)) {
            Lookup::Writing(b) => assert_eq!(&b[..], &a[..]),
            Lookup::Disk(len) => assert_eq!(len, 40),
            _ => panic!("a completed fill was neither being written nor on disk"),
        }
        assert!(cache.settle(std::time::Duration::from_secs(10)).await);
        assert!(matches!(
            cache.lookup(&id, Purpose::Read, true, || Fill::new(id, None)),
            Lookup::Disk(40)
        ));
        assert_eq!(read(&cache, id, (0, 40), 40).await, Some(Ok(a)));
    }

    #[tokio::test]
    async fn an_evicted_chunks_buffer_serves_the_next_fill() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        // Room in memory for one chunk of 60 bytes, no disk tier.
        let cache = Arc::new(
            Cache::open(
                dir.path(),
                PolicyKind::Lru,
                100,
                0,
                false,
                0,
                Metrics::new(),
            )
            .unwrap_or_else(|e| panic!("{e}")),
        );
        let a = Bytes::from(vec![1u8; 60]);
        let a_at = a.as_ptr();
        let a_id = fill_one(&cache, &a);
        cache.complete(a_id, a, false);
        let b = vec![2u8; 60];
        let b_id = fill_one(&cache, &b);
        cache.complete(b_id, Bytes::from(b), false);
        // `a` was evicted and nothing else held it: its buffer is reused,
        // but only for a fill of about its size.
        assert!(cache.fill_buffer(600).as_ptr() != a_at);
        let reused = cache.fill_buffer(58);
        assert_eq!(reused.as_ptr(), a_at);
        assert!(reused.is_empty());
    }

    #[tokio::test]
    async fn a_full_write_backlog_skips_the_disk_tier() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let cache = Arc::new(
            Cache::open(
                dir.path(),
                PolicyKind::Lru,
                0,
                1000,
                false,
                50,
                Metrics::new(),
            )
            .unwrap_or_else(|e| panic!("{e}")),
        );
        // Over the backlog on its own: let through, as nothing is queued.
        let big: Vec<u8> = vec![7u8; 60];
        let id = fill_one(&cache, &big);
        cache.complete(id, Bytes::from(big), false);
        assert!(cache.settle(std::time::Duration::from_secs(10)).await);
        assert_eq!(cache.lock().disk.size_of(&id), Some(60));
        // Queued writes that would pass the backlog are skipped, never
        // waited for: with the backlog held full, a new fill goes nowhere.
        let held: Vec<u8> = vec![8u8; 50];
        let held_id = ChunkId::of(&held);
        {
            let mut st = cache.lock();
            st.writing.insert(held_id, Bytes::from(held));
            st.writing_bytes = 50;
        }
        let small: Vec<u8> = vec![9u8; 10];
        let small_id = fill_one(&cache, &small);
        cache.complete(small_id, Bytes::from(small), false);
        assert_eq!(cache.metrics.disk_skipped.get(), 1);
        assert!(!cache.lock().writing.contains_key(&small_id));
        assert!(matches!(
            cache.lookup(&small_id, Purpose::Read, false, || Fill::new(
                small_id, None
            )),
            Lookup::NoOrigin
        ));
    }

    /// Reads `[start, end)` of a disk-tier chunk: `None` when it was
    /// refused before its first byte, else what the body delivered (an
    /// error if it was aborted).
    async fn read(
        cache: &Arc<Cache>,
        id: ChunkId,
        range: (u64, u64),
        len: u64,
    ) -> Option<Result<Vec<u8>, String>> {
        let budget = blob_server::limits::Budget::new(64 << 20, std::time::Duration::from_secs(1));
        let held = budget.admit(range.1 - range.0).await.ok()?;
        let mut r = cache.read_disk(id, range, len, false, held).await?;
        let mut out = r.first.to_vec();
        while let Some(item) = r.rest.recv().await {
            match item {
                Ok(b) => out.extend_from_slice(&b),
                Err(e) => return Some(Err(e.to_string())),
            }
        }
        Some(Ok(out))
    }

    fn flip(dir: &Path, id: &ChunkId, at: u64) {
        use std::os::unix::fs::FileExt;
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(chunk_path(dir, id))
            .unwrap_or_else(|e| panic!("{e}"));
        let mut b = [0u8; 1];
        f.read_exact_at(&mut b, at)
            .unwrap_or_else(|e| panic!("{e}"));
        f.write_all_at(&[b[0] ^ 0x40], at)
            .unwrap_or_else(|e| panic!("{e}"));
    }

    #[tokio::test]
    async fn a_rotten_block_is_never_served_as_good_bytes() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let cache = open(dir.path(), 16 << 20);
        // Three 1 MiB frames.
        let data: Vec<u8> = (0..3u32 << 20)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        let len = data.len() as u64;
        let id = fill_one(&cache, &data);
        complete(&cache, id, Bytes::from(data.clone()), false).await;
        let bs = BLOCK_SIZE as u64;
        // Rot one byte in block 20 (inside the second frame).
        flip(dir.path(), &id, 20 * bs + 7);
        // A range over good blocks is still served.
        let good = read(&cache, id, (bs, 3 * bs), len).await;
        assert_eq!(good, Some(Ok(data[BLOCK_SIZE..3 * BLOCK_SIZE].to_vec())));
        // A range that starts in the rotten block is refused before its
        // first byte (the caller fills it again from an origin) ...
        assert_eq!(read(&cache, id, (20 * bs, 21 * bs), len).await, None);
        assert!(matches!(
            cache.lookup(&id, Purpose::Read, false, || Fill::new(id, None)),
            Lookup::NoOrigin
        ));
        // ... and once cached again, a whole read that reaches the rotten
        // block after its first frame is aborted, not ended cleanly.
        let id2 = fill_one(&cache, &data);
        assert_eq!(id2, id);
        complete(&cache, id, Bytes::from(data.clone()), false).await;
        flip(dir.path(), &id, 20 * bs + 7);
        let whole = read(&cache, id, (0, len), len).await;
        assert!(
            matches!(whole, Some(Err(_))),
            "{:?}",
            whole.map(|r| r.map(|v| v.len()))
        );
        assert_eq!(cache.metrics.disk_corrupt.get(), 2);
    }

    #[tokio::test]
    async fn a_smaller_capacity_at_restart_drops_the_oldest() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let cache = open(dir.path(), 100);
        let mut ids = Vec::new();
        for n in 0..3u8 {
            let data = vec![n; 30];
            let id = fill_one(&cache, &data);
            complete(&cache, id, Bytes::from(data), false).await;
            ids.push(id);
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        drop(cache);
        let cache = open(dir.path(), 60);
        let held: Vec<bool> = ids
            .iter()
            .map(|id| {
                matches!(
                    cache.lookup(id, Purpose::Warm, false, || Fill::new(*id, None)),
                    Lookup::Disk(_)
                )
            })
            .collect();
        assert_eq!(held, [false, true, true]);
        assert!(!chunk_path(dir.path(), &ids[0]).exists());
    }
}
