//! Re-replication: brings one chunk back to its replication factor (a
//! `Copy` from a live holder when it has too few counted replicas, a
//! `Delete` of the extra ones when it has too many and every holder is
//! live), and reads the node → chunks index that dead and draining nodes
//! are evacuated from.

use std::time::{Duration, Instant};

use blob_common::presign::{self, Claims, Op, PipelineNode};
use blob_common::proto::heartbeat::{Command, ReportRange};
use blob_common::{now_ms, now_secs, ChunkId, NodeId};

use super::InFlight;
use crate::db::*;
use crate::error::Error;
use crate::Namenode;

impl Namenode {
    /// Chunks whose replica is on `node` within `range`, from the index.
    pub(crate) fn chunks_on_range(
        &self,
        node: &NodeId,
        range: &ReportRange,
    ) -> Result<Vec<ChunkId>, Error> {
        let mut out = Vec::new();
        let start = match &range.start {
            Some(s) => node_chunk_key(node, s),
            None => node.as_bytes().to_vec(),
        };
        self.meta.scan(
            CF_NODE_CHUNKS,
            node.as_bytes(),
            &start,
            |k, _| match ChunkId::from_slice(&k[8..]) {
                Some(c) if range.contains(&c) => {
                    out.push(c);
                    Ok(true)
                }
                Some(_) => Ok(false),
                None => Ok(true),
            },
        )?;
        Ok(out)
    }

    /// Chunks whose replica is on `node`, from the index.
    pub(crate) fn chunks_on(&self, node: &NodeId) -> Result<Vec<ChunkId>, Error> {
        let mut out = Vec::new();
        self.meta
            .scan(CF_NODE_CHUNKS, node.as_bytes(), node.as_bytes(), |k, _| {
                if let Some(c) = ChunkId::from_slice(&k[8..]) {
                    out.push(c);
                }
                Ok(true)
            })?;
        Ok(out)
    }

    /// The replication a chunk should have.
    pub(crate) fn target_of(&self, rec: &ChunkRecord) -> usize {
        usize::from(if rec.target == 0 {
            self.cfg.default_replication
        } else {
            rec.target
        })
    }

    /// Brings one chunk back to its target. Returns whether it was short.
    pub(super) fn evaluate(&self, c: &ChunkId, now: Instant) -> Result<bool, Error> {
        let Some(rec) = self.meta.get::<ChunkRecord>(CF_CHUNKS, c.as_bytes())? else {
            return Ok(false);
        };
        if rec.refs == 0 {
            return Ok(false);
        }
        let target = self.target_of(&rec);
        let counted = self.counted(&rec.replicas, now);
        if self.repair_state().in_flight.contains_key(c) {
            return Ok(counted.len() < target);
        }
        if counted.len() < target {
            let nodes = self.nodes_read();
            let sources: Vec<NodeId> = rec
                .replicas
                .iter()
                .copied()
                .filter(|n| nodes.is_source(n, now))
                .collect();
            drop(nodes);
            if sources.is_empty() {
                if self.repair_state().missing.insert(*c) {
                    tracing::error!(chunk = %c.short(), replicas = rec.replicas.len(), "chunk has no live replica: missing");
                }
                return Ok(true);
            }
            self.repair_state().missing.remove(c);
            // The least busy source with room for another copy.
            let source = {
                let r = self.repair_state();
                let busy = |n: &NodeId| r.in_flight.values().filter(|f| &f.source == n).count();
                sources
                    .iter()
                    .map(|n| (busy(n), *n))
                    .filter(|(b, _)| *b < self.cfg.max_copies_per_node)
                    .min()
                    .map(|(_, n)| n)
            };
            let Some(source) = source else {
                self.enqueue([*c]);
                return Ok(true);
            };
            let want = target - counted.len();
            let chosen = {
                let nodes = self.nodes_read();
                let mut rng = rand::thread_rng();
                let free = nodes.writable_excluding(&rec.replicas, now);
                if free == 0 {
                    // No node to copy to yet (e.g. written on a quorum while
                    // a node was down): looked at again next pass, so it is
                    // repaired as soon as a node comes back or joins.
                    drop(nodes);
                    self.enqueue([*c]);
                    return Ok(true);
                }
                nodes.place(want.min(free), &rec.replicas, now, &mut rng)?
            };
            let claims = Claims {
                op: Op::Put,
                chunk: *c,
                exp: now_secs() + self.cfg.presign_ttl_secs,
                kid: String::new(),
                size: Some(rec.size),
                pipeline: chosen
                    .iter()
                    .map(|(n, u)| PipelineNode {
                        node: *n,
                        url: u.clone(),
                    })
                    .collect(),
                upload: None,
                origins: vec![],
            };
            let url = presign::url(&chosen[0].1, &self.keyring, &claims);
            let targets: Vec<NodeId> = chosen.iter().map(|(n, _)| *n).collect();
            tracing::info!(chunk = %c.short(), from = %source, to = ?targets, have = counted.len(), want = target, "ordering replica copy");
            let deadline = now + Duration::from_millis(self.cfg.copy_timeout_ms);
            let mut r = self.repair_state();
            r.in_flight.insert(
                *c,
                InFlight {
                    source,
                    targets: targets.clone(),
                    deadline,
                },
            );
            r.commands.entry(source).or_default().push(Command::Copy {
                chunk: *c,
                size: rec.size,
                url,
                targets,
            });
            drop(r);
            self.metrics.copies.inc();
            return Ok(true);
        }
        self.repair_state().missing.remove(c);
        {
            let _g = self.lock();
            let mut t = Txn::new(&self.meta, now_ms());
            self.clear_corrupt_marks(&mut t, c)?;
            t.commit()?;
        }
        if counted.len() > target && self.nodes_read().all_live(&counted, now) {
            // Drop the replicas on the fullest nodes.
            let mut by_used: Vec<(u64, NodeId)> = {
                let nodes = self.nodes_read();
                counted
                    .iter()
                    .map(|n| {
                        (
                            nodes
                                .get(n)
                                .and_then(|s| s.heartbeat.as_ref())
                                .map_or(0, |h| h.used),
                            *n,
                        )
                    })
                    .collect()
            };
            by_used.sort();
            let drop_nodes: Vec<NodeId> = by_used
                .iter()
                .rev()
                .take(counted.len() - target)
                .map(|(_, n)| *n)
                .collect();
            {
                let _g = self.lock();
                let mut t = Txn::new(&self.meta, now_ms());
                if let Some(rec) = t.chunk(c)? {
                    rec.replicas.retain(|n| !drop_nodes.contains(n));
                }
                t.commit()?;
            }
            for n in drop_nodes {
                tracing::info!(chunk = %c.short(), node = %n, "trimming excess replica");
                self.metrics.trimmed.inc();
                self.order_delete(n, vec![*c]);
            }
        }
        Ok(false)
    }
}
