//! Dedup and resume: stored chunks are never sent twice.

use std::io::Write;
use std::process::Stdio;
use std::time::Duration;

use blob_tests::{random_bytes, sha256_hex, wait_until, TestCluster};

use crate::{blobctl_bin, bounded, get, put, start};

const RECEIVED: &str = "blob_datanode_received_bytes_total";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn uploading_the_same_file_twice_moves_no_chunk_bytes() {
    bounded(async {
        let cluster = start(TestCluster::builder()).await;
        let c = cluster.client();
        c.create_bucket("dedup").await.expect("mb");
        let data = random_bytes(64 << 20, 9);
        let before = cluster.datanode_metric(RECEIVED).await.expect("metric");
        let first = put(&c, "dedup", "a.bin", &data, &Default::default()).await;
        let mid = cluster.datanode_metric(RECEIVED).await.expect("metric");
        assert_eq!(
            mid - before,
            3.0 * (64 << 20) as f64,
            "first upload stores 3 replicas"
        );
        assert_eq!(first.chunks_sent, 8);

        let second = put(&c, "dedup", "b.bin", &data, &Default::default()).await;
        let after = cluster.datanode_metric(RECEIVED).await.expect("metric");
        assert_eq!(after - mid, 0.0, "second upload moved chunk bytes");
        assert_eq!((second.chunks_sent, second.chunks_skipped), (0, 8));
        assert_eq!(
            sha256_hex(&get(&c, "dedup", "b.bin").await),
            sha256_hex(&data)
        );

        // Knowing the hashes grants nothing in another bucket.
        c.create_bucket("other").await.expect("mb");
        let third = put(&c, "other", "c.bin", &data, &Default::default()).await;
        assert_eq!(third.chunks_sent, 8);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_interrupted_upload_resumes_with_only_the_missing_chunks() {
    bounded(async {
        let cluster = start(TestCluster::builder()).await;
        let c = cluster.client();
        c.create_bucket("resume").await.expect("mb");
        let size: usize = 64 << 20;
        let chunk: usize = 1 << 20;
        let data = random_bytes(size, 77);
        let dir = tempfile::tempdir().expect("tempdir");
        let local = dir.path().join("input.bin");
        std::fs::File::create(&local)
            .and_then(|mut f| f.write_all(&data))
            .expect("write input");
        let config = cluster.client_config().expect("config");
        let upload = || {
            let mut cmd = std::process::Command::new(blobctl_bin());
            cmd.arg("--config")
                .arg(&config)
                .args(["-q", "upload"])
                .arg(&local)
                .args([
                    "resume/input.bin",
                    "--chunk-size",
                    "1MiB",
                    "--parallel",
                    "2",
                ])
                .stdin(Stdio::null());
            cmd
        };

        let base = cluster.datanode_metric(RECEIVED).await.expect("metric");
        let mut child = upload().spawn().expect("spawn blobctl");
        let half = 3.0 * (size / 2) as f64;
        let cl = &cluster;
        wait_until(
            "half the replicas received",
            Duration::from_secs(120),
            || async move { Ok(cl.datanode_metric(RECEIVED).await.unwrap_or(0.0) - base >= half) },
        )
        .await
        .expect("upload progress");
        child.kill().expect("kill blobctl");
        let _ = child.wait();
        // Let in-flight pipeline writes settle before measuring.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let first = cl.datanode_metric(RECEIVED).await.expect("metric") - base;
        assert!(
            first < 3.0 * size as f64,
            "the first run finished before it was interrupted"
        );
        assert!(
            c.stat("resume", "input.bin").await.is_err(),
            "an interrupted upload is not visible"
        );

        let status = upload().status().expect("run blobctl again");
        assert!(status.success());
        let second = cl.datanode_metric(RECEIVED).await.expect("metric") - base - first;
        let missing = 3.0 * size as f64 - first;
        // In-flight chunks at the kill may be sent again: allow a few.
        let slack = 3.0 * (4 * chunk) as f64;
        assert!(
            second <= missing + slack,
            "resume sent {second} bytes of replicas, only {missing} were missing (+{slack} slack)"
        );
        assert_eq!(
            sha256_hex(&get(&c, "resume", "input.bin").await),
            sha256_hex(&data)
        );
    })
    .await;
}
