//! The core benchmark: a local cluster of 3 datanodes (RF 3, fsync on), one
//! 1 GiB file up and down through `blobctl`, and 1,000 files of 64 KiB with
//! 16 in flight through the client library. Each result is printed beside
//! baselines measured in the same run on the same machine: the data disk's
//! write bandwidth with fsync (`dd conv=fsync`), one core's SHA-256 rate,
//! and a plain loopback HTTP transfer.
//!
//! The read rows compare, on the same file in the same run: `blobctl
//! download` to `/dev/null` straight from the datanodes, the same into a
//! local file, and through an edge (zone `bench`, as `blobd dev` starts
//! one) first cold (every chunk a miss, filled from the datanodes while it
//! streams) and then hot.
//!
//! With `--tls-compare` it measures only the cost of TLS: per run, a fresh
//! file of `--size-mib` up and down through `blobctl` (best of two reads,
//! straight from the datanodes) on a plain cluster and then on one with TLS
//! on every hop, each a fresh cluster of the same shape; medians over
//! `--runs` and the ratio to plain within each run.
//!
//! Run: `cargo run --release -p blob-tests --bin blob-bench [-- --size-mib 1024 --small 1000]`
//! or `… --bin blob-bench -- --tls-compare --size-mib 1024 --runs 3 [--no-fsync]`

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use blob_client::{DownloadOptions, UploadOptions};
use blob_tests::bench::{make_file, rss_mib, sibling};
use blob_tests::{random_bytes, EdgeSpec, TestCluster};
use sha2::Digest;

const MIB: f64 = 1024.0 * 1024.0;

struct Args {
    size_mib: u64,
    small: usize,
    in_flight: usize,
    tls_compare: bool,
    runs: usize,
    fsync: bool,
}

fn args() -> Result<Args> {
    let mut a = Args {
        size_mib: 1024,
        small: 1000,
        in_flight: 16,
        tls_compare: false,
        runs: 3,
        fsync: true,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut val = || it.next().context("flag needs a value");
        match flag.as_str() {
            "--size-mib" => a.size_mib = val()?.parse()?,
            "--small" => a.small = val()?.parse()?,
            "--in-flight" => a.in_flight = val()?.parse()?,
            "--tls-compare" => a.tls_compare = true,
            "--runs" => a.runs = val()?.parse::<usize>()?.max(1),
            "--no-fsync" => a.fsync = false,
            other => bail!(
                "unknown flag {other}; use --size-mib N, --small N, --in-flight N, \
                 or --tls-compare [--runs N] [--no-fsync]"
            ),
        }
    }
    Ok(a)
}

