//! The namenode's metadata in RocksDB, one column family per kind of record.
//!
//! | cf | key | value |
//! |---|---|---|
//! | `buckets` | name | [`BucketRecord`] |
//! | `files` | bucket `\0` path | [`FileRecord`] |
//! | `chunks` | chunk id (32 bytes) | [`ChunkRecord`] |
//! | `bucket_chunks` | bucket `\0` chunk id | references from that bucket (u64 LE) |
//! | `uploads` | upload id (16 bytes) | [`UploadRecord`] |
//! | `upload_chunks` | upload id + chunk id | empty: the session holds one reference |
//! | `datanodes` | node id (8 bytes) | [`NodeRecord`] |
//! | `keys` | access key | [`KeyRecord`] |
//! | `gc` | chunk id | ms since epoch when its references reached zero |
//! | `corrupt` | chunk id + node id | [`CorruptRecord`] |
//! | `multipart` | upload id (16 bytes) | [`MultipartRecord`] |
//! | `multipart_parts` | upload id + part number (u32 BE) | [`PartRecord`]: holds one reference per chunk position |
//! | `node_chunks` | node id + chunk id | empty: index of replicas by node |
//! | `pending` | chunk id | ms since epoch until which an upload may still store it |
//! | `manifest` | upload id + first index (u64 BE) | a page of the session's chunk list, staged for its commit |
//! | `versions` | bucket `\0` path `\0` inverted time + version | an archived [`FileRecord`] |
//! | `usage` | bucket | bytes and objects of its files and archived versions (u64 LE each), kept by [`Txn`] |
//!
//! A chunk's `refs` counts every file position that names it plus every
//! session that reported it; `bucket_chunks` counts the same per bucket and
//! is what dedup consults, so knowing a hash grants nothing in another
//! bucket. Every change is one [`rocksdb::WriteBatch`]; changes that must
//! survive a crash before they are acknowledged are followed by a WAL sync
//! ([`Meta::sync`]), done outside the write lock so concurrent commits share
//! one fsync.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use blob_common::proto::keys::{KeyLimits, Permissions, Quota, Usage};
use blob_common::proto::namenode::ChunkRef;
use blob_common::{ChunkId, NodeId, UploadId};
use rocksdb::{ColumnFamily, ColumnFamilyDescriptor, Options, WriteBatch, WriteOptions, DB};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::Error;

pub(crate) const CF_BUCKETS: &str = "buckets";
pub(crate) const CF_FILES: &str = "files";
/// Versions of files other than the current one (versioned buckets), by
/// [`version_key`]: newest first for each path.
pub(crate) const CF_VERSIONS: &str = "versions";
pub(crate) const CF_CHUNKS: &str = "chunks";
pub(crate) const CF_BUCKET_CHUNKS: &str = "bucket_chunks";
pub(crate) const CF_UPLOADS: &str = "uploads";
pub(crate) const CF_UPLOAD_CHUNKS: &str = "upload_chunks";
pub(crate) const CF_DATANODES: &str = "datanodes";
pub(crate) const CF_KEYS: &str = "keys";
pub(crate) const CF_GC: &str = "gc";
pub(crate) const CF_CORRUPT: &str = "corrupt";
pub(crate) const CF_MULTIPART: &str = "multipart";
pub(crate) const CF_MULTIPART_PARTS: &str = "multipart_parts";
pub(crate) const CF_NODE_CHUNKS: &str = "node_chunks";
pub(crate) const CF_PENDING: &str = "pending";
pub(crate) const CF_MANIFEST: &str = "manifest";
pub(crate) const CF_USAGE: &str = "usage";

const ALL_CFS: &[&str] = &[
    CF_BUCKETS,
    CF_FILES,
    CF_VERSIONS,
    CF_CHUNKS,
    CF_BUCKET_CHUNKS,
    CF_UPLOADS,
    CF_UPLOAD_CHUNKS,
    CF_DATANODES,
    CF_KEYS,
    CF_GC,
    CF_CORRUPT,
    CF_MULTIPART,
    CF_MULTIPART_PARTS,
    CF_NODE_CHUNKS,
    CF_PENDING,
    CF_MANIFEST,
    CF_USAGE,
];

