//! Buckets' lifecycle rules ([`blob_common::proto::lifecycle`]), applied
//! every quarter of a lifecycle day (at least hourly): files past their
//! expiration are deleted, multipart uploads open too long are aborted.
//! A file overwritten since the pass looked at it is left alone.

use std::sync::Arc;
use std::time::Duration;

use blob_common::now_ms;
use blob_common::proto::lifecycle::{Rule, SETTING, TAGS_META};
use blob_common::UploadId;
use tokio_util::sync::CancellationToken;

use crate::db::*;
use crate::error::Error;
use crate::ops::versions;
use crate::Namenode;

/// What one pass did.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Applied {
    /// Files deleted.
    pub(crate) expired: usize,
    /// Multipart uploads aborted.
    pub(crate) aborted: usize,
    /// Noncurrent versions removed.
    pub(crate) noncurrent: usize,
}

/// The lifecycle loop.
pub(crate) async fn lifecycle_loop(nn: Arc<Namenode>, shutdown: CancellationToken) {
    let every = Duration::from_millis((nn.cfg.lifecycle_day_ms / 4).clamp(100, 3_600_000));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        let nn2 = nn.clone();
        match tokio::task::spawn_blocking(move || nn2.apply_lifecycle(now_ms())).await {
            Ok(Ok(a)) if a == Applied::default() => {}
            Ok(Ok(a)) => tracing::info!(
                expired = a.expired,
                aborted = a.aborted,
                noncurrent = a.noncurrent,
                "lifecycle rules applied"
            ),
            Ok(Err(e)) => tracing::warn!(error = %e, "lifecycle pass failed"),
            Err(e) => tracing::warn!(error = %e, "lifecycle task failed"),
        }
    }
}

impl Namenode {
    /// Applies every bucket's lifecycle rules at `now` (Unix ms).
    pub(crate) fn apply_lifecycle(&self, now: u64) -> Result<Applied, Error> {
        let mut ruled: Vec<(String, Vec<Rule>)> = Vec::new();
        self.meta.scan(CF_BUCKETS, b"", b"", |k, v| {
            let rec: BucketRecord = serde_json::from_slice(v)
                .map_err(|e| Error::Corrupt(format!("bucket record: {e}")))?;
            if let Some(json) = rec.settings.get(SETTING) {
                let bucket = String::from_utf8_lossy(k).into_owned();
                match serde_json::from_str::<Vec<Rule>>(json) {
                    Ok(rules) => ruled.push((bucket, rules)),
                    Err(e) => tracing::warn!(bucket, error = %e, "unreadable lifecycle rules"),
                }
            }
            Ok(true)
        })?;
        let day = self.cfg.lifecycle_day_ms.max(1);
        let mut applied = Applied::default();
        for (bucket, rules) in ruled {
            let mut due: Vec<(String, UploadId)> = Vec::new();
            let prefix = file_key(&bucket, "");
            self.meta.scan(CF_FILES, &prefix, &prefix, |k, v| {
                let rec: FileRecord = serde_json::from_slice(v)
                    .map_err(|e| Error::Corrupt(format!("file record: {e}")))?;
                let path = String::from_utf8_lossy(&k[prefix.len()..]).into_owned();
                let tags = rec.meta.get(TAGS_META).map(String::as_str);
                if rules
                    .iter()
                    .any(|r| r.expires(&path, rec.size, tags, rec.created_ms, now, day))
                {
                    due.push((path, rec.version));
                }
                Ok(true)
            })?;
            for (path, version) in due {
                if self.delete_file_if(&bucket, &path, Some(version))? {
                    applied.expired += 1;
                    tracing::info!(bucket, path, "expired by a lifecycle rule");
                }
            }
            if rules.iter().any(|r| r.noncurrent_days.is_some()) {
                applied.noncurrent += self.expire_noncurrent(&bucket, &rules, now, day)?;
            }
            applied.aborted += self.drop_multiparts_where(|m| {
                m.bucket == bucket
                    && rules
                        .iter()
                        .any(|r| r.aborts(&m.path, m.created_ms, now, day))
            })?;
        }
        Ok(applied)
    }

    /// Removes the noncurrent versions of `bucket` that `rules` expire at
    /// `now`: a version is noncurrent from the time the next newer one
    /// was written.
    fn expire_noncurrent(
        &self,
        bucket: &str,
        rules: &[Rule],
        now: u64,
        day: u64,
    ) -> Result<usize, Error> {
        let base = file_key(bucket, "");
        let mut due: Vec<(String, String)> = Vec::new();
        // The path being walked and when its newer version was written
        // (`None`: the entry seen is the path's latest).
        let mut walking: Option<(String, Option<u64>)> = None;
        self.meta.scan(CF_VERSIONS, &base, &base, |k, v| {
            let path = versions::key_path(k, &base);
            let rec = versions::decode_version(v)?;
            let newer = match &walking {
                Some((p, newer)) if *p == path => *newer,
                _ => self
                    .meta
                    .get::<FileRecord>(CF_FILES, &file_key(bucket, &path))?
                    .map(|cur| cur.created_ms),
            };
            if let Some(replaced) = newer {
                let tags = rec.meta.get(TAGS_META).map(String::as_str);
                if !rec.delete_marker
                    && rules
                        .iter()
                        .any(|r| r.expires_noncurrent(&path, rec.size, tags, replaced, now, day))
                {
                    due.push((path.clone(), versions::version_id(&rec)));
                }
            }
            walking = Some((path, Some(rec.created_ms)));
            Ok(true)
        })?;
        let mut removed = 0;
        for (path, version) in due {
            match self.delete_version(bucket, &path, &version) {
                Ok(_) => {
                    removed += 1;
                    tracing::info!(
                        bucket,
                        path,
                        version,
                        "noncurrent version expired by a lifecycle rule"
                    );
                }
                // Removed meanwhile.
                Err(Error::NoSuchVersion { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(removed)
    }
}
