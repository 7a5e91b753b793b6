//! Bucket operations: create, look up, list and delete (a bucket must be
//! empty of files; its open upload sessions are dropped with it).

use std::collections::HashSet;

use blob_common::names::validate_bucket;
use blob_common::now_ms;
use blob_common::proto::namenode::*;

use crate::access::Principal;
use crate::db::*;
use crate::error::Error;
use crate::Namenode;

/// Largest value of one bucket setting.
const MAX_SETTING_BYTES: usize = 64 << 10;

/// Setting names: 1 to 32 of `a-z`, `0-9` and `-`.
fn validate_setting_name(name: &str) -> Result<(), Error> {
    let ok = (1..=32).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(Error::BadRequest(format!("invalid setting name {name:?}")))
    }
}

impl Namenode {
    /// Makes a bucket owned by `owner` (the key that asked; none for one
    /// only admin keys reach).
    pub(crate) fn create_bucket(
        &self,
        name: &str,
        owner: Option<&str>,
    ) -> Result<BucketInfo, Error> {
        validate_bucket(name)?;
        let created_ms = now_ms();
        {
            let _g = self.lock();
            if self.meta.get_raw(CF_BUCKETS, name.as_bytes())?.is_some() {
                return Err(Error::BucketExists(name.to_string()));
            }
            let mut t = Txn::new(&self.meta, created_ms);
            let rec = BucketRecord {
                created_ms,
                settings: Default::default(),
                owner: owner.map(str::to_string),
                grants: Default::default(),
                quota: Default::default(),
            };
            t.put(CF_BUCKETS, name.as_bytes(), &rec)?;
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

    /// A bucket's named setting (404 `NoSuchSetting` when unset).
    pub(crate) fn bucket_setting(&self, bucket: &str, name: &str) -> Result<BucketSetting, Error> {
        validate_bucket(bucket)?;
        validate_setting_name(name)?;
        let rec: BucketRecord = self
            .meta
            .get(CF_BUCKETS, bucket.as_bytes())?
            .ok_or_else(|| Error::NoSuchBucket(bucket.to_string()))?;
        match rec.settings.get(name) {
            Some(value) => Ok(BucketSetting {
                value: value.clone(),
            }),
            None => Err(Error::NoSuchSetting(format!(
                "{bucket} has no {name} setting"
            ))),
        }
    }

    /// Sets (or with `None` removes) a bucket's named setting.
    pub(crate) fn set_bucket_setting(
        &self,
        bucket: &str,
        name: &str,
        value: Option<String>,
    ) -> Result<(), Error> {
        validate_bucket(bucket)?;
        validate_setting_name(name)?;
        if value.as_ref().is_some_and(|v| v.len() > MAX_SETTING_BYTES) {
            return Err(Error::BadRequest(format!(
                "a bucket setting holds at most {MAX_SETTING_BYTES} bytes"
            )));
        }
        {
            let _g = self.lock();
            let mut rec: BucketRecord = self
                .meta
                .get(CF_BUCKETS, bucket.as_bytes())?
                .ok_or_else(|| Error::NoSuchBucket(bucket.to_string()))?;
            match value {
                Some(v) => rec.settings.insert(name.to_string(), v),
                None => rec.settings.remove(name),
            };
            let mut t = Txn::new(&self.meta, now_ms());
            t.put(CF_BUCKETS, bucket.as_bytes(), &rec)?;
            t.commit()?;
        }
        self.meta.sync()
    }

    /// The buckets `who` may see: those it has any permission on.
    pub(crate) fn list_buckets(&self, who: &Principal) -> Result<ListBuckets, Error> {
        let mut buckets = Vec::new();
        self.meta.scan(CF_BUCKETS, b"", b"", |k, v| {
            let rec: BucketRecord = serde_json::from_slice(v)
                .map_err(|e| Error::Corrupt(format!("bucket record: {e}")))?;
            if !self.may_see(who, &rec) {
                return Ok(true);
            }
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
            // Archived versions and delete markers count, as in S3.
            for cf in [CF_FILES, CF_VERSIONS] {
                self.meta.scan(cf, &prefix, &prefix, |_, _| {
                    empty = false;
                    Ok(false)
                })?;
            }
            if !empty {
                return Err(Error::BucketNotEmpty(name.to_string()));
            }
            let mut t = Txn::new(&self.meta, now_ms());
            for (id, rec) in self.uploads_matching(|u| u.bucket == name)? {
                self.drop_session(&mut t, &id, &rec, &HashSet::new())?;
            }
            t.delete(CF_BUCKETS, name.as_bytes())?;
            t.commit()?;
        }
        self.meta.sync()
    }
}