/// A bucket.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BucketRecord {
    /// Creation time, ms since the epoch.
    pub created_ms: u64,
    /// Named settings (S3's CORS rules, …), opaque to the namenode.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub settings: BTreeMap<String, String>,
    /// The key that made it: it may do everything to it. None for buckets
    /// made before owners were kept (admin keys only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// What other keys may do, by access key.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub grants: BTreeMap<String, Permissions>,
    /// Its limits.
    #[serde(default, skip_serializing_if = "is_unlimited")]
    pub quota: Quota,
}

fn is_unlimited(q: &Quota) -> bool {
    *q == Quota::default()
}

/// A committed file version.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FileRecord {
    /// Total bytes.
    pub size: u64,
    /// Commit time.
    pub created_ms: u64,
    /// The upload that wrote it.
    pub version: UploadId,
    /// Replication factor.
    pub replication: u8,
    /// Writer's chunk size.
    pub chunk_size: u64,
    /// Chunks in order.
    pub chunks: Vec<ChunkRef>,
    /// User metadata.
    #[serde(default)]
    pub meta: BTreeMap<String, String>,
    /// Written while the bucket's versioning was enabled: its version id
    /// is `version`; otherwise it is the "null" version.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub versioned: bool,
    /// A delete marker (no bytes), kept only among the versions.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub delete_marker: bool,
}

/// A chunk: its size, how many references it has, where its replicas are.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChunkRecord {
    /// Bytes.
    pub size: u64,
    /// References from files and open sessions.
    pub refs: u64,
    /// Nodes holding a replica.
    pub replicas: Vec<NodeId>,
    /// Replicas wanted: the highest replication factor of the files that
    /// use it (0 in records written before it was kept: the default).
    #[serde(default)]
    pub target: u8,
}

/// An open upload session.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UploadRecord {
    /// Bucket.
    pub bucket: String,
    /// Path the commit writes.
    pub path: String,
    /// Replication factor.
    pub replication: u8,
    /// Client's chunk size.
    pub chunk_size: u64,
    /// Opening time.
    pub created_ms: u64,
    /// The access key that opened it.
    pub owner: String,
}

/// A datanode the namenode has heard from.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeRecord {
    /// Base URL.
    pub url: String,
    /// First heartbeat, ms since the epoch.
    pub registered_ms: u64,
    /// What the operator asked of it.
    #[serde(default)]
    pub admin: AdminState,
}

/// A datanode's administrative state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AdminState {
    /// In service.
    #[default]
    Normal,
    /// Being drained: no new replicas, its replicas copied elsewhere.
    Decommissioning,
    /// Drained: its replicas no longer count.
    Decommissioned,
}

/// An access key. Its secrets are needed in clear to verify HMACs (as in
/// S3), so they are kept sealed by the namenode's master key
/// (`crate::masterkeys`), which lives in a file beside the database, not
/// in it: a copy of the database alone does not reveal them.
#[derive(Clone, Serialize, Deserialize)]
pub struct KeyRecord {
    /// A secret in clear, as records made before sealing kept it.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub secret: String,
    /// Sealed secrets, newest first: two between a rotation and the old
    /// one's retirement.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sealed: Vec<String>,
    /// Creation time.
    pub created_ms: u64,
    /// May administer the cluster.
    pub admin: bool,
    /// A name for people.
    #[serde(default)]
    pub name: String,
    /// Rate limits.
    #[serde(default, skip_serializing_if = "is_no_limit")]
    pub limits: KeyLimits,
}

fn is_no_limit(l: &KeyLimits) -> bool {
    *l == KeyLimits::default()
}

impl std::fmt::Debug for KeyRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRecord")
            .field("name", &self.name)
            .field("admin", &self.admin)
            .finish_non_exhaustive()
    }
}

