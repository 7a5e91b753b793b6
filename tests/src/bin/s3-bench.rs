//! The S3 gateway benchmark: one local cluster of 3 datanodes (RF 3, fsync
//! on) with its S3 gateway, and in the same run:
//!
//! 1. one large object (1 GiB by default, `--size-mib`) per tool and run
//!    (`--runs`, default 3; tools back to back in each run) up and down through
//!    `blobctl` (the baseline), `aws s3 cp` at its defaults, and boto3's
//!    concurrent transfer manager (`TransferConfig(max_concurrency=8 and 16,
//!    multipart_chunksize=8 MiB)`, tests/s3/bench_sdk.py), each as MiB/s and
//!    a ratio to blobctl's (goal: S3 ≥ 80% of blobctl): the best run of
//!    each, and the median over runs of the ratio within a run;
//! 2. 64 KiB objects (`--small N`, default 1,000) PUT then GET at 16 and 64
//!    concurrent requests through boto3 (threads, one shared client) beside
//!    the client library: ops/s, p50 and p99 latency;
//! 3. the gateway's RSS, sampled every 200 ms, while it serves one object of
//!    `--big-mib` (default 10 GiB) to curl (one pre-signed GET) and to
//!    `aws s3 cp … -` (goal: flat);
//! 4. read paths (`--reads-only` runs just this part): per run, a fresh
//!    object downloaded with `aws s3 cp` through a gateway that reads
//!    straight from the datanodes, then through the default gateway, whose
//!    zone has an edge, cold (every chunk a miss) and hot; and 64 KiB GETs
//!    through each gateway beside the client library;
//! 5. encryption at rest (`--sse-only` runs just this part): per run, a
//!    fresh object up and down with `aws s3 cp` in clear, with SSE-S3 and
//!    with SSE-C, as MiB/s and a ratio to the clear one;
//! 6. versioning (`--versioning-only` runs just this part): 64 KiB PUTs and
//!    GETs in a bucket with versioning off and one with it enabled, the
//!    same keys written again each run, as ops/s and a ratio.
//!
//! The cluster runs two gateways: the default one, reading in the zone of
//! an edge (as `blobd dev` starts them), and one outside every zone.
//!
//! Every upload has its own content, so no upload is deduplicated against an
//! earlier one; downloads go to a file in the cluster's directory for every
//! tool. The big object is one 64 MiB random block repeated (whole chunks
//! repeat, so it stores 64 MiB and uploads at hashing speed), read back in
//! full on every GET.
//!
//! With the s3-rust-client helper built beside it (`cargo build --release -p
//! blob-tests --features sdk --bins`), parts 1 and 2 also run the AWS SDK
//! for Rust, a concurrent client that spends little CPU of its own.
//!
//! Needs `aws` on PATH and boto3 in `~/.cache/blobstore/venv` (`deploy/test.sh`
//! sets both up). Run:
//! `cargo run --release -p blob-tests --bin s3-bench [-- --size-mib 1024 --runs 3 --small 1000 --big-mib 10240]`

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use blob_client::{Client, DownloadOptions, UploadOptions};
use blob_tests::bench::{make_file, rss_mib, sibling};
use blob_tests::{random_bytes, sha256_file, EdgeSpec, TestCluster};

const SMALL: usize = 64 << 10;
const BLOCK_MIB: u64 = 64;

struct Args {
    size_mib: u64,
    runs: usize,
    small: usize,
    big_mib: u64,
    reads_only: bool,
    sse_only: bool,
    versioning_only: bool,
}

fn args() -> Result<Args> {
    let mut a = Args {
        size_mib: 1024,
        runs: 3,
        small: 1000,
        big_mib: 10240,
        reads_only: false,
        sse_only: false,
        versioning_only: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut val = || it.next().context("flag needs a value");
        match flag.as_str() {
            "--size-mib" => a.size_mib = val()?.parse()?,
            "--runs" => a.runs = val()?.parse()?,
            "--small" => a.small = val()?.parse()?,
            "--big-mib" => a.big_mib = val()?.parse()?,
            "--reads-only" => a.reads_only = true,
            "--sse-only" => a.sse_only = true,
            "--versioning-only" => a.versioning_only = true,
            other => {
                bail!(
                    "unknown flag {other}; use --size-mib N, --runs N, --small N, --big-mib N, \
                     --reads-only, --sse-only, --versioning-only"
                )
            }
        }
    }
    if a.size_mib == 0 || a.runs == 0 || a.small == 0 || a.big_mib == 0 {
        bail!("sizes and counts must be positive");
    }
    Ok(a)
}

fn venv_python() -> PathBuf {
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    PathBuf::from(home).join(".cache/blobstore/venv/bin/python")
}

fn sdk_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("s3/bench_sdk.py")
}

fn utf8(p: &Path) -> Result<&str> {
    p.to_str().context("non-UTF-8 path")
}

/// Whether `/dev/null` is still a character device.
fn dev_null_ok() -> bool {
    use std::os::unix::fs::FileTypeExt;
    std::fs::metadata("/dev/null").is_ok_and(|m| m.file_type().is_char_device())
}

/// A command with the cluster's S3 endpoint and admin keys in its env, as
/// tests/cluster/s3.rs sets them.
fn s3_cmd(c: &TestCluster, program: impl AsRef<std::ffi::OsStr>) -> Command {
    s3_cmd_at(c, &c.s3_endpoint(), program)
}

