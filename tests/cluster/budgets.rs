//! Nothing is read before authentication, no route buffers more than its
//! limit, every service keeps to its memory budget, and no read is ever
//! served as good when its bytes are not: floods of anonymous 250 MiB
//! bodies against every service (RSS measured per process), 413s that name
//! the limit, an S3 GET of an object with a lost chunk, and an edge
//! disk-tier range over a rotten block.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use blob_tests::bench::rss_mib;
use blob_tests::{random_bytes, sha256_hex, EdgeSpec, TestCluster};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::{bounded, chunked, put, start};

const MIB: u64 = 1 << 20;
/// Size of each body of a flood.
const FLOOD_BODY: u64 = 250 * MIB;
/// Requests of a flood, all at once.
const FLOOD_REQUESTS: usize = 8;
/// Most RSS growth a flood may cause in the service it hits.
const MAX_GROWTH_MIB: f64 = 64.0;

/// A request body.
#[derive(Clone)]
enum Payload {
    /// `prefix`, then zeros up to `len` bytes in all.
    Zeros {
        prefix: Vec<u8>,
        len: u64,
        chunked: bool,
    },
    /// These bytes.
    Bytes { data: Vec<u8>, chunked: bool },
}

impl Payload {
    fn zeros(len: u64, chunked: bool) -> Self {
        Payload::Zeros {
            prefix: Vec::new(),
            len,
            chunked,
        }
    }

    fn len(&self) -> u64 {
        match self {
            Payload::Zeros { len, .. } => *len,
            Payload::Bytes { data, .. } => data.len() as u64,
        }
    }

    fn chunked(&self) -> bool {
        match self {
            Payload::Zeros { chunked, .. } | Payload::Bytes { chunked, .. } => *chunked,
        }
    }

    /// Bytes `[at, at + n)` of the body.
    fn piece(&self, at: u64, n: usize) -> Vec<u8> {
        match self {
            Payload::Zeros { prefix, .. } => (0..n as u64)
                .map(|i| prefix.get((at + i) as usize).copied().unwrap_or(0))
                .collect(),
            Payload::Bytes { data, .. } => data[at as usize..at as usize + n].to_vec(),
        }
    }
}

/// What a raw HTTP/1.1 request saw.
#[derive(Debug)]
struct Answer {
    /// The response status, if one arrived.
    status: Option<u16>,
    /// The response head and body as received (at most 64 KiB).
    text: String,
    /// Body bytes written before the server answered or closed.
    body_sent: u64,
    /// How the exchange failed, if it did.
    error: Option<String>,
}

impl Answer {
    /// The server refused the body: an error status, or it closed the
    /// connection before taking all of it.
    fn refused(&self, len: u64) -> bool {
        match self.status {
            Some(s) => s >= 400,
            None => self.body_sent < len,
        }
    }
}

/// Where a response head ends, and the length of the body it declares.
fn parse_head(buf: &[u8]) -> Option<(usize, Option<u16>, Option<usize>)> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = String::from_utf8_lossy(&buf[..end]);
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok());
    let length = head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case("content-length")
            .then(|| v.trim().parse::<usize>().ok())
            .flatten()
    });
    Some((end, status, length))
}

