//! Control path: the node's identity, heartbeats and chunk reports to the
//! namenode.
//!
//! One loop per node: a heartbeat every `heartbeat_ms` (the first one at
//! once; it also registers the node), a full chunk report after the first
//! heartbeat that gets through and whenever the namenode asks for one, and
//! incremental reports of newly stored or quarantined chunks every
//! `report_ms`. Every call is signed with the cluster keyring. An
//! unreachable namenode is logged (rate-limited) and retried forever: a
//! datanode keeps serving reads and writes without it.

use std::io::{self, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use blob_common::proto::heartbeat::{
    ChunkReport, Command, Heartbeat, HeartbeatResponse, ReportRange,
};
use blob_common::proto::namenode::{ChunkRef, MAX_PAGE};
use blob_common::{ChunkId, NodeId};
use bytes::Bytes;
use serde::Serialize;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn, Instrument};

use crate::Node;

/// Route of the heartbeat call, under `/v1`.
const HEARTBEAT_ROUTE: &[&str] = &["datanodes", "heartbeat"];
/// Route of the chunk report call, under `/v1`.
const REPORT_ROUTE: &[&str] = &["datanodes", "report"];
/// At most one "namenode unreachable" warning per this interval.
const WARN_EVERY: Duration = Duration::from_secs(30);

/// Reads the node's id from `DATA/node_id`, or makes a random one and
/// writes it durably on first start. A file that exists but does not hold a
/// valid id is an error, never silently replaced: the id is the node's
/// identity in the namenode's replica map.
pub fn node_id(data_dir: &Path) -> io::Result<NodeId> {
    let path = data_dir.join("node_id");
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            return text.trim().parse().map_err(|e| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{}: {e}", path.display()),
                )
            })
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    std::fs::create_dir_all(data_dir)?;
    let id = NodeId::random();
    let tmp = data_dir.join(format!(
        "node_id.{}.tmp",
        hex::encode(rand::random::<[u8; 4]>())
    ));
    let res = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        writeln!(f, "{id}")?;
        f.sync_all()?;
        // Another process starting on the same directory may have won the
        // race: keep its id rather than replacing it.
        std::fs::hard_link(&tmp, &path)?;
        std::fs::File::open(data_dir)?.sync_all()
    })();
    let _ = std::fs::remove_file(&tmp);
    match res {
        Ok(()) => Ok(id),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => node_id(data_dir),
        Err(e) => Err(e),
    }
}

/// Logs "namenode unreachable" at most once per [`WARN_EVERY`], and once
/// more when it comes back.
#[derive(Default)]
struct WarnLimiter {
    last: Option<Instant>,
    suppressed: u64,
    failing: bool,
}

impl WarnLimiter {
    fn failed(&mut self, call: &'static str, err: &blob_rpc::Error) {
        self.failing = true;
        if self.last.is_none_or(|t| t.elapsed() >= WARN_EVERY) {
            warn!(call, error = %err, suppressed = self.suppressed, "namenode call failed; retrying");
            self.last = Some(Instant::now());
            self.suppressed = 0;
        } else {
            self.suppressed += 1;
            debug!(call, error = %err, "namenode call failed; retrying");
        }
    }

    fn succeeded(&mut self) {
        if self.failing {
            info!("namenode reachable again");
        }
        *self = Self::default();
    }
}

struct Control {
    node: Arc<Node>,
    /// A heartbeat got through: the namenode knows this node.
    registered: bool,
    /// A full report is owed (first registration, or asked for).
    full_pending: bool,
    limiter: WarnLimiter,
    /// Chunks re-verified good on request, for the next report.
    verified: Arc<std::sync::Mutex<Vec<ChunkId>>>,
}

enum Tick {
    Heartbeat,
    Report,
    FullReport,
}