/// `dd` of `mib` MiB with fsync into `dir`; MiB/s.
fn dd_fsync(dir: &Path, mib: u64) -> Result<f64> {
    let target = dir.join("dd.bin");
    let t = Instant::now();
    let out = Command::new("dd")
        .arg("if=/dev/zero")
        .arg(format!("of={}", target.display()))
        .args(["bs=1M", &format!("count={mib}"), "conv=fsync"])
        .output()
        .context("running dd")?;
    if !out.status.success() {
        bail!("dd failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let secs = t.elapsed().as_secs_f64();
    let _ = std::fs::remove_file(target);
    Ok(mib as f64 / secs)
}

/// One core's SHA-256 over 256 MiB; MiB/s.
fn sha256_rate() -> f64 {
    let buf = random_bytes(64 << 20, 1);
    let t = Instant::now();
    let mut h = sha2::Sha256::new();
    for _ in 0..4 {
        h.update(&buf);
    }
    std::hint::black_box(h.finalize());
    256.0 / t.elapsed().as_secs_f64()
}

/// A plain HTTP GET of `mib` MiB over loopback (axum → reqwest); MiB/s.
async fn loopback_http(mib: u64) -> Result<f64> {
    let block = bytes::Bytes::from(vec![7u8; 1 << 20]);
    let app = axum::Router::new().route(
        "/blob",
        axum::routing::get(move || {
            let block = block.clone();
            async move {
                let stream = futures::stream::iter(
                    (0..mib).map(move |_| Ok::<_, std::io::Error>(block.clone())),
                );
                axum::body::Body::from_stream(stream)
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let t = Instant::now();
    let mut resp = reqwest::get(format!("http://{addr}/blob")).await?;
    let mut n = 0u64;
    while let Some(c) = resp.chunk().await? {
        n += c.len() as u64;
    }
    let secs = t.elapsed().as_secs_f64();
    server.abort();
    Ok(n as f64 / MIB / secs)
}

/// Runs blobctl; returns (seconds, peak RSS of the blobctl process in MiB).
fn blobctl(bin: &Path, config: &Path, args: &[&str]) -> Result<(f64, f64)> {
    let t = Instant::now();
    let status = Command::new(bin)
        .arg("--config")
        .arg(config)
        .arg("-q")
        .args(args)
        .status()?;
    let secs = t.elapsed().as_secs_f64();
    if !status.success() {
        bail!("blobctl {args:?} failed with {status}");
    }
    // ru_maxrss of waited-for children: the largest blobctl run so far.
    let usage = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_CHILDREN)?;
    Ok((secs, usage.max_rss() as f64 / 1024.0))
}

/// One file up and down (best of two reads) on a fresh cluster, plain or
/// with TLS on every hop; MiB/s each way.
async fn tls_round(
    a: &Args,
    tls: bool,
    input: &Path,
    blobd: &Path,
    blobctl_bin: &Path,
) -> Result<(f64, f64)> {
    let cluster = TestCluster::builder()
        .datanodes(3)
        .replication(3)
        .fsync(a.fsync)
        .tls(tls)
        .start(blobd)
        .await?;
    let config = cluster.client_config_direct()?;
    cluster.client_direct().create_bucket("bench").await?;
    let (up_s, _) = blobctl(
        blobctl_bin,
        &config,
        &["upload", input.to_str().context("utf8")?, "bench/big.bin"],
    )?;
    let mut down_s = f64::MAX;
    for _ in 0..2 {
        let (s, _) = blobctl(
            blobctl_bin,
            &config,
            &["download", "bench/big.bin", "/dev/null"],
        )?;
        down_s = down_s.min(s);
    }
    let out = cluster.root().join("out.bin");
    blobctl(
        blobctl_bin,
        &config,
        &["download", "bench/big.bin", out.to_str().context("utf8")?],
    )?;
    if blob_tests::sha256_file(&out)? != blob_tests::sha256_file(input)? {
        bail!("the downloaded file differs from the input (tls {tls})");
    }
    drop(cluster);
    Ok((a.size_mib as f64 / up_s, a.size_mib as f64 / down_s))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// `--tls-compare`: plain and TLS clusters back to back, per run.
async fn tls_compare(a: &Args, blobd: &Path, blobctl_bin: &Path) -> Result<()> {
    let work = tempfile::Builder::new()
        .prefix("blob-bench-tls-")
        .tempdir()
        .context("creating a work dir")?;
    let input = work.path().join("input.bin");
    let (mut plain, mut tls) = (Vec::new(), Vec::new());
    for run in 0..a.runs {
        eprintln!(
            "run {} of {}: a fresh {} MiB file…",
            run + 1,
            a.runs,
            a.size_mib
        );
        make_file(&input, a.size_mib, 100 + run as u64).await?;
        plain.push(tls_round(a, false, &input, blobd, blobctl_bin).await?);
        tls.push(tls_round(a, true, &input, blobd, blobctl_bin).await?);
        let (p, t) = (plain[run], tls[run]);
        eprintln!(
            "  plain up {:.1} down {:.1} MiB/s; TLS up {:.1} down {:.1} MiB/s",
            p.0, p.1, t.0, t.1
        );
    }
    let ratio = |i: usize| -> Vec<f64> {
        plain
            .iter()
            .zip(&tls)
            .map(|(p, t)| if i == 0 { t.0 / p.0 } else { t.1 / p.1 })
            .collect()
    };
    let col = |v: &[(f64, f64)], i: usize| -> Vec<f64> {
        v.iter().map(|x| if i == 0 { x.0 } else { x.1 }).collect()
    };
    println!(
        "
TLS on every hop: {} MiB per transfer, blobctl, 3 datanodes, RF 3, fsync {}, {} runs (median; ratio to plain in the same run)",
        a.size_mib,
        if a.fsync { "on" } else { "off" },
        a.runs
    );
    println!("  mode     upload MiB/s  vs plain  download MiB/s  vs plain");
    println!(
        "  plain    {:>12.1}      100%  {:>14.1}      100%",
        median(col(&plain, 0)),
        median(col(&plain, 1))
    );
    println!(
        "  TLS      {:>12.1}  {:>7.0}%  {:>14.1}  {:>7.0}%",
        median(col(&tls, 0)),
        100.0 * median(ratio(0)),
        median(col(&tls, 1)),
        100.0 * median(ratio(1))
    );
    for (i, (p, t)) in plain.iter().zip(&tls).enumerate() {
        println!(
            "  run {}: plain {:.1} / {:.1}, TLS {:.1} / {:.1} MiB/s (up / down)",
            i + 1,
            p.0,
            p.1,
            t.0,
            t.1
        );
    }
    Ok(())
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> Result<()> {
    let a = args()?;
    let blobd = sibling("test-blobd")?;
    let blobctl_bin = sibling("test-blobctl")?;
    if a.tls_compare {
        return tls_compare(&a, &blobd, &blobctl_bin).await;
    }
    let cluster = TestCluster::builder()
        .datanodes(3)
        .replication(3)
        .edge(EdgeSpec::new("bench").capacity(256 << 20, 4 << 30))
        .start(&blobd)
        .await?;
    let work = cluster.root().join("bench");
    std::fs::create_dir_all(&work)?;

    eprintln!("measuring baselines…");
    let dd = dd_fsync(cluster.root(), 512)?;
    let sha = sha256_rate();
    let lo = loopback_http(a.size_mib.max(256)).await?;

    eprintln!("preparing a {} MiB input file…", a.size_mib);
    let input = work.join("input.bin");
    make_file(&input, a.size_mib, 0).await?;
    // Straight from the datanodes: the cluster has an edge, which a reader
    // in no zone would otherwise be sent through.
    let config = cluster.client_config_direct()?;
    let c = cluster.client_direct();
    c.create_bucket("bench").await?;

    eprintln!("1 file of {} MiB…", a.size_mib);
    let (up_s, up_rss) = blobctl(
        &blobctl_bin,
        &config,
        &["upload", input.to_str().context("utf8")?, "bench/big.bin"],
    )?;
    // The first read after an upload competes with the datanodes'
    // writeback; the best of two is the direct figure.
    let mut down_s = f64::MAX;
    let mut down_rss = 0f64;
    for _ in 0..2 {
        let (s, rss) = blobctl(
            &blobctl_bin,
            &config,
            &["download", "bench/big.bin", "/dev/null"],
        )?;
        down_s = down_s.min(s);
        down_rss = down_rss.max(rss);
    }
    let out = work.join("out.bin");
    let (file_s, _) = blobctl(
        &blobctl_bin,
        &config,
        &["download", "bench/big.bin", out.to_str().context("utf8")?],
    )?;
    let same = blob_tests::sha256_file(&out)? == blob_tests::sha256_file(&input)?;
    let _ = std::fs::remove_file(&out);
    if !same {
        bail!("the downloaded file differs from the input");
    }
    let edge_config = cluster.client_config_in("bench")?;
    let mut edge_s = Vec::new();
    for _ in 0..2 {
        edge_s.push(
            blobctl(
                &blobctl_bin,
                &edge_config,
                &["download", "bench/big.bin", "/dev/null"],
            )?
            .0,
        );
    }
    let up = a.size_mib as f64 / up_s;
    let down = a.size_mib as f64 / down_s;
    let to_file = a.size_mib as f64 / file_s;
    let edge_cold = a.size_mib as f64 / edge_s[0];
    let edge_hot = a.size_mib as f64 / edge_s[1];

    eprintln!("{} files of 64 KiB, {} in flight…", a.small, a.in_flight);
    let sem = Arc::new(tokio::sync::Semaphore::new(a.in_flight));
    let opts = UploadOptions::default();
    let t = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..a.small {
        let (c, sem, opts) = (c.clone(), sem.clone(), opts.clone());
        tasks.push(tokio::spawn(async move {
            let _p = sem.acquire_owned().await?;
            let data = random_bytes(64 << 10, 50_000 + i as u64);
            c.upload(
                std::io::Cursor::new(data),
                "bench",
                &format!("small/{i:05}"),
                &opts,
            )
            .await?;
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let put_rate = a.small as f64 / t.elapsed().as_secs_f64();
    let t = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..a.small {
        let (c, sem) = (c.clone(), sem.clone());
        tasks.push(tokio::spawn(async move {
            let _p = sem.acquire_owned().await?;
            let mut sink = tokio::io::sink();
            c.download(
                "bench",
                &format!("small/{i:05}"),
                &mut sink,
                &DownloadOptions::default(),
            )
            .await?;
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let get_rate = a.small as f64 / t.elapsed().as_secs_f64();
    let nn_rss = cluster.namenode_pid().map_or(0.0, rss_mib);

    let chunk_mib = 8.0;
    let floor = dd.min(sha).min(lo);
    let rf = f64::from(cluster.replication());
    println!(
        "\nblobstore core benchmark: {} datanodes, RF {rf}, fsync {}, one machine\n",
        cluster.datanodes.len(),
        if cluster.fsync() { "on" } else { "off" }
    );
    println!("baselines (same run):");
    println!(
        "  disk write with fsync (dd 512 MiB)   {dd:>9.1} MiB/s   (÷{rf} replicas: {:.1})",
        dd / rf
    );
    println!("  SHA-256, one core                     {sha:>9.1} MiB/s");
    println!("  loopback HTTP GET                     {lo:>9.1} MiB/s\n");
    println!("results:");
    println!(
        "  {} MiB upload (blobctl)            {up:>9.1} MiB/s   {:.0}% of disk÷3 (goal ≥ 50%)",
        a.size_mib,
        100.0 * up / (dd / 3.0)
    );
    println!(
        "  {} MiB download (blobctl)          {down:>9.1} MiB/s   {:.0}% of min(baselines) {:.0} (goal ≥ 50%)",
        a.size_mib,
        100.0 * down / floor,
        floor
    );
    println!(
        "  {} MiB download to a file          {to_file:>9.1} MiB/s   {:.0}% of the download to /dev/null (goal ≥ 70%)",
        a.size_mib,
        100.0 * to_file / down
    );
    println!(
        "  {} MiB download, edge cold         {edge_cold:>9.1} MiB/s   {:.0}% of straight from the datanodes (goal ≥ 90%)",
        a.size_mib,
        100.0 * edge_cold / down
    );
    println!(
        "  {} MiB download, edge hot          {edge_hot:>9.1} MiB/s   {:.0}% of straight from the datanodes",
        a.size_mib,
        100.0 * edge_hot / down
    );
    println!(
        "  blobctl peak RSS                      {:>9.1} MiB     limit 8 × chunk + 64 = {:.0} MiB",
        up_rss.max(down_rss),
        8.0 * chunk_mib + 64.0
    );
    println!(
        "  64 KiB PUT, {} in flight            {put_rate:>9.1} files/s",
        a.in_flight
    );
    println!(
        "  64 KiB GET, {} in flight            {get_rate:>9.1} files/s",
        a.in_flight
    );
    println!(
        "  namenode RSS after {} files         {nn_rss:>9.1} MiB     limit 200 MiB",
        a.small
    );
    drop(cluster);
    Ok(())
}
