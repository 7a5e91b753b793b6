//! The client library against the real namenode and datanodes: uploads
//! with progress and metadata, dedup on re-upload, resume of an
//! interrupted upload, retargeting around a datanode that died without the
//! namenode knowing yet, verified downloads with a replica serving flipped
//! bytes, range reads, typed errors, and `blobctl` on top.
//!
//! The client talks to the namenode through [`NamenodeProxy`], which only
//! records what it sent (request ids, aborts, bad-replica reports) and, for
//! the integrity cases, points replica URLs at itself to flip a byte.

use std::collections::BTreeMap;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use blob_client::{Client, ClientConfig, DownloadOptions, Error, UploadOptions};
use blob_common::proto::namenode::BadReplica;
use blob_common::NodeId;
use blob_tests::{random_bytes, Garble, NamenodeProxy, TestCluster};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::{blobctl_bin, bounded, start};

/// The smallest chunk the client accepts: many chunks from little data.
const CHUNK: u64 = 64 * 1024;

const PUTS: &str = "blob_datanode_put_requests_total";

fn opts(replication: u8) -> UploadOptions {
    UploadOptions {
        chunk_size: CHUNK,
        parallel: 4,
        replication: Some(replication),
        ..UploadOptions::default()
    }
}

/// A cluster with bucket `bkt`, and a proxy in front of its namenode.
async fn cluster_with_proxy(b: blob_tests::Builder) -> (TestCluster, NamenodeProxy) {
    let cluster = start(b).await;
    cluster
        .client()
        .create_bucket("bkt")
        .await
        .unwrap_or_else(|e| panic!("mb: {e:#}"));
    let proxy = NamenodeProxy::start(&cluster.endpoint())
        .await
        .unwrap_or_else(|e| panic!("proxy: {e:#}"));
    (cluster, proxy)
}

/// An admin client whose control calls go through the proxy.
fn proxied(cluster: &TestCluster, proxy: &NamenodeProxy) -> Client {
    Client::new(ClientConfig::new(
        proxy.url.clone(),
        &cluster.access_key,
        &cluster.secret_key,
    ))
    .unwrap_or_else(|e| panic!("{e}"))
}

async fn upload(
    c: &Client,
    path: &str,
    data: &[u8],
    o: &UploadOptions,
) -> blob_client::UploadOutcome {
    c.upload(data, "bkt", path, o)
        .await
        .unwrap_or_else(|e| panic!("upload {path}: {e:#}"))
}

async fn download(c: &Client, path: &str) -> Vec<u8> {
    let mut out = Vec::new();
    c.download("bkt", path, &mut out, &DownloadOptions::default())
        .await
        .unwrap_or_else(|e| panic!("download {path}: {e:#}"));
    out
}

/// Chunk PUTs the running datanodes served (pipeline forwards included).
async fn puts(cluster: &TestCluster) -> f64 {
    cluster
        .datanode_metric(PUTS)
        .await
        .unwrap_or_else(|e| panic!("metrics: {e:#}"))
}

