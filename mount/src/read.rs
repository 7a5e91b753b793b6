//! Reads through the mount: one version of a file per open handle, read
//! chunk-aligned with a read-ahead window that grows for a sequential
//! reader and collapses on a seek.
//!
//! A sequential reader gets whole chunks (verified against their SHA-256
//! ids), the next ones fetched in parallel while it consumes the current
//! one, through a mount-wide cache keyed by chunk id (content-addressed, so
//! shared by every file and handle, and never stale). A random reader (a
//! player seeking) gets exactly the bytes it asked for, checked by the
//! datanode's block CRCs, so a seek moves only the blocks it touches.

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::{Arc, Mutex};

use blob_common::ChunkId;
use bytes::{Bytes, BytesMut};
use futures::future::{BoxFuture, Shared};
use futures::FutureExt;

use blob_client::{Client, Error, FileLocations};

/// A read this close to where the last one ended still counts as
/// sequential: the kernel sends a read-ahead window of requests at once
/// (see `READAHEAD_KB` in the mount), and they arrive in any order.
const SEQ_SLACK: u64 = 17 << 20;
/// Sequential reads in a row before whole chunks are fetched.
const SEQ_STREAK: u32 = 3;

/// Whole chunks in memory, shared by every reader of the mount, with a
/// byte capacity. Concurrent requests for a chunk fetch it once.
pub(crate) struct ChunkCache {
    cache: quick_cache::sync::Cache<ChunkId, Bytes, ByteWeighter>,
}

#[derive(Clone)]
struct ByteWeighter;

impl quick_cache::Weighter<ChunkId, Bytes> for ByteWeighter {
    fn weight(&self, _key: &ChunkId, val: &Bytes) -> u64 {
        val.len().max(1) as u64
    }
}

impl ChunkCache {
    pub(crate) fn new(capacity: u64, chunk_size: u64) -> Self {
        let items = (capacity / chunk_size.max(1)).max(1) as usize;
        // One shard: a shard's capacity is its share of the total, and a
        // chunk bigger than a shard would never be kept. Lookups are one per
        // chunk-sized read, far too few to contend.
        let options = quick_cache::OptionsBuilder::new()
            .estimated_items_capacity(items)
            .weight_capacity(capacity.max(1))
            // Half for chunks seen once: a chunk is usually read once, front
            // to back, and must not be evicted by the next one's arrival.
            .hot_allocation(0.5)
            .shards(1)
            .build();
        let cache = match options {
            Ok(o) => quick_cache::sync::Cache::with_options(
                o,
                ByteWeighter,
                Default::default(),
                Default::default(),
            ),
            Err(_) => quick_cache::sync::Cache::with_weighter(items, capacity.max(1), ByteWeighter),
        };
        Self { cache }
    }

    /// Cached, or being fetched (by a read-ahead) right now.
    fn has_or_fetching(&self, id: &ChunkId) -> bool {
        matches!(
            self.cache
                .get_value_or_guard(id, Some(std::time::Duration::ZERO)),
            quick_cache::sync::GuardResult::Value(_) | quick_cache::sync::GuardResult::Timeout
        )
    }

    /// Chunk `index` of `locs`, whole and verified: from the cache, or
    /// fetched once however many readers want it.
    async fn chunk(
        &self,
        client: &Client,
        locs: &Arc<FileLocations>,
        index: usize,
    ) -> Result<Bytes, Error> {
        let Some(c) = locs.chunks.get(index) else {
            return Err(Error::Task(format!("no chunk {index}")));
        };
        let (id, offset, size) = (c.id, c.offset, c.size);
        self.cache
            .get_or_insert_async(&id, async {
                client.read_range_at(locs.clone(), offset, size).await
            })
            .await
    }
}

#[derive(Debug, Default)]
struct ReadState {
    /// Where the last read ended.
    next: u64,
    /// Sequential reads in a row.
    streak: u32,
    /// Chunks to keep fetched ahead of the reader.
    window: usize,
    /// Highest chunk index a prefetch was started for.
    prefetched: Option<usize>,
}

/// A whole chunk being fetched (or fetched), shared by whoever waits for it.
type Fetch = Shared<BoxFuture<'static, Result<Bytes, Arc<Error>>>>;

/// One open file: the version it was opened on, and how it is being read.
pub(crate) struct Reader {
    locs: Arc<FileLocations>,
    state: Mutex<ReadState>,
    /// Chunks fetched ahead of a sequential reader, held until it passes
    /// them (a read-ahead window, not a cache: the shared cache may evict
    /// a chunk before its reader gets there).
    ahead: Mutex<BTreeMap<usize, Fetch>>,
}

impl Reader {
    pub(crate) fn new(locs: Arc<FileLocations>) -> Self {
        Self {
            locs,
            state: Mutex::new(ReadState {
                window: 1,
                ..ReadState::default()
            }),
            ahead: Mutex::new(BTreeMap::new()),
        }
    }

