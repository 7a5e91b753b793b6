//! Trust: nothing a reader claims, a dead datanode, a paused or killed
//! namenode, a replayed receipt or a very long chunk list loses or refuses
//! data. Each test prints a `FIGURES` line, counted from what it checked,
//! for the fault table in BENCHMARKS.md.

use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures::StreamExt;
use sha2::{Digest, Sha256};

use blob_common::proto::datanode::PutChunkResponse;
use blob_common::proto::namenode::{BadReplica, ChunkBatch, ChunkRef, CreateUpload};
use blob_common::{ChunkId, NodeId};
use blob_tests::{random_bytes, sha256_hex, wait_until, Builder, Mount, TestCluster};

use crate::heal::fast;
use crate::{blobctl_bin, bounded, chunked, get, put, start};

const MIB: usize = 1 << 20;

async fn nn_metric(c: &TestCluster, name: &str) -> f64 {
    c.metric(&c.endpoint(), name)
        .await
        .unwrap_or_else(|e| panic!("metric {name}: {e:#}"))
}

/// Every (chunk, node) replica of a file, from its locations.
async fn replicas_of(c: &blob_client::Client, bucket: &str, path: &str) -> Vec<(ChunkId, NodeId)> {
    let locs = c.locations(bucket, path).await.expect("locations");
    locs.chunks
        .iter()
        .flat_map(|ch| {
            ch.replicas
                .iter()
                .filter(|r| r.edge.is_none())
                .map(move |r| (ch.id, r.node))
        })
        .collect()
}

