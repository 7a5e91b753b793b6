//! Keeping every chunk at its replication factor without anyone's help.
//!
//! A loop runs every `repair_ms`:
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

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use blob_common::presign::{self, Claims, Op, PipelineNode};
use blob_common::proto::heartbeat::{Command, ReportRange};
use blob_common::{now_ms, now_secs, ChunkId, NodeId, UploadId};
use tokio_util::sync::CancellationToken;

use crate::db::*;
use crate::error::Error;
use crate::Namenode;

/// Work per pass, so one pass never holds things up for long.
const MAX_EVALUATIONS: usize = 20_000;
const MAX_GC: usize = 10_000;

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
        self.collect_garbage()?;
        self.collect_orphans()?;
        self.expire_uploads()?;
        // 4. Finish draining nodes.
        self.finish_decommissions(now)?;
        Ok(())
    }

    /// Brings one chunk back to its target. Returns whether it was short.
    fn evaluate(&self, c: &ChunkId, now: Instant) -> Result<bool, Error> {
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

    fn pending_until(&self, c: &ChunkId) -> Result<u64, Error> {
        Ok(self
            .meta
            .get_raw(CF_PENDING, c.as_bytes())?
            .and_then(|b| <[u8; 8]>::try_from(b.as_slice()).ok())
            .map(u64::from_le_bytes)
            .unwrap_or(0))
    }

    fn collect_garbage(&self) -> Result<(), Error> {
        let now = now_ms();
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

    fn collect_orphans(&self) -> Result<(), Error> {
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

    fn expire_uploads(&self) -> Result<(), Error> {
        let now = now_ms();
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

    fn finish_decommissions(&self, now: Instant) -> Result<(), Error> {
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
        t.put(CF_DATANODES, node.as_bytes(), &rec);
        t.commit()?;
        drop(_g);
        self.meta.sync()
    }

    /// Counts for `admin status`.
    pub(crate) fn repair_counts(&self) -> (u64, u64) {
        let r = self.repair_state();
        (r.in_flight.len() as u64, r.missing.len() as u64)
    }
}
