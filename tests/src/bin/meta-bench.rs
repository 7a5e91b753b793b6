//! Metadata throughput: files created and committed per second through the
//! client library with N in flight (default 16), on a local cluster of 3
//! datanodes (RF 3, fsync on). Two kinds of file: empty ones (pure
//! metadata: open a session, commit) and 4 KiB ones (plus one chunk PUT and
//! its receipt). Printed beside the same run's baseline: how many fsyncs
//! per second one thread gets on the namenode's disk, the bound of a
//! namenode that syncs once per operation; group commit goes past it.
//!
//! Run: `cargo run --release -p blob-tests --bin meta-bench [-- --files 2000 --in-flight 16]`
//! Add `--blobd PATH` to run the cluster on another build of `blobd` (to
//! compare two versions on the same machine in the same window).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use blob_client::UploadOptions;
use blob_tests::bench::sibling;
use blob_tests::{random_bytes, TestCluster};

struct Args {
    files: usize,
    in_flight: usize,
    blobd: Option<PathBuf>,
}

fn args() -> Result<Args> {
    let mut a = Args {
        files: 2000,
        in_flight: 16,
        blobd: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut val = || it.next().context("flag needs a value");
        match flag.as_str() {
            "--files" => a.files = val()?.parse()?,
            "--in-flight" => a.in_flight = val()?.parse()?,
            "--blobd" => a.blobd = Some(PathBuf::from(val()?)),
            other => bail!("unknown flag {other}; use --files N, --in-flight N, --blobd PATH"),
        }
    }
    Ok(a)
}

/// One thread writing 4 KiB and fsyncing, for one second: fsyncs/s.
fn fsync_rate(dir: &Path) -> Result<f64> {
    let path = dir.join("fsync-probe");
    let mut f = std::fs::File::create(&path)?;
    let block = [7u8; 4096];
    let t = Instant::now();
    let mut n = 0u64;
    while t.elapsed() < Duration::from_secs(1) {
        f.write_all(&block)?;
        f.sync_data()?;
        n += 1;
    }
    let rate = n as f64 / t.elapsed().as_secs_f64();
    drop(f);
    std::fs::remove_file(&path)?;
    Ok(rate)
}

/// Uploads `files` files of `size` bytes, `in_flight` at once: files/s.
async fn run(
    c: &blob_client::Client,
    prefix: &str,
    files: usize,
    size: usize,
    in_flight: usize,
) -> Result<f64> {
    let sem = Arc::new(tokio::sync::Semaphore::new(in_flight));
    let t = Instant::now();
    let mut tasks = Vec::with_capacity(files);
    for i in 0..files {
        let (c, sem) = (c.clone(), sem.clone());
        let path = format!("{prefix}/{i:06}");
        tasks.push(tokio::spawn(async move {
            let _p = sem.acquire_owned().await?;
            let data = if size == 0 {
                Vec::new()
            } else {
                random_bytes(size, 90_000 + i as u64)
            };
            c.upload(
                std::io::Cursor::new(data),
                "meta",
                &path,
                &UploadOptions::default(),
            )
            .await?;
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(files as f64 / t.elapsed().as_secs_f64())
}

async fn wal_syncs(cluster: &TestCluster) -> Option<f64> {
    let text = reqwest::get(format!("{}/metrics", cluster.endpoint()))
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.contains("blob_namenode_wal_syncs")
        .then(|| blob_tests::metric_value(&text, "blob_namenode_wal_syncs"))
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> Result<()> {
    let a = args()?;
    let blobd = match &a.blobd {
        Some(p) => p.clone(),
        None => sibling("test-blobd")?,
    };
    let cluster = TestCluster::builder()
        .datanodes(3)
        .replication(3)
        .start(&blobd)
        .await?;
    let fsyncs = fsync_rate(cluster.root())?;
    let c = cluster.client();
    c.create_bucket("meta").await?;

    eprintln!("{} empty files, {} in flight…", a.files, a.in_flight);
    let syncs0 = wal_syncs(&cluster).await;
    let empty = run(&c, "empty", a.files, 0, a.in_flight).await?;
    let syncs1 = wal_syncs(&cluster).await;
    eprintln!("{} files of 4 KiB, {} in flight…", a.files, a.in_flight);
    let small = run(&c, "small", a.files, 4096, a.in_flight).await?;

    println!(
        "\nblobstore metadata benchmark: {} datanodes, RF {}, fsync {}, one machine",
        cluster.datanodes.len(),
        cluster.replication(),
        if cluster.fsync() { "on" } else { "off" }
    );
    println!("server: {}\n", blobd.display());
    println!("baseline (same run):");
    println!("  fsyncs/s, one thread, 4 KiB writes     {fsyncs:>9.0}   (one sync per operation caps a namenode here)\n");
    println!("results ({} in flight):", a.in_flight);
    println!(
        "  empty files created+committed          {empty:>9.0} files/s   {:.1}x the fsync baseline",
        empty / fsyncs
    );
    println!(
        "  4 KiB files (one chunk, RF 3)          {small:>9.0} files/s   {:.1}x the fsync baseline",
        small / fsyncs
    );
    match (syncs0, syncs1) {
        (Some(s0), Some(s1)) => println!(
            "  namenode WAL syncs per empty file      {:>9.2}   (group commit: two synced writes per file share syncs)",
            (s1 - s0) / a.files as f64
        ),
        _ => println!("  namenode WAL syncs per empty file            n/a   (this build does not count them)"),
    }
    drop(cluster);
    Ok(())
}
