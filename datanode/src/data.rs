//! Data path: the chunk HTTP API (routes in `blob_common::proto::datanode`).
//!
//! - `PUT /v1/chunks/{id}?t=&s=[&hop=]`: verify the pre-signed URL, then
//!   stream the body to the local writer and the next pipeline node at once;
//!   answer with a receipt per node that stored it once the local copy is
//!   durable and the downstream answered (or failed).
//! - `GET|HEAD /v1/chunks/{id}?t=&s=`: the whole chunk or one byte range,
//!   streamed from disk with every block's CRC verified on the way.
//! - `GET /v1/health`, `GET /metrics`.
//!
//! A handler here never touches metadata and never buffers a whole chunk.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::header::{CONTENT_LENGTH, RANGE};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::{Json, Router};
use blob_common::error::ErrorBody;
use blob_common::presign::{self, Op, PipelineNode, PresignError, PresignQuery, Receipt};
use blob_common::proto::datanode::{PipelineFailure, PutChunkResponse};
use blob_common::ChunkId;
use blob_server::http::{chunk_answer, current_request_id, range_not_satisfiable, REQUEST_ID};
use blob_server::limits::Held;
use blob_server::ApiError;
use bytes::Bytes;
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use crate::error::Error;
use crate::metrics::StatusLabels;
use crate::Node;
use blob_rpc::chain as error_chain;

/// How long the next pipeline node may refuse to take a frame before it is
/// given up on (the local write goes on without it).
const FORWARD_STALL: Duration = Duration::from_secs(15);
/// Frames queued toward the next pipeline node.
const FORWARD_QUEUE: usize = 8;
/// Frames read ahead of a GET response.
const READ_AHEAD: usize = 2;
/// Most bytes a read (a GET or a replica copy) holds in memory: the frames
/// read ahead, the one being read and the one being sent. Reserved in the
/// budget before the first byte is read.
pub(crate) const GET_WINDOW: u64 = (READ_AHEAD as u64 + 2) * crate::store::READ_FRAME as u64;

/// The datanode's HTTP router.
pub(crate) fn router(node: Arc<Node>) -> Router {
    Router::new()
        .route(
            "/v1/chunks/{id}",
            put(put_chunk).get(get_chunk).head(head_chunk),
        )
        .route("/v1/health", get(health))
        .route("/metrics", get(metrics))
        .fallback(no_route)
        .method_not_allowed_fallback(method_not_allowed)
        // Chunk bodies are streamed and bounded by the signed size, never
        // buffered by an extractor.
        .layer(DefaultBodyLimit::disable())
        .layer(axum::middleware::from_fn(blob_server::http::trace_requests))
        .with_state(node)
}

async fn no_route() -> ApiError {
    ApiError::new(404, "NoSuchRoute", "no such route")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(405, "MethodNotAllowed", "method not allowed on this route")
}

async fn health(State(node): State<Arc<Node>>) -> Json<serde_json::Value> {
    Json(serde_json::json!({ "node": node.id.to_string(), "status": "ok" }))
}

async fn metrics(State(node): State<Arc<Node>>) -> Response {
    blob_server::http::metrics_response(node.metrics.encode())
}

fn parse_id(path: Result<Path<String>, PathRejection>) -> Result<ChunkId, Error> {
    blob_server::http::chunk_id_from_path(path).map_err(Error::InvalidChunkId)
}

fn parse_query(q: Result<Query<PresignQuery>, QueryRejection>) -> Result<PresignQuery, Error> {
    q.map(|Query(q)| q)
        .map_err(|e| Error::InvalidQuery(e.body_text()))
}

