//! Administration: access keys (the admin key made on first start, and key
//! lookup for authentication), the configured edges, cluster status, fsck
//! and metrics.

use std::time::Instant;

use blob_common::presign;
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

    pub(crate) fn metrics_text(&self) -> String {
        self.metrics.wal_syncs.set(self.meta.sync_count() as i64);
        self.metrics
            .suspect_replicas
            .set(self.claims.suspects() as i64);
        self.metrics.render()
    }
}
