//! The chunk read path (`GET|HEAD /v1/chunks/{id}`): verify the URL,
//! answer 304, else serve from memory, disk, or a fill from the origins.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::header::{CACHE_CONTROL, ETAG, IF_NONE_MATCH, RANGE};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use blob_common::presign::{self, Op, PresignQuery};
use blob_common::ChunkId;
use blob_server::http::{
    ascii_header, chunk_answer, parse_range, range_not_satisfiable, RangeSpec, IMMUTABLE,
};
use bytes::Bytes;
use futures::StreamExt;

use crate::error::Error;
use crate::fill::{self, Fill, Origin};
use crate::metrics::{TierLabel, DISK, FILL, MEMORY};
use crate::store::{DiskRead, Lookup, Purpose, DISK_WINDOW};
use crate::Edge;

/// Response header naming where the body came from: `memory`, `disk`,
/// `miss` (this request started the fill) or `coalesced` (it joined one).
pub const CACHE_HEADER: &str = "x-blob-cache";

fn parse_id(path: Result<Path<String>, PathRejection>) -> Result<ChunkId, Error> {
    blob_server::http::chunk_id_from_path(path).map_err(Error::InvalidChunkId)
}

/// Verifies a pre-signed GET URL for `id`: every refusal is a 403 (or 400
/// for a malformed request) before anything else happens.
pub(crate) fn verify(
    edge: &Edge,
    query: Result<Query<PresignQuery>, QueryRejection>,
    id: &ChunkId,
) -> Result<(PresignQuery, presign::Claims), Error> {
    let q = query
        .map(|Query(q)| q)
        .map_err(|e| Error::BadRequest(e.body_text()))?;
    let claims = presign::verify(&edge.keyring, &q, Op::Get, id, blob_common::now_secs())?;
    Ok((q, claims))
}

/// The origins signed into a URL, as full pre-signed datanode URLs that
/// carry the same token.
pub(crate) fn origins(id: &ChunkId, q: &PresignQuery, claims: &presign::Claims) -> Vec<Origin> {
    claims
        .origins
        .iter()
        .map(|o| Origin {
            node: o.node,
            // The token is base64url and the signature hex (both verified).
            url: format!(
                "{}/v1/chunks/{id}?t={}&s={}",
                o.url.trim_end_matches('/'),
                q.t,
                q.s
            ),
        })
        .collect()
}

pub(crate) async fn get_chunk(
    State(edge): State<Arc<Edge>>,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<PresignQuery>, QueryRejection>,
    headers: HeaderMap,
) -> Response {
    match read_chunk(&edge, path, query, &headers, false).await {
        Ok(r) => r,
        Err(e) => refuse(&edge, e),
    }
}

pub(crate) async fn head_chunk(
    State(edge): State<Arc<Edge>>,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<PresignQuery>, QueryRejection>,
    headers: HeaderMap,
) -> Response {
    match read_chunk(&edge, path, query, &headers, true).await {
        Ok(r) => r,
        Err(e) => refuse(&edge, e),
    }
}

fn refuse(edge: &Edge, e: Error) -> Response {
    if matches!(
        e,
        Error::Presign(_) | Error::BadRequest(_) | Error::InvalidChunkId(_)
    ) {
        edge.metrics.refused.inc();
    }
    e.into_response()
}

/// Whether an `If-None-Match` header names this chunk's ETag (or `*`).
fn not_modified(headers: &HeaderMap, id: &ChunkId) -> bool {
    let etag = format!("\"{id}\"");
    headers
        .get_all(IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim())
        .any(|t| t == "*" || t.strip_prefix("W/").unwrap_or(t) == etag)
}

/// A chunk answer (see [`chunk_answer`]) saying which tier served it.
fn answer(
    id: &ChunkId,
    body: Body,
    range: (u64, u64),
    len: u64,
    whole: bool,
    source: &'static str,
) -> Response {
    let mut resp = chunk_answer(Response::new(body), id, range, len, whole);
    resp.headers_mut().insert(
        HeaderName::from_static(CACHE_HEADER),
        HeaderValue::from_static(source),
    );
    resp
}