/// An open S3 multipart upload.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MultipartRecord {
    /// Bucket.
    pub bucket: String,
    /// Path the completed object gets.
    pub path: String,
    /// Metadata the completed object carries.
    #[serde(default)]
    pub meta: BTreeMap<String, String>,
    /// Creation time.
    pub created_ms: u64,
    /// The access key that opened it.
    pub owner: String,
}

/// One uploaded part of a multipart upload.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PartRecord {
    /// Hex MD5 of the part's bytes.
    pub etag: String,
    /// Bytes.
    pub size: u64,
    /// Upload time.
    pub created_ms: u64,
    /// Replication factor it was stored with.
    pub replication: u8,
    /// Writer's chunk size.
    pub chunk_size: u64,
    /// Chunks in order.
    pub chunks: Vec<ChunkRef>,
}

/// A replica a reader found corrupt.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CorruptRecord {
    /// When it was reported.
    pub reported_ms: u64,
    /// What the reader saw.
    pub reason: String,
}

/// The metadata store.
pub struct Meta {
    db: DB,
    durable: Durable,
}

/// Group commit: which writes the WAL holds durably, and whether a sync is
/// under way. Writers and readers alike wait in [`Meta::sync`] until every
/// write they could have seen is durable; one fsync serves all who wait.
#[derive(Default)]
struct Durable {
    state: std::sync::Mutex<SyncState>,
    done: std::sync::Condvar,
    /// Extra delay before each WAL sync (fault-injection tests only).
    delay: std::sync::atomic::AtomicU64,
}

#[derive(Default)]
struct SyncState {
    /// Highest sequence number known durable.
    synced: u64,
    /// A thread is syncing now.
    running: bool,
    /// Syncs done (for metrics and tests).
    count: u64,
}

pub(crate) fn file_key(bucket: &str, path: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(bucket.len() + 1 + path.len());
    k.extend_from_slice(bucket.as_bytes());
    k.push(0);
    k.extend_from_slice(path.as_bytes());
    k
}

/// Key of an archived version of `bucket/path`: the file's key, a zero
/// byte (no path holds one), then the time it was written inverted (newest
/// first) and its version.
pub(crate) fn version_key(
    bucket: &str,
    path: &str,
    created_ms: u64,
    version: &UploadId,
) -> Vec<u8> {
    let mut k = version_prefix(bucket, path);
    k.extend_from_slice(&(u64::MAX - created_ms).to_be_bytes());
    k.extend_from_slice(version.as_bytes());
    k
}

/// The prefix of every archived version of `bucket/path`.
pub(crate) fn version_prefix(bucket: &str, path: &str) -> Vec<u8> {
    let mut k = file_key(bucket, path);
    k.push(0);
    k
}

pub(crate) fn bucket_chunk_key(bucket: &str, chunk: &ChunkId) -> Vec<u8> {
    let mut k = Vec::with_capacity(bucket.len() + 33);
    k.extend_from_slice(bucket.as_bytes());
    k.push(0);
    k.extend_from_slice(chunk.as_bytes());
    k
}

pub(crate) fn node_chunk_key(node: &NodeId, chunk: &ChunkId) -> Vec<u8> {
    let mut k = Vec::with_capacity(40);
    k.extend_from_slice(node.as_bytes());
    k.extend_from_slice(chunk.as_bytes());
    k
}

pub(crate) fn manifest_key(upload: &UploadId, start: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(24);
    k.extend_from_slice(upload.as_bytes());
    k.extend_from_slice(&start.to_be_bytes());
    k
}

pub(crate) fn upload_chunk_key(upload: &UploadId, chunk: &ChunkId) -> Vec<u8> {
    let mut k = Vec::with_capacity(48);
    k.extend_from_slice(upload.as_bytes());
    k.extend_from_slice(chunk.as_bytes());
    k
}

impl Durable {
    fn lock(&self) -> std::sync::MutexGuard<'_, SyncState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).expect("records always serialize")
}