/// [`s3_cmd`] for the gateway at `endpoint`.
fn s3_cmd_at(c: &TestCluster, endpoint: &str, program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut cmd = Command::new(program);
    cmd.env("AWS_ENDPOINT_URL", endpoint)
        .env("AWS_ACCESS_KEY_ID", &c.access_key)
        .env("AWS_SECRET_ACCESS_KEY", &c.secret_key)
        .env("AWS_REGION", "us-east-1")
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .env("AWS_CONFIG_FILE", "/nonexistent")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent");
    cmd
}

/// Runs a command to completion; returns (seconds, stdout).
fn timed(mut cmd: Command) -> Result<(f64, String)> {
    let t = Instant::now();
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {cmd:?}"))?;
    let secs = t.elapsed().as_secs_f64();
    if !out.status.success() {
        bail!(
            "{cmd:?} failed ({}):\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok((secs, String::from_utf8_lossy(&out.stdout).into_owned()))
}

fn blobctl(bin: &Path, config: &Path, args: &[&str]) -> Result<f64> {
    let mut cmd = Command::new(bin);
    cmd.arg("--config").arg(config).arg("-q").args(args);
    Ok(timed(cmd)?.0)
}

fn aws(c: &TestCluster, args: &[&str]) -> Result<(f64, String)> {
    let mut cmd = s3_cmd(c, "aws");
    cmd.args(args);
    timed(cmd)
}

/// Runs tests/s3/bench_sdk.py; returns its JSON answer.
fn sdk(c: &TestCluster, args: &[&str]) -> Result<serde_json::Value> {
    let mut cmd = s3_cmd(c, venv_python());
    cmd.arg(sdk_script()).args(args);
    client_output(cmd)
}

/// Runs the s3-rust-client helper; returns its JSON answer.
fn client_json(c: &TestCluster, bin: &Path, args: &[&str]) -> Result<serde_json::Value> {
    let mut cmd = s3_cmd(c, bin);
    cmd.args(args);
    client_output(cmd)
}

fn client_output(cmd: Command) -> Result<serde_json::Value> {
    let (_, out) = timed(cmd)?;
    serde_json::from_str(out.trim()).with_context(|| format!("parsing the client's output {out:?}"))
}

fn num(v: &serde_json::Value, key: &str) -> Result<f64> {
    v[key]
        .as_f64()
        .with_context(|| format!("no number {key:?} in {v}"))
}

/// Free bytes on the file system holding `dir` (`df`).
fn free_bytes(dir: &Path) -> Result<u64> {
    let mut cmd = Command::new("df");
    cmd.args(["--output=avail", "-B1"]).arg(dir);
    let (_, out) = timed(cmd)?;
    out.lines()
        .nth(1)
        .and_then(|l| l.trim().parse().ok())
        .with_context(|| format!("reading df's answer {out:?}"))
}

fn file_len(p: &Path) -> u64 {
    std::fs::metadata(p).map_or(0, |m| m.len())
}

/// The gateway's pid: the process whose command line names this cluster's
/// `s3.addr` file (the harness keeps the child handle private).
fn gateway_pid(c: &TestCluster) -> Result<u32> {
    let addr_file = c.root().join("s3.addr").display().to_string();
    for entry in std::fs::read_dir("/proc")?.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        if args.first().is_some_and(|a| a.ends_with(b"test-blobd"))
            && args.get(1) == Some(&&b"s3"[..])
            && args.contains(&addr_file.as_bytes())
        {
            return Ok(pid);
        }
    }
    bail!("no gateway process found for {addr_file}")
}

/// Samples a process's VmRSS every 200 ms on its own thread.
struct RssSampler {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<Vec<f64>>,
}

/// RSS at start, the largest sample, the largest of the second half of the
/// samples (growth that keeps going shows there), at end; number of samples.
struct Rss {
    start: f64,
    max: f64,
    max_2nd_half: f64,
    end: f64,
    samples: usize,
}

impl RssSampler {
    fn start(pid: u32) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut samples = vec![rss_mib(pid)];
            while !flag.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(200));
                samples.push(rss_mib(pid));
            }
            samples
        });
        Self { stop, thread }
    }

    fn finish(self) -> Rss {
        self.stop.store(true, Ordering::Relaxed);
        let samples = self.thread.join().unwrap_or_default();
        Rss {
            start: samples.first().copied().unwrap_or(0.0),
            max: samples.iter().copied().fold(0.0, f64::max),
            max_2nd_half: samples[samples.len() / 2..]
                .iter()
                .copied()
                .fold(0.0, f64::max),
            end: samples.last().copied().unwrap_or(0.0),
            samples: samples.len(),
        }
    }
}

/// One concurrency level's PUT or GET result.
struct Ops {
    rate: f64,
    p50: f64,
    p99: f64,
}

fn ops_from(v: &serde_json::Value) -> Result<Ops> {
    Ok(Ops {
        rate: num(v, "ops_per_sec")?,
        p50: num(v, "p50_ms")?,
        p99: num(v, "p99_ms")?,
    })
}

/// Nearest-rank percentile of an ascending list.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = ((p / 100.0 * sorted.len() as f64).ceil() as usize).max(1);
    sorted[rank - 1]
}

