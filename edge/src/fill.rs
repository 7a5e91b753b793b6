//! Filling a miss from an origin, once, for every request that waits.
//!
//! One [`Fill`] per chunk in flight (the map lives in [`crate::store`]):
//! the first request for a cold chunk starts it, later ones join it. A
//! spawned task (independent of any request, so a reader that goes away
//! does not cancel the others) GETs the chunk from the signed origins in
//! order, appending frames to the fill as they arrive and hashing them.
//! Readers stream those frames as they come, except the frame that
//! completes the chunk: it is released only once the SHA-256 matched and
//! the chunk is in the cache. A mismatch (or any failure) on one origin
//! starts over on the next one; a reader that already sent bytes of the
//! abandoned attempt has its body aborted, so its client sees a truncated
//! transfer and reads elsewhere. Nothing unverified is ever cached, and no
//! reader ever receives a whole chunk that did not verify.

use std::io;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use blob_common::proto::namenode::BadReplica;
use blob_common::REQUEST_ID;
use blob_common::{ChunkId, NodeId};
use bytes::Bytes;
use sha2::{Digest, Sha256};
use tokio::sync::watch;
use tracing::{debug, info, warn, Instrument};

use crate::Edge;

/// A datanode to fill from: its id and a pre-signed GET URL for the chunk.
#[derive(Debug, Clone)]
pub(crate) struct Origin {
    pub(crate) node: NodeId,
    pub(crate) url: String,
}

#[derive(Debug, Default)]
struct FillState {
    /// Bumped when an attempt is abandoned after it published bytes.
    generation: u64,
    /// The chunk's size, once known (signed, or from the origin).
    size: Option<u64>,
    /// Frames of the current attempt.
    frames: Vec<Bytes>,
    /// Bytes in `frames`.
    received: u64,
    /// The verified chunk, or why every origin failed.
    done: Option<Result<Bytes, String>>,
}

/// A chunk on its way from an origin, shared by every request waiting
/// for it.
#[derive(Debug)]
pub(crate) struct Fill {
    pub(crate) id: ChunkId,
    state: Mutex<FillState>,
    changed: watch::Sender<u64>,
}

impl Fill {
    pub(crate) fn new(id: ChunkId, size: Option<u64>) -> Arc<Self> {
        Arc::new(Self {
            id,
            state: Mutex::new(FillState {
                size,
                ..FillState::default()
            }),
            changed: watch::channel(0).0,
        })
    }

    fn lock(&self) -> MutexGuard<'_, FillState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn bump(&self) {
        self.changed.send_modify(|v| *v += 1);
    }

    /// Starts an attempt on a new origin: whatever the last one published
    /// is dropped (and readers that sent some of it are aborted).
    fn begin_attempt(&self, size: u64) {
        let mut st = self.lock();
        if st.received > 0 {
            st.generation += 1;
            st.frames.clear();
            st.received = 0;
        }
        st.size = Some(size);
        drop(st);
        self.bump();
    }

    fn push(&self, frame: Bytes) {
        let mut st = self.lock();
        st.received += frame.len() as u64;
        st.frames.push(frame);
        drop(st);
        self.bump();
    }

    fn finish(&self, result: Result<Bytes, String>) {
        let mut st = self.lock();
        if st.done.is_none() {
            st.done = Some(result);
            // Readers serve the rest from the whole chunk.
            st.frames.clear();
        }
        drop(st);
        self.bump();
    }

    fn is_done(&self) -> bool {
        self.lock().done.is_some()
    }

    /// Waits until the chunk's size is known and its bytes started to
    /// arrive (or the fill ended); returns the size.
    pub(crate) async fn wait_started(&self) -> Result<u64, String> {
        let mut rx = self.changed.subscribe();
        loop {
            rx.borrow_and_update();
            {
                let st = self.lock();
                match (&st.done, st.size) {
                    (Some(Ok(b)), _) => return Ok(b.len() as u64),
                    (Some(Err(e)), _) => return Err(e.clone()),
                    (None, Some(size)) if st.received > 0 || size == 0 => return Ok(size),
                    _ => {}
                }
            }
            if rx.changed().await.is_err() {
                return Err("fill ended".into());
            }
        }
    }

    /// Waits for the verified chunk.
    pub(crate) async fn wait_done(&self) -> Result<Bytes, String> {
        let mut rx = self.changed.subscribe();
        loop {
            rx.borrow_and_update();
            if let Some(done) = &self.lock().done {
                return done.clone();
            }
            if rx.changed().await.is_err() {
                return Err("fill ended".into());
            }
        }
    }

    /// The whole chunk as a body stream: frames as they arrive, the last
    /// one only once verified.
    pub(crate) fn reader(self: Arc<Self>) -> Reader {
        let rx = self.changed.subscribe();
        let generation = self.lock().generation;
        Reader {
            fill: self,
            rx,
            generation,
            next: 0,
            sent: 0,
        }
    }
}

/// One request's position in a [`Fill`].
pub(crate) struct Reader {
    fill: Arc<Fill>,
    rx: watch::Receiver<u64>,
    generation: u64,
    next: usize,
    sent: u64,
}