fn decode<T: DeserializeOwned>(cf: &str, bytes: &[u8]) -> Result<T, Error> {
    serde_json::from_slice(bytes).map_err(|e| Error::Corrupt(format!("{cf} record: {e}")))
}

impl Meta {
    /// Opens (or creates) the store under `dir`.
    pub fn open(dir: &Path) -> Result<Self, Error> {
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        opts.set_max_background_jobs(2);
        opts.set_keep_log_file_num(4);
        let cfs = ALL_CFS.iter().map(|name| {
            let mut o = Options::default();
            o.set_compression_type(rocksdb::DBCompressionType::Lz4);
            ColumnFamilyDescriptor::new(*name, o)
        });
        let db = DB::open_cf_descriptors(&opts, dir, cfs).map_err(|e| Error::Db {
            context: format!("opening metadata at {}", dir.display()),
            source: e,
        })?;
        // Whatever was in the WAL before this open survived a restart.
        let durable = Durable::default();
        durable.lock().synced = db.latest_sequence_number();
        Ok(Self { db, durable })
    }

    /// Delays every WAL sync by `ms` (fault-injection tests: widens the
    /// window between a write and its durability).
    pub fn set_sync_delay_ms(&self, ms: u64) {
        self.durable
            .delay
            .store(ms, std::sync::atomic::Ordering::Relaxed);
    }

    /// WAL syncs done since open.
    pub fn sync_count(&self) -> u64 {
        self.durable.lock().count
    }

    pub(crate) fn cf(&self, name: &str) -> &ColumnFamily {
        self.db
            .cf_handle(name)
            .expect("every column family is created at open")
    }

    pub(crate) fn get_raw(&self, cf: &str, key: &[u8]) -> Result<Option<Vec<u8>>, Error> {
        self.db.get_cf(self.cf(cf), key).map_err(|e| Error::Db {
            context: format!("reading {cf}"),
            source: e,
        })
    }

    pub(crate) fn get<T: DeserializeOwned>(
        &self,
        cf: &str,
        key: &[u8],
    ) -> Result<Option<T>, Error> {
        match self.get_raw(cf, key)? {
            Some(b) => Ok(Some(decode(cf, &b)?)),
            None => Ok(None),
        }
    }

    pub(crate) fn get_count(&self, cf: &str, key: &[u8]) -> Result<u64, Error> {
        Ok(self
            .get_raw(cf, key)?
            .and_then(|b| <[u8; 8]>::try_from(b.as_slice()).ok())
            .map(u64::from_le_bytes)
            .unwrap_or(0))
    }

    /// Applies a batch. `sync` is left to [`Meta::sync`] so that callers can
    /// release their lock before paying for the fsync.
    pub(crate) fn write(&self, batch: WriteBatch) -> Result<(), Error> {
        if batch.is_empty() {
            return Ok(());
        }
        let mut wo = WriteOptions::default();
        wo.set_sync(false);
        self.db.write_opt(batch, &wo).map_err(|e| Error::Db {
            context: "writing batch".into(),
            source: e,
        })
    }

    /// Whether every write so far is durable (no sync needed to answer).
    pub(crate) fn is_durable(&self) -> bool {
        self.durable.lock().synced >= self.db.latest_sequence_number()
    }

    /// Returns once every write made so far is durable (fsync of the
    /// write-ahead log). Group commit: a caller that finds a sync under way
    /// waits for it and, if its writes came after that sync began, for the
    /// next one, which one waiting caller runs for all of them.
    pub(crate) fn sync(&self) -> Result<(), Error> {
        let target = self.db.latest_sequence_number();
        let mut st = self.durable.lock();
        loop {
            if st.synced >= target {
                return Ok(());
            }
            if st.running {
                st = self
                    .durable
                    .done
                    .wait(st)
                    .unwrap_or_else(|p| p.into_inner());
                continue;
            }
            st.running = true;
            drop(st);
            // Everything up to `upto` is in the WAL file; the sync covers it.
            let upto = self.db.latest_sequence_number();
            let delay = self
                .durable
                .delay
                .load(std::sync::atomic::Ordering::Relaxed);
            if delay > 0 {
                std::thread::sleep(std::time::Duration::from_millis(delay));
            }
            let res = self.db.flush_wal(true);
            st = self.durable.lock();
            st.running = false;
            if res.is_ok() {
                st.synced = st.synced.max(upto);
                st.count += 1;
            }
            self.durable.done.notify_all();
            res.map_err(|e| Error::Db {
                context: "syncing WAL".into(),
                source: e,
            })?;
        }
    }

