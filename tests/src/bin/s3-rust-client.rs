//! A concurrent S3 client in Rust for s3-bench: the AWS SDK for Rust at its
//! defaults (its signing and checksums), moving one file in 8 MiB parts
//! with a given number in flight, as boto3's transfer manager does in
//! tests/s3/bench_sdk.py but without Python's CPU cost, so that the
//! gateway's own share of the time shows.
//!
//! Needs AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY.
//! Prints one JSON object with the seconds of the transfer (set-up
//! excluded).
//!
//!   s3-rust-client upload FILE BUCKET KEY CONCURRENCY
//!   s3-rust-client download BUCKET KEY FILE CONCURRENCY
//!   s3-rust-client small BUCKET PREFIX N CONCURRENCY SIZE
//!       N PUTs then N GETs of SIZE bytes: ops/s, p50 and p99 latency of
//!       each (as bench_sdk.py's `small` prints them)
//!
//! Built only with `--features sdk` (the SDK is a large dependency tree
//! the test suite does not need).

use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use aws_sdk_s3::Client;
use futures::{StreamExt, TryStreamExt};

const PART: u64 = 8 << 20;

fn env(key: &str) -> Result<String> {
    std::env::var(key).with_context(|| format!("{key} is not set"))
}

fn client() -> Result<Client> {
    let conf = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url(env("AWS_ENDPOINT_URL")?)
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new(
            env("AWS_ACCESS_KEY_ID")?,
            env("AWS_SECRET_ACCESS_KEY")?,
            None,
            None,
            "environment",
        ))
        .force_path_style(true)
        .build();
    Ok(Client::from_conf(conf))
}

/// Nearest-rank percentile of an ascending list.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = ((p / 100.0 * sorted.len() as f64).ceil() as usize).max(1);
    sorted[rank - 1]
}

/// Runs `n` operations with `conc` in flight; their rate and latencies.
async fn timed_ops<F, Fut>(n: usize, conc: usize, op: F) -> Result<serde_json::Value>
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    let t = Instant::now();
    let mut lat: Vec<f64> = futures::stream::iter(0..n)
        .map(|i| {
            let started = Instant::now();
            let fut = op(i);
            async move {
                fut.await?;
                anyhow::Ok(started.elapsed().as_secs_f64() * 1000.0)
            }
        })
        .buffer_unordered(conc)
        .try_collect()
        .await?;
    let wall = t.elapsed().as_secs_f64();
    lat.sort_by(f64::total_cmp);
    Ok(serde_json::json!({
        "ops": n,
        "secs": wall,
        "ops_per_sec": n as f64 / wall,
        "p50_ms": percentile(&lat, 50.0),
        "p99_ms": percentile(&lat, 99.0),
    }))
}

async fn small(
    s3: &Client,
    bucket: &str,
    prefix: &str,
    n: usize,
    conc: usize,
    size: usize,
) -> Result<serde_json::Value> {
    s3.head_bucket().bucket(bucket).send().await?;
    let bodies: Vec<bytes::Bytes> = (0..n)
        .map(|i| {
            let mut b = vec![0u8; size];
            for (j, x) in b.iter_mut().enumerate() {
                *x = (j.wrapping_mul(31) ^ i.wrapping_mul(7919) ^ (j >> 8)) as u8;
            }
            bytes::Bytes::from(b)
        })
        .collect();
    let key = |i: usize| format!("{prefix}/{i:05}");
    let put = timed_ops(n, conc, |i| {
        let req = s3
            .put_object()
            .bucket(bucket)
            .key(key(i))
            .body(ByteStream::from(bodies[i].clone()));
        async move {
            req.send().await?;
            Ok(())
        }
    })
    .await?;
    let get = timed_ops(n, conc, |i| {
        let req = s3.get_object().bucket(bucket).key(key(i));
        async move {
            let body = req.send().await?.body.collect().await?.into_bytes();
            if body.len() != size {
                bail!("{} bytes, expected {size}", body.len());
            }
            Ok(())
        }
    })
    .await?;
    Ok(serde_json::json!({ "put": put, "get": get }))
}

/// Byte ranges `[start, end)` of `size` in parts.
fn parts(size: u64) -> Vec<(u64, u64)> {
    (0..size.div_ceil(PART))
        .map(|i| (i * PART, ((i + 1) * PART).min(size)))
        .collect()
}

