//! Bad input gets a clear 4xx, never a 500 or a panic.

use std::io::{Read, Write};

use blob_common::presign::{self, Claims, Keyring, Op, PipelineNode};
use blob_common::proto::namenode::ChunkRef;
use blob_common::ChunkId;
use blob_tests::{random_bytes, TestCluster};

use crate::{bounded, start};

struct Raw<'a> {
    cluster: &'a TestCluster,
    http: reqwest::Client,
}

impl Raw<'_> {
    /// Sends a request signed with (`key`, `secret`), or unsigned when `key` is None.
    async fn send(
        &self,
        method: &str,
        path_and_query: &str,
        body: &[u8],
        creds: Option<(&str, &str)>,
    ) -> (u16, serde_json::Value) {
        let url = reqwest::Url::parse(&format!("{}{path_and_query}", self.cluster.endpoint()))
            .expect("url");
        let mut req = self
            .http
            .request(method.parse().expect("method"), url.clone())
            .body(body.to_vec());
        if let Some((key, secret)) = creds {
            let h = blob_common::auth::sign(
                key,
                secret.as_bytes(),
                method,
                url.path(),
                url.query().unwrap_or(""),
                blob_common::now_secs(),
                body,
            );
            req = req
                .header("authorization", h.authorization)
                .header(blob_common::auth::DATE_HEADER, h.date)
                .header(blob_common::auth::CONTENT_SHA_HEADER, h.content_sha256);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        (
            status,
            serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)),
        )
    }

    async fn admin(&self, method: &str, pq: &str, body: &[u8]) -> (u16, serde_json::Value) {
        let (k, s) = (
            self.cluster.access_key.clone(),
            self.cluster.secret_key.clone(),
        );
        self.send(method, pq, body, Some((&k, &s))).await
    }
}

