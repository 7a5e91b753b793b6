//! Versioned buckets, as S3 has them. A bucket's versioning (the bucket
//! setting [`SETTING`]: `Enabled` or `Suspended`, absent when never turned
//! on) decides what a write does to the version it replaces:
//!
//! - never turned on: the old version is dropped (its chunk references
//!   released), as in every bucket before versioning existed;
//! - `Enabled`: the old version is archived in `CF_VERSIONS`, keeping its
//!   references, and the new one gets a version id;
//! - `Suspended`: the new version is the "null" one; an old "null"
//!   version (current or archived) is dropped, others are archived.
//!
//! The current version stays in `CF_FILES`, so reads, listings and every
//! other path see only it. A delete in a versioned bucket archives the
//! current version under a delete marker (the newest archived entry); a
//! delete of one version removes it, and the newest remaining version, if
//! it is not a marker, becomes current again. Chunks shared between
//! versions are stored once; each version holds its own references, so the
//! GC keeps every chunk a live version needs.

use blob_common::names::{validate_bucket, validate_path};
use blob_common::proto::namenode::{DeleteOutcome, ListVersions, ListVersionsQuery, VersionEntry};
use blob_common::{now_ms, UploadId};

use super::files::file_info;
use crate::db::*;
use crate::error::Error;
use crate::Namenode;

/// The bucket setting holding a bucket's versioning state.
pub(crate) const SETTING: &str = "versioning";
/// The version id S3 gives a version written without versioning.
pub(crate) const NULL: &str = "null";

/// A bucket's versioning state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Versioning {
    Off,
    Enabled,
    Suspended,
}

/// When a version replacing `old` is written: now, but always after
/// `old`, so that versions of a path sort in the order they were written.
pub(crate) fn next_version_ms(old: Option<&FileRecord>) -> u64 {
    now_ms().max(old.map_or(0, |o| o.created_ms + 1))
}

/// A record of `CF_VERSIONS` (a `CF_FILES` record for the current one).
pub(crate) fn decode_version(v: &[u8]) -> Result<FileRecord, Error> {
    serde_json::from_slice(v).map_err(|e| Error::Corrupt(format!("version record: {e}")))
}

/// The path a `CF_VERSIONS` (or `CF_FILES`) key names, the bucket's part
/// (`base` = `file_key(bucket, "")`) taken off.
pub(crate) fn key_path(key: &[u8], base: &[u8]) -> String {
    let rest = key.get(base.len()..).unwrap_or_default();
    let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
    String::from_utf8_lossy(&rest[..end]).into_owned()
}

/// The id of a version as S3 names it.
pub(crate) fn version_id(rec: &FileRecord) -> String {
    if rec.versioned {
        rec.version.to_string()
    } else {
        NULL.to_string()
    }
}

impl Namenode {
    /// `bucket`'s versioning state.
    pub(crate) fn versioning(&self, bucket: &str) -> Result<Versioning, Error> {
        let rec = self
            .meta
            .get::<BucketRecord>(CF_BUCKETS, bucket.as_bytes())?
            .ok_or_else(|| Error::NoSuchBucket(bucket.to_string()))?;
        Ok(match rec.settings.get(SETTING).map(String::as_str) {
            Some("Enabled") => Versioning::Enabled,
            Some("Suspended") => Versioning::Suspended,
            _ => Versioning::Off,
        })
    }

    /// What happens (in `t`) to `old`, the current version of
    /// `bucket/path`, when a new one replaces it or it is deleted; returns
    /// whether the new version is written with a version id.
    pub(crate) fn retire(
        &self,
        t: &mut Txn<'_>,
        bucket: &str,
        path: &str,
        old: Option<&FileRecord>,
        mode: Versioning,
    ) -> Result<bool, Error> {
        if mode == Versioning::Suspended {
            self.drop_archived_null(t, bucket, path)?;
        }
        if let Some(old) = old {
            let keep = match mode {
                Versioning::Off => false,
                Versioning::Enabled => true,
                Versioning::Suspended => old.versioned,
            };
            if keep {
                let key = version_key(bucket, path, old.created_ms, &old.version);
                t.put(CF_VERSIONS, &key, old)?;
            } else {
                for c in &old.chunks {
                    t.add_ref(bucket, &c.id, -1)?;
                }
            }
        }
        Ok(mode == Versioning::Enabled)
    }

