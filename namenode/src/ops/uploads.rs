//! Upload sessions: open one, plan where each chunk goes (or learn it is
//! already stored), retarget a failed pipeline, stage a long chunk list,
//! commit (the file becomes visible atomically, replacing any previous
//! version) or abort. A session holds one reference per chunk it stored, so
//! garbage collection leaves its chunks alone until it ends.

use std::collections::HashSet;
use std::time::Instant;

use blob_common::names::{validate_bucket, validate_path};
use blob_common::presign::{self, Claims, Op, PipelineNode, Receipt};
use blob_common::proto::namenode::*;
use blob_common::{now_ms, now_secs, ChunkId, NodeId, UploadId};

use super::files::{check_condition, file_info};
use crate::db::*;
use crate::error::Error;
use crate::Namenode;

/// What a commit took: the bytes, the chunks whose session references the
/// txn took (see [`Namenode::drop_session`]), and the chunks written on a
/// quorum only, for repair once the txn is written.
pub(crate) struct Taken {
    pub(crate) size: u64,
    pub(crate) added: HashSet<ChunkId>,
    pub(crate) under: Vec<ChunkId>,
}

impl Namenode {
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
            t.put(CF_UPLOADS, id.as_bytes(), &rec)?;
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

    /// Refuses a batch that, with what its session planned before, would
    /// take the bucket past its quota: checked before any byte moves. The
    /// tally counts the session's chunks as new bytes less the file it
    /// replaces; the commit checks the exact change.
    fn check_planned(
        &self,
        id: &UploadId,
        rec: &UploadRecord,
        chunks: &[ChunkRef],
    ) -> Result<(), Error> {
        let Some(bucket) = self
            .meta
            .get::<BucketRecord>(CF_BUCKETS, rec.bucket.as_bytes())?
        else {
            return Ok(());
        };
        let quota = bucket.quota;
        if quota.max_bytes.is_none() && quota.max_objects.is_none() {
            return Ok(());
        }
        let usage = decode_usage(self.meta.get_raw(CF_USAGE, rec.bucket.as_bytes())?);
        let replaced = self
            .meta
            .get::<FileRecord>(CF_FILES, &file_key(&rec.bucket, &rec.path))?
            .filter(|f| !f.delete_marker);
        let batch: u64 = chunks.iter().map(|c| c.size).sum();
        let mut planned = self.planned.lock().unwrap_or_else(|p| p.into_inner());
        let tally = planned.entry(*id).or_default();
        let after =
            (usage.bytes + *tally + batch).saturating_sub(replaced.as_ref().map_or(0, |f| f.size));
        if let Some(max) = quota.max_bytes.filter(|m| after > *m) {
            planned.remove(id);
            return Err(Error::QuotaExceeded(format!(
                "bucket {} holds {} of its {max} bytes; this upload needs at least {} more",
                rec.bucket,
                usage.bytes,
                after - usage.bytes
            )));
        }
        if let Some(max) = quota
            .max_objects
            .filter(|m| replaced.is_none() && usage.objects >= *m)
        {
            planned.remove(id);
            return Err(Error::QuotaExceeded(format!(
                "bucket {} holds {} of its {max} objects",
                rec.bucket, usage.objects
            )));
        }
        *tally += batch;
        Ok(())
    }

    fn plan(
        &self,
        id: &UploadId,
        rec: &UploadRecord,
        chunks: &[ChunkRef],
    ) -> Result<Vec<ChunkPlan>, Error> {
        self.check_planned(id, rec, chunks)?;
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
        t.put(CF_MANIFEST, &manifest_key(id, page.start), &page.chunks)?;
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
            let sealed = blob_common::seal::check_meta(&req.meta).map_err(Error::BadRequest)?;
            let size = file_size(size, sealed, &chunks)?;
            let fkey = file_key(&rec.bucket, &rec.path);
            let old = self.meta.get::<FileRecord>(CF_FILES, &fkey)?;
            check_condition(
                &rec.bucket,
                &rec.path,
                old.as_ref(),
                req.condition.as_ref(),
                rec.created_ms,
            )?;
            let mode = self.versioning(&rec.bucket)?;
            let versioned = self.retire(&mut t, &rec.bucket, &rec.path, old.as_ref(), mode)?;
            self.drop_session(&mut t, id, &rec, &added)?;

            let file = FileRecord {
                size,
                created_ms: super::versions::next_version_ms(old.as_ref()),
                version: *id,
                replication: rec.replication,
                chunk_size: rec.chunk_size,
                chunks,
                meta: req.meta.clone(),
                versioned,
                delete_marker: false,
            };
            t.put(CF_FILES, &fkey, &file)?;
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
            t.delete(CF_UPLOAD_CHUNKS, &upload_chunk_key(id, &c))?;
        }
        let mut pages = Vec::new();
        self.meta
            .scan(CF_MANIFEST, id.as_bytes(), id.as_bytes(), |k, _| {
                pages.push(k.to_vec());
                Ok(true)
            })?;
        for k in pages {
            t.delete(CF_MANIFEST, &k)?;
        }
        t.delete(CF_UPLOADS, id.as_bytes())?;
        self.planned
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
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
}

/// The size a file reports: its stored bytes, or for a sealed file the
/// plaintext they hold (every chunk must then have a sealed size).
pub(crate) fn file_size(stored: u64, sealed: bool, chunks: &[ChunkRef]) -> Result<u64, Error> {
    if !sealed {
        return Ok(stored);
    }
    blob_common::seal::plain_total(chunks.iter().map(|c| c.size)).ok_or_else(|| {
        Error::BadRequest("a sealed file's chunk has a size no sealed chunk can have".into())
    })
}