/// Sends `method target` with `headers` and `payload` (declared with
/// Content-Length, or chunked) while reading the response, and stops
/// sending as soon as the server answers or closes.
async fn raw_request(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, String)],
    payload: &Payload,
) -> Answer {
    let stream = match TcpStream::connect(addr).await {
        Ok(s) => s,
        Err(e) => {
            return Answer {
                status: None,
                text: String::new(),
                body_sent: 0,
                error: Some(format!("connect: {e}")),
            }
        }
    };
    let (mut rd, mut wr) = stream.into_split();
    let (answered_tx, mut answered) = tokio::sync::watch::channel(false);
    let reader = tokio::spawn(async move {
        let mut buf = Vec::new();
        let mut tmp = vec![0u8; 16 << 10];
        loop {
            let n = match rd.read(&mut tmp).await {
                Ok(0) => return (buf, None),
                Ok(n) => n,
                Err(e) => return (buf, Some(e.to_string())),
            };
            buf.extend_from_slice(&tmp[..n]);
            if let Some((end, _, length)) = parse_head(&buf) {
                let _ = answered_tx.send(true);
                if length.is_some_and(|l| buf.len() >= end + l) || buf.len() >= 64 << 10 {
                    return (buf, None);
                }
            }
        }
    });
    let len = payload.len();
    let mut head = format!("{method} {target} HTTP/1.1\r\nHost: {addr}\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if payload.chunked() {
        head.push_str("Transfer-Encoding: chunked\r\n\r\n");
    } else {
        head.push_str(&format!("Content-Length: {len}\r\n\r\n"));
    }
    let mut sent = 0u64;
    let mut error = None;
    let write = async {
        wr.write_all(head.as_bytes()).await?;
        while sent < len {
            let n = (len - sent).min(MIB) as usize;
            let mut piece = payload.piece(sent, n);
            if payload.chunked() {
                let mut framed = format!("{n:x}\r\n").into_bytes();
                framed.append(&mut piece);
                framed.extend_from_slice(b"\r\n");
                piece = framed;
            }
            wr.write_all(&piece).await?;
            sent += n as u64;
        }
        if payload.chunked() {
            wr.write_all(b"0\r\n\r\n").await?;
        }
        wr.flush().await
    };
    tokio::select! {
        r = write => {
            if let Err(e) = r {
                error = Some(format!("sending: {e}"));
            }
        }
        _ = answered.wait_for(|a| *a) => {}
    }
    let (buf, read_error) = match tokio::time::timeout(Duration::from_secs(60), reader).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => (Vec::new(), Some(format!("reader task: {e}"))),
        Err(_) => (Vec::new(), Some("no answer within 60 s".into())),
    };
    Answer {
        status: parse_head(&buf).and_then(|(_, s, _)| s),
        text: String::from_utf8_lossy(&buf).into_owned(),
        body_sent: sent,
        error: error.or(read_error),
    }
}

/// The peak RSS of a process while a sampler runs (every 5 ms).
struct PeakRss {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<f64>,
}

impl PeakRss {
    fn start(pid: u32) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut peak = rss_mib(pid);
            while !s.load(Ordering::Relaxed) {
                peak = peak.max(rss_mib(pid));
                std::thread::sleep(Duration::from_millis(5));
            }
            peak.max(rss_mib(pid))
        });
        Self { stop, thread }
    }

    fn finish(self) -> f64 {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap_or(0.0)
    }
}

/// One request of a flood: method, target, extra headers, body.
type FloodRequest = (&'static str, String, Vec<(&'static str, String)>, Payload);

/// Sends every request at once to `addr`, measuring the RSS of `pid`;
/// checks each was refused and the growth stayed under the bound, and
/// prints what was measured.
async fn flood(name: &str, pid: u32, addr: SocketAddr, requests: Vec<FloodRequest>) {
    let before = rss_mib(pid);
    assert!(before > 0.0, "{name}: cannot read the RSS of pid {pid}");
    let peak = PeakRss::start(pid);
    let started = Instant::now();
    let answers = futures::future::join_all(requests.iter().map(|(m, t, h, p)| async move {
        let a = raw_request(addr, m, t, h, p).await;
        (p.len(), a)
    }))
    .await;
    let elapsed = started.elapsed();
    // Let anything the service still holds show in its RSS.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let peak = peak.finish();
    let after = rss_mib(pid);
    let growth = peak - before;
    let sent: u64 = answers.iter().map(|(_, a)| a.body_sent).sum();
    let statuses: Vec<String> = answers
        .iter()
        .map(|(_, a)| match a.status {
            Some(s) => s.to_string(),
            None => format!("closed ({})", a.error.as_deref().unwrap_or("EOF")),
        })
        .collect();
    println!(
        "{name}: {} unauthenticated {} MiB bodies in {:.2} s: answers {statuses:?}, {:.1} MiB of body sent in all; RSS {before:.1} MiB before, peak {peak:.1} MiB (growth {growth:.1} MiB), {after:.1} MiB after",
        answers.len(),
        FLOOD_BODY / MIB,
        elapsed.as_secs_f64(),
        sent as f64 / MIB as f64,
    );
    for (len, a) in &answers {
        assert!(
            a.refused(*len),
            "{name}: a flood request was not refused: {a:?}"
        );
    }
    assert!(
        growth < MAX_GROWTH_MIB,
        "{name}: RSS grew by {growth:.1} MiB (limit {MAX_GROWTH_MIB} MiB)"
    );
}

