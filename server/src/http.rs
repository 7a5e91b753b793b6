//! HTTP plumbing shared by every service: request ids, one tracing span
//! per request, and the response headers every answer carries.

use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

pub use blob_common::{new_request_id, REQUEST_ID};

tokio::task_local! {
    static REQUEST_ID_SLOT: String;
}

/// The id of the request being served on this task, if any.
pub fn current_request_id() -> Option<String> {
    REQUEST_ID_SLOT.try_with(|s| s.clone()).ok()
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

/// A `Range` header, resolved against the chunk's length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeSpec {
    /// No (usable) range: the whole chunk.
    Whole,
    /// Bytes `[start, end)`.
    Part(u64, u64),
    /// A well-formed range that lies outside the chunk.
    Unsatisfiable,
}

/// Parses a single `bytes=a-b`, `bytes=a-` or `bytes=-n` range. A malformed
/// or multi-range header is ignored (the whole chunk is served), as RFC 9110
/// allows.
pub fn parse_range(header: Option<&HeaderValue>, len: u64) -> RangeSpec {
    let Some(spec) = header
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().strip_prefix("bytes="))
    else {
        return RangeSpec::Whole;
    };
    if spec.contains(',') {
        return RangeSpec::Whole;
    }
    let Some((a, b)) = spec.split_once('-') else {
        return RangeSpec::Whole;
    };
    let (a, b) = (a.trim(), b.trim());
    if a.is_empty() {
        let Ok(n) = b.parse::<u64>() else {
            return RangeSpec::Whole;
        };
        if n == 0 || len == 0 {
            return RangeSpec::Unsatisfiable;
        }
        return RangeSpec::Part(len - n.min(len), len);
    }
    let Ok(start) = a.parse::<u64>() else {
        return RangeSpec::Whole;
    };
    let last = if b.is_empty() {
        None
    } else {
        match b.parse::<u64>() {
            Ok(l) if l >= start => Some(l),
            _ => return RangeSpec::Whole,
        }
    };
    if start >= len {
        return RangeSpec::Unsatisfiable;
    }
    let end = last.map_or(len, |l| l.saturating_add(1).min(len));
    RangeSpec::Part(start, end)
}

/// `Cache-Control` of a chunk answer: a chunk id names its bytes forever.
pub const IMMUTABLE: &str = "public, max-age=31536000, immutable";

/// A header value built from ASCII text (numbers, hex, ranges).
pub fn ascii_header(v: String) -> HeaderValue {
    HeaderValue::from_str(&v).unwrap_or(HeaderValue::from_static(""))
}

/// Turns `resp` into the answer for bytes `[start, end)` of chunk `id`
/// (`len` bytes): 200 for the whole chunk, else 206 with `Content-Range`;
/// its length, type, ETag (the chunk id), immutable caching and byte
/// ranges. Datanodes and edges answer chunk GETs alike.
pub fn chunk_answer(
    mut resp: Response,
    id: &blob_common::ChunkId,
    (start, end): (u64, u64),
    len: u64,
    whole: bool,
) -> Response {
    use axum::http::header::{
        ACCEPT_RANGES, CACHE_CONTROL, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, ETAG,
    };
    *resp.status_mut() = if whole {
        axum::http::StatusCode::OK
    } else {
        axum::http::StatusCode::PARTIAL_CONTENT
    };
    let h = resp.headers_mut();
    h.insert(CONTENT_LENGTH, ascii_header((end - start).to_string()));
    h.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(ETAG, ascii_header(format!("\"{id}\"")));
    h.insert(CACHE_CONTROL, HeaderValue::from_static(IMMUTABLE));
    h.insert(ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if !whole {
        h.insert(
            CONTENT_RANGE,
            ascii_header(format!("bytes {start}-{}/{len}", end.saturating_sub(1))),
        );
    }
    resp
}

/// The 416 answer to a range outside a chunk of `len` bytes.
pub fn range_not_satisfiable(len: u64) -> Response {
    use axum::response::IntoResponse;
    let mut resp = crate::error::ApiError::new(
        416,
        "InvalidRange",
        format!("range not satisfiable for a chunk of {len} bytes"),
    )
    .into_response();
    resp.headers_mut().insert(
        axum::http::header::CONTENT_RANGE,
        ascii_header(format!("bytes */{len}")),
    );
    resp
}

/// A `/metrics` answer: Prometheus text in the OpenMetrics format that
/// `prometheus-client` encodes.
pub fn metrics_response(text: String) -> Response {
    use axum::response::IntoResponse;
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

/// The chunk id of a `/v1/chunks/{id}` route, or why it is not one (at
/// most 80 characters of it).
pub fn chunk_id_from_path(
    path: Result<axum::extract::Path<String>, axum::extract::rejection::PathRejection>,
) -> Result<blob_common::ChunkId, String> {
    let axum::extract::Path(raw) = path.map_err(|e| e.body_text())?;
    raw.parse().map_err(|_| raw.chars().take(80).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_follow_rfc_9110() {
        let h = |s: &'static str| HeaderValue::from_static(s);
        let p = |s: &'static str, len| parse_range(Some(&h(s)), len);
        assert_eq!(parse_range(None, 10), RangeSpec::Whole);
        assert_eq!(p("bytes=0-0", 10), RangeSpec::Part(0, 1));
        assert_eq!(p("bytes=2-5", 10), RangeSpec::Part(2, 6));
        assert_eq!(p("bytes=2-500", 10), RangeSpec::Part(2, 10));
        assert_eq!(p("bytes=7-", 10), RangeSpec::Part(7, 10));
        assert_eq!(p("bytes=-3", 10), RangeSpec::Part(7, 10));
        assert_eq!(p("bytes=-30", 10), RangeSpec::Part(0, 10));
        assert_eq!(p("bytes=10-", 10), RangeSpec::Unsatisfiable);
        assert_eq!(p("bytes=10-20", 10), RangeSpec::Unsatisfiable);
        assert_eq!(p("bytes=-0", 10), RangeSpec::Unsatisfiable);
        assert_eq!(p("bytes=0-", 0), RangeSpec::Unsatisfiable);
        assert_eq!(p("bytes=5-2", 10), RangeSpec::Whole);
        assert_eq!(p("bytes=0-1,3-4", 10), RangeSpec::Whole);
        assert_eq!(p("items=0-1", 10), RangeSpec::Whole);
        assert_eq!(p("bytes=x-1", 10), RangeSpec::Whole);
        assert_eq!(
            p("bytes=0-18446744073709551615", 10),
            RangeSpec::Part(0, 10)
        );
    }
}