/// Aborts a spawned task when dropped (the request went away).
struct AbortOnDrop<T>(JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn put_chunk(
    State(node): State<Arc<Node>>,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<PresignQuery>, QueryRejection>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let resp = match put_inner(&node, path, query, &headers, body).await {
        Ok(r) => Json(r).into_response(),
        Err(e) => e.into_response(),
    };
    node.metrics
        .put_requests
        .get_or_create(&StatusLabels::of(resp.status().as_u16()))
        .inc();
    resp
}

async fn put_inner(
    node: &Arc<Node>,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<PresignQuery>, QueryRejection>,
    headers: &HeaderMap,
    body: Body,
) -> Result<PutChunkResponse, Error> {
    // Everything is checked before the first body byte is read.
    let id = parse_id(path)?;
    let q = parse_query(query)?;
    let claims = presign::verify(&node.keyring, &q, Op::Put, &id, blob_common::now_secs())?;
    let size = claims
        .size
        .ok_or(PresignError::Malformed("PUT URL carries no size"))?;
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared != Some(size) {
        return Err(PresignError::WrongSize {
            signed: size,
            declared,
        }
        .into());
    }
    let hop = q.hop.unwrap_or(0);
    match claims.pipeline.get(hop) {
        Some(p) if p.node == node.id => {}
        _ => return Err(PresignError::WrongHop(hop).into()),
    }
    let (space, read_only) = node.space();
    if read_only || space.available < size {
        return Err(Error::NodeFull {
            available: space.available,
            min_free: node.cfg.min_free_bytes,
        });
    }

    let _transfer = node.metrics.transfer();
    let writer = node.store.spawn_writer(id, size);
    let mut forward = claims
        .pipeline
        .get(hop + 1)
        .map(|next| Forward::start(node, &id, &q, hop + 1, size, next.clone()));

    let mut frames = body.into_data_stream();
    let mut body_error = None;
    let mut busy = None;
    while let Some(frame) = frames.next().await {
        let frame = match frame {
            Ok(f) => f,
            Err(e) => {
                body_error = Some(e);
                break;
            }
        };
        node.metrics.received_bytes.inc_by(frame.len() as u64);
        // Every frame is counted in the budget until both the local writer
        // and the next node have taken it.
        let held = match node.budget.admit(frame.len() as u64).await {
            Ok(h) => Arc::new(h),
            Err(b) => {
                busy = Some(b);
                break;
            }
        };
        if !writer.send(frame.clone(), held.clone()).await {
            // The writer stopped (too long, disk error): its error says why.
            break;
        }
        if let Some(f) = forward.as_mut() {
            f.feed(frame, held).await;
        }
    }
    if let Some(e) = body_error {
        // The client went away or sent a broken body: nothing is stored
        // (the writer sees a short body), and the downstream is cancelled.
        debug!(chunk = %id.short(), error = %e, "request body failed");
        forward = None;
    }
    if let Some(b) = busy {
        // Nothing is stored (the writer sees a short body); the client
        // retries after the Retry-After it is given.
        drop(forward);
        let _ = writer.finish().await;
        warn!(chunk = %id.short(), error = %b, "budget of bytes in flight full; PUT refused");
        return Err(b.into());
    }
    let local = writer.finish();
    let remote = async {
        match forward {
            Some(f) => Some(f.finish().await),
            None => None,
        }
    };
    let (local, remote) = tokio::join!(local, remote);
    let outcome = local?;

    let mut receipts = vec![Receipt::issue(
        &node.keyring,
        node.id,
        id,
        size,
        claims.upload,
        blob_common::now_secs(),
    )];
    let mut failed = Vec::new();
    if let Some((next, result)) = remote {
        match result {
            Ok(resp) => {
                for r in resp.receipts {
                    if r.chunk == id && r.size == size && r.verify(&node.keyring).is_ok() {
                        receipts.push(r);
                    } else {
                        failed.push(PipelineFailure {
                            node: r.node,
                            error: "downstream returned an invalid receipt".into(),
                        });
                    }
                }
                failed.extend(resp.failed);
            }
            Err(error) => {
                node.metrics.pipeline_failures.inc();
                warn!(chunk = %id.short(), next = %next.node, url = %next.url, error = %error, "pipeline forward failed");
                failed.push(PipelineFailure {
                    node: next.node,
                    error,
                });
            }
        }
    }
    info!(
        chunk = %id.short(),
        size,
        hop,
        existed = outcome.existed,
        replicas = receipts.len(),
        failed = failed.len(),
        "chunk stored"
    );
    Ok(PutChunkResponse {
        chunk: id,
        receipts,
        failed,
    })
}

/// A frame on its way, holding its place in the budget.
type Counted = (Bytes, Arc<Held>);

/// The copy of a PUT body on its way to the next node of the pipeline.
struct Forward {
    next: PipelineNode,
    tx: Option<mpsc::Sender<Counted>>,
    task: AbortOnDrop<Result<PutChunkResponse, String>>,
    /// Set when feeding stopped for a reason the task cannot know.
    gave_up: Option<String>,
}

impl Forward {
    fn start(
        node: &Node,
        id: &ChunkId,
        q: &PresignQuery,
        hop: usize,
        size: u64,
        next: PipelineNode,
    ) -> Self {
        let (tx, rx) = mpsc::channel::<Counted>(FORWARD_QUEUE);
        // The token is base64url and the signature hex (both verified
        // above), so they go into the URL as they are.
        let url = format!(
            "{}/v1/chunks/{id}?t={}&s={}&hop={hop}",
            next.url.trim_end_matches('/'),
            q.t,
            q.s
        );
        let mut req = node
            .pipeline_http
            .put(url)
            .header(reqwest::header::CONTENT_LENGTH, size)
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream");
        if let Some(rid) = current_request_id() {
            req = req.header(REQUEST_ID, rid);
        }
        // A frame leaves the budget as the HTTP client takes it.
        let stream = futures::stream::unfold(rx, |mut rx| async move {
            rx.recv()
                .await
                .map(|(frame, _held)| (Ok::<_, io::Error>(frame), rx))
        });
        let req = req.body(reqwest::Body::wrap_stream(stream));
        let task = tokio::spawn(async move {
            let resp = req
                .send()
                .await
                .map_err(|e| error_chain(&e.without_url()))?;
            let status = resp.status();
            let bytes = resp
                .bytes()
                .await
                .map_err(|e| error_chain(&e.without_url()))?;
            if !status.is_success() {
                let why = serde_json::from_slice::<ErrorBody>(&bytes)
                    .map(|b| format!("{}: {}", b.code, b.message))
                    .unwrap_or_else(|_| {
                        String::from_utf8_lossy(&bytes).chars().take(200).collect()
                    });
                return Err(format!("answered {status}: {why}"));
            }
            serde_json::from_slice::<PutChunkResponse>(&bytes)
                .map_err(|e| format!("answer is not a PutChunkResponse: {e}"))
        });
        Self {
            next,
            tx: Some(tx),
            task: AbortOnDrop(task),
            gave_up: None,
        }
    }

    /// Passes a frame on. A downstream that fails or stalls is dropped
    /// from the pipeline; the local write never waits on it for long.
    async fn feed(&mut self, frame: Bytes, held: Arc<Held>) {
        let Some(tx) = &self.tx else { return };
        match tokio::time::timeout(FORWARD_STALL, tx.send((frame, held))).await {
            Ok(Ok(())) => {}
            // The request already ended; its result says why.
            Ok(Err(_)) => self.tx = None,
            Err(_) => {
                self.tx = None;
                self.gave_up = Some(format!(
                    "stalled: took no data for {}s",
                    FORWARD_STALL.as_secs()
                ));
                self.task.0.abort();
            }
        }
    }

    /// Ends the body and waits for the downstream's answer.
    async fn finish(mut self) -> (PipelineNode, Result<PutChunkResponse, String>) {
        self.tx = None;
        let result = match self.gave_up.take() {
            Some(why) => Err(why),
            None => match (&mut self.task.0).await {
                Ok(r) => r,
                Err(e) => Err(format!("forward task ended: {e}")),
            },
        };
        (self.next.clone(), result)
    }
}

async fn get_chunk(
    State(node): State<Arc<Node>>,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<PresignQuery>, QueryRejection>,
    headers: HeaderMap,
) -> Response {
    let resp = get_inner(&node, path, query, &headers, false)
        .await
        .unwrap_or_else(IntoResponse::into_response);
    node.metrics
        .get_requests
        .get_or_create(&StatusLabels::of(resp.status().as_u16()))
        .inc();
    resp
}

async fn head_chunk(
    State(node): State<Arc<Node>>,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<PresignQuery>, QueryRejection>,
    headers: HeaderMap,
) -> Response {
    get_inner(&node, path, query, &headers, true)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

pub use blob_server::http::{parse_range, RangeSpec};

async fn get_inner(
    node: &Arc<Node>,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<PresignQuery>, QueryRejection>,
    headers: &HeaderMap,
    head_only: bool,
) -> Result<Response, Error> {
    let id = parse_id(path)?;
    let q = parse_query(query)?;
    presign::verify(&node.keyring, &q, Op::Get, &id, blob_common::now_secs())?;
    let store = Arc::clone(&node.store);
    let span = tracing::Span::current();
    let file = tokio::task::spawn_blocking(move || span.in_scope(|| store.open_chunk(&id)))
        .await
        .map_err(|e| Error::TaskFailed(e.to_string()))??;
    let len = file.len();
    let (status, start, end) = match parse_range(headers.get(RANGE), len) {
        RangeSpec::Whole => (StatusCode::OK, 0, len),
        RangeSpec::Part(a, b) => (StatusCode::PARTIAL_CONTENT, a, b),
        RangeSpec::Unsatisfiable => return Ok(range_not_satisfiable(len)),
    };

    let resp = if head_only || start == end {
        Response::new(Body::empty())
    } else {
        stream_body(node, file, start, end).await?
    };
    let whole = status == StatusCode::OK;
    Ok(chunk_answer(resp, &id, (start, end), len, whole))
}

/// Streams `[start, end)` from a blocking reader thread. The read's window
/// ([`GET_WINDOW`]) is reserved in the budget first (503 when it stays
/// full). The first frame is read before answering, so a chunk corrupt at
/// its start fails with a proper error; a block found corrupt later aborts
/// the body (the client sees a truncated response and tries another
/// replica).
async fn stream_body(
    node: &Arc<Node>,
    file: crate::store::ChunkFile,
    start: u64,
    end: u64,
) -> Result<Response, Error> {
    let held = node.budget.admit((end - start).min(GET_WINDOW)).await?;
    let transfer = node.metrics.transfer();
    let mut rx = read_frames(node, file, start, end);
    let first = match rx.recv().await {
        Some(Ok(b)) => b,
        Some(Err(e)) => return Err(e),
        None => return Err(Error::TaskFailed("chunk reader ended early".into())),
    };
    let rest = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    let sent = node.metrics.sent_bytes.clone();
    let stream = futures::stream::once(async move { Ok(first) })
        .chain(rest)
        .map(move |item| {
            // Held by the body: the transfer counts, and its window stays
            // reserved, until the body is done.
            let _ = (&transfer, &held);
            match item {
                Ok(b) => {
                    sent.inc_by(b.len() as u64);
                    Ok(b)
                }
                Err(e) => Err(io::Error::other(e.to_string())),
            }
        });
    Ok(Response::new(Body::from_stream(stream)))
}

/// Reads `[start, end)` of an open chunk on a blocking thread, each frame
/// verified against its block CRCs, into a channel of [`READ_AHEAD`]
/// frames. A corrupt block quarantines the chunk and ends the frames with
/// the error; a dropped receiver stops the reader.
pub(crate) fn read_frames(
    node: &Node,
    file: crate::store::ChunkFile,
    start: u64,
    end: u64,
) -> mpsc::Receiver<Result<Bytes, Error>> {
    let (tx, rx) = mpsc::channel::<Result<Bytes, Error>>(READ_AHEAD);
    let store = Arc::clone(&node.store);
    let span = tracing::Span::current();
    tokio::task::spawn_blocking(move || {
        let _enter = span.enter();
        let res = store.read_frames(&file, start, end, |b| tx.blocking_send(Ok(b)).is_ok());
        if let Err(e) = res {
            let _ = tx.blocking_send(Err(e));
        }
    });
    rx
}