/// Runs the control loop until `shutdown` is cancelled.
pub(crate) async fn run(node: Arc<Node>, shutdown: CancellationToken) {
    let span = tracing::info_span!("control", node = %node.id);
    let mut hb = tokio::time::interval(Duration::from_millis(node.cfg.heartbeat_ms.max(10)));
    hb.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut rep = tokio::time::interval(Duration::from_millis(node.cfg.report_ms.max(10)));
    rep.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let full_every = Duration::from_millis(node.cfg.full_report_ms.max(1000));
    let mut full = tokio::time::interval_at(tokio::time::Instant::now() + full_every, full_every);
    full.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut ctl = Control {
        node,
        registered: false,
        full_pending: true,
        limiter: WarnLimiter::default(),
        verified: Arc::default(),
    };
    async move {
        loop {
            // `biased`: the heartbeat (also the first tick, at once) goes
            // before a report that would only be refused anyway.
            let tick = tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                _ = hb.tick() => Tick::Heartbeat,
                _ = rep.tick() => Tick::Report,
                _ = full.tick() => Tick::FullReport,
            };
            let work = async {
                match tick {
                    Tick::Heartbeat => ctl.heartbeat().await,
                    Tick::Report => ctl.flush_reports().await,
                    Tick::FullReport => {
                        ctl.full_pending = true;
                        ctl.flush_reports().await
                    }
                }
            };
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = work => {}
            }
        }
        debug!("control loop stopped");
    }
    .instrument(span)
    .await
}

impl Control {
    async fn heartbeat(&mut self) {
        let node = &self.node;
        let (space, read_only) = node.space();
        let hb = Heartbeat {
            node: node.id,
            url: node.url.clone(),
            capacity: space.capacity,
            used: node.store.used(),
            available: space.available,
            chunk_count: node.store.chunk_count(),
            load: node.metrics.transfers_in_flight.get().max(0) as u64,
            read_only,
        };
        let answer = match self.post(HEARTBEAT_ROUTE, &hb).await {
            Ok(body) => body,
            Err(e) => {
                self.limiter.failed("heartbeat", &e);
                return;
            }
        };
        self.limiter.succeeded();
        if !self.registered {
            info!(namenode = %node.cfg.namenode, "heartbeat accepted by the namenode");
            self.registered = true;
        }
        let answer: HeartbeatResponse = if answer.is_empty() {
            HeartbeatResponse::default()
        } else {
            serde_json::from_slice(&answer).unwrap_or_else(|e| {
                warn!(error = %e, "heartbeat answer is not a HeartbeatResponse; ignoring it");
                HeartbeatResponse::default()
            })
        };
        for cmd in answer.commands {
            match cmd {
                Command::Report => self.full_pending = true,
                Command::Copy {
                    chunk,
                    size,
                    url,
                    targets,
                } => crate::repair::spawn_copy(&self.node, chunk, size, url, targets),
                Command::Verify { chunks } => self.spawn_verify(chunks),
                Command::Delete { chunks, issued_ms } => {
                    let store = Arc::clone(&self.node.store);
                    tokio::task::spawn_blocking(move || store.delete_chunks(&chunks, issued_ms));
                }
                other => debug!(command = ?other, "ignoring unknown command"),
            }
        }
        if self.full_pending {
            self.send_full_report().await;
        }
    }

    /// Re-reads chunks a reader claimed corrupt, one at a time on a
    /// blocking thread. A mismatch quarantines the chunk (reported as
    /// corrupt); a match is reported as verified, which clears the claim.
    fn spawn_verify(&self, chunks: Vec<ChunkId>) {
        let store = Arc::clone(&self.node.store);
        let verified = Arc::clone(&self.verified);
        tokio::task::spawn_blocking(move || {
            for id in chunks {
                match crate::repair::verify(&store, &id) {
                    Ok(0) => debug!(chunk = %id.short(), "asked to verify a chunk not held here"),
                    Ok(_) => {
                        info!(chunk = %id.short(), "claimed-corrupt chunk verified good");
                        lock_list(&verified).push(id);
                    }
                    Err(reason) => {
                        warn!(chunk = %id.short(), %reason, "claimed-corrupt chunk confirmed bad")
                    }
                }
            }
        });
    }