    /// A reader of nothing: a new file not committed yet.
    pub(crate) fn empty(bucket: &str, path: &str) -> Self {
        Self::new(Arc::new(FileLocations {
            file: blob_client::FileInfo {
                bucket: bucket.to_string(),
                path: path.to_string(),
                size: 0,
                created_ms: blob_common::now_ms(),
                version: blob_common::UploadId::random(),
                replication: 0,
                chunk_size: 0,
                chunks: Vec::new(),
                meta: Default::default(),
                version_id: None,
            },
            chunks: Vec::new(),
            next: None,
            unchanged: false,
        }))
    }

    pub(crate) fn size(&self) -> u64 {
        self.locs.file.size
    }

    pub(crate) fn mtime_ms(&self) -> u64 {
        self.locs.file.created_ms
    }

    pub(crate) fn path(&self) -> String {
        self.locs.file.path.clone()
    }

    /// The fetch of whole chunk `index`: the one under way, or a new one
    /// (from the shared cache or the datanodes), held in the window.
    fn whole(&self, client: &Client, cache: &Arc<ChunkCache>, index: usize) -> Fetch {
        let mut ahead = self.ahead.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(f) = ahead.get(&index) {
            return f.clone();
        }
        let (client, cache, locs) = (client.clone(), cache.clone(), self.locs.clone());
        let f = async move {
            let t = std::time::Instant::now();
            let r = cache.chunk(&client, &locs, index).await.map_err(Arc::new);
            tracing::trace!(index, ms = t.elapsed().as_millis() as u64, "chunk fetched");
            r
        }
        .boxed()
        .shared();
        ahead.insert(index, f.clone());
        f
    }

    fn fetching(&self, index: usize) -> bool {
        self.ahead
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(&index)
    }

    /// The reader got to byte `next`: forget the chunks that end well
    /// behind it (requests still in flight may lag by the slack), and keep
    /// the window at most `max` chunks ahead.
    fn advance(&self, next: u64, max: usize) {
        let behind = next.saturating_sub(SEQ_SLACK);
        let keep_from = self
            .locs
            .chunks
            .partition_point(|c| c.offset + c.size <= behind);
        let mut ahead = self.ahead.lock().unwrap_or_else(|p| p.into_inner());
        *ahead = ahead.split_off(&keep_from);
        // The window ahead plus the chunks within the slack behind.
        while ahead.len() > 2 * max + 4 {
            ahead.pop_last();
        }
    }

    /// The part of whole chunk `index` that the file range `offset..end`
    /// covers.
    fn part(&self, index: usize, chunk: &Bytes, offset: u64, end: u64) -> Bytes {
        let c = &self.locs.chunks[index];
        let from = offset.max(c.offset) - c.offset;
        let to = end.min(c.offset + c.size) - c.offset;
        chunk.slice(from as usize..to as usize)
    }

    /// Notes a read of `offset..end` (touching chunks `touched`) in the
    /// reader's state: is it sequential, should it get whole chunks, and
    /// which chunks to fetch ahead now.
    fn plan(
        &self,
        cache: &ChunkCache,
        max_window: usize,
        offset: u64,
        end: u64,
        touched: &Range<usize>,
    ) -> Plan {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let sequential = offset.abs_diff(st.next) <= SEQ_SLACK;
        if sequential {
            st.streak = st.streak.saturating_add(1);
            st.next = st.next.max(end);
        } else {
            st.streak = 0;
            st.window = 1;
            st.prefetched = None;
            st.next = end;
        }
        let ready = touched
            .clone()
            .all(|i| self.fetching(i) || cache.has_or_fetching(&self.locs.chunks[i].id));
        let whole = st.streak >= SEQ_STREAK || ready;
        let mut prefetch = Vec::new();
        if st.streak >= SEQ_STREAK {
            let last = touched.end.saturating_sub(1);
            let target = (last + st.window).min(self.locs.chunks.len().saturating_sub(1));
            let from = st.prefetched.map_or(last + 1, |p| p.max(last) + 1);
            prefetch.extend(from..=target);
            if target >= from {
                st.prefetched = Some(target);
            }
            st.window = (st.window * 2).min(max_window.max(1));
        }
        Plan {
            whole,
            prefetch,
            next: st.next,
        }
    }

    /// Moves the window to `plan.next` and starts the fetches ahead on `rt`
    /// (shared futures run only when polled: each gets a task).
    fn start_ahead(
        &self,
        rt: &tokio::runtime::Handle,
        client: &Client,
        cache: &Arc<ChunkCache>,
        max_window: usize,
        plan: &Plan,
    ) {
        self.advance(plan.next, max_window);
        for &index in &plan.prefetch {
            let f = self.whole(client, cache, index);
            rt.spawn(async move {
                if let Err(e) = f.await {
                    tracing::debug!(index, error = %e, "read-ahead failed");
                }
            });
        }
    }

