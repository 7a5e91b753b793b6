//! Administration: access keys (the admin key made on first start, and key
//! lookup for authentication), the configured edges, cluster status, fsck
//! and metrics.

use std::time::Instant;

use blob_common::presign;
use blob_common::proto::keys::*;
use blob_common::proto::namenode::*;
use blob_common::{now_ms, now_secs};

use crate::db::*;
use crate::error::Error;
use crate::Namenode;

impl Namenode {
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
        let access = wanted.unwrap_or_else(new_access_key);
        let secret = self
            .cfg
            .admin_secret_key
            .clone()
            .unwrap_or_else(|| hex::encode(rand::random::<[u8; 20]>()));
        self.store_new_key(&access, &secret, "admin", true)?;
        self.meta.sync()?;
        let path = Namenode::credentials_path(&self.cfg.data_dir);
        let text = format!("access_key = \"{access}\"\nsecret_key = \"{secret}\"\n");
        blob_common::write_private(&path, text.as_bytes())
            .map_err(|e| Error::Internal(format!("writing {}: {e}", path.display())))?;
        tracing::info!(access_key = %access, file = %path.display(), "created admin access key");
        Ok(())
    }

    /// A key's secrets in clear, newest first, whether it is an admin key,
    /// and its rate limits; `None` for an unknown key.
    pub(crate) fn key_secrets(
        &self,
        access_key: &str,
    ) -> Result<Option<(Vec<String>, bool, KeyLimits)>, Error> {
        let Some(rec) = self.meta.get::<KeyRecord>(CF_KEYS, access_key.as_bytes())? else {
            return Ok(None);
        };
        let mut secrets = rec
            .sealed
            .iter()
            .map(|s| self.master_keys.open_secret(s))
            .collect::<Result<Vec<_>, _>>()?;
        if !rec.secret.is_empty() {
            secrets.push(rec.secret.clone());
        }
        Ok(Some((secrets, rec.admin, rec.limits)))
    }

    /// Whether a key is an admin key, and its rate limits, without opening
    /// its secrets; `None` for an unknown key.
    pub(crate) fn key_rights(&self, access_key: &str) -> Result<Option<(bool, KeyLimits)>, Error> {
        Ok(self
            .meta
            .get::<KeyRecord>(CF_KEYS, access_key.as_bytes())?
            .map(|rec| (rec.admin, rec.limits)))
    }

    fn key_record(&self, access_key: &str) -> Result<KeyRecord, Error> {
        self.meta
            .get(CF_KEYS, access_key.as_bytes())?
            .ok_or_else(|| Error::NoSuchKey(access_key.chars().take(128).collect()))
    }

    /// `admin key create`: a new key with a random secret, shown only in
    /// this answer.
    pub(crate) fn create_key(&self, req: &CreateKey) -> Result<KeyCreated, Error> {
        let name = req.name.trim();
        if name.is_empty() || name.chars().count() > 64 || name.chars().any(char::is_control) {
            return Err(Error::BadRequest(
                "a key name is 1 to 64 characters, none of them control characters".into(),
            ));
        }
        let access = new_access_key();
        let secret = new_secret();
        {
            let _g = self.lock();
            self.store_new_key(&access, &secret, name, req.admin)?;
        }
        self.meta.sync()?;
        tracing::info!(access_key = %access, name, admin = req.admin, "created access key");
        Ok(KeyCreated {
            name: name.to_string(),
            access_key: access,
            secret_key: secret,
        })
    }

    /// Writes a new key, its secret sealed (the caller holds the lock and
    /// syncs).
    fn store_new_key(
        &self,
        access: &str,
        secret: &str,
        name: &str,
        admin: bool,
    ) -> Result<(), Error> {
        let mut t = Txn::new(&self.meta, now_ms());
        t.put(
            CF_KEYS,
            access.as_bytes(),
            &KeyRecord {
                secret: String::new(),
                sealed: vec![self.master_keys.seal_secret(secret)?],
                created_ms: now_ms(),
                admin,
                name: name.to_string(),
                limits: KeyLimits::default(),
            },
        )?;
        t.commit()
    }

    fn summary(access_key: &str, rec: &KeyRecord) -> KeySummary {
        KeySummary {
            access_key: access_key.to_string(),
            name: rec.name.clone(),
            admin: rec.admin,
            created_ms: rec.created_ms,
            secrets: (rec.sealed.len() + usize::from(!rec.secret.is_empty())) as u8,
            limits: rec.limits,
        }
    }

    /// `admin key list`.
    pub(crate) fn list_keys(&self) -> Result<ListKeys, Error> {
        let mut keys = Vec::new();
        self.meta.scan(CF_KEYS, b"", b"", |k, v| {
            let rec: KeyRecord = serde_json::from_slice(v)
                .map_err(|e| Error::Corrupt(format!("key record: {e}")))?;
            keys.push(Self::summary(&String::from_utf8_lossy(k), &rec));
            Ok(true)
        })?;
        Ok(ListKeys { keys })
    }

    /// `admin key info`: the key and the buckets it may use.
    pub(crate) fn key_details(&self, access_key: &str) -> Result<KeyDetails, Error> {
        let rec = self.key_record(access_key)?;
        let mut buckets = Vec::new();
        self.meta.scan(CF_BUCKETS, b"", b"", |k, v| {
            let b: BucketRecord = serde_json::from_slice(v)
                .map_err(|e| Error::Corrupt(format!("bucket record: {e}")))?;
            let allowed = crate::access::permissions_of(&b, access_key);
            if !allowed.is_empty() {
                buckets.push(BucketGrant {
                    bucket: String::from_utf8_lossy(k).into_owned(),
                    allowed,
                });
            }
            Ok(true)
        })?;
        Ok(KeyDetails {
            key: Self::summary(access_key, &rec),
            buckets,
        })
    }

    /// `admin key delete`: the key stops working at once; its grants go
    /// with it. The buckets it owns keep their files (admin keys still
    /// reach them).
    pub(crate) fn delete_key(&self, access_key: &str) -> Result<(), Error> {
        {
            let _g = self.lock();
            self.key_record(access_key)?;
            let mut t = Txn::new(&self.meta, now_ms());
            let mut changed = Vec::new();
            self.meta.scan(CF_BUCKETS, b"", b"", |k, v| {
                let mut b: BucketRecord = serde_json::from_slice(v)
                    .map_err(|e| Error::Corrupt(format!("bucket record: {e}")))?;
                if b.grants.remove(access_key).is_some() {
                    changed.push((k.to_vec(), b));
                }
                Ok(true)
            })?;
            for (k, b) in changed {
                t.put(CF_BUCKETS, &k, &b)?;
            }
            t.delete(CF_KEYS, access_key.as_bytes())?;
            t.commit()?;
        }
        self.meta.sync()?;
        self.forget_limits(access_key);
        tracing::info!(access_key, "deleted access key");
        Ok(())
    }

    /// `admin key rotate`: a second secret that works beside the first,
    /// or with `retire_old`, dropping the older of two.
    pub(crate) fn rotate_key(
        &self,
        access_key: &str,
        req: &RotateKey,
    ) -> Result<Result<KeyCreated, KeyDetails>, Error> {
        let created = {
            let _g = self.lock();
            let mut rec = self.key_record(access_key)?;
            let count = rec.sealed.len() + usize::from(!rec.secret.is_empty());
            let created = if req.retire_old {
                if count < 2 {
                    return Err(Error::BadRequest(format!(
                        "{access_key} has one secret: rotate first, then retire the old one"
                    )));
                }
                if rec.secret.is_empty() {
                    rec.sealed.truncate(1);
                } else {
                    rec.secret.clear();
                }
                None
            } else {
                if count >= 2 {
                    return Err(Error::BadRequest(format!(
                        "{access_key} already has two secrets: retire the old one first (--retire-old)"
                    )));
                }
                let secret = new_secret();
                rec.sealed.insert(0, self.master_keys.seal_secret(&secret)?);
                Some(KeyCreated {
                    name: rec.name.clone(),
                    access_key: access_key.to_string(),
                    secret_key: secret,
                })
            };
            let mut t = Txn::new(&self.meta, now_ms());
            t.put(CF_KEYS, access_key.as_bytes(), &rec)?;
            t.commit()?;
            created
        };
        self.meta.sync()?;
        match created {
            Some(c) => Ok(Ok(c)),
            None => Ok(Err(self.key_details(access_key)?)),
        }
    }

    /// `admin key limit`.
    pub(crate) fn set_key_limits(
        &self,
        access_key: &str,
        limits: KeyLimits,
    ) -> Result<KeyDetails, Error> {
        {
            let _g = self.lock();
            let mut rec = self.key_record(access_key)?;
            rec.limits = limits;
            let mut t = Txn::new(&self.meta, now_ms());
            t.put(CF_KEYS, access_key.as_bytes(), &rec)?;
            t.commit()?;
        }
        self.meta.sync()?;
        self.forget_limits(access_key);
        self.key_details(access_key)
    }

    /// `admin bucket info`.
    pub(crate) fn bucket_details(&self, bucket: &str) -> Result<BucketDetails, Error> {
        let rec: BucketRecord = self
            .meta
            .get(CF_BUCKETS, bucket.as_bytes())?
            .ok_or_else(|| Error::NoSuchBucket(bucket.to_string()))?;
        Ok(BucketDetails {
            name: bucket.to_string(),
            owner: rec.owner.clone(),
            created_ms: rec.created_ms,
            grants: rec
                .grants
                .iter()
                .map(|(k, p)| KeyGrant {
                    access_key: k.clone(),
                    allowed: *p,
                })
                .collect(),
            usage: decode_usage(self.meta.get_raw(CF_USAGE, bucket.as_bytes())?),
            quota: rec.quota,
        })
    }

    /// `admin bucket allow|deny`.
    pub(crate) fn change_grant(
        &self,
        bucket: &str,
        req: &GrantChange,
    ) -> Result<BucketDetails, Error> {
        self.key_record(&req.access_key)?;
        self.update_bucket(bucket, |rec| {
            let p = rec.grants.entry(req.access_key.clone()).or_default();
            let asked = req.permissions;
            if req.allow {
                if asked.is_empty() {
                    return Err(Error::BadRequest(
                        "allow what? give --read, --write and/or --owner".into(),
                    ));
                }
                p.read |= asked.read;
                p.write |= asked.write;
                p.owner |= asked.owner;
            } else if asked.is_empty() {
                *p = Permissions::default();
            } else {
                p.read &= !asked.read;
                p.write &= !asked.write;
                p.owner &= !asked.owner;
            }
            if p.is_empty() {
                rec.grants.remove(&req.access_key);
            }
            Ok(())
        })
    }

    /// `admin bucket quota`.
    pub(crate) fn set_quota(&self, bucket: &str, quota: Quota) -> Result<BucketDetails, Error> {
        self.update_bucket(bucket, |rec| {
            rec.quota = quota;
            Ok(())
        })
    }

    fn update_bucket(
        &self,
        bucket: &str,
        change: impl FnOnce(&mut BucketRecord) -> Result<(), Error>,
    ) -> Result<BucketDetails, Error> {
        {
            let _g = self.lock();
            let mut rec: BucketRecord = self
                .meta
                .get(CF_BUCKETS, bucket.as_bytes())?
                .ok_or_else(|| Error::NoSuchBucket(bucket.to_string()))?;
            change(&mut rec)?;
            let mut t = Txn::new(&self.meta, now_ms());
            t.put(CF_BUCKETS, bucket.as_bytes(), &rec)?;
            t.commit()?;
        }
        self.meta.sync()?;
        self.bucket_details(bucket)
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
                .list_buckets(&crate::access::Principal::Service(
                    blob_common::auth::ServiceRole::Gateway,
                ))?
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

    pub(crate) fn metrics_text(&self) -> String {
        self.metrics.wal_syncs.set(self.meta.sync_count() as i64);
        self.metrics
            .suspect_replicas
            .set(self.claims.suspects() as i64);
        self.metrics.render()
    }
}

/// A new access key: `BK` and 18 hex digits.
fn new_access_key() -> String {
    format!("BK{}", hex::encode_upper(rand::random::<[u8; 9]>()))
}

/// A new secret: 40 characters from S3's secret alphabet.
fn new_secret() -> String {
    use base64::Engine as _;
    let raw: [u8; 30] = rand::random();
    base64::engine::general_purpose::STANDARD
        .encode(raw)
        .replace(['+', '/'], "x")
}
