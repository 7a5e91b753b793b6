//! Edge cache benchmark: the edge against nginx's `proxy_cache` in front of
//! the same datanode, in one run on one machine, with the same chunks and
//! the same load generator; then the hit ratio of each eviction policy
//! under a Zipf(1.0) workload over ten times the cache's capacity; then
//! cold reads: a file never read before, fetched chunk by chunk (4 in
//! flight, each checked against its SHA-256) straight from the datanode,
//! then through an edge with a memory and a disk tier (fsync on) where
//! every chunk is a miss, then through it again (hits). Goal: a cold read
//! through the edge at ≥ 90% of the direct read.
//!
//! ```sh
//! cargo build --release -p blob-tests --bins
//! $CARGO_TARGET_DIR/release/edge-bench    # --chunks 16 --seconds 3 --zipf-requests 20000
//! ```
//!
//! nginx comes from Debian's package, installed here (idempotently) if it
//! is missing; the test suite does not need it. Not part of `cargo test`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use blob_client::UploadOptions;
use blob_edge::{Policy, PolicyKind};
use blob_tests::bench::sibling;
use blob_tests::{metric_value, random_bytes, EdgeSpec, TestCluster};
use rand::{Rng, SeedableRng};

const MIB: u64 = 1 << 20;
const CHUNK: u64 = 8 * MIB;
const RANGE: u64 = 256 << 10;

struct Args {
    chunks: usize,
    seconds: f64,
    zipf_requests: usize,
    zipf_capacity: usize,
    skip_nginx: bool,
    cold_mib: u64,
}

fn args() -> Result<Args> {
    let mut a = Args {
        chunks: 16,
        seconds: 3.0,
        zipf_requests: 20_000,
        zipf_capacity: 100,
        skip_nginx: false,
        cold_mib: 1024,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().context("missing value");
        match flag.as_str() {
            "--chunks" => a.chunks = value()?.parse()?,
            "--seconds" => a.seconds = value()?.parse()?,
            "--zipf-requests" => a.zipf_requests = value()?.parse()?,
            "--zipf-capacity" => a.zipf_capacity = value()?.parse()?,
            "--skip-nginx" => a.skip_nginx = true,
            "--cold-mib" => a.cold_mib = value()?.parse()?,
            other => bail!(
                "unknown flag {other}; flags: --chunks N --seconds S --zipf-requests N \
                 --zipf-capacity CHUNKS --skip-nginx --cold-mib N"
            ),
        }
    }
    Ok(a)
}

/// Whether this process runs as root (effective uid 0).
fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("Uid:"))?;
            Some(line.split_whitespace().nth(2)? == "0")
        })
        .unwrap_or(false)
}

/// nginx's binary, installed from Debian's package if missing.
fn nginx_binary() -> Result<PathBuf> {
    let found = || {
        ["/usr/sbin/nginx", "/usr/bin/nginx"]
            .iter()
            .map(PathBuf::from)
            .find(|p| p.exists())
    };
    if let Some(p) = found() {
        return Ok(p);
    }
    eprintln!("installing nginx (Debian package nginx-light) for the comparison");
    let sudo = if is_root() { vec![] } else { vec!["sudo"] };
    for args in [
        vec!["apt-get", "update", "-qq"],
        vec![
            "apt-get",
            "install",
            "-y",
            "-qq",
            "--no-install-recommends",
            "nginx-light",
        ],
    ] {
        let cmd: Vec<&str> = sudo.iter().copied().chain(args).collect();
        let status = Command::new(cmd[0])
            .args(&cmd[1..])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdout(Stdio::null())
            .status()
            .with_context(|| format!("running {}", cmd.join(" ")))?;
        if !status.success() {
            bail!("{} failed ({status})", cmd.join(" "));
        }
    }
    found().context("nginx is still missing after installing nginx-light")
}

/// nginx as a caching reverse proxy of one datanode: the cache key is the
/// chunk path (the signed query differs per URL), ranges are served from
/// the cached whole chunk, and concurrent misses wait for one fill
/// (`proxy_cache_lock`), as the edge does.
struct Nginx {
    child: Child,
    url: String,
}

