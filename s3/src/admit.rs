//! Admission: who may make the gateway hold how much memory.
//!
//! - `s3s` verifies a request's signature (SigV4 header or query, with the
//!   declared `x-amz-content-sha256`; SigV2) before it reads a body byte.
//!   [`Gate::check`] then runs, still before any body is read: anonymous
//!   requests are refused, and a request whose body `s3s` will buffer
//!   whole (the XML of a multipart complete, a multi-object delete, a
//!   bucket configuration) reserves it in the gateway's budget first.
//! - Object bodies stream: a PUT reserves its upload window, a GET its
//!   read-ahead ([`upload_window`], [`read_window`]), held until the
//!   transfer ends.
//! - Browser-form uploads (`POST` `multipart/form-data`), which `s3s`
//!   would gather in memory before any access check, are not offered and
//!   are refused before their body is read ([`is_form_upload`]).

use std::sync::Arc;

use blob_server::limits::{Budget, Busy, Held, RETRY_AFTER_SECS};
use s3s::access::{S3Access, S3AccessContext};
use s3s::{S3Error, S3ErrorCode, S3Result};

use crate::compat::{Authenticated, ProbeOnly, Signer};
use crate::error::s3;

/// Largest XML body (multipart complete, multi-object delete, bucket
/// configurations): 10,000 parts or 1,000 keys of 1 KiB fit in it.
pub(crate) const XML_BODY_LIMIT: usize = 4 << 20;

/// Operations whose body streams through the gateway rather than being
/// buffered by `s3s`.
const STREAMING_OPS: &[&str] = &["PutObject", "UploadPart"];

/// The access check `s3s` runs after authentication, before the body.
pub(crate) struct Gate {
    budget: Budget,
}

impl Gate {
    pub(crate) fn new(budget: Budget) -> Self {
        Self { budget }
    }
}

/// A request's place in the budget, kept in its extensions (so it lasts
/// as long as the request).
#[derive(Clone)]
pub(crate) struct Reserved(#[allow(dead_code)] pub(crate) Arc<Held>);

#[async_trait::async_trait]
impl S3Access for Gate {
    async fn check(&self, cx: &mut S3AccessContext<'_>) -> S3Result<()> {
        match cx.credentials().map(|c| c.access_key.clone()) {
            Some(key) => {
                if let Some(signer) = cx.extensions_mut().get::<Signer>() {
                    let _ = signer.0.set(key);
                }
                if cx.extensions_mut().get::<ProbeOnly>().is_some() {
                    // Authenticated; the request is served in a second pass.
                    return Err(s3(S3ErrorCode::InternalError, "authenticated"));
                }
            }
            None if cx.extensions_mut().get::<Authenticated>().is_some() => {}
            None => return Err(s3(S3ErrorCode::AccessDenied, "Signature is required")),
        }
        // Refused before a byte of the body is read.
        crate::sse::check(cx.s3_op().name(), cx.headers())?;
        if STREAMING_OPS.contains(&cx.s3_op().name()) {
            return Ok(());
        }
        let headers = cx.headers();
        let declared = blob_server::limits::declared_length(headers);
        let chunked = headers.contains_key(http::header::TRANSFER_ENCODING);
        let want = match declared {
            Some(0) | None if !chunked => return Ok(()),
            Some(n) => n.min(XML_BODY_LIMIT as u64),
            None => XML_BODY_LIMIT as u64,
        };
        let held = self.budget.admit(want).await.map_err(slow_down)?;
        cx.extensions_mut().insert(Reserved(Arc::new(held)));
        Ok(())
    }
}

/// S3's answer to a full budget: `503 SlowDown` with `Retry-After`.
pub(crate) fn slow_down(b: Busy) -> S3Error {
    let mut e = s3(S3ErrorCode::SlowDown, b.to_string());
    let mut h = http::HeaderMap::new();
    h.insert(
        http::header::RETRY_AFTER,
        http::HeaderValue::from(RETRY_AFTER_SECS),
    );
    e.set_headers(h);
    e
}

/// Bytes a PUT of `len` bytes (when declared) holds while it streams into
/// the store: the chunks in flight and the one being cut.
pub(crate) fn upload_window(parallel: usize, chunk_size: u64, len: Option<u64>) -> u64 {
    let window = (parallel as u64 + 1).saturating_mul(chunk_size);
    len.map_or(window, |l| l.min(window))
}

/// Bytes a read of `len` bytes in pieces of at most `piece` bytes holds:
/// the pieces read ahead and the one being sent.
pub(crate) fn read_window(read_ahead: usize, piece: u64, len: u64) -> u64 {
    (read_ahead as u64 + 1).saturating_mul(piece).min(len)
}

/// A browser-form upload (`POST` with a `multipart/form-data` body).
pub(crate) fn is_form_upload(method: &http::Method, headers: &http::HeaderMap) -> bool {
    method == http::Method::POST
        && headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| {
                v.trim_start()
                    .to_ascii_lowercase()
                    .starts_with("multipart/form-data")
            })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_are_bounded_by_the_transfer() {
        assert_eq!(upload_window(4, 8 << 20, None), 40 << 20);
        assert_eq!(upload_window(4, 8 << 20, Some(1000)), 1000);
        assert_eq!(read_window(4, 8 << 20, 100 << 20), 40 << 20);
        assert_eq!(read_window(4, 8 << 20, 10), 10);
        let mut h = http::HeaderMap::new();
        h.insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("multipart/form-data; boundary=x"),
        );
        assert!(is_form_upload(&http::Method::POST, &h));
        assert!(!is_form_upload(&http::Method::PUT, &h));
        assert!(!is_form_upload(
            &http::Method::POST,
            &http::HeaderMap::new()
        ));
        let e = slow_down(Busy {
            wanted: 1,
            budget: 2,
        });
        assert_eq!(*e.code(), S3ErrorCode::SlowDown);
    }
}
