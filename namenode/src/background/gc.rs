//! Garbage collection: chunks without references for `gc_grace_ms`, and
//! orphans (replicas no metadata knows) reported by datanodes for
//! `orphan_grace_ms`, are deleted from their holders. A chunk an upload was
//! told to send (its `pending` mark) is never collected before the mark
//! expires.

use std::collections::HashMap;
use std::time::Duration;

use blob_common::{now_ms, ChunkId, NodeId};

use crate::db::*;
use crate::error::Error;
use crate::Namenode;

/// Chunks collected per pass at most.
const MAX_GC: usize = 10_000;

impl Namenode {
    fn pending_until(&self, c: &ChunkId) -> Result<u64, Error> {
        Ok(self
            .meta
            .get_raw(CF_PENDING, c.as_bytes())?
            .and_then(|b| <[u8; 8]>::try_from(b.as_slice()).ok())
            .map(u64::from_le_bytes)
            .unwrap_or(0))
    }

    /// Deletes chunks unreferenced for `gc_grace_ms` at `now` (Unix ms)
    /// and not marked pending by an upload.
    pub(crate) fn collect_garbage(&self, now: u64) -> Result<(), Error> {
        let mut due = Vec::new();
        self.meta.scan(CF_GC, b"", b"", |k, v| {
            let since = <[u8; 8]>::try_from(v).map(u64::from_le_bytes).unwrap_or(0);
            if now.saturating_sub(since) >= self.cfg.gc_grace_ms {
                if let Some(c) = ChunkId::from_slice(k) {
                    due.push(c);
                }
            }
            Ok(due.len() < MAX_GC)
        })?;
        if due.is_empty() {
            return Ok(());
        }
        let mut deletes: HashMap<NodeId, Vec<ChunkId>> = HashMap::new();
        {
            let _g = self.lock();
            let mut t = Txn::new(&self.meta, now);
            for c in &due {
                if self.pending_until(c)? > now {
                    continue;
                }
                let Some(rec) = t.chunk(c)? else { continue };
                if rec.refs > 0 {
                    continue;
                }
                for n in rec.replicas.clone() {
                    deletes.entry(n).or_default().push(*c);
                }
                t.remove_chunk(c)?;
                self.metrics.garbage_deleted.inc();
            }
            t.commit()?;
        }
        tracing::info!(
            chunks = due.len(),
            nodes = deletes.len(),
            "collecting unreferenced chunks"
        );
        for (n, chunks) in deletes {
            self.order_delete(n, chunks);
        }
        Ok(())
    }

    pub(super) fn collect_orphans(&self) -> Result<(), Error> {
        let grace = Duration::from_millis(self.cfg.orphan_grace_ms);
        let due: Vec<(NodeId, ChunkId)> = {
            let r = self.repair_state();
            r.orphans
                .iter()
                .filter(|(_, t)| t.elapsed() >= grace)
                .map(|(k, _)| *k)
                .collect()
        };
        let now = now_ms();
        let mut deletes: HashMap<NodeId, Vec<ChunkId>> = HashMap::new();
        for (node, c) in &due {
            self.repair_state().orphans.remove(&(*node, *c));
            let known = self.meta.get_raw(CF_CHUNKS, c.as_bytes())?.is_some();
            if known || self.pending_until(c)? > now {
                continue;
            }
            deletes.entry(*node).or_default().push(*c);
            self.metrics.orphans_deleted.inc();
        }
        for (n, chunks) in deletes {
            tracing::info!(node = %n, chunks = chunks.len(), "deleting orphan replicas");
            self.order_delete(n, chunks);
        }
        Ok(())
    }
}