    /// Iterates `cf` from `start` while keys begin with `prefix`, calling `f`
    /// until it returns false.
    pub(crate) fn scan(
        &self,
        cf: &str,
        prefix: &[u8],
        start: &[u8],
        mut f: impl FnMut(&[u8], &[u8]) -> Result<bool, Error>,
    ) -> Result<(), Error> {
        let mut it = self.db.raw_iterator_cf(self.cf(cf));
        it.seek(if start > prefix { start } else { prefix });
        while it.valid() {
            let (Some(k), Some(v)) = (it.key(), it.value()) else {
                break;
            };
            if !k.starts_with(prefix) || !f(k, v)? {
                return Ok(());
            }
            it.next();
        }
        it.status().map_err(|e| Error::Db {
            context: format!("scanning {cf}"),
            source: e,
        })
    }

    /// A raw iterator, for listings that seek past rolled-up prefixes.
    pub(crate) fn raw_iter(&self, cf: &str) -> rocksdb::DBRawIterator<'_> {
        self.db.raw_iterator_cf(self.cf(cf))
    }
}

/// One mutation in the making: chunk records loaded and changed in memory,
/// per-bucket reference changes, and the batch they end up in. Keeps the two
/// counters (`chunks.refs`, `bucket_chunks`) moving together and marks
/// chunks whose references reach zero for garbage collection.
pub(crate) struct Txn<'a> {
    meta: &'a Meta,
    pub(crate) batch: WriteBatch,
    /// Loaded or new records, with the refs and replicas they had at load.
    chunks: HashMap<ChunkId, (u64, Vec<NodeId>, ChunkRecord)>,
    removed: Vec<(ChunkId, Vec<NodeId>)>,
    bucket: HashMap<(String, ChunkId), i64>,
    /// Usage change per bucket (bytes, objects).
    usage: HashMap<String, (i64, i64)>,
    /// What each file or version key this transaction wrote now counts
    /// for, so that a second write of the same key sees the first.
    counted: HashMap<(bool, Vec<u8>), (u64, u64)>,
    now_ms: u64,
}

/// What a file record counts for in its bucket's usage: its size and one
/// object, or nothing for a delete marker.
fn usage_of(bytes: &[u8]) -> Result<(u64, u64), Error> {
    #[derive(Deserialize)]
    struct Counted {
        size: u64,
        #[serde(default)]
        delete_marker: bool,
    }
    let c: Counted = decode(CF_FILES, bytes)?;
    Ok(if c.delete_marker { (0, 0) } else { (c.size, 1) })
}

/// The bucket a `files` or `versions` key belongs to.
fn bucket_of(key: &[u8]) -> String {
    let end = key.iter().position(|&b| b == 0).unwrap_or(key.len());
    String::from_utf8_lossy(&key[..end]).into_owned()
}

/// A bucket's usage as stored.
pub(crate) fn decode_usage(bytes: Option<Vec<u8>>) -> Usage {
    let word = |b: &[u8], i: usize| {
        b.get(i * 8..i * 8 + 8)
            .and_then(|w| <[u8; 8]>::try_from(w).ok())
            .map_or(0, u64::from_le_bytes)
    };
    bytes.map_or_else(Usage::default, |b| Usage {
        bytes: word(&b, 0),
        objects: word(&b, 1),
    })
}

