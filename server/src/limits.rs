//! Admission limits every server shares, so that no request and no crowd
//! of requests can make a service hold unbounded memory:
//!
//! - a cap on open connections ([`LimitedListener`], [`ConnectionSlots`]):
//!   past it new connections wait in the kernel's listen backlog until one
//!   closes (mini-redis caps connections the same way);
//! - a budget of body bytes held in memory at once ([`Budget`]), a
//!   semaphore counted in KiB as Garage's is: a request reserves what it
//!   may hold before it reads (or produces) those bytes, waits up to
//!   [`Limits::budget_wait_ms`] for room, and is otherwise answered `503`
//!   with `Retry-After` ([`Busy`]);
//! - per-route body limits, with `413` and the limit in the message
//!   ([`TooLarge`], [`read_body`]).
//!
//! Every service builds these from its [`Limits`] (a `[limits]` table in
//! its config file, and `--max-connections` / `--max-bytes-in-flight` on
//! `blobd`).

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::HeaderValue;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::ApiError;

/// Connection and memory limits of one service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Limits {
    /// Connections served at once; more wait (in the listen backlog) until
    /// one closes.
    pub max_connections: usize,
    /// Body bytes held in memory at once, across all requests.
    pub max_bytes_in_flight: u64,
    /// How long a request waits for room in that budget before it is
    /// answered `503` with `Retry-After`, ms.
    pub budget_wait_ms: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 1024,
            max_bytes_in_flight: 256 << 20,
            budget_wait_ms: 5_000,
        }
    }
}

impl Limits {
    /// Default limits with this budget of bytes in flight.
    pub fn with_budget(max_bytes_in_flight: u64) -> Self {
        Self {
            max_bytes_in_flight,
            ..Self::default()
        }
    }

    /// Checks that every limit lets something through. `largest` is the
    /// biggest single reservation the service makes (a request needing more
    /// than the whole budget could never run).
    pub fn validate(&self, largest: u64) -> Result<(), String> {
        if self.max_connections == 0 {
            return Err("max_connections must be at least 1".into());
        }
        if self.max_bytes_in_flight < largest {
            return Err(format!(
                "max_bytes_in_flight ({} bytes) must be at least {largest} bytes, the most one request holds",
                self.max_bytes_in_flight
            ));
        }
        Ok(())
    }

    /// The budget these limits describe.
    pub fn budget(&self) -> Budget {
        Budget::new(
            self.max_bytes_in_flight,
            Duration::from_millis(self.budget_wait_ms),
        )
    }

    /// The connection slots these limits describe.
    pub fn connection_slots(&self) -> ConnectionSlots {
        ConnectionSlots::new(self.max_connections)
    }
}

/// Seconds a client is told to wait after a `503` for lack of room.
pub const RETRY_AFTER_SECS: u64 = 1;

/// A global budget of bytes held in memory, counted in KiB.
#[derive(Debug, Clone)]
pub struct Budget {
    sem: Arc<Semaphore>,
    total_kib: u32,
    wait: Duration,
}

/// Bytes reserved in a [`Budget`]; given back when dropped.
#[derive(Debug)]
pub struct Held {
    _permit: OwnedSemaphorePermit,
}

/// The budget had no room within the wait: answer `503` with
/// `Retry-After`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("server busy: {wanted} more bytes would exceed its budget of {budget} bytes in flight; retry after {RETRY_AFTER_SECS}s")]
pub struct Busy {
    /// Bytes the request asked for.
    pub wanted: u64,
    /// The whole budget, bytes.
    pub budget: u64,
}

impl Budget {
    /// A budget of `bytes` (at least 1 KiB) whose reservations wait up to
    /// `wait` for room.
    pub fn new(bytes: u64, wait: Duration) -> Self {
        let total_kib = u32::try_from(bytes.div_ceil(1024).max(1)).unwrap_or(u32::MAX >> 4);
        Self {
            sem: Arc::new(Semaphore::new(total_kib as usize)),
            total_kib,
            wait,
        }
    }

