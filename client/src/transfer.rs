//! Data path: chunk bytes to and from datanodes through pre-signed URLs,
//! never through the namenode. [`upload`] and [`download`] orchestrate;
//! this module holds the single-request primitives and the retry policy.

use std::future::Future;
use std::ops::Range;
use std::sync::Mutex;
use std::time::Duration;

use blob_common::proto::datanode::PutChunkResponse;
use blob_common::ChunkId;
use blob_common::REQUEST_ID;
use bytes::{Bytes, BytesMut};
use reqwest::{StatusCode, Url};
use sha2::{Digest, Sha256};

use crate::error::{redact_str, redact_url, Error};
use crate::namenode::error_from_response;
use crate::{Client, ProgressFn};

pub(crate) mod download;
pub(crate) mod upload;

/// Attempts per chunk PUT (first try plus retargeted retries) and per
/// retried namenode call.
pub(crate) const MAX_ATTEMPTS: u32 = 6;

/// Delay before retry number `attempt` (1-based): 100 ms doubling, capped
/// at 5 s, with ±20 % jitter so parallel retries do not march in step.
pub(crate) fn backoff(attempt: u32) -> Duration {
    let base = 100u64.saturating_mul(1 << attempt.saturating_sub(1).min(16));
    let base = base.min(5_000) as f64;
    let jitter = 0.8 + 0.4 * rand::random::<f64>();
    Duration::from_millis((base * jitter) as u64)
}

