//! In-process HTTP tests: real datanodes on 127.0.0.1 ephemeral ports,
//! talking to each other over the pipeline. The namenode URL points at a
//! closed port, so heartbeats only warn.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use blob_common::auth;
use blob_common::proto::heartbeat::{ChunkReport, Command, Heartbeat, HeartbeatResponse};
use blob_common::proto::namenode::ChunkRef;
use bytes::Bytes;

use blob_common::error::ErrorBody;
use blob_common::presign::{self, Claims, Keyring, Op, PipelineNode};
use blob_common::proto::datanode::PutChunkResponse;
use blob_common::{ChunkId, NodeId};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::{chunk_path, node_id, serve, Config, Error};

const TEST_TIMEOUT: Duration = Duration::from_secs(60);

struct TestNode {
    id: NodeId,
    url: String,
    dir: tempfile::TempDir,
    task: JoinHandle<Result<(), Error>>,
}

impl TestNode {
    fn pipeline_entry(&self) -> PipelineNode {
        PipelineNode {
            node: self.id,
            url: self.url.clone(),
        }
    }

    fn holds(&self, id: &ChunkId) -> bool {
        chunk_path(self.dir.path(), id).exists()
    }

    fn tmp_is_empty(&self) -> bool {
        std::fs::read_dir(self.dir.path().join("tmp"))
            .map(|mut d| d.next().is_none())
            .unwrap_or(false)
    }

    async fn metric(&self, name: &str) -> u64 {
        let text = reqwest::get(format!("{}/metrics", self.url))
            .await
            .ok()
            .map(|r| r.text())
            .unwrap_or_else(|| panic!("metrics unreachable"))
            .await
            .unwrap_or_default();
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or(0)
    }
}

/// A URL on 127.0.0.1 where nothing listens.
async fn closed_url() -> String {
    let l = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("bind: {e}"));
    let addr = l.local_addr().unwrap_or_else(|e| panic!("{e}"));
    drop(l);
    format!("http://{addr}")
}

async fn start(keyring: &Keyring, shutdown: &CancellationToken) -> TestNode {
    start_with(keyring, shutdown, closed_url().await).await
}

async fn start_with(keyring: &Keyring, shutdown: &CancellationToken, namenode: String) -> TestNode {
    start_cfg(keyring, shutdown, namenode, |_| {}).await
}

async fn start_cfg(
    keyring: &Keyring,
    shutdown: &CancellationToken,
    namenode: String,
    tweak: impl FnOnce(&mut Config),
) -> TestNode {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("bind: {e}"));
    let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
    let id = node_id(dir.path()).unwrap_or_else(|e| panic!("node id: {e}"));
    let cfg = Config {
        listen: addr,
        data_dir: dir.path().to_path_buf(),
        namenode,
        heartbeat_ms: 100,
        report_ms: 50,
        min_free_bytes: 0,
        ..Config::default()
    };
    let mut cfg = cfg;
    tweak(&mut cfg);
    let task = tokio::spawn(serve(cfg, keyring.clone(), listener, shutdown.clone()));
    TestNode {
        id,
        url: format!("http://{addr}"),
        dir,
        task,
    }
}

async fn stop(shutdown: CancellationToken, nodes: Vec<TestNode>) {
    shutdown.cancel();
    for n in nodes {
        let res = tokio::time::timeout(Duration::from_secs(10), n.task).await;
        assert!(
            matches!(res, Ok(Ok(Ok(())))),
            "serve did not stop cleanly: {res:?}"
        );
    }
}

fn data(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(13).wrapping_add(seed) ^ (i >> 11) as u8)
        .collect()
}

fn put_claims(chunk: ChunkId, size: u64, pipeline: Vec<PipelineNode>) -> Claims {
    Claims {
        op: Op::Put,
        chunk,
        exp: blob_common::now_secs() + 60,
        kid: String::new(),
        size: Some(size),
        pipeline,
        upload: None,
        origins: vec![],
    }
}

fn get_claims(chunk: ChunkId) -> Claims {
    Claims {
        op: Op::Get,
        chunk,
        exp: blob_common::now_secs() + 60,
        kid: String::new(),
        size: None,
        pipeline: Vec::new(),
        upload: None,
        origins: vec![],
    }
}

