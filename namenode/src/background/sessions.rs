//! Expiry of abandoned sessions: upload sessions older than
//! `upload_ttl_ms` (dropped by the repair pass), and S3 multipart uploads
//! older than `multipart_ttl_secs` (their own sweep loop). Either releases
//! the references it held, so its chunks go to garbage collection.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use blob_common::{now_ms, UploadId};
use tokio_util::sync::CancellationToken;

use crate::db::*;
use crate::error::Error;
use crate::Namenode;

/// Expires stale multipart uploads every `multipart_sweep_secs` until
/// `shutdown`.
pub(crate) async fn sweep_loop(nn: Arc<Namenode>, shutdown: CancellationToken) {
    let every = Duration::from_secs(nn.cfg.multipart_sweep_secs.max(1));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        let nn2 = nn.clone();
        match tokio::task::spawn_blocking(move || nn2.expire_multiparts(now_ms())).await {
            Ok(Ok(0)) => {}
            Ok(Ok(n)) => tracing::info!(expired = n, "expired stale multipart uploads"),
            Ok(Err(e)) => tracing::warn!(error = %e, "multipart expiry failed"),
            Err(e) => tracing::warn!(error = %e, "multipart expiry task failed"),
        }
    }
}

impl Namenode {
    /// Drops the upload sessions older than `upload_ttl_ms` at `now` (Unix
    /// ms), releasing their references.
    pub(crate) fn expire_uploads(&self, now: u64) -> Result<(), Error> {
        let ttl = self.cfg.upload_ttl_ms;
        let stale: Vec<(UploadId, UploadRecord)> =
            self.uploads_matching(|u| now.saturating_sub(u.created_ms) >= ttl)?;
        if stale.is_empty() {
            return Ok(());
        }
        {
            let _g = self.lock();
            let mut t = Txn::new(&self.meta, now);
            for (id, rec) in &stale {
                // Re-read under the lock: it may have been committed since.
                if self.meta.get_raw(CF_UPLOADS, id.as_bytes())?.is_some() {
                    self.drop_session(&mut t, id, rec, &HashSet::new())?;
                }
            }
            t.commit()?;
        }
        tracing::info!(sessions = stale.len(), "expired stale upload sessions");
        Ok(())
    }
}