/// SigV4's date (`YYYYMMDD`) and time stamp (`YYYYMMDDTHHMMSSZ`) of a
/// Unix time.
fn amz_dates(secs: u64) -> (String, String) {
    // Civil date from days since the epoch (Howard Hinnant's algorithm).
    let days = (secs / 86_400) as i64 + 719_468;
    let era = days.div_euclid(146_097);
    let doe = days - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    let t = secs % 86_400;
    let day = format!("{y:04}{m:02}{d:02}");
    let stamp = format!("{day}T{:02}{:02}{:02}Z", t / 3600, t / 60 % 60, t % 60);
    (day, stamp)
}

fn addr_of(url: &str) -> SocketAddr {
    url.trim_start_matches("http://")
        .parse()
        .unwrap_or_else(|e| panic!("address of {url}: {e}"))
}

/// Half the requests declare their length, half are chunked.
fn halves(n: usize) -> impl Iterator<Item = bool> {
    (0..n).map(move |i| i >= n / 2)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn anonymous_250_mib_bodies_are_refused_by_every_service_within_64_mib() {
    bounded(async {
        let c = start(
            TestCluster::builder()
                .datanodes(1)
                .replication(1)
                .fsync(false)
                .s3(true)
                .edge(EdgeSpec::new("z1")),
        )
        .await;
        // Something real first, so each service is warmed up.
        let client = c.client();
        client.create_bucket("flood").await.expect("bucket");
        put(&client, "flood", "warm", &random_bytes(MIB as usize, 1), &chunked(MIB)).await;
        let chunk = blob_common::ChunkId::of(b"flood");

        tracing::info!("--- namenode: unsigned, and signed with a wrong signature");
        let forged = format!(
            "BLOB-HMAC-SHA256 Credential={}, Signature={}",
            c.access_key,
            "0".repeat(64)
        );
        let now = blob_common::now_secs().to_string();
        let requests = halves(FLOOD_REQUESTS)
            .enumerate()
            .map(|(i, chunked)| {
                let headers = if i % 2 == 0 {
                    vec![]
                } else {
                    vec![
                        ("Authorization", forged.clone()),
                        ("x-blob-date", now.clone()),
                        ("x-blob-content-sha256", "0".repeat(64)),
                    ]
                };
                let target = if i % 4 < 2 {
                    "/v1/datanodes/report".to_string()
                } else {
                    "/v1/uploads/0123/commit".to_string()
                };
                ("POST", target, headers, Payload::zeros(FLOOD_BODY, chunked))
            })
            .collect();
        let pid = c.namenode_pid().expect("namenode pid");
        flood("namenode", pid, addr_of(&c.endpoint()), requests).await;

        tracing::info!("--- datanode: chunk PUTs without a valid pre-signed URL");
        let requests = halves(FLOOD_REQUESTS)
            .enumerate()
            .map(|(i, chunked)| {
                let target = if i % 2 == 0 {
                    format!("/v1/chunks/{chunk}")
                } else {
                    format!("/v1/chunks/{chunk}?t=AAAA&s={}", "0".repeat(64))
                };
                ("PUT", target, vec![], Payload::zeros(FLOOD_BODY, chunked))
            })
            .collect();
        let dn = &c.datanodes[0];
        flood(
            "datanode",
            dn.pid().expect("datanode pid"),
            addr_of(&dn.url()),
            requests,
        )
        .await;

        tracing::info!("--- edge: warm requests (the one route with a body)");
        let requests = halves(FLOOD_REQUESTS)
            .map(|chunked| {
                (
                    "POST",
                    "/v1/warm".to_string(),
                    vec![("Content-Type", "application/json".to_string())],
                    Payload::zeros(FLOOD_BODY, chunked),
                )
            })
            .collect();
        let edge = &c.edges[0];
        flood(
            "edge",
            edge.pid().expect("edge pid"),
            addr_of(&edge.url()),
            requests,
        )
        .await;

        tracing::info!("--- S3 gateway: anonymous PUTs, PUTs with a forged SigV4 signature, browser-form POSTs");
        let (day, stamp) = amz_dates(blob_common::now_secs());
        let forged = format!(
            "AWS4-HMAC-SHA256 Credential={}/{day}/us-east-1/s3/aws4_request, SignedHeaders=host;x-amz-content-sha256;x-amz-date, Signature={}",
            c.access_key,
            "0".repeat(64)
        );
        let form_prefix = b"--B\r\nContent-Disposition: form-data; name=\"key\"\r\n\r\nk\r\n--B\r\nContent-Disposition: form-data; name=\"file\"; filename=\"f\"\r\nContent-Type: application/octet-stream\r\n\r\n".to_vec();
        let requests = halves(FLOOD_REQUESTS)
            .enumerate()
            .map(|(i, chunked)| {
                if i % 4 == 0 {
                    (
                        "PUT",
                        format!("/flood/anon-{i}"),
                        vec![],
                        Payload::zeros(FLOOD_BODY, chunked),
                    )
                } else if i % 4 == 2 {
                    (
                        "PUT",
                        format!("/flood/forged-{i}"),
                        vec![
                            ("Authorization", forged.clone()),
                            ("x-amz-date", stamp.clone()),
                            ("x-amz-content-sha256", "UNSIGNED-PAYLOAD".to_string()),
                        ],
                        Payload::zeros(FLOOD_BODY, chunked),
                    )
                } else {
                    (
                        "POST",
                        "/flood".to_string(),
                        vec![(
                            "Content-Type",
                            "multipart/form-data; boundary=B".to_string(),
                        )],
                        Payload::Zeros {
                            prefix: form_prefix.clone(),
                            len: FLOOD_BODY,
                            chunked,
                        },
                    )
                }
            })
            .collect();
        let s3 = c.s3.as_ref().expect("s3 gateway");
        flood(
            "s3",
            s3.pid().expect("s3 pid"),
            addr_of(&s3.url()),
            requests,
        )
        .await;

        // Nothing of the floods was stored, and the store still works.
        let listed = client
            .list_files("flood", &Default::default())
            .await
            .expect("list");
        assert_eq!(listed.files.len(), 1, "{listed:?}");
        let again = crate::get(&client, "flood", "warm").await;
        assert_eq!(again.len(), MIB as usize);
    })
    .await;
}

/// A namenode request signed by the admin key, with `body`.
fn signed(c: &TestCluster, method: &str, path: &str, body: &[u8]) -> Vec<(&'static str, String)> {
    let h = blob_common::auth::sign(
        &c.access_key,
        c.secret_key.as_bytes(),
        method,
        path,
        "",
        blob_common::now_secs(),
        body,
    );
    vec![
        ("Authorization", h.authorization),
        ("x-blob-date", h.date),
        ("x-blob-content-sha256", h.content_sha256),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bodies_over_a_route_limit_get_413_naming_the_limit() {
    bounded(async {
        let c = start(
            TestCluster::builder()
                .datanodes(1)
                .replication(1)
                .fsync(false)
                .edge(EdgeSpec::new("z1")),
        )
        .await;
        let nn = addr_of(&c.endpoint());
        let big = random_bytes(9 * MIB as usize, 7);
        let commit = "/v1/uploads/0123/commit";
        for chunked in [false, true] {
            let got = raw_request(
                nn,
                "POST",
                commit,
                &signed(&c, "POST", commit, &big),
                &Payload::Bytes {
                    data: big.clone(),
                    chunked,
                },
            )
            .await;
            println!(
                "namenode commit of {} MiB ({}): {:?}, {:.1} MiB of body taken",
                big.len() >> 20,
                if chunked {
                    "chunked"
                } else {
                    "declared length"
                },
                got.status,
                got.body_sent as f64 / MIB as f64
            );
            assert_eq!(got.status, Some(413), "{got:?}");
            assert!(got.text.contains("limit of 8388608 bytes"), "{}", got.text);
            if !chunked {
                // A declared length over the limit is refused before the
                // body is read: the answer comes before most of it is sent.
                assert!(got.body_sent < big.len() as u64, "{got:?}");
            }
        }
        // A small route has a small limit ...
        let rename = "/v1/rename";
        let junk = vec![b' '; 100 << 10];
        let got = raw_request(
            nn,
            "POST",
            rename,
            &signed(&c, "POST", rename, &junk),
            &Payload::Bytes {
                data: junk,
                chunked: false,
            },
        )
        .await;
        assert_eq!(got.status, Some(413), "{got:?}");
        assert!(got.text.contains("limit of 65536 bytes"), "{}", got.text);
        // ... under which a body is read and checked as usual.
        let junk = vec![b' '; 60 << 10];
        let got = raw_request(
            nn,
            "POST",
            rename,
            &signed(&c, "POST", rename, &junk),
            &Payload::Bytes {
                data: junk,
                chunked: true,
            },
        )
        .await;
        assert_eq!(got.status, Some(400), "{got:?}");
        assert!(got.text.contains("malformed JSON"), "{}", got.text);
        // A body that does not match its signed hash is refused.
        let body = b"{}".to_vec();
        let mut headers = signed(&c, "POST", rename, b"[]");
        headers.retain(|(k, _)| *k != "x-blob-content-sha256");
        headers.push((
            "x-blob-content-sha256",
            blob_common::auth::body_sha256(b"[]"),
        ));
        let got = raw_request(
            nn,
            "POST",
            rename,
            &headers,
            &Payload::Bytes {
                data: body,
                chunked: false,
            },
        )
        .await;
        assert_eq!(got.status, Some(400), "{got:?}");
        assert!(got.text.contains("BadDigest"), "{}", got.text);

        let warm = random_bytes(5 * MIB as usize, 8);
        for chunked in [false, true] {
            let got = raw_request(
                addr_of(&c.edge_url(0)),
                "POST",
                "/v1/warm",
                &[],
                &Payload::Bytes {
                    data: warm.clone(),
                    chunked,
                },
            )
            .await;
            assert_eq!(got.status, Some(413), "{got:?}");
            assert!(got.text.contains("limit of 4194304 bytes"), "{}", got.text);
        }
    })
    .await;
}

/// What an HTTP GET delivered.
#[derive(Debug)]
enum Delivered {
    /// An error status.
    Status(u16),
    /// 200, then the connection failed before the declared end.
    Aborted { status: u16, error: String },
    /// 200 and a body that ended cleanly.
    Clean { status: u16, len: usize },
}

#[test]
fn amz_dates_are_civil_dates() {
    assert_eq!(amz_dates(0), ("19700101".into(), "19700101T000000Z".into()));
    assert_eq!(
        amz_dates(1_709_210_096),
        ("20240229".into(), "20240229T123456Z".into())
    );
}

async fn deliver(url: &str) -> Delivered {
    let resp = reqwest::get(url)
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = resp.status().as_u16();
    if status >= 300 {
        return Delivered::Status(status);
    }
    match resp.bytes().await {
        Ok(b) => Delivered::Clean {
            status,
            len: b.len(),
        },
        Err(e) => Delivered::Aborted {
            status,
            error: format!("{e:?}"),
        },
    }
}

fn presign(c: &TestCluster, key: &str) -> String {
    let out = std::process::Command::new("aws")
        .env("AWS_ENDPOINT_URL", c.s3_endpoint())
        .env("AWS_ACCESS_KEY_ID", &c.access_key)
        .env("AWS_SECRET_ACCESS_KEY", &c.secret_key)
        .env("AWS_REGION", "us-east-1")
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .env("AWS_CONFIG_FILE", "/nonexistent")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
        .args([
            "s3",
            "presign",
            &format!("s3://lost/{key}"),
            "--expires-in",
            "600",
        ])
        .output()
        .unwrap_or_else(|e| panic!("running aws: {e}"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn s3_get_of_an_object_with_a_lost_chunk_never_ends_cleanly() {
    bounded(async {
        let c = start(
            TestCluster::builder()
                .datanodes(2)
                .replication(2)
                .fsync(false)
                .s3(true),
        )
        .await;
        let client = c.client();
        client.create_bucket("lost").await.expect("bucket");
        // Lost in the middle (after bytes were sent), and at the start.
        for (seed, (key, lost)) in [("middle", 2usize), ("start", 0)].into_iter().enumerate() {
            // Distinct bytes, so no chunk is shared between objects.
            let data = random_bytes(5 * MIB as usize, 30 + seed as u64);
            put(&client, "lost", key, &data, &chunked(MIB)).await;
            let locs = client.locations("lost", key).await.expect("locations");
            assert_eq!(locs.chunks.len(), 5);
            let id = locs.chunks[lost].id;
            let mut removed = 0;
            for i in 0..c.datanodes.len() {
                if std::fs::remove_file(c.chunk_file(i, &id)).is_ok() {
                    removed += 1;
                }
            }
            assert_eq!(removed, 2, "chunk {lost} was on every datanode");
            let url = presign(&c, key);
            let got = deliver(&url).await;
            println!(
                "S3 GET of a {} MiB object whose chunk {lost} is lost on every replica: {got:?}",
                data.len() / MIB as usize
            );
            match &got {
                Delivered::Clean { status, len } => {
                    panic!("{key}: answered {status} with a {len}-byte body that ended cleanly")
                }
                Delivered::Aborted { status, error } => {
                    assert_eq!(*status, 200);
                    assert_ne!(
                        lost, 0,
                        "a loss before the first byte must be an error status, not 200 then {error}"
                    )
                }
                Delivered::Status(s) => assert!(*s >= 500, "{got:?}"),
            }
        }
        // An intact object still reads whole.
        let data = random_bytes(5 * MIB as usize, 40);
        put(&client, "lost", "whole", &data, &chunked(MIB)).await;
        match deliver(&presign(&c, "whole")).await {
            Delivered::Clean { status: 200, len } => assert_eq!(len, data.len()),
            other => panic!("intact object: {other:?}"),
        }
    })
    .await;
}

/// Waits (up to 10 s) for a file to exist.
async fn wait_for_file(path: &std::path::Path) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !path.exists() {
        assert!(
            Instant::now() < deadline,
            "{} never appeared",
            path.display()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The edge's count of disk-tier files that failed verification.
async fn disk_corrupt(c: &TestCluster) -> f64 {
    c.metric(&c.edge_url(0), "blob_edge_disk_corrupt_total")
        .await
        .expect("edge metrics")
}

/// Flips one bit of a file at `at`.
fn flip(path: &std::path::Path, at: u64) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap_or_else(|e| panic!("opening {}: {e}", path.display()));
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, at)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    f.write_all_at(&[b[0] ^ 0x10], at)
        .unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn edge_disk_tier_never_serves_a_rotten_block_as_good_bytes() {
    bounded(async {
        let c = start(
            TestCluster::builder()
                .datanodes(1)
                .replication(1)
                .fsync(false)
                .edge(EdgeSpec::new("z1").policy("lru").capacity(0, 64 * MIB)),
        )
        .await;
        let client = c.client();
        client.create_bucket("rot").await.expect("bucket");
        let data = random_bytes(3 * MIB as usize, 5);
        put(&client, "rot", "f", &data, &chunked(3 * MIB)).await;
        let locs = c
            .client_in("z1")
            .locations("rot", "f")
            .await
            .expect("locations");
        let chunk = &locs.chunks[0];
        let url = chunk.replicas[0].url.clone();
        assert_eq!(chunk.replicas[0].edge.as_deref(), Some("z1"));
        let hex = chunk.id.to_string();
        let file = c.edges[0]
            .data
            .join("chunks")
            .join(&hex[..2])
            .join(&hex);
        let http = reqwest::Client::new();
        let get = |range: Option<(u64, u64)>| {
            let mut req = http.get(&url);
            if let Some((a, b)) = range {
                req = req.header(reqwest::header::RANGE, format!("bytes={a}-{}", b - 1));
            }
            async move {
                let resp = req.send().await.expect("GET");
                let status = resp.status().as_u16();
                let source = resp
                    .headers()
                    .get("x-blob-cache")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_string();
                (status, source, resp.bytes().await.map(|b| b.to_vec()))
            }
        };
        let (status, source, body) = get(None).await;
        assert_eq!((status, source.as_str()), (200, "miss"));
        assert_eq!(body.as_deref().ok(), Some(&data[..]));
        wait_for_file(&file).await;
        let (_, source, body) = get(None).await;
        assert_eq!(source, "disk");
        assert_eq!(sha256_hex(&body.expect("disk hit")), sha256_hex(&data));

        tracing::info!("--- a range over a rotten block: filled again, never the bad bytes");
        let block = 64 * 1024u64;
        flip(&file, 20 * block + 7);
        let want = (20 * block, 21 * block);
        let (status, source, body) = get(Some(want)).await;
        println!("edge range over a rotten disk-tier block: {status}, served from {source:?}");
        assert_eq!(status, 206);
        assert_ne!(source, "disk", "a rotten block was served from the disk tier");
        assert_eq!(
            body.as_deref().ok(),
            Some(&data[want.0 as usize..want.1 as usize])
        );
        assert_eq!(disk_corrupt(&c).await, 1.0);

        tracing::info!("--- a whole read that meets a rotten block after its first frame: aborted");
        wait_for_file(&file).await;
        flip(&file, 2 * MIB + 5);
        let (status, source, body) = get(None).await;
        println!(
            "edge whole read with a rotten block in its third MiB: {status} from {source:?}, body {}",
            match &body {
                Ok(b) => format!("ended cleanly after {} bytes", b.len()),
                Err(e) => format!("aborted ({e})"),
            }
        );
        assert_eq!((status, source.as_str()), (200, "disk"));
        assert!(body.is_err(), "the body ended cleanly");
        assert_eq!(disk_corrupt(&c).await, 2.0);
        // The next read fills it again, whole and good.
        let (_, source, body) = get(None).await;
        assert_eq!(source, "miss");
        assert_eq!(body.as_deref().ok(), Some(&data[..]));
    })
    .await;
}