async fn put(url: &str, body: Vec<u8>) -> reqwest::Response {
    reqwest::Client::new()
        .put(url)
        .body(body)
        .send()
        .await
        .unwrap_or_else(|e| panic!("PUT {url}: {e}"))
}

async fn error_code(resp: reqwest::Response) -> String {
    let body: ErrorBody = resp
        .json()
        .await
        .unwrap_or_else(|e| panic!("error body is not JSON: {e}"));
    body.code
}

async fn in_time<F: std::future::Future>(f: F) {
    if tokio::time::timeout(TEST_TIMEOUT, f).await.is_err() {
        panic!("test timed out");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipelined_put_lands_on_both_nodes_and_reads_back() {
    in_time(async {
        let ring = Keyring::generate();
        let shutdown = CancellationToken::new();
        let a = start(&ring, &shutdown).await;
        let b = start(&ring, &shutdown).await;
        let buf = data(300_000, 1);
        let id = ChunkId::of(&buf);
        let n = buf.len() as u64;
        let claims = put_claims(id, n, vec![a.pipeline_entry(), b.pipeline_entry()]);
        let resp = put(&presign::url(&a.url, &ring, &claims), buf.clone()).await;
        assert_eq!(resp.status(), 200);
        let body: PutChunkResponse = resp.json().await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(body.chunk, id);
        assert!(body.failed.is_empty(), "{:?}", body.failed);
        let nodes: Vec<NodeId> = body.receipts.iter().map(|r| r.node).collect();
        assert_eq!(nodes, vec![a.id, b.id]);
        for r in &body.receipts {
            assert!(r.verify(&ring).is_ok());
            assert_eq!((r.chunk, r.size), (id, n));
        }
        assert!(a.holds(&id) && b.holds(&id));
        assert_eq!(a.metric("blob_datanode_received_bytes_total").await, n);
        assert_eq!(b.metric("blob_datanode_received_bytes_total").await, n);
        assert_eq!(b.metric("blob_datanode_chunks_stored").await, 1);

        let get_url = presign::url(&b.url, &ring, &get_claims(id));
        let client = reqwest::Client::new();
        let whole = client
            .get(&get_url)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(whole.status(), 200);
        let h = whole.headers();
        assert_eq!(h["content-length"], n.to_string().as_str());
        assert_eq!(h["etag"], format!("\"{id}\"").as_str());
        assert_eq!(h["cache-control"], "public, max-age=31536000, immutable");
        assert_eq!(h["accept-ranges"], "bytes");
        let got = whole.bytes().await.unwrap_or_default();
        assert_eq!(ChunkId::of(&got), id);
        assert_eq!(b.metric("blob_datanode_sent_bytes_total").await, n);

        let part = client
            .get(&get_url)
            .header("range", "bytes=65530-200000")
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(part.status(), 206);
        assert_eq!(
            part.headers()["content-range"],
            format!("bytes 65530-200000/{n}").as_str()
        );
        let got = part.bytes().await.unwrap_or_default();
        assert_eq!(&got[..], &buf[65530..200_001]);

        let tail = client
            .get(&get_url)
            .header("range", "bytes=-10")
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(tail.status(), 206);
        assert_eq!(
            &tail.bytes().await.unwrap_or_default()[..],
            &buf[buf.len() - 10..]
        );

        let beyond = client
            .get(&get_url)
            .header("range", format!("bytes={n}-"))
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(beyond.status(), 416);
        assert_eq!(
            beyond.headers()["content-range"],
            format!("bytes */{n}").as_str()
        );

        let head = client
            .head(&get_url)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(head.status(), 200);
        assert_eq!(head.headers()["content-length"], n.to_string().as_str());

        // Storing it again is verified and answered, with one copy kept.
        let resp = put(&presign::url(&a.url, &ring, &claims), buf.clone()).await;
        assert_eq!(resp.status(), 200);
        assert_eq!(a.metric("blob_datanode_chunks_stored").await, 1);

        stop(shutdown, vec![a, b]).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_puts_answer_403_and_store_nothing() {
    in_time(async {
        let ring = Keyring::generate();
        let shutdown = CancellationToken::new();
        let a = start(&ring, &shutdown).await;
        let b = start(&ring, &shutdown).await;
        let buf = data(70_000, 2);
        let id = ChunkId::of(&buf);
        let n = buf.len() as u64;
        let pipeline = vec![a.pipeline_entry(), b.pipeline_entry()];
        let good = put_claims(id, n, pipeline.clone());

        let mut expired = good.clone();
        expired.exp = blob_common::now_secs() - 5;
        let mut tampered = presign::url(&a.url, &ring, &good);
        let last = tampered.pop().unwrap_or('0');
        tampered.push(if last == '0' { '1' } else { '0' });
        let mut wrong_op = good.clone();
        wrong_op.op = Op::Get;
        let other = ChunkId::of(b"other");
        let wrong_chunk_url = presign::url(&a.url, &ring, &put_claims(other, n, pipeline.clone()))
            .replace(&other.to_string(), &id.to_string());
        let mut wrong_size = good.clone();
        wrong_size.size = Some(n + 1);
        let other_ring = Keyring::generate();

        let cases = vec![
            ("expired", presign::url(&a.url, &ring, &expired)),
            ("tampered", tampered),
            ("wrong op", presign::url(&a.url, &ring, &wrong_op)),
            ("wrong chunk", wrong_chunk_url),
            ("wrong size", presign::url(&a.url, &ring, &wrong_size)),
            ("wrong key", presign::url(&a.url, &other_ring, &good)),
            (
                "wrong hop",
                format!("{}&hop=1", presign::url(&a.url, &ring, &good)),
            ),
            ("no signature", format!("{}/v1/chunks/{id}", a.url)),
        ];
        for (what, url) in cases {
            let resp = put(&url, buf.clone()).await;
            assert_eq!(resp.status(), 403, "{what}");
            assert_eq!(error_code(resp).await, "AccessDenied", "{what}");
        }
        assert_eq!(a.metric("blob_datanode_received_bytes_total").await, 0);

        let resp = put(
            &format!("{}/v1/chunks/not-a-chunk?t=x&s=y", a.url),
            buf.clone(),
        )
        .await;
        assert_eq!(resp.status(), 400);
        assert_eq!(error_code(resp).await, "InvalidChunkId");
        let resp = put(
            &format!("{}&hop=x", presign::url(&a.url, &ring, &good)),
            buf.clone(),
        )
        .await;
        assert_eq!(resp.status(), 400);

        // Right size, wrong bytes: refused after hashing, on both nodes.
        let mut wrong = buf.clone();
        wrong[12_345] ^= 0xff;
        let resp = put(&presign::url(&a.url, &ring, &good), wrong).await;
        assert_eq!(resp.status(), 400);
        assert_eq!(error_code(resp).await, "BadDigest");

        for node in [&a, &b] {
            assert!(!node.holds(&id));
            assert!(node.tmp_is_empty());
        }
        stop(shutdown, vec![a, b]).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_downstream_is_reported_not_fatal() {
    in_time(async {
        let ring = Keyring::generate();
        let shutdown = CancellationToken::new();
        let a = start(&ring, &shutdown).await;
        let dead = PipelineNode {
            node: NodeId::random(),
            url: closed_url().await,
        };
        let buf = data(1_000, 3);
        let id = ChunkId::of(&buf);
        let claims = put_claims(id, 1_000, vec![a.pipeline_entry(), dead.clone()]);
        let resp = put(&presign::url(&a.url, &ring, &claims), buf).await;
        assert_eq!(resp.status(), 200);
        let body: PutChunkResponse = resp.json().await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(body.receipts.len(), 1);
        assert_eq!(body.receipts[0].node, a.id);
        assert_eq!(body.failed.len(), 1);
        assert_eq!(body.failed[0].node, dead.node);
        assert!(!body.failed[0].error.is_empty());
        assert!(a.holds(&id));
        assert_eq!(a.metric("blob_datanode_pipeline_failures_total").await, 1);
        stop(shutdown, vec![a]).await;
    })
    .await;
}

fn flip_byte(dir: &Path, id: &ChunkId, at: usize) {
    let path = chunk_path(dir, id);
    let mut raw = std::fs::read(&path).unwrap_or_else(|e| panic!("{e}"));
    raw[at] ^= 0x01;
    std::fs::write(&path, raw).unwrap_or_else(|e| panic!("{e}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_chunks_are_quarantined_and_never_served_whole() {
    in_time(async {
        let ring = Keyring::generate();
        let shutdown = CancellationToken::new();
        let a = start(&ring, &shutdown).await;
        let client = reqwest::Client::new();

        let missing = ChunkId::of(b"missing");
        let resp = client
            .get(presign::url(&a.url, &ring, &get_claims(missing)))
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(resp.status(), 404);
        assert_eq!(error_code(resp).await, "NoSuchChunk");

        // Corrupt deep inside: the response starts, then is cut short.
        let big = data(3 * 1024 * 1024 + 5, 4);
        let big_id = ChunkId::of(&big);
        let claims = put_claims(big_id, big.len() as u64, vec![a.pipeline_entry()]);
        assert_eq!(
            put(&presign::url(&a.url, &ring, &claims), big.clone())
                .await
                .status(),
            200
        );
        flip_byte(a.dir.path(), &big_id, 2 * 1024 * 1024 + 100);
        let url = presign::url(&a.url, &ring, &get_claims(big_id));
        let resp = client
            .get(&url)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(resp.status(), 200);
        assert!(
            resp.bytes().await.is_err(),
            "a corrupt body must not arrive whole"
        );
        assert!(!a.holds(&big_id));
        let resp = client
            .get(&url)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(resp.status(), 404);

        // Corrupt in the first block: refused up front.
        let small = data(5_000, 5);
        let small_id = ChunkId::of(&small);
        let claims = put_claims(small_id, 5_000, vec![a.pipeline_entry()]);
        assert_eq!(
            put(&presign::url(&a.url, &ring, &claims), small)
                .await
                .status(),
            200
        );
        flip_byte(a.dir.path(), &small_id, 10);
        let url = presign::url(&a.url, &ring, &get_claims(small_id));
        let resp = client
            .get(&url)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(resp.status(), 500);
        assert_eq!(error_code(resp).await, "CorruptChunk");
        assert!(!a.holds(&small_id));
        assert_eq!(a.metric("blob_datanode_corrupt_chunks_total").await, 2);

        // A PUT URL does not read, a GET URL does not write.
        let resp = client
            .get(presign::url(&a.url, &ring, &claims))
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(resp.status(), 403);

        let health: serde_json::Value = client
            .get(format!("{}/v1/health", a.url))
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .json()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(health["node"], a.id.to_string());
        assert_eq!(health["status"], "ok");
        let resp = client
            .get(format!("{}/nope", a.url))
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(resp.status(), 404);
        assert_eq!(error_code(resp).await, "NoSuchRoute");
        stop(shutdown, vec![a]).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_node_refuses_writes() {
    in_time(async {
        let ring = Keyring::generate();
        let shutdown = CancellationToken::new();
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
        let id = node_id(dir.path()).unwrap_or_else(|e| panic!("{e}"));
        let cfg = Config {
            data_dir: dir.path().to_path_buf(),
            namenode: closed_url().await,
            min_free_bytes: u64::MAX,
            ..Config::default()
        };
        let task = tokio::spawn(serve(cfg, ring.clone(), listener, shutdown.clone()));
        let url = format!("http://{addr}");
        let buf = data(100, 6);
        let chunk = ChunkId::of(&buf);
        let claims = put_claims(
            chunk,
            100,
            vec![PipelineNode {
                node: id,
                url: url.clone(),
            }],
        );
        let resp = put(&presign::url(&url, &ring, &claims), buf).await;
        assert_eq!(resp.status(), 507);
        assert_eq!(error_code(resp).await, "NodeFull");
        assert!(!chunk_path(dir.path(), &chunk).exists());
        shutdown.cancel();
        let res = tokio::time::timeout(Duration::from_secs(10), task).await;
        assert!(matches!(res, Ok(Ok(Ok(())))));
    })
    .await;
}

/// A stand-in namenode that checks every call's signature and records it.
#[derive(Default)]
struct FakeNamenode {
    heartbeats: Mutex<Vec<Heartbeat>>,
    reports: Mutex<Vec<ChunkReport>>,
    ask_for_report: AtomicBool,
}

async fn fake_namenode_call(
    State((fake, ring)): State<(Arc<FakeNamenode>, Keyring)>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let verified = auth::parse_authorization(header("authorization")).and_then(|cred| {
        let (access_key, secret) = ring.service_credentials(auth::ServiceRole::Datanode);
        if cred.access_key != access_key {
            return Err(auth::AuthError::UnknownKey(cred.access_key));
        }
        let parts = auth::RequestParts {
            method: method.as_str(),
            path: uri.path(),
            query: uri.query().unwrap_or(""),
            date: header(auth::DATE_HEADER),
            content_sha256: header(auth::CONTENT_SHA_HEADER),
            body: &body,
        };
        auth::verify(&cred, secret, &parts, blob_common::now_secs())
    });
    if let Err(e) = verified {
        return (StatusCode::FORBIDDEN, e.to_string()).into_response();
    }
    match uri.path() {
        "/v1/datanodes/heartbeat" => {
            let Ok(hb) = serde_json::from_slice::<Heartbeat>(&body) else {
                return StatusCode::BAD_REQUEST.into_response();
            };
            fake.heartbeats
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(hb);
            let commands = if fake.ask_for_report.swap(false, Ordering::SeqCst) {
                vec![Command::Report]
            } else {
                Vec::new()
            };
            Json(HeartbeatResponse { commands }).into_response()
        }
        "/v1/datanodes/report" => {
            let Ok(r) = serde_json::from_slice::<ChunkReport>(&body) else {
                return StatusCode::BAD_REQUEST.into_response();
            };
            fake.reports
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(r);
            Json(serde_json::json!({})).into_response()
        }
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_and_reports_reach_the_namenode_signed() {
    in_time(async {
        let ring = Keyring::generate();
        let shutdown = CancellationToken::new();
        let fake = Arc::new(FakeNamenode::default());
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let nn_url = format!(
            "http://{}",
            listener.local_addr().unwrap_or_else(|e| panic!("{e}"))
        );
        let app = Router::new()
            .fallback(fake_namenode_call)
            .with_state((Arc::clone(&fake), ring.clone()));
        let nn_stop = shutdown.clone();
        let nn = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(nn_stop.cancelled_owned())
                .await
        });

        let a = start_with(&ring, &shutdown, nn_url).await;
        let heartbeats = || {
            fake.heartbeats
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone()
        };
        let reports = || {
            fake.reports
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone()
        };

        wait_until("first heartbeat and full report", || {
            !heartbeats().is_empty() && reports().iter().any(|r| r.full)
        })
        .await;
        let hb = &heartbeats()[0];
        assert_eq!(hb.node, a.id);
        assert_eq!(hb.url, a.url);
        assert!(hb.capacity > 0 && hb.available > 0);
        assert_eq!((hb.chunk_count, hb.used, hb.read_only), (0, 0, false));
        let first_full = reports().into_iter().find(|r| r.full);
        assert!(first_full.is_some_and(|r| r.node == a.id && r.chunks.is_empty()));

        // A stored chunk shows up in an incremental report, then in the
        // heartbeat's counts.
        let buf = data(2_000, 7);
        let id = ChunkId::of(&buf);
        let claims = put_claims(id, 2_000, vec![a.pipeline_entry()]);
        assert_eq!(
            put(&presign::url(&a.url, &ring, &claims), buf)
                .await
                .status(),
            200
        );
        let stored = ChunkRef { id, size: 2_000 };
        wait_until("incremental report", || {
            reports()
                .iter()
                .any(|r| !r.full && r.chunks == vec![stored])
        })
        .await;
        wait_until("heartbeat counting the chunk", || {
            heartbeats()
                .last()
                .is_some_and(|h| h.chunk_count == 1 && h.used == 2_000)
        })
        .await;

        // Asked for one, the node sends a full report again.
        fake.ask_for_report.store(true, Ordering::SeqCst);
        wait_until("full report on request", || {
            reports().iter().any(|r| r.full && r.chunks == vec![stored])
        })
        .await;

        stop(shutdown, vec![a]).await;
        assert!(matches!(nn.await, Ok(Ok(()))));
    })
    .await;
}

/// Sends a raw HTTP/1.1 PUT: `declared` as Content-Length (or chunked
/// encoding when None), then `body`, then closes the sending side.
async fn raw_put(url: &str, declared: Option<usize>, body: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = url.strip_prefix("http://").unwrap_or(url);
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    let mut conn = tokio::net::TcpStream::connect(host)
        .await
        .unwrap_or_else(|e| panic!("connect: {e}"));
    let framing = match declared {
        Some(n) => format!("content-length: {n}"),
        None => "transfer-encoding: chunked".to_string(),
    };
    let head =
        format!("PUT /{path} HTTP/1.1\r\nhost: {host}\r\n{framing}\r\nconnection: close\r\n\r\n");
    let _ = conn.write_all(head.as_bytes()).await;
    if declared.is_some() {
        let _ = conn.write_all(body).await;
    } else {
        let _ = conn
            .write_all(format!("{:x}\r\n", body.len()).as_bytes())
            .await;
        let _ = conn.write_all(body).await;
        let _ = conn.write_all(b"\r\n0\r\n\r\n").await;
    }
    let _ = conn.shutdown().await;
    let mut answer = Vec::new();
    let _ = conn.read_to_end(&mut answer).await;
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_or_unsized_bodies_store_nothing() {
    in_time(async {
        let ring = Keyring::generate();
        let shutdown = CancellationToken::new();
        let a = start(&ring, &shutdown).await;
        let b = start(&ring, &shutdown).await;
        let buf = data(200_000, 8);
        let id = ChunkId::of(&buf);
        let claims = put_claims(id, 200_000, vec![a.pipeline_entry(), b.pipeline_entry()]);
        let url = presign::url(&a.url, &ring, &claims);

        // The client declares the signed size, sends half and hangs up.
        let answer = raw_put(&url, Some(buf.len()), &buf[..100_000]).await;
        assert!(
            answer.is_empty() || answer.starts_with("HTTP/1.1 400"),
            "{answer}"
        );
        // Without a Content-Length the size cannot be checked up front.
        let answer = raw_put(&url, None, &buf).await;
        assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
        assert!(answer.contains("AccessDenied"), "{answer}");

        // Nothing half-written lingers on either node.
        wait_until("temp files cleaned", || {
            a.tmp_is_empty() && b.tmp_is_empty()
        })
        .await;
        assert!(!a.holds(&id) && !b.holds(&id));

        // The whole body still goes through afterwards.
        let resp = put(&url, buf).await;
        assert_eq!(resp.status(), 200);
        assert!(a.holds(&id) && b.holds(&id));
        stop(shutdown, vec![a, b]).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_past_the_budget_wait_their_turn_then_get_503_with_retry_after() {
    in_time(async {
        let ring = Keyring::generate();
        let shutdown = CancellationToken::new();
        // Room for exactly one read window.
        let limits = blob_server::limits::Limits {
            max_connections: 16,
            max_bytes_in_flight: crate::data::GET_WINDOW,
            budget_wait_ms: 200,
        };
        let a = start_cfg(&ring, &shutdown, closed_url().await, |c| c.limits = limits).await;
        let buf = data(6 << 20, 3);
        let id = ChunkId::of(&buf);
        let claims = put_claims(id, buf.len() as u64, vec![a.pipeline_entry()]);
        let resp = put(&presign::url(&a.url, &ring, &claims), buf.clone()).await;
        assert_eq!(resp.status(), 200);
        let url = presign::url(&a.url, &ring, &get_claims(id));

        // A read whose body is not consumed holds its window ...
        let first = reqwest::get(&url)
            .await
            .unwrap_or_else(|e| panic!("GET: {e}"));
        assert_eq!(first.status(), 200);
        // ... so the next one waits, then is told to come back.
        let started = std::time::Instant::now();
        let second = reqwest::get(&url)
            .await
            .unwrap_or_else(|e| panic!("GET: {e}"));
        assert_eq!(second.status(), 503);
        assert!(started.elapsed() >= Duration::from_millis(200));
        assert_eq!(
            second
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok()),
            Some("1")
        );
        assert_eq!(error_code(second).await, "SlowDown");

        // Once the first reader goes away, reads go through again.
        drop(first);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let r = reqwest::get(&url)
                .await
                .unwrap_or_else(|e| panic!("GET: {e}"));
            if r.status() == 200 {
                let body = r.bytes().await.unwrap_or_else(|e| panic!("body: {e}"));
                assert!(body[..] == buf[..], "the chunk reads back whole");
                break;
            }
            assert_eq!(r.status(), 503);
            assert!(
                std::time::Instant::now() < deadline,
                "the window never came back"
            );
        }
        stop(shutdown, vec![a]).await;
    })
    .await;
}
