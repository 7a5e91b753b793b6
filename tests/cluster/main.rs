//! Whole-cluster tests: real `blobd` processes on 127.0.0.1 ephemeral ports,
//! driven through the client library, `blobctl` and raw HTTP. One test
//! binary, one module per area.

mod bad_input;
mod budgets;
mod cli;
mod client_lib;
mod concurrency;
mod dedup;
mod dev;
mod edge;
mod faults;
mod heal;
mod mount;
mod namespace;
mod presign;
mod restart;
mod roundtrip;
mod s3;
mod safety;
mod tenancy;
mod tls;

use std::time::Duration;

use blob_client::{DownloadOptions, UploadOptions};
use blob_tests::{Builder, TestCluster};

/// Upper bound for any one test.
pub const TEST_TIMEOUT: Duration = Duration::from_secs(240);

/// Path of the `blobd` binary under test.
pub fn blobd_bin() -> std::path::PathBuf {
    env!("CARGO_BIN_EXE_test-blobd").into()
}

/// Path of the `blobctl` binary under test.
pub fn blobctl_bin() -> std::path::PathBuf {
    env!("CARGO_BIN_EXE_test-blobctl").into()
}

/// Starts a cluster with these settings.
pub async fn start(b: Builder) -> TestCluster {
    blob_tests::init_logs();
    b.start(&blobd_bin())
        .await
        .unwrap_or_else(|e| panic!("starting cluster: {e:#}"))
}

/// Options with a given chunk size.
pub fn chunked(chunk_size: u64) -> UploadOptions {
    UploadOptions {
        chunk_size,
        ..Default::default()
    }
}

/// Uploads bytes from memory.
pub async fn put(
    c: &blob_client::Client,
    bucket: &str,
    path: &str,
    data: &[u8],
    opts: &UploadOptions,
) -> blob_client::UploadOutcome {
    c.upload(std::io::Cursor::new(data.to_vec()), bucket, path, opts)
        .await
        .unwrap_or_else(|e| panic!("upload {bucket}/{path}: {e:#}"))
}

/// Downloads into memory.
pub async fn get(c: &blob_client::Client, bucket: &str, path: &str) -> Vec<u8> {
    let mut out = Vec::new();
    c.download(bucket, path, &mut out, &DownloadOptions::default())
        .await
        .unwrap_or_else(|e| panic!("download {bucket}/{path}: {e:#}"));
    out
}

/// Runs a test body with the global timeout.
pub async fn bounded<F: std::future::Future<Output = ()>>(f: F) {
    tokio::time::timeout(TEST_TIMEOUT, f)
        .await
        .expect("test exceeded its time limit");
}
