//! Warm-up: `POST /v1/warm` (chunks named by pre-signed GET URLs, each
//! verified, so only holders of namenode-issued URLs can fill the cache),
//! and the warm-up list filled at start, located through the namenode
//! with the cluster key.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use blob_common::presign::{self, Op, PresignQuery};
use blob_common::proto::edge::{WarmRequest, WarmResponse};
use blob_common::proto::namenode::{ChunkLocation, FileLocations, LocateChunks, LocatedChunks};
use blob_common::ChunkId;
use blob_server::limits;
use futures::StreamExt;
use tracing::{info, warn};

use crate::error::Error;
use crate::fill::{self, Fill, Origin};
use crate::read::origins;
use crate::store::{Lookup, Purpose};
use crate::Edge;

/// Most chunks one warm request may name.
const MAX_WARM: usize = 4_000;
/// Body limit of a warm request: [`MAX_WARM`] entries of a chunk id, a
/// token (its claims name the origins) and a signature fit in this.
pub(crate) const WARM_BODY_LIMIT: usize = 4 << 20;
/// Failure reasons kept in a [`WarmResponse`].
const MAX_ERRORS: usize = 10;

/// What warming one chunk did.
enum Warmed {
    Cached,
    Filled,
    Failed(String),
}

/// One chunk to warm: its id, signed size, and where to fill it from.
struct Job {
    id: ChunkId,
    size: Option<u64>,
    origins: Vec<Origin>,
}

/// Brings one chunk into the cache (past TinyLFU's admission: an operator
/// asked for it), without counting as a read.
async fn warm_one(edge: &Arc<Edge>, job: Job) -> Warmed {
    let Job { id, size, origins } = job;
    let lookup = edge
        .cache
        .lookup(&id, Purpose::Warm, !origins.is_empty(), || {
            Fill::new(id, size)
        });
    let fill = match lookup {
        Lookup::Memory(_) | Lookup::Disk(_) | Lookup::Writing(_) => return Warmed::Cached,
        Lookup::NoOrigin => return Warmed::Failed(format!("chunk {id}: no origin to fill from")),
        Lookup::Joined(f) => f,
        Lookup::Started(f) => {
            tokio::spawn(fill::run(edge.clone(), f.clone(), origins, true));
            f
        }
    };
    match fill.wait_done().await {
        Ok(_) => Warmed::Filled,
        Err(e) => Warmed::Failed(format!("chunk {id}: {e}")),
    }
}

async fn warm_all(edge: &Arc<Edge>, jobs: Vec<Job>) -> WarmResponse {
    let mut out = WarmResponse {
        requested: jobs.len() as u64,
        ..Default::default()
    };
    let mut results = futures::stream::iter(jobs)
        .map(|job| warm_one(edge, job))
        .buffer_unordered(edge.cfg.warm_parallel.max(1));
    while let Some(r) = results.next().await {
        match r {
            Warmed::Cached => out.cached += 1,
            Warmed::Filled => out.filled += 1,
            Warmed::Failed(e) => {
                out.failed += 1;
                if out.errors.len() < MAX_ERRORS {
                    out.errors.push(e);
                }
            }
        }
    }
    // Answered once what was filled is on disk too.
    if out.filled > 0 && !edge.cache.settle(Duration::from_secs(60)).await {
        warn!("warm-up answered before its disk-tier writes finished");
    }
    out
}

/// `POST /v1/warm`: every URL is verified before any is filled. The URLs
/// are in the body, so there is nothing to authenticate before reading it:
/// it is read only within [`WARM_BODY_LIMIT`] (413 past it, before a byte
/// is read when the declared length says so) and the edge's budget of bytes
/// in flight (503 when full).
pub(crate) async fn warm(
    State(edge): State<Arc<Edge>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let declared = limits::declared_length(&headers);
    let (body, held) = match limits::read_body(body, declared, WARM_BODY_LIMIT, &edge.budget).await
    {
        Ok(b) => b,
        Err(e) => {
            edge.metrics.refused.inc();
            return e.into_response();
        }
    };
    let parsed = serde_json::from_slice::<WarmRequest>(&body);
    // The raw bytes are gone once parsed; the parsed URLs stay small.
    drop((body, held));
    let req: WarmRequest = match parsed {
        Ok(r) => r,
        Err(e) => {
            edge.metrics.refused.inc();
            return Error::BadRequest(format!("malformed warm request: {e}")).into_response();
        }
    };
    if req.chunks.len() > MAX_WARM {
        edge.metrics.refused.inc();
        return Error::BadRequest(format!(
            "{} chunks in one warm request; at most {MAX_WARM}",
            req.chunks.len()
        ))
        .into_response();
    }
    let now = blob_common::now_secs();
    let mut jobs = Vec::with_capacity(req.chunks.len());
    for c in req.chunks {
        let q = PresignQuery {
            t: c.t,
            s: c.s,
            hop: None,
        };
        let claims = match presign::verify(&edge.keyring, &q, Op::Get, &c.chunk, now) {
            Ok(claims) => claims,
            Err(e) => {
                edge.metrics.refused.inc();
                return Error::Presign(e).into_response();
            }
        };
        jobs.push(Job {
            id: c.chunk,
            size: claims.size,
            origins: origins(&c.chunk, &q, &claims),
        });
    }
    let out = warm_all(&edge, jobs).await;
    info!(
        requested = out.requested,
        cached = out.cached,
        filled = out.filled,
        failed = out.failed,
        "warm request done"
    );
    Json(out).into_response()
}

