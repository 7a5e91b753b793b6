//! The namenode's operations. Each is a synchronous function over the
//! metadata store, called from a blocking task: it takes the write lock for
//! the read-modify-write, writes one batch, releases the lock, and only then
//! syncs the WAL when the change must be durable before it is acknowledged.

use std::collections::HashSet;
use std::time::Instant;

use blob_common::names::{validate_bucket, validate_path};
use blob_common::presign::{self, Claims, Op, PipelineNode, Receipt};
use blob_common::proto::heartbeat::{ChunkReport, Command, Heartbeat, HeartbeatResponse};
use blob_common::proto::namenode::*;
use blob_common::{now_ms, now_secs, ChunkId, NodeId, UploadId};

use crate::db::*;
use crate::error::Error;
use crate::nodes::Liveness;
use crate::Namenode;

pub(crate) fn load_nodes(meta: &Meta) -> Result<Vec<(NodeId, NodeRecord)>, Error> {
    let mut out = Vec::new();
    meta.scan(CF_DATANODES, b"", b"", |k, v| {
        if let Some(id) = NodeId::from_slice(k) {
            let rec: NodeRecord = serde_json::from_slice(v)
                .map_err(|e| Error::Corrupt(format!("datanode record: {e}")))?;
            out.push((id, rec));
        }
        Ok(true)
    })?;
    Ok(out)
}

/// The smallest key greater than every key starting with `prefix`.
fn prefix_successor(prefix: &[u8]) -> Vec<u8> {
    let mut k = prefix.to_vec();
    while let Some(last) = k.pop() {
        if last < 0xff {
            k.push(last + 1);
            return k;
        }
    }
    vec![0xff; prefix.len() + 1]
}

/// What a commit took: the bytes, the chunks whose session references the
/// txn took (see [`Namenode::drop_session`]), and the chunks written on a
/// quorum only, for repair once the txn is written.
pub(crate) struct Taken {
    pub(crate) size: u64,
    pub(crate) added: HashSet<ChunkId>,
    pub(crate) under: Vec<ChunkId>,
}

pub(crate) fn file_info(bucket: &str, path: &str, rec: FileRecord) -> FileInfo {
    FileInfo {
        bucket: bucket.to_string(),
        path: path.to_string(),
        size: rec.size,
        created_ms: rec.created_ms,
        version: rec.version,
        replication: rec.replication,
        chunk_size: rec.chunk_size,
        chunks: rec.chunks,
        meta: rec.meta,
    }
}

