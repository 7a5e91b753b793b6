//! Calls against a small real HTTP server on 127.0.0.1 that verifies each
//! signature and answers as a script says, counting what arrives.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes as Body;
use axum::extract::{OriginalUri, State};
use axum::http::{HeaderMap, Method as AxMethod, StatusCode};
use axum::response::{IntoResponse, Response};
use blob_common::auth;
use blob_common::error::ErrorBody;

use super::*;

const SECRET: &[u8] = b"s3cr3t";

/// What the server does with the n-th request (0-based); past the end of
/// the script it answers the last entry.
#[derive(Clone)]
enum Answer {
    Ok(&'static str),
    Error(u16, &'static str, Option<&'static str>),
    Text(u16, &'static str),
}

#[derive(Default)]
struct Seen {
    count: AtomicUsize,
    request_ids: Mutex<Vec<String>>,
    uris: Mutex<Vec<String>>,
    bad_signatures: AtomicUsize,
}

struct Server {
    script: Vec<Answer>,
    seen: Seen,
}

async fn handler(
    State(s): State<Arc<Server>>,
    method: AxMethod,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let n = s.seen.count.fetch_add(1, Ordering::SeqCst);
    let h = |k: &str| headers.get(k).and_then(|v| v.to_str().ok());
    let verified = auth::parse_authorization(h("authorization")).and_then(|cred| {
        auth::verify(
            &cred,
            SECRET,
            &auth::RequestParts {
                method: method.as_str(),
                path: uri.path(),
                query: uri.query().unwrap_or(""),
                date: h(auth::DATE_HEADER),
                content_sha256: h(auth::CONTENT_SHA_HEADER),
                body: &body,
            },
            blob_common::now_secs(),
        )
    });
    if verified.is_err() {
        s.seen.bad_signatures.fetch_add(1, Ordering::SeqCst);
    }
    s.seen
        .request_ids
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(h(REQUEST_ID).unwrap_or_default().to_string());
    s.seen
        .uris
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(uri.to_string());
    let answer = s
        .script
        .get(n)
        .or(s.script.last())
        .cloned()
        .unwrap_or(Answer::Ok("{}"));
    match answer {
        Answer::Ok(json) => (StatusCode::OK, json.to_string()).into_response(),
        Answer::Error(status, code, retry_after) => {
            let body = ErrorBody {
                code: code.into(),
                message: format!("scripted {code}"),
                request_id: String::new(),
            };
            let mut resp = (
                StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                axum::Json(body),
            )
                .into_response();
            if let Some(v) = retry_after {
                resp.headers_mut()
                    .insert("retry-after", v.parse().expect("static header"));
            }
            resp
        }
        Answer::Text(status, text) => (
            StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            text.to_string(),
        )
            .into_response(),
    }
}

async fn serve(script: Vec<Answer>) -> (Arc<Server>, Namenode) {
    let server = Arc::new(Server {
        script,
        seen: Seen::default(),
    });
    let app = axum::Router::new()
        .fallback(handler)
        .with_state(server.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    let nn = Namenode::builder(&format!("http://{addr}"), Credentials::new("AK", SECRET))
        .retry(RetryPolicy {
            attempts: 3,
            base: Duration::from_millis(10),
            max: Duration::from_millis(200),
        })
        .build()
        .expect("handle");
    (server, nn)
}

fn count(s: &Server) -> usize {
    s.seen.count.load(Ordering::SeqCst)
}

#[tokio::test]
async fn calls_are_signed_over_path_query_and_body() {
    let (s, nn) = serve(vec![Answer::Ok(r#"{"n": 7}"#)]).await;
    #[derive(serde::Deserialize)]
    struct N {
        n: u32,
    }
    let got: N = nn
        .post(&["file", "locations"])
        .query(&[("bucket", "b"), ("path", "a dir/ü?x")])
        .body(&serde_json::json!({"k": [1, 2, 3]}))
        .request_id("op-1")
        .decode()
        .await
        .expect("call");
    assert_eq!(got.n, 7);
    assert_eq!(count(&s), 1);
    assert_eq!(s.seen.bad_signatures.load(Ordering::SeqCst), 0);
    let uris = s.seen.uris.lock().expect("lock").clone();
    assert_eq!(
        uris,
        ["/v1/file/locations?bucket=b&path=a+dir%2F%C3%BC%3Fx"]
    );
    assert_eq!(s.seen.request_ids.lock().expect("lock").clone(), ["op-1"]);
}

#[tokio::test]
async fn a_wrong_secret_is_caught_by_the_server_check() {
    // The check in the test server can fail: a handle with another secret
    // is counted as a bad signature.
    let (s, nn) = serve(vec![Answer::Ok("{}")]).await;
    let other = Namenode::new(
        nn.url(&[], &[]).as_str().trim_end_matches("v1"),
        Credentials::new("AK", "wrong"),
    )
    .expect("handle");
    other.get(&["buckets"]).ok().await.expect("call");
    assert_eq!(s.seen.bad_signatures.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn slow_down_is_retried_with_the_same_request_id_then_succeeds() {
    let (s, nn) = serve(vec![
        Answer::Error(503, "SlowDown", Some("0")),
        Answer::Error(503, "SlowDown", None),
        Answer::Ok("{}"),
    ])
    .await;
    nn.post(&["uploads"])
        .body(&serde_json::json!({}))
        .ok()
        .await
        .expect("third attempt succeeds");
    assert_eq!(count(&s), 3);
    assert_eq!(s.seen.bad_signatures.load(Ordering::SeqCst), 0);
    let ids = s.seen.request_ids.lock().expect("lock").clone();
    assert!(!ids[0].is_empty());
    assert!(ids.iter().all(|i| *i == ids[0]), "{ids:?}");
}

#[tokio::test]
async fn retries_stop_at_the_policy_and_return_the_last_error() {
    let (s, nn) = serve(vec![Answer::Error(503, "SlowDown", Some("0"))]).await;
    let err = nn.get(&["buckets"]).ok().await.expect_err("always refused");
    assert_eq!(count(&s), 3);
    assert_eq!(err.code(), Some("SlowDown"));
    assert_eq!(err.status(), Some(503));
}

#[tokio::test]
async fn final_answers_are_not_retried() {
    for (answer, code) in [
        (Answer::Error(503, "NotEnoughNodes", None), "NotEnoughNodes"),
        (Answer::Error(500, "InternalError", None), "InternalError"),
        (Answer::Error(404, "NoSuchBucket", None), "NoSuchBucket"),
        (Answer::Error(429, "SlowDown", Some("0")), "SlowDown"),
    ] {
        let (s, nn) = serve(vec![answer]).await;
        let err = nn
            .post(&["uploads", "x", "commit"])
            .ok()
            .await
            .expect_err("refused");
        assert_eq!(count(&s), 1, "{code}");
        assert_eq!(err.code(), Some(code));
    }
}

#[tokio::test]
async fn an_answer_without_error_body_keeps_its_text_and_status() {
    let (_s, nn) = serve(vec![Answer::Text(502, "bad gateway from a proxy")]).await;
    let err = nn.get(&["buckets"]).ok().await.expect_err("refused");
    match err {
        Error::Api {
            status,
            code,
            message,
            request_id,
        } => {
            assert_eq!(status, 502);
            assert_eq!(code, "ServerError");
            assert_eq!(message, "bad gateway from a proxy");
            assert!(!request_id.is_empty());
        }
        other => panic!("expected Api, got {other:?}"),
    }
}

#[tokio::test]
async fn bad_json_is_a_protocol_error() {
    let (_s, nn) = serve(vec![Answer::Ok("not json")]).await;
    let err = nn
        .get(&["buckets"])
        .decode::<serde_json::Value>()
        .await
        .expect_err("bad json");
    assert!(matches!(err, Error::Protocol { .. }), "{err:?}");
}

#[tokio::test]
async fn an_unreachable_namenode_is_retried_then_reported_as_such() {
    // A port nobody listens on: bind, note it, close.
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr")
    };
    let nn = Namenode::builder(&format!("http://{addr}"), Credentials::new("AK", SECRET))
        .retry(RetryPolicy {
            attempts: 3,
            base: Duration::from_millis(100),
            max: Duration::from_millis(100),
        })
        .build()
        .expect("handle");
    let started = Instant::now();
    let err = nn
        .post(&["uploads"])
        .ok()
        .await
        .expect_err("nobody listens");
    assert!(err.is_unreachable(), "{err:?}");
    // Two waits of 50–100 ms each happened between the three attempts.
    assert!(started.elapsed() >= Duration::from_millis(100));
    let once = RetryPolicy::NONE;
    let started = Instant::now();
    let err = nn
        .get(&["buckets"])
        .retry(once)
        .ok()
        .await
        .expect_err("nobody listens");
    assert!(err.is_unreachable());
    assert!(started.elapsed() < Duration::from_millis(100));
}

#[test]
fn addresses_that_are_not_http_urls_are_refused() {
    for bad in ["", "127.0.0.1:9870", "ftp://x", "mailto:a@b"] {
        let err = Namenode::new(bad, Credentials::new("AK", SECRET)).expect_err(bad);
        assert!(matches!(err, Error::InvalidUrl { .. }), "{bad}: {err:?}");
    }
    let nn = Namenode::new("http://h:1/prefix/", Credentials::new("AK", SECRET)).expect("ok");
    assert_eq!(
        nn.url(&["buckets", "a b"], &[("x", "1")]).as_str(),
        "http://h:1/prefix/v1/buckets/a%20b?x=1"
    );
    assert!(!format!("{:?}", Credentials::new("AK", SECRET)).contains("s3cr3t"));
}