impl Reader {
    /// The next frame, `None` at the end, an error if the fill failed or
    /// switched origin after this reader sent bytes of the old attempt.
    pub(crate) async fn next_frame(&mut self) -> Option<Result<Bytes, io::Error>> {
        loop {
            self.rx.borrow_and_update();
            {
                let st = self.fill.lock();
                if st.generation != self.generation {
                    if self.sent > 0 {
                        return Some(Err(io::Error::other(
                            "the origin failed mid-transfer; read the chunk again",
                        )));
                    }
                    self.generation = st.generation;
                    self.next = 0;
                }
                match &st.done {
                    Some(Err(e)) => return Some(Err(io::Error::other(e.clone()))),
                    Some(Ok(whole)) => {
                        let at = usize::try_from(self.sent).unwrap_or(usize::MAX);
                        if at >= whole.len() {
                            return None;
                        }
                        self.sent = whole.len() as u64;
                        return Some(Ok(whole.slice(at..)));
                    }
                    None => {
                        if let Some(f) = st.frames.get(self.next) {
                            let end = self.sent + f.len() as u64;
                            // The frame that completes the chunk waits for
                            // the SHA-256.
                            if st.size != Some(end) {
                                self.next += 1;
                                self.sent = end;
                                return Some(Ok(f.clone()));
                            }
                        }
                    }
                }
            }
            if self.rx.changed().await.is_err() {
                return Some(Err(io::Error::other("fill ended")));
            }
        }
    }
}

/// Finishes a fill with an error if its task ends without an answer
/// (panic, shutdown), so no reader waits forever.
struct FinishGuard(Arc<Fill>);

impl Drop for FinishGuard {
    fn drop(&mut self) {
        if !self.0.is_done() {
            self.0.finish(Err("the fill was cancelled".into()));
        }
    }
}

/// Why one origin did not give the chunk.
enum AttemptError {
    /// Its bytes do not hash to the chunk id.
    Corrupt(ChunkId),
    /// Anything else (refused, unreachable, truncated, wrong length).
    Failed(String),
}

/// Fills `fill` from `origins` in order and puts the verified chunk in
/// the cache (`force`: past TinyLFU admission, for warm-up).
pub(crate) async fn run(edge: Arc<Edge>, fill: Arc<Fill>, origins: Vec<Origin>, force: bool) {
    let id = fill.id;
    let span = tracing::info_span!("fill", chunk = %id.short());
    async move {
        let _guard = FinishGuard(fill.clone());
        let started = Instant::now();
        // Never closed: the semaphore lives as long as the edge.
        let _permit = edge.fill_permits.acquire().await.ok();
        edge.metrics.fills.inc();
        edge.metrics.fills_in_flight.inc();
        let mut last = String::from("the signed URL names no origin");
        for origin in &origins {
            match attempt(&edge, &fill, origin).await {
                Ok(whole) => {
                    let size = whole.len();
                    // Cached (the disk write queued) before the last
                    // frame goes out: the next request is a hit.
                    edge.cache.complete(id, whole.clone(), force);
                    fill.finish(Ok(whole));
                    let secs = started.elapsed().as_secs_f64();
                    edge.metrics.fill_seconds.observe(secs);
                    edge.metrics.fills_in_flight.dec();
                    debug!(size, node = %origin.node, ms = secs * 1000.0, "filled");
                    return;
                }
                Err(AttemptError::Corrupt(actual)) => {
                    edge.metrics.corrupt_origins.inc();
                    let reason = format!("content hashes to {actual}");
                    warn!(node = %origin.node, %reason, "origin replica is corrupt; trying the next");
                    report_bad_replica(&edge, id, origin.node, reason.clone(), Some(actual));
                    last = format!("replica on {} is corrupt: {reason}", origin.node);
                }
                Err(AttemptError::Failed(e)) => {
                    info!(node = %origin.node, error = %e, "origin failed; trying the next");
                    last = format!("{}: {e}", origin.node);
                }
            }
        }
        edge.metrics.fill_failures.inc();
        edge.metrics.fills_in_flight.dec();
        warn!(error = %last, "every origin failed");
        edge.cache.abandon(&id);
        fill.finish(Err(last));
    }
    .instrument(span)
    .await
}

