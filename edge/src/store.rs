//! The cache: a memory tier (chunk bytes) and a disk tier (one file per
//! chunk, `chunks/<2 hex>/<id>`, written to `tmp/` first, fsynced and
//! renamed), each with its own byte capacity and an instance of the
//! configured [`Policy`], plus the fills in flight.
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
//! The disk index is rebuilt at start from the files (oldest first, so
//! they are the first victims); temp files of a crash are removed.

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use blob_common::ChunkId;
use bytes::Bytes;
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
}

/// The two tiers and the fills in flight.
pub(crate) struct Cache {
    state: Mutex<State>,
    dir: PathBuf,
    fsync: bool,
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
                        found.push((mtime, id, m.len(), path));
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
            }),
            dir: dir.to_path_buf(),
            fsync,
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

    /// Puts a verified chunk into the tiers that admit it, then retires
    /// its fill. `force` skips TinyLFU's admission test (warm-up).
    pub(crate) async fn complete(self: &Arc<Self>, id: ChunkId, bytes: Bytes, force: bool) {
        let size = bytes.len() as u64;
        let write = {
            let st = self.lock();
            !st.disk.contains(&id)
                && st.disk.capacity() > 0
                && (if force {
                    size <= st.disk.capacity()
                } else {
                    st.disk.would_admit(&id, size)
                })
        };
        let cache = self.clone();
        let res = tokio::task::spawn_blocking(move || {
            let tmp = if write {
                match cache.write_tmp(&id, &bytes) {
                    Ok(t) => Some(t),
                    Err(e) => {
                        warn!(chunk = %id.short(), error = %e, "could not write to the disk tier");
                        None
                    }
                }
            } else {
                None
            };
            cache.install(id, bytes, tmp, force);
        })
        .await;
        if let Err(e) = res {
            warn!(chunk = %id.short(), error = %e, "caching a filled chunk failed");
            self.abandon(&id);
        }
    }

    fn write_tmp(&self, id: &ChunkId, bytes: &[u8]) -> Result<PathBuf, Error> {
        let tmp = self
            .dir
            .join("tmp")
            .join(format!("{id}.{}", hex::encode(rand::random::<[u8; 4]>())));
        let mut f = std::fs::File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
        let res = f
            .write_all(bytes)
            .and_then(|()| if self.fsync { f.sync_all() } else { Ok(()) });
        if let Err(e) = res {
            let _ = std::fs::remove_file(&tmp);
            return Err(Error::io(&tmp, e));
        }
        Ok(tmp)
    }

    /// Under the lock: the new file takes its place on disk (victims
    /// unlinked first), the bytes go to memory if admitted, and the fill
    /// is retired.
    fn install(&self, id: ChunkId, bytes: Bytes, tmp: Option<PathBuf>, force: bool) {
        let size = bytes.len() as u64;
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
        self.admit_memory(&mut st, id, bytes, force);
        st.fills.remove(&id);
        self.publish(&st);
        drop(st);
        // The rename is made durable outside the lock: readers never wait
        // for a directory fsync.
        if let Some(dir) = sync_dir {
            let _ = std::fs::File::open(dir).and_then(|d| d.sync_all());
        }
    }

    fn admit_memory(&self, st: &mut State, id: ChunkId, bytes: Bytes, force: bool) {
        if st.memory.contains(&id) {
            return;
        }
        if let Some(victims) = st.memory.insert(id, bytes.len() as u64, force) {
            for (v, _) in &victims {
                st.bytes.remove(v);
            }
            self.metrics
                .evictions
                .get_or_create(&MEMORY)
                .inc_by(victims.len() as u64);
            st.bytes.insert(id, bytes);
        }
    }

    /// Offers a whole chunk read from disk to the memory tier.
    pub(crate) fn promote(&self, id: ChunkId, bytes: Bytes) {
        let mut st = self.lock();
        self.admit_memory(&mut st, id, bytes, false);
        self.publish(&st);
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

    /// Reads a chunk from the disk tier: the whole chunk (verified against
    /// its id) or only the bytes `[start, end)` (a seek and one read).
    /// `Ok(None)`: the file is gone or bad, and has been dropped from the
    /// index (the caller treats it as a miss).
    pub(crate) async fn read_disk(
        self: &Arc<Self>,
        id: ChunkId,
        range: Option<(u64, u64)>,
    ) -> Result<Option<Bytes>, Error> {
        let cache = self.clone();
        tokio::task::spawn_blocking(move || {
            let path = chunk_path(&cache.dir, &id);
            let res = (|| -> std::io::Result<Vec<u8>> {
                let mut f = std::fs::File::open(&path)?;
                match range {
                    Some((start, end)) => {
                        f.seek(SeekFrom::Start(start))?;
                        let mut buf = vec![0u8; (end - start) as usize];
                        f.read_exact(&mut buf)?;
                        Ok(buf)
                    }
                    None => {
                        let mut buf = Vec::new();
                        f.read_to_end(&mut buf)?;
                        Ok(buf)
                    }
                }
            })();
            match res {
                Ok(buf) => {
                    if range.is_none() && ChunkId::of(&buf) != id {
                        warn!(chunk = %id.short(), "disk tier file does not match its id; dropped");
                        cache.drop_disk(&id);
                        return Ok(None);
                    }
                    Ok(Some(Bytes::from(buf)))
                }
                Err(e) => {
                    if e.kind() != std::io::ErrorKind::NotFound {
                        warn!(chunk = %id.short(), error = %e, "disk tier read failed; dropped");
                    }
                    cache.drop_disk(&id);
                    Ok(None)
                }
            }
        })
        .await
        .map_err(|e| Error::TaskFailed(e.to_string()))?
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
            Cache::open(dir, PolicyKind::Lru, 0, disk, false, Metrics::new())
                .unwrap_or_else(|e| panic!("{e}")),
        )
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
        cache.complete(id, Bytes::from(a.clone()), false).await;
        drop(cache);
        let cache = open(dir.path(), 100);
        assert!(matches!(
            cache.lookup(&id, Purpose::Read, true, || Fill::new(id, None)),
            Lookup::Disk(40)
        ));
        let part = cache.read_disk(id, Some((5, 9))).await.ok().flatten();
        assert_eq!(part.as_deref(), Some(&a[5..9]));
        let whole = cache.read_disk(id, None).await.ok().flatten();
        assert_eq!(whole.as_deref(), Some(&a[..]));
        // A file that rotted is dropped on its next whole read.
        std::fs::write(chunk_path(dir.path(), &id), b"rotten").unwrap_or_else(|e| panic!("{e}"));
        assert!(cache.read_disk(id, None).await.ok().flatten().is_none());
        assert!(matches!(
            cache.lookup(&id, Purpose::Read, false, || Fill::new(id, None)),
            Lookup::NoOrigin
        ));
    }

    #[tokio::test]
    async fn a_smaller_capacity_at_restart_drops_the_oldest() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let cache = open(dir.path(), 100);
        let mut ids = Vec::new();
        for n in 0..3u8 {
            let data = vec![n; 30];
            let id = fill_one(&cache, &data);
            cache.complete(id, Bytes::from(data), false).await;
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