    /// A sequential read whose chunks are already fetched, served at once
    /// by the caller (no task, no thread hop); `None` when it is not that.
    pub(crate) fn read_ready(
        &self,
        rt: &tokio::runtime::Handle,
        client: &Client,
        cache: &Arc<ChunkCache>,
        max_window: usize,
        offset: u64,
        len: u64,
    ) -> Option<Bytes> {
        let size = self.locs.file.size;
        if offset >= size || len == 0 {
            return Some(Bytes::new());
        }
        let end = offset.saturating_add(len).min(size);
        {
            let st = self.state.lock().unwrap_or_else(|p| p.into_inner());
            if st.streak < SEQ_STREAK || offset.abs_diff(st.next) > SEQ_SLACK {
                return None;
            }
        }
        let touched = touched_chunks(&self.locs, offset..end);
        let mut parts = Vec::new();
        {
            let ahead = self.ahead.lock().unwrap_or_else(|p| p.into_inner());
            for index in touched.clone() {
                let chunk = match ahead.get(&index)?.peek()? {
                    Ok(b) => b.clone(),
                    Err(_) => return None,
                };
                parts.push(self.part(index, &chunk, offset, end));
            }
        }
        let plan = self.plan(cache, max_window, offset, end, &touched);
        self.start_ahead(rt, client, cache, max_window, &plan);
        Some(concat(parts))
    }

    /// Up to `len` bytes from `offset` (fewer at the end of the file).
    pub(crate) async fn read(
        &self,
        client: &Client,
        cache: &Arc<ChunkCache>,
        max_window: usize,
        offset: u64,
        len: u64,
    ) -> Result<Bytes, Error> {
        let size = self.locs.file.size;
        if offset >= size || len == 0 {
            return Ok(Bytes::new());
        }
        let end = offset.saturating_add(len).min(size);
        let touched = touched_chunks(&self.locs, offset..end);
        let plan = self.plan(cache, max_window, offset, end, &touched);
        if !plan.whole {
            return client
                .read_range_at(self.locs.clone(), offset, end - offset)
                .await;
        }
        self.start_ahead(
            &tokio::runtime::Handle::current(),
            client,
            cache,
            max_window,
            &plan,
        );
        let mut parts = Vec::new();
        for index in touched {
            let chunk = self
                .whole(client, cache, index)
                .await
                .map_err(|e| Error::Task(format!("{e:#}")))?;
            parts.push(self.part(index, &chunk, offset, end));
        }
        Ok(concat(parts))
    }
}

/// What one read does (see [`Reader::plan`]).
struct Plan {
    /// Whole chunks (else exactly the bytes asked for).
    whole: bool,
    /// Chunk indexes to start fetching ahead.
    prefetch: Vec<usize>,
    /// Where the reader has got to.
    next: u64,
}

/// Indexes of the chunks a byte range touches.
fn touched_chunks(locs: &FileLocations, want: Range<u64>) -> Range<usize> {
    let chunks = &locs.chunks;
    let first = chunks.partition_point(|c| c.offset + c.size <= want.start);
    let last = chunks.partition_point(|c| c.offset < want.end);
    first..last.max(first)
}

fn concat(mut parts: Vec<Bytes>) -> Bytes {
    if parts.len() == 1 {
        return parts.pop().unwrap_or_default();
    }
    let mut out = BytesMut::with_capacity(parts.iter().map(Bytes::len).sum());
    for p in parts {
        out.extend_from_slice(&p);
    }
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;
    use blob_common::proto::namenode::{ChunkLocation, FileInfo};

    fn locs(sizes: &[u64]) -> FileLocations {
        let mut offset = 0;
        let chunks = sizes
            .iter()
            .enumerate()
            .map(|(i, &size)| {
                let c = ChunkLocation {
                    id: ChunkId::of(&[i as u8]),
                    size,
                    offset,
                    replicas: vec![],
                };
                offset += size;
                c
            })
            .collect();
        FileLocations {
            file: FileInfo {
                bucket: "b".into(),
                path: "p".into(),
                size: offset,
                created_ms: 0,
                version: blob_common::UploadId::random(),
                replication: 1,
                chunk_size: 10,
                chunks: vec![],
                meta: Default::default(),
                version_id: None,
            },
            chunks,
            next: None,
            unchanged: false,
        }
    }

    #[test]
    fn ranges_map_to_the_chunks_they_touch() {
        let l = locs(&[10, 10, 5]);
        assert_eq!(touched_chunks(&l, 0..1), 0..1);
        assert_eq!(touched_chunks(&l, 9..11), 0..2);
        assert_eq!(touched_chunks(&l, 10..20), 1..2);
        assert_eq!(touched_chunks(&l, 0..25), 0..3);
        assert_eq!(touched_chunks(&l, 24..25), 2..3);
    }

    #[test]
    fn parts_concatenate() {
        assert_eq!(
            concat(vec![Bytes::from_static(b"ab"), Bytes::from_static(b"c")]),
            Bytes::from_static(b"abc")
        );
        assert_eq!(concat(vec![]), Bytes::new());
    }
}