    /// Drops the archived "null" version of `bucket/path`, if any (in `t`).
    fn drop_archived_null(&self, t: &mut Txn<'_>, bucket: &str, path: &str) -> Result<(), Error> {
        let prefix = version_prefix(bucket, path);
        let mut nulls = Vec::new();
        self.meta.scan(CF_VERSIONS, &prefix, &prefix, |k, v| {
            let rec = decode_version(v)?;
            if !rec.versioned {
                nulls.push((k.to_vec(), rec));
            }
            Ok(true)
        })?;
        for (k, rec) in nulls {
            for c in &rec.chunks {
                t.add_ref(bucket, &c.id, -1)?;
            }
            t.delete(CF_VERSIONS, &k)?;
        }
        Ok(())
    }

    /// Deletes the current version of `bucket/path` in a bucket whose
    /// versioning was turned on: the version is archived (or dropped, if
    /// "null" while suspended) under a new delete marker, which is
    /// answered. A missing current version still gets a marker, as in S3.
    pub(crate) fn delete_versioned(
        &self,
        bucket: &str,
        path: &str,
        mode: Versioning,
    ) -> Result<DeleteOutcome, Error> {
        validate_path(path)?;
        let marker = {
            let _g = self.lock();
            let old = self
                .meta
                .get::<FileRecord>(CF_FILES, &file_key(bucket, path))?;
            let mut t = Txn::new(&self.meta, now_ms());
            let marker = self.mark_deleted(&mut t, bucket, path, old.as_ref(), mode)?;
            t.commit()?;
            marker
        };
        self.meta.sync()?;
        Ok(DeleteOutcome {
            version_id: Some(version_id(&marker)),
            delete_marker: true,
        })
    }

    /// In `t`: retires `old`, the current version of `bucket/path`, under
    /// a new delete marker (returned). The caller holds the lock.
    pub(crate) fn mark_deleted(
        &self,
        t: &mut Txn<'_>,
        bucket: &str,
        path: &str,
        old: Option<&FileRecord>,
        mode: Versioning,
    ) -> Result<FileRecord, Error> {
        let versioned = self.retire(t, bucket, path, old, mode)?;
        let marker = FileRecord {
            size: 0,
            created_ms: next_version_ms(old),
            version: UploadId::random(),
            replication: 0,
            chunk_size: 0,
            chunks: Vec::new(),
            meta: Default::default(),
            versioned,
            delete_marker: true,
        };
        t.put(
            CF_VERSIONS,
            &version_key(bucket, path, marker.created_ms, &marker.version),
            &marker,
        )?;
        t.delete(CF_FILES, &file_key(bucket, path))?;
        Ok(marker)
    }

    /// The version `version` ("null" for the null one) of `bucket/path`,
    /// and whether it is the current one.
    pub(crate) fn version_record(
        &self,
        bucket: &str,
        path: &str,
        version: &str,
    ) -> Result<(FileRecord, bool), Error> {
        validate_bucket(bucket)?;
        validate_path(path)?;
        self.head_bucket(bucket)?;
        if let Some(cur) = self
            .meta
            .get::<FileRecord>(CF_FILES, &file_key(bucket, path))?
        {
            if version_id(&cur) == version {
                return Ok((cur, true));
            }
        }
        let prefix = version_prefix(bucket, path);
        let mut found = None;
        self.meta.scan(CF_VERSIONS, &prefix, &prefix, |_, v| {
            let rec = decode_version(v)?;
            if version_id(&rec) == version {
                found = Some(rec);
                return Ok(false);
            }
            Ok(true)
        })?;
        found
            .map(|r| (r, false))
            .ok_or_else(|| Error::NoSuchVersion {
                bucket: bucket.to_string(),
                path: path.to_string(),
                version: version.to_string(),
            })
    }

    /// Removes one version of `bucket/path` for good. When it was the
    /// current one (or a marker hiding the newest version), the newest
    /// remaining version becomes current unless it is a marker.
    pub(crate) fn delete_version(
        &self,
        bucket: &str,
        path: &str,
        version: &str,
    ) -> Result<DeleteOutcome, Error> {
        let gone = {
            let _g = self.lock();
            let (rec, current) = self.version_record(bucket, path, version)?;
            let mut t = Txn::new(&self.meta, now_ms());
            for c in &rec.chunks {
                t.add_ref(bucket, &c.id, -1)?;
            }
            let removed = version_key(bucket, path, rec.created_ms, &rec.version);
            let has_current = if current {
                t.delete(CF_FILES, &file_key(bucket, path))?;
                false
            } else {
                t.delete(CF_VERSIONS, &removed)?;
                self.meta
                    .get::<FileRecord>(CF_FILES, &file_key(bucket, path))?
                    .is_some()
            };
            if !has_current {
                // The newest archived version left, if it is not a marker,
                // becomes current.
                let prefix = version_prefix(bucket, path);
                let mut newest = None;
                self.meta.scan(CF_VERSIONS, &prefix, &prefix, |k, v| {
                    if k == removed.as_slice() {
                        return Ok(true);
                    }
                    let r = decode_version(v)?;
                    newest = Some((k.to_vec(), r));
                    Ok(false)
                })?;
                if let Some((k, r)) = newest.filter(|(_, r)| !r.delete_marker) {
                    t.delete(CF_VERSIONS, &k)?;
                    t.put(CF_FILES, &file_key(bucket, path), &r)?;
                }
            }
            t.commit()?;
            rec
        };
        self.meta.sync()?;
        Ok(DeleteOutcome {
            version_id: Some(version.to_string()),
            delete_marker: gone.delete_marker,
        })
    }