async fn upload(s3: &Client, path: &str, bucket: &str, key: &str, conc: usize) -> Result<f64> {
    let file = Arc::new(std::fs::File::open(path).with_context(|| format!("opening {path}"))?);
    let size = file.metadata()?.len();
    s3.head_bucket().bucket(bucket).send().await?; // connect outside the timing
    let t = Instant::now();
    let created = s3
        .create_multipart_upload()
        .bucket(bucket)
        .key(key)
        .send()
        .await?;
    let id = created.upload_id().context("no upload id")?.to_string();
    let done: Vec<CompletedPart> = futures::stream::iter(parts(size).into_iter().enumerate())
        .map(|(i, (start, end))| {
            let (s3, file, id) = (s3.clone(), file.clone(), id.clone());
            async move {
                let data = tokio::task::spawn_blocking(move || {
                    let mut buf = vec![0u8; (end - start) as usize];
                    file.read_exact_at(&mut buf, start).map(|()| buf)
                })
                .await??;
                let number = i as i32 + 1;
                let out = s3
                    .upload_part()
                    .bucket(bucket)
                    .key(key)
                    .upload_id(id)
                    .part_number(number)
                    .body(ByteStream::from(data))
                    .send()
                    .await?;
                anyhow::Ok(
                    CompletedPart::builder()
                        .part_number(number)
                        .set_e_tag(out.e_tag().map(str::to_string))
                        .build(),
                )
            }
        })
        .buffered(conc)
        .try_collect()
        .await?;
    s3.complete_multipart_upload()
        .bucket(bucket)
        .key(key)
        .upload_id(id)
        .multipart_upload(
            CompletedMultipartUpload::builder()
                .set_parts(Some(done))
                .build(),
        )
        .send()
        .await?;
    Ok(t.elapsed().as_secs_f64())
}

async fn download(s3: &Client, bucket: &str, key: &str, path: &str, conc: usize) -> Result<f64> {
    s3.head_bucket().bucket(bucket).send().await?;
    let t = Instant::now();
    let head = s3.head_object().bucket(bucket).key(key).send().await?;
    let size = u64::try_from(head.content_length().unwrap_or(0))?;
    let file = Arc::new(std::fs::File::create(path).with_context(|| format!("creating {path}"))?);
    file.set_len(size)?;
    futures::stream::iter(parts(size))
        .map(|(start, end)| {
            let (s3, file) = (s3.clone(), file.clone());
            async move {
                let got = s3
                    .get_object()
                    .bucket(bucket)
                    .key(key)
                    .range(format!("bytes={start}-{}", end - 1))
                    .send()
                    .await?;
                let data = got.body.collect().await?.into_bytes();
                if data.len() as u64 != end - start {
                    bail!("range {start}-{end}: got {} bytes", data.len());
                }
                tokio::task::spawn_blocking(move || file.write_all_at(&data, start)).await??;
                anyhow::Ok(())
            }
        })
        .buffer_unordered(conc)
        .try_collect::<()>()
        .await?;
    Ok(t.elapsed().as_secs_f64())
}

#[tokio::main]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let s3 = client()?;
    let conc = |s: &String| -> Result<usize> {
        s.parse()
            .ok()
            .filter(|n| *n > 0)
            .with_context(|| format!("concurrency {s:?}: need a positive number"))
    };
    if let [m, bucket, prefix, n, c, size] = args.as_slice() {
        if m == "small" {
            let n: usize = n.parse().context("N")?;
            let size: usize = size.parse().context("SIZE")?;
            println!("{}", small(&s3, bucket, prefix, n, conc(c)?, size).await?);
            return Ok(());
        }
    }
    let secs = match args.as_slice() {
        [m, file, bucket, key, c] if m == "upload" => {
            upload(&s3, file, bucket, key, conc(c)?).await?
        }
        [m, bucket, key, file, c] if m == "download" => {
            download(&s3, bucket, key, file, conc(c)?).await?
        }
        _ => bail!(
            "usage: s3-rust-client upload FILE BUCKET KEY CONCURRENCY | \
             download BUCKET KEY FILE CONCURRENCY | \
             small BUCKET PREFIX N CONCURRENCY SIZE"
        ),
    };
    println!("{{\"secs\": {secs}}}");
    Ok(())
}