fn ops(wall: f64, mut lat: Vec<f64>) -> Ops {
    lat.sort_by(f64::total_cmp);
    Ops {
        rate: lat.len() as f64 / wall,
        p50: percentile(&lat, 50.0),
        p99: percentile(&lat, 99.0),
    }
}

/// `n` PUTs then `n` GETs of 64 KiB through the client library with
/// `conc` in flight; per-op latency from permit to completion.
async fn lib_small(c: &Client, prefix: &str, n: usize, conc: usize) -> Result<(Ops, Ops)> {
    let sem = Arc::new(tokio::sync::Semaphore::new(conc));
    let bodies: Vec<Vec<u8>> = (0..n)
        .map(|i| random_bytes(SMALL, 9_000_000 + (conc * 100_000 + i) as u64))
        .collect();
    let t = Instant::now();
    let mut tasks = Vec::new();
    for (i, data) in bodies.into_iter().enumerate() {
        let (c, sem, key) = (c.clone(), sem.clone(), format!("{prefix}/{i:05}"));
        tasks.push(tokio::spawn(async move {
            let _p = sem.acquire_owned().await?;
            let t = Instant::now();
            c.upload(
                std::io::Cursor::new(data),
                "bench",
                &key,
                &UploadOptions::default(),
            )
            .await?;
            anyhow::Ok(t.elapsed().as_secs_f64() * 1000.0)
        }));
    }
    let mut lat = Vec::with_capacity(n);
    for t in tasks {
        lat.push(t.await??);
    }
    let put = ops(t.elapsed().as_secs_f64(), lat);
    let t = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..n {
        let (c, sem, key) = (c.clone(), sem.clone(), format!("{prefix}/{i:05}"));
        tasks.push(tokio::spawn(async move {
            let _p = sem.acquire_owned().await?;
            let t = Instant::now();
            let mut sink = tokio::io::sink();
            c.download("bench", &key, &mut sink, &DownloadOptions::default())
                .await?;
            anyhow::Ok(t.elapsed().as_secs_f64() * 1000.0)
        }));
    }
    let mut lat = Vec::with_capacity(n);
    for t in tasks {
        lat.push(t.await??);
    }
    Ok((put, ops(t.elapsed().as_secs_f64(), lat)))
}

/// Uploads a `mib` MiB object made of one 64 MiB random block repeated,
/// fed to `blobctl upload -` from memory; seconds.
fn upload_repeated(bin: &Path, config: &Path, mib: u64, target: &str) -> Result<f64> {
    let block = random_bytes((BLOCK_MIB as usize) << 20, 777);
    let t = Instant::now();
    let mut child = Command::new(bin)
        .arg("--config")
        .arg(config)
        .args(["-q", "upload", "-", target])
        .stdin(Stdio::piped())
        .spawn()
        .context("starting blobctl upload -")?;
    let mut stdin = child.stdin.take().context("blobctl stdin")?;
    let mut left = mib << 20;
    while left > 0 {
        let n = left.min(block.len() as u64) as usize;
        stdin.write_all(&block[..n])?;
        left -= n as u64;
    }
    drop(stdin);
    let status = child.wait()?;
    if !status.success() {
        bail!("blobctl upload - {target} failed with {status}");
    }
    Ok(t.elapsed().as_secs_f64())
}

struct Large {
    name: String,
    up: f64,
    down: f64,
}

/// One figure of a [`Large`] transfer.
type Metric = fn(&Large) -> f64;

#[tokio::main(flavor = "multi_thread")]
async fn main() -> Result<()> {
    let a = args()?;
    if !dev_null_ok() {
        bail!("/dev/null is not a character device before the run; fix it first");
    }
    let blobd = sibling("test-blobd")?;
    let blobctl_bin = sibling("test-blobctl")?;
    if !venv_python().exists() || !sdk_script().exists() {
        bail!(
            "need {} with boto3 and {}",
            venv_python().display(),
            sdk_script().display()
        );
    }
    let cluster = TestCluster::builder()
        .datanodes(3)
        .replication(3)
        .fsync(true)
        .s3(true)
        .s3_direct(true)
        .edge(EdgeSpec::new("bench").capacity(256 << 20, 4 << 30))
        .start(&blobd)
        .await?;
    let result = if a.versioning_only {
        versioning_paths(&a, &cluster).await.map(|()| dev_null_ok())
    } else if a.sse_only {
        sse_paths(&a, &cluster).await.map(|()| dev_null_ok())
    } else if a.reads_only {
        read_paths(&a, &cluster, &blobctl_bin)
            .await
            .map(|()| dev_null_ok())
    } else {
        match run(&a, &cluster, &blobctl_bin).await {
            Ok(null_after) => match read_paths(&a, &cluster, &blobctl_bin).await {
                Ok(()) => match sse_paths(&a, &cluster).await {
                    Ok(()) => versioning_paths(&a, &cluster)
                        .await
                        .map(|()| null_after && dev_null_ok()),
                    Err(e) => Err(e),
                },
                Err(e) => Err(e),
            },
            Err(e) => Err(e),
        }
    };
    match result {
        Ok(null_after) => {
            drop(cluster);
            if !null_after {
                bail!("/dev/null is no longer a character device");
            }
            Ok(())
        }
        // A panic keeps the cluster's directory and prints each service's
        // last log lines (TestCluster's Drop).
        Err(e) => panic!("s3-bench failed: {e:#}"),
    }
}