/// Sends a false corruption report for every replica; returns how many
/// the namenode accepted.
async fn report_all(c: &blob_client::Client, replicas: &[(ChunkId, NodeId)]) -> usize {
    let mut accepted = 0;
    for (chunk, node) in replicas {
        let report = BadReplica {
            chunk: *chunk,
            node: *node,
            reason: "content hashes to something else".into(),
            actual: Some(ChunkId::of(b"not the chunk")),
        };
        match c.report_bad_replica(&report).await {
            Ok(()) => accepted += 1,
            Err(e) => eprintln!("report refused: {e}"),
        }
    }
    accepted
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A writer that keeps only the SHA-256 and length of what it is given.
#[derive(Default)]
struct HashingSink {
    sha: Sha256,
    len: u64,
}

impl tokio::io::AsyncWrite for HashingSink {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.sha.update(buf);
        self.len += buf.len() as u64;
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

fn chunk_files_total(c: &TestCluster, n: usize) -> usize {
    (0..n).map(|i| c.chunk_files(i)).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn false_corruption_reports_delete_nothing() {
    bounded(async {
        let cluster = start(fast()).await;
        let c = cluster.client();
        c.create_bucket("claims").await.expect("mb");
        let data = random_bytes(4 * MIB + 1000, 11);
        let uploaded = Instant::now();
        put(&c, "claims", "f", &data, &chunked(MIB as u64)).await;
        let replicas = replicas_of(&c, "claims", "f").await;
        assert_eq!(replicas.len(), 5 * 3, "5 chunks, 3 replicas each");
        let files_before = chunk_files_total(&cluster, 3);

        let mut sent = 0;
        let mut accepted = 0;
        let times = [Duration::from_millis(300), Duration::from_secs(10)];
        for after in times {
            if let Some(wait) = after.checked_sub(uploaded.elapsed()) {
                tokio::time::sleep(wait).await;
            }
            let refuted_before = nn_metric(&cluster, "blob_namenode_corruption_reports_refuted_total").await;
            sent += replicas.len();
            accepted += report_all(&c, &replicas).await;
            // Every claim is answered by its holder's verification.
            let want = refuted_before + replicas.len() as f64;
            wait_until("every claim refuted", Duration::from_secs(30), || async {
                Ok(cluster
                    .metric(&cluster.endpoint(), "blob_namenode_corruption_reports_refuted_total")
                    .await?
                    >= want)
            })
            .await
            .unwrap_or_else(|e| panic!("{e:#}"));
        }
        assert_eq!(accepted, sent, "reports within the rate limit are accepted (204)");
        // Give any wrongful delete time to happen before counting.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let confirmed = nn_metric(&cluster, "blob_namenode_corruption_reports_confirmed_total").await;
        let refuted = nn_metric(&cluster, "blob_namenode_corruption_reports_refuted_total").await;
        let files_after = chunk_files_total(&cluster, 3);
        let still = replicas_of(&c, "claims", "f").await;
        let lost_replicas = replicas.iter().filter(|r| !still.contains(r)).count();
        let lost = bytes_lost(&data, &get(&c, "claims", "f").await);
        let fsck = cluster.fsck().await.expect("fsck");
        eprintln!(
            "FIGURES false reports: {sent} sent for {} replicas at {} after the upload, {refuted} refuted, {confirmed} confirmed, replicas lost {lost_replicas}, chunk files {files_before} -> {files_after}, bytes lost {lost}",
            replicas.len(),
            times
                .iter()
                .map(|t| format!("{:.1} s", t.as_secs_f64()))
                .collect::<Vec<_>>()
                .join(" and ")
        );
        assert_eq!(confirmed, 0.0);
        assert_eq!(lost_replicas, 0, "no replica left the metadata");
        assert_eq!(files_after, files_before, "no chunk file was deleted");
        assert_eq!(lost, 0, "the file reads back identical");
        assert!(fsck.healthy(), "fsck: {:?}", fsck.problems);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_reporter_past_its_rate_limit_is_told_to_slow_down() {
    bounded(async {
        let cluster = start(fast().datanodes(1).replication(1)).await;
        let c = cluster.client();
        c.create_bucket("flood").await.expect("mb");
        put(
            &c,
            "flood",
            "f",
            &random_bytes(1000, 3),
            &chunked(MIB as u64),
        )
        .await;
        let replicas = replicas_of(&c, "flood", "f").await;
        let flood: Vec<(ChunkId, NodeId)> = std::iter::repeat_n(replicas[0], 200).collect();
        let sent = flood.len();
        let accepted = report_all(&c, &flood).await;
        let refused = nn_metric(&cluster, "blob_namenode_corruption_reports_refused_total").await;
        eprintln!("FIGURES report flood: {sent} sent, {accepted} accepted, {refused} refused");
        assert!((50..sent).contains(&accepted), "accepted {accepted}");
        assert_eq!(refused as usize, sent - accepted);
        assert_eq!(
            sha256_hex(&get(&c, "flood", "f").await),
            sha256_hex(&random_bytes(1000, 3))
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_real_bit_flip_reported_by_a_reader_is_confirmed_and_repaired() {
    bounded(async {
        let cluster = start(fast()).await;
        let c = cluster.client();
        c.create_bucket("rot").await.expect("mb");
        let data = random_bytes(2 * MIB, 21);
        put(&c, "rot", "f", &data, &chunked(MIB as u64)).await;
        let (chunk, node) = replicas_of(&c, "rot", "f").await[0];
        let i = cluster.datanode_index(&node).expect("index");
        cluster.corrupt_chunk(i, &chunk, 4096).expect("corrupt");
        let started = Instant::now();
        let report = BadReplica {
            chunk,
            node,
            reason: "content hashes to something else".into(),
            actual: None,
        };
        c.report_bad_replica(&report).await.expect("report");
        wait_until("claim confirmed", Duration::from_secs(30), || async {
            Ok(cluster
                .metric(&cluster.endpoint(), "blob_namenode_corruption_reports_confirmed_total")
                .await?
                >= 1.0)
        })
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
        let confirmed_in = started.elapsed();
        wait_until("replica restored", Duration::from_secs(60), || async {
            let fsck = cluster.fsck().await?;
            let locs = c.locations("rot", "f").await?;
            let held = locs
                .chunks
                .iter()
                .find(|ch| ch.id == chunk)
                .map_or(0, |ch| ch.replicas.iter().filter(|r| r.edge.is_none()).count());
            Ok(fsck.healthy() && held == 3)
        })
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
        // The copy now on disk where the rot was is a good one.
        let stored = std::fs::read(cluster.chunk_file(i, &chunk)).expect("chunk file");
        let good = &data[..MIB];
        assert_eq!(&stored[..MIB], good, "node {i} holds a fresh good copy");
        let lost = bytes_lost(&data, &get(&c, "rot", "f").await);
        let refuted = nn_metric(&cluster, "blob_namenode_corruption_reports_refuted_total").await;
        eprintln!(
            "FIGURES reported bit flip: confirmed in {:.1} s, replica restored {:.1} s after the report, refuted {refuted}, bytes lost {lost}",
            confirmed_in.as_secs_f64(),
            started.elapsed().as_secs_f64()
        );
        assert_eq!((refuted, lost), (0.0, 0));
    })
    .await;
}

/// Builder for the write-quorum tests: the namenode keeps a killed node
/// live for 3 s and declares it dead after 6 s, as in production but
/// shorter, so writes meet a node it still believes in.
fn quorum_cluster() -> Builder {
    TestCluster::builder()
        .intervals(
            Duration::from_millis(300),
            Duration::from_secs(3),
            Duration::from_secs(6),
        )
        .fsync(false)
}

/// Kills datanode 2 once `kill_after` bytes reached the datanodes, while
/// `work` runs; returns what `work` returned.
async fn kill_during<T>(
    cluster: &mut TestCluster,
    kill_after: f64,
    work: tokio::task::JoinHandle<T>,
) -> T {
    let base = cluster
        .datanode_metric("blob_datanode_received_bytes_total")
        .await
        .unwrap_or(0.0);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let now = cluster
            .datanode_metric("blob_datanode_received_bytes_total")
            .await
            .unwrap_or(0.0);
        if now - base >= kill_after || work.is_finished() || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!work.is_finished(), "the transfer ended before the kill");
    cluster.kill_datanode(2);
    work.await.expect("transfer task")
}

/// After a write that lost a node: fsck shows under-replication, the node
/// comes back, and the cluster heals. Returns seconds to heal.
async fn heal_after_return(cluster: &mut TestCluster) -> f64 {
    let fsck = cluster.fsck().await.expect("fsck");
    let under: usize = fsck.problems.iter().map(|p| p.under_replicated.len()).sum();
    let missing: usize = fsck.problems.iter().map(|p| p.missing.len()).sum();
    assert!(
        under > 0,
        "the chunks written on a quorum show as under-replicated"
    );
    assert_eq!(missing, 0);
    cluster.restart_datanode(2).expect("restart");
    let t = Instant::now();
    wait_until("healthy again", Duration::from_secs(90), || async {
        let st = cluster.status().await?;
        Ok(st.under_replicated == 0 && st.missing == 0 && cluster.fsck().await?.healthy())
    })
    .await
    .unwrap_or_else(|e| panic!("{e:#}"));
    t.elapsed().as_secs_f64()
}

/// Bytes of `want` that `got` lacks, holds different, or has in excess.
fn bytes_lost(want: &[u8], got: &[u8]) -> usize {
    want.len().abs_diff(got.len()) + got.iter().zip(want).filter(|(a, b)| a != b).count()
}

/// The end of every write-quorum test: reads `quorum/big.bin` back, lets
/// the killed node return and the cluster heal, prints the figures, then
/// asserts that nothing failed and nothing was lost.
async fn check_quorum_write(
    cluster: &mut TestCluster,
    what: &str,
    data: &[u8],
    took: f64,
    client_errors: usize,
) {
    let back = get(&cluster.client(), "quorum", "big.bin").await;
    let lost = bytes_lost(data, &back);
    let mib = data.len() >> 20;
    let killed = cluster.datanodes.iter().filter(|d| !d.is_started()).count();
    let heal = heal_after_return(cluster).await;
    eprintln!(
        "FIGURES {what} {mib} MiB, {killed} of {} datanodes SIGKILLed mid-transfer: done in {took:.1} s, client errors {client_errors}, bytes lost {lost}, healed {heal:.1} s after the node returned",
        cluster.datanodes.len()
    );
    assert_eq!((client_errors, lost), (0, 0));
}

fn write_file(path: &Path, data: &[u8]) {
    std::fs::write(path, data).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn blobctl_upload_survives_a_killed_datanode() {
    bounded(async {
        let mut cluster = start(quorum_cluster()).await;
        let c = cluster.client();
        c.create_bucket("quorum").await.expect("mb");
        let data = random_bytes(300 * MIB, 31);
        let src = cluster.root().join("src.bin");
        write_file(&src, &data);
        let cfg = cluster.client_config().expect("config");
        let bin = blobctl_bin();
        let t = Instant::now();
        let work = tokio::task::spawn_blocking(move || {
            std::process::Command::new(bin)
                .arg("--config")
                .arg(cfg)
                .args(["upload", "--chunk-size", "4MiB"])
                .arg(&src)
                .arg("quorum/big.bin")
                .output()
        });
        let out = kill_during(&mut cluster, 30.0 * MIB as f64, work)
            .await
            .expect("blobctl ran");
        let took = t.elapsed().as_secs_f64();
        if !out.status.success() {
            eprintln!("upload failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        let errors = usize::from(!out.status.success());
        check_quorum_write(&mut cluster, "blobctl upload", &data, took, errors).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn aws_s3_cp_survives_a_killed_datanode() {
    bounded(async {
        let mut cluster = start(quorum_cluster().s3(true)).await;
        let c = cluster.client();
        c.create_bucket("quorum").await.expect("mb");
        let data = random_bytes(300 * MIB, 32);
        let src = cluster.root().join("src.bin");
        write_file(&src, &data);
        let mut cmd = crate::s3::s3_cmd(&cluster, "aws");
        cmd.args(["s3", "cp", "--only-show-errors"])
            .arg(&src)
            .arg("s3://quorum/big.bin");
        let t = Instant::now();
        let work = tokio::task::spawn_blocking(move || cmd.output());
        let out = kill_during(&mut cluster, 30.0 * MIB as f64, work)
            .await
            .expect("aws ran");
        let took = t.elapsed().as_secs_f64();
        if !out.status.success() {
            eprintln!("aws s3 cp failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        let errors = usize::from(!out.status.success());
        check_quorum_write(&mut cluster, "aws s3 cp", &data, took, errors).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_mount_write_survives_a_killed_datanode() {
    bounded(async {
        let mut cluster = start(quorum_cluster()).await;
        let c = cluster.client();
        c.create_bucket("quorum").await.expect("mb");
        let data = random_bytes(300 * MIB, 33);
        let cfg = cluster.client_config().expect("config");
        let mount =
            Mount::start(&blobctl_bin(), &cfg, "quorum", &[]).unwrap_or_else(|e| panic!("{e:#}"));
        let dest = mount.path("big.bin");
        let payload = data.clone();
        let t = Instant::now();
        let work = tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            use std::io::Write;
            let mut f = std::fs::File::create(&dest)?;
            for piece in payload.chunks(MIB) {
                f.write_all(piece)?;
            }
            f.sync_all()?;
            drop(f);
            Ok(())
        });
        let res = kill_during(&mut cluster, 30.0 * MIB as f64, work).await;
        let took = t.elapsed().as_secs_f64();
        if let Err(e) = &res {
            eprintln!(
                "write through the mount failed: {e}\n{}",
                mount.log_tail(30)
            );
        }
        let errors = usize::from(res.is_err());
        check_quorum_write(&mut cluster, "mount write+close", &data, took, errors).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_file_of_100k_chunks_round_trips_and_its_node_reports_in_full() {
    bounded(async {
        let mut cluster = start(TestCluster::builder().datanodes(1).replication(1).fsync(false)).await;
        let c = cluster.client();
        c.create_bucket("many").await.expect("mb");
        // 100,000 chunks of the smallest chunk size the client allows
        // (64 KiB): 6.25 GiB, generated and hashed on the fly both ways, so
        // only the datanode's disk holds it.
        let chunk = 64usize << 10;
        let n = 100_000usize;
        let size = (n * chunk) as u64;
        let sent = Arc::new(Mutex::new(Sha256::new()));
        let hasher = sent.clone();
        let pieces = futures::stream::iter(0..(size / MIB as u64)).map(move |i| {
            let piece = bytes::Bytes::from(random_bytes(MIB, 41_000 + i));
            lock(&hasher).update(&piece);
            Ok::<_, std::io::Error>(piece)
        });
        let t = Instant::now();
        let opts = blob_client::UploadOptions {
            chunk_size: chunk as u64,
            parallel: 32,
            ..Default::default()
        };
        let input = tokio_util::io::StreamReader::new(pieces);
        let out = c.upload(input, "many", "f", &opts).await.expect("upload");
        let up = t.elapsed().as_secs_f64();
        let want = hex::encode(lock(&sent).clone().finalize());
        assert_eq!(out.file.chunks.len(), n);
        let st = c.stat("many", "f").await.expect("stat");
        assert_eq!((st.size, st.chunks.len()), (size, n));
        let listed = c.list_all("many", &Default::default()).await.expect("ls");
        assert_eq!(listed.files.len(), 1);
        let t = Instant::now();
        let mut sink = HashingSink::default();
        c.download("many", "f", &mut sink, &Default::default())
            .await
            .expect("download");
        let down = t.elapsed().as_secs_f64();
        let got = hex::encode(sink.sha.finalize());
        assert_eq!(sink.len, size);
        let bytes_lost = if got == want { 0 } else { size };
        assert_eq!(got, want, "the file reads back identical");
        // The datanode's full report at restart (10+ pages), then an
        // incremental one, both reach the namenode.
        let full_before = nn_metric(&cluster, "blob_namenode_full_reports_total").await;
        cluster.restart_datanode(0).expect("restart");
        wait_until("full report received", Duration::from_secs(60), || async {
            Ok(cluster
                .metric(&cluster.endpoint(), "blob_namenode_full_reports_total")
                .await?
                > full_before)
        })
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
        let inc_before = nn_metric(&cluster, "blob_namenode_incremental_reports_total").await;
        put(&c, "many", "after", b"one more chunk", &chunked(MIB as u64)).await;
        wait_until("incremental report received", Duration::from_secs(30), || async {
            Ok(cluster
                .metric(&cluster.endpoint(), "blob_namenode_incremental_reports_total")
                .await?
                > inc_before)
        })
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
        let fsck = cluster.fsck().await.expect("fsck");
        assert!(fsck.healthy(), "{:?}", fsck.problems);
        assert_eq!(fsck.chunks, n as u64 + 1);
        eprintln!(
            "FIGURES {n}-chunk file ({size} bytes): upload {up:.1} s, download {down:.1} s, full report of {} chunks delivered, bytes lost {bytes_lost}",
            cluster.chunk_files(0)
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_answer_reveals_a_change_before_it_is_durable() {
    bounded(async {
        let delay = Duration::from_millis(1500);
        let mut cluster = start(
            TestCluster::builder()
                .datanodes(1)
                .replication(1)
                .namenode_args(&["--wal-sync-delay", "1500ms"]),
        )
        .await;
        let a = cluster.client();
        let b = cluster.client();
        let t0 = Instant::now();
        let creating = tokio::spawn(async move {
            let r = a.create_bucket("slow").await;
            (r, t0.elapsed())
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        let listed = b.list_buckets().await.expect("ls");
        let b_at = t0.elapsed();
        let (created, a_at) = creating.await.expect("task");
        created.expect("create");
        let seen = listed.buckets.iter().any(|x| x.name == "slow");
        eprintln!(
            "FIGURES durable before visible: creator answered at {:.2} s (WAL sync delayed {:.1} s), a second client's listing answered at {:.2} s, bucket in it: {seen}",
            a_at.as_secs_f64(),
            delay.as_secs_f64(),
            b_at.as_secs_f64()
        );
        assert!(a_at >= delay, "the creator was answered before the sync");
        assert!(
            !seen || b_at + Duration::from_millis(200) >= a_at,
            "the second client saw the bucket at {b_at:?}, before the sync that the creator waited for until {a_at:?}"
        );

        // An acknowledged change survives a SIGKILL right after its answer.
        let c = cluster.client();
        put(&c, "slow", "acked", b"acknowledged bytes", &chunked(MIB as u64)).await;
        cluster.kill_namenode();
        cluster.restart_namenode().await.expect("restart");
        let c = cluster.client();
        assert_eq!(get(&c, "slow", "acked").await, b"acknowledged bytes");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_paused_namenode_declares_no_datanode_dead() {
    bounded(async {
        let cluster = start(fast()).await;
        let c = cluster.client();
        c.create_bucket("paused").await.expect("mb");
        let data = random_bytes(3 * MIB, 51);
        put(&c, "paused", "f", &data, &chunked(MIB as u64)).await;
        let pid = nix::unistd::Pid::from_raw(cluster.namenode_pid().expect("pid") as i32);
        let dead_after = cluster.settings().dead_after();
        let copies_before = nn_metric(&cluster, "blob_namenode_replica_copies_total").await;
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGSTOP).expect("SIGSTOP");
        let stopped = Instant::now();
        tokio::time::sleep(dead_after * 3).await;
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGCONT).expect("SIGCONT");
        let paused = stopped.elapsed();
        // Watch every answer for the next few seconds.
        let mut dead_seen = 0;
        let mut polls = 0;
        let until = Instant::now() + Duration::from_secs(4);
        while Instant::now() < until {
            let nodes = cluster.nodes().await.expect("nodes");
            polls += 1;
            dead_seen += nodes.nodes.iter().filter(|n| n.state == "dead").count();
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let declared = nn_metric(&cluster, "blob_namenode_datanodes_declared_dead_total").await;
        let missing = nn_metric(&cluster, "blob_namenode_missing_chunks").await;
        let copies = nn_metric(&cluster, "blob_namenode_replica_copies_total").await - copies_before;
        let pauses = nn_metric(&cluster, "blob_namenode_pauses_total").await;
        let fsck = cluster.fsck().await.expect("fsck");
        eprintln!(
            "FIGURES namenode SIGSTOPped {:.1} s ({:.1}x dead interval): {polls} polls after SIGCONT saw {dead_seen} dead nodes, {declared} declared dead, {missing} missing chunks, {copies} copies ordered, {pauses} pause(s) noticed",
            paused.as_secs_f64(),
            paused.as_secs_f64() / dead_after.as_secs_f64()
        );
        assert_eq!(dead_seen, 0);
        assert_eq!(declared, 0.0);
        assert_eq!(missing, 0.0);
        assert_eq!(copies, 0.0);
        assert!(pauses >= 1.0);
        assert!(fsck.healthy(), "{:?}", fsck.problems);
        assert_eq!(sha256_hex(&get(&c, "paused", "f").await), sha256_hex(&data));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_receipt_replayed_into_another_session_is_refused() {
    bounded(async {
        let cluster = start(TestCluster::builder().datanodes(1).replication(1)).await;
        let c = cluster.client();
        c.create_bucket("one").await.expect("mb");
        c.create_bucket("two").await.expect("mb");
        let bytes = random_bytes(5000, 61);
        let chunk = ChunkRef {
            id: ChunkId::of(&bytes),
            size: bytes.len() as u64,
        };
        let open = |bucket: &str| CreateUpload {
            bucket: bucket.into(),
            path: "x".into(),
            replication: Some(1),
            chunk_size: MIB as u64,
            chunks: vec![chunk],
        };
        let plan = c.create_upload(&open("one")).await.expect("session one");
        let url = plan.chunks[0]
            .put
            .as_ref()
            .expect("a PUT target")
            .url
            .clone();
        let answer: PutChunkResponse = reqwest::Client::new()
            .put(url)
            .body(bytes.clone())
            .send()
            .await
            .expect("PUT")
            .error_for_status()
            .expect("stored")
            .json()
            .await
            .expect("receipts");
        assert_eq!(answer.receipts.len(), 1);
        // The receipt is good for its own session...
        let batch = ChunkBatch {
            chunks: vec![],
            receipts: answer.receipts.clone(),
        };
        c.send_batch(&plan.upload, &batch)
            .await
            .expect("own session");
        // ...and refused in any other, in the same bucket or another.
        let mut refused = 0;
        let buckets = ["one", "two"];
        for bucket in buckets {
            let other = c.create_upload(&open(bucket)).await.expect("other session");
            match c.send_batch(&other.upload, &batch).await {
                Err(e) => {
                    assert!(e.to_string().contains("another upload session"), "{e}");
                    refused += 1;
                }
                Ok(_) => panic!("a receipt of another session was accepted in {bucket}"),
            }
        }
        eprintln!(
            "FIGURES receipt replay: {refused} of {} replays refused",
            buckets.len()
        );
        assert_eq!(refused, buckets.len());
    })
    .await;
}