/// `[start, end)` and whether it is the whole chunk; `None`: unsatisfiable.
fn resolve(headers: &HeaderMap, len: u64) -> Option<((u64, u64), bool)> {
    match parse_range(headers.get(RANGE), len) {
        RangeSpec::Whole => Some(((0, len), true)),
        RangeSpec::Part(a, b) => Some(((a, b), false)),
        RangeSpec::Unsatisfiable => None,
    }
}

/// Answers from bytes in hand (`bytes` is the whole chunk).
fn from_bytes(
    edge: &Edge,
    id: &ChunkId,
    bytes: Bytes,
    headers: &HeaderMap,
    head_only: bool,
    tier: &TierLabel,
    source: &'static str,
) -> Response {
    let len = bytes.len() as u64;
    let Some(((start, end), whole)) = resolve(headers, len) else {
        return range_not_satisfiable(len);
    };
    let body = if head_only {
        Body::empty()
    } else {
        edge.metrics
            .served_bytes
            .get_or_create(tier)
            .inc_by(end - start);
        Body::from(bytes.slice(start as usize..end as usize))
    };
    answer(id, body, (start, end), len, whole, source)
}

async fn read_chunk(
    edge: &Arc<Edge>,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<PresignQuery>, QueryRejection>,
    headers: &HeaderMap,
    head_only: bool,
) -> Result<Response, Error> {
    let id = parse_id(path)?;
    let (q, claims) = verify(edge, query, &id)?;
    if not_modified(headers, &id) {
        edge.metrics.not_modified.inc();
        let mut resp = StatusCode::NOT_MODIFIED.into_response();
        let h = resp.headers_mut();
        h.insert(ETAG, ascii_header(format!("\"{id}\"")));
        h.insert(CACHE_CONTROL, HeaderValue::from_static(IMMUTABLE));
        return Ok(resp);
    }
    if head_only {
        return head(edge, &id, claims.size, headers).await;
    }
    let origins = origins(&id, &q, &claims);
    // A disk file evicted between the lookup and the read is looked up
    // again, and then is a miss.
    for _ in 0..2 {
        let lookup = edge
            .cache
            .lookup(&id, Purpose::Read, !origins.is_empty(), || {
                Fill::new(id, claims.size)
            });
        match lookup {
            Lookup::Memory(bytes) => {
                edge.metrics.hits.get_or_create(&MEMORY).inc();
                return Ok(from_bytes(
                    edge, &id, bytes, headers, false, &MEMORY, "memory",
                ));
            }
            Lookup::Disk(len) => {
                let Some(((start, end), whole)) = resolve(headers, len) else {
                    edge.metrics.hits.get_or_create(&DISK).inc();
                    return Ok(range_not_satisfiable(len));
                };
                // A whole read the memory tier would take gathers the chunk
                // (and reserves all of it); any other read holds a window.
                let promote = whole && edge.cache.start_promotion(&id, len);
                let reserve = if promote {
                    len
                } else {
                    (end - start).min(DISK_WINDOW)
                };
                let held = match edge.budget.admit(reserve).await {
                    Ok(h) => h,
                    Err(busy) => {
                        if promote {
                            edge.cache.end_promotion(&id);
                        }
                        return Err(busy.into());
                    }
                };
                let Some(read) = edge
                    .cache
                    .read_disk(id, (start, end), len, promote, held)
                    .await
                else {
                    continue;
                };
                edge.metrics.hits.get_or_create(&DISK).inc();
                return Ok(answer(
                    &id,
                    disk_body(edge, read),
                    (start, end),
                    len,
                    whole,
                    "disk",
                ));
            }
            Lookup::Writing(bytes) => {
                // Admitted to the disk tier, served from the bytes on their
                // way there.
                edge.metrics.hits.get_or_create(&DISK).inc();
                return Ok(from_bytes(edge, &id, bytes, headers, false, &DISK, "disk"));
            }
            Lookup::Joined(fill) => {
                edge.metrics.misses.inc();
                edge.metrics.coalesced.inc();
                return from_fill(edge, fill, headers, "coalesced").await;
            }
            Lookup::Started(f) => {
                edge.metrics.misses.inc();
                tokio::spawn(fill::run(edge.clone(), f.clone(), origins.clone(), false));
                return from_fill(edge, f, headers, "miss").await;
            }
            Lookup::NoOrigin => {
                edge.metrics.misses.inc();
                return Err(Error::NoOrigin(id));
            }
        }
    }
    Err(Error::NoOrigin(id))
}

