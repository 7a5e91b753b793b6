//! The S3 gateway: a stateless server that speaks the S3 API on top of the
//! client library, so that objects written through S3 are ordinary files
//! (readable by `blobctl` and the mount) and the reverse.
//!
//! Flow of a request: hyper accepts it and gives it a request id → `s3s`
//! routes it, verifies AWS Signature V4 (header or pre-signed query, signed
//! or unsigned payloads, aws-chunked bodies with per-chunk signatures or
//! checksum trailers) with the secret [`keys`] looks up at the namenode
//! under the cluster credentials → [`service`] hands the operation to its
//! family in [`ops`] (bucket, get, put, copy, delete, list, multipart),
//! which runs it as that user through one [`blob_client::Client`] per
//! access key: metadata calls to the namenode, chunk bytes straight to and
//! from the datanodes → errors become S3's XML error bodies, each with the
//! request id ([`error`]).
//!
//! Memory is bounded ([`admit`]): `limits.max_connections` connections;
//! nothing of a body is read before its signature verified; every body
//! byte held (upload windows, read-ahead, XML bodies) is reserved first in
//! one budget of `limits.max_bytes_in_flight` (503 `SlowDown` with
//! `Retry-After` past it).
//!
//! What this crate must never do: keep state a second gateway would need
//! (everything lives in the namenode), buffer a whole object (bodies stream
//! through bounded buffers: `parallel` chunks in flight per request), or
//! answer a client's mistake with a 5xx.

mod admit;
mod body;
mod compat;
mod cors;
mod error;
mod host;
mod keys;
mod locations;
mod md5;
mod ops;
mod service;
mod sse;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use blob_common::presign::Keyring;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// Gateway settings. `Default` gives working local values.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    /// Address to listen on (the binary binds it; tests bind port 0).
    pub listen: SocketAddr,
    /// Namenode base URL.
    pub namenode: String,
    /// The region this gateway answers for (SigV4 scope, GetBucketLocation).
    pub region: String,
    /// Base domains for virtual-host-style addressing
    /// (`bucket.<domain>`); any other host means path style.
    pub domains: Vec<String>,
    /// Smallest size of every multipart part but the last (S3: 5 MiB).
    pub min_part_size: u64,
    /// Chunk size objects are cut into.
    pub chunk_size: u64,
    /// Chunks in flight per request (upload and read-ahead); bounds memory
    /// per request to `parallel × chunk_size`.
    pub parallel: usize,
    /// How long a looked-up access key is trusted before asking again, s.
    pub key_cache_secs: u64,
    /// Replication factor for objects written (`None`: the namenode's).
    pub replication: Option<u8>,
    /// Largest request header block, bytes (larger: 431).
    pub max_header_bytes: usize,
    /// The gateway's zone: object reads go through this zone's edge cache
    /// (or the nearest one) when the cluster has edges.
    pub zone: Option<String>,
    /// Read objects from the datanodes only, never through an edge cache.
    pub no_edge: bool,
    /// Chunk locations kept between reads of the same objects, counted
    /// in chunks (0: none). Each use is confirmed with the namenode first,
    /// so this saves work, never consistency.
    pub location_cache_chunks: u64,
    /// Connection cap and budget of bytes in memory (object bodies in
    /// flight, read-ahead of reads, XML bodies).
    pub limits: blob_server::limits::Limits,
    /// TLS: the certificate served (plain HTTP without one) and the CA
    /// trusted when calling other services (`[tls]`, `--tls-cert`,
    /// `--tls-key`, `--ca-file`).
    pub tls: blob_server::tls::TlsConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 9000)),
            namenode: "http://127.0.0.1:9870".into(),
            region: "us-east-1".into(),
            domains: vec!["localhost".into()],
            min_part_size: 5 << 20,
            chunk_size: 8 << 20,
            parallel: 4,
            key_cache_secs: 30,
            replication: None,
            max_header_bytes: 64 << 10,
            zone: None,
            no_edge: false,
            location_cache_chunks: 20_000,
            limits: blob_server::limits::Limits::with_budget(1 << 30),
            tls: Default::default(),
        }
    }
}

impl Config {
    /// Checks settings that depend on each other.
    pub fn validate(&self) -> Result<(), String> {
        if !(64 << 10..=256 << 20).contains(&self.chunk_size) {
            return Err("chunk_size must be between 64 KiB and 256 MiB".into());
        }
        if !(1..=64).contains(&self.parallel) {
            return Err("parallel must be 1 to 64".into());
        }
        if self.region.is_empty() {
            return Err("region must not be empty".into());
        }
        if self.max_header_bytes < 8192 {
            return Err("max_header_bytes must be at least 8192".into());
        }
        reqwest::Url::parse(&self.namenode)
            .map_err(|e| format!("namenode URL {:?}: {e}", self.namenode))?;
        self.limits
            .validate(admit::upload_window(self.parallel, self.chunk_size, None))?;
        self.tls.validate()?;
        Ok(())
    }
}

