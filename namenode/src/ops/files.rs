//! File operations on the namespace: look up, list (paged, with prefix
//! and delimiter), delete, rename and metadata-only copy. A file record names its chunks; each
//! change moves the per-bucket chunk references in the same batch.

use blob_common::names::{validate_bucket, validate_path};
use blob_common::proto::multipart::CopyFile;
use blob_common::proto::namenode::*;
use blob_common::{now_ms, UploadId};

use super::versions::Versioning;
use crate::db::*;
use crate::error::Error;
use crate::Namenode;

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
        version_id: rec.versioned.then(|| rec.version.to_string()),
    }
}

/// Checks a conditional write against `current`, the file now at
/// `bucket/path`, for a write that started at `started_ms` (see
/// [`WriteCondition`]).
pub(crate) fn check_condition(
    bucket: &str,
    path: &str,
    current: Option<&FileRecord>,
    condition: Option<&WriteCondition>,
    started_ms: u64,
) -> Result<(), Error> {
    let failed = match (condition, current) {
        (None, _) | (Some(WriteCondition::Absent), None) => return Ok(()),
        (Some(WriteCondition::Etag(_)), None) => {
            return Err(Error::NoSuchFile {
                bucket: bucket.to_string(),
                path: path.to_string(),
            })
        }
        (Some(WriteCondition::Absent), Some(f)) => {
            (f, format!("{bucket}/{path} exists (If-None-Match: *)"))
        }
        (Some(WriteCondition::Etag(want)), Some(f)) => {
            let etag = f
                .meta
                .get("etag")
                .cloned()
                .unwrap_or_else(|| f.version.to_string());
            if etag == want.trim_matches('"') {
                return Ok(());
            }
            (f, format!("{bucket}/{path} has ETag {etag}, not {want}"))
        }
    };
    let (file, why) = failed;
    if file.created_ms >= started_ms {
        Err(Error::ConditionalConflict(format!(
            "{why}: written while this write was under way"
        )))
    } else {
        Err(Error::PreconditionFailed(why))
    }
}

impl Namenode {
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

    #[cfg(test)]
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

    pub(crate) fn delete_file(&self, bucket: &str, path: &str) -> Result<(), Error> {
        self.delete_file_if(bucket, path, None).map(|_| ())
    }

    /// Deletes `bucket/path` (404 when missing), or with `version` only if
    /// it is still that version (false when it is not, or is gone).
    pub(crate) fn delete_file_if(
        &self,
        bucket: &str,
        path: &str,
        version: Option<UploadId>,
    ) -> Result<bool, Error> {
        {
            let _g = self.lock();
            let rec = match (self.file_record(bucket, path), version) {
                (Ok(rec), Some(v)) if rec.version != v => return Ok(false),
                (Ok(rec), _) => rec,
                (Err(Error::NoSuchFile { .. }), Some(_)) => return Ok(false),
                (Err(e), _) => return Err(e),
            };
            let mut t = Txn::new(&self.meta, now_ms());
            match self.versioning(bucket)? {
                Versioning::Off => {
                    for c in &rec.chunks {
                        t.add_ref(bucket, &c.id, -1)?;
                    }
                    t.delete(CF_FILES, &file_key(bucket, path))?;
                }
                mode => {
                    self.mark_deleted(&mut t, bucket, path, Some(&rec), mode)?;
                }
            }
            t.commit()?;
        }
        self.meta.sync()?;
        Ok(true)
    }