/// The body of a disk hit: its frames as they are read and verified; a
/// frame that fails aborts the body.
fn disk_body(edge: &Edge, read: DiskRead) -> Body {
    let served = edge.metrics.served_bytes.get_or_create(&DISK).clone();
    let DiskRead { first, rest, held } = read;
    let rest = futures::stream::unfold(rest, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    let stream = futures::stream::once(async move { Ok(first) })
        .chain(rest)
        .map(move |item| {
            // The read's place in the budget lasts as long as the body.
            let _ = &held;
            if let Ok(b) = &item {
                served.inc_by(b.len() as u64);
            }
            item
        });
    Body::from_stream(stream)
}

/// A HEAD: headers from the cache's index or the signed size; nothing is
/// fetched and no counter moves.
async fn head(
    edge: &Arc<Edge>,
    id: &ChunkId,
    signed_size: Option<u64>,
    headers: &HeaderMap,
) -> Result<Response, Error> {
    let (len, source) = match edge
        .cache
        .lookup(id, Purpose::Warm, false, || Fill::new(*id, None))
    {
        Lookup::Memory(b) => (b.len() as u64, "memory"),
        Lookup::Disk(len) => (len, "disk"),
        Lookup::Writing(b) => (b.len() as u64, "disk"),
        Lookup::Joined(f) => (
            f.wait_started()
                .await
                .map_err(|reason| Error::FillFailed { chunk: *id, reason })?,
            "coalesced",
        ),
        _ => (signed_size.ok_or(Error::NoOrigin(*id))?, "miss"),
    };
    let Some((range, whole)) = resolve(headers, len) else {
        return Ok(range_not_satisfiable(len));
    };
    Ok(answer(id, Body::empty(), range, len, whole, source))
}

/// Answers from a fill in flight: a whole chunk streams as it arrives, a
/// range waits for the verified chunk.
async fn from_fill(
    edge: &Arc<Edge>,
    fill: Arc<Fill>,
    headers: &HeaderMap,
    source: &'static str,
) -> Result<Response, Error> {
    let id = fill.id;
    let failed = |reason| Error::FillFailed { chunk: id, reason };
    let len = fill.wait_started().await.map_err(failed)?;
    let Some(((start, end), whole)) = resolve(headers, len) else {
        return Ok(range_not_satisfiable(len));
    };
    let served = edge.metrics.served_bytes.get_or_create(&FILL).clone();
    if !whole {
        let bytes = fill.wait_done().await.map_err(failed)?;
        served.inc_by(end - start);
        let body = Body::from(bytes.slice(start as usize..end as usize));
        return Ok(answer(&id, body, (start, end), len, false, source));
    }
    let reader = fill.reader();
    let stream = futures::stream::unfold(reader, |mut r| async move {
        r.next_frame().await.map(|item| (item, r))
    })
    .map(move |item| {
        if let Ok(b) = &item {
            served.inc_by(b.len() as u64);
        }
        item
    });
    Ok(answer(
        &id,
        Body::from_stream(stream),
        (0, len),
        len,
        true,
        source,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_none_match_matches_the_chunk_etag() {
        let id = ChunkId::of(b"x");
        let other = ChunkId::of(b"y");
        let h = |v: String| {
            let mut m = HeaderMap::new();
            m.insert(IF_NONE_MATCH, ascii_header(v));
            m
        };
        assert!(not_modified(&h(format!("\"{id}\"")), &id));
        assert!(not_modified(&h(format!("W/\"{id}\"")), &id));
        assert!(not_modified(&h(format!("\"{other}\", \"{id}\"")), &id));
        assert!(not_modified(&h("*".into()), &id));
        assert!(!not_modified(&h(format!("\"{other}\"")), &id));
        assert!(!not_modified(&h(id.to_string()), &id));
        assert!(!not_modified(&HeaderMap::new(), &id));
    }
}