/// Why the gateway could not run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration is inconsistent.
    #[error("invalid S3 gateway config: {0}")]
    Config(String),
    /// Accepting connections failed.
    #[error("accepting connections: {0}")]
    Accept(#[source] std::io::Error),
}

/// Runs a gateway on `listener` until `shutdown` is cancelled. `keyring` is
/// the cluster secret: it signs the lookups of users' access keys.
pub async fn serve(
    cfg: Config,
    keyring: Keyring,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    cfg.validate().map_err(Error::Config)?;
    let acceptor = cfg
        .tls
        .acceptor()
        .map_err(|e| Error::Config(e.to_string()))?;
    let cfg = Arc::new(cfg);
    let keys = keys::Keys::new(cfg.clone(), keyring).map_err(Error::Config)?;
    let cors = Arc::new(cors::Cors::new(keys.namenode().clone()));
    let budget = cfg.limits.budget();
    let hosts = Arc::new(host::Hosts::new(&cfg.domains));
    let s3 = {
        let mut b = s3s::service::S3ServiceBuilder::new(service::Gateway::new(
            cfg.clone(),
            keys.clone(),
            budget.clone(),
            cors.clone(),
        ));
        b.set_auth(keys.clone());
        b.set_access(admit::Gate::new(budget));
        b.set_host(host::Hosts::new(&cfg.domains));
        let mut limits = s3s::config::S3Config::default();
        limits.xml_max_body_size = admit::XML_BODY_LIMIT;
        // Form uploads are refused before s3s sees them; these only bound
        // what it would read of one.
        limits.post_object_max_file_size = 0;
        limits.form_max_fields_size = 64 << 10;
        limits.form_max_field_size = 16 << 10;
        b.set_config(Arc::new(s3s::config::StaticConfigProvider::new(Arc::new(
            limits,
        ))));
        b.build()
    };
    let slots = cfg.limits.connection_slots();
    let addr = listener.local_addr().ok();
    tracing::info!(addr = ?addr, tls = acceptor.is_some(), namenode = %cfg.namenode, region = %cfg.region, "S3 gateway listening");
    let conns = tokio_util::task::TaskTracker::new();
    loop {
        // A connection is accepted only with a free slot; past the cap,
        // new ones wait in the listen backlog.
        let slot = tokio::select! {
            _ = shutdown.cancelled() => break,
            s = slots.take() => s,
        };
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) if is_transient(&e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
                Err(e) => return Err(Error::Accept(e)),
            },
        };
        let _ = stream.set_nodelay(true);
        let s3 = s3.clone();
        let front = Front {
            cors: cors.clone(),
            hosts: hosts.clone(),
        };
        let token = shutdown.clone();
        let max_headers = cfg.max_header_bytes;
        let acceptor = acceptor.clone();
        conns.spawn(async move {
            let _slot = slot;
            // The handshake runs here, in the connection's own task, so a
            // slow or silent client holds up no other.
            let stream = match acceptor {
                Some(a) => match a.handshake(stream).await {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::debug!(%peer, error = %e, "TLS handshake failed");
                        return;
                    }
                },
                None => blob_server::tls::Stream::Plain(stream),
            };
            let svc = hyper::service::service_fn(move |req| {
                let s3 = s3.clone();
                let front = front.clone();
                async move { Ok::<_, Infallible>(handle(&s3, &front, req).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .max_buf_size(max_headers)
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), svc);
            tokio::pin!(conn);
            let result = tokio::select! {
                r = conn.as_mut() => r,
                _ = token.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = result {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    conns.close();
    let _ = tokio::time::timeout(Duration::from_secs(10), conns.wait()).await;
    Ok(())
}

fn is_transient(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::ConnectionReset
            | std::io::ErrorKind::Interrupted
            | std::io::ErrorKind::WouldBlock
    ) || e.raw_os_error() == Some(24) // EMFILE: out of descriptors for now
}

/// The id of a request, also given to the handlers as an extension.
#[derive(Debug, Clone)]
pub(crate) struct RequestId(pub(crate) String);

/// What the gateway answers in front of `s3s`: CORS preflights and
/// headers, by the bucket a request names.
#[derive(Clone)]
struct Front {
    cors: Arc<cors::Cors>,
    hosts: Arc<host::Hosts>,
}

/// Serves one request: request id, span, s3s (or a CORS preflight), then
/// the id on the response (header, and `<RequestId>` in an XML error
/// body) and any CORS grant.
async fn handle(
    s3: &s3s::service::S3Service,
    front: &Front,
    req: http::Request<Incoming>,
) -> http::Response<s3s::Body> {
    let id = blob_common::new_request_id().to_ascii_uppercase();
    let started = Instant::now();
    let span = tracing::info_span!("s3", method = %req.method(), request_id = %id);
    if admit::is_form_upload(req.method(), req.headers()) {
        // Refused before a byte of the body is read.
        span.in_scope(|| tracing::info!(status = 501, "form upload refused"));
        let resp = error::xml_response(
            501,
            "NotImplemented",
            "POST object (browser form uploads) is not supported; use PUT",
            &id,
        );
        return with_request_id(resp, &id);
    }
    let bucket = front.hosts.bucket_of_request(req.uri(), req.headers());
    if req.method() == http::Method::OPTIONS {
        let resp = match front.cors.preflight(bucket.as_deref(), req.headers()).await {
            cors::Preflight::Allowed(headers) => {
                let mut resp = http::Response::new(s3s::Body::empty());
                *resp.headers_mut() = headers;
                resp
            }
            cors::Preflight::Forbidden => error::xml_response(
                403,
                "AccessForbidden",
                "CORSResponse: This CORS request is not allowed. This is usually because the evalution of Origin, request method / Access-Control-Request-Method or Access-Control-Request-Headers are not whitelisted by the resource's CORS spec.",
                &id,
            ),
            cors::Preflight::Invalid(why) => error::xml_response(400, "BadRequest", why, &id),
        };
        span.in_scope(|| tracing::debug!(status = resp.status().as_u16(), "CORS preflight"));
        return with_request_id(resp, &id);
    }
    let origin = req
        .headers()
        .get(http::header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let method = req.method().clone();
    let (mut parts, body) = req.into_parts();
    parts.extensions.insert(RequestId(id.clone()));
    compat::date_as_amz_date(&mut parts.headers);
    let path = parts.uri.path().to_string();
    let attributes = compat::is_get_attributes(&parts.method, &parts.uri);
    let result = match compat::second_pass_needed(&parts.method, &parts.headers) {
        None => {
            let req = http::Request::from_parts(parts, s3s::Body::from(body));
            s3.call(req).instrument(span.clone()).await
        }
        Some(pass) => {
            let (method, uri, headers) = (
                parts.method.clone(),
                parts.uri.clone(),
                parts.headers.clone(),
            );
            let signer = compat::Signer::default();
            parts.extensions.insert(signer.clone());
            let mut body = Some(s3s::Body::from(body));
            let first_body = match pass {
                compat::Pass::IgnoreRange => body.take().unwrap_or_default(),
                compat::Pass::UnknownLength => {
                    parts.extensions.insert(compat::ProbeOnly);
                    s3s::Body::empty()
                }
            };
            let req = http::Request::from_parts(parts, first_body);
            let first = s3.call(req).instrument(span.clone()).await;
            let refused = first
                .as_ref()
                .is_ok_and(|r| r.status() == http::StatusCode::BAD_REQUEST);
            match signer.0.get() {
                Some(key) if refused || pass == compat::Pass::UnknownLength => {
                    let body = body.take().unwrap_or_default();
                    let mut again =
                        compat::second_pass(pass, method, &uri, &headers, key.clone(), body);
                    again.extensions_mut().insert(RequestId(id.clone()));
                    s3.call(again).instrument(span.clone()).await
                }
                _ => first,
            }
        }
    };
    let resp = match result {
        Ok(r) => r,
        Err(e) => {
            span.in_scope(|| tracing::warn!(error = ?e, "request failed inside the S3 layer"));
            error::xml_response(500, "InternalError", "internal error", &id)
        }
    };
    let (mut parts, mut body) = resp.into_parts();
    let status = parts.status.as_u16();
    if attributes && status == 200 {
        if let Some(xml) = body
            .bytes()
            .and_then(|b| compat::unquote_attributes_etag(&b))
        {
            parts.headers.remove(http::header::CONTENT_LENGTH);
            body = s3s::Body::from(xml);
        }
    }
    if status >= 400 {
        if let Some(bytes) = body.bytes() {
            body = s3s::Body::from(error::with_request_id(&bytes, &id));
            parts.headers.remove(http::header::CONTENT_LENGTH);
        }
    }
    if let Ok(v) = http::HeaderValue::from_str(&id) {
        parts.headers.insert("x-amz-request-id", v.clone());
        parts.headers.insert(blob_common::REQUEST_ID, v);
    }
    if let (Some(origin), Some(bucket)) = (&origin, &bucket) {
        front
            .cors
            .decorate(bucket, origin, &method, &mut parts.headers)
            .await;
    }
    let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
    span.in_scope(|| {
        if status >= 500 {
            tracing::warn!(status, path = %path, elapsed_ms, "request failed");
        } else if status >= 400 {
            tracing::info!(status, path = %path, elapsed_ms, "request refused");
        } else {
            tracing::debug!(status, path = %path, elapsed_ms, "done");
        }
    });
    http::Response::from_parts(parts, body)
}

/// `resp` with the request id header.
fn with_request_id(mut resp: http::Response<s3s::Body>, id: &str) -> http::Response<s3s::Body> {
    if let Ok(v) = http::HeaderValue::from_str(id) {
        resp.headers_mut().insert("x-amz-request-id", v);
    }
    resp
}