    /// `DELETE /v1/file`: in a bucket whose versioning was turned on, a
    /// delete marker (or, with `version`, that version removed for good);
    /// elsewhere the file (404 when missing).
    pub(crate) fn delete_path(
        &self,
        bucket: &str,
        path: &str,
        version: Option<&str>,
    ) -> Result<DeleteOutcome, Error> {
        validate_bucket(bucket)?;
        validate_path(path)?;
        if let Some(v) = version {
            return self.delete_version(bucket, path, v);
        }
        match self.versioning(bucket)? {
            Versioning::Off => {
                self.delete_file(bucket, path)?;
                Ok(DeleteOutcome::default())
            }
            mode => self.delete_versioned(bucket, path, mode),
        }
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
            let old = self
                .meta
                .get::<FileRecord>(CF_FILES, &file_key(&req.bucket, &req.to))?;
            let mode = self.versioning(&req.bucket)?;
            self.retire(&mut t, &req.bucket, &req.to, old.as_ref(), mode)?;
            t.put(CF_FILES, &file_key(&req.bucket, &req.to), &rec)?;
            t.delete(CF_FILES, &file_key(&req.bucket, &req.from))?;
            t.commit()?;
            rec
        };
        self.meta.sync()?;
        Ok(file_info(&req.bucket, &req.to, rec))
    }

    /// Changes a file's metadata in place, under a new version.
    pub(crate) fn update_meta(&self, req: &UpdateMeta) -> Result<FileInfo, Error> {
        let rec = {
            let _g = self.lock();
            let mut rec = self.file_record(&req.bucket, &req.path)?;
            if req.if_version.is_some_and(|v| v != rec.version) {
                return Err(Error::PreconditionFailed(format!(
                    "{}/{} changed (version {})",
                    req.bucket, req.path, rec.version
                )));
            }
            let before = rec.meta.clone();
            for k in &req.remove {
                rec.meta.remove(k);
            }
            rec.meta
                .extend(req.set.iter().map(|(k, v)| (k.clone(), v.clone())));
            rec.meta = blob_common::seal::keep_seal_meta(std::mem::take(&mut rec.meta), &before);
            let mut t = Txn::new(&self.meta, now_ms());
            // A new version: in a versioned bucket the old one is kept,
            // and both hold references to the chunks.
            let old = rec.clone();
            let mode = self.versioning(&req.bucket)?;
            rec.versioned = self.retire(&mut t, &req.bucket, &req.path, Some(&old), mode)?;
            for c in &rec.chunks {
                t.add_ref(&req.bucket, &c.id, 1)?;
            }
            rec.version = UploadId::random();
            if mode != Versioning::Off {
                // A version of its own, newer than the one it keeps.
                rec.created_ms = super::versions::next_version_ms(Some(&old));
            }
            t.put(CF_FILES, &file_key(&req.bucket, &req.path), &rec)?;
            t.commit()?;
            rec
        };
        self.meta.sync()?;
        Ok(file_info(&req.bucket, &req.path, rec))
    }

    /// A metadata-only copy: a new file record sharing the source's chunks.
    pub(crate) fn copy_file(&self, req: &CopyFile) -> Result<FileInfo, Error> {
        validate_bucket(&req.bucket)?;
        validate_path(&req.path)?;
        let file = {
            let _g = self.lock();
            let src =
                self.file_version(&req.src_bucket, &req.src_path, req.src_version.as_deref())?;
            self.head_bucket(&req.bucket)?;
            let mut t = Txn::new(&self.meta, now_ms());
            for c in &src.chunks {
                t.add_ref(&req.bucket, &c.id, 1)?;
            }
            let key = file_key(&req.bucket, &req.path);
            let old = self.meta.get::<FileRecord>(CF_FILES, &key)?;
            let mode = self.versioning(&req.bucket)?;
            let versioned = self.retire(&mut t, &req.bucket, &req.path, old.as_ref(), mode)?;
            let file = FileRecord {
                created_ms: super::versions::next_version_ms(old.as_ref()),
                version: UploadId::random(),
                meta: blob_common::seal::keep_seal_meta(
                    req.meta.clone().unwrap_or_else(|| src.meta.clone()),
                    &src.meta,
                ),
                versioned,
                delete_marker: false,
                ..src
            };
            t.put(CF_FILES, &key, &file)?;
            t.commit()?;
            file
        };
        self.meta.sync()?;
        Ok(file_info(&req.bucket, &req.path, file))
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
