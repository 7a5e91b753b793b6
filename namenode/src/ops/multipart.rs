//! S3 multipart uploads in the namenode, and their expiry. Every operation
//! only writes metadata: a completed upload is a new file record whose chunk
//! list reuses the parts' chunks, and references move with it in one
//! [`Txn`].
//!
//! A part is uploaded as a normal session whose commit names the part
//! ([`CommitUpload::part`]); the part record then holds one reference per
//! chunk position, as a file does. Completing hands those references to the
//! file (parts not named lose theirs); aborting or expiring drops them.

use std::collections::{BTreeMap, HashSet};
use std::time::Instant;

use blob_common::names::{validate_bucket, validate_path};
use blob_common::proto::multipart::*;
use blob_common::proto::namenode::{ChunkRef, CommitUpload, FileInfo};
use blob_common::{now_ms, UploadId};

use super::files::{check_condition, file_info};
use super::uploads::Taken;
use crate::db::*;
use crate::error::Error;
use crate::Namenode;

fn part_key(upload: &UploadId, number: u32) -> Vec<u8> {
    let mut k = upload.as_bytes().to_vec();
    k.extend_from_slice(&number.to_be_bytes());
    k
}

fn check_part_number(number: u32) -> Result<(), Error> {
    if number == 0 || number > MAX_PARTS {
        return Err(Error::BadRequest(format!(
            "part number {number} is out of range: it must be 1 to {MAX_PARTS}"
        )));
    }
    Ok(())
}

fn md5_bytes(etag: &str) -> Option<[u8; 16]> {
    let hex_str = etag.trim_matches('"');
    let v = hex::decode(hex_str).ok()?;
    v.try_into().ok()
}

fn info(id: UploadId, rec: &MultipartRecord) -> MultipartInfo {
    MultipartInfo {
        upload: id,
        bucket: rec.bucket.clone(),
        path: rec.path.clone(),
        created_ms: rec.created_ms,
        meta: rec.meta.clone(),
    }
}

impl Namenode {
    fn multipart_record(&self, id: &UploadId, owner: &str) -> Result<MultipartRecord, Error> {
        match self
            .meta
            .get::<MultipartRecord>(CF_MULTIPART, id.as_bytes())?
        {
            Some(rec) if rec.owner == owner => Ok(rec),
            _ => Err(Error::NoSuchUpload(id.to_string())),
        }
    }

    fn parts_of(&self, id: &UploadId) -> Result<Vec<(u32, PartRecord)>, Error> {
        let mut out = Vec::new();
        self.meta
            .scan(CF_MULTIPART_PARTS, id.as_bytes(), id.as_bytes(), |k, v| {
                let number = k
                    .get(16..20)
                    .and_then(|b| <[u8; 4]>::try_from(b).ok())
                    .map(u32::from_be_bytes)
                    .ok_or_else(|| Error::Corrupt("multipart part key".into()))?;
                let rec: PartRecord = serde_json::from_slice(v)
                    .map_err(|e| Error::Corrupt(format!("part record: {e}")))?;
                out.push((number, rec));
                Ok(true)
            })?;
        Ok(out)
    }

    pub(crate) fn create_multipart(
        &self,
        owner: &str,
        req: &CreateMultipart,
    ) -> Result<MultipartInfo, Error> {
        validate_bucket(&req.bucket)?;
        validate_path(&req.path)?;
        self.head_bucket(&req.bucket)?;
        blob_common::seal::check_meta(&req.meta).map_err(Error::BadRequest)?;
        let id = UploadId::random();
        let rec = MultipartRecord {
            bucket: req.bucket.clone(),
            path: req.path.clone(),
            meta: req.meta.clone(),
            created_ms: now_ms(),
            owner: owner.to_string(),
        };
        {
            let _g = self.lock();
            let mut t = Txn::new(&self.meta, now_ms());
            t.put(CF_MULTIPART, id.as_bytes(), &rec)?;
            t.commit()?;
        }
        self.meta.sync()?;
        Ok(info(id, &rec))
    }