/// Runs `call` until it succeeds, fails with a final error (a 4xx other
/// than 408/429, …) or [`MAX_ATTEMPTS`] are used up.
pub(crate) async fn with_retries<T, F, Fut>(what: &'static str, mut call: F) -> Result<T, Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, Error>>,
{
    let mut attempt = 1;
    loop {
        match call().await {
            Ok(v) => return Ok(v),
            Err(e) if e.is_retryable() && attempt < MAX_ATTEMPTS => {
                tracing::warn!(what, attempt, error = %e, "retrying");
                tokio::time::sleep(backoff(attempt)).await;
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Bytes done so far, reported to the caller's callback in increasing order.
pub(crate) struct ProgressCounter {
    done: Mutex<u64>,
    callback: Option<ProgressFn>,
}

impl ProgressCounter {
    pub(crate) fn new(callback: Option<ProgressFn>) -> Self {
        Self {
            done: Mutex::new(0),
            callback,
        }
    }

    pub(crate) fn add(&self, n: u64) {
        // The lock is held across the callback so calls arrive in order.
        let mut done = self.done.lock().unwrap_or_else(|e| e.into_inner());
        *done += n;
        if let Some(cb) = &self.callback {
            cb(*done);
        }
    }
}

/// A spawned task that is aborted when this handle is dropped, so a
/// cancelled or failed operation leaves nothing running behind it.
pub(crate) struct AbortOnDrop<T>(pub(crate) tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl<T> Future for AbortOnDrop<T> {
    type Output = Result<T, Error>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        std::pin::Pin::new(&mut self.0)
            .poll(cx)
            .map(|r| r.map_err(|e| Error::Task(e.to_string())))
    }
}

fn parse_url(url: &str) -> Result<Url, Error> {
    Url::parse(url).map_err(|e| Error::Protocol {
        url: redact_str(url),
        detail: format!("bad pre-signed URL: {e}"),
    })
}

impl Client {
    /// Whether edge URLs are being skipped (an edge was unreachable lately).
    pub(crate) fn edge_down(&self) -> bool {
        let until = self
            .inner
            .edge_down_until
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        until.is_some_and(|t| std::time::Instant::now() < t)
    }

    /// Skips edge URLs for a while: an edge could not be reached.
    pub(crate) fn mark_edge_down(&self) {
        let mut until = self
            .inner
            .edge_down_until
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        *until = Some(std::time::Instant::now() + self.inner.cfg.edge_retry_after);
    }

    /// PUTs one chunk to the primary of its pipeline; the answer holds a
    /// receipt per replica stored and the pipeline nodes that failed.
    pub(crate) async fn put_chunk(
        &self,
        url: &str,
        chunk: &ChunkId,
        body: Bytes,
    ) -> Result<PutChunkResponse, Error> {
        let url = parse_url(url)?;
        let request_id = self.request_id();
        let len = body.len();
        let resp = self
            .inner
            .http
            .put(url.clone())
            .header(REQUEST_ID, &request_id)
            .header(reqwest::header::CONTENT_LENGTH, len)
            .body(body)
            .send()
            .await
            .map_err(|e| Error::transport(&url, e))?;
        if !resp.status().is_success() {
            return Err(error_from_response(resp, &url, &request_id).await);
        }
        let bytes = resp.bytes().await.map_err(|e| Error::transport(&url, e))?;
        let answer: PutChunkResponse = serde_json::from_slice(&bytes)
            .map_err(|e| Error::protocol(&url, format!("bad JSON: {e}")))?;
        if &answer.chunk != chunk {
            return Err(Error::protocol(
                &url,
                format!("answered for chunk {} instead of {chunk}", answer.chunk),
            ));
        }
        Ok(answer)
    }

    /// GETs a chunk (`range: None`) or part of it, checking the length of
    /// what arrives against what was asked; never buffers more than that.
    /// The body is kept as the frames it arrived in (no copy into one
    /// buffer); a whole chunk is hashed frame by frame as it arrives.
    pub(crate) async fn get_chunk(
        &self,
        url: &str,
        chunk: &ChunkId,
        chunk_size: u64,
        range: Option<Range<u64>>,
        edge: bool,
    ) -> Result<ChunkBody, Error> {
        let url = parse_url(url)?;
        let request_id = self.request_id();
        let http = if edge {
            &self.inner.edge_http
        } else {
            &self.inner.http
        };
        let mut req = http.get(url.clone()).header(REQUEST_ID, &request_id);
        if let Some(r) = &range {
            req = req.header(
                reqwest::header::RANGE,
                format!("bytes={}-{}", r.start, r.end.saturating_sub(1)),
            );
        }
        let mut resp = req.send().await.map_err(|e| Error::transport(&url, e))?;
        let (expected, slice) = match (resp.status(), &range) {
            (StatusCode::PARTIAL_CONTENT, Some(r)) => (r.end - r.start, None),
            // A server may ignore Range and send the whole chunk.
            (StatusCode::OK, _) => (chunk_size, range.clone()),
            (s, _) if s.is_success() => {
                return Err(Error::protocol(&url, format!("unexpected status {s}")))
            }
            _ => return Err(error_from_response(resp, &url, &request_id).await),
        };
        if resp.content_length().is_some_and(|l| l != expected) {
            return Err(Error::Integrity {
                chunk: *chunk,
                detail: format!(
                    "{} announced {:?} bytes, expected {expected}",
                    redact_url(&url),
                    resp.content_length()
                ),
            });
        }
        let cap = usize::try_from(expected).unwrap_or(usize::MAX);
        // Only a whole chunk can be checked against its id.
        let mut sha = range.is_none().then(Sha256::new);
        let mut frames = Vec::new();
        let mut len = 0usize;
        while let Some(part) = resp.chunk().await.map_err(|e| Error::transport(&url, e))? {
            if len + part.len() > cap {
                return Err(Error::Integrity {
                    chunk: *chunk,
                    detail: format!("{} sent more than {expected} bytes", redact_url(&url)),
                });
            }
            if part.is_empty() {
                continue;
            }
            if let Some(h) = sha.as_mut() {
                h.update(&part);
            }
            len += part.len();
            frames.push(part);
        }
        if len != cap {
            return Err(Error::Integrity {
                chunk: *chunk,
                detail: format!(
                    "{} sent {len} bytes, expected {expected} (truncated)",
                    redact_url(&url),
                ),
            });
        }
        let body = ChunkBody {
            frames,
            len,
            digest: sha.map(ChunkId::from_hasher),
        };
        Ok(match slice {
            Some(r) => body.slice(r.start as usize..r.end as usize),
            None => body,
        })
    }
}

/// Bytes of a chunk (or part of one) as they came off the wire.
#[derive(Debug, Default)]
pub(crate) struct ChunkBody {
    /// Non-empty frames, in order.
    pub(crate) frames: Vec<Bytes>,
    /// Their total length.
    pub(crate) len: usize,
    /// SHA-256 of all the bytes, when they are a whole chunk.
    pub(crate) digest: Option<ChunkId>,
}

impl ChunkBody {
    /// The bytes `r` (within `0..len`) of the body; no digest.
    pub(crate) fn slice(self, r: Range<usize>) -> ChunkBody {
        let mut frames = Vec::new();
        let mut at = 0usize;
        for f in self.frames {
            let (start, end) = (at, at + f.len());
            at = end;
            if end <= r.start || start >= r.end {
                continue;
            }
            let from = r.start.max(start) - start;
            let to = r.end.min(end) - start;
            if from < to {
                frames.push(f.slice(from..to));
            }
        }
        ChunkBody {
            frames,
            len: r.end.saturating_sub(r.start),
            digest: None,
        }
    }

    /// The bytes in one buffer (copied only if there are several frames).
    pub(crate) fn into_bytes(mut self) -> Bytes {
        match self.frames.len() {
            0 => Bytes::new(),
            1 => self.frames.swap_remove(0),
            _ => {
                let mut out = BytesMut::with_capacity(self.len);
                for f in &self.frames {
                    out.extend_from_slice(f);
                }
                out.freeze()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_capped() {
        for attempt in 1..=20 {
            let d = backoff(attempt).as_millis() as u64;
            let base = (100u64 << (attempt - 1).min(16)).min(5_000);
            assert!(d >= base * 8 / 10 && d <= base * 12 / 10, "{attempt}: {d}");
        }
    }

    #[test]
    fn chunk_body_slices_across_frames() {
        let data: Vec<u8> = (0..100u8).collect();
        let body = || ChunkBody {
            frames: vec![
                Bytes::copy_from_slice(&data[..10]),
                Bytes::copy_from_slice(&data[10..55]),
                Bytes::copy_from_slice(&data[55..]),
            ],
            len: 100,
            digest: None,
        };
        for (a, b) in [
            (0, 100),
            (0, 10),
            (5, 15),
            (10, 55),
            (54, 56),
            (99, 100),
            (20, 20),
        ] {
            let part = body().slice(a..b);
            assert_eq!(part.len, b - a);
            assert!(part.frames.iter().all(|f| !f.is_empty()));
            assert_eq!(&part.into_bytes()[..], &data[a..b], "{a}..{b}");
        }
        assert_eq!(&body().into_bytes()[..], &data[..]);
        assert!(ChunkBody::default().into_bytes().is_empty());
    }

    #[test]
    fn progress_is_cumulative() {
        let seen = std::sync::Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        let p = ProgressCounter::new(Some(std::sync::Arc::new(move |n| {
            s.lock().unwrap_or_else(|e| e.into_inner()).push(n)
        })));
        p.add(3);
        p.add(4);
        assert_eq!(*seen.lock().unwrap_or_else(|e| e.into_inner()), vec![3, 7]);
    }
}