    fn kib(&self, bytes: u64) -> u32 {
        // A request larger than the whole budget takes all of it (it then
        // runs alone) rather than waiting forever.
        u32::try_from(bytes.div_ceil(1024))
            .unwrap_or(u32::MAX)
            .clamp(1, self.total_kib)
    }

    /// Reserves `bytes`, waiting up to the budget's wait for room.
    pub async fn admit(&self, bytes: u64) -> Result<Held, Busy> {
        let kib = self.kib(bytes);
        // The common case, room right now, takes no timer.
        if let Ok(permit) = self.sem.clone().try_acquire_many_owned(kib) {
            return Ok(Held { _permit: permit });
        }
        let sem = self.sem.clone();
        match tokio::time::timeout(self.wait, sem.acquire_many_owned(kib)).await {
            Ok(Ok(permit)) => Ok(Held { _permit: permit }),
            // The semaphore is never closed; a timeout is a full budget.
            _ => Err(Busy {
                wanted: bytes,
                budget: self.total_bytes(),
            }),
        }
    }

    /// The whole budget, bytes.
    pub fn total_bytes(&self) -> u64 {
        u64::from(self.total_kib) * 1024
    }

    /// Bytes reserved right now.
    pub fn in_flight_bytes(&self) -> u64 {
        let free = u64::try_from(self.sem.available_permits()).unwrap_or(u64::MAX);
        u64::from(self.total_kib).saturating_sub(free) * 1024
    }
}

impl IntoResponse for Busy {
    fn into_response(self) -> Response {
        let mut resp = ApiError::new(503, "SlowDown", self.to_string()).into_response();
        resp.headers_mut().insert(
            axum::http::header::RETRY_AFTER,
            HeaderValue::from(RETRY_AFTER_SECS),
        );
        resp
    }
}

/// A request body over its route's limit: `413` naming the limit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("request body of {what} exceeds the limit of {limit} bytes for this route")]
pub struct TooLarge {
    /// What was seen: `N bytes` (declared) or `more than N bytes` (while
    /// reading).
    pub what: String,
    /// The route's limit, bytes.
    pub limit: u64,
}

impl IntoResponse for TooLarge {
    fn into_response(self) -> Response {
        ApiError::new(413, "EntityTooLarge", self.to_string()).into_response()
    }
}

/// Why a body could not be read whole.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BodyError {
    /// Over the route's limit (413).
    #[error(transparent)]
    TooLarge(#[from] TooLarge),
    /// No room in the budget (503).
    #[error(transparent)]
    Busy(#[from] Busy),
    /// The client's body failed (broken connection, bad framing): 400.
    #[error("reading the request body: {0}")]
    Read(String),
}

impl IntoResponse for BodyError {
    fn into_response(self) -> Response {
        match self {
            BodyError::TooLarge(e) => e.into_response(),
            BodyError::Busy(e) => e.into_response(),
            BodyError::Read(m) => ApiError::new(400, "IncompleteBody", m).into_response(),
        }
    }
}

/// The `Content-Length` a request declares, if any and well-formed.
pub fn declared_length(headers: &axum::http::HeaderMap) -> Option<u64> {
    headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
}

/// Reads a whole request body of at most `limit` bytes into memory: a
/// declared length over the limit is refused before any byte is read; then
/// `min(declared length, limit)` bytes are reserved in `budget` (waiting
/// for room, else [`Busy`]); then the body is read, stopping with
/// [`TooLarge`] at the first byte past the limit. The reservation comes
/// back with the bytes: keep it while they (or what is parsed from them)
/// live.
pub async fn read_body(
    body: Body,
    declared: Option<u64>,
    limit: usize,
    budget: &Budget,
) -> Result<(Bytes, Held), BodyError> {
    let too_large = |what: String| TooLarge {
        what,
        limit: limit as u64,
    };
    if let Some(n) = declared.filter(|&n| n > limit as u64) {
        return Err(too_large(format!("{n} bytes")).into());
    }
    let held = budget
        .admit(declared.unwrap_or(limit as u64).min(limit as u64))
        .await?;
    let limited = http_body_util::Limited::new(body, limit);
    match http_body_util::BodyExt::collect(limited).await {
        Ok(c) => Ok((c.to_bytes(), held)),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            Err(too_large(format!("more than {limit} bytes")).into())
        }
        Err(e) => Err(BodyError::Read(e.to_string())),
    }
}