fn encode_usage(u: &Usage) -> [u8; 16] {
    let mut out = [0u8; 16];
    out[..8].copy_from_slice(&u.bytes.to_le_bytes());
    out[8..].copy_from_slice(&u.objects.to_le_bytes());
    out
}

fn add_signed(v: u64, d: i64) -> u64 {
    (v as i64).saturating_add(d).max(0) as u64
}

impl<'a> Txn<'a> {
    pub(crate) fn new(meta: &'a Meta, now_ms: u64) -> Self {
        Self {
            meta,
            batch: WriteBatch::default(),
            chunks: HashMap::new(),
            removed: Vec::new(),
            bucket: HashMap::new(),
            usage: HashMap::new(),
            counted: HashMap::new(),
            now_ms,
        }
    }

    /// Records that a `files` or `versions` key now counts for `now`,
    /// moving its bucket's usage by the difference with what it counted
    /// for before (in this transaction, or in the store).
    fn recount(&mut self, cf: &str, key: &[u8], now: (u64, u64)) -> Result<(), Error> {
        let slot = (cf == CF_VERSIONS, key.to_vec());
        let before = match self.counted.get(&slot) {
            Some(c) => *c,
            None => match self.meta.get_raw(cf, key)? {
                Some(b) => usage_of(&b)?,
                None => (0, 0),
            },
        };
        if before != now {
            let d = self.usage.entry(bucket_of(key)).or_default();
            d.0 += now.0 as i64 - before.0 as i64;
            d.1 += now.1 as i64 - before.1 as i64;
        }
        self.counted.insert(slot, now);
        Ok(())
    }

    /// The chunk's record as this transaction sees it, if it exists.
    pub(crate) fn chunk(&mut self, id: &ChunkId) -> Result<Option<&mut ChunkRecord>, Error> {
        if !self.chunks.contains_key(id) {
            match self.meta.get::<ChunkRecord>(CF_CHUNKS, id.as_bytes())? {
                Some(rec) => {
                    self.chunks
                        .insert(*id, (rec.refs, rec.replicas.clone(), rec));
                }
                None => return Ok(None),
            }
        }
        Ok(self.chunks.get_mut(id).map(|(_, _, r)| r))
    }

    /// The chunk's record, created with `size` and no replicas if missing.
    pub(crate) fn chunk_or_new(
        &mut self,
        id: &ChunkId,
        size: u64,
    ) -> Result<&mut ChunkRecord, Error> {
        if self.chunk(id)?.is_none() {
            let rec = ChunkRecord {
                size,
                refs: 0,
                replicas: Vec::new(),
                target: 0,
            };
            self.chunks.insert(*id, (0, Vec::new(), rec));
        }
        Ok(&mut self.chunks.get_mut(id).expect("just inserted").2)
    }

    /// References to `chunk` from `bucket` as this transaction sees them.
    pub(crate) fn bucket_refs(&self, bucket: &str, chunk: &ChunkId) -> Result<u64, Error> {
        let stored =
            self.meta
                .get_count(CF_BUCKET_CHUNKS, &bucket_chunk_key(bucket, chunk))? as i64;
        let delta = self
            .bucket
            .get(&(bucket.to_string(), *chunk))
            .copied()
            .unwrap_or(0);
        Ok((stored + delta).max(0) as u64)
    }

    /// Adds `by` references to a chunk that exists (in the store or in this
    /// transaction).
    pub(crate) fn add_ref(&mut self, bucket: &str, chunk: &ChunkId, by: i64) -> Result<(), Error> {
        let rec = self
            .chunk(chunk)?
            .ok_or_else(|| Error::Corrupt(format!("reference change for unknown chunk {chunk}")))?;
        rec.refs = (rec.refs as i64 + by).max(0) as u64;
        *self.bucket.entry((bucket.to_string(), *chunk)).or_default() += by;
        Ok(())
    }