    pub(crate) fn list_multipart(
        &self,
        owner: &str,
        q: &ListMultipartQuery,
    ) -> Result<ListMultipart, Error> {
        self.head_bucket(&q.bucket)?;
        let limit = q.limit.unwrap_or(1000).clamp(1, 1000);
        let prefix = q.prefix.clone().unwrap_or_default();
        let mut all = Vec::new();
        self.meta.scan(CF_MULTIPART, b"", b"", |k, v| {
            let rec: MultipartRecord = serde_json::from_slice(v)
                .map_err(|e| Error::Corrupt(format!("multipart record: {e}")))?;
            if let Some(id) = UploadId::from_slice(k) {
                if rec.bucket == q.bucket && rec.owner == owner && rec.path.starts_with(&prefix) {
                    all.push(info(id, &rec));
                }
            }
            Ok(true)
        })?;
        all.sort_by(|a, b| {
            (a.path.as_bytes(), a.upload.to_string())
                .cmp(&(b.path.as_bytes(), b.upload.to_string()))
        });
        if let Some(after) = &q.after {
            let after_id = q.after_upload.clone().unwrap_or_default();
            all.retain(|u| {
                u.path.as_str() > after.as_str()
                    || (u.path == *after && !after_id.is_empty() && u.upload.to_string() > after_id)
            });
        }
        let truncated = all.len() > limit;
        all.truncate(limit);
        Ok(ListMultipart {
            uploads: all,
            truncated,
        })
    }

    pub(crate) fn list_parts(
        &self,
        owner: &str,
        id: &UploadId,
        q: &ListPartsQuery,
    ) -> Result<ListParts, Error> {
        let rec = self.multipart_record(id, owner)?;
        let limit = q.limit.unwrap_or(1000).clamp(1, 1000);
        let after = q.after.unwrap_or(0);
        let mut parts: Vec<PartInfo> = self
            .parts_of(id)?
            .into_iter()
            .filter(|(n, _)| *n > after)
            .map(|(number, p)| PartInfo {
                number,
                etag: p.etag,
                size: p.size,
                created_ms: p.created_ms,
            })
            .collect();
        let truncated = parts.len() > limit;
        parts.truncate(limit);
        Ok(ListParts {
            upload: info(*id, &rec),
            parts,
            truncated,
        })
    }

    /// Puts a part record (replacing and releasing a previous one of the
    /// same number) in `t`; the caller has added the new part's references.
    fn put_part(
        &self,
        t: &mut Txn<'_>,
        id: &UploadId,
        bucket: &str,
        number: u32,
        part: &PartRecord,
    ) -> Result<(), Error> {
        let key = part_key(id, number);
        if let Some(old) = self.meta.get::<PartRecord>(CF_MULTIPART_PARTS, &key)? {
            for c in &old.chunks {
                t.add_ref(bucket, &c.id, -1)?;
            }
        }
        t.put(CF_MULTIPART_PARTS, &key, part)?;
        Ok(())
    }

    /// Commits an upload session into a part: the same replica checks as a
    /// file commit, then a part record instead of a file.
    pub(crate) fn commit_part(
        &self,
        owner: &str,
        id: &UploadId,
        req: &CommitUpload,
        target: PartTarget,
    ) -> Result<FileInfo, Error> {
        check_part_number(target.number)?;
        let etag = req
            .meta
            .get("etag")
            .filter(|e| md5_bytes(e).is_some())
            .cloned()
            .ok_or_else(|| Error::BadRequest("a part commit needs meta.etag, a hex MD5".into()))?;
        let now = Instant::now();
        let (info, size) = {
            let _g = self.lock();
            let rec = self.upload_record(id, owner)?;
            let mp = self.multipart_record(&target.upload, owner)?;
            if mp.bucket != rec.bucket {
                return Err(Error::BadRequest(
                    "the session and the multipart upload are in different buckets".into(),
                ));
            }
            let mut t = Txn::new(&self.meta, now_ms());
            let chunks = self.commit_chunks(id, &req.chunks, req.manifest)?;
            let Taken { size, added, under } =
                self.take_chunks(&mut t, id, &rec, &chunks, &req.receipts, now)?;
            let sealed = blob_common::seal::check_meta(&req.meta).map_err(Error::BadRequest)?;
            if blob_common::seal::seal_meta(&req.meta) != blob_common::seal::seal_meta(&mp.meta) {
                return Err(Error::BadRequest(
                    "a part must be sealed exactly as its multipart upload says".into(),
                ));
            }
            let size = super::uploads::file_size(size, sealed, &chunks)?;
            let part = PartRecord {
                etag: etag.trim_matches('"').to_ascii_lowercase(),
                size,
                created_ms: now_ms(),
                replication: rec.replication,
                chunk_size: rec.chunk_size,
                chunks,
            };
            self.put_part(&mut t, &target.upload, &rec.bucket, target.number, &part)?;
            self.drop_session(&mut t, id, &rec, &added)?;
            t.commit()?;
            self.enqueue(under);
            let file = FileRecord {
                size,
                created_ms: part.created_ms,
                version: target.upload,
                replication: rec.replication,
                chunk_size: rec.chunk_size,
                chunks: part.chunks,
                meta: BTreeMap::from([("etag".to_string(), part.etag)]),
                versioned: false,
                delete_marker: false,
            };
            (file_info(&mp.bucket, &mp.path, file), size)
        };
        self.meta.sync()?;
        self.metrics.commits.inc();
        self.metrics.committed_bytes.inc_by(size);
        Ok(info)
    }

