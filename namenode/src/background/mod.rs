//! Background work that keeps the cluster healthy without anyone's help.
//!
//! A loop ([`run`]) makes one pass every `repair_ms`:
//! 1. Nodes that died or are being drained have their replicas (from the
//!    `node_chunks` index) queued once.
//! 2. Queued chunks are evaluated most endangered first (fewest counted
//!    replicas): too few → a `Copy` command to a live holder (at most
//!    `max_copies_per_node` per source), carried in its next heartbeat
//!    answer; too many while every holder is live → the extra replicas are
//!    dropped from the record and a `Delete` sent; none left → reported
//!    missing, never silently dropped.
//! 3. Chunks without references for `gc_grace_ms`, orphans reported by
//!    datanodes for `orphan_grace_ms`, and sessions older than
//!    `upload_ttl_ms` are collected. A chunk an upload was told to send
//!    (its `pending` mark) is never collected before the mark expires, and
//!    datanodes keep a chunk written after the delete was decided.
//! 4. A draining node whose chunks all have their replicas elsewhere
//!    becomes decommissioned.
//!
//! One file per job: [`repair`] (step 2 and the node index), [`gc`],
//! [`sessions`] (also the multipart sweep loop) and [`decommission`].
//! Buckets' lifecycle rules run in their own loop ([`lifecycle`]).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use blob_common::proto::heartbeat::Command;
use blob_common::{now_ms, ChunkId, NodeId};
use tokio_util::sync::CancellationToken;

use crate::db::*;
use crate::error::Error;
use crate::Namenode;

mod decommission;
mod gc;
mod lifecycle;
mod repair;
mod sessions;

pub(crate) use lifecycle::lifecycle_loop;
pub(crate) use sessions::sweep_loop;

/// Chunks evaluated per pass at most, so one pass never holds things up
/// for long.
const MAX_EVALUATIONS: usize = 20_000;

/// A copy ordered and not yet confirmed.
#[derive(Debug)]
struct InFlight {
    source: NodeId,
    targets: Vec<NodeId>,
    deadline: Instant,
}

/// In-memory repair state (rebuilt from metadata after a restart: dead
/// nodes are found again and their chunks queued).
#[derive(Debug, Default)]
pub(crate) struct Repair {
    incoming: HashSet<ChunkId>,
    in_flight: HashMap<ChunkId, InFlight>,
    commands: HashMap<NodeId, Vec<Command>>,
    evacuated: HashSet<NodeId>,
    missing: HashSet<ChunkId>,
    orphans: HashMap<(NodeId, ChunkId), Instant>,
}

/// The repair loop.
pub(crate) async fn run(nn: Arc<Namenode>, shutdown: CancellationToken) {
    let span = tracing::info_span!("repair");
    let every = Duration::from_millis(nn.cfg.repair_ms);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        let nn2 = nn.clone();
        let span2 = span.clone();
        let res = tokio::task::spawn_blocking(move || span2.in_scope(|| nn2.repair_pass())).await;
        match res {
            Ok(Ok(())) => {}
            Ok(Err(e)) => span.in_scope(|| tracing::warn!(error = %e, "repair pass failed")),
            Err(e) => span.in_scope(|| tracing::error!(error = %e, "repair pass panicked")),
        }
    }
}

impl Namenode {
    fn repair_state(&self) -> std::sync::MutexGuard<'_, Repair> {
        self.repair.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues chunks for evaluation by the next pass.
    pub(crate) fn enqueue(&self, chunks: impl IntoIterator<Item = ChunkId>) {
        self.repair_state().incoming.extend(chunks);
    }

    /// Commands waiting for `node`, handed over in its heartbeat answer.
    pub(crate) fn take_commands(&self, node: &NodeId) -> Vec<Command> {
        self.repair_state()
            .commands
            .remove(node)
            .unwrap_or_default()
    }

    /// A target reported a chunk: a copy to it is done.
    pub(crate) fn note_received(&self, node: &NodeId, chunks: &[ChunkId]) {
        let mut r = self.repair_state();
        let mut done = Vec::new();
        for c in chunks {
            if let Some(f) = r.in_flight.get_mut(c) {
                f.targets.retain(|t| t != node);
                if f.targets.is_empty() {
                    done.push(*c);
                }
            }
        }
        for c in done {
            r.in_flight.remove(&c);
            r.incoming.insert(c);
        }
    }

    /// A datanode holds a chunk no metadata knows.
    pub(crate) fn note_orphan(&self, node: NodeId, chunk: ChunkId) {
        self.repair_state()
            .orphans
            .entry((node, chunk))
            .or_insert_with(Instant::now);
    }