    async fn flush_reports(&mut self) {
        if !self.registered {
            return;
        }
        if self.full_pending {
            self.send_full_report().await;
        }
        // Incremental changes go whether or not a full report got through:
        // a refused full report must not leave the namenode blind.
        let (mut chunks, mut deleted) = self.node.store.take_changes();
        let mut corrupt = self.node.store.take_corrupt();
        let mut verified = std::mem::take(&mut *lock_list(&self.verified));
        // In pages of at most MAX_PAGE entries per list; what a failed page
        // did not carry goes back for the next tick.
        while !(chunks.is_empty()
            && deleted.is_empty()
            && corrupt.is_empty()
            && verified.is_empty())
        {
            let report = ChunkReport {
                node: self.node.id,
                full: false,
                range: None,
                chunks: take_page(&mut chunks),
                deleted: take_page(&mut deleted),
                corrupt: take_page(&mut corrupt),
                verified: take_page(&mut verified),
            };
            match self.post(REPORT_ROUTE, &report).await {
                Ok(_) => {
                    self.limiter.succeeded();
                    debug!(
                        added = report.chunks.len(),
                        deleted = report.deleted.len(),
                        "incremental report sent"
                    );
                }
                Err(e) => {
                    self.limiter.failed("incremental report", &e);
                    corrupt.extend(report.corrupt);
                    verified.extend(report.verified);
                    chunks.extend(report.chunks);
                    deleted.extend(report.deleted);
                    self.node.store.requeue_corrupt(corrupt);
                    lock_list(&self.verified).extend(verified);
                    self.node.store.requeue_changes(chunks, deleted);
                    return;
                }
            }
        }
    }

    /// Sends everything this node holds, in pages of at most
    /// [`MAX_PAGE`] chunks, each covering a range of ids (so the namenode
    /// can tell, page by page, which replicas are gone). A page that fails
    /// leaves the report owed, retried from the start at the next tick.
    async fn send_full_report(&mut self) {
        let mut all = self.node.store.full_report();
        all.sort_unstable_by(|a, b| a.id.as_bytes().cmp(b.id.as_bytes()));
        let pages: Vec<&[ChunkRef]> = if all.is_empty() {
            vec![&[]]
        } else {
            all.chunks(MAX_PAGE).collect()
        };
        let count = pages.len();
        for (i, page) in pages.iter().enumerate() {
            let range = ReportRange {
                start: (i > 0).then(|| page.first().map(|c| c.id)).flatten(),
                end: pages.get(i + 1).and_then(|p| p.first()).map(|c| c.id),
            };
            let report = ChunkReport {
                node: self.node.id,
                full: true,
                range: (count > 1).then_some(range),
                chunks: page.to_vec(),
                deleted: Vec::new(),
                corrupt: Vec::new(),
                verified: Vec::new(),
            };
            if let Err(e) = self.post(REPORT_ROUTE, &report).await {
                // Still owed: retried at the next report tick.
                self.limiter.failed("full report", &e);
                return;
            }
        }
        self.limiter.succeeded();
        self.full_pending = false;
        info!(chunks = all.len(), pages = count, "full chunk report sent");
    }

    /// POSTs `body` as JSON to `/v1/<segments…>` on the namenode, signed
    /// with the cluster key. Not retried here: the loop's next tick is the
    /// retry.
    async fn post(
        &self,
        segments: &[&str],
        body: &impl Serialize,
    ) -> Result<Bytes, blob_rpc::Error> {
        self.node.namenode.post(segments).body(body).bytes().await
    }
}

/// Takes up to [`MAX_PAGE`] entries off the end of `v`.
fn take_page<T>(v: &mut Vec<T>) -> Vec<T> {
    v.split_off(v.len().saturating_sub(MAX_PAGE))
}

fn lock_list(m: &std::sync::Mutex<Vec<ChunkId>>) -> std::sync::MutexGuard<'_, Vec<ChunkId>> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_id_is_created_once_and_kept() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let sub = dir.path().join("fresh");
        let a = node_id(&sub).unwrap_or_else(|e| panic!("{e}"));
        let b = node_id(&sub).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(a, b);
        let text = std::fs::read_to_string(sub.join("node_id")).unwrap_or_default();
        assert_eq!(text.trim(), a.to_string());
        assert_eq!(text.trim().len(), 16);
        let leftovers = std::fs::read_dir(&sub).map(|d| d.count()).unwrap_or(0);
        assert_eq!(leftovers, 1);
    }

    #[test]
    fn a_garbled_node_id_is_an_error_not_a_new_identity() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(dir.path().join("node_id"), "not hex").unwrap_or_else(|e| panic!("{e}"));
        let err = node_id(dir.path()).err().map(|e| e.kind());
        assert_eq!(err, Some(io::ErrorKind::InvalidData));
    }
}
