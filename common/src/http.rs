//! HTTP plumbing shared by every service: request ids, one tracing span
//! per request, and the response headers every answer carries.

use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

/// Header carrying the request id, forwarded across services.
pub const REQUEST_ID: &str = "x-request-id";

tokio::task_local! {
    static REQUEST_ID_SLOT: String;
}

/// The id of the request being served on this task, if any.
pub fn current_request_id() -> Option<String> {
    REQUEST_ID_SLOT.try_with(|s| s.clone()).ok()
}

/// A fresh random request id.
pub fn new_request_id() -> String {
    hex::encode(rand::random::<[u8; 8]>())
}

/// Middleware: takes `x-request-id` from the request (or makes one), opens a
/// span with method, route template and request id, logs the outcome with
/// status and elapsed time, and echoes the id on the response.
pub async fn trace_requests(req: Request, next: Next) -> Response {
    let id = req
        .headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 64)
        .map(str::to_string)
        .unwrap_or_else(new_request_id);
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let method = req.method().clone();
    let span = tracing::info_span!("request", %method, route, request_id = %id);
    let started = Instant::now();
    let mut resp = REQUEST_ID_SLOT
        .scope(id.clone(), next.run(req))
        .instrument(span.clone())
        .await;
    let status = resp.status().as_u16();
    let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
    span.in_scope(|| tracing::debug!(status, elapsed_ms, "done"));
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert(REQUEST_ID, v);
    }
    resp
}
