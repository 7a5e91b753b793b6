//! The chunk → replica map: where a file's chunks can be read, receipts
//! that add replicas, datanode chunk reports (full, paged by id range, and
//! incremental) that add and remove them, and replicas their holder found
//! corrupt.

use std::collections::HashSet;
use std::time::Instant;

use blob_common::presign::{self, Claims, Op, PipelineNode, Receipt};
use blob_common::proto::heartbeat::ChunkReport;
use blob_common::proto::namenode::*;
use blob_common::{now_ms, now_secs, ChunkId, NodeId, UploadId};

use super::files::file_info;
use crate::db::*;
use crate::error::Error;
use crate::Namenode;

impl Namenode {
    /// A file's chunks with their URLs: all of them, or with `limit` the
    /// page of at most that many (capped at [`MAX_PAGE`]) from `first`, the
    /// file's own chunk list then left out of the answer.
    pub(crate) fn locations(&self, q: &FileQuery) -> Result<FileLocations, Error> {
        let mut rec = self.file_version(&q.bucket, &q.path, q.version.as_deref())?;
        if q.unless_version == Some(rec.version) {
            rec.chunks = Vec::new();
            return Ok(FileLocations {
                file: file_info(&q.bucket, &q.path, rec),
                chunks: Vec::new(),
                next: None,
                unchanged: true,
            });
        }
        let edge = match q.direct {
            true => None,
            false => crate::edges::pick(&self.cfg.edges, q.zone.as_deref()),
        };
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
            unchanged: false,
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
            )?;
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
            t.delete(CF_CORRUPT, &k)?;
        }
        Ok(())
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
}