    /// Queues a delete of `chunks` on `node`.
    pub(crate) fn order_delete(&self, node: NodeId, chunks: Vec<ChunkId>) {
        if chunks.is_empty() {
            return;
        }
        self.order_command(
            node,
            Command::Delete {
                chunks,
                issued_ms: now_ms(),
            },
        );
    }

    /// Queues a command for `node`'s next heartbeat answer, merged with a
    /// waiting command of the same kind.
    pub(crate) fn order_command(&self, node: NodeId, cmd: Command) {
        let mut r = self.repair_state();
        let queue = r.commands.entry(node).or_default();
        match (queue.last_mut(), cmd) {
            (
                Some(Command::Delete {
                    chunks: waiting,
                    issued_ms,
                }),
                Command::Delete {
                    chunks,
                    issued_ms: now,
                },
            ) => {
                waiting.extend(chunks);
                *issued_ms = now;
            }
            (Some(Command::Verify { chunks: waiting }), Command::Verify { chunks }) => {
                waiting.extend(chunks);
            }
            (_, cmd) => queue.push(cmd),
        }
    }

    /// One pass of the loop.
    pub(crate) fn repair_pass(&self) -> Result<(), Error> {
        self.tick_clock();
        let now = Instant::now();
        let lapsed = self.claims.expire(now);
        if lapsed > 0 {
            tracing::info!(
                lapsed,
                "corruption claims whose verification was never answered lapsed"
            );
        }
        // 1. Evacuate dead and draining nodes once.
        let needing = self.nodes_read().needing_evacuation(now);
        let fresh: Vec<NodeId> = {
            let mut r = self.repair_state();
            r.evacuated.retain(|n| needing.contains(n));
            needing
                .into_iter()
                .filter(|n| r.evacuated.insert(*n))
                .collect()
        };
        for node in fresh {
            let dead = self
                .nodes_read()
                .get(&node)
                .is_some_and(|s| s.admin != AdminState::Decommissioning);
            if dead {
                self.metrics.nodes_dead.inc();
            }
            let chunks = self.chunks_on(&node)?;
            tracing::info!(node = %node, chunks = chunks.len(), "node dead or draining: queueing its replicas");
            self.enqueue(chunks);
        }
        // Expired copies are planned again, and so are copies to a target
        // or from a source that stopped heartbeating since (a node killed
        // just after the copy was ordered would otherwise hold the chunk
        // back for the whole copy timeout).
        {
            let live: HashSet<NodeId> = {
                let nodes = self.nodes_read();
                nodes
                    .all(now)
                    .into_iter()
                    .filter(|(id, ..)| nodes.is_source(id, now))
                    .map(|(id, ..)| id)
                    .collect()
            };
            let mut r = self.repair_state();
            let expired: Vec<ChunkId> = r
                .in_flight
                .iter()
                .filter(|(_, f)| {
                    f.deadline <= now
                        || !live.contains(&f.source)
                        || f.targets.iter().any(|t| !live.contains(t))
                })
                .map(|(c, _)| *c)
                .collect();
            for c in expired {
                r.in_flight.remove(&c);
                r.incoming.insert(c);
            }
        }
        // 2. Evaluate, most endangered first.
        let batch: Vec<ChunkId> = {
            let mut r = self.repair_state();
            let take: Vec<ChunkId> = r.incoming.iter().take(MAX_EVALUATIONS).copied().collect();
            for c in &take {
                r.incoming.remove(c);
            }
            take
        };
        let mut ordered = BTreeSet::new();
        for c in batch {
            if let Some(rec) = self.meta.get::<ChunkRecord>(CF_CHUNKS, c.as_bytes())? {
                let counted = self.counted(&rec.replicas, now).len();
                ordered.insert((counted, c));
            } else {
                self.repair_state().missing.remove(&c);
            }
        }
        let mut under = 0i64;
        for (_, c) in ordered {
            if self.evaluate(&c, now)? {
                under += 1;
            }
        }
        if under > 0 {
            tracing::info!(under_replicated = under, "repair pass");
        }
        self.metrics.under_replicated.set(under);
        self.metrics
            .missing_chunks
            .set(self.repair_state().missing.len() as i64);
        // 3. Collect garbage, orphans and stale sessions.
        self.collect_garbage(now_ms())?;
        self.collect_orphans()?;
        self.expire_uploads(now_ms())?;
        // 4. Finish draining nodes.
        self.finish_decommissions(now)?;
        Ok(())
    }

    /// Counts for `admin status`.
    pub(crate) fn repair_counts(&self) -> (u64, u64) {
        let r = self.repair_state();
        (r.in_flight.len() as u64, r.missing.len() as u64)
    }
}
