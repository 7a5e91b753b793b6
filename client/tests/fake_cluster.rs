//! The client against a small in-process stand-in for the namenode and
//! datanodes (one HTTP server): uploads, resume, retargeting around failed
//! pipeline nodes, verified downloads with a corrupt replica, range reads.
//! The stand-in checks every control call's signature with
//! `blob_common::auth::verify`, so signing is exercised too. The
//! whole-cluster tests with the real services live in `tests/`.

// The stand-in hands ready responses around as errors; their size does not
// matter here.
#![allow(clippy::result_large_err)]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use blob_client::{Client, ClientConfig, DownloadOptions, Error, UploadOptions};
use blob_common::auth;
use blob_common::error::ErrorBody;
use blob_common::presign::{Keyring, Receipt};
use blob_common::proto::datanode::{PipelineFailure, PutChunkResponse};
use blob_common::proto::namenode::{
    BadReplica, ChunkBatch, ChunkLocation, ChunkPlan, ChunkRef, CommitUpload, CreateUpload,
    FileInfo, FileLocations, PutTarget, ReplicaUrl, Retarget, UploadPlan,
};
use blob_common::{ChunkId, NodeId, UploadId};

const AK: &str = "test-key";
const SK: &str = "test-secret";
const CHUNK: u64 = 64 * 1024;

struct Session {
    bucket: String,
    path: String,
    replication: u8,
    chunk_size: u64,
}

#[derive(Default)]
struct State {
    base: String,
    nodes: Vec<NodeId>,
    sessions: HashMap<UploadId, Session>,
    /// (bucket, chunk) → nodes with a receipt.
    replicas: HashMap<(String, ChunkId), Vec<NodeId>>,
    files: HashMap<(String, String), FileInfo>,
    /// node → chunk → bytes.
    disks: HashMap<NodeId, HashMap<ChunkId, Bytes>>,
    down: HashSet<NodeId>,
    corrupt: HashSet<NodeId>,
    /// When set, datanode PUTs beyond this many fail (503) and retargets
    /// are refused (400).
    put_budget: Option<usize>,
    puts: usize,
    bad_reports: Vec<BadReplica>,
    request_ids: HashSet<String>,
}

type Shared = Arc<Mutex<State>>;

struct Fake {
    state: Shared,
    client: Client,
    _server: tokio::task::JoinHandle<()>,
}

