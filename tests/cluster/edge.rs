//! The edge cache in front of a real cluster: exact hit and miss counts,
//! request coalescing, each eviction policy's choice, capacities, corrupt
//! origins, refused URLs, reads through blobctl, S3 and the mount with the
//! edge up and down, the disk tier across a restart, and warm-up.

use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use blob_common::presign::{self, Claims, Op, PipelineNode};
use blob_common::proto::namenode::FileLocations;
use blob_common::{ChunkId, NodeId};
use blob_tests::{random_bytes, sha256_hex, wait_until, EdgeSpec, TestCluster};
use reqwest::header::{CACHE_CONTROL, CONTENT_RANGE, ETAG, IF_NONE_MATCH, RANGE};
use reqwest::StatusCode;

use crate::{blobctl_bin, bounded, chunked, put, start};

const MIB: u64 = 1 << 20;

/// The edge's counters that the tests check.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
struct Counts {
    memory_hits: f64,
    disk_hits: f64,
    misses: f64,
    coalesced: f64,
    fills: f64,
    origin_bytes: f64,
    corrupt_origins: f64,
    refused: f64,
    not_modified: f64,
    memory_used: f64,
    disk_used: f64,
    evictions: f64,
}

/// The edge's counters once its queued disk-tier writes are done (they run
/// beside the readers, so a read can return before its chunk is on disk).
async fn counts(c: &TestCluster, i: usize) -> Counts {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let text = loop {
        let text = reqwest::get(format!("{}/metrics", c.edge_url(i)))
            .await
            .and_then(|r| r.error_for_status())
            .expect("edge metrics")
            .text()
            .await
            .expect("edge metrics body");
        let backlog = blob_tests::metric_value(&text, "blob_edge_disk_backlog_bytes");
        if backlog == 0.0 || std::time::Instant::now() > deadline {
            break text;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let v = |name: &str| blob_tests::metric_value(&text, name);
    let tier = |name: &str, tier: &str| {
        text.lines()
            .find(|l| l.starts_with(&format!("{name}{{tier=\"{tier}\"}} ")))
            .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    Counts {
        memory_hits: tier("blob_edge_hits_total", "memory"),
        disk_hits: tier("blob_edge_hits_total", "disk"),
        misses: v("blob_edge_misses_total"),
        coalesced: v("blob_edge_coalesced_total"),
        fills: v("blob_edge_fills_total"),
        origin_bytes: v("blob_edge_origin_bytes_total"),
        corrupt_origins: v("blob_edge_corrupt_origins_total"),
        refused: v("blob_edge_refused_total"),
        not_modified: v("blob_edge_not_modified_total"),
        memory_used: tier("blob_edge_cached_bytes", "memory"),
        disk_used: tier("blob_edge_cached_bytes", "disk"),
        evictions: v("blob_edge_evictions_total"),
    }
}

/// Chunk bytes the datanodes sent to readers, and their GETs answered 2xx.
async fn datanode_reads(c: &TestCluster) -> (f64, f64) {
    let bytes = c
        .datanode_metric("blob_datanode_sent_bytes_total")
        .await
        .expect("datanode metrics");
    let text_sum = c
        .datanode_metric("blob_datanode_get_requests_total")
        .await
        .expect("datanode metrics");
    (bytes, text_sum)
}

/// Locations as a reader in `zone` gets them: each chunk's first URL must
/// be the edge's.
async fn edge_locations(c: &TestCluster, zone: &str, bucket: &str, path: &str) -> FileLocations {
    let locs = c
        .client_in(zone)
        .locations(bucket, path)
        .await
        .unwrap_or_else(|e| panic!("locations of {bucket}/{path}: {e:#}"));
    for chunk in &locs.chunks {
        let first = &chunk.replicas[0];
        assert_eq!(first.edge.as_deref(), Some(zone), "{first:?}");
        assert!(
            chunk.replicas[1..].iter().all(|r| r.edge.is_none()),
            "only the first URL is an edge's"
        );
    }
    locs
}

struct Got {
    status: StatusCode,
    headers: reqwest::header::HeaderMap,
    body: Result<Vec<u8>, String>,
}

impl Got {
    fn source(&self) -> &str {
        self.headers
            .get("x-blob-cache")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

async fn fetch(
    http: &reqwest::Client,
    url: &str,
    headers: &[(reqwest::header::HeaderName, &str)],
) -> Got {
    let mut req = http.get(url);
    for (k, v) in headers {
        req = req.header(k, *v);
    }
    let resp = req.send().await.unwrap_or_else(|e| panic!("GET: {e}"));
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp
        .bytes()
        .await
        .map(|b| b.to_vec())
        .map_err(|e| e.to_string());
    Got {
        status,
        headers,
        body,
    }
}

fn body(g: &Got) -> &[u8] {
    g.body
        .as_deref()
        .unwrap_or_else(|e| panic!("body failed: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn edge_scripted_requests_give_exact_hit_and_miss_counts() {
    bounded(async {
        let c = start(
            TestCluster::builder()
                .datanodes(2)
                .replication(2)
                .fsync(false)
                .edge(EdgeSpec::new("z1").policy("lru")),
        )
        .await;
        let client = c.client();
        client.create_bucket("edge").await.expect("bucket");
        let data = random_bytes(3 * MIB as usize, 1);
        put(&client, "edge", "three", &data, &chunked(MIB)).await;
        let locs = edge_locations(&c, "z1", "edge", "three").await;
        assert_eq!(locs.chunks.len(), 3);
        assert_eq!(
            locs.chunks[0].replicas.len(),
            3,
            "the edge, then 2 datanodes"
        );
        let url = |i: usize| locs.chunks[i].replicas[0].url.clone();
        let chunk = |i: usize| &data[i * MIB as usize..(i + 1) * MIB as usize];
        let http = reqwest::Client::new();

        tracing::info!("--- scripted requests");
        // (chunk, range, expected source)
        type Step = (usize, Option<(usize, usize)>, &'static str);
        let script: [Step; 7] = [
            (0, None, "miss"),
            (0, None, "memory"),
            (1, None, "miss"),
            (0, Some((100, 200)), "memory"),
            (1, None, "memory"),
            (2, Some((1000, 263_144)), "miss"),
            (2, None, "memory"),
        ];
        for (step, (i, range, source)) in script.iter().enumerate() {
            let spec = range.map(|(a, b)| format!("bytes={a}-{}", b - 1));
            let headers: Vec<_> = spec.iter().map(|s| (RANGE, s.as_str())).collect();
            let got = fetch(&http, &url(*i), &headers).await;
            assert_eq!(got.source(), *source, "step {step}");
            let want = match range {
                None => chunk(*i),
                Some((a, b)) => &chunk(*i)[*a..*b],
            };
            assert_eq!(sha256_hex(body(&got)), sha256_hex(want), "step {step}");
            let id = locs.chunks[*i].id;
            assert_eq!(
                got.headers.get(ETAG).and_then(|v| v.to_str().ok()),
                Some(format!("\"{id}\"").as_str())
            );
            assert_eq!(
                got.headers.get(CACHE_CONTROL).and_then(|v| v.to_str().ok()),
                Some("public, max-age=31536000, immutable")
            );
            match range {
                None => assert_eq!(got.status, StatusCode::OK),
                Some((a, b)) => {
                    assert_eq!(got.status, StatusCode::PARTIAL_CONTENT);
                    assert_eq!(
                        got.headers.get(CONTENT_RANGE).and_then(|v| v.to_str().ok()),
                        Some(format!("bytes {a}-{}/{MIB}", b - 1).as_str())
                    );
                }
            }
        }
        tracing::info!("--- conditional and unsatisfiable requests");
        let etag = format!("\"{}\"", locs.chunks[0].id);
        let got = fetch(&http, &url(0), &[(IF_NONE_MATCH, etag.as_str())]).await;
        assert_eq!(got.status, StatusCode::NOT_MODIFIED);
        assert!(body(&got).is_empty());
        let got = fetch(&http, &url(0), &[(RANGE, "bytes=5000000-")]).await;
        assert_eq!(got.status, StatusCode::RANGE_NOT_SATISFIABLE);

        let m = counts(&c, 0).await;
        assert_eq!(m.misses, 3.0, "{m:?}");
        assert_eq!(m.memory_hits, 5.0, "4 scripted hits and the 416: {m:?}");
        assert_eq!(m.disk_hits, 0.0, "{m:?}");
        assert_eq!(m.coalesced, 0.0, "{m:?}");
        assert_eq!(m.fills, 3.0, "{m:?}");
        assert_eq!(m.not_modified, 1.0, "{m:?}");
        assert_eq!(m.origin_bytes, (3 * MIB) as f64, "{m:?}");
        assert_eq!(m.memory_used, (3 * MIB) as f64, "{m:?}");
        assert_eq!(m.disk_used, (3 * MIB) as f64, "{m:?}");
        let (sent, _) = datanode_reads(&c).await;
        assert_eq!(sent, (3 * MIB) as f64, "each chunk left a datanode once");

        tracing::info!("--- stats through blobctl");
        let stats = client.list_edges().await.expect("edges");
        assert_eq!(stats.edges.len(), 1);
        let s = client
            .edge_stats(&stats.edges[0].url, &stats.stats_query)
            .await
            .expect("stats");
        assert_eq!((s.memory.hits, s.misses, s.fills), (5, 3, 3));
        assert_eq!(s.policy, "lru");
        let cfg = c.client_config().expect("config");
        let out = Command::new(blobctl_bin())
            .arg("--config")
            .arg(&cfg)
            .args(["admin", "edge", "stats", "--json"])
            .output()
            .expect("blobctl");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
        assert_eq!(v[0]["zone"], "z1");
        assert_eq!(v[0]["stats"]["misses"], 3);
        // The stats route needs the namenode's grant.
        let refused = reqwest::get(format!("{}/v1/admin/stats", c.edge_url(0)))
            .await
            .expect("stats");
        assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn edge_coalesces_100_concurrent_requests_for_a_cold_chunk_into_one_origin_fetch() {
    bounded(async {
        let c = start(
            TestCluster::builder()
                .fsync(false)
                .edge(EdgeSpec::new("z1")),
        )
        .await;
        let client = c.client();
        client.create_bucket("edge").await.expect("bucket");
        let data = random_bytes(8 * MIB as usize, 2);
        put(&client, "edge", "one", &data, &chunked(8 * MIB)).await;
        let locs = edge_locations(&c, "z1", "edge", "one").await;
        let url = locs.chunks[0].replicas[0].url.clone();
        let want = sha256_hex(&data);
        let before = datanode_reads(&c).await;
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(128)
            .build()
            .expect("http");
        let tasks: Vec<_> = (0..100)
            .map(|_| {
                let (http, url) = (http.clone(), url.clone());
                tokio::spawn(async move {
                    let resp = http.get(&url).send().await.expect("GET");
                    assert_eq!(resp.status(), StatusCode::OK);
                    sha256_hex(&resp.bytes().await.expect("body"))
                })
            })
            .collect();
        for t in tasks {
            assert_eq!(t.await.expect("task"), want);
        }
        let after = datanode_reads(&c).await;
        assert_eq!(
            after.0 - before.0,
            (8 * MIB) as f64,
            "one chunk left the datanodes"
        );
        assert_eq!(after.1 - before.1, 1.0, "one GET reached a datanode");
        let m = counts(&c, 0).await;
        tracing::info!(?m, "FIGURES coalescing");
        assert_eq!(m.fills, 1.0, "{m:?}");
        assert_eq!(m.origin_bytes, (8 * MIB) as f64, "{m:?}");
        assert_eq!(m.memory_hits + m.disk_hits + m.misses, 100.0, "{m:?}");
        assert_eq!(m.coalesced, m.misses - 1.0, "{m:?}");
    })
    .await;
}

/// Capacity 3 chunks in each tier, then requests A; B B B; C; A; D.
/// FIFO evicts A, LRU B, LFU C, and TinyLFU does not admit D.
async fn policy_case(policy: &str, victim: usize) {
    let c = start(
        TestCluster::builder()
            .datanodes(1)
            .replication(1)
            .fsync(false)
            .edge(
                EdgeSpec::new("z1")
                    .policy(policy)
                    .capacity(3 * MIB, 3 * MIB),
            ),
    )
    .await;
    let client = c.client();
    client.create_bucket("edge").await.expect("bucket");
    let mut urls = Vec::new();
    let mut ids = Vec::new();
    let mut datas = Vec::new();
    for n in 0..4u64 {
        let data = random_bytes(MIB as usize, 100 + n);
        let path = format!("f{n}");
        put(&client, "edge", &path, &data, &chunked(MIB)).await;
        let locs = edge_locations(&c, "z1", "edge", &path).await;
        urls.push(locs.chunks[0].replicas[0].url.clone());
        ids.push(locs.chunks[0].id);
        datas.push(data);
    }
    let http = reqwest::Client::new();
    let disk_files = |c: &TestCluster| -> Vec<bool> {
        ids.iter()
            .map(|id: &ChunkId| {
                let hex = id.to_string();
                c.edges[0]
                    .data
                    .join("chunks")
                    .join(&hex[..2])
                    .join(&hex)
                    .exists()
            })
            .collect()
    };
    for (step, n) in [0usize, 1, 1, 1, 2, 0, 3].into_iter().enumerate() {
        let got = fetch(&http, &urls[n], &[]).await;
        assert_eq!(
            sha256_hex(body(&got)),
            sha256_hex(&datas[n]),
            "{policy} step {step}"
        );
        let m = counts(&c, 0).await;
        assert!(
            m.memory_used <= (3 * MIB) as f64,
            "{policy}: memory over capacity: {m:?}"
        );
        assert!(
            m.disk_used <= (3 * MIB) as f64,
            "{policy}: disk over capacity: {m:?}"
        );
        let on_disk: u64 = disk_files(&c).iter().filter(|x| **x).count() as u64 * MIB;
        assert!(on_disk <= 3 * MIB, "{policy}: files over capacity");
    }
    let expected: Vec<bool> = (0..4).map(|n| n != victim).collect();
    assert_eq!(disk_files(&c), expected, "{policy}: files left on disk");
    let m = counts(&c, 0).await;
    let evicted = if policy == "tinylfu" { 0.0 } else { 2.0 };
    assert_eq!(m.evictions, evicted, "{policy}: one per tier: {m:?}");
    // The survivors are memory hits, the victim a miss.
    for n in (0..4).filter(|n| *n != victim) {
        let got = fetch(&http, &urls[n], &[]).await;
        assert_eq!(
            got.source(),
            "memory",
            "{policy}: chunk {n} should be cached"
        );
    }
    let got = fetch(&http, &urls[victim], &[]).await;
    assert_eq!(
        got.source(),
        "miss",
        "{policy}: chunk {victim} should be gone"
    );
    assert_eq!(sha256_hex(body(&got)), sha256_hex(&datas[victim]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn edge_policy_fifo_evicts_the_oldest_insert() {
    bounded(policy_case("fifo", 0)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn edge_policy_lru_evicts_the_least_recently_used() {
    bounded(policy_case("lru", 1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn edge_policy_lfu_evicts_the_least_frequently_used() {
    bounded(policy_case("lfu", 2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn edge_policy_tinylfu_does_not_admit_a_one_off_over_popular_chunks() {
    bounded(policy_case("tinylfu", 3)).await;
}

/// A fake origin answering every chunk GET with `len` wrong bytes.
async fn corrupt_origin(len: usize) -> (String, Arc<AtomicU64>) {
    let hits = Arc::new(AtomicU64::new(0));
    let h = hits.clone();
    let app = axum::Router::new().route(
        "/v1/chunks/{id}",
        axum::routing::get(move || {
            let h = h.clone();
            async move {
                h.fetch_add(1, Ordering::SeqCst);
                vec![0x5au8; len]
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}"), hits)
}

fn edge_url_for(c: &TestCluster, claims: &Claims, exp_offset: i64) -> String {
    let ring = c.keyring().expect("keyring");
    let mut claims = claims.clone();
    claims.exp = (blob_common::now_secs() as i64 + exp_offset) as u64;
    presign::url(&c.edge_url(0), &ring, &claims)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn edge_never_caches_or_serves_a_corrupt_origin_replica() {
    bounded(async {
        let c = start(
            TestCluster::builder()
                .datanodes(1)
                .replication(1)
                .fsync(false)
                .edge(EdgeSpec::new("z1")),
        )
        .await;
        let client = c.client();
        client.create_bucket("edge").await.expect("bucket");
        let good = random_bytes(2 * MIB as usize, 3);
        put(&client, "edge", "good", &good, &chunked(2 * MIB)).await;
        let other = random_bytes(2 * MIB as usize, 4);
        put(&client, "edge", "other", &other, &chunked(2 * MIB)).await;
        let (fake, fake_hits) = corrupt_origin(2 * MIB as usize).await;
        let fake_node = PipelineNode {
            node: NodeId([0xfa; 8]),
            url: fake,
        };
        let real_node = PipelineNode {
            node: c.node_id(0).expect("node id"),
            url: c.datanodes[0].url(),
        };
        let claims = |id: ChunkId, origins: Vec<PipelineNode>| Claims {
            op: Op::Get,
            chunk: id,
            exp: 0,
            kid: String::new(),
            size: Some(2 * MIB),
            pipeline: vec![],
            upload: None,
            origins,
        };
        let http = reqwest::Client::new();

        tracing::info!("--- the corrupt replica comes first: the next one is used");
        let good_id = ChunkId::of(&good);
        let url = edge_url_for(
            &c,
            &claims(good_id, vec![fake_node.clone(), real_node]),
            600,
        );
        let got = fetch(&http, &url, &[]).await;
        // This reader may have been streamed some of the corrupt replica's
        // bytes before the mismatch: then its body is cut short (its client
        // reads elsewhere); it never gets a whole body that is not the chunk.
        match &got.body {
            Ok(b) if got.status == StatusCode::OK && b.len() == good.len() => {
                assert_eq!(sha256_hex(b), sha256_hex(&good))
            }
            other => {
                tracing::info!(status = %got.status, ok = other.is_ok(), "first reader cut short")
            }
        }
        assert_eq!(fake_hits.load(Ordering::SeqCst), 1);
        // The next reader joins the fill going on from the good replica,
        // or finds the chunk cached; either way it gets the chunk.
        let again = fetch(&http, &url, &[]).await;
        assert!(
            matches!(again.source(), "coalesced" | "memory"),
            "{}",
            again.source()
        );
        assert_eq!(sha256_hex(body(&again)), sha256_hex(&good));
        let again = fetch(&http, &url, &[]).await;
        assert_eq!(again.source(), "memory");
        assert_eq!(sha256_hex(body(&again)), sha256_hex(&good));
        let m = counts(&c, 0).await;
        assert_eq!((m.corrupt_origins, m.fills), (1.0, 1.0), "{m:?}");
        assert_eq!(fake_hits.load(Ordering::SeqCst), 1);

        tracing::info!("--- only corrupt replicas: nothing is served whole, nothing cached");
        let other_id = ChunkId::of(&other);
        let url = edge_url_for(&c, &claims(other_id, vec![fake_node]), 600);
        for attempt in 0..2 {
            let got = fetch(&http, &url, &[]).await;
            let served_whole = got.status == StatusCode::OK
                && got.body.as_ref().is_ok_and(|b| b.len() == other.len());
            assert!(
                !served_whole,
                "attempt {attempt}: a corrupt chunk was served whole"
            );
            if let Ok(b) = &got.body {
                assert_ne!(sha256_hex(b), sha256_hex(&vec![0x5au8; 2 * MIB as usize]));
            }
        }
        // Each attempt went to the origin again: nothing was cached.
        assert_eq!(fake_hits.load(Ordering::SeqCst), 3);
        let m = counts(&c, 0).await;
        assert_eq!(m.corrupt_origins, 3.0, "{m:?}");
        assert_eq!(
            m.memory_used,
            (2 * MIB) as f64,
            "only the good chunk: {m:?}"
        );
        assert_eq!(m.disk_used, (2 * MIB) as f64, "only the good chunk: {m:?}");
        let hex = other_id.to_string();
        assert!(!c.edges[0]
            .data
            .join("chunks")
            .join(&hex[..2])
            .join(&hex)
            .exists());
        // A range of it is refused too (it waits for a verified chunk).
        let got = fetch(&http, &url, &[(RANGE, "bytes=0-99")]).await;
        assert_eq!(got.status, StatusCode::BAD_GATEWAY);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn edge_refuses_expired_or_tampered_urls_without_contacting_a_datanode() {
    bounded(async {
        let c = start(
            TestCluster::builder()
                .datanodes(1)
                .replication(1)
                .fsync(false)
                .edge(EdgeSpec::new("z1")),
        )
        .await;
        let client = c.client();
        client.create_bucket("edge").await.expect("bucket");
        let data = random_bytes(MIB as usize, 5);
        put(&client, "edge", "f", &data, &chunked(MIB)).await;
        let id = ChunkId::of(&data);
        let claims = Claims {
            op: Op::Get,
            chunk: id,
            exp: 0,
            kid: String::new(),
            size: Some(MIB),
            pipeline: vec![],
            upload: None,
            origins: vec![PipelineNode {
                node: c.node_id(0).expect("node id"),
                url: c.datanodes[0].url(),
            }],
        };
        let before = datanode_reads(&c).await;
        let http = reqwest::Client::new();
        let expired = edge_url_for(&c, &claims, -10);
        let got = fetch(&http, &expired, &[]).await;
        assert_eq!(got.status, StatusCode::FORBIDDEN);
        assert!(String::from_utf8_lossy(body(&got)).contains("expired"));
        let valid = edge_url_for(&c, &claims, 600);
        let tampered = valid.replace("&s=", "&s=00");
        assert_eq!(
            fetch(&http, &tampered, &[]).await.status,
            StatusCode::FORBIDDEN
        );
        let mut forged = claims.clone();
        forged.origins[0].url = "http://127.0.0.1:1".into();
        let forged = presign::url(
            &c.edge_url(0),
            &blob_common::presign::Keyring::generate(),
            &forged,
        );
        assert_eq!(
            fetch(&http, &forged, &[]).await.status,
            StatusCode::FORBIDDEN
        );
        let other = valid.replace(&id.to_string(), &ChunkId::of(b"other").to_string());
        assert_eq!(
            fetch(&http, &other, &[]).await.status,
            StatusCode::FORBIDDEN
        );
        let bad_id = format!("{}/v1/chunks/nothex?t=a&s=b", c.edge_url(0));
        assert_eq!(
            fetch(&http, &bad_id, &[]).await.status,
            StatusCode::BAD_REQUEST
        );
        let warm = http
            .post(format!("{}/v1/warm", c.edge_url(0)))
            .body(format!(
                "{{\"chunks\":[{{\"chunk\":\"{id}\",\"t\":\"{}\",\"s\":\"00\"}}]}}",
                "x"
            ))
            .send()
            .await
            .expect("warm");
        assert_eq!(warm.status(), StatusCode::FORBIDDEN);
        let garbage = http
            .post(format!("{}/v1/warm", c.edge_url(0)))
            .body("not json")
            .send()
            .await
            .expect("warm");
        assert_eq!(garbage.status(), StatusCode::BAD_REQUEST);

        let m = counts(&c, 0).await;
        assert_eq!(
            (m.fills, m.misses, m.origin_bytes),
            (0.0, 0.0, 0.0),
            "{m:?}"
        );
        assert_eq!(m.refused, 7.0, "{m:?}");
        assert_eq!(
            datanode_reads(&c).await,
            before,
            "no datanode was contacted"
        );
        // The valid URL works.
        let got = fetch(&http, &valid, &[]).await;
        assert_eq!(sha256_hex(body(&got)), sha256_hex(&data));
    })
    .await;
}

fn blobctl(config: &std::path::Path, args: &[&str]) -> (bool, Vec<u8>, String) {
    let out = Command::new(blobctl_bin())
        .arg("--config")
        .arg(config)
        .args(args)
        .env_remove("BLOBCTL_ENDPOINT")
        .env_remove("BLOBCTL_ACCESS_KEY")
        .env_remove("BLOBCTL_SECRET_KEY")
        .env_remove("BLOBCTL_ZONE")
        .output()
        .expect("blobctl");
    (
        out.status.success(),
        out.stdout,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn aws_get(c: &TestCluster, key: &str) -> Vec<u8> {
    let out = Command::new("aws")
        .env("AWS_ENDPOINT_URL", c.s3_endpoint())
        .env("AWS_ACCESS_KEY_ID", &c.access_key)
        .env("AWS_SECRET_ACCESS_KEY", &c.secret_key)
        .env("AWS_REGION", "us-east-1")
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .env("AWS_CONFIG_FILE", "/nonexistent")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
        .args(["s3", "cp", &format!("s3://{key}"), "-"])
        .output()
        .expect("aws");
    assert!(
        out.status.success(),
        "aws: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn edge_serves_blobctl_s3_and_mount_reads_and_they_fall_back_to_datanodes_when_it_is_down() {
    bounded(async {
        let mut c = start(
            TestCluster::builder()
                .fsync(false)
                .s3(true)
                .edge(EdgeSpec::new("z1")),
        )
        .await;
        let client = c.client();
        client.create_bucket("edge").await.expect("bucket");
        let data = random_bytes(5 * MIB as usize + 4321, 6);
        put(&client, "edge", "clip.mp4", &data, &chunked(MIB)).await;
        let want = sha256_hex(&data);
        let second = random_bytes(2 * MIB as usize + 99, 8);
        put(&client, "edge", "second.bin", &second, &chunked(MIB)).await;
        let cfg = c.client_config_in("z1").expect("config");

        tracing::info!("--- blobctl reads through the edge");
        let (ok, out, err) = blobctl(&cfg, &["cat", "edge/clip.mp4"]);
        assert!(ok, "{err}");
        assert_eq!(sha256_hex(&out), want);
        let m = counts(&c, 0).await;
        assert_eq!((m.misses, m.fills), (6.0, 6.0), "{m:?}");
        let (sent, _) = datanode_reads(&c).await;
        assert_eq!(sent, data.len() as f64, "the edge filled each chunk once");

        tracing::info!("--- S3 reads through the edge");
        assert_eq!(sha256_hex(&aws_get(&c, "edge/clip.mp4")), want);
        let m = counts(&c, 0).await;
        assert_eq!(m.memory_hits, 6.0, "{m:?}");
        // A range read of the client library goes through the edge too.
        let part = c
            .client_in("z1")
            .read_range("edge", "clip.mp4", MIB - 10, 20)
            .await
            .expect("range");
        assert_eq!(&part[..], &data[MIB as usize - 10..MIB as usize + 10]);
        assert_eq!(counts(&c, 0).await.memory_hits, 8.0);
        assert_eq!(
            datanode_reads(&c).await.0,
            sent,
            "no datanode read for hits"
        );

        tracing::info!("--- the mount reads through the edge");
        let m = blob_tests::Mount::start(&blobctl_bin(), &cfg, "edge", &[])
            .unwrap_or_else(|e| panic!("{e:#}"));
        let p = m.path("clip.mp4");
        let via_mount = tokio::task::spawn_blocking(move || std::fs::read(p))
            .await
            .expect("join")
            .expect("read through the mount");
        assert_eq!(sha256_hex(&via_mount), want);
        assert!(
            counts(&c, 0).await.memory_hits >= 14.0,
            "the mount's reads were edge hits"
        );
        assert_eq!(
            datanode_reads(&c).await.0,
            sent,
            "no datanode read for hits"
        );

        tracing::info!("--- the edge goes down: reads go to the datanodes");
        c.kill_edge(0);
        let (ok, out, err) = blobctl(&cfg, &["cat", "edge/clip.mp4"]);
        assert!(ok, "{err}");
        assert_eq!(sha256_hex(&out), want);
        assert_eq!(sha256_hex(&aws_get(&c, "edge/clip.mp4")), want);
        let part = c
            .client_in("z1")
            .read_range("edge", "clip.mp4", 3, 5)
            .await
            .expect("range");
        assert_eq!(&part[..], &data[3..8]);
        let p = m.path("second.bin");
        let via_mount = tokio::task::spawn_blocking(move || std::fs::read(p))
            .await
            .expect("join")
            .expect("read through the mount without the edge");
        assert_eq!(sha256_hex(&via_mount), sha256_hex(&second));
        drop(m);
        let (after, _) = datanode_reads(&c).await;
        assert!(
            after >= sent + (2 * data.len() + second.len()) as f64,
            "the datanodes served the reads"
        );

        tracing::info!("--- it comes back with its disk tier");
        c.restart_edge(0).expect("restart edge");
        let (ok, out, err) = blobctl(
            &c.client_config_in("z1").expect("config"),
            &["cat", "edge/clip.mp4"],
        );
        assert!(ok, "{err}");
        assert_eq!(sha256_hex(&out), want);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn edge_disk_tier_survives_a_restart() {
    bounded(async {
        let mut c = start(
            TestCluster::builder()
                .datanodes(1)
                .replication(1)
                .fsync(false)
                .edge(EdgeSpec::new("z1").policy("lru")),
        )
        .await;
        let client = c.client();
        client.create_bucket("edge").await.expect("bucket");
        let data = random_bytes(3 * MIB as usize, 7);
        put(&client, "edge", "f", &data, &chunked(MIB)).await;
        let locs = edge_locations(&c, "z1", "edge", "f").await;
        let http = reqwest::Client::new();
        for ch in &locs.chunks {
            assert_eq!(
                fetch(&http, &ch.replicas[0].url, &[]).await.source(),
                "miss"
            );
        }
        let sent = datanode_reads(&c).await;
        // Disk-tier writes run beside the readers; an edge killed before
        // they end loses them (a clean stop waits for them).
        wait_until(
            "the disk tier holds the 3 chunks",
            Duration::from_secs(10),
            || async { Ok(counts(&c, 0).await.disk_used == (3 * MIB) as f64) },
        )
        .await
        .expect("disk tier");

        tracing::info!("--- restart: the memory tier is empty, the disk tier is not");
        c.restart_edge(0).expect("restart edge");
        let m = counts(&c, 0).await;
        assert_eq!(
            (m.memory_used, m.disk_used),
            (0.0, (3 * MIB) as f64),
            "{m:?}"
        );
        let url = &locs.chunks[1].replicas[0].url;
        let got = fetch(&http, url, &[(RANGE, "bytes=10-19")]).await;
        assert_eq!(
            (got.status, got.source()),
            (StatusCode::PARTIAL_CONTENT, "disk")
        );
        assert_eq!(body(&got), &data[MIB as usize + 10..MIB as usize + 20]);
        let got = fetch(&http, url, &[]).await;
        assert_eq!(got.source(), "disk");
        assert_eq!(
            sha256_hex(body(&got)),
            sha256_hex(&data[MIB as usize..2 * MIB as usize])
        );
        // A whole-chunk disk hit is promoted to memory.
        assert_eq!(fetch(&http, url, &[]).await.source(), "memory");
        let m = counts(&c, 0).await;
        assert_eq!(
            (m.disk_hits, m.memory_hits, m.misses, m.fills),
            (2.0, 1.0, 0.0, 0.0),
            "{m:?}"
        );
        assert_eq!(
            datanode_reads(&c).await,
            sent,
            "no datanode read after the restart"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn edge_warms_on_demand_and_from_a_list_at_start() {
    bounded(async {
        let mut c = start(
            TestCluster::builder()
                .datanodes(2)
                .replication(2)
                .fsync(false)
                .edge(EdgeSpec::new("z1")),
        )
        .await;
        let client = c.client();
        client.create_bucket("edge").await.expect("bucket");
        let mut files = Vec::new();
        for n in 0..3u64 {
            let data = random_bytes(2 * MIB as usize + 17, 10 + n);
            put(
                &client,
                "edge",
                &format!("videos/v{n}"),
                &data,
                &chunked(MIB),
            )
            .await;
            files.push(data);
        }
        let other = random_bytes(MIB as usize, 20);
        put(&client, "edge", "other/x", &other, &chunked(MIB)).await;

        tracing::info!("--- blobctl admin edge warm edge/videos/");
        let cfg = c.client_config_in("z1").expect("config");
        let (ok, out, err) = blobctl(&cfg, &["admin", "edge", "warm", "edge/videos/", "--json"]);
        assert!(ok, "{err}");
        let r: serde_json::Value = serde_json::from_slice(&out).expect("json");
        assert_eq!(r["files"], 3);
        assert_eq!(r["chunks"], 9);
        assert_eq!(r["result"]["filled"], 9);
        let m = counts(&c, 0).await;
        assert_eq!(
            (m.fills, m.misses, m.memory_hits),
            (9.0, 0.0, 0.0),
            "warming is no read: {m:?}"
        );
        // Reads are now hits; the other prefix is not cached.
        let (ok, out, err) = blobctl(&cfg, &["cat", "edge/videos/v1"]);
        assert!(ok, "{err}");
        assert_eq!(sha256_hex(&out), sha256_hex(&files[1]));
        let m = counts(&c, 0).await;
        assert_eq!((m.memory_hits, m.misses), (3.0, 0.0), "{m:?}");
        let (ok, _, err) = blobctl(&cfg, &["admin", "edge", "warm", "edge/videos/"]);
        assert!(ok, "{err}");
        assert_eq!(
            counts(&c, 0).await.fills,
            9.0,
            "a second warm-up finds everything cached"
        );

        tracing::info!("--- a fresh edge fills its warm-up list at start");
        let list = c.root().join("warm.txt");
        let other_id = ChunkId::of(&other);
        std::fs::write(&list, format!("# warm-up\nedge/videos/v2\n{other_id}\n")).expect("list");
        c.kill_edge(0);
        std::fs::remove_dir_all(&c.edges[0].data).expect("wipe the edge");
        c.edges[0]
            .command
            .extend(["--warm-file".to_string(), list.display().to_string()]);
        c.restart_edge(0).expect("restart edge");
        // `fills` counts a fill when it starts: wait until none is still in
        // flight too, or a read below joins one (a miss, not a hit).
        blob_tests::wait_until(
            "warm-up at start",
            std::time::Duration::from_secs(30),
            || async {
                let in_flight = c
                    .metric(&c.edge_url(0), "blob_edge_fills_in_flight")
                    .await?;
                Ok(counts(&c, 0).await.fills >= 4.0 && in_flight == 0.0)
            },
        )
        .await
        .expect("warm-up");
        let m = counts(&c, 0).await;
        assert_eq!(m.fills, 4.0, "3 chunks of v2 and the listed id: {m:?}");
        let (ok, out, err) = blobctl(&cfg, &["cat", "edge/other/x"]);
        assert!(ok, "{err}");
        assert_eq!(sha256_hex(&out), sha256_hex(&other));
        let (ok, out, err) = blobctl(&cfg, &["cat", "edge/videos/v2"]);
        assert!(ok, "{err}");
        assert_eq!(sha256_hex(&out), sha256_hex(&files[2]));
        let m = counts(&c, 0).await;
        assert_eq!((m.memory_hits, m.misses), (4.0, 0.0), "{m:?}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn edge_zone_picks_the_readers_edge_else_the_nearest_else_the_first() {
    bounded(async {
        let c = start(
            TestCluster::builder()
                .datanodes(1)
                .replication(1)
                .fsync(false)
                .edge(EdgeSpec::new("eu-west-1a"))
                .edge(EdgeSpec::new("us-east-1a")),
        )
        .await;
        let client = c.client();
        client.create_bucket("edge").await.expect("bucket");
        let data = random_bytes(1000, 9);
        put(&client, "edge", "f", &data, &chunked(MIB)).await;
        let edge_of = |locs: &FileLocations| {
            let first = &locs.chunks[0].replicas[0];
            (first.edge.clone(), first.url.clone())
        };
        for (zone, want) in [
            ("us-east-1a", 1),
            ("eu-west-1a", 0),
            ("eu-west-1b", 0),
            ("us-east-2", 1),
            ("ap-south-1", 0),
        ] {
            let locs = c
                .client_in(zone)
                .locations("edge", "f")
                .await
                .expect("locations");
            let (got_zone, url) = edge_of(&locs);
            assert_eq!(
                got_zone.as_deref(),
                Some(c.edge_zones[want].as_str()),
                "reader in {zone}"
            );
            assert!(
                url.starts_with(&c.edge_url(want)),
                "reader in {zone}: {url}"
            );
            let got = fetch(&reqwest::Client::new(), &url, &[]).await;
            assert_eq!(body(&got), &data[..], "reader in {zone}");
        }
        // No zone named: the first configured edge.
        let locs = client.locations("edge", "f").await.expect("locations");
        assert_eq!(edge_of(&locs).0.as_deref(), Some("eu-west-1a"));
        // A direct reader gets the datanodes only, and reads from them.
        let locs = c
            .client_direct()
            .locations("edge", "f")
            .await
            .expect("locations");
        for r in &locs.chunks[0].replicas {
            assert!(
                r.edge.is_none(),
                "a direct reader was sent to an edge: {r:?}"
            );
            assert!(
                !c.edges.iter().any(|e| r.url.starts_with(&e.url())),
                "{}",
                r.url
            );
        }
        let mut out = Vec::new();
        c.client_direct()
            .download("edge", "f", &mut out, &Default::default())
            .await
            .expect("direct download");
        assert_eq!(out, data);
    })
    .await;
}