/// A cap on open connections: a slot is taken before a connection is
/// accepted and given back when it closes.
#[derive(Debug, Clone)]
pub struct ConnectionSlots {
    sem: Arc<Semaphore>,
}

impl ConnectionSlots {
    /// `max` slots (at least one).
    pub fn new(max: usize) -> Self {
        Self {
            sem: Arc::new(Semaphore::new(max.max(1))),
        }
    }

    /// Waits for a free slot.
    pub async fn take(&self) -> OwnedSemaphorePermit {
        loop {
            // Never closed; the loop only satisfies the type.
            if let Ok(p) = self.sem.clone().acquire_owned().await {
                return p;
            }
        }
    }

    /// Slots free right now.
    pub fn free(&self) -> usize {
        self.sem.available_permits()
    }
}

/// A listener for `axum::serve` that accepts a connection only when a
/// [`ConnectionSlots`] slot is free, and frees it when the connection
/// closes.
pub struct LimitedListener<L> {
    inner: L,
    slots: ConnectionSlots,
}

impl<L> LimitedListener<L> {
    /// Wraps `inner` with at most `slots` connections open at once.
    pub fn new(inner: L, slots: ConnectionSlots) -> Self {
        Self { inner, slots }
    }
}

impl<L: axum::serve::Listener> axum::serve::Listener for LimitedListener<L> {
    type Io = Counted<L::Io>;
    type Addr = L::Addr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let slot = self.slots.take().await;
        let (io, addr) = self.inner.accept().await;
        (Counted { io, _slot: slot }, addr)
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// A connection holding its slot.
#[derive(Debug)]
pub struct Counted<T> {
    io: T,
    _slot: OwnedSemaphorePermit,
}

impl<T: AsyncRead + Unpin> AsyncRead for Counted<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Counted<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_budget_waits_then_refuses_and_frees_on_drop() {
        let b = Budget::new(4 << 10, Duration::from_millis(50));
        assert_eq!(b.total_bytes(), 4096);
        let a = b.admit(3000).await.expect("room");
        assert_eq!(b.in_flight_bytes(), 3072);
        let busy = b.admit(2048).await.expect_err("no room");
        assert_eq!(busy.budget, 4096);
        // Anything larger than the budget takes all of it, once free.
        drop(a);
        let all = b.admit(1 << 30).await.expect("runs alone");
        assert_eq!(b.in_flight_bytes(), 4096);
        drop(all);
        assert_eq!(b.in_flight_bytes(), 0);
        let resp = busy.into_response();
        assert_eq!(resp.status().as_u16(), 503);
        assert_eq!(
            resp.headers()
                .get(axum::http::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok()),
            Some("1")
        );
    }

    #[tokio::test]
    async fn bodies_over_the_limit_are_refused_with_413() {
        let b = Budget::new(1 << 20, Duration::from_millis(50));
        let err = read_body(Body::from(vec![0u8; 10]), Some(10), 4, &b)
            .await
            .expect_err("declared too large");
        let resp = err.into_response();
        assert_eq!(resp.status().as_u16(), 413);
        // Undeclared (chunked) bodies are cut at the limit.
        let err = read_body(Body::from(vec![0u8; 10]), None, 4, &b)
            .await
            .expect_err("too large");
        assert!(err.to_string().contains("limit of 4 bytes"), "{err}");
        let (bytes, _held) = read_body(Body::from(vec![1u8; 4]), None, 4, &b)
            .await
            .expect("fits");
        assert_eq!(&bytes[..], &[1, 1, 1, 1]);
    }
}