/// The namenode handle (cluster key), or why there is none.
pub(crate) fn namenode(edge: &Edge) -> Result<&blob_rpc::Namenode, String> {
    edge.namenode
        .as_ref()
        .ok_or_else(|| "no namenode configured".to_string())
}

/// A job from a namenode location: the datanode URLs (not the edges').
fn job_of(c: ChunkLocation) -> Job {
    Job {
        id: c.id,
        size: Some(c.size),
        origins: c
            .replicas
            .into_iter()
            .filter(|r| r.edge.is_none())
            .map(|r| Origin {
                node: r.node,
                url: r.url,
            })
            .collect(),
    }
}

/// Locates the warm-up list (chunk ids and `bucket/path` files) at the
/// namenode and fills it.
async fn locate(edge: &Edge, entries: &[String]) -> (Vec<Job>, Vec<String>) {
    let mut jobs = Vec::new();
    let mut errors = Vec::new();
    let zone = edge.cfg.zone.as_str();
    let mut ids = Vec::new();
    for entry in entries.iter().map(|e| e.trim()).filter(|e| !e.is_empty()) {
        if let Ok(id) = entry.parse::<ChunkId>() {
            ids.push(id);
            continue;
        }
        let Some((bucket, path)) = entry.split_once('/') else {
            errors.push(format!("{entry:?}: expected a chunk id or bucket/path"));
            continue;
        };
        let res = match namenode(edge) {
            Ok(nn) => nn
                .get(&["file", "locations"])
                .query(&[("bucket", bucket), ("path", path), ("zone", zone)])
                .decode::<FileLocations>()
                .await
                .map_err(|e| e.to_string()),
            Err(e) => Err(e),
        };
        match res {
            Ok(locs) => jobs.extend(locs.chunks.into_iter().map(job_of)),
            Err(e) => errors.push(format!("{entry}: {e}")),
        }
    }
    for batch in ids.chunks(1000) {
        let body = LocateChunks {
            chunks: batch.to_vec(),
            zone: Some(zone.to_string()),
        };
        let res = match namenode(edge) {
            Ok(nn) => nn
                .post(&["chunks", "locations"])
                .body(&body)
                .decode::<LocatedChunks>()
                .await
                .map_err(|e| e.to_string()),
            Err(e) => Err(e),
        };
        match res {
            Ok(found) => {
                if found.chunks.len() < batch.len() {
                    errors.push(format!(
                        "{} of {} chunk ids are unknown to the namenode",
                        batch.len() - found.chunks.len(),
                        batch.len()
                    ));
                }
                jobs.extend(found.chunks.into_iter().map(job_of));
            }
            Err(e) => errors.push(format!("locating {} chunk ids: {e}", batch.len())),
        }
    }
    (jobs, errors)
}

/// Fills the configured warm-up list, in the background of a starting
/// edge; logs what it did.
pub(crate) async fn warm_at_start(edge: Arc<Edge>) {
    let started = std::time::Instant::now();
    let (jobs, errors) = locate(&edge, &edge.cfg.warm).await;
    for e in &errors {
        warn!(error = %e, "warm-up entry skipped");
    }
    let out = warm_all(&edge, jobs).await;
    for e in &out.errors {
        warn!(error = %e, "warm-up fill failed");
    }
    info!(
        chunks = out.requested,
        cached = out.cached,
        filled = out.filled,
        failed = out.failed,
        skipped_entries = errors.len(),
        ms = started.elapsed().as_millis() as u64,
        "warm-up done"
    );
}
