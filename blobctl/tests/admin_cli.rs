//! `blobctl admin` against a stand-in namenode that serves the admin
//! routes: exit codes of `admin fsck` (1 only when a chunk is missing),
//! signed admin calls, and a bad node id refused before anything is sent.

use std::collections::HashMap;
use std::ffi::OsString;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use blob_client::{Client, ClientConfig, FsckFile, FsckQuery, FsckReport, NodeId, NodeStatus};
use blob_common::auth;
use blob_common::proto::namenode::{ClusterStatus, Decommission};
use blob_common::ChunkId;

const AK: &str = "admin-key";
const SK: &str = "admin-secret";

/// Routes the stand-in was asked for, as `METHOD path?query`.
type Calls = Arc<Mutex<Vec<String>>>;

fn node(id: NodeId, state: &str) -> NodeStatus {
    NodeStatus {
        node: id,
        url: "http://127.0.0.1:1".into(),
        state: state.into(),
        heartbeat_age_ms: Some(1500),
        capacity: 1 << 30,
        used: 1 << 20,
        available: 1 << 29,
        chunk_count: 3,
        load: 0,
        read_only: false,
    }
}

/// The report for a bucket: `missing` has a missing chunk, `under` an
/// under-replicated one, anything else is healthy.
fn report(bucket: Option<&str>) -> FsckReport {
    let file = |missing: bool| FsckFile {
        bucket: bucket.unwrap_or_default().into(),
        path: "f".into(),
        size: 10,
        replication: 3,
        missing: if missing {
            vec![ChunkId::of(b"m")]
        } else {
            vec![]
        },
        under_replicated: if missing {
            vec![]
        } else {
            vec![ChunkId::of(b"u")]
        },
        corrupt: vec![],
    };
    let mut r = FsckReport {
        files: 1,
        chunks: 1,
        ..FsckReport::default()
    };
    match bucket {
        Some("missing") => {
            r.missing_files = 1;
            r.problems.push(file(true));
        }
        Some("under") => {
            r.under_replicated_files = 1;
            r.problems.push(file(false));
        }
        _ => {}
    }
    r
}

fn handle(
    calls: &Calls,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &Bytes,
) -> Response {
    let h = |n: &str| headers.get(n).and_then(|v| v.to_str().ok());
    let signed = auth::parse_authorization(h("authorization")).and_then(|cred| {
        let parts = auth::RequestParts {
            method: method.as_str(),
            path: uri.path(),
            query: uri.query().unwrap_or(""),
            date: h(auth::DATE_HEADER),
            content_sha256: h(auth::CONTENT_SHA_HEADER),
            body,
        };
        auth::verify(&cred, SK.as_bytes(), &parts, blob_common::now_secs()).map(|_| cred)
    });
    match signed {
        Ok(cred) if cred.access_key == AK => {}
        _ => return (StatusCode::FORBIDDEN, "bad signature").into_response(),
    }
    calls
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(format!("{method} {uri}"));
    let q: HashMap<String, String> = reqwest::Url::parse(&format!("http://x{uri}"))
        .map(|u| u.query_pairs().into_owned().collect())
        .unwrap_or_default();
    match (method.as_str(), uri.path()) {
        ("GET", "/v1/admin/fsck") => {
            Json(report(q.get("bucket").map(String::as_str))).into_response()
        }
        ("GET", "/v1/admin/nodes") => Json(blob_client::ListNodes {
            nodes: vec![node(NodeId([7; 8]), "live")],
        })
        .into_response(),
        ("GET", "/v1/admin/status") => Json(ClusterStatus {
            nodes: vec![node(NodeId([7; 8]), "live")],
            chunks: 3,
            ..ClusterStatus::default()
        })
        .into_response(),
        ("POST", "/v1/admin/decommission") => match serde_json::from_slice::<Decommission>(body) {
            Ok(d) => Json(node(d.node, "decommissioning")).into_response(),
            Err(e) => (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
        },
        _ => (StatusCode::NOT_FOUND, "no such route").into_response(),
    }
}

/// Starts the stand-in on its own runtime (the CLI builds its own) and
/// returns its URL.
fn start(calls: Calls) -> String {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("{e}"));
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .unwrap_or_else(|e| panic!("bind: {e}"));
            let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
            let app = axum::Router::new().fallback(
                move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
                    let calls = calls.clone();
                    async move { handle(&calls, &method, &uri, &headers, &body) }
                },
            );
            let _ = tx.send(format!("http://{addr}"));
            let _ = axum::serve(listener, app).await;
        });
    });
    rx.recv()
        .unwrap_or_else(|e| panic!("stand-in did not start: {e}"))
}

fn blobctl(endpoint: &str, args: &[&str]) -> ExitCode {
    let mut argv: Vec<OsString> = ["blobctl", "-q", "--endpoint", endpoint]
        .iter()
        .map(OsString::from)
        .collect();
    argv.extend(["--access-key", AK, "--secret-key", SK].map(OsString::from));
    argv.extend(args.iter().map(OsString::from));
    blobctl::main_with_args(argv)
}

#[test]
fn fsck_exits_1_only_when_a_chunk_is_missing() {
    let calls = Calls::default();
    let endpoint = start(calls.clone());
    assert_eq!(blobctl(&endpoint, &["admin", "fsck"]), ExitCode::SUCCESS);
    assert_eq!(
        blobctl(&endpoint, &["admin", "fsck", "under/dir/"]),
        ExitCode::SUCCESS
    );
    assert_eq!(
        blobctl(&endpoint, &["admin", "fsck", "missing"]),
        ExitCode::from(1)
    );
    assert_eq!(
        blobctl(&endpoint, &["admin", "fsck", "missing", "--json"]),
        ExitCode::from(1)
    );
    assert_eq!(blobctl(&endpoint, &["admin", "status"]), ExitCode::SUCCESS);
    assert_eq!(
        blobctl(&endpoint, &["admin", "decommission", "0707070707070707"]),
        ExitCode::SUCCESS
    );
    // A bad node id is refused before anything is sent.
    assert_eq!(
        blobctl(&endpoint, &["admin", "decommission", "node-7"]),
        ExitCode::from(2)
    );
    let calls = calls.lock().unwrap_or_else(|e| e.into_inner()).clone();
    assert_eq!(
        calls,
        [
            "GET /v1/admin/fsck",
            "GET /v1/admin/fsck?bucket=under&prefix=dir%2F",
            "GET /v1/admin/fsck?bucket=missing",
            "GET /v1/admin/fsck?bucket=missing",
            "GET /v1/admin/status",
            "POST /v1/admin/decommission",
        ]
    );
}

#[tokio::test]
async fn library_methods_round_trip() {
    let endpoint = start(Calls::default());
    let client = Client::new(ClientConfig::new(endpoint, AK, SK)).unwrap_or_else(|e| panic!("{e}"));
    let r = client
        .fsck(&FsckQuery {
            bucket: Some("missing".into()),
            prefix: None,
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(r.missing_files, 1);
    assert!(!r.healthy());
    assert!(client
        .fsck(&FsckQuery {
            bucket: Some("Bad Bucket!".into()),
            prefix: None,
        })
        .await
        .is_err());
    let st = client
        .cluster_status()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(st.nodes.len(), 1);
    let nodes = client.list_nodes().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(nodes.nodes, st.nodes);
    let n = client
        .decommission(NodeId([9; 8]))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        (n.node, n.state.as_str()),
        (NodeId([9; 8]), "decommissioning")
    );
}