    /// Part `number` becomes the whole source file, sharing its chunks.
    pub(crate) fn copy_part(
        &self,
        owner: &str,
        id: &UploadId,
        req: &CopyPart,
    ) -> Result<PartInfo, Error> {
        check_part_number(req.number)?;
        let part = {
            let _g = self.lock();
            let mp = self.multipart_record(id, owner)?;
            let src = self.file_record(&req.src_bucket, &req.src_path)?;
            if blob_common::seal::seal_meta(&src.meta) != blob_common::seal::seal_meta(&mp.meta) {
                return Err(Error::NotCopyable(format!(
                    "{}/{} is sealed with another key than the upload",
                    req.src_bucket, req.src_path
                )));
            }
            let etag = src
                .meta
                .get("etag")
                .filter(|e| md5_bytes(e).is_some())
                .cloned()
                .ok_or_else(|| {
                    Error::NotCopyable(format!(
                        "{}/{} has no single-part MD5",
                        req.src_bucket, req.src_path
                    ))
                })?;
            let mut t = Txn::new(&self.meta, now_ms());
            for c in &src.chunks {
                t.add_ref(&mp.bucket, &c.id, 1)?;
            }
            let part = PartRecord {
                etag,
                size: src.size,
                created_ms: now_ms(),
                replication: src.replication,
                chunk_size: src.chunk_size,
                chunks: src.chunks,
            };
            self.put_part(&mut t, id, &mp.bucket, req.number, &part)?;
            t.commit()?;
            part
        };
        self.meta.sync()?;
        Ok(PartInfo {
            number: req.number,
            etag: part.etag,
            size: part.size,
            created_ms: part.created_ms,
        })
    }

    pub(crate) fn complete_multipart(
        &self,
        owner: &str,
        id: &UploadId,
        req: &CompleteMultipart,
    ) -> Result<FileInfo, Error> {
        if req.parts.is_empty() {
            return Err(Error::MalformedComplete(
                "a complete request must name at least one part".into(),
            ));
        }
        let file = {
            let _g = self.lock();
            let mp = self.multipart_record(id, owner)?;
            self.head_bucket(&mp.bucket)?;
            let stored: BTreeMap<u32, PartRecord> = self.parts_of(id)?.into_iter().collect();
            let mut last = 0u32;
            let mut md5s = Vec::with_capacity(req.parts.len());
            let mut used = HashSet::new();
            for (i, p) in req.parts.iter().enumerate() {
                if p.number <= last {
                    return Err(Error::InvalidPartOrder(format!(
                        "part {} follows part {last}: parts must be in ascending order",
                        p.number
                    )));
                }
                last = p.number;
                let Some(rec) = stored.get(&p.number) else {
                    return Err(Error::InvalidPart(format!(
                        "part {} was not uploaded",
                        p.number
                    )));
                };
                let want = p.etag.trim_matches('"').to_ascii_lowercase();
                let Some(md5) = md5_bytes(&rec.etag).filter(|_| want == rec.etag) else {
                    return Err(Error::InvalidPart(format!(
                        "part {}: ETag {:?} does not match the uploaded part",
                        p.number, p.etag
                    )));
                };
                if i + 1 < req.parts.len() && rec.size < req.min_part_size {
                    return Err(Error::EntityTooSmall(format!(
                        "part {} has {} bytes; every part but the last needs at least {}",
                        p.number, rec.size, req.min_part_size
                    )));
                }
                md5s.push(md5);
                used.insert(p.number);
            }
            let mut t = Txn::new(&self.meta, now_ms());
            let key = file_key(&mp.bucket, &mp.path);
            let old = self.meta.get::<FileRecord>(CF_FILES, &key)?;
            check_condition(
                &mp.bucket,
                &mp.path,
                old.as_ref(),
                req.condition.as_ref(),
                mp.created_ms,
            )?;
            let mut chunks: Vec<ChunkRef> = Vec::new();
            let mut sizes = Vec::with_capacity(req.parts.len());
            let mut size = 0u64;
            let mut replication = u8::MAX;
            let mut chunk_size = 0u64;
            // Named parts hand their references to the file; the others
            // release theirs.
            for (number, rec) in &stored {
                if used.contains(number) {
                    chunks.extend_from_slice(&rec.chunks);
                    sizes.push(rec.size);
                    size += rec.size;
                    replication = replication.min(rec.replication);
                    chunk_size = chunk_size.max(rec.chunk_size);
                } else {
                    for c in &rec.chunks {
                        t.add_ref(&mp.bucket, &c.id, -1)?;
                    }
                }
                t.delete(CF_MULTIPART_PARTS, &part_key(id, *number))?;
            }
            let mode = self.versioning(&mp.bucket)?;
            let versioned = self.retire(&mut t, &mp.bucket, &mp.path, old.as_ref(), mode)?;
            let mut meta = mp.meta.clone();
            meta.insert("etag".into(), blob_common::checksum::multipart_etag(&md5s));
            meta.insert(PART_SIZES.into(), encode_part_sizes(&sizes));
            let file = FileRecord {
                size,
                created_ms: super::versions::next_version_ms(old.as_ref()),
                version: *id,
                replication: if replication == u8::MAX {
                    self.cfg.default_replication
                } else {
                    replication
                },
                chunk_size: chunk_size.max(1),
                chunks,
                meta,
                versioned,
                delete_marker: false,
            };
            t.put(CF_FILES, &key, &file)?;
            t.delete(CF_MULTIPART, id.as_bytes())?;
            t.commit()?;
            file_info(&mp.bucket, &mp.path, file)
        };
        self.meta.sync()?;
        Ok(file)
    }