/// The nodes holding each chunk of `bkt/path`, as the namenode says.
async fn replicas(cluster: &TestCluster, path: &str) -> Vec<Vec<NodeId>> {
    let locs = cluster
        .client()
        .locations("bkt", path)
        .await
        .unwrap_or_else(|e| panic!("locations {path}: {e:#}"));
    locs.chunks
        .iter()
        .map(|c| c.replicas.iter().map(|r| r.node).collect())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn upload_then_download_and_dedup_on_reupload() {
    bounded(async {
        let (cluster, proxy) = cluster_with_proxy(TestCluster::builder().datanodes(3)).await;
        let client = proxied(&cluster, &proxy);
        let data = random_bytes(3 * CHUNK as usize + 1234, 1);
        let done = Arc::new(Mutex::new(0u64));
        let d = done.clone();
        let mut o = opts(3);
        o.meta = BTreeMap::from([("content-type".into(), "video/mp4".into())]);
        o.progress = Some(Arc::new(move |n| {
            *d.lock().unwrap_or_else(|e| e.into_inner()) = n
        }));
        let out = upload(&client, "dir/a.bin", &data, &o).await;
        assert_eq!(out.chunks_sent, 4);
        assert_eq!(out.chunks_skipped, 0);
        assert_eq!(out.bytes_sent, data.len() as u64);
        assert_eq!(out.file.size, data.len() as u64);
        assert_eq!(out.file.meta["content-type"], "video/mp4");
        assert_eq!(
            *done.lock().unwrap_or_else(|e| e.into_inner()),
            data.len() as u64
        );
        // Each chunk went to 3 nodes once: one PUT and two forwards.
        assert_eq!(puts(&cluster).await, 4.0 * 3.0);
        assert_eq!(download(&client, "dir/a.bin").await, data);

        // Same bytes again, under another name: nothing is sent.
        let again = upload(&client, "copy.bin", &data, &opts(3)).await;
        assert_eq!((again.chunks_sent, again.chunks_skipped), (0, 4));
        assert_eq!(puts(&cluster).await, 4.0 * 3.0);
        // One request id per operation: few ids for many calls.
        let calls = proxy.calls();
        let ids: std::collections::HashSet<_> =
            calls.iter().filter_map(|c| c.request_id.clone()).collect();
        assert!(
            calls.len() > ids.len(),
            "{} calls, {} ids",
            calls.len(),
            ids.len()
        );
        assert!(ids.len() <= 4, "{ids:?}");
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn empty_input_and_repeated_chunks() {
    bounded(async {
        let (cluster, proxy) = cluster_with_proxy(TestCluster::builder().datanodes(3)).await;
        let client = proxied(&cluster, &proxy);
        let out = upload(&client, "empty", b"", &opts(2)).await;
        assert_eq!(out.file.size, 0);
        assert!(out.file.chunks.is_empty());
        assert!(download(&client, "empty").await.is_empty());

        // Four identical chunks are sent once.
        let data = vec![7u8; 4 * CHUNK as usize];
        let out = upload(&client, "zeros", &data, &opts(2)).await;
        assert_eq!((out.chunks_sent, out.chunks_skipped), (1, 3));
        assert_eq!(out.file.chunks.len(), 4);
        assert_eq!(download(&client, "zeros").await, data);
    })
    .await
}

/// A datanode SIGKILLed while the namenode still counts it live (its stale
/// interval is long) is still handed out in pipelines: the client must
/// work around it, and with every replica required before a commit, end
/// with full copies elsewhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failed_pipeline_node_is_retargeted() {
    bounded(async {
        let (mut cluster, proxy) = cluster_with_proxy(
            TestCluster::builder()
                .datanodes(5)
                .intervals(
                    Duration::from_millis(500),
                    Duration::from_secs(60),
                    Duration::from_secs(120),
                )
                .namenode_args(&["--min-write-replicas", "3"]),
        )
        .await;
        let client = proxied(&cluster, &proxy);
        let bad = cluster.node_id(1).unwrap_or_else(|e| panic!("{e:#}"));
        cluster.kill_datanode(1);
        // Enough chunks that placement hands the dead node out.
        let data = random_bytes(8 * CHUNK as usize, 2);
        let out = upload(&client, "f", &data, &opts(3)).await;
        assert_eq!(out.chunks_sent, 8);
        let retargets = proxy
            .calls()
            .iter()
            .filter(|c| c.path.ends_with("/retarget"))
            .count();
        assert!(retargets > 0, "the dead node was never placed");
        for nodes in replicas(&cluster, "f").await {
            assert_eq!(nodes.len(), 3, "{nodes:?}");
            assert!(!nodes.contains(&bad), "{nodes:?}");
        }
        assert_eq!(download(&client, "f").await, data);
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unreachable_primary_is_excluded() {
    bounded(async {
        let (mut cluster, proxy) = cluster_with_proxy(
            TestCluster::builder()
                .datanodes(4)
                .replication(2)
                .intervals(
                    Duration::from_millis(500),
                    Duration::from_secs(60),
                    Duration::from_secs(120),
                )
                .namenode_args(&["--min-write-replicas", "2"]),
        )
        .await;
        let client = proxied(&cluster, &proxy);
        cluster.kill_datanode(0);
        let data = random_bytes(CHUNK as usize + 10, 3);
        let out = upload(&client, "f", &data, &opts(2)).await;
        assert_eq!(out.file.size, data.len() as u64);
        cluster
            .restart_datanode(0)
            .unwrap_or_else(|e| panic!("{e:#}"));
        assert_eq!(download(&client, "f").await, data);
    })
    .await
}

/// The only datanode dies after the third chunk: the upload fails, leaves
/// its session (and its receipts) with the namenode, and a re-run sends
/// only the three missing chunks.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn interrupted_upload_resumes_sending_only_what_is_missing() {
    bounded(async {
        let (mut cluster, proxy) = cluster_with_proxy(
            TestCluster::builder()
                .datanodes(1)
                .replication(1)
                .intervals(
                    Duration::from_millis(500),
                    Duration::from_secs(60),
                    Duration::from_secs(120),
                ),
        )
        .await;
        let client = proxied(&cluster, &proxy);
        let data = random_bytes(6 * CHUNK as usize, 4);
        let pid = cluster.datanodes[0].pid().expect("datanode running");
        let mut o = opts(1);
        o.parallel = 1;
        o.progress = Some(Arc::new(move |n| {
            if n >= 3 * CHUNK {
                let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
            }
        }));
        let e = client.upload(&data[..], "bkt", "big", &o).await.err();
        assert!(e.is_some(), "the first run must fail");
        cluster.kill_datanode(0);
        assert_eq!(cluster.chunk_files(0), 3, "three chunks stored");
        // Not aborted: the session is left for the namenode to expire.
        let aborts = proxy
            .calls()
            .iter()
            .filter(|c| c.method == "DELETE" && c.path.starts_with("/v1/uploads/"))
            .count();
        assert_eq!(aborts, 0);

        cluster
            .restart_datanode(0)
            .unwrap_or_else(|e| panic!("{e:#}"));
        cluster
            .wait_live(1, Duration::from_secs(30))
            .await
            .unwrap_or_else(|e| panic!("{e:#}"));
        let out = upload(&client, "big", &data, &opts(1)).await;
        assert_eq!((out.chunks_sent, out.chunks_skipped), (3, 3));
        assert_eq!(cluster.chunk_files(0), 6);
        assert_eq!(download(&client, "big").await, data);
    })
    .await
}

/// Bad-replica reports the client sent, in order.
fn reports(proxy: &NamenodeProxy) -> Vec<BadReplica> {
    proxy
        .calls()
        .iter()
        .filter(|c| c.method == "POST" && c.path == "/v1/chunks/bad")
        .map(|c| serde_json::from_slice(&c.body).unwrap_or_else(|e| panic!("report: {e}")))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn corrupt_replica_is_reported_and_skipped() {
    bounded(async {
        let (cluster, proxy) = cluster_with_proxy(TestCluster::builder().datanodes(3)).await;
        let client = proxied(&cluster, &proxy);
        let data = random_bytes(2 * CHUNK as usize + 5, 5);
        upload(&client, "f", &data, &opts(3)).await;
        proxy.set_garble(Garble::FirstReplica);
        assert_eq!(download(&client, "f").await, data);
        // One report per chunk, each naming the replica that served
        // flipped bytes.
        let got = reports(&proxy);
        assert_eq!(got.len(), 3, "{got:?}");
        let chunks: std::collections::HashSet<_> = got.iter().map(|r| r.chunk).collect();
        assert_eq!(chunks.len(), 3, "{got:?}");
        let garbled = proxy.garbled();
        for r in &got {
            assert!(
                garbled.contains(&(r.chunk, r.node)),
                "{r:?} not in {garbled:?}"
            );
        }

        // Every replica corrupt: an integrity error, never bad bytes.
        proxy.set_garble(Garble::EveryReplica);
        let mut out = Vec::new();
        let e = client
            .download("bkt", "f", &mut out, &DownloadOptions::default())
            .await
            .err();
        match e {
            Some(Error::Exhausted { last, .. }) => {
                assert!(matches!(*last, Error::Integrity { .. }), "{last:?}")
            }
            other => panic!("{other:?}"),
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn range_reads_touch_only_what_they_need() {
    bounded(async {
        let (cluster, proxy) =
            cluster_with_proxy(TestCluster::builder().datanodes(2).replication(2)).await;
        let client = proxied(&cluster, &proxy);
        let data = random_bytes(3 * CHUNK as usize + 100, 6);
        upload(&client, "r", &data, &opts(2)).await;
        let c = CHUNK;
        for (start, len) in [
            (0, 10),
            (c - 5, 10),
            (c, c),
            (5, 2 * c + 7),
            (3 * c + 90, 50),
            (0, 10 * c),
        ] {
            let got = client
                .read_range("bkt", "r", start, len)
                .await
                .unwrap_or_else(|e| panic!("{start}+{len}: {e:?}"));
            let end = (start + len).min(data.len() as u64) as usize;
            assert_eq!(&got[..], &data[start as usize..end], "{start}+{len}");
        }
        let size = data.len() as u64;
        assert!(client
            .read_range("bkt", "r", size, 10)
            .await
            .is_ok_and(|b| b.is_empty()));
        assert!(matches!(
            client.read_range("bkt", "r", size + 1, 1).await,
            Err(Error::RangeNotSatisfiable { .. })
        ));
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn errors_are_typed_and_names_checked_locally() {
    bounded(async {
        let (cluster, proxy) =
            cluster_with_proxy(TestCluster::builder().datanodes(1).replication(1)).await;
        let client = proxied(&cluster, &proxy);
        match client.stat("bkt", "nope").await {
            Err(e) => {
                assert!(e.is_not_found(), "{e:?}");
                assert_eq!(e.code(), Some("NoSuchFile"));
            }
            Ok(f) => panic!("{f:?}"),
        }
        let before = proxy.calls().len();
        assert!(matches!(
            client.stat("BAD_bucket", "x").await,
            Err(Error::InvalidName(_))
        ));
        assert!(matches!(
            client.upload(&b"x"[..], "bkt", "/abs", &opts(1)).await,
            Err(Error::InvalidName(_))
        ));
        assert_eq!(proxy.calls().len(), before, "nothing sent");

        let wrong = Client::new(ClientConfig::new(
            proxy.url.clone(),
            &cluster.access_key,
            "wrong-secret",
        ))
        .unwrap_or_else(|e| panic!("{e}"));
        match wrong.stat("bkt", "x").await {
            Err(Error::Api { status: 403, .. }) => {}
            other => panic!("{other:?}"),
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn download_to_path_leaves_nothing_half_written() {
    bounded(async {
        let (cluster, proxy) =
            cluster_with_proxy(TestCluster::builder().datanodes(2).replication(2)).await;
        let client = proxied(&cluster, &proxy);
        let data = random_bytes(CHUNK as usize * 2, 7);
        upload(&client, "f", &data, &opts(2)).await;
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let dest = dir.path().join("out.bin");
        client
            .download_to_path("bkt", "f", &dest, &DownloadOptions::default())
            .await
            .unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(std::fs::read(&dest).unwrap_or_default(), data);

        proxy.set_garble(Garble::EveryReplica);
        let dest2 = dir.path().join("bad.bin");
        assert!(client
            .download_to_path("bkt", "f", &dest2, &DownloadOptions::default())
            .await
            .is_err());
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .map(|d| d.filter_map(|e| e.ok()).map(|e| e.file_name()).collect())
            .unwrap_or_default();
        assert_eq!(names, vec![std::ffi::OsString::from("out.bin")]);
    })
    .await
}

/// Runs `blobctl` with the admin key given as flags, not a config file.
async fn blobctl(cluster: &TestCluster, args: &[&str]) -> ExitStatus {
    let mut cmd = Command::new(blobctl_bin());
    cmd.args([
        "--endpoint",
        &cluster.endpoint(),
        "--access-key",
        &cluster.access_key,
        "--secret-key",
        &cluster.secret_key,
        "-q",
    ])
    .args(args)
    .env_remove("BLOBCTL_CONFIG")
    .stdin(Stdio::null())
    .stdout(Stdio::null());
    tokio::task::spawn_blocking(move || cmd.status())
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|e| panic!("blobctl: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn blobctl_uploads_downloads_and_reports_not_found() {
    bounded(async {
        let (cluster, _proxy) =
            cluster_with_proxy(TestCluster::builder().datanodes(2).replication(2)).await;
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let src = dir.path().join("clip.mp4");
        let data = random_bytes(CHUNK as usize * 2 + 3, 8);
        std::fs::write(&src, &data).unwrap_or_else(|e| panic!("{e}"));
        let src_s = src.to_string_lossy().to_string();

        let status = blobctl(
            &cluster,
            &[
                "upload",
                &src_s,
                "bkt/videos/",
                "--chunk-size",
                "64KiB",
                "--replication",
                "2",
            ],
        )
        .await;
        assert!(status.success(), "{status}");
        let file = cluster
            .client()
            .stat("bkt", "videos/clip.mp4")
            .await
            .unwrap_or_else(|e| panic!("uploaded file: {e:#}"));
        assert_eq!(file.size, data.len() as u64);

        let out = dir.path().join("out");
        std::fs::create_dir(&out).unwrap_or_else(|e| panic!("{e}"));
        let out_s = out.to_string_lossy().to_string();
        let status = blobctl(&cluster, &["download", "bkt/videos/clip.mp4", &out_s]).await;
        assert!(status.success(), "{status}");
        assert_eq!(
            std::fs::read(out.join("clip.mp4")).unwrap_or_default(),
            data
        );

        let status = blobctl(&cluster, &["stat", "bkt/missing"]).await;
        assert_eq!(status.code(), Some(1));
        // Moving across buckets works; a source that is not there is
        // "not found".
        let status = blobctl(&cluster, &["mv", "bkt/a", "other/a"]).await;
        assert_eq!(status.code(), Some(1));
    })
    .await
}