fn enc(s: &str) -> String {
    percent_encode(s)
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_names_paths_and_credentials_get_clear_4xx() {
    bounded(async {
        let cluster = start(TestCluster::builder()).await;
        let raw = Raw {
            cluster: &cluster,
            http: reqwest::Client::new(),
        };
        let (s, _) = raw.admin("PUT", "/v1/buckets/good-bucket", b"").await;
        assert_eq!(s, 200);

        for bad in [
            "ab",
            "UPPER",
            "a_b",
            "192.168.1.1",
            "-lead",
            "trail-",
            "a..b",
            &"x".repeat(64),
        ] {
            let (s, body) = raw
                .admin("PUT", &format!("/v1/buckets/{}", enc(bad)), b"")
                .await;
            assert_eq!(s, 400, "bucket {bad:?}: {body}");
            assert_eq!(body["code"], "InvalidBucketName", "bucket {bad:?}");
            assert!(!body["message"].as_str().unwrap_or_default().is_empty());
        }

        let long = "x".repeat(1025);
        for bad in ["", "a/../b", "..", "a\0b", "/abs", long.as_str()] {
            let pq = format!("/v1/file?bucket=good-bucket&path={}", enc(bad));
            let (s, body) = raw.admin("GET", &pq, b"").await;
            assert_eq!(s, 400, "path {bad:?}: {body}");
            let create =
                serde_json::json!({"bucket": "good-bucket", "path": bad, "chunk_size": 1048576});
            let (s, body) = raw
                .admin("POST", "/v1/uploads", create.to_string().as_bytes())
                .await;
            assert_eq!(s, 400, "upload to {bad:?}: {body}");
        }
        let (s, body) = raw
            .admin("GET", "/v1/file?bucket=nope-bucket&path=a", b"")
            .await;
        assert_eq!((s, body["code"].as_str()), (404, Some("NoSuchBucket")));
        let (s, body) = raw
            .admin("GET", "/v1/file?bucket=good-bucket&path=a", b"")
            .await;
        assert_eq!((s, body["code"].as_str()), (404, Some("NoSuchFile")));
        let (s, _) = raw.admin("POST", "/v1/uploads", b"{not json").await;
        assert_eq!(s, 400);
        let (s, _) = raw.admin("GET", "/v1/file?bucket=good-bucket", b"").await;
        assert_eq!(s, 400, "missing path parameter");
        let (s, _) = raw
            .admin("POST", "/v1/uploads/not-an-id/commit", b"{}")
            .await;
        assert_eq!(s, 404);

        // Credentials.
        let (s, body) = raw.send("GET", "/v1/buckets", b"", None).await;
        assert_eq!(s, 401, "{body}");
        let key = cluster.access_key.clone();
        let (s, body) = raw
            .send("GET", "/v1/buckets", b"", Some((&key, "wrong-secret")))
            .await;
        assert_eq!(
            (s, body["code"].as_str()),
            (403, Some("SignatureDoesNotMatch"))
        );
        let (s, body) = raw
            .send("GET", "/v1/buckets", b"", Some(("BKNOSUCHKEY", "x")))
            .await;
        assert_eq!(
            (s, body["code"].as_str()),
            (403, Some("InvalidAccessKeyId"))
        );
        // A user key cannot pose as a datanode.
        let (s, _) = raw
            .admin(
                "POST",
                "/v1/datanodes/report",
                b"{\"node\":\"0000000000000000\",\"full\":true}",
            )
            .await;
        assert_eq!(s, 403);

        // Commit naming a chunk never uploaded to this bucket is refused.
        let create =
            serde_json::json!({"bucket": "good-bucket", "path": "x", "chunk_size": 1048576});
        let (s, plan) = raw
            .admin("POST", "/v1/uploads", create.to_string().as_bytes())
            .await;
        assert_eq!(s, 200, "{plan}");
        let id = plan["upload"].as_str().expect("upload id").to_string();
        let commit =
            serde_json::json!({"chunks": [ChunkRef { id: ChunkId::of(b"never sent"), size: 10 }]});
        let (s, body) = raw
            .admin(
                "POST",
                &format!("/v1/uploads/{id}/commit"),
                commit.to_string().as_bytes(),
            )
            .await;
        assert_eq!(
            (s, body["code"].as_str()),
            (409, Some("MissingReplicas")),
            "{body}"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn chunk_bodies_shorter_or_longer_than_declared_store_nothing() {
    bounded(async {
        let cluster = start(TestCluster::builder().datanodes(1).replication(1)).await;
        let ring = Keyring::parse(
            &std::fs::read_to_string(cluster.root().join("cluster.secret")).expect("secret"),
        )
        .expect("keyring");
        let data = random_bytes(200_000, 11);
        let id = ChunkId::of(&data);
        let claims = Claims {
            op: Op::Put,
            chunk: id,
            exp: blob_common::now_secs() + 600,
            kid: String::new(),
            size: Some(data.len() as u64),
            pipeline: vec![PipelineNode {
                node: cluster.node_id(0).expect("id"),
                url: cluster.datanodes[0].url(),
            }],
            upload: None,
            origins: vec![],
        };
        let url = presign::url(&cluster.datanodes[0].url(), &ring, &claims);
        let path_and_query = url
            .trim_start_matches(&cluster.datanodes[0].url())
            .to_string();

        // Declares the signed size but sends half, then closes.
        let mut sock = std::net::TcpStream::connect(cluster.datanodes[0].addr).expect("connect");
        write!(
            sock,
            "PUT {path_and_query} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
            data.len()
        )
        .expect("head");
        sock.write_all(&data[..100_000]).expect("body");
        sock.shutdown(std::net::Shutdown::Write).expect("shutdown");
        let mut resp = String::new();
        let _ = sock.read_to_string(&mut resp);
        assert!(
            !resp.starts_with("HTTP/1.1 200") && !resp.starts_with("HTTP/1.1 5"),
            "short body: {resp}"
        );
        assert!(!cluster.chunk_file(0, &id).exists());

        // Streams more bytes than signed, with no length declared.
        let mut longer = data.clone();
        longer.extend_from_slice(b"trailing garbage");
        let stream = futures::stream::iter(
            longer
                .chunks(4096)
                .map(|c| Ok::<_, std::io::Error>(c.to_vec()))
                .collect::<Vec<_>>(),
        );
        // The datanode refuses before reading the body, so the refusal may
        // reach the client as a reset while it is still sending.
        let sent = reqwest::Client::new()
            .put(&url)
            .body(reqwest::Body::wrap_stream(stream))
            .send()
            .await;
        if let Ok(resp) = sent {
            let status = resp.status().as_u16();
            assert!((400..500).contains(&status), "longer body: {status}");
        }
        assert!(!cluster.chunk_file(0, &id).exists());

        // The declared length differs from the signed size.
        let sent = reqwest::Client::new().put(&url).body(longer).send().await;
        if let Ok(resp) = sent {
            assert_eq!(resp.status().as_u16(), 403);
        }
        assert!(!cluster.chunk_file(0, &id).exists());
    })
    .await;
}