    /// Drops a multipart upload and the references of its parts (in `t`).
    fn drop_multipart(
        &self,
        t: &mut Txn<'_>,
        id: &UploadId,
        rec: &MultipartRecord,
    ) -> Result<(), Error> {
        for (number, part) in self.parts_of(id)? {
            for c in &part.chunks {
                t.add_ref(&rec.bucket, &c.id, -1)?;
            }
            t.delete(CF_MULTIPART_PARTS, &part_key(id, number))?;
        }
        t.delete(CF_MULTIPART, id.as_bytes())?;
        Ok(())
    }

    pub(crate) fn abort_multipart(&self, owner: &str, id: &UploadId) -> Result<(), Error> {
        {
            let _g = self.lock();
            let rec = self.multipart_record(id, owner)?;
            let mut t = Txn::new(&self.meta, now_ms());
            self.drop_multipart(&mut t, id, &rec)?;
            t.commit()?;
        }
        self.meta.sync()
    }

    /// Drops every multipart upload matching `pred`; returns how many.
    /// Drops the multipart uploads `pred` selects (checked again under
    /// the lock).
    pub(crate) fn drop_multiparts_where(
        &self,
        pred: impl Fn(&MultipartRecord) -> bool,
    ) -> Result<usize, Error> {
        let mut victims = Vec::new();
        self.meta.scan(CF_MULTIPART, b"", b"", |k, v| {
            let rec: MultipartRecord = serde_json::from_slice(v)
                .map_err(|e| Error::Corrupt(format!("multipart record: {e}")))?;
            if let (Some(id), true) = (UploadId::from_slice(k), pred(&rec)) {
                victims.push(id);
            }
            Ok(true)
        })?;
        if victims.is_empty() {
            return Ok(0);
        }
        let mut dropped = 0;
        {
            let _g = self.lock();
            let mut t = Txn::new(&self.meta, now_ms());
            for id in &victims {
                // Re-read under the lock: it may have completed meanwhile.
                if let Some(rec) = self
                    .meta
                    .get::<MultipartRecord>(CF_MULTIPART, id.as_bytes())?
                {
                    if pred(&rec) {
                        self.drop_multipart(&mut t, id, &rec)?;
                        dropped += 1;
                    }
                }
            }
            t.commit()?;
        }
        self.meta.sync()?;
        Ok(dropped)
    }

    /// Drops the multipart uploads of a deleted bucket.
    pub(crate) fn drop_bucket_multiparts(&self, bucket: &str) -> Result<usize, Error> {
        self.drop_multiparts_where(|r| r.bucket == bucket)
    }

    /// Drops multipart uploads older than the configured lifetime; their
    /// chunks go to garbage collection once unreferenced.
    pub(crate) fn expire_multiparts(&self, now_ms: u64) -> Result<usize, Error> {
        let ttl = self.cfg.multipart_ttl_secs.saturating_mul(1000);
        self.drop_multiparts_where(|r| now_ms.saturating_sub(r.created_ms) > ttl)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn part_keys_sort_by_number() {
        let id = UploadId::random();
        assert!(part_key(&id, 2) < part_key(&id, 10));
        assert!(check_part_number(0).is_err());
        assert!(check_part_number(MAX_PARTS + 1).is_err());
        assert!(check_part_number(1).is_ok());
        assert_eq!(
            md5_bytes("\"d41d8cd98f00b204e9800998ecf8427e\""),
            Some([
                0xd4, 0x1d, 0x8c, 0xd9, 0x8f, 0x00, 0xb2, 0x04, 0xe9, 0x80, 0x09, 0x98, 0xec, 0xf8,
                0x42, 0x7e
            ])
        );
        assert_eq!(md5_bytes("abc-2"), None);
    }
}