impl Nginx {
    fn start(bin: &Path, dir: &Path, upstream: &str) -> Result<Nginx> {
        std::fs::create_dir_all(dir.join("cache"))?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let user = if is_root() { "user root;" } else { "" };
        let d = dir.display();
        let conf = format!(
            r#"{user}
worker_processes auto;
daemon off;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_requests 100000;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    proxy_cache_path {d}/cache levels=1:2 keys_zone=chunks:16m max_size=4g inactive=1d use_temp_path=off;
    upstream datanode {{ server {upstream}; keepalive 64; }}
    server {{
        listen 127.0.0.1:{port};
        location /v1/chunks/ {{
            proxy_pass http://datanode;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_cache chunks;
            proxy_cache_key $uri;
            proxy_cache_valid 200 365d;
            proxy_cache_lock on;
            proxy_buffering on;
            add_header X-Cache-Status $upstream_cache_status;
        }}
    }}
}}
"#
        );
        let path = dir.join("nginx.conf");
        std::fs::write(&path, conf)?;
        let log = std::fs::File::create(dir.join("stderr.log"))?;
        let child = Command::new(bin)
            .arg("-c")
            .arg(&path)
            .arg("-p")
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("starting nginx")?;
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                bail!(
                    "nginx did not start: {}",
                    std::fs::read_to_string(dir.join("stderr.log")).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(Nginx { child, url })
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One load run's figures.
struct Run {
    mib_s: f64,
    p50_ms: f64,
    p99_ms: f64,
    requests: usize,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// `clients` tasks GET the URLs (round robin from a random start; a
/// random 256 KiB range of each when `range`) for `seconds`; latency is
/// the time to the last body byte.
async fn load(urls: &[String], clients: usize, range: bool, seconds: f64) -> Result<Run> {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(clients.max(1))
        .tcp_nodelay(true)
        .build()?;
    let urls = Arc::new(urls.to_vec());
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let started = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|t| {
            let (http, urls) = (http.clone(), urls.clone());
            tokio::spawn(async move {
                let mut rng = rand::rngs::StdRng::seed_from_u64(t as u64);
                let mut lat = Vec::new();
                let mut bytes = 0u64;
                let mut i = rng.gen_range(0..urls.len());
                while Instant::now() < deadline {
                    i = (i + 1) % urls.len();
                    let mut req = http.get(&urls[i]);
                    let want = if range {
                        let start = rng.gen_range(0..(CHUNK - RANGE) / 4096) * 4096;
                        req = req.header("range", format!("bytes={start}-{}", start + RANGE - 1));
                        RANGE
                    } else {
                        CHUNK
                    };
                    let t0 = Instant::now();
                    let mut resp = req.send().await?;
                    if !resp.status().is_success() {
                        bail!("GET answered {}", resp.status());
                    }
                    let mut got = 0u64;
                    while let Some(f) = resp.chunk().await? {
                        got += f.len() as u64;
                    }
                    if got != want {
                        bail!("got {got} bytes, expected {want}");
                    }
                    lat.push(t0.elapsed().as_secs_f64() * 1000.0);
                    bytes += got;
                }
                Ok::<_, anyhow::Error>((lat, bytes))
            })
        })
        .collect();
    let mut lat = Vec::new();
    let mut bytes = 0u64;
    for t in tasks {
        let (l, b) = t.await??;
        lat.extend(l);
        bytes += b;
    }
    let elapsed = started.elapsed().as_secs_f64();
    lat.sort_by(f64::total_cmp);
    Ok(Run {
        mib_s: bytes as f64 / MIB as f64 / elapsed,
        p50_ms: percentile(&lat, 0.5),
        p99_ms: percentile(&lat, 0.99),
        requests: lat.len(),
    })
}

/// Fetches every URL once (fills the cache) and checks a second pass hits.
async fn warm(urls: &[String], hit_header: &str, hit_value: &str) -> Result<()> {
    let http = reqwest::Client::new();
    for pass in 0..2 {
        for u in urls {
            let resp = http.get(u).send().await?.error_for_status()?;
            let status = resp
                .headers()
                .get(hit_header)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string();
            let len = resp.bytes().await?.len() as u64;
            if len != CHUNK {
                bail!("warm-up got {len} bytes");
            }
            if pass == 1 && status != hit_value {
                bail!("second pass was not a hit ({hit_header}: {status:?})");
            }
        }
    }
    Ok(())
}

/// Zipf(s) over `n` items: inverse CDF by binary search.
struct Zipf {
    cdf: Vec<f64>,
}

impl Zipf {
    fn new(n: usize, s: f64) -> Self {
        let mut cdf = Vec::with_capacity(n);
        let mut sum = 0.0;
        for k in 1..=n {
            sum += 1.0 / (k as f64).powf(s);
            cdf.push(sum);
        }
        for c in &mut cdf {
            *c /= sum;
        }
        Self { cdf }
    }

    fn sample(&self, rng: &mut impl Rng) -> usize {
        let u: f64 = rng.gen();
        self.cdf.partition_point(|c| *c < u).min(self.cdf.len() - 1)
    }
}

/// The same Zipf sequence through the `Policy` code the edge runs, without
/// HTTP, at a larger scale.
/// Cache size of the simulated hit ratios, in chunks.
const SIM_CAPACITY: usize = 1000;
/// Requests in a simulated run.
const SIM_REQUESTS: usize = 1_000_000;
/// Distinct chunks per cache slot in a simulated run.
const SIM_UNIVERSE: usize = 10;

fn simulate(kind: PolicyKind, capacity: usize, requests: usize, seed: u64) -> f64 {
    let universe = capacity * SIM_UNIVERSE;
    let zipf = Zipf::new(universe, 1.0);
    // Popularity rank → a random chunk id, as chunk ids are.
    let ids: Vec<blob_common::ChunkId> = (0..universe)
        .map(|i| blob_common::ChunkId::of(&(i as u64).to_le_bytes()))
        .collect();
    let mut p = Policy::new(kind, capacity as u64);
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut hits = 0usize;
    for _ in 0..requests {
        let id = ids[zipf.sample(&mut rng)];
        if p.access(&id) {
            hits += 1;
        } else {
            let _ = p.insert(id, 1, false);
        }
    }
    hits as f64 / requests as f64
}

fn edge_counts(text: &str) -> (f64, f64) {
    (
        metric_value(text, "blob_edge_hits_total"),
        metric_value(text, "blob_edge_misses_total"),
    )
}

#[tokio::main]
async fn main() -> Result<()> {
    let a = args()?;
    let nginx_bin = if a.skip_nginx {
        None
    } else {
        Some(nginx_binary()?)
    };
    let blobd = sibling("test-blobd")?;
    let zipf_chunk = 64 << 10;
    let zipf_cap = a.zipf_capacity as u64 * zipf_chunk;
    let mut builder = TestCluster::builder()
        .datanodes(1)
        .replication(1)
        .fsync(false)
        .edge(EdgeSpec::new("bench").policy("lru").capacity(1 << 30, 0));
    for kind in PolicyKind::ALL {
        builder = builder.edge(
            EdgeSpec::new(&format!("zipf-{kind}"))
                .policy(kind.name())
                .capacity(zipf_cap, 0),
        );
    }
    // Cold reads: tiers as `blobd dev` sizes them, TinyLFU.
    let cold_edge = 1 + PolicyKind::ALL.len();
    builder = builder.edge(EdgeSpec::new("cold").capacity(256 << 20, 4 << 30));
    let cluster = builder.start(&blobd).await?;
    let client = cluster.client();
    client.create_bucket("bench").await?;
    let load_avg = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "blobstore edge benchmark: one machine ({} cores), one datanode (origin), one run; load average at start {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        load_avg.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
    );

    // Hot set: `chunks` distinct 8 MiB chunks, one file.
    let data: Vec<u8> = (0..a.chunks)
        .flat_map(|i| random_bytes(CHUNK as usize, 1000 + i as u64))
        .collect();
    let opts = UploadOptions {
        chunk_size: CHUNK,
        ..Default::default()
    };
    client
        .upload(std::io::Cursor::new(data), "bench", "hot", &opts)
        .await?;
    drop(opts);
    let locs = cluster.client_in("bench").locations("bench", "hot").await?;
    let edge_urls: Vec<String> = locs
        .chunks
        .iter()
        .map(|c| c.replicas[0].url.clone())
        .collect();
    let dn_urls: Vec<String> = locs
        .chunks
        .iter()
        .map(|c| c.replicas[1].url.clone())
        .collect();
    warm(&edge_urls, "x-blob-cache", "memory").await?;
    let nginx = match &nginx_bin {
        Some(bin) => {
            let dir = cluster.root().join("nginx");
            let upstream = cluster.datanodes[0].addr.to_string();
            let n = Nginx::start(bin, &dir, &upstream)?;
            Some(n)
        }
        None => None,
    };
    let nginx_urls: Vec<String> = match &nginx {
        Some(n) => dn_urls
            .iter()
            .map(|u| {
                let path = u.split("/v1/chunks/").nth(1).unwrap_or_default();
                format!("{}/v1/chunks/{path}", n.url)
            })
            .collect(),
        None => vec![],
    };
    if nginx.is_some() {
        warm(&nginx_urls, "x-cache-status", "HIT").await?;
    }
    println!(
        "1. hot hits: {} chunks of 8 MiB ({} MiB) cached in both; {:.0} s per cell; same load generator (reqwest, one task per client)",
        a.chunks,
        a.chunks as u64 * 8,
        a.seconds
    );
    println!(
        "  {:<22} {:>7}   {:>10} {:>9} {:>9} {:>8}",
        "request", "clients", "MiB/s", "p50 ms", "p99 ms", "requests"
    );
    let mut summary = Vec::new();
    for (range, what) in [(false, "whole 8 MiB chunk"), (true, "256 KiB range")] {
        for clients in [1usize, 16, 64] {
            let mut row = Vec::new();
            for (name, urls) in [("edge", &edge_urls), ("nginx", &nginx_urls)] {
                if urls.is_empty() {
                    continue;
                }
                let r = load(urls, clients, range, a.seconds).await?;
                println!(
                    "  {:<22} {:>7}   {:>10.1} {:>9.2} {:>9.2} {:>8}   {name}",
                    what, clients, r.mib_s, r.p50_ms, r.p99_ms, r.requests
                );
                row.push(r);
            }
            if row.len() == 2 {
                summary.push((
                    what,
                    clients,
                    row[0].mib_s / row[1].mib_s,
                    row[0].p99_ms / row[1].p99_ms,
                ));
            }
        }
    }
    if !summary.is_empty() {
        println!("  edge vs nginx (goal: throughput ≥ 1.00×, p99 ≤ 1.00×):");
        for (what, clients, tput, p99) in &summary {
            println!("    {what:<22} {clients:>3} clients: throughput {tput:.2}×, p99 {p99:.2}×");
        }
    }
    let edge_text = reqwest::get(format!("{}/metrics", cluster.edge_url(0)))
        .await?
        .text()
        .await?;
    let (hits, misses) = edge_counts(&edge_text);
    println!("  edge counters over the whole run: {hits} hits, {misses} misses");
    drop(nginx);

    // Zipf hit ratios through real edges: the same request sequence to each.
    let universe = a.zipf_capacity * 10;
    println!(
        "2. Zipf(1.0) hit ratio: {} requests over {universe} chunks of 64 KiB, cache of {} chunks (memory tier only), 4 clients",
        a.zipf_requests, a.zipf_capacity
    );
    let zdata = random_bytes(universe * zipf_chunk as usize, 77);
    let opts = UploadOptions {
        chunk_size: zipf_chunk,
        ..Default::default()
    };
    client
        .upload(std::io::Cursor::new(zdata), "bench", "zipf", &opts)
        .await?;
    let zipf = Zipf::new(universe, 1.0);
    let mut rng = rand::rngs::StdRng::seed_from_u64(42);
    // Rank → chunk index through a fixed shuffle, so popularity is not
    // tied to the order of the chunks in the file.
    let mut order: Vec<usize> = (0..universe).collect();
    for i in (1..order.len()).rev() {
        order.swap(i, rng.gen_range(0..=i));
    }
    let sequence: Vec<usize> = (0..a.zipf_requests)
        .map(|_| order[zipf.sample(&mut rng)])
        .collect();
    println!("  {:<10} {:>10} {:>10}", "policy", "HTTP", "simulated");
    let mut ratios = Vec::new();
    for (i, kind) in PolicyKind::ALL.into_iter().enumerate() {
        let zone = format!("zipf-{kind}");
        let locs = cluster.client_in(&zone).locations("bench", "zipf").await?;
        let urls: Arc<Vec<String>> = Arc::new(
            locs.chunks
                .iter()
                .map(|c| c.replicas[0].url.clone())
                .collect(),
        );
        let seq = Arc::new(sequence.clone());
        let http = reqwest::Client::new();
        let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let tasks: Vec<_> = (0..4)
            .map(|_| {
                let (http, urls, seq, next) =
                    (http.clone(), urls.clone(), seq.clone(), next.clone());
                tokio::spawn(async move {
                    loop {
                        let k = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(&c) = seq.get(k) else {
                            return Ok::<_, anyhow::Error>(());
                        };
                        let b = http
                            .get(&urls[c])
                            .send()
                            .await?
                            .error_for_status()?
                            .bytes()
                            .await?;
                        if b.len() as u64 != zipf_chunk {
                            bail!("short body");
                        }
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await??;
        }
        let text = reqwest::get(format!("{}/metrics", cluster.edge_url(i + 1)))
            .await?
            .text()
            .await?;
        let (h, m) = edge_counts(&text);
        let http_ratio = h / (h + m);
        let sim = simulate(kind, SIM_CAPACITY, SIM_REQUESTS, 7);
        println!(
            "  {:<10} {:>9.1}% {:>9.1}%",
            kind.name(),
            http_ratio * 100.0,
            sim * 100.0
        );
        ratios.push((kind, http_ratio, sim));
    }
    println!(
        "  (simulated: the same Policy code without HTTP, cache of {SIM_CAPACITY} chunks, {} chunks, {SIM_REQUESTS} requests)",
        SIM_CAPACITY * SIM_UNIVERSE
    );
    let get = |k: PolicyKind| {
        ratios
            .iter()
            .find(|r| r.0 == k)
            .map_or((0.0, 0.0), |r| (r.1, r.2))
    };
    let (t, ts) = get(PolicyKind::Tinylfu);
    let (l, ls) = get(PolicyKind::Lru);
    println!(
        "  TinyLFU vs LRU (goal: above): HTTP {:+.1} points, simulated {:+.1} points",
        (t - l) * 100.0,
        (ts - ls) * 100.0
    );

    // Cold reads.
    let cold_mib = a.cold_mib;
    println!(
        "3. cold reads: one file of {cold_mib} MiB never read before, chunk by chunk, {COLD_IN_FLIGHT} in flight, each body checked against its SHA-256"
    );
    let cold = random_bytes((cold_mib * MIB) as usize, 4242);
    let opts = UploadOptions {
        chunk_size: CHUNK,
        ..Default::default()
    };
    client
        .upload(std::io::Cursor::new(cold), "bench", "cold", &opts)
        .await?;
    let locs = cluster.client_in("cold").locations("bench", "cold").await?;
    let via_edge: Vec<String> = locs
        .chunks
        .iter()
        .map(|c| c.replicas[0].url.clone())
        .collect();
    let direct: Vec<String> = locs
        .chunks
        .iter()
        .map(|c| c.replicas[1].url.clone())
        .collect();
    let before = reqwest::get(format!("{}/metrics", cluster.edge_url(cold_edge)))
        .await?
        .text()
        .await?;
    let direct_rate = read_all(&direct).await?;
    let cold_rate = read_all(&via_edge).await?;
    let hot_rate = read_all(&via_edge).await?;
    let after = reqwest::get(format!("{}/metrics", cluster.edge_url(cold_edge)))
        .await?
        .text()
        .await?;
    let misses = metric_value(&after, "blob_edge_misses_total")
        - metric_value(&before, "blob_edge_misses_total");
    let skipped = metric_value(&after, "blob_edge_disk_skipped_total");
    println!(
        "  {:<34} {:>9.1} MiB/s",
        "straight from the datanode", direct_rate
    );
    println!(
        "  {:<34} {:>9.1} MiB/s   {:.0}% of direct (goal ≥ 90%); {misses} misses, {skipped} fills skipped the disk tier",
        "through the edge, cold",
        cold_rate,
        100.0 * cold_rate / direct_rate
    );
    println!(
        "  {:<34} {:>9.1} MiB/s   {:.0}% of direct",
        "through the edge, hot",
        hot_rate,
        100.0 * hot_rate / direct_rate
    );
    Ok(())
}

/// Chunks read at once by the cold-read rows (a downloading client's
/// default parallelism).
const COLD_IN_FLIGHT: usize = 4;

/// GETs every URL once, [`COLD_IN_FLIGHT`] at a time, checking each body's
/// SHA-256 against the chunk id in its URL; MiB/s.
async fn read_all(urls: &[String]) -> Result<f64> {
    use futures::StreamExt;
    use sha2::Digest;
    let http = reqwest::Client::builder().tcp_nodelay(true).build()?;
    let started = Instant::now();
    let mut reads = futures::stream::iter(urls.iter().cloned())
        .map(|u| {
            let http = http.clone();
            tokio::spawn(async move {
                let id = u
                    .split("/v1/chunks/")
                    .nth(1)
                    .and_then(|r| r.split('?').next())
                    .unwrap_or_default()
                    .to_string();
                let mut resp = http.get(&u).send().await?.error_for_status()?;
                let mut sha = sha2::Sha256::new();
                let mut got = 0u64;
                while let Some(f) = resp.chunk().await? {
                    sha.update(&f);
                    got += f.len() as u64;
                }
                if hex::encode(sha.finalize()) != id {
                    bail!("a chunk's bytes do not hash to its id");
                }
                anyhow::Ok(got)
            })
        })
        .buffered(COLD_IN_FLIGHT);
    let mut bytes = 0u64;
    while let Some(r) = reads.next().await {
        bytes += r??;
    }
    Ok(bytes as f64 / MIB as f64 / started.elapsed().as_secs_f64())
}
