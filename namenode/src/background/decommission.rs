//! Decommission: a node's administrative state, persisted; a draining node
//! whose chunks all have their replicas elsewhere becomes decommissioned.

use std::time::Instant;

use blob_common::{now_ms, NodeId};

use crate::db::*;
use crate::error::Error;
use crate::Namenode;

impl Namenode {
    pub(super) fn finish_decommissions(&self, now: Instant) -> Result<(), Error> {
        let draining: Vec<NodeId> = self
            .nodes_read()
            .all(now)
            .into_iter()
            .filter(|(_, s, _)| s.admin == AdminState::Decommissioning)
            .map(|(id, ..)| id)
            .collect();
        for node in draining {
            let mut done = true;
            for c in self.chunks_on(&node)? {
                let Some(rec) = self.meta.get::<ChunkRecord>(CF_CHUNKS, c.as_bytes())? else {
                    continue;
                };
                if rec.refs > 0 && self.counted(&rec.replicas, now).len() < self.target_of(&rec) {
                    done = false;
                    break;
                }
            }
            if done {
                tracing::info!(node = %node, "decommission complete");
                self.set_admin_state(&node, AdminState::Decommissioned)?;
            }
        }
        Ok(())
    }

    /// Persists and applies a node's administrative state.
    pub(crate) fn set_admin_state(&self, node: &NodeId, admin: AdminState) -> Result<(), Error> {
        if !self.nodes_write().set_admin(node, admin) {
            return Err(Error::BadRequest(format!("unknown datanode {node}")));
        }
        let _g = self.lock();
        let rec: Option<NodeRecord> = self.meta.get(CF_DATANODES, node.as_bytes())?;
        let mut rec = rec.unwrap_or(NodeRecord {
            url: String::new(),
            registered_ms: now_ms(),
            admin,
        });
        rec.admin = admin;
        let mut t = Txn::new(&self.meta, now_ms());
        t.put(CF_DATANODES, node.as_bytes(), &rec)?;
        t.commit()?;
        drop(_g);
        self.meta.sync()
    }
}