/// Everything but starting the cluster; returns whether `/dev/null` is still
/// a character device at the end.
async fn run(a: &Args, cluster: &TestCluster, blobctl_bin: &Path) -> Result<bool> {
    let gw = gateway_pid(cluster)?;
    let work = cluster.root().join("bench");
    std::fs::create_dir_all(&work)?;
    let config = cluster.client_config()?;
    let c = cluster.client();
    c.create_bucket("bench").await?;
    let gw_rss_idle = rss_mib(gw);

    // 1. One large object per tool, each with its own content.
    let mib = a.size_mib;
    let size = mib << 20;
    let input = work.join("input.bin");
    let output = work.join("output.bin");
    let input_s = utf8(&input)?.to_string();
    let output_s = utf8(&output)?.to_string();
    // The Rust SDK client, when it was built (`--features sdk`).
    let rust_client = sibling("s3-rust-client").ok();
    // Each tool's file × RF 3 per run, the input and output files, the
    // big object.
    let tools = if rust_client.is_some() { 5 } else { 4 };
    let need = a.runs as u64 * tools * 3 * size + 2 * size + (4 << 30);
    let free = free_bytes(cluster.root())?;
    if free < need {
        bail!(
            "{} GiB free where the cluster runs, {} GiB needed for {} runs of {mib} MiB; \
             use fewer --runs or a smaller --size-mib",
            free >> 30,
            need >> 30,
            a.runs
        );
    }
    let check = |what: &str| -> Result<()> {
        let got = file_len(&output);
        if got != size {
            bail!("{what}: downloaded {got} bytes, expected {size}");
        }
        let _ = std::fs::remove_file(&output);
        Ok(())
    };
    let large_rss = RssSampler::start(gw);

    // Each run moves a fresh file through every tool, back to back, so
    // that a ratio compares transfers made under the same load.
    let mut names = vec![
        "blobctl (baseline)".to_string(),
        "aws s3 cp (defaults: 10 conc., 8 MiB)".to_string(),
        "boto3 TransferConfig(8, 8 MiB)".to_string(),
        "boto3 TransferConfig(16, 8 MiB)".to_string(),
    ];
    if rust_client.is_some() {
        names.push("Rust aws-sdk-s3 (16 parts of 8 MiB)".to_string());
    }
    let mut runs: Vec<Vec<Large>> = Vec::new();
    for run in 0..a.runs {
        let seed = |tool: u64| 1 + run as u64 * 10 + tool;
        let mut this: Vec<Large> = Vec::new();
        eprintln!("run {}: {mib} MiB through blobctl…", run + 1);
        make_file(&input, mib, seed(0)).await?;
        let key = format!("bench/large-blobctl-{run}.bin");
        let up = blobctl(blobctl_bin, &config, &["upload", &input_s, &key])?;
        let down = blobctl(blobctl_bin, &config, &["download", &key, &output_s])?;
        check("blobctl")?;
        this.push(Large {
            name: names[0].clone(),
            up: mib as f64 / up,
            down: mib as f64 / down,
        });

        eprintln!("run {}: {mib} MiB through aws s3 cp…", run + 1);
        make_file(&input, mib, seed(1)).await?;
        let url = format!("s3://bench/large-aws-{run}.bin");
        let (up, _) = aws(cluster, &["s3", "cp", "--no-progress", &input_s, &url])?;
        let (down, _) = aws(cluster, &["s3", "cp", "--no-progress", &url, &output_s])?;
        check("aws s3 cp")?;
        this.push(Large {
            name: names[1].clone(),
            up: mib as f64 / up,
            down: mib as f64 / down,
        });

        for (tool, conc) in [(2u64, 8usize), (3, 16)] {
            eprintln!(
                "run {}: {mib} MiB through boto3, max_concurrency={conc}…",
                run + 1
            );
            make_file(&input, mib, seed(tool)).await?;
            let key = format!("large-boto3-{conc}-{run}.bin");
            let conc_s = conc.to_string();
            let u = sdk(cluster, &["upload", &input_s, "bench", &key, &conc_s])?;
            let d = sdk(cluster, &["download", "bench", &key, &output_s, &conc_s])?;
            check("boto3")?;
            this.push(Large {
                name: names[tool as usize].clone(),
                up: mib as f64 / num(&u, "secs")?,
                down: mib as f64 / num(&d, "secs")?,
            });
        }
        if let Some(bin) = &rust_client {
            eprintln!("run {}: {mib} MiB through the Rust SDK…", run + 1);
            make_file(&input, mib, seed(4)).await?;
            let key = format!("large-rust-{run}.bin");
            let u = client_json(cluster, bin, &["upload", &input_s, "bench", &key, "16"])?;
            let d = client_json(cluster, bin, &["download", "bench", &key, &output_s, "16"])?;
            check("aws-sdk-s3")?;
            c.delete_file("bench", &key).await?;
            this.push(Large {
                name: names[4].clone(),
                up: mib as f64 / num(&u, "secs")?,
                down: mib as f64 / num(&d, "secs")?,
            });
        }
        for l in &this {
            eprintln!(
                "  {:<40} up {:>7.1}  down {:>7.1} MiB/s",
                l.name, l.up, l.down
            );
        }
        // Deleted, though their chunks stay while the download URLs given
        // out for them are valid: every run needs its own space.
        for key in [
            format!("large-blobctl-{run}.bin"),
            format!("large-aws-{run}.bin"),
            format!("large-boto3-8-{run}.bin"),
            format!("large-boto3-16-{run}.bin"),
        ] {
            c.delete_file("bench", &key).await?;
        }
        runs.push(this);
    }
    let _ = std::fs::remove_file(&input);
    let large_rss = large_rss.finish();

    // 2. 64 KiB objects.
    let mut small: Vec<(usize, Ops, Ops, Ops, Ops)> = Vec::new();
    let mut rust_small: Vec<(Ops, Ops)> = Vec::new();
    for conc in [16usize, 64] {
        eprintln!("{} objects of 64 KiB, {conc} concurrent…", a.small);
        let v = sdk(
            cluster,
            &[
                "small",
                "bench",
                &format!("small-s3-{conc}"),
                &a.small.to_string(),
                &conc.to_string(),
                &SMALL.to_string(),
            ],
        )?;
        let (s3_put, s3_get) = (ops_from(&v["put"])?, ops_from(&v["get"])?);
        if let Some(bin) = &rust_client {
            let v = client_json(
                cluster,
                bin,
                &[
                    "small",
                    "bench",
                    &format!("small-rust-{conc}"),
                    &a.small.to_string(),
                    &conc.to_string(),
                    &SMALL.to_string(),
                ],
            )?;
            rust_small.push((ops_from(&v["put"])?, ops_from(&v["get"])?));
        }
        let (lib_put, lib_get) = lib_small(&c, &format!("small-lib-{conc}"), a.small, conc).await?;
        small.push((conc, s3_put, s3_get, lib_put, lib_get));
    }

    // 3. Gateway memory while serving one big object.
    eprintln!(
        "{} MiB object (a {BLOCK_MIB} MiB block repeated) through blobctl upload -…",
        a.big_mib
    );
    let big_up = upload_repeated(blobctl_bin, &config, a.big_mib, "bench/big")?;
    let (_, url) = aws(
        cluster,
        &["s3", "presign", "s3://bench/big", "--expires-in", "3600"],
    )?;
    let big_bytes = a.big_mib << 20;

    eprintln!("GET of {} MiB with curl (one pre-signed GET)…", a.big_mib);
    let sampler = RssSampler::start(gw);
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "-f", "-o", "/dev/null", "-w", "%{size_download}"])
        .arg(url.trim());
    let (curl_s, got) = timed(cmd)?;
    let curl_rss = sampler.finish();
    if got.trim().parse::<u64>().ok() != Some(big_bytes) {
        bail!("curl got {} bytes, expected {big_bytes}", got.trim());
    }

    eprintln!("GET of {} MiB with aws s3 cp … - …", a.big_mib);
    let sampler = RssSampler::start(gw);
    let t = Instant::now();
    let mut child = s3_cmd(cluster, "aws")
        .args(["s3", "cp", "--no-progress", "s3://bench/big", "-"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .context("starting aws s3 cp -")?;
    let mut pipe = child.stdout.take().context("aws stdout")?;
    let aws_got = std::io::copy(&mut pipe, &mut std::io::sink())?;
    let status = child.wait()?;
    let aws_big_s = t.elapsed().as_secs_f64();
    let aws_rss = sampler.finish();
    if !status.success() || aws_got != big_bytes {
        bail!("aws s3 cp - exited {status} after {aws_got} bytes, expected {big_bytes}");
    }
    let null_after = dev_null_ok();

    // Report.
    println!(
        "\nblobstore S3 gateway benchmark: 3 datanodes, RF 3, fsync on, one machine \
         ({} cores), one cluster",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!(
        "1. one {mib} MiB object per tool and run, {} runs (upload from / download to a \
         file on the same disk; goal: S3 ≥ 80% of blobctl)",
        a.runs
    );
    println!(
        "  {:<40} {:>9} {:>7} {:>7}   {:>9} {:>7} {:>7}",
        "", "best up", "vs ctl", "median", "best down", "vs ctl", "median"
    );
    let best = |tool: usize, f: Metric| runs.iter().map(|r| f(&r[tool])).fold(0.0, f64::max);
    let median_ratio =
        |tool: usize, f: Metric| median(runs.iter().map(|r| f(&r[tool]) / f(&r[0])).collect());
    let up: Metric = |l| l.up;
    let down: Metric = |l| l.down;
    for (tool, name) in names.iter().enumerate() {
        println!(
            "  {:<40} {:>9.1} {:>6.0}% {:>6.0}%   {:>9.1} {:>6.0}% {:>6.0}%",
            name,
            best(tool, up),
            100.0 * best(tool, up) / best(0, up),
            100.0 * median_ratio(tool, up),
            best(tool, down),
            100.0 * best(tool, down) / best(0, down),
            100.0 * median_ratio(tool, down),
        );
    }
    println!("  (MiB/s; \"median\": the median over runs of the ratio to blobctl in the same run)");
    println!(
        "  gateway RSS over these transfers: idle {:.1} MiB, max {:.1} MiB, end {:.1} MiB",
        gw_rss_idle, large_rss.max, large_rss.end
    );
    println!("  (blobctl and aws: whole process incl. start-up; boto3: transfer call only)\n");

    println!(
        "2. {} objects of 64 KiB, PUT then GET (S3: boto3 threads, one client; \
         baseline: client library, tasks)",
        a.small
    );
    println!(
        "  {:<34} {:>9} {:>9} {:>9}   {:>12}",
        "", "ops/s", "p50 ms", "p99 ms", "ops/s vs lib"
    );
    for (i, (conc, s3_put, s3_get, lib_put, lib_get)) in small.iter().enumerate() {
        let rust = rust_small.get(i);
        for (op, s3, lib, rs) in [
            ("PUT", s3_put, lib_put, rust.map(|r| &r.0)),
            ("GET", s3_get, lib_get, rust.map(|r| &r.1)),
        ] {
            println!(
                "  {op} {conc:>2} concurrent, S3 (boto3)        {:>9.1} {:>9.1} {:>9.1}   {:>11.0}%",
                s3.rate,
                s3.p50,
                s3.p99,
                100.0 * s3.rate / lib.rate
            );
            if let Some(r) = rs {
                println!(
                    "  {op} {conc:>2} concurrent, S3 (Rust SDK)     {:>9.1} {:>9.1} {:>9.1}   {:>11.0}%",
                    r.rate,
                    r.p50,
                    r.p99,
                    100.0 * r.rate / lib.rate
                );
            }
            println!(
                "  {op} {conc:>2} concurrent, client library    {:>9.1} {:>9.1} {:>9.1}",
                lib.rate, lib.p50, lib.p99
            );
        }
    }
    println!();

    println!(
        "3. gateway memory serving one {} MiB object (VmRSS every 200 ms; goal: flat)",
        a.big_mib
    );
    println!(
        "  made with blobctl upload - ({BLOCK_MIB} MiB block repeated): {:.1} s, {:.1} MiB/s",
        big_up,
        a.big_mib as f64 / big_up
    );
    println!(
        "  {:<34} {:>7} {:>9} {:>9} {:>13} {:>9} {:>7}",
        "", "MiB/s", "RSS start", "RSS max", "max 2nd half", "RSS end", "samples"
    );
    for (name, secs, r) in [
        ("curl, one pre-signed GET", curl_s, &curl_rss),
        ("aws s3 cp s3://bench/big -", aws_big_s, &aws_rss),
    ] {
        println!(
            "  {name:<34} {:>7.1} {:>9.1} {:>9.1} {:>13.1} {:>9.1} {:>7}",
            a.big_mib as f64 / secs,
            r.start,
            r.max,
            r.max_2nd_half,
            r.end,
            r.samples
        );
    }
    println!(
        "\n  /dev/null a character device before and after the run: yes / {}",
        if null_after { "yes" } else { "NO" }
    );
    Ok(null_after)
}

/// Median of a non-empty list.
fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    if v.len().is_multiple_of(2) {
        (v[mid - 1] + v[mid]) / 2.0
    } else {
        v[mid]
    }
}

/// The figure the guide quotes for the established store's `aws s3 cp`
/// download on this machine class, MiB/s.
const ESTABLISHED_GET: f64 = 190.0;

/// Part 4: the read paths side by side (see the module comment).
async fn read_paths(a: &Args, cluster: &TestCluster, blobctl_bin: &Path) -> Result<()> {
    let work = cluster.root().join("bench");
    std::fs::create_dir_all(&work)?;
    let config = cluster.client_config()?;
    let c = cluster.client_direct();
    if !c.head_bucket("bench").await? {
        c.create_bucket("bench").await?;
    }
    let mib = a.size_mib;
    let size = mib << 20;
    let input = work.join("reads-input.bin");
    let output = work.join("reads-output.bin");
    let (input_s, output_s) = (utf8(&input)?.to_string(), utf8(&output)?.to_string());
    let (zoned, direct) = (cluster.s3_endpoint(), cluster.s3_direct_endpoint());
    let aws_get = |endpoint: &str, key: &str| -> Result<f64> {
        let mut cmd = s3_cmd_at(cluster, endpoint, "aws");
        cmd.args([
            "s3",
            "cp",
            "--no-progress",
            &format!("s3://bench/{key}"),
            &output_s,
        ]);
        let (secs, _) = timed(cmd)?;
        let got = file_len(&output);
        let _ = std::fs::remove_file(&output);
        if got != size {
            bail!("aws s3 cp via {endpoint}: downloaded {got} bytes, expected {size}");
        }
        Ok(mib as f64 / secs)
    };
    // (direct, edge cold, edge hot) per run, MiB/s.
    let mut rows: Vec<(f64, f64, f64)> = Vec::new();
    for run in 0..a.runs {
        make_file(&input, mib, 500 + run as u64).await?;
        let key = format!("reads-{run}.bin");
        blobctl(
            blobctl_bin,
            &config,
            &["upload", &input_s, &format!("bench/{key}")],
        )?;
        eprintln!(
            "run {}: {mib} MiB with aws s3 cp: direct, edge cold, edge hot…",
            run + 1
        );
        let d = aws_get(&direct, &key)?;
        let cold = aws_get(&zoned, &key)?;
        let hot = aws_get(&zoned, &key)?;
        eprintln!("  direct {d:.1}, edge cold {cold:.1}, edge hot {hot:.1} MiB/s");
        rows.push((d, cold, hot));
        c.delete_file("bench", &key).await?;
    }
    let _ = std::fs::remove_file(&input);

    eprintln!(
        "{} objects of 64 KiB, 16 concurrent, through each gateway…",
        a.small
    );
    let rust_client = sibling("s3-rust-client").ok();
    let small_args = |prefix: &str| {
        [
            "small".to_string(),
            "bench".into(),
            prefix.to_string(),
            a.small.to_string(),
            "16".into(),
            SMALL.to_string(),
        ]
    };
    let mut small: Vec<(String, Ops)> = Vec::new();
    for (name, endpoint) in [("edge zone", &zoned), ("direct", &direct)] {
        let args = small_args(&format!("reads-boto3-{name}"));
        let mut cmd = s3_cmd_at(cluster, endpoint, venv_python());
        cmd.arg(sdk_script()).args(&args);
        let v = client_output(cmd)?;
        small.push((format!("S3 GET (boto3), {name}"), ops_from(&v["get"])?));
        if let Some(bin) = &rust_client {
            let args = small_args(&format!("reads-rust-{name}"));
            let mut cmd = s3_cmd_at(cluster, endpoint, bin);
            cmd.args(&args);
            let v = client_output(cmd)?;
            small.push((format!("S3 GET (Rust SDK), {name}"), ops_from(&v["get"])?));
        }
    }
    let (_, lib_get) = lib_small(&c, "reads-lib", a.small, 16).await?;

    println!(
        "\n4. read paths: one fresh {mib} MiB object per run, {} runs, aws s3 cp to a file",
        a.runs
    );
    println!("  {:<44} {:>9} {:>13}", "", "best MiB/s", "median ratio");
    let best = |f: fn(&(f64, f64, f64)) -> f64| rows.iter().map(f).fold(0.0, f64::max);
    let ratio = |f: fn(&(f64, f64, f64)) -> f64| median(rows.iter().map(|r| f(r) / r.0).collect());
    println!(
        "  {:<44} {:>9.1} {:>12.0}%   (of {ESTABLISHED_GET} MiB/s, the established store; goal ≥ 200%)",
        "gateway reading from the datanodes",
        best(|r| r.0),
        100.0 * median(rows.iter().map(|r| r.0 / ESTABLISHED_GET).collect())
    );
    println!(
        "  {:<44} {:>9.1} {:>12.0}%   (of direct in the same run; goal ≥ 90%)",
        "gateway in the edge's zone, edge cold",
        best(|r| r.1),
        100.0 * ratio(|r| r.1)
    );
    println!(
        "  {:<44} {:>9.1} {:>12.0}%   (of direct in the same run)",
        "gateway in the edge's zone, edge hot",
        best(|r| r.2),
        100.0 * ratio(|r| r.2)
    );
    println!(
        "  {:<44} {:>9} {:>12.0}%   (of {ESTABLISHED_GET} MiB/s)",
        "the default path (edge cold) against the bar",
        "",
        100.0 * median(rows.iter().map(|r| r.1 / ESTABLISHED_GET).collect())
    );
    println!(
        "  64 KiB GETs, 16 in flight          {:>9} {:>9} {:>9}   {:>12}",
        "ops/s", "p50 ms", "p99 ms", "vs library"
    );
    for (name, o) in &small {
        println!(
            "  {name:<34} {:>9.1} {:>9.1} {:>9.1}   {:>11.0}%",
            o.rate,
            o.p50,
            o.p99,
            100.0 * o.rate / lib_get.rate
        );
    }
    println!(
        "  {:<34} {:>9.1} {:>9.1} {:>9.1}",
        "client library", lib_get.rate, lib_get.p50, lib_get.p99
    );
    Ok(())
}

/// Part 5 (`--sse-only` runs just this part): per run, a fresh object up
/// and down with `aws s3 cp` stored in clear, with SSE-S3 (`--sse AES256`)
/// and with SSE-C (`--sse-c AES256 --sse-c-key`), back to back; MiB/s and
/// the ratio to the clear transfer of the same run (goal: encryption costs
/// under 30%).
async fn sse_paths(a: &Args, cluster: &TestCluster) -> Result<()> {
    let work = cluster.root().join("bench");
    std::fs::create_dir_all(&work)?;
    let c = cluster.client_direct();
    if !c.head_bucket("bench").await? {
        c.create_bucket("bench").await?;
    }
    let mib = a.size_mib;
    let size = mib << 20;
    let input = work.join("sse-input.bin");
    let output = work.join("sse-output.bin");
    let key = work.join("sse-c.key");
    std::fs::write(&key, random_bytes(32, 99))?;
    let key_arg = format!("fileb://{}", utf8(&key)?);
    let (input_s, output_s) = (utf8(&input)?.to_string(), utf8(&output)?.to_string());
    let modes: [(&str, Vec<&str>); 3] = [
        ("none", vec![]),
        ("SSE-S3", vec!["--sse", "AES256"]),
        ("SSE-C", vec!["--sse-c", "AES256", "--sse-c-key", &key_arg]),
    ];
    // (mode, up MiB/s, down MiB/s) per run.
    let mut rows: Vec<Vec<(f64, f64)>> = vec![Vec::new(); modes.len()];
    for run in 0..a.runs {
        for (m, (name, flags)) in modes.iter().enumerate() {
            eprintln!("sse run {}: {mib} MiB, {name}…", run + 1);
            make_file(&input, mib, 500 + run as u64 * 10 + m as u64).await?;
            let url = format!("s3://bench/sse-{run}-{m}.bin");
            let mut up_args = vec!["s3", "cp", "--no-progress", &input_s, &url];
            up_args.extend(flags.iter().copied());
            let (up, _) = aws(cluster, &up_args)?;
            let mut down_args = vec!["s3", "cp", "--no-progress", &url, &output_s];
            down_args.extend(flags.iter().copied());
            let (down, _) = aws(cluster, &down_args)?;
            let got = file_len(&output);
            if got != size {
                bail!("{name}: downloaded {got} bytes, expected {size}");
            }
            if sha256_file(&output)? != sha256_file(&input)? {
                bail!("{name}: the object came back different");
            }
            let _ = std::fs::remove_file(&output);
            rows[m].push((mib as f64 / up, mib as f64 / down));
        }
    }
    println!(
        "5. encryption at rest: {mib} MiB per transfer, aws s3 cp, {} runs (median; ratio to none in the same run)",
        a.runs
    );
    println!(
        "  {:<8} {:>10} {:>8} {:>10} {:>8}",
        "mode", "PUT MiB/s", "vs none", "GET MiB/s", "vs none"
    );
    for (m, (name, _)) in modes.iter().enumerate() {
        let up = median(rows[m].iter().map(|r| r.0).collect());
        let down = median(rows[m].iter().map(|r| r.1).collect());
        let up_ratio = median(
            rows[m]
                .iter()
                .zip(&rows[0])
                .map(|(r, n)| r.0 / n.0)
                .collect(),
        );
        let down_ratio = median(
            rows[m]
                .iter()
                .zip(&rows[0])
                .map(|(r, n)| r.1 / n.1)
                .collect(),
        );
        println!(
            "  {name:<8} {up:>10.1} {:>7.0}% {down:>10.1} {:>7.0}%",
            up_ratio * 100.0,
            down_ratio * 100.0
        );
    }
    Ok(())
}

/// Part 6 (`--versioning-only` runs just this part): 64 KiB objects PUT
/// then GET (boto3, 16 in flight) in a bucket without versioning and in
/// one with it enabled, back to back per run; every run writes the same
/// keys again, so from the second run on each PUT in the versioned bucket
/// keeps the version it replaces. ops/s and the ratio to the unversioned
/// bucket in the same run (goal: versioning costs under 10%).
async fn versioning_paths(a: &Args, cluster: &TestCluster) -> Result<()> {
    let c = cluster.client_direct();
    for b in ["bench-plain", "bench-versioned"] {
        if !c.head_bucket(b).await? {
            c.create_bucket(b).await?;
        }
    }
    aws(
        cluster,
        &[
            "s3api",
            "put-bucket-versioning",
            "--bucket",
            "bench-versioned",
            "--versioning-configuration",
            "Status=Enabled",
        ],
    )?;
    let runs = a.runs.max(2);
    // (put, get) ops/s per bucket per run.
    let mut rates: [Vec<(f64, f64)>; 2] = [Vec::new(), Vec::new()];
    for run in 0..runs {
        for (i, b) in ["bench-plain", "bench-versioned"].iter().enumerate() {
            eprintln!(
                "versioning run {}: {} objects of 64 KiB in {b}…",
                run + 1,
                a.small
            );
            let v = sdk(
                cluster,
                &[
                    "small",
                    b,
                    "v",
                    &a.small.to_string(),
                    "16",
                    &SMALL.to_string(),
                ],
            )?;
            rates[i].push((ops_from(&v["put"])?.rate, ops_from(&v["get"])?.rate));
        }
    }
    let versions = c
        .list_versions(
            "bench-versioned",
            &blob_client::ListVersionsQuery {
                prefix: Some("v/00000".into()),
                ..Default::default()
            },
        )
        .await?
        .versions
        .len();
    if versions != runs {
        bail!("v/00000 has {versions} versions after {runs} runs");
    }
    println!(
        "6. versioning: {} objects of 64 KiB, boto3 16 in flight, {runs} runs, the same keys each run (median; ratio to no versioning in the same run)",
        a.small
    );
    println!(
        "  {:<12} {:>8} {:>8} {:>8} {:>8}",
        "bucket", "PUT/s", "vs off", "GET/s", "vs off"
    );
    for (i, name) in ["off", "Enabled"].iter().enumerate() {
        let put = median(rates[i].iter().map(|r| r.0).collect());
        let get = median(rates[i].iter().map(|r| r.1).collect());
        let put_ratio = median(
            rates[i]
                .iter()
                .zip(&rates[0])
                .map(|(r, o)| r.0 / o.0)
                .collect(),
        );
        let get_ratio = median(
            rates[i]
                .iter()
                .zip(&rates[0])
                .map(|(r, o)| r.1 / o.1)
                .collect(),
        );
        println!(
            "  {name:<12} {put:>8.0} {:>7.0}% {get:>8.0} {:>7.0}%",
            put_ratio * 100.0,
            get_ratio * 100.0
        );
    }
    println!("  (v/00000 holds {versions} versions, one per run)");
    Ok(())
}
