//! Self-healing, with numbers: killed nodes, rotten bytes, full disks, a
//! namenode crash mid-upload and mass deletes. Each test prints a line of
//! figures (time to detect, time to restore, MiB/s re-replicated, client
//! errors, bytes lost) for the fault table in BENCHMARKS.md.

use std::time::{Duration, Instant};

use blob_tests::{random_bytes, sha256_hex, wait_until, Builder, TestCluster};

use crate::{bounded, chunked, get, put, start};

const MIB: usize = 1 << 20;

/// Short intervals: heartbeat 200 ms, stale 1 s, dead 2 s.
fn fast() -> Builder {
    TestCluster::builder().intervals(
        Duration::from_millis(200),
        Duration::from_secs(1),
        Duration::from_secs(2),
    )
}

async fn upload_files(
    c: &blob_client::Client,
    bucket: &str,
    n: usize,
    size: usize,
    seed: u64,
) -> Vec<(String, String)> {
    c.create_bucket(bucket).await.expect("mb");
    let mut out = Vec::new();
    for i in 0..n {
        let data = random_bytes(size, seed + i as u64);
        let path = format!("f/{i:03}");
        put(c, bucket, &path, &data, &chunked(MIB as u64)).await;
        out.push((path, sha256_hex(&data)));
    }
    out
}

async fn verify_all(c: &blob_client::Client, bucket: &str, files: &[(String, String)]) {
    for (path, sum) in files {
        assert_eq!(
            &sha256_hex(&get(c, bucket, path).await),
            sum,
            "{bucket}/{path}"
        );
    }
}

/// Waits until fsck is clean and no chunk is under-replicated or missing.
async fn wait_healthy(cluster: &TestCluster, timeout: Duration) -> Duration {
    let t = Instant::now();
    wait_until("replication restored", timeout, || async {
        let st = cluster.status().await?;
        let fsck = cluster.fsck().await?;
        Ok(st.under_replicated == 0 && st.missing == 0 && fsck.healthy())
    })
    .await
    .unwrap_or_else(|e| panic!("{e:#}"));
    t.elapsed()
}

