//! The datanode's part in keeping chunks healthy: copying replicas the
//! namenode asks for, and the scrubber.
//!
//! A copy streams the local chunk (verifying its block checksums frame by
//! frame) to the pre-signed URL the namenode made, whose pipeline is the new
//! holders; they verify, store durably and report the chunk as received.
//! The scrubber re-reads every chunk on a schedule at a bounded rate and
//! checks it against its id; a bad one is quarantined and reported as
//! corrupt, so the namenode copies it again from a good replica.

use std::sync::Arc;
use std::time::{Duration, Instant};

use blob_common::{ChunkId, NodeId};
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn, Instrument};

use crate::{data, Node};
use blob_rpc::chain as error_chain;

/// Starts a replica copy in the background, at most `max_copies` at once.
pub(crate) fn spawn_copy(
    node: &Arc<Node>,
    chunk: ChunkId,
    size: u64,
    url: String,
    targets: Vec<NodeId>,
) {
    let node = Arc::clone(node);
    let span = tracing::info_span!("copy", chunk = %chunk.short());
    tokio::spawn(
        async move {
            let Ok(_permit) = node.copies.clone().acquire_owned().await else {
                return;
            };
            if let Err(e) = copy(&node, chunk, size, &url, &targets).await {
                warn!(error = %e, to = ?targets, "replica copy failed");
            }
        }
        .instrument(span),
    );
}

/// Streams a local chunk to the pre-signed PUT `url`: frames are read and
/// verified against their block CRCs as they are sent, so a copy holds at
/// most a read window in memory (reserved in the node's budget), never the
/// whole chunk. A block found corrupt ends the body early, and the target
/// stores nothing.
async fn copy(
    node: &Arc<Node>,
    chunk: ChunkId,
    size: u64,
    url: &str,
    targets: &[NodeId],
) -> Result<(), String> {
    let held = node
        .budget
        .admit(size.min(data::GET_WINDOW))
        .await
        .map_err(|e| format!("{e}; the namenode will order it again"))?;
    let store = Arc::clone(&node.store);
    let file = tokio::task::spawn_blocking(move || store.open_chunk(&chunk))
        .await
        .map_err(|e| format!("open task failed: {e}"))?
        .map_err(|e| format!("cannot read chunk to copy: {e}"))?;
    if file.len() != size {
        return Err(format!(
            "the namenode ordered a copy of {size} bytes, the chunk holds {}",
            file.len()
        ));
    }
    let rx = data::read_frames(node, file, 0, size);
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        let item = rx.recv().await?;
        Some((item.map_err(|e| std::io::Error::other(e.to_string())), rx))
    });
    let started = Instant::now();
    let sent = node
        .pipeline_http
        .put(url)
        .header(reqwest::header::CONTENT_LENGTH, size)
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await;
    drop(held);
    match sent {
        Ok(r) if r.status().is_success() => {
            info!(to = ?targets, size, elapsed_ms = started.elapsed().as_millis() as u64, "replica copied");
            Ok(())
        }
        Ok(r) => Err(format!("refused with status {}", r.status().as_u16())),
        Err(e) => Err(error_chain(&e.without_url())),
    }
}

/// The scrubber loop: every `scrub_interval_ms`, reads every chunk at no
/// more than `scrub_rate` bytes per second and verifies it.
pub(crate) async fn scrub(node: Arc<Node>, shutdown: CancellationToken) {
    if node.cfg.scrub_interval_ms == 0 {
        return;
    }
    let span = tracing::info_span!("scrubber", node = %node.id);
    let every = Duration::from_millis(node.cfg.scrub_interval_ms);
    async move {
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(every) => {}
            }
            let started = Instant::now();
            let (mut checked, mut bad, mut bytes) = (0u64, 0u64, 0u64);
            for id in node.store.ids() {
                if shutdown.is_cancelled() {
                    return;
                }
                let store = Arc::clone(&node.store);
                let res = tokio::task::spawn_blocking(move || verify(&store, &id)).await;
                match res {
                    Ok(Ok(n)) => {
                        checked += 1;
                        bytes += n;
                        node.metrics.scrubbed_bytes.inc_by(n);
                    }
                    Ok(Err(reason)) => {
                        bad += 1;
                        node.metrics.scrub_corrupt.inc();
                        warn!(chunk = %id.short(), reason = %reason, "scrubber found a corrupt chunk");
                    }
                    Err(e) => warn!(error = %e, "scrub task failed"),
                }
                // Keep to the rate: sleep off whatever the read was ahead of it.
                let due = Duration::from_secs_f64(bytes as f64 / node.cfg.scrub_rate.max(1) as f64);
                if let Some(ahead) = due.checked_sub(started.elapsed()) {
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(ahead) => {}
                    }
                }
            }
            if bad > 0 {
                info!(checked, bad, bytes, elapsed_ms = started.elapsed().as_millis() as u64, "scrub pass found corrupt chunks");
            } else {
                debug!(checked, bytes, elapsed_ms = started.elapsed().as_millis() as u64, "scrub pass clean");
            }
        }
    }
    .instrument(span)
    .await
}

/// Reads a whole chunk frame by frame, checking block CRCs and the SHA-256
/// against its id (one frame in memory at a time). A chunk that fails is
/// quarantined (and so reported as corrupt). Returns the bytes read, or why
/// it failed.
pub(crate) fn verify(store: &crate::store::Store, id: &ChunkId) -> Result<u64, String> {
    if store.size_of(id).is_none() {
        return Ok(0);
    }
    let file = match store.open_chunk(id) {
        Ok(f) => f,
        // Gone since it was listed: nothing to check.
        Err(crate::Error::ChunkNotFound(_)) => return Ok(0),
        // A bad footer already quarantined it.
        Err(e) => return Err(e.to_string()),
    };
    let size = file.len();
    let mut sha = Sha256::new();
    // A CRC failure quarantines the chunk inside `read_frames`.
    store
        .read_frames(&file, 0, size, |frame| {
            sha.update(&frame);
            true
        })
        .map_err(|e| e.to_string())?;
    let actual = ChunkId(sha.finalize().into());
    if &actual != id {
        store.quarantine(id, None, "content does not hash to the chunk id");
        return Err(format!("hashes to {}", actual.short()));
    }
    Ok(size)
}