async fn attempt(edge: &Edge, fill: &Fill, origin: &Origin) -> Result<Bytes, AttemptError> {
    let id = fill.id;
    let mut req = edge.http.get(&origin.url);
    if let Some(rid) = blob_server::http::current_request_id() {
        req = req.header(REQUEST_ID, rid);
    }
    let failed = |e: reqwest::Error| AttemptError::Failed(error_chain(&e.without_url()));
    let mut resp = req.send().await.map_err(failed)?;
    if resp.status() != reqwest::StatusCode::OK {
        let status = resp.status();
        let body = resp.text().await.unwrap_or_default();
        return Err(AttemptError::Failed(format!(
            "answered {status}: {}",
            body.chars().take(200).collect::<String>()
        )));
    }
    let signed = fill.lock().size;
    let size = match (resp.content_length(), signed) {
        (Some(l), Some(s)) if l != s => {
            return Err(AttemptError::Failed(format!(
                "announced {l} bytes, the chunk has {s}"
            )))
        }
        (Some(l), _) => l,
        (None, Some(s)) => s,
        (None, None) => {
            return Err(AttemptError::Failed(
                "announced no length and the URL no size".into(),
            ))
        }
    };
    let cap = usize::try_from(size)
        .map_err(|_| AttemptError::Failed(format!("chunk of {size} bytes is too large")))?;
    fill.begin_attempt(size);
    let mut sha = Sha256::new();
    let mut whole = edge.cache.fill_buffer(cap);
    while let Some(frame) = resp.chunk().await.map_err(failed)? {
        if whole.len() + frame.len() > cap {
            return Err(AttemptError::Failed(format!("sent more than {size} bytes")));
        }
        edge.metrics.origin_bytes.inc_by(frame.len() as u64);
        sha.update(&frame);
        whole.extend_from_slice(&frame);
        fill.push(frame);
    }
    if whole.len() != cap {
        return Err(AttemptError::Failed(format!(
            "sent {} of {size} bytes (truncated)",
            whole.len()
        )));
    }
    let actual = ChunkId::from_hasher(sha);
    if actual != id {
        return Err(AttemptError::Corrupt(actual));
    }
    Ok(whole.freeze())
}

/// Tells the namenode (if configured) that a replica is corrupt, with the
/// cluster credentials, in the background.
fn report_bad_replica(
    edge: &Arc<Edge>,
    chunk: ChunkId,
    node: NodeId,
    reason: String,
    actual: Option<ChunkId>,
) {
    if edge.cfg.namenode.is_none() {
        return;
    }
    let edge = edge.clone();
    tokio::spawn(
        async move {
            let report = BadReplica {
                chunk,
                node,
                reason,
                actual,
            };
            let res = match crate::warm::namenode(&edge) {
                Ok(nn) => nn
                    .post(&["chunks", "bad"])
                    .body(&report)
                    .ok()
                    .await
                    .map_err(|e| e.to_string()),
                Err(e) => Err(e),
            };
            match res {
                Ok(_) => info!(%node, "reported a corrupt replica to the namenode"),
                Err(e) => warn!(%node, error = %e, "could not report a corrupt replica"),
            }
        }
        .in_current_span(),
    );
}

pub(crate) use blob_rpc::chain as error_chain;

#[cfg(test)]
mod tests {
    use super::*;

    async fn collect(mut r: Reader) -> Result<Vec<u8>, io::Error> {
        let mut out = Vec::new();
        while let Some(f) = r.next_frame().await {
            out.extend_from_slice(&f?);
        }
        Ok(out)
    }

    #[tokio::test]
    async fn readers_stream_frames_but_the_last_waits_for_the_verdict() {
        let data = Bytes::from_static(b"0123456789");
        let fill = Fill::new(ChunkId::of(&data), Some(10));
        let mut r = fill.clone().reader();
        fill.begin_attempt(10);
        fill.push(data.slice(0..4));
        fill.push(data.slice(4..10));
        let first = r.next_frame().await.and_then(Result::ok);
        assert_eq!(first.as_deref(), Some(&b"0123"[..]));
        // The completing frame is held until the fill finishes.
        let held = tokio::time::timeout(std::time::Duration::from_millis(50), r.next_frame()).await;
        assert!(held.is_err());
        fill.finish(Ok(data.clone()));
        let rest = r.next_frame().await.and_then(Result::ok);
        assert_eq!(rest.as_deref(), Some(&b"456789"[..]));
        assert!(r.next_frame().await.is_none());
        // A late reader gets everything at once.
        assert_eq!(
            collect(fill.clone().reader()).await.ok(),
            Some(data.to_vec())
        );
        assert_eq!(fill.wait_done().await.ok(), Some(data));
    }

    #[tokio::test]
    async fn a_failed_verdict_aborts_readers_and_a_new_origin_aborts_only_those_that_sent() {
        let fill = Fill::new(ChunkId::of(b"abcd"), Some(4));
        let mut sent = fill.clone().reader();
        let fresh = fill.clone().reader();
        fill.begin_attempt(4);
        fill.push(Bytes::from_static(b"ab"));
        assert!(sent.next_frame().await.is_some_and(|f| f.is_ok()));
        // The first origin died; the second starts over.
        fill.begin_attempt(4);
        assert!(sent.next_frame().await.is_some_and(|f| f.is_err()));
        fill.push(Bytes::from_static(b"ab"));
        fill.push(Bytes::from_static(b"cd"));
        fill.finish(Ok(Bytes::from_static(b"abcd")));
        assert_eq!(collect(fresh).await.ok(), Some(b"abcd".to_vec()));

        let bad = Fill::new(ChunkId::of(b"xy"), Some(2));
        let r = bad.clone().reader();
        bad.finish(Err("corrupt everywhere".into()));
        assert!(collect(r).await.is_err());
        assert!(bad.wait_started().await.is_err());
    }
}
