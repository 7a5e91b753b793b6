//! Bucket operations: create, look up, list and delete (a bucket must be
//! empty of files; its open upload sessions are dropped with it).

use std::collections::HashSet;

use blob_common::names::validate_bucket;
use blob_common::now_ms;
use blob_common::proto::namenode::*;

use crate::db::*;
use crate::error::Error;
use crate::Namenode;

impl Namenode {
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
}