impl Namenode {
    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, ()> {
        // A panic while holding the lock cannot leave a half-written batch
        // (batches are atomic), so a poisoned lock is safe to reuse.
        self.write_lock.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn nodes_read(&self) -> std::sync::RwLockReadGuard<'_, crate::nodes::Nodes> {
        self.nodes.read().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn nodes_write(&self) -> std::sync::RwLockWriteGuard<'_, crate::nodes::Nodes> {
        self.nodes.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Notes that the namenode runs now; a pause of the namenode itself is
    /// not held against the datanodes ([`crate::nodes::Nodes::tick`]).
    pub(crate) fn tick_clock(&self) {
        let paused = self.nodes_write().tick(Instant::now());
        if let Some(gap) = paused {
            tracing::warn!(
                paused_ms = gap.as_millis() as u64,
                "the namenode was not running; datanode silence during the pause is not counted"
            );
            self.metrics.pauses.inc();
        }
    }

    pub(crate) fn ensure_admin_key(&self) -> Result<(), Error> {
        let _g = self.lock();
        let mut any = false;
        self.meta.scan(CF_KEYS, b"", b"", |_, _| {
            any = true;
            Ok(false)
        })?;
        let wanted = self.cfg.admin_access_key.clone();
        let exists = match &wanted {
            Some(k) => self.meta.get_raw(CF_KEYS, k.as_bytes())?.is_some(),
            None => any,
        };
        if exists {
            return Ok(());
        }
        let access =
            wanted.unwrap_or_else(|| format!("BK{}", hex::encode_upper(rand::random::<[u8; 9]>())));
        let secret = self
            .cfg
            .admin_secret_key
            .clone()
            .unwrap_or_else(|| hex::encode(rand::random::<[u8; 20]>()));
        let mut t = Txn::new(&self.meta, now_ms());
        t.put(
            CF_KEYS,
            access.as_bytes(),
            &KeyRecord {
                secret: secret.clone(),
                created_ms: now_ms(),
                admin: true,
            },
        );
        t.commit()?;
        self.meta.sync()?;
        let path = Namenode::credentials_path(&self.cfg.data_dir);
        let text = format!("access_key = \"{access}\"\nsecret_key = \"{secret}\"\n");
        blob_common::write_private(&path, text.as_bytes())
            .map_err(|e| Error::Internal(format!("writing {}: {e}", path.display())))?;
        tracing::info!(access_key = %access, file = %path.display(), "created admin access key");
        Ok(())
    }

    pub(crate) fn key_secret(&self, access_key: &str) -> Result<Option<KeyRecord>, Error> {
        self.meta.get(CF_KEYS, access_key.as_bytes())
    }

    // ---- buckets -------------------------------------------------------

    pub(crate) fn create_bucket(&self, name: &str) -> Result<BucketInfo, Error> {
        validate_bucket(name)?;
        let created_ms = now_ms();
        {
            let _g = self.lock();
            if self.meta.get_raw(CF_BUCKETS, name.as_bytes())?.is_some() {
                return Err(Error::BucketExists(name.to_string()));
            }
            let mut t = Txn::new(&self.meta, created_ms);
            t.put(CF_BUCKETS, name.as_bytes(), &BucketRecord { created_ms });
            t.commit()?;
        }
        self.meta.sync()?;
        Ok(BucketInfo {
            name: name.to_string(),
            created_ms,
        })
    }

    pub(crate) fn head_bucket(&self, name: &str) -> Result<BucketInfo, Error> {
        validate_bucket(name)?;
        let rec: BucketRecord = self
            .meta
            .get(CF_BUCKETS, name.as_bytes())?
            .ok_or_else(|| Error::NoSuchBucket(name.to_string()))?;
        Ok(BucketInfo {
            name: name.to_string(),
            created_ms: rec.created_ms,
        })
    }

    pub(crate) fn list_buckets(&self) -> Result<ListBuckets, Error> {
        let mut buckets = Vec::new();
        self.meta.scan(CF_BUCKETS, b"", b"", |k, v| {
            let rec: BucketRecord = serde_json::from_slice(v)
                .map_err(|e| Error::Corrupt(format!("bucket record: {e}")))?;
            buckets.push(BucketInfo {
                name: String::from_utf8_lossy(k).into_owned(),
                created_ms: rec.created_ms,
            });
            Ok(true)
        })?;
        Ok(ListBuckets { buckets })
    }

    pub(crate) fn delete_bucket(&self, name: &str) -> Result<(), Error> {
        self.head_bucket(name)?;
        {
            let _g = self.lock();
            let prefix = file_key(name, "");
            let mut empty = true;
            self.meta.scan(CF_FILES, &prefix, &prefix, |_, _| {
                empty = false;
                Ok(false)
            })?;
            if !empty {
                return Err(Error::BucketNotEmpty(name.to_string()));
            }
            let mut t = Txn::new(&self.meta, now_ms());
            for (id, rec) in self.uploads_matching(|u| u.bucket == name)? {
                self.drop_session(&mut t, &id, &rec, &HashSet::new())?;
            }
            t.delete(CF_BUCKETS, name.as_bytes());
            t.commit()?;
        }
        self.meta.sync()
    }

    pub(crate) fn uploads_matching(
        &self,
        pred: impl Fn(&UploadRecord) -> bool,
    ) -> Result<Vec<(UploadId, UploadRecord)>, Error> {
        let mut out = Vec::new();
        self.meta.scan(CF_UPLOADS, b"", b"", |k, v| {
            let rec: UploadRecord = serde_json::from_slice(v)
                .map_err(|e| Error::Corrupt(format!("upload record: {e}")))?;
            if let (Some(id), true) = (UploadId::from_slice(k), pred(&rec)) {
                out.push((id, rec));
            }
            Ok(true)
        })?;
        Ok(out)
    }

    // ---- files ---------------------------------------------------------

    pub(crate) fn file_record(&self, bucket: &str, path: &str) -> Result<FileRecord, Error> {
        validate_bucket(bucket)?;
        validate_path(path)?;
        match self.meta.get(CF_FILES, &file_key(bucket, path))? {
            Some(rec) => Ok(rec),
            None => {
                self.head_bucket(bucket)?;
                Err(Error::NoSuchFile {
                    bucket: bucket.to_string(),
                    path: path.to_string(),
                })
            }
        }
    }

    pub(crate) fn stat(&self, bucket: &str, path: &str) -> Result<FileInfo, Error> {
        Ok(file_info(bucket, path, self.file_record(bucket, path)?))
    }

    pub(crate) fn list_files(&self, bucket: &str, q: &ListFilesQuery) -> Result<ListFiles, Error> {
        self.head_bucket(bucket)?;
        let prefix = q.prefix.clone().unwrap_or_default();
        let delimiter = q.delimiter.clone().filter(|d| !d.is_empty());
        let limit = q.limit.unwrap_or(1000).clamp(1, 1000);
        let base = file_key(bucket, "");
        let prefix_key = file_key(bucket, &prefix);
        let mut it = self.meta.raw_iter(CF_FILES);
        match &q.start_after {
            Some(after) if after.as_str() >= prefix.as_str() => {
                let after_key = file_key(bucket, after);
                let rolled = delimiter
                    .as_deref()
                    .is_some_and(|d| after.ends_with(d) && after.len() > prefix.len());
                if rolled {
                    it.seek(prefix_successor(&after_key));
                } else {
                    it.seek(&after_key);
                    if it.key() == Some(after_key.as_slice()) {
                        it.next();
                    }
                }
            }
            _ => it.seek(&prefix_key),
        }
        let mut out = ListFiles::default();
        let mut count = 0usize;
        let mut last: Option<String> = None;
        while it.valid() {
            let Some(key) = it.key() else { break };
            if !key.starts_with(&prefix_key) {
                break;
            }
            if count == limit {
                out.next_start_after = last.clone();
                break;
            }
            let path = String::from_utf8_lossy(&key[base.len()..]).into_owned();
            if let Some(d) = &delimiter {
                if let Some(pos) = path[prefix.len()..].find(d.as_str()) {
                    let cp = path[..prefix.len() + pos + d.len()].to_string();
                    it.seek(prefix_successor(&file_key(bucket, &cp)));
                    out.common_prefixes.push(cp.clone());
                    last = Some(cp);
                    count += 1;
                    continue;
                }
            }
            let rec: FileRecord = serde_json::from_slice(it.value().unwrap_or_default())
                .map_err(|e| Error::Corrupt(format!("file record: {e}")))?;
            out.files.push(FileEntry {
                path: path.clone(),
                size: rec.size,
                created_ms: rec.created_ms,
                version: rec.version,
                etag: rec.meta.get("etag").cloned(),
            });
            last = Some(path);
            count += 1;
            it.next();
        }
        it.status().map_err(|e| Error::Db {
            context: "listing files".into(),
            source: e,
        })?;
        Ok(out)
    }

    /// A file's chunks with their URLs: all of them, or with `limit` the
    /// page of at most that many (capped at [`MAX_PAGE`]) from `first`, the
    /// file's own chunk list then left out of the answer.
    pub(crate) fn locations(&self, q: &FileQuery) -> Result<FileLocations, Error> {
        let mut rec = self.file_record(&q.bucket, &q.path)?;
        let edge = crate::edges::pick(&self.cfg.edges, q.zone.as_deref());
        let total = rec.chunks.len();
        let first = usize::try_from(q.first.unwrap_or(0))
            .unwrap_or(usize::MAX)
            .min(total);
        let end = match q.limit {
            Some(limit) => first.saturating_add(limit.clamp(1, MAX_PAGE)).min(total),
            None => total,
        };
        let mut offset: u64 = rec.chunks[..first].iter().map(|c| c.size).sum();
        let mut chunks = Vec::with_capacity(end - first);
        for c in &rec.chunks[first..end] {
            chunks.push(self.chunk_location(&c.id, c.size, offset, edge)?);
            offset += c.size;
        }
        let next = (q.limit.is_some() && end < total).then_some(end as u64);
        if q.limit.is_some() {
            rec.chunks = Vec::new();
        }
        Ok(FileLocations {
            file: file_info(&q.bucket, &q.path, rec),
            chunks,
            next,
        })
    }

    /// Where chunk `id` can be read: a pre-signed GET URL per live
    /// replica, best first, preceded by `edge`'s URL when there is one.
    /// Every URL carries the same token, whose origins name the replicas
    /// so the edge can fill a miss by itself.
    fn chunk_location(
        &self,
        id: &ChunkId,
        size: u64,
        offset: u64,
        edge: Option<&crate::EdgeConfig>,
    ) -> Result<ChunkLocation, Error> {
        let mut replicas = match self.meta.get::<ChunkRecord>(CF_CHUNKS, id.as_bytes())? {
            Some(cr) => self.nodes_read().read_order(&cr.replicas, Instant::now()),
            None => Vec::new(),
        };
        // A replica under a corruption claim is read last until its holder
        // has verified it (stable: the order among the others stays).
        replicas.sort_by_key(|(node, _)| self.claims.is_suspect(id, node));
        let claims = Claims {
            op: Op::Get,
            chunk: *id,
            exp: now_secs() + self.cfg.presign_ttl_secs,
            kid: String::new(),
            size: Some(size),
            pipeline: vec![],
            upload: None,
            origins: match edge {
                Some(_) => replicas
                    .iter()
                    .map(|(node, url)| PipelineNode {
                        node: *node,
                        url: url.clone(),
                    })
                    .collect(),
                None => vec![],
            },
        };
        let (t, s) = presign::sign(&self.keyring, &claims);
        let signed =
            |base: &str| format!("{}/v1/chunks/{id}?t={t}&s={s}", base.trim_end_matches('/'));
        let mut urls = Vec::with_capacity(replicas.len() + 1);
        if let (Some(e), false) = (edge, replicas.is_empty()) {
            urls.push(ReplicaUrl {
                node: edge_node_id(&e.url),
                url: signed(&e.url),
                edge: Some(e.zone.clone()),
            });
        }
        urls.extend(replicas.into_iter().map(|(node, url)| ReplicaUrl {
            node,
            url: signed(&url),
            edge: None,
        }));
        Ok(ChunkLocation {
            id: *id,
            size,
            offset,
            replicas: urls,
        })
    }

    /// Locations of chunks named by id (edge warm-up); unknown ids are
    /// left out.
    pub(crate) fn locate_chunks(&self, req: &LocateChunks) -> Result<LocatedChunks, Error> {
        if req.chunks.len() > 10_000 {
            return Err(Error::BadRequest(format!(
                "{} chunks asked for; at most 10000 per call",
                req.chunks.len()
            )));
        }
        let edge = crate::edges::pick(&self.cfg.edges, req.zone.as_deref());
        let mut out = LocatedChunks::default();
        for id in &req.chunks {
            if let Some(cr) = self.meta.get::<ChunkRecord>(CF_CHUNKS, id.as_bytes())? {
                out.chunks.push(self.chunk_location(id, cr.size, 0, edge)?);
            }
        }
        Ok(out)
    }

    /// The configured edges, with a grant for their stats routes.
    pub(crate) fn list_edges(&self) -> ListEdges {
        let grant = presign::sign_edge_admin(
            &self.keyring,
            "stats",
            now_secs() + self.cfg.presign_ttl_secs,
        );
        ListEdges {
            edges: self
                .cfg
                .edges
                .iter()
                .map(|e| EdgeInfo {
                    zone: e.zone.clone(),
                    url: e.url.clone(),
                })
                .collect(),
            stats_query: grant.to_query(),
        }
    }

    pub(crate) fn delete_file(&self, bucket: &str, path: &str) -> Result<(), Error> {
        {
            let _g = self.lock();
            let rec = self.file_record(bucket, path)?;
            let mut t = Txn::new(&self.meta, now_ms());
            for c in &rec.chunks {
                t.add_ref(bucket, &c.id, -1)?;
            }
            t.delete(CF_FILES, &file_key(bucket, path));
            t.commit()?;
        }
        self.meta.sync()
    }

    pub(crate) fn rename(&self, req: &RenameRequest) -> Result<FileInfo, Error> {
        validate_path(&req.to)?;
        let rec = {
            let _g = self.lock();
            let rec = self.file_record(&req.bucket, &req.from)?;
            if req.from == req.to {
                return Ok(file_info(&req.bucket, &req.to, rec));
            }
            let mut t = Txn::new(&self.meta, now_ms());
            if let Some(old) = self
                .meta
                .get::<FileRecord>(CF_FILES, &file_key(&req.bucket, &req.to))?
            {
                for c in &old.chunks {
                    t.add_ref(&req.bucket, &c.id, -1)?;
                }
            }
            t.put(CF_FILES, &file_key(&req.bucket, &req.to), &rec);
            t.delete(CF_FILES, &file_key(&req.bucket, &req.from));
            t.commit()?;
            rec
        };
        self.meta.sync()?;
        Ok(file_info(&req.bucket, &req.to, rec))
    }

    // ---- uploads -------------------------------------------------------

    pub(crate) fn upload_record(&self, id: &UploadId, owner: &str) -> Result<UploadRecord, Error> {
        match self.meta.get::<UploadRecord>(CF_UPLOADS, id.as_bytes())? {
            Some(rec) if rec.owner == owner => Ok(rec),
            _ => Err(Error::NoSuchUpload(id.to_string())),
        }
    }

    pub(crate) fn check_chunk_ref(&self, c: &ChunkRef) -> Result<(), Error> {
        if c.size == 0 || c.size > self.cfg.max_chunk_size {
            return Err(Error::BadRequest(format!(
                "chunk {} has size {}; chunks must be 1 to {} bytes",
                c.id, c.size, self.cfg.max_chunk_size
            )));
        }
        Ok(())
    }

    pub(crate) fn create_upload(
        &self,
        owner: &str,
        req: &CreateUpload,
    ) -> Result<UploadPlan, Error> {
        validate_bucket(&req.bucket)?;
        validate_path(&req.path)?;
        self.head_bucket(&req.bucket)?;
        let replication = req.replication.unwrap_or(self.cfg.default_replication);
        if replication == 0 || replication > 16 {
            return Err(Error::BadRequest(format!(
                "replication must be 1 to 16, got {replication}"
            )));
        }
        if req.chunk_size == 0 || req.chunk_size > self.cfg.max_chunk_size {
            return Err(Error::BadRequest(format!(
                "chunk_size must be 1 to {} bytes, got {}",
                self.cfg.max_chunk_size, req.chunk_size
            )));
        }
        // A write needs a quorum of its replicas, not all of them: one dead
        // datanode never stops writes (repair adds the rest later).
        let live = self.nodes_read().writable_count(Instant::now());
        let quorum = self.write_quorum(replication);
        if live < quorum {
            return Err(Error::NotEnoughNodes { want: quorum, live });
        }
        let id = UploadId::random();
        let rec = UploadRecord {
            bucket: req.bucket.clone(),
            path: req.path.clone(),
            replication,
            chunk_size: req.chunk_size,
            created_ms: now_ms(),
            owner: owner.to_string(),
        };
        {
            let _g = self.lock();
            let mut t = Txn::new(&self.meta, now_ms());
            t.put(CF_UPLOADS, id.as_bytes(), &rec);
            t.commit()?;
        }
        let chunks = self.plan(&id, &rec, &req.chunks)?;
        Ok(UploadPlan {
            upload: id,
            replication,
            min_replicas: quorum as u8,
            chunks,
        })
    }

    pub(crate) fn add_chunks(
        &self,
        owner: &str,
        id: &UploadId,
        batch: &ChunkBatch,
    ) -> Result<UploadPlan, Error> {
        let rec = self.upload_record(id, owner)?;
        if !batch.receipts.is_empty() {
            let _g = self.lock();
            // Checked again under the lock: a commit or abort may have ended
            // the session since, and a reference taken for an ended session
            // would never be released.
            self.upload_record(id, owner)?;
            let mut t = Txn::new(&self.meta, now_ms());
            self.record_receipts(&mut t, id, &rec, &batch.receipts, &mut HashSet::new())?;
            t.commit()?;
        }
        let chunks = self.plan(id, &rec, &batch.chunks)?;
        Ok(UploadPlan {
            upload: *id,
            replication: rec.replication,
            min_replicas: self.write_quorum(rec.replication) as u8,
            chunks,
        })
    }

    /// Verifies receipts and records them: the replica is added to the
    /// chunk, and the session takes one reference on a chunk it has not
    /// referenced yet (added to `added`).
    pub(crate) fn record_receipts(
        &self,
        t: &mut Txn<'_>,
        id: &UploadId,
        rec: &UploadRecord,
        receipts: &[Receipt],
        added: &mut HashSet<ChunkId>,
    ) -> Result<(), Error> {
        let now = now_secs();
        // A receipt comes from a PUT of a URL valid for the presign TTL; it
        // is handed back as soon as it arrives.
        let max_age = self.cfg.presign_ttl_secs + blob_common::auth::MAX_SKEW_SECS;
        for r in receipts {
            r.verify(&self.keyring)?;
            if r.upload != Some(*id) {
                return Err(Error::BadRequest(format!(
                    "receipt for chunk {} was issued for another upload session",
                    r.chunk
                )));
            }
            if r.issued > now + blob_common::auth::MAX_SKEW_SECS
                || now.saturating_sub(r.issued) > max_age
            {
                return Err(Error::BadRequest(format!(
                    "receipt for chunk {} was issued at {} and is no longer valid (now {now}, receipts last {max_age} s)",
                    r.chunk, r.issued
                )));
            }
            self.check_chunk_ref(&ChunkRef {
                id: r.chunk,
                size: r.size,
            })?;
            let chunk = t.chunk_or_new(&r.chunk, r.size)?;
            if chunk.size != r.size {
                return Err(Error::BadRequest(format!(
                    "receipt says chunk {} has {} bytes, metadata says {}",
                    r.chunk, r.size, chunk.size
                )));
            }
            if !chunk.replicas.contains(&r.node) {
                chunk.replicas.push(r.node);
            }
            chunk.target = chunk.target.max(rec.replication);
            let key = upload_chunk_key(id, &r.chunk);
            if !added.contains(&r.chunk) && self.meta.get_raw(CF_UPLOAD_CHUNKS, &key)?.is_none() {
                t.batch.put_cf(self.meta.cf(CF_UPLOAD_CHUNKS), &key, []);
                t.add_ref(&rec.bucket, &r.chunk, 1)?;
                added.insert(r.chunk);
            }
        }
        Ok(())
    }

    /// Replicas of a chunk that count (their node is not dead).
    pub(crate) fn counted(&self, replicas: &[NodeId], now: Instant) -> Vec<NodeId> {
        let nodes = self.nodes_read();
        replicas
            .iter()
            .copied()
            .filter(|n| nodes.is_counted(n, now))
            .collect()
    }

    fn plan(
        &self,
        id: &UploadId,
        rec: &UploadRecord,
        chunks: &[ChunkRef],
    ) -> Result<Vec<ChunkPlan>, Error> {
        let now = Instant::now();
        let mut out = Vec::with_capacity(chunks.len());
        for c in chunks {
            self.check_chunk_ref(c)?;
            let existing = self
                .meta
                .get::<ChunkRecord>(CF_CHUNKS, c.id.as_bytes())?
                .filter(|r| r.size == c.size);
            let mut have = Vec::new();
            if let Some(cr) = &existing {
                let in_bucket = self
                    .meta
                    .get_count(CF_BUCKET_CHUNKS, &bucket_chunk_key(&rec.bucket, &c.id))?
                    > 0;
                let in_session = self
                    .meta
                    .get_raw(CF_UPLOAD_CHUNKS, &upload_chunk_key(id, &c.id))?
                    .is_some();
                let counted = self.counted(&cr.replicas, now);
                // A chunk this bucket already references is stored once it has
                // any live replica (keeping it at its factor is repair's job);
                // one this session sent must reach the session's write quorum.
                let enough = if in_bucket && !in_session {
                    !counted.is_empty()
                } else {
                    counted.len() >= self.write_quorum(rec.replication)
                };
                if (in_bucket || in_session) && enough {
                    out.push(ChunkPlan {
                        id: c.id,
                        put: None,
                    });
                    continue;
                }
                if in_session {
                    have = counted;
                }
            }
            let put = self.put_target(id, c, rec.replication as usize, &have, &[])?;
            out.push(ChunkPlan {
                id: c.id,
                put: Some(put),
            });
        }
        Ok(out)
    }

    fn put_target(
        &self,
        id: &UploadId,
        c: &ChunkRef,
        replication: usize,
        have: &[NodeId],
        exclude: &[NodeId],
    ) -> Result<PutTarget, Error> {
        let want = replication.saturating_sub(have.len()).max(1);
        let mut avoid: Vec<NodeId> = have.to_vec();
        avoid.extend_from_slice(exclude);
        // As many of the missing replicas as there are nodes for, as long as
        // the write can reach its quorum; fewer nodes than that is an error
        // (from `place`, which says whether the cluster is full).
        let quorum_left = self
            .write_quorum(replication as u8)
            .saturating_sub(have.len())
            .max(1);
        let chosen = {
            let nodes = self.nodes_read();
            let now = Instant::now();
            let free = nodes.writable_excluding(&avoid, now);
            let n = if free >= quorum_left {
                want.min(free)
            } else {
                quorum_left
            };
            nodes.place(n, &avoid, now, &mut rand::thread_rng())?
        };
        let pipeline: Vec<PipelineNode> = chosen
            .iter()
            .map(|(node, url)| PipelineNode {
                node: *node,
                url: url.clone(),
            })
            .collect();
        let claims = Claims {
            op: Op::Put,
            chunk: c.id,
            exp: now_secs() + self.cfg.presign_ttl_secs,
            kid: String::new(),
            size: Some(c.size),
            pipeline,
            upload: Some(*id),
            origins: vec![],
        };
        // Until the URL expires, garbage collection must not take this chunk
        // away from under the upload that is about to store it.
        let ttl_ms = self.cfg.presign_ttl_secs * 1000;
        let until = now_ms() + ttl_ms + ttl_ms.min(60_000);
        let mut t = Txn::new(&self.meta, now_ms());
        t.batch.put_cf(
            self.meta.cf(CF_PENDING),
            c.id.as_bytes(),
            until.to_le_bytes(),
        );
        t.commit()?;
        Ok(PutTarget {
            url: presign::url(&chosen[0].1, &self.keyring, &claims),
            targets: chosen.into_iter().map(|(n, _)| n).collect(),
        })
    }

    pub(crate) fn retarget(
        &self,
        owner: &str,
        id: &UploadId,
        req: &Retarget,
    ) -> Result<PutTarget, Error> {
        let rec = self.upload_record(id, owner)?;
        self.check_chunk_ref(&req.chunk)?;
        let now = Instant::now();
        let mut have = self.counted(&req.have, now);
        if let Some(cr) = self
            .meta
            .get::<ChunkRecord>(CF_CHUNKS, req.chunk.id.as_bytes())?
        {
            for n in self.counted(&cr.replicas, now) {
                if !have.contains(&n) {
                    have.push(n);
                }
            }
        }
        self.put_target(
            id,
            &req.chunk,
            rec.replication as usize,
            &have,
            &req.exclude,
        )
    }

    /// Stages one page of a session's chunk list for its commit.
    pub(crate) fn stage_manifest(
        &self,
        owner: &str,
        id: &UploadId,
        page: &ManifestPage,
    ) -> Result<(), Error> {
        if page.chunks.is_empty() || page.chunks.len() > MAX_PAGE {
            return Err(Error::BadRequest(format!(
                "a manifest page holds 1 to {MAX_PAGE} chunks, got {}",
                page.chunks.len()
            )));
        }
        for c in &page.chunks {
            self.check_chunk_ref(c)?;
        }
        let _g = self.lock();
        self.upload_record(id, owner)?;
        let mut t = Txn::new(&self.meta, now_ms());
        t.put(CF_MANIFEST, &manifest_key(id, page.start), &page.chunks);
        t.commit()
    }

    /// The chunk list a commit names: inline, or the staged manifest of
    /// exactly `n` chunks in contiguous pages.
    pub(crate) fn commit_chunks(
        &self,
        id: &UploadId,
        inline: &[ChunkRef],
        manifest: Option<u64>,
    ) -> Result<Vec<ChunkRef>, Error> {
        let Some(n) = manifest else {
            if inline.len() > MAX_PAGE {
                return Err(Error::BadRequest(format!(
                    "a commit lists at most {MAX_PAGE} chunks; stage longer lists with POST /v1/uploads/{{id}}/manifest"
                )));
            }
            return Ok(inline.to_vec());
        };
        if !inline.is_empty() {
            return Err(Error::BadRequest(
                "a commit names either its chunks or a staged manifest, not both".into(),
            ));
        }
        let mut out: Vec<ChunkRef> = Vec::new();
        let mut gap = None;
        self.meta
            .scan(CF_MANIFEST, id.as_bytes(), id.as_bytes(), |k, v| {
                let start = k
                    .get(16..24)
                    .and_then(|b| <[u8; 8]>::try_from(b).ok())
                    .map(u64::from_be_bytes);
                if start != Some(out.len() as u64) {
                    gap = start;
                    return Ok(false);
                }
                let page: Vec<ChunkRef> = serde_json::from_slice(v)
                    .map_err(|e| Error::Corrupt(format!("manifest page: {e}")))?;
                out.extend(page);
                Ok(out.len() as u64 <= n)
            })?;
        if gap.is_some() || out.len() as u64 != n {
            return Err(Error::BadRequest(format!(
                "the staged manifest holds {} contiguous chunks{}; the commit names {n}",
                out.len(),
                gap.map(|g| format!(" (next page starts at {g})"))
                    .unwrap_or_default()
            )));
        }
        Ok(out)
    }

    /// The shared core of every commit (of a file or of a multipart part):
    /// records the receipts handed in, checks that every chunk was sent in
    /// this session (with the session's replication) or is already in the
    /// bucket (with a live replica), and takes one reference per chunk
    /// position (a session's chunk needs its write quorum of live
    /// replicas).
    pub(crate) fn take_chunks(
        &self,
        t: &mut Txn<'_>,
        id: &UploadId,
        rec: &UploadRecord,
        chunks: &[ChunkRef],
        receipts: &[Receipt],
        now: Instant,
    ) -> Result<Taken, Error> {
        let mut added = HashSet::new();
        self.record_receipts(t, id, rec, receipts, &mut added)?;
        let mut short: Vec<(ChunkId, usize, usize)> = Vec::new();
        let mut under: Vec<ChunkId> = Vec::new();
        let mut size = 0u64;
        for c in chunks {
            self.check_chunk_ref(c)?;
            size += c.size;
            let in_session = added.contains(&c.id)
                || self
                    .meta
                    .get_raw(CF_UPLOAD_CHUNKS, &upload_chunk_key(id, &c.id))?
                    .is_some();
            let in_bucket = t.bucket_refs(&rec.bucket, &c.id)? > u64::from(in_session);
            let replicas = match t.chunk(&c.id)? {
                Some(cr) if cr.size == c.size => cr.replicas.clone(),
                Some(cr) => {
                    return Err(Error::BadRequest(format!(
                        "chunk {} has {} bytes, commit says {}",
                        c.id, cr.size, c.size
                    )))
                }
                None => Vec::new(),
            };
            let have = self.counted(&replicas, now).len();
            let want = if in_bucket {
                1
            } else {
                self.write_quorum(rec.replication)
            };
            if !(in_session || in_bucket) || have < want {
                short.push((c.id, have, want));
            }
            if have < rec.replication as usize {
                // Written on a quorum: repair brings it to its factor.
                under.push(c.id);
            }
        }
        if let Some(&(first, have, want)) = short.first() {
            return Err(Error::MissingReplicas {
                count: short.len(),
                first,
                have,
                want,
            });
        }
        for c in chunks {
            t.add_ref(&rec.bucket, &c.id, 1)?;
            if let Some(cr) = t.chunk(&c.id)? {
                cr.target = cr.target.max(rec.replication);
            }
        }
        Ok(Taken { size, added, under })
    }

    pub(crate) fn commit(
        &self,
        owner: &str,
        id: &UploadId,
        req: &CommitUpload,
    ) -> Result<FileInfo, Error> {
        let now = Instant::now();
        let (info, size) = {
            let _g = self.lock();
            let rec = self.upload_record(id, owner)?;
            self.head_bucket(&rec.bucket)?;
            let mut t = Txn::new(&self.meta, now_ms());
            let chunks = self.commit_chunks(id, &req.chunks, req.manifest)?;
            let Taken { size, added, under } =
                self.take_chunks(&mut t, id, &rec, &chunks, &req.receipts, now)?;
            let fkey = file_key(&rec.bucket, &rec.path);
            if let Some(old) = self.meta.get::<FileRecord>(CF_FILES, &fkey)? {
                for c in &old.chunks {
                    t.add_ref(&rec.bucket, &c.id, -1)?;
                }
            }
            self.drop_session(&mut t, id, &rec, &added)?;

            let file = FileRecord {
                size,
                created_ms: now_ms(),
                version: *id,
                replication: rec.replication,
                chunk_size: rec.chunk_size,
                chunks,
                meta: req.meta.clone(),
            };
            t.put(CF_FILES, &fkey, &file);
            t.commit()?;
            self.enqueue(under);
            (file_info(&rec.bucket, &rec.path, file), size)
        };
        self.meta.sync()?;
        self.metrics.commits.inc();
        self.metrics.committed_bytes.inc_by(size);
        Ok(info)
    }

    /// Releases a session's references and deletes it (inside a txn).
    /// Releases a session's references and deletes it (inside a txn).
    /// `added` are the chunks whose session references this same txn took
    /// (receipts handed in at commit): they are in the batch, not yet in
    /// the store, so the scan cannot see them.
    pub(crate) fn drop_session(
        &self,
        t: &mut Txn<'_>,
        id: &UploadId,
        rec: &UploadRecord,
        added: &HashSet<ChunkId>,
    ) -> Result<(), Error> {
        let mut held: Vec<ChunkId> = added.iter().copied().collect();
        self.meta
            .scan(CF_UPLOAD_CHUNKS, id.as_bytes(), id.as_bytes(), |k, _| {
                if let Some(c) = ChunkId::from_slice(&k[16..]) {
                    if !added.contains(&c) {
                        held.push(c);
                    }
                }
                Ok(true)
            })?;
        for c in held {
            t.add_ref(&rec.bucket, &c, -1)?;
            t.delete(CF_UPLOAD_CHUNKS, &upload_chunk_key(id, &c));
        }
        let mut pages = Vec::new();
        self.meta
            .scan(CF_MANIFEST, id.as_bytes(), id.as_bytes(), |k, _| {
                pages.push(k.to_vec());
                Ok(true)
            })?;
        for k in pages {
            t.delete(CF_MANIFEST, &k);
        }
        t.delete(CF_UPLOADS, id.as_bytes());
        Ok(())
    }

    pub(crate) fn abort(&self, owner: &str, id: &UploadId) -> Result<(), Error> {
        {
            let _g = self.lock();
            let rec = self.upload_record(id, owner)?;
            let mut t = Txn::new(&self.meta, now_ms());
            self.drop_session(&mut t, id, &rec, &HashSet::new())?;
            t.commit()?;
        }
        self.meta.sync()
    }

    /// Records a replica its holder found corrupt (and quarantined), takes
    /// it out of the chunk's replica set and queues the chunk for repair.
    fn drop_corrupt_replica(
        &self,
        chunk: &ChunkId,
        node: &NodeId,
        reason: &str,
    ) -> Result<(), Error> {
        let mut key = chunk.as_bytes().to_vec();
        key.extend_from_slice(node.as_bytes());
        {
            let _g = self.lock();
            let mut t = Txn::new(&self.meta, now_ms());
            t.put(
                CF_CORRUPT,
                &key,
                &CorruptRecord {
                    reported_ms: now_ms(),
                    reason: reason.chars().take(500).collect(),
                },
            );
            if let Some(rec) = t.chunk(chunk)? {
                rec.replicas.retain(|n| n != node);
            }
            t.commit()?;
        }
        self.enqueue([*chunk]);
        Ok(())
    }

    /// Clears corrupt marks of a chunk once it is at its replication again.
    pub(crate) fn clear_corrupt_marks(
        &self,
        t: &mut Txn<'_>,
        chunk: &ChunkId,
    ) -> Result<(), Error> {
        let mut keys = Vec::new();
        self.meta
            .scan(CF_CORRUPT, chunk.as_bytes(), chunk.as_bytes(), |k, _| {
                keys.push(k.to_vec());
                Ok(true)
            })?;
        for k in keys {
            t.delete(CF_CORRUPT, &k);
        }
        Ok(())
    }

    // ---- datanodes -----------------------------------------------------

    pub(crate) fn heartbeat(&self, hb: Heartbeat) -> Result<HeartbeatResponse, Error> {
        self.tick_clock();
        let now = Instant::now();
        let node = hb.node;
        let url = hb.url.clone();
        let (changed, ask, live) = {
            let mut nodes = self.nodes_write();
            let changed = nodes.heartbeat(hb, now);
            let ask = nodes.should_ask_report(&node, now);
            (changed, ask, nodes.writable_count(now))
        };
        self.metrics.live_nodes.set(live as i64);
        if changed {
            tracing::info!(node = %node, url = %url, "datanode registered");
            let _g = self.lock();
            let old: Option<NodeRecord> = self.meta.get(CF_DATANODES, node.as_bytes())?;
            let rec = NodeRecord {
                url,
                registered_ms: old.as_ref().map_or(now_ms(), |r| r.registered_ms),
                admin: old.map(|r| r.admin).unwrap_or_default(),
            };
            let mut t = Txn::new(&self.meta, now_ms());
            t.put(CF_DATANODES, node.as_bytes(), &rec);
            t.commit()?;
        }
        let mut commands = self.take_commands(&node);
        if ask {
            commands.push(Command::Report);
        }
        Ok(HeartbeatResponse { commands })
    }

    pub(crate) fn chunk_report(&self, report: &ChunkReport) -> Result<(), Error> {
        let mut orphans = Vec::new();
        let mut recheck = Vec::new();
        let mut received = Vec::new();
        {
            let _g = self.lock();
            let mut t = Txn::new(&self.meta, now_ms());
            for c in &report.chunks {
                match t.chunk(&c.id)? {
                    Some(rec) if rec.size == c.size => {
                        if !rec.replicas.contains(&report.node) {
                            rec.replicas.push(report.node);
                            received.push(c.id);
                            // A replica the namenode did not count (a copy,
                            // or one a datanode kept because it was written
                            // just before its trim): the chunk may now have
                            // one too many.
                            recheck.push(c.id);
                        }
                        if report.full {
                            // The node may be back from the dead: its chunks
                            // may now have too many replicas.
                            recheck.push(c.id);
                        }
                    }
                    _ => orphans.push(c.id),
                }
            }
            for id in &report.deleted {
                if let Some(rec) = t.chunk(id)? {
                    rec.replicas.retain(|n| n != &report.node);
                    recheck.push(*id);
                }
            }
            if report.full {
                // Replicas the metadata places on this node (within the
                // page's range) that it no longer has.
                let range = report.range.clone().unwrap_or_default();
                if let Some(c) = report.chunks.iter().find(|c| !range.contains(&c.id)) {
                    return Err(Error::BadRequest(format!(
                        "full report page lists chunk {} outside its range",
                        c.id
                    )));
                }
                let held: HashSet<ChunkId> = report.chunks.iter().map(|c| c.id).collect();
                for id in self.chunks_on_range(&report.node, &range)? {
                    if !held.contains(&id) {
                        if let Some(rec) = t.chunk(&id)? {
                            rec.replicas.retain(|n| n != &report.node);
                            recheck.push(id);
                        }
                    }
                }
            }
            t.commit()?;
        }
        self.settle_claims(&report.node, &report.verified, &report.corrupt);
        for id in &report.corrupt {
            tracing::warn!(chunk = %id.short(), node = %report.node, "datanode found a corrupt replica");
            self.metrics.corrupt_replicas.inc();
            self.drop_corrupt_replica(id, &report.node, "found corrupt by the datanode")?;
        }
        self.note_received(&report.node, &received);
        for c in &orphans {
            self.note_orphan(report.node, *c);
        }
        self.enqueue(recheck);
        let last_page = report.range.as_ref().is_none_or(|r| r.end.is_none());
        if report.full && last_page {
            self.nodes_write().mark_reported(&report.node);
            self.metrics.full_reports.inc();
        } else if !report.full {
            self.metrics.incremental_reports.inc();
        }
        if report.full {
            tracing::info!(node = %report.node, chunks = report.chunks.len(), orphans = orphans.len(), last_page, "full chunk report");
        }
        self.metrics.orphan_reports.inc_by(orphans.len() as u64);
        Ok(())
    }

    fn node_status(
        &self,
        id: NodeId,
        s: &crate::nodes::NodeState,
        l: Liveness,
        now: Instant,
    ) -> NodeStatus {
        let hb = s.heartbeat.as_ref();
        let state = match (s.admin, l) {
            (AdminState::Decommissioned, _) => "decommissioned",
            (AdminState::Decommissioning, _) => "decommissioning",
            (_, Liveness::Live) => "live",
            (_, Liveness::Stale) => "stale",
            (_, Liveness::Dead) => "dead",
        };
        NodeStatus {
            node: id,
            url: s.url.clone(),
            state: state.into(),
            heartbeat_age_ms: s
                .last_seen
                .map(|t| now.saturating_duration_since(t).as_millis() as u64),
            capacity: hb.map_or(0, |h| h.capacity),
            used: hb.map_or(0, |h| h.used),
            available: hb.map_or(0, |h| h.available),
            chunk_count: hb.map_or(0, |h| h.chunk_count),
            load: hb.map_or(0, |h| h.load),
            read_only: hb.is_some_and(|h| h.read_only),
        }
    }

    pub(crate) fn list_nodes(&self) -> ListNodes {
        let now = Instant::now();
        let nodes = self.nodes_read();
        let nodes = nodes
            .all(now)
            .into_iter()
            .map(|(id, s, l)| self.node_status(id, s, l, now))
            .collect();
        ListNodes { nodes }
    }

    /// `admin status`: nodes plus chunk health, from a scan of every chunk.
    pub(crate) fn cluster_status(&self) -> Result<ClusterStatus, Error> {
        let now = Instant::now();
        let mut st = ClusterStatus {
            nodes: self.list_nodes().nodes,
            ..Default::default()
        };
        self.meta.scan(CF_CHUNKS, b"", b"", |_, v| {
            let rec: ChunkRecord = serde_json::from_slice(v)
                .map_err(|e| Error::Corrupt(format!("chunk record: {e}")))?;
            st.chunks += 1;
            if rec.refs == 0 {
                st.garbage += 1;
                return Ok(true);
            }
            let counted = self.counted(&rec.replicas, now).len();
            if counted == 0 {
                st.missing += 1;
            } else if counted < self.target_of(&rec) {
                st.under_replicated += 1;
            }
            Ok(true)
        })?;
        self.meta.scan(CF_CORRUPT, b"", b"", |_, _| {
            st.corrupt += 1;
            Ok(true)
        })?;
        st.copies_in_flight = self.repair_counts().0;
        Ok(st)
    }

    /// `admin fsck`: every file under a bucket/prefix, with its chunks'
    /// health.
    pub(crate) fn fsck(&self, q: &FsckQuery) -> Result<FsckReport, Error> {
        let now = Instant::now();
        let buckets: Vec<String> = match &q.bucket {
            Some(b) => {
                self.head_bucket(b)?;
                vec![b.clone()]
            }
            None => self
                .list_buckets()?
                .buckets
                .into_iter()
                .map(|b| b.name)
                .collect(),
        };
        let mut report = FsckReport::default();
        for bucket in buckets {
            let prefix = file_key(&bucket, q.prefix.as_deref().unwrap_or(""));
            let base = file_key(&bucket, "").len();
            let mut files: Vec<(String, FileRecord)> = Vec::new();
            self.meta.scan(CF_FILES, &prefix, &prefix, |k, v| {
                let rec: FileRecord = serde_json::from_slice(v)
                    .map_err(|e| Error::Corrupt(format!("file record: {e}")))?;
                files.push((String::from_utf8_lossy(&k[base..]).into_owned(), rec));
                Ok(true)
            })?;
            for (path, rec) in files {
                report.files += 1;
                let mut f = FsckFile {
                    bucket: bucket.clone(),
                    path,
                    size: rec.size,
                    replication: rec.replication,
                    missing: vec![],
                    under_replicated: vec![],
                    corrupt: vec![],
                };
                for c in &rec.chunks {
                    report.chunks += 1;
                    let replicas = self
                        .meta
                        .get::<ChunkRecord>(CF_CHUNKS, c.id.as_bytes())?
                        .map(|r| r.replicas)
                        .unwrap_or_default();
                    let counted = self.counted(&replicas, now).len();
                    if counted == 0 {
                        f.missing.push(c.id);
                    } else if counted < usize::from(rec.replication) {
                        f.under_replicated.push(c.id);
                    }
                    let mut corrupt = false;
                    self.meta
                        .scan(CF_CORRUPT, c.id.as_bytes(), c.id.as_bytes(), |_, _| {
                            corrupt = true;
                            Ok(false)
                        })?;
                    if corrupt {
                        f.corrupt.push(c.id);
                    }
                }
                if !f.missing.is_empty() {
                    report.missing_files += 1;
                } else if !f.under_replicated.is_empty() {
                    report.under_replicated_files += 1;
                }
                if !f.corrupt.is_empty() {
                    report.corrupt_files += 1;
                }
                if !(f.missing.is_empty() && f.under_replicated.is_empty() && f.corrupt.is_empty())
                {
                    report.problems.push(f);
                }
            }
        }
        Ok(report)
    }

    /// Starts draining a node.
    pub(crate) fn decommission(&self, node: &NodeId) -> Result<NodeStatus, Error> {
        self.set_admin_state(node, AdminState::Decommissioning)?;
        tracing::info!(node = %node, "decommission started");
        let now = Instant::now();
        let nodes = self.nodes_read();
        let s = nodes
            .get(node)
            .ok_or_else(|| Error::BadRequest(format!("unknown datanode {node}")))?;
        Ok(self.node_status(*node, s, nodes.liveness(s, now), now))
    }

    pub(crate) fn metrics_text(&self) -> String {
        self.metrics.wal_syncs.set(self.meta.sync_count() as i64);
        self.metrics
            .suspect_replicas
            .set(self.claims.suspects() as i64);
        self.metrics.render()
    }
}

#[cfg(test)]
mod tests {
    use super::prefix_successor;

    #[test]
    fn prefix_successor_skips_everything_under_the_prefix() {
        assert_eq!(prefix_successor(b"ab/"), b"ab0".to_vec());
        assert_eq!(prefix_successor(b"a\xff"), b"b".to_vec());
        assert!(prefix_successor(b"ab/") > b"ab/zzzz".to_vec());
    }
}