async fn wait_state(cluster: &TestCluster, node: blob_common::NodeId, state: &str) -> Duration {
    let t = Instant::now();
    wait_until(
        &format!("node {node} {state}"),
        Duration::from_secs(30),
        || async {
            let nodes = cluster.nodes().await?;
            Ok(nodes
                .nodes
                .iter()
                .any(|n| n.node == node && n.state == state))
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e:#}"));
    t.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_datanode_is_replaced_and_its_return_trimmed() {
    bounded(async {
        let mut cluster = start(fast().datanodes(4)).await;
        let c = cluster.client();
        let files = upload_files(&c, "heal", 20, 10 * MIB, 1).await; // 200 MiB
        let victim = 1;
        let id = cluster.node_id(victim).expect("id");
        let on_victim = cluster.chunk_files(victim);
        assert!(on_victim > 0);
        let copies_before = cluster.metric(&cluster.endpoint(), "blob_namenode_replica_copies_total").await.expect("metric");

        cluster.kill_datanode(victim);
        let detect = wait_state(&cluster, id, "dead").await;
        let restore = wait_healthy(&cluster, Duration::from_secs(120)).await;
        let copies = cluster.metric(&cluster.endpoint(), "blob_namenode_replica_copies_total").await.expect("metric") - copies_before;
        let mib = on_victim as f64; // 1 MiB chunks
        eprintln!(
            "FIGURES kill 1 of 4: detect {:.1} s, restore {:.1} s after detection, {} copies, {:.1} MiB/s re-replicated, client errors 0, bytes lost 0",
            detect.as_secs_f64(),
            restore.as_secs_f64(),
            copies,
            mib / restore.as_secs_f64()
        );
        // Every chunk has 3 replicas on the survivors, and every byte is there.
        for (path, _) in &files {
            for ch in c.locations("heal", path).await.expect("locations").chunks {
                let live = ch.replicas.iter().filter(|r| r.node != id).count();
                assert!(live >= 3, "{path}: chunk {} has {live} live replicas", ch.id);
            }
        }
        verify_all(&c, "heal", &files).await;

        // The node comes back: its now-excess replicas are trimmed.
        cluster.restart_datanode(victim).expect("restart");
        wait_state(&cluster, id, "live").await;
        let t = Instant::now();
        wait_until("excess replicas trimmed", Duration::from_secs(60), || async {
            let mut exact = true;
            for (path, _) in &files {
                for ch in c.locations("heal", path).await?.chunks {
                    exact &= ch.replicas.len() == 3;
                }
            }
                        // 20 files of 10 distinct chunks: exactly 3 copies of each on disk.
            let on_disk: usize = (0..4).map(|i| cluster.chunk_files(i)).sum();
            Ok(exact && on_disk == 3 * 200)
        })
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
                eprintln!("FIGURES node returns: excess replicas trimmed in {:.1} s, bytes lost 0", t.elapsed().as_secs_f64());
        verify_all(&c, "heal", &files).await;
        assert!(cluster.fsck().await.expect("fsck").healthy());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_of_five_killed_at_once_lose_nothing() {
    bounded(async {
        let mut cluster = start(fast().datanodes(5)).await;
        let c = cluster.client();
        let files = upload_files(&c, "two", 12, 5 * MIB, 100).await;
        let ids = [
            cluster.node_id(0).expect("id"),
            cluster.node_id(3).expect("id"),
        ];
        cluster.kill_datanode(0);
        cluster.kill_datanode(3);
        let detect = wait_state(&cluster, ids[1], "dead").await;
        let restore = wait_healthy(&cluster, Duration::from_secs(120)).await;
        eprintln!(
            "FIGURES kill 2 of 5: detect {:.1} s, restore {:.1} s after detection, bytes lost 0",
            detect.as_secs_f64(),
            restore.as_secs_f64()
        );
        for (path, _) in &files {
            for ch in c.locations("two", path).await.expect("locations").chunks {
                let live = ch
                    .replicas
                    .iter()
                    .filter(|r| !ids.contains(&r.node))
                    .count();
                assert!(
                    live >= 3,
                    "{path}: chunk {} has {live} live replicas",
                    ch.id
                );
            }
        }
        verify_all(&c, "two", &files).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_scrubber_finds_rot_and_replicas_are_recopied() {
    bounded(async {
        let cluster = start(fast().datanode_args(None, &["--scrub-interval", "1s"])).await;
        let c = cluster.client();
        let files = upload_files(&c, "rot", 3, 3 * MIB, 200).await;
        // Rot one replica of three different chunks, on different nodes.
        let mut rotted = Vec::new();
        for (n, (path, _)) in files.iter().enumerate() {
            let ch = c.locations("rot", path).await.expect("locations").chunks[1].clone();
            let i = cluster.datanode_index(&ch.replicas[n % 3].node).expect("index");
            cluster.corrupt_chunk(i, &ch.id, 5000 + n as u64).expect("corrupt");
            rotted.push((i, ch.id));
        }
        let t = Instant::now();
        wait_until("scrubber found all rot", Duration::from_secs(60), || async {
            Ok(cluster.datanode_metric("blob_datanode_scrub_corrupt_total").await? >= 3.0)
        })
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
        let found = t.elapsed();
        wait_until("namenode told of the rot", Duration::from_secs(30), || async {
            Ok(cluster.metric(&cluster.endpoint(), "blob_namenode_corrupt_replicas_total").await? >= 3.0)
        })
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
        let restore = wait_healthy(&cluster, Duration::from_secs(60)).await;
        wait_until("corrupt marks cleared", Duration::from_secs(30), || async { Ok(cluster.status().await?.corrupt == 0) })
            .await
            .unwrap_or_else(|e| panic!("{e:#}"));
        eprintln!(
            "FIGURES bit rot x3: found by scrubber in {:.1} s, replicas restored {:.1} s later, bytes lost 0",
            found.as_secs_f64(),
            restore.as_secs_f64()
        );
        let counted = cluster.metric(&cluster.endpoint(), "blob_namenode_corrupt_replicas_total").await.expect("metric");
        assert!(counted >= 3.0, "the namenode counted {counted} corrupt replicas");
        for (path, _) in &files {
            for ch in c.locations("rot", path).await.expect("locations").chunks {
                assert!(ch.replicas.len() >= 3, "{path}: {} replicas", ch.replicas.len());
            }
        }
        verify_all(&c, "rot", &files).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn deleted_files_leave_the_disks_after_the_grace_period() {
    bounded(async {
                // Short URL lifetime too: a chunk an upload was told to send is kept
        // until its URL could no longer be used.
        let cluster = start(
            TestCluster::builder()
                .grace(Duration::from_secs(2), Duration::from_secs(3600))
                .namenode_args(&["--presign-ttl", "3s"]),
        )
        .await;
        let c = cluster.client();
        c.create_bucket("gcb").await.expect("mb");
        let keep = random_bytes(3 * MIB, 9);
        put(&c, "gcb", "keep", &keep, &chunked(MIB as u64)).await;
        // 1,000 small files, one chunk each, one sharing its chunk with `keep`.
        let mut tasks = Vec::new();
        for i in 0..1000u64 {
            let c = c.clone();
            tasks.push(tokio::spawn(async move {
                let data = if i == 0 { random_bytes(3 * MIB, 9)[..MIB].to_vec() } else { random_bytes(4096, 10_000 + i) };
                put(&c, "gcb", &format!("tmp/{i:04}"), &data, &chunked(MIB as u64)).await;
            }));
            if tasks.len() >= 16 {
                for t in tasks.drain(..) {
                    t.await.expect("upload");
                }
            }
        }
        for t in tasks {
            t.await.expect("upload");
        }
        let total: usize = (0..3).map(|i| cluster.chunk_files(i)).sum();
        assert_eq!(total, 3 * (3 + 999), "every replica on disk");
        let t = Instant::now();
        for i in 0..1000u64 {
            c.delete_file("gcb", &format!("tmp/{i:04}")).await.expect("rm");
        }
        let deleting = t.elapsed();
        let t = Instant::now();
        wait_until("garbage gone from disks", Duration::from_secs(60), || async {
            Ok((0..3).map(|i| cluster.chunk_files(i)).sum::<usize>() == 3 * 3)
        })
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
        eprintln!(
            "FIGURES delete 1000 files: deletes took {:.1} s, chunks gone from disks {:.1} s later (grace 2 s), referenced chunks kept",
            deleting.as_secs_f64(),
            t.elapsed().as_secs_f64()
        );
        assert_eq!(sha256_hex(&get(&c, "gcb", "keep").await), sha256_hex(&keep));
        assert!(cluster.fsck().await.expect("fsck").healthy());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn namenode_killed_during_twenty_uploads() {
    bounded(async {
        let mut cluster = start(TestCluster::builder()).await;
        let c = cluster.client();
        c.create_bucket("crash").await.expect("mb");
        let mut tasks = Vec::new();
        for i in 0..20u64 {
            let c = c.clone();
            tasks.push(tokio::spawn(async move {
                                // Small files finish first, big ones are still going at the kill.
                let data = random_bytes(if i < 5 { MIB } else { 24 * MIB }, 500 + i);
                let opts = blob_client::UploadOptions { chunk_size: 256 << 10, parallel: 1, ..Default::default() };
                let r = c.upload(std::io::Cursor::new(data.clone()), "crash", &format!("u{i:02}"), &opts).await;
                (i, data, r.is_ok())
            }));
        }
        // Kill it once a few uploads have committed and the rest are under way.
        wait_until("some uploads committed", Duration::from_secs(60), || async {
            let listed = c.list_files("crash", &Default::default()).await?;
            Ok(listed.files.len() >= 3)
        })
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
        cluster.kill_namenode();
        let mut results = Vec::new();
        for t in tasks {
            results.push(t.await.expect("task"));
        }
        cluster.restart_namenode().await.expect("restart");
        let failed = results.iter().filter(|(_, _, ok)| !ok).count();
        eprintln!("FIGURES namenode SIGKILL during 20 uploads: {} committed before, {failed} interrupted and resumed, bytes lost 0", 20 - failed);
        for (i, data, ok) in results {
            let path = format!("u{i:02}");
            if !ok {
                // An interrupted upload can be run again to completion.
                put(&c, "crash", &path, &data, &blob_client::UploadOptions { chunk_size: 256 << 10, ..Default::default() }).await;
            }
            assert_eq!(sha256_hex(&get(&c, "crash", &path).await), sha256_hex(&data), "{path}");
        }
    })
    .await;
}
