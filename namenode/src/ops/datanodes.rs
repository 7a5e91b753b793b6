//! The datanode registry as operations: heartbeats (which register a node
//! and carry its commands back), the node list, and starting a
//! decommission.

use std::time::Instant;

use blob_common::proto::heartbeat::{Command, Heartbeat, HeartbeatResponse};
use blob_common::proto::namenode::*;
use blob_common::{now_ms, NodeId};

use crate::db::*;
use crate::error::Error;
use crate::nodes::Liveness;
use crate::Namenode;

pub(crate) fn load_nodes(meta: &Meta) -> Result<Vec<(NodeId, NodeRecord)>, Error> {
    let mut out = Vec::new();
    meta.scan(CF_DATANODES, b"", b"", |k, v| {
        if let Some(id) = NodeId::from_slice(k) {
            let rec: NodeRecord = serde_json::from_slice(v)
                .map_err(|e| Error::Corrupt(format!("datanode record: {e}")))?;
            out.push((id, rec));
        }
        Ok(true)
    })?;
    Ok(out)
}

impl Namenode {
    /// Notes that the namenode runs now; a pause of the namenode itself is
    /// not held against the datanodes ([`crate::nodes::Nodes::tick`]).
    pub(crate) fn tick_clock(&self) {
        let paused = self.nodes_write().tick(Instant::now());
        if let Some(gap) = paused {
            tracing::warn!(
                paused_ms = gap.as_millis() as u64,
                "the namenode was not running; datanode silence during the pause is not counted"
            );
            self.metrics.pauses.inc();
        }
    }

    pub(crate) fn heartbeat(&self, hb: Heartbeat) -> Result<HeartbeatResponse, Error> {
        self.tick_clock();
        let now = Instant::now();
        let node = hb.node;
        let url = hb.url.clone();
        let (changed, ask, live) = {
            let mut nodes = self.nodes_write();
            let changed = nodes.heartbeat(hb, now);
            let ask = nodes.should_ask_report(&node, now);
            (changed, ask, nodes.writable_count(now))
        };
        self.metrics.live_nodes.set(live as i64);
        if changed {
            tracing::info!(node = %node, url = %url, "datanode registered");
            let _g = self.lock();
            let old: Option<NodeRecord> = self.meta.get(CF_DATANODES, node.as_bytes())?;
            let rec = NodeRecord {
                url,
                registered_ms: old.as_ref().map_or(now_ms(), |r| r.registered_ms),
                admin: old.map(|r| r.admin).unwrap_or_default(),
            };
            let mut t = Txn::new(&self.meta, now_ms());
            t.put(CF_DATANODES, node.as_bytes(), &rec)?;
            t.commit()?;
        }
        let mut commands = self.take_commands(&node);
        if ask {
            commands.push(Command::Report);
        }
        Ok(HeartbeatResponse { commands })
    }

    fn node_status(
        &self,
        id: NodeId,
        s: &crate::nodes::NodeState,
        l: Liveness,
        now: Instant,
    ) -> NodeStatus {
        let hb = s.heartbeat.as_ref();
        let state = match (s.admin, l) {
            (AdminState::Decommissioned, _) => "decommissioned",
            (AdminState::Decommissioning, _) => "decommissioning",
            (_, Liveness::Live) => "live",
            (_, Liveness::Stale) => "stale",
            (_, Liveness::Dead) => "dead",
        };
        NodeStatus {
            node: id,
            url: s.url.clone(),
            state: state.into(),
            heartbeat_age_ms: s
                .last_seen
                .map(|t| now.saturating_duration_since(t).as_millis() as u64),
            capacity: hb.map_or(0, |h| h.capacity),
            used: hb.map_or(0, |h| h.used),
            available: hb.map_or(0, |h| h.available),
            chunk_count: hb.map_or(0, |h| h.chunk_count),
            load: hb.map_or(0, |h| h.load),
            read_only: hb.is_some_and(|h| h.read_only),
        }
    }

    pub(crate) fn list_nodes(&self) -> ListNodes {
        let now = Instant::now();
        let nodes = self.nodes_read();
        let nodes = nodes
            .all(now)
            .into_iter()
            .map(|(id, s, l)| self.node_status(id, s, l, now))
            .collect();
        ListNodes { nodes }
    }

    /// Starts draining a node.
    pub(crate) fn decommission(&self, node: &NodeId) -> Result<NodeStatus, Error> {
        self.set_admin_state(node, AdminState::Decommissioning)?;
        tracing::info!(node = %node, "decommission started");
        let now = Instant::now();
        let nodes = self.nodes_read();
        let s = nodes
            .get(node)
            .ok_or_else(|| Error::BadRequest(format!("unknown datanode {node}")))?;
        Ok(self.node_status(*node, s, nodes.liveness(s, now), now))
    }
}