    /// Every version of the paths under `q.prefix`, current first, then
    /// newest first, paged by `(key_marker, version_marker)`.
    pub(crate) fn list_versions(
        &self,
        bucket: &str,
        q: &ListVersionsQuery,
    ) -> Result<ListVersions, Error> {
        self.head_bucket(bucket)?;
        let prefix = q.prefix.clone().unwrap_or_default();
        let limit = q.limit.unwrap_or(1000).clamp(1, 1000);
        let base = file_key(bucket, "");
        let start_path = match &q.key_marker {
            Some(m) if m.as_str() > prefix.as_str() => m.clone(),
            _ => prefix.clone(),
        };
        let mut files = self.meta.raw_iter(CF_FILES);
        files.seek(file_key(bucket, &start_path));
        let mut versions = self.meta.raw_iter(CF_VERSIONS);
        versions.seek(file_key(bucket, &start_path));
        let prefix_key = file_key(bucket, &prefix);
        let path_of = |key: &[u8]| key.starts_with(&prefix_key).then(|| key_path(key, &base));
        let mut out = ListVersions::default();
        // Skipping what the marker says was already listed.
        let mut skipping = q
            .key_marker
            .as_ref()
            .map(|k| (k.clone(), q.version_marker.clone()));
        loop {
            let fp = files.key().and_then(&path_of);
            let vp = versions.key().and_then(&path_of);
            let path = match (&fp, &vp) {
                (None, None) => break,
                (Some(a), Some(b)) => a.min(b).clone(),
                (Some(a), None) => a.clone(),
                (None, Some(b)) => b.clone(),
            };
            let mut entries = Vec::new();
            if fp.as_deref() == Some(path.as_str()) {
                entries.push(decode_version(files.value().unwrap_or_default())?);
                files.next();
            }
            while versions.key().and_then(&path_of).as_deref() == Some(path.as_str()) {
                entries.push(decode_version(versions.value().unwrap_or_default())?);
                versions.next();
            }
            for (i, rec) in entries.into_iter().enumerate() {
                let id = version_id(&rec);
                if let Some((kp, vm)) = &skipping {
                    match kp.cmp(&path) {
                        std::cmp::Ordering::Greater => continue,
                        std::cmp::Ordering::Equal => match vm {
                            // A key marker alone: that key's versions are done.
                            None => continue,
                            Some(v) => {
                                if *v == id {
                                    skipping = None;
                                }
                                continue;
                            }
                        },
                        std::cmp::Ordering::Less => skipping = None,
                    }
                }
                if out.versions.len() == limit {
                    out.truncated = true;
                    let last = out.versions.last();
                    out.next_key_marker = last.map(|e| e.path.clone());
                    out.next_version_marker = last.map(|e| e.version_id.clone());
                    return Ok(out);
                }
                out.versions.push(VersionEntry {
                    path: path.clone(),
                    version_id: id,
                    latest: i == 0,
                    delete_marker: rec.delete_marker,
                    size: rec.size,
                    created_ms: rec.created_ms,
                    etag: rec.meta.get("etag").cloned(),
                });
            }
        }
        files.status().map_err(|e| Error::Db {
            context: "listing versions".into(),
            source: e,
        })?;
        Ok(out)
    }

    /// The file `path` names in `bucket` at `version` (the current one
    /// without), as readers get it; a delete marker has no bytes (405).
    pub(crate) fn file_version(
        &self,
        bucket: &str,
        path: &str,
        version: Option<&str>,
    ) -> Result<FileRecord, Error> {
        let Some(v) = version else {
            return self.file_record(bucket, path);
        };
        let (rec, _) = self.version_record(bucket, path, v)?;
        if rec.delete_marker {
            return Err(Error::DeleteMarker(v.to_string()));
        }
        Ok(rec)
    }

    /// [`Namenode::file_version`] as a `FileInfo`.
    pub(crate) fn stat_version(
        &self,
        bucket: &str,
        path: &str,
        version: Option<&str>,
    ) -> Result<blob_common::proto::namenode::FileInfo, Error> {
        Ok(file_info(
            bucket,
            path,
            self.file_version(bucket, path, version)?,
        ))
    }
}