impl Fake {
    async fn start(nodes: usize) -> Fake {
        let listener = match tokio::net::TcpListener::bind("127.0.0.1:0").await {
            Ok(l) => l,
            Err(e) => panic!("bind: {e}"),
        };
        let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
        let state: Shared = Arc::new(Mutex::new(State {
            base: format!("http://{addr}"),
            nodes: (0..nodes).map(|i| NodeId([i as u8 + 1; 8])).collect(),
            ..State::default()
        }));
        let s = state.clone();
        let app = axum::Router::new().fallback(
            move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
                let s = s.clone();
                async move { handle(s, method, uri, headers, body) }
            },
        );
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        let client = Client::new(ClientConfig::new(format!("http://{addr}"), AK, SK))
            .unwrap_or_else(|e| panic!("{e}"));
        Fake {
            state,
            client,
            _server: server,
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        f(&mut self.state.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

fn keyring() -> Keyring {
    Keyring::single("k1", b"cluster-secret".to_vec())
}

fn err(status: u16, code: &str, message: &str) -> Response {
    let body = ErrorBody {
        code: code.into(),
        message: message.into(),
        request_id: String::new(),
    };
    (
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        Json(body),
    )
        .into_response()
}

fn json<T: serde::Serialize>(v: &T) -> Response {
    Json(v).into_response()
}

fn parse<T: serde::de::DeserializeOwned>(body: &Bytes) -> Result<T, Response> {
    serde_json::from_slice(body).map_err(|e| err(400, "BadRequest", &e.to_string()))
}

fn query(uri: &Uri) -> HashMap<String, String> {
    reqwest::Url::parse(&format!("http://x{uri}"))
        .map(|u| u.query_pairs().into_owned().collect())
        .unwrap_or_default()
}

fn handle(s: Shared, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let mut st = s.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(id) = headers.get("x-request-id").and_then(|v| v.to_str().ok()) {
        st.request_ids.insert(id.to_string());
    }
    let segs: Vec<String> = uri
        .path()
        .trim_start_matches('/')
        .split('/')
        .map(String::from)
        .collect();
    let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
    if segs.first() == Some(&"dn") {
        return datanode(&mut st, &method, &segs, &uri, &headers, body);
    }
    // Control path: check the signature like the namenode does.
    let h = |n: &str| headers.get(n).and_then(|v| v.to_str().ok());
    let cred = match auth::parse_authorization(h("authorization")) {
        Ok(c) => c,
        Err(e) => return err(401, "Unauthorized", &e.to_string()),
    };
    let parts = auth::RequestParts {
        method: method.as_str(),
        path: uri.path(),
        query: uri.query().unwrap_or(""),
        date: h(auth::DATE_HEADER),
        content_sha256: h(auth::CONTENT_SHA_HEADER),
        body: &body,
    };
    if cred.access_key != AK {
        return err(403, "AccessDenied", "unknown key");
    }
    if let Err(e) = auth::verify(&cred, SK.as_bytes(), &parts, blob_common::now_secs()) {
        return err(403, "AccessDenied", &e.to_string());
    }
    let r = match (method.as_str(), &segs[..]) {
        ("PUT", ["v1", "buckets", _]) => {
            return json(&serde_json::json!({"name": segs[2], "created_ms": 1}))
        }
        ("POST", ["v1", "uploads"]) => create_upload(&mut st, &body),
        ("POST", ["v1", "uploads", id, "chunks"]) => batch(&mut st, id, &body),
        ("POST", ["v1", "uploads", id, "retarget"]) => retarget(&mut st, id, &body),
        ("POST", ["v1", "uploads", id, "commit"]) => commit(&mut st, id, &body),
        ("GET", ["v1", "file", "locations"]) => locations(&st, &query(&uri)),
        ("GET", ["v1", "file"]) => {
            let q = query(&uri);
            let key = (q["bucket"].clone(), q["path"].clone());
            match st.files.get(&key) {
                Some(f) => Ok(json(f)),
                None => Err(err(404, "NoSuchFile", "no such file")),
            }
        }
        ("POST", ["v1", "chunks", "bad"]) => parse::<BadReplica>(&body).map(|b| {
            st.bad_reports.push(b);
            StatusCode::NO_CONTENT.into_response()
        }),
        _ => Err(err(404, "NoSuchRoute", uri.path())),
    };
    r.unwrap_or_else(|e| e)
}

fn upload_id(id: &str) -> Result<UploadId, Response> {
    id.parse().map_err(|_| err(400, "BadRequest", "upload id"))
}

fn put_target(st: &State, chunk: &ChunkRef, nodes: &[NodeId]) -> PutTarget {
    let pipeline: Vec<String> = nodes.iter().map(|n| n.to_string()).collect();
    PutTarget {
        url: format!(
            "{}/dn/{}/{}?size={}&p={}&s=secret-signature",
            st.base,
            nodes[0],
            chunk.id,
            chunk.size,
            pipeline.join(",")
        ),
        targets: nodes.to_vec(),
    }
}

fn plan(st: &State, id: UploadId, chunks: &[ChunkRef]) -> Result<UploadPlan, Response> {
    let sess = st
        .sessions
        .get(&id)
        .ok_or_else(|| err(404, "NoSuchUpload", ""))?;
    let plans = chunks
        .iter()
        .map(|c| {
            let have = st
                .replicas
                .get(&(sess.bucket.clone(), c.id))
                .map_or(0, Vec::len);
            let put = (have < usize::from(sess.replication)).then(|| {
                let nodes: Vec<NodeId> = st.nodes[..usize::from(sess.replication)].to_vec();
                put_target(st, c, &nodes)
            });
            ChunkPlan { id: c.id, put }
        })
        .collect();
    Ok(UploadPlan {
        upload: id,
        replication: sess.replication,
        min_replicas: sess.replication,
        chunks: plans,
    })
}

fn record(st: &mut State, id: UploadId, receipts: &[Receipt]) -> Result<(), Response> {
    let bucket = st
        .sessions
        .get(&id)
        .ok_or_else(|| err(404, "NoSuchUpload", ""))?
        .bucket
        .clone();
    for r in receipts {
        if r.verify(&keyring()).is_err() {
            return Err(err(400, "BadReceipt", "receipt signature"));
        }
        let set = st.replicas.entry((bucket.clone(), r.chunk)).or_default();
        if !set.contains(&r.node) {
            set.push(r.node);
        }
    }
    Ok(())
}

fn create_upload(st: &mut State, body: &Bytes) -> Result<Response, Response> {
    let req: CreateUpload = parse(body)?;
    let id = UploadId::random();
    st.sessions.insert(
        id,
        Session {
            bucket: req.bucket,
            path: req.path,
            replication: req.replication.unwrap_or(3),
            chunk_size: req.chunk_size,
        },
    );
    plan(st, id, &req.chunks).map(|p| json(&p))
}

fn batch(st: &mut State, id: &str, body: &Bytes) -> Result<Response, Response> {
    let id = upload_id(id)?;
    let req: ChunkBatch = parse(body)?;
    record(st, id, &req.receipts)?;
    plan(st, id, &req.chunks).map(|p| json(&p))
}

fn retarget(st: &mut State, id: &str, body: &Bytes) -> Result<Response, Response> {
    let id = upload_id(id)?;
    let req: Retarget = parse(body)?;
    if st.put_budget.is_some_and(|b| st.puts >= b) {
        return Err(err(400, "NoTargets", "refusing retargets"));
    }
    let sess = st
        .sessions
        .get(&id)
        .ok_or_else(|| err(404, "NoSuchUpload", ""))?;
    let need = usize::from(sess.replication).saturating_sub(req.have.len());
    let nodes: Vec<NodeId> = st
        .nodes
        .iter()
        .filter(|n| !req.have.contains(n) && !req.exclude.contains(n))
        .take(need)
        .copied()
        .collect();
    if nodes.is_empty() {
        return Err(err(503, "NoTargets", "no node left"));
    }
    Ok(json(&put_target(st, &req.chunk, &nodes)))
}

fn commit(st: &mut State, id: &str, body: &Bytes) -> Result<Response, Response> {
    let id = upload_id(id)?;
    let req: CommitUpload = parse(body)?;
    record(st, id, &req.receipts)?;
    let sess = st
        .sessions
        .get(&id)
        .ok_or_else(|| err(404, "NoSuchUpload", ""))?;
    for c in &req.chunks {
        let have = st
            .replicas
            .get(&(sess.bucket.clone(), c.id))
            .map_or(0, Vec::len);
        if have < usize::from(sess.replication) {
            return Err(err(409, "MissingReplicas", &c.id.to_string()));
        }
    }
    let file = FileInfo {
        bucket: sess.bucket.clone(),
        path: sess.path.clone(),
        size: req.chunks.iter().map(|c| c.size).sum(),
        created_ms: blob_common::now_ms(),
        version: id,
        replication: sess.replication,
        chunk_size: sess.chunk_size,
        chunks: req.chunks,
        meta: req.meta,
    };
    st.files
        .insert((file.bucket.clone(), file.path.clone()), file.clone());
    st.sessions.remove(&id);
    Ok(json(&file))
}

fn locations(st: &State, q: &HashMap<String, String>) -> Result<Response, Response> {
    let key = (q["bucket"].clone(), q["path"].clone());
    let file = st
        .files
        .get(&key)
        .ok_or_else(|| err(404, "NoSuchFile", "no such file"))?;
    let mut offset = 0;
    let chunks = file
        .chunks
        .iter()
        .map(|c| {
            let replicas = st
                .replicas
                .get(&(file.bucket.clone(), c.id))
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .map(|node| ReplicaUrl {
                    node,
                    url: format!("{}/dn/{node}/{}?s=secret-signature", st.base, c.id),
                    edge: None,
                })
                .collect();
            let loc = ChunkLocation {
                id: c.id,
                size: c.size,
                offset,
                replicas,
            };
            offset += c.size;
            loc
        })
        .collect();
    Ok(json(&FileLocations {
        file: file.clone(),
        chunks,
        next: None,
    }))
}

fn datanode(
    st: &mut State,
    method: &Method,
    segs: &[&str],
    uri: &Uri,
    headers: &HeaderMap,
    body: Bytes,
) -> Response {
    let (Some(node), Some(chunk)) = (
        segs.get(1).and_then(|s| s.parse::<NodeId>().ok()),
        segs.get(2).and_then(|s| s.parse::<ChunkId>().ok()),
    ) else {
        return err(400, "BadRequest", "bad datanode path");
    };
    if st.down.contains(&node) {
        return err(503, "Unavailable", "node down");
    }
    if method == Method::PUT {
        if st.put_budget.is_some_and(|b| st.puts >= b) {
            return err(503, "Unavailable", "out of budget");
        }
        st.puts += 1;
        if ChunkId::of(&body) != chunk {
            return err(400, "BadDigest", "sha mismatch");
        }
        let q = query(uri);
        let pipeline: Vec<NodeId> = q["p"].split(',').filter_map(|n| n.parse().ok()).collect();
        let mut receipts = Vec::new();
        let mut failed = Vec::new();
        let mut broken = false;
        for n in pipeline {
            if broken || st.down.contains(&n) {
                broken = true;
                failed.push(PipelineFailure {
                    node: n,
                    error: "connection refused".into(),
                });
                continue;
            }
            st.disks.entry(n).or_default().insert(chunk, body.clone());
            receipts.push(Receipt::issue(
                &keyring(),
                n,
                chunk,
                body.len() as u64,
                None,
                blob_common::now_secs(),
            ));
        }
        return json(&PutChunkResponse {
            chunk,
            receipts,
            failed,
        });
    }
    let Some(mut data) = st.disks.get(&node).and_then(|d| d.get(&chunk)).cloned() else {
        return err(404, "NoSuchChunk", "");
    };
    if st.corrupt.contains(&node) {
        let mut v = data.to_vec();
        v[0] ^= 0xff;
        data = Bytes::from(v);
    }
    if let Some(range) = headers.get("range").and_then(|v| v.to_str().ok()) {
        let r = range.trim_start_matches("bytes=");
        let (a, b) = r.split_once('-').unwrap_or(("0", "0"));
        let (a, b): (usize, usize) = (a.parse().unwrap_or(0), b.parse().unwrap_or(0));
        return (StatusCode::PARTIAL_CONTENT, data.slice(a..=b)).into_response();
    }
    data.into_response()
}

fn content(len: usize, seed: u8) -> Vec<u8> {
    let mut x = u32::from(seed) * 2_654_435_761 + 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

fn opts(replication: u8) -> UploadOptions {
    UploadOptions {
        chunk_size: CHUNK,
        parallel: 4,
        replication: Some(replication),
        ..UploadOptions::default()
    }
}

async fn download(client: &Client, bucket: &str, path: &str) -> Vec<u8> {
    let mut out = Vec::new();
    match client
        .download(bucket, path, &mut out, &DownloadOptions::default())
        .await
    {
        Ok(_) => out,
        Err(e) => panic!("download: {e:?}"),
    }
}

async fn within<F: std::future::Future>(f: F) -> F::Output {
    match tokio::time::timeout(Duration::from_secs(60), f).await {
        Ok(v) => v,
        Err(_) => panic!("test timed out"),
    }
}

#[tokio::test]
async fn upload_then_download_and_dedup_on_reupload() {
    within(async {
        let fake = Fake::start(3).await;
        let data = content(3 * CHUNK as usize + 1234, 1);
        let done = Arc::new(Mutex::new(0u64));
        let d = done.clone();
        let mut o = opts(3);
        o.meta = BTreeMap::from([("content-type".into(), "video/mp4".into())]);
        o.progress = Some(Arc::new(move |n| {
            *d.lock().unwrap_or_else(|e| e.into_inner()) = n
        }));
        let out = fake
            .client
            .upload(&data[..], "bkt", "dir/a.bin", &o)
            .await
            .unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(out.chunks_sent, 4);
        assert_eq!(out.chunks_skipped, 0);
        assert_eq!(out.bytes_sent, data.len() as u64);
        assert_eq!(out.file.size, data.len() as u64);
        assert_eq!(out.file.meta["content-type"], "video/mp4");
        assert_eq!(
            *done.lock().unwrap_or_else(|e| e.into_inner()),
            data.len() as u64
        );
        assert_eq!(download(&fake.client, "bkt", "dir/a.bin").await, data);

        // Same bytes again, under another name: nothing is sent.
        let again = fake
            .client
            .upload(&data[..], "bkt", "copy.bin", &opts(3))
            .await
            .unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!((again.chunks_sent, again.chunks_skipped), (0, 4));
        assert_eq!(fake.with(|s| s.puts), 4);
        // One request id per operation: few ids for many calls.
        assert!(fake.with(|s| s.request_ids.len()) <= 4);
    })
    .await
}

#[tokio::test]
async fn empty_input_and_repeated_chunks() {
    within(async {
        let fake = Fake::start(3).await;
        let out = fake
            .client
            .upload(&b""[..], "bkt", "empty", &opts(2))
            .await
            .unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(out.file.size, 0);
        assert!(out.file.chunks.is_empty());
        assert!(download(&fake.client, "bkt", "empty").await.is_empty());

        // Four identical chunks are sent once.
        let data = vec![7u8; 4 * CHUNK as usize];
        let out = fake
            .client
            .upload(&data[..], "bkt", "zeros", &opts(2))
            .await
            .unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!((out.chunks_sent, out.chunks_skipped), (1, 3));
        assert_eq!(out.file.chunks.len(), 4);
        assert_eq!(download(&fake.client, "bkt", "zeros").await, data);
    })
    .await
}

#[tokio::test]
async fn failed_pipeline_node_is_retargeted() {
    within(async {
        let fake = Fake::start(5).await;
        let bad = fake.with(|s| {
            let n = s.nodes[1];
            s.down.insert(n);
            n
        });
        let data = content(2 * CHUNK as usize, 2);
        let out = fake
            .client
            .upload(&data[..], "bkt", "f", &opts(3))
            .await
            .unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(out.chunks_sent, 2);
        fake.with(|s| {
            for c in &out.file.chunks {
                let nodes = &s.replicas[&("bkt".to_string(), c.id)];
                assert_eq!(nodes.len(), 3, "{nodes:?}");
                assert!(!nodes.contains(&bad));
            }
        });
        assert_eq!(download(&fake.client, "bkt", "f").await, data);
    })
    .await
}

#[tokio::test]
async fn unreachable_primary_is_excluded() {
    within(async {
        let fake = Fake::start(4).await;
        fake.with(|s| {
            let n = s.nodes[0];
            s.down.insert(n);
        });
        let data = content(CHUNK as usize + 10, 3);
        let out = fake
            .client
            .upload(&data[..], "bkt", "f", &opts(2))
            .await
            .unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(out.file.size, data.len() as u64);
        fake.with(|s| s.down.clear());
        assert_eq!(download(&fake.client, "bkt", "f").await, data);
    })
    .await
}

#[tokio::test]
async fn interrupted_upload_resumes_sending_only_what_is_missing() {
    within(async {
        let fake = Fake::start(3).await;
        let data = content(6 * CHUNK as usize, 4);
        fake.with(|s| s.put_budget = Some(3));
        let e = fake
            .client
            .upload(&data[..], "bkt", "big", &opts(1))
            .await
            .err();
        assert!(e.is_some(), "the first run must fail");
        assert_eq!(fake.with(|s| s.puts), 3);
        // Not aborted: the session is still there for the namenode to expire.
        assert_eq!(fake.with(|s| s.sessions.len()), 1);

        fake.with(|s| s.put_budget = None);
        let out = fake
            .client
            .upload(&data[..], "bkt", "big", &opts(1))
            .await
            .unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!((out.chunks_sent, out.chunks_skipped), (3, 3));
        assert_eq!(fake.with(|s| s.puts), 6);
        assert_eq!(download(&fake.client, "bkt", "big").await, data);
    })
    .await
}

#[tokio::test]
async fn corrupt_replica_is_reported_and_skipped() {
    within(async {
        let fake = Fake::start(3).await;
        let data = content(2 * CHUNK as usize + 5, 5);
        fake.client
            .upload(&data[..], "bkt", "f", &opts(3))
            .await
            .unwrap_or_else(|e| panic!("{e:?}"));
        let bad = fake.with(|s| {
            let n = s.nodes[0];
            s.corrupt.insert(n);
            n
        });
        assert_eq!(download(&fake.client, "bkt", "f").await, data);
        let reports = fake.with(|s| s.bad_reports.clone());
        assert_eq!(reports.len(), 3);
        assert!(reports.iter().all(|r| r.node == bad));

        // Every replica corrupt: an integrity error, never bad bytes.
        fake.with(|s| s.corrupt = s.nodes.iter().copied().collect());
        let mut out = Vec::new();
        let e = fake
            .client
            .download("bkt", "f", &mut out, &DownloadOptions::default())
            .await
            .err();
        match e {
            Some(Error::Exhausted { last, .. }) => {
                assert!(matches!(*last, Error::Integrity { .. }), "{last:?}")
            }
            other => panic!("{other:?}"),
        }
    })
    .await
}

#[tokio::test]
async fn range_reads_touch_only_what_they_need() {
    within(async {
        let fake = Fake::start(2).await;
        let data = content(3 * CHUNK as usize + 100, 6);
        fake.client
            .upload(&data[..], "bkt", "r", &opts(2))
            .await
            .unwrap_or_else(|e| panic!("{e:?}"));
        let c = CHUNK;
        for (start, len) in [
            (0, 10),
            (c - 5, 10),
            (c, c),
            (5, 2 * c + 7),
            (3 * c + 90, 50),
            (0, 10 * c),
        ] {
            let got = fake
                .client
                .read_range("bkt", "r", start, len)
                .await
                .unwrap_or_else(|e| panic!("{start}+{len}: {e:?}"));
            let end = (start + len).min(data.len() as u64) as usize;
            assert_eq!(&got[..], &data[start as usize..end], "{start}+{len}");
        }
        let size = data.len() as u64;
        assert!(fake
            .client
            .read_range("bkt", "r", size, 10)
            .await
            .is_ok_and(|b| b.is_empty()));
        assert!(matches!(
            fake.client.read_range("bkt", "r", size + 1, 1).await,
            Err(Error::RangeNotSatisfiable { .. })
        ));
    })
    .await
}

#[tokio::test]
async fn errors_are_typed_and_names_checked_locally() {
    within(async {
        let fake = Fake::start(1).await;
        match fake.client.stat("bkt", "nope").await {
            Err(e) => {
                assert!(e.is_not_found(), "{e:?}");
                assert_eq!(e.code(), Some("NoSuchFile"));
            }
            Ok(f) => panic!("{f:?}"),
        }
        let before = fake.with(|s| s.request_ids.len());
        assert!(matches!(
            fake.client.stat("BAD_bucket", "x").await,
            Err(Error::InvalidName(_))
        ));
        assert!(matches!(
            fake.client.upload(&b"x"[..], "bkt", "/abs", &opts(1)).await,
            Err(Error::InvalidName(_))
        ));
        assert_eq!(fake.with(|s| s.request_ids.len()), before, "nothing sent");

        let wrong = Client::new(ClientConfig::new(
            fake.client.config().endpoint.clone(),
            AK,
            "wrong-secret",
        ))
        .unwrap_or_else(|e| panic!("{e}"));
        match wrong.stat("bkt", "x").await {
            Err(Error::Api { status: 403, .. }) => {}
            other => panic!("{other:?}"),
        }
    })
    .await
}

#[tokio::test]
async fn download_to_path_leaves_nothing_half_written() {
    within(async {
        let fake = Fake::start(2).await;
        let data = content(CHUNK as usize * 2, 7);
        fake.client
            .upload(&data[..], "bkt", "f", &opts(2))
            .await
            .unwrap_or_else(|e| panic!("{e:?}"));
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let dest = dir.path().join("out.bin");
        fake.client
            .download_to_path("bkt", "f", &dest, &DownloadOptions::default())
            .await
            .unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(std::fs::read(&dest).unwrap_or_default(), data);

        fake.with(|s| s.corrupt = s.nodes.iter().copied().collect());
        let dest2 = dir.path().join("bad.bin");
        assert!(fake
            .client
            .download_to_path("bkt", "f", &dest2, &DownloadOptions::default())
            .await
            .is_err());
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .map(|d| d.filter_map(|e| e.ok()).map(|e| e.file_name()).collect())
            .unwrap_or_default();
        assert_eq!(names, vec![std::ffi::OsString::from("out.bin")]);
    })
    .await
}

/// Runs `blobctl` in-process (on its own thread: it builds its own runtime).
async fn blobctl(endpoint: &str, args: &[&str]) -> std::process::ExitCode {
    let mut argv: Vec<std::ffi::OsString> = [
        "blobctl",
        "--endpoint",
        endpoint,
        "--access-key",
        AK,
        "--secret-key",
        SK,
        "-q",
    ]
    .iter()
    .map(Into::into)
    .collect();
    argv.extend(args.iter().map(Into::into));
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let _ = tx.send(blobctl::main_with_args(argv));
    });
    rx.await.unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test]
async fn blobctl_uploads_downloads_and_reports_not_found() {
    within(async {
        let fake = Fake::start(2).await;
        let endpoint = fake.client.config().endpoint.clone();
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let src = dir.path().join("clip.mp4");
        let data = content(CHUNK as usize * 2 + 3, 8);
        std::fs::write(&src, &data).unwrap_or_else(|e| panic!("{e}"));
        let src_s = src.to_string_lossy().to_string();
        let ok = std::process::ExitCode::SUCCESS;

        let code = blobctl(
            &endpoint,
            &[
                "upload",
                &src_s,
                "bkt/videos/",
                "--chunk-size",
                "64KiB",
                "--replication",
                "2",
            ],
        )
        .await;
        assert_eq!(code, ok);
        assert!(fake.with(|s| s
            .files
            .contains_key(&("bkt".into(), "videos/clip.mp4".into()))));

        let out = dir.path().join("out");
        std::fs::create_dir(&out).unwrap_or_else(|e| panic!("{e}"));
        let out_s = out.to_string_lossy().to_string();
        let code = blobctl(&endpoint, &["download", "bkt/videos/clip.mp4", &out_s]).await;
        assert_eq!(code, ok);
        assert_eq!(
            std::fs::read(out.join("clip.mp4")).unwrap_or_default(),
            data
        );

        let code = blobctl(&endpoint, &["stat", "bkt/missing"]).await;
        assert_eq!(code, std::process::ExitCode::from(1));
        let code = blobctl(&endpoint, &["mv", "bkt/a", "other/a"]).await;
        assert_eq!(code, std::process::ExitCode::from(2));
    })
    .await
}