    /// Forgets a chunk entirely (garbage collection): its record, its
    /// replica index entries, its GC mark and its pending mark.
    pub(crate) fn remove_chunk(&mut self, id: &ChunkId) -> Result<(), Error> {
        if self.chunk(id)?.is_some() {
            if let Some((_, orig, rec)) = self.chunks.remove(id) {
                let mut all = orig;
                for n in rec.replicas {
                    if !all.contains(&n) {
                        all.push(n);
                    }
                }
                self.removed.push((*id, all));
            }
        }
        Ok(())
    }

    /// Writes everything in one batch (not yet synced: see [`Meta::sync`]).
    pub(crate) fn commit(mut self) -> Result<(), Error> {
        let meta = self.meta;
        for (id, (was, orig, rec)) in &self.chunks {
            if rec.refs == 0 && *was > 0 {
                self.batch
                    .put_cf(meta.cf(CF_GC), id.as_bytes(), self.now_ms.to_le_bytes());
            } else if rec.refs > 0 && *was == 0 {
                self.batch.delete_cf(meta.cf(CF_GC), id.as_bytes());
            }
            for n in orig.iter().filter(|n| !rec.replicas.contains(n)) {
                self.batch
                    .delete_cf(meta.cf(CF_NODE_CHUNKS), node_chunk_key(n, id));
            }
            for n in rec.replicas.iter().filter(|n| !orig.contains(n)) {
                self.batch
                    .put_cf(meta.cf(CF_NODE_CHUNKS), node_chunk_key(n, id), []);
            }
            self.batch
                .put_cf(meta.cf(CF_CHUNKS), id.as_bytes(), encode(rec));
        }
        for (id, holders) in &self.removed {
            for n in holders {
                self.batch
                    .delete_cf(meta.cf(CF_NODE_CHUNKS), node_chunk_key(n, id));
            }
            self.batch.delete_cf(meta.cf(CF_CHUNKS), id.as_bytes());
            self.batch.delete_cf(meta.cf(CF_GC), id.as_bytes());
            self.batch.delete_cf(meta.cf(CF_PENDING), id.as_bytes());
        }
        for (bucket, (bytes, objects)) in &self.usage {
            if (*bytes, *objects) == (0, 0) {
                continue;
            }
            let was = decode_usage(meta.get_raw(CF_USAGE, bucket.as_bytes())?);
            let now = Usage {
                bytes: add_signed(was.bytes, *bytes),
                objects: add_signed(was.objects, *objects),
            };
            if *bytes > 0 || *objects > 0 {
                check_quota(meta, bucket, &was, &now, *bytes > 0, *objects > 0)?;
            }
            self.batch
                .put_cf(meta.cf(CF_USAGE), bucket.as_bytes(), encode_usage(&now));
        }
        for ((bucket, chunk), delta) in &self.bucket {
            if *delta == 0 {
                continue;
            }
            let key = bucket_chunk_key(bucket, chunk);
            let n = (meta.get_count(CF_BUCKET_CHUNKS, &key)? as i64 + delta).max(0) as u64;
            if n == 0 {
                self.batch.delete_cf(meta.cf(CF_BUCKET_CHUNKS), &key);
            } else {
                self.batch
                    .put_cf(meta.cf(CF_BUCKET_CHUNKS), &key, n.to_le_bytes());
            }
        }
        meta.write(self.batch)
    }

    /// Puts a JSON record into the batch. Files and archived versions
    /// move their bucket's usage.
    pub(crate) fn put<T: Serialize>(&mut self, cf: &str, key: &[u8], v: &T) -> Result<(), Error> {
        let bytes = encode(v);
        if cf == CF_FILES || cf == CF_VERSIONS {
            self.recount(cf, key, usage_of(&bytes)?)?;
        }
        self.batch.put_cf(self.meta.cf(cf), key, bytes);
        Ok(())
    }

    /// Deletes a key in the batch. Files and archived versions move their
    /// bucket's usage.
    pub(crate) fn delete(&mut self, cf: &str, key: &[u8]) -> Result<(), Error> {
        if cf == CF_FILES || cf == CF_VERSIONS {
            self.recount(cf, key, (0, 0))?;
        }
        self.batch.delete_cf(self.meta.cf(cf), key);
        Ok(())
    }
}

