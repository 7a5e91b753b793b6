//! A recording proxy in front of the real namenode, for client-library
//! tests that need to see what the client sent (which calls, under which
//! request ids, which bad-replica reports) or a replica that serves
//! garbage. It forwards every control call unchanged (signatures stay
//! valid) and keeps a copy; with [`Garble`] on, it points replica URLs in
//! file locations at itself and flips the first byte of what the real
//! datanode answers. It never answers for the namenode itself.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use axum::body::Bytes;
use axum::http::{header, HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use blob_common::proto::namenode::FileLocations;
use blob_common::{ChunkId, NodeId};

/// One control call the client made.
#[derive(Debug, Clone)]
pub struct Call {
    /// HTTP method.
    pub method: Method,
    /// Path, without the query.
    pub path: String,
    /// Its `x-request-id`, if any.
    pub request_id: Option<String>,
    /// Its body.
    pub body: Bytes,
}

/// Which replicas of a file's locations serve flipped bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Garble {
    /// None: locations pass unchanged.
    Off,
    /// The first replica listed for each chunk.
    FirstReplica,
    /// Every replica.
    EveryReplica,
}

struct State {
    upstream: String,
    base: String,
    calls: Vec<Call>,
    garble: Garble,
    garbled: Vec<(ChunkId, NodeId)>,
    http: reqwest::Client,
}

/// The proxy; stopped when dropped.
pub struct NamenodeProxy {
    state: Arc<Mutex<State>>,
    /// Its base URL (give it to the client as the endpoint).
    pub url: String,
    task: tokio::task::JoinHandle<()>,
}

impl NamenodeProxy {
    /// Starts a proxy to the namenode at `upstream` on a free port.
    pub async fn start(upstream: &str) -> Result<NamenodeProxy> {
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .context("binding the proxy")?;
        let url = format!("http://{}", listener.local_addr()?);
        let state = Arc::new(Mutex::new(State {
            upstream: upstream.trim_end_matches('/').to_string(),
            base: url.clone(),
            calls: Vec::new(),
            garble: Garble::Off,
            garbled: Vec::new(),
            http: reqwest::Client::new(),
        }));
        let s = state.clone();
        let app = axum::Router::new().fallback(
            move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
                let s = s.clone();
                async move {
                    handle(s, method, uri, headers, body)
                        .await
                        .unwrap_or_else(|e| {
                            (StatusCode::BAD_GATEWAY, format!("proxy: {e:#}")).into_response()
                        })
                }
            },
        );
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(NamenodeProxy { state, url, task })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Every control call so far, in order.
    pub fn calls(&self) -> Vec<Call> {
        self.lock().calls.clone()
    }

    /// The replicas handed out garbled so far, as (chunk, node).
    pub fn garbled(&self) -> Vec<(ChunkId, NodeId)> {
        self.lock().garbled.clone()
    }

    /// Turns garbled replicas on or off.
    pub fn set_garble(&self, g: Garble) {
        self.lock().garble = g;
    }
}

impl Drop for NamenodeProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Headers that describe one hop's body framing, not the message.
fn hop_header(name: &header::HeaderName) -> bool {
    [
        header::HOST,
        header::CONTENT_LENGTH,
        header::TRANSFER_ENCODING,
        header::CONNECTION,
    ]
    .contains(name)
}

async fn handle(
    s: Arc<Mutex<State>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response> {
    let (http, upstream, base, garble) = {
        let st = s.lock().unwrap_or_else(|e| e.into_inner());
        (
            st.http.clone(),
            st.upstream.clone(),
            st.base.clone(),
            st.garble,
        )
    };
    if uri.path() == "/garble" {
        return garbled(&http, &uri, &headers).await;
    }
    s.lock()
        .unwrap_or_else(|e| e.into_inner())
        .calls
        .push(Call {
            method: method.clone(),
            path: uri.path().to_string(),
            request_id: headers
                .get("x-request-id")
                .and_then(|v| v.to_str().ok())
                .map(String::from),
            body: body.clone(),
        });
    let mut fwd = HeaderMap::new();
    for (k, v) in &headers {
        if !hop_header(k) {
            fwd.append(k.clone(), v.clone());
        }
    }
    let target = format!(
        "{upstream}{}",
        uri.path_and_query().map_or("/", |p| p.as_str())
    );
    let resp = http
        .request(method.clone(), target)
        .headers(fwd)
        .body(body)
        .send()
        .await
        .context("forwarding to the namenode")?;
    let status = resp.status();
    let mut out_headers = HeaderMap::new();
    for (k, v) in resp.headers() {
        if !hop_header(k) {
            out_headers.append(k.clone(), v.clone());
        }
    }
    let mut bytes = resp
        .bytes()
        .await
        .context("reading the namenode's answer")?;
    if garble != Garble::Off
        && method == Method::GET
        && uri.path() == "/v1/file/locations"
        && status.is_success()
    {
        let mut locs: FileLocations =
            serde_json::from_slice(&bytes).context("parsing file locations")?;
        let mut garbled = Vec::new();
        for c in &mut locs.chunks {
            let n = match garble {
                Garble::FirstReplica => 1,
                _ => c.replicas.len(),
            };
            for r in c.replicas.iter_mut().take(n) {
                let mut u = reqwest::Url::parse(&format!("{base}/garble"))?;
                u.query_pairs_mut().append_pair("to", &r.url);
                r.url = u.to_string();
                garbled.push((c.id, r.node));
            }
        }
        s.lock()
            .unwrap_or_else(|e| e.into_inner())
            .garbled
            .extend(garbled);
        bytes = Bytes::from(serde_json::to_vec(&locs)?);
    }
    Ok((status, out_headers, bytes).into_response())
}

/// Fetches `?to=URL` from the real datanode (with the caller's range) and
/// answers with its first byte flipped.
async fn garbled(http: &reqwest::Client, uri: &Uri, headers: &HeaderMap) -> Result<Response> {
    let u = reqwest::Url::parse(&format!("http://proxy{uri}"))?;
    let to = u
        .query_pairs()
        .find(|(k, _)| k == "to")
        .map(|(_, v)| v.into_owned())
        .context("garble without ?to=")?;
    let mut req = http.get(to);
    if let Some(range) = headers.get(header::RANGE) {
        req = req.header(header::RANGE, range.clone());
    }
    let resp = req.send().await.context("reading the replica")?;
    let status = resp.status();
    let mut out_headers = HeaderMap::new();
    for (k, v) in resp.headers() {
        if !hop_header(k) {
            out_headers.append(k.clone(), v.clone());
        }
    }
    let mut body = resp.bytes().await?.to_vec();
    if status.is_success() {
        if let Some(b) = body.first_mut() {
            *b ^= 0xff;
        }
    }
    Ok((status, out_headers, body).into_response())
}