/// Refuses a change that takes a bucket past its quota in a dimension it
/// grows (one already past it may still shrink).
fn check_quota(
    meta: &Meta,
    bucket: &str,
    was: &Usage,
    now: &Usage,
    more_bytes: bool,
    more_objects: bool,
) -> Result<(), Error> {
    let Some(rec) = meta.get::<BucketRecord>(CF_BUCKETS, bucket.as_bytes())? else {
        return Ok(());
    };
    if let Some(max) = rec.quota.max_bytes.filter(|m| more_bytes && now.bytes > *m) {
        return Err(Error::QuotaExceeded(format!(
            "bucket {bucket} holds {} of its {max} bytes; this needs {} more",
            was.bytes,
            now.bytes - was.bytes
        )));
    }
    if let Some(max) = rec
        .quota
        .max_objects
        .filter(|m| more_objects && now.objects > *m)
    {
        return Err(Error::QuotaExceeded(format!(
            "bucket {bucket} holds {} of its {max} objects",
            was.objects
        )));
    }
    Ok(())
}

/// Recomputes every bucket's usage from its files and archived versions
/// (a store made before usage was kept). Runs once: the result carries a
/// marker.
pub(crate) fn ensure_usage(meta: &Meta) -> Result<(), Error> {
    const MARKER: &[u8] = b"\0computed";
    if meta.get_raw(CF_USAGE, MARKER)?.is_some() {
        return Ok(());
    }
    let mut totals: HashMap<String, Usage> = HashMap::new();
    for cf in [CF_FILES, CF_VERSIONS] {
        meta.scan(cf, b"", b"", |k, v| {
            let (bytes, objects) = usage_of(v)?;
            let u = totals.entry(bucket_of(k)).or_default();
            u.bytes += bytes;
            u.objects += objects;
            Ok(true)
        })?;
    }
    let mut batch = WriteBatch::default();
    for (bucket, u) in &totals {
        batch.put_cf(meta.cf(CF_USAGE), bucket.as_bytes(), encode_usage(u));
    }
    batch.put_cf(meta.cf(CF_USAGE), MARKER, []);
    meta.write(batch)?;
    meta.sync()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn txn_moves_both_counters_and_marks_zero_for_gc() {
        let dir = tempfile::tempdir().expect("tempdir");
        let meta = Meta::open(dir.path()).expect("open");
        let c = ChunkId::of(b"x");

        let mut t = Txn::new(&meta, 5);
        t.chunk_or_new(&c, 1)
            .expect("chunk")
            .replicas
            .push(NodeId([1; 8]));
        t.add_ref("bkt", &c, 2).expect("ref");
        assert_eq!(t.bucket_refs("bkt", &c).expect("refs"), 2);
        assert_eq!(t.bucket_refs("other", &c).expect("refs"), 0);
        t.commit().expect("commit");
        let rec: ChunkRecord = meta
            .get(CF_CHUNKS, c.as_bytes())
            .expect("get")
            .expect("present");
        assert_eq!((rec.refs, rec.replicas.len()), (2, 1));
        assert_eq!(
            meta.get_count(CF_BUCKET_CHUNKS, &bucket_chunk_key("bkt", &c))
                .expect("count"),
            2
        );

        let mut t = Txn::new(&meta, 7);
        t.add_ref("bkt", &c, -2).expect("ref");
        t.commit().expect("commit");
        meta.sync().expect("sync");
        let rec: ChunkRecord = meta
            .get(CF_CHUNKS, c.as_bytes())
            .expect("get")
            .expect("present");
        assert_eq!(rec.refs, 0);
        assert_eq!(
            meta.get_count(CF_BUCKET_CHUNKS, &bucket_chunk_key("bkt", &c))
                .expect("count"),
            0
        );
        assert_eq!(
            meta.get_raw(CF_GC, c.as_bytes()).expect("gc"),
            Some(7u64.to_le_bytes().to_vec())
        );
    }
}
