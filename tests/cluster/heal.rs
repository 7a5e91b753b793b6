//! Self-healing, with numbers: killed nodes, rotten bytes, full disks, a
//! namenode crash mid-upload and mass deletes. Each test prints a line of
//! figures (time to detect, time to restore, MiB/s re-replicated, client
//! errors, bytes lost) for the fault table in BENCHMARKS.md. Bytes lost are
//! counted by reading every file back and comparing it with what was
//! written; client errors are the failed calls of the clients that ran
//! during the fault ("no client traffic" where none did).

use std::time::{Duration, Instant};

use blob_tests::{random_bytes, sha256_hex, wait_until, Builder, TestCluster};

use crate::{bounded, chunked, get, put, start};

const MIB: usize = 1 << 20;

/// Short intervals: heartbeat 200 ms, stale 1 s, dead 2 s.
pub(crate) fn fast() -> Builder {
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
    let (files, errors) = upload_counting(c, bucket, n, size, seed).await;
    assert_eq!(errors, 0, "uploads failed");
    files
}

/// Uploads `n` files; returns those stored (path, SHA-256) and how many
/// uploads failed.
async fn upload_counting(
    c: &blob_client::Client,
    bucket: &str,
    n: usize,
    size: usize,
    seed: u64,
) -> (Vec<(String, String)>, usize) {
    c.create_bucket(bucket).await.expect("mb");
    let mut out = Vec::new();
    let mut errors = 0;
    for i in 0..n {
        let data = random_bytes(size, seed + i as u64);
        let path = format!("f/{i:03}");
        let opts = chunked(MIB as u64);
        match c
            .upload(std::io::Cursor::new(data.clone()), bucket, &path, &opts)
            .await
        {
            Ok(_) => out.push((path, sha256_hex(&data))),
            Err(e) => {
                eprintln!("upload {bucket}/{path}: {e:#}");
                errors += 1;
            }
        }
    }
    (out, errors)
}

/// Reads every file back: the bytes lost (a file that cannot be read, or
/// reads back different, counts whole). Asserting is the caller's, after
/// it printed its figures.
async fn bytes_lost(c: &blob_client::Client, bucket: &str, files: &[(String, String)]) -> u64 {
    let mut lost = 0u64;
    for (path, sum) in files {
        let size = c.stat(bucket, path).await.map_or(0, |f| f.size);
        let mut out = Vec::new();
        let read = c
            .download(
                bucket,
                path,
                &mut out,
                &blob_client::DownloadOptions::default(),
            )
            .await;
        if let Err(e) = read {
            eprintln!("reading {bucket}/{path}: {e:#}");
            lost += size.max(1);
        } else if &sha256_hex(&out) != sum {
            eprintln!("{bucket}/{path} reads back different bytes");
            lost += size.max(out.len() as u64).max(1);
        }
    }
    lost
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
        let chunk = c.stat("heal", &files[0].0).await.expect("stat").chunk_size;
        let mib = (on_victim as u64 * chunk) as f64 / MIB as f64;
        let lost = bytes_lost(&c, "heal", &files).await;
        let killed = cluster.datanodes.iter().filter(|d| !d.is_started()).count();
        eprintln!(
            "FIGURES kill {killed} of {}: detect {:.1} s, restore {:.1} s after detection, {} copies, {:.1} MiB/s re-replicated, no client traffic during the fault, bytes lost {lost}",
            cluster.datanodes.len(),
            detect.as_secs_f64(),
            restore.as_secs_f64(),
            copies,
            mib / restore.as_secs_f64()
        );
        assert_eq!(lost, 0);
        // Every chunk has 3 replicas on the survivors, and every byte is there.
        for (path, _) in &files {
            for ch in c.locations("heal", path).await.expect("locations").chunks {
                let live = ch.replicas.iter().filter(|r| r.node != id).count();
                assert!(live >= 3, "{path}: chunk {} has {live} live replicas", ch.id);
            }
        }

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
        let trimmed = t.elapsed();
        let lost = bytes_lost(&c, "heal", &files).await;
        eprintln!("FIGURES node returns: excess replicas trimmed in {:.1} s, bytes lost {lost}", trimmed.as_secs_f64());
        assert_eq!(lost, 0);
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
        let lost = bytes_lost(&c, "two", &files).await;
        let killed = cluster.datanodes.iter().filter(|d| !d.is_started()).count();
        eprintln!(
            "FIGURES kill {killed} of {}: detect {:.1} s, restore {:.1} s after detection, no client traffic during the fault, bytes lost {lost}",
            cluster.datanodes.len(),
            detect.as_secs_f64(),
            restore.as_secs_f64()
        );
        assert_eq!(lost, 0);
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
        let lost = bytes_lost(&c, "rot", &files).await;
        eprintln!(
            "FIGURES bit rot x{}: found by scrubber in {:.1} s, replicas restored {:.1} s later, no client traffic during the fault, bytes lost {lost}",
            rotted.len(),
            found.as_secs_f64(),
            restore.as_secs_f64()
        );
        assert_eq!(lost, 0);
        let counted = cluster.metric(&cluster.endpoint(), "blob_namenode_corrupt_replicas_total").await.expect("metric");
        assert!(counted >= 3.0, "the namenode counted {counted} corrupt replicas");
        for (path, _) in &files {
            for ch in c.locations("rot", path).await.expect("locations").chunks {
                assert!(ch.replicas.len() >= 3, "{path}: {} replicas", ch.replicas.len());
            }
        }
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
        let mut deleted = 0;
        for i in 0..1000u64 {
            c.delete_file("gcb", &format!("tmp/{i:04}")).await.expect("rm");
            deleted += 1;
        }
        let deleting = t.elapsed();
        let t = Instant::now();
        wait_until("garbage gone from disks", Duration::from_secs(60), || async {
            Ok((0..3).map(|i| cluster.chunk_files(i)).sum::<usize>() == 3 * 3)
        })
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
        eprintln!(
            "FIGURES delete {deleted} files: deletes took {:.1} s, chunks gone from disks {:.1} s later (grace {:.0} s), referenced chunks kept",
            deleting.as_secs_f64(),
            t.elapsed().as_secs_f64(),
            cluster.settings().gc_grace().as_secs_f64()
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
        let uploads = results.len();
        let failed = results.iter().filter(|(_, _, ok)| !ok).count();
        let mut lost = 0u64;
        for (i, data, ok) in results {
            let path = format!("u{i:02}");
            if !ok {
                // An interrupted upload can be run again to completion.
                put(&c, "crash", &path, &data, &blob_client::UploadOptions { chunk_size: 256 << 10, ..Default::default() }).await;
            }
            if sha256_hex(&get(&c, "crash", &path).await) != sha256_hex(&data) {
                lost += data.len() as u64;
            }
        }
        eprintln!("FIGURES namenode SIGKILL during {uploads} uploads: {} committed, {failed} client errors (interrupted uploads, each resumed to completion), bytes lost {lost}", uploads - failed);
        assert_eq!(lost, 0);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_decommissioned_node_is_drained_while_reads_go_on() {
    bounded(async {
        let cluster = start(fast().datanodes(4)).await;
        let c = cluster.client();
        let files = upload_files(&c, "drain", 6, 5 * MIB, 300).await;
        let node = cluster.node_id(0).expect("id");
        let t = Instant::now();
        let st = c.decommission(node).await.expect("decommission");
        assert_eq!(st.state, "decommissioning");
        // Reads keep working throughout the drain.
        let mut reads = 0;
        let mut lost = 0;
        loop {
            lost += bytes_lost(&c, "drain", &files).await;
            reads += 1;
            let nodes = cluster.nodes().await.expect("nodes");
            if nodes.nodes.iter().any(|n| n.node == node && n.state == "decommissioned") {
                break;
            }
            assert!(t.elapsed() < Duration::from_secs(60), "drain did not finish within 60 s");
        }
        eprintln!("FIGURES decommission: drained in {:.1} s with {reads} full read passes meanwhile, bytes lost {lost} (counted over every pass)", t.elapsed().as_secs_f64());
        assert_eq!(lost, 0);
        for (path, _) in &files {
            for ch in c.locations("drain", path).await.expect("locations").chunks {
                let elsewhere = ch.replicas.iter().filter(|r| r.node != node).count();
                assert!(elsewhere >= 3, "{path}: chunk {} has {elsewhere} replicas off the drained node", ch.id);
            }
        }
        // New data no longer goes to it.
        let before = cluster.chunk_files(0);
        upload_files(&c, "after", 2, 3 * MIB, 400).await;
        assert_eq!(cluster.chunk_files(0), before, "no new replica lands on a decommissioned node");
    })
    .await;
}

/// A size-limited tmpfs, unmounted when dropped.
struct SmallDisk(std::path::PathBuf);

impl SmallDisk {
    fn new(dir: &std::path::Path, mib: u64) -> SmallDisk {
        std::fs::create_dir_all(dir).expect("mkdir");
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(dir)
            .status()
            .expect("run mount");
        assert!(
            status.success(),
            "mounting a {mib} MiB tmpfs at {} (needs root)",
            dir.display()
        );
        SmallDisk(dir.to_path_buf())
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn full_disks_send_writes_elsewhere_and_a_full_cluster_says_so() {
    bounded(async {
        let tmp = tempfile::tempdir().expect("tempdir");
                // One small disk among four small nodes: it fills up, turns
        // read-only, and uploads go on to the others.
        let small = SmallDisk::new(&tmp.path().join("small"), 24);
        let others: Vec<SmallDisk> = (1..4).map(|i| SmallDisk::new(&tmp.path().join(format!("o{i}")), 150)).collect();
        let mut b = fast().datanodes(4).datanode_dir(0, small.0.clone());
        for (i, d) in others.iter().enumerate() {
            b = b.datanode_dir(i + 1, d.0.clone());
        }
        let cluster = start(b.datanode_args(None, &["--min-free-bytes", "8388608"])).await;
        let c = cluster.client();
        let (files, errors) = upload_counting(&c, "fill", 12, 10 * MIB, 500).await; // 120 MiB x 3
        let lost = bytes_lost(&c, "fill", &files).await;
                let id0 = cluster.node_id(0).expect("id");
        let _ = wait_until("small node read-only", Duration::from_secs(5), || async {
            Ok(cluster.nodes().await?.nodes.iter().any(|n| n.node == id0 && n.read_only))
        })
        .await;
        let full = cluster.nodes().await.expect("nodes");
        let n0 = full.nodes.iter().find(|n| n.node == id0).expect("node 0");
        let file_mib = match files.first() {
            Some((path, _)) => c.stat("fill", path).await.expect("stat").size as usize / MIB,
            None => 0,
        };
        eprintln!(
            "FIGURES one full disk of {}: {} of {} files of {file_mib} MiB uploaded, small node holds {} chunks, read-only {}, client errors {errors}, bytes lost {lost}",
            full.nodes.len(), files.len(), files.len() + errors, n0.chunk_count, n0.read_only
        );
        assert_eq!((errors, lost), (0, 0));
        assert!(n0.read_only, "the small node reports itself read-only");
                drop(cluster);
        drop(others);

        // Every disk small: a clear "cluster full" error and no partial file.
        let disks: Vec<SmallDisk> = (0..3).map(|i| SmallDisk::new(&tmp.path().join(format!("d{i}")), 24)).collect();
        let mut b = fast().datanodes(3).datanode_args(None, &["--min-free-bytes", "4194304"]);
        for (i, d) in disks.iter().enumerate() {
            b = b.datanode_dir(i, d.0.clone());
        }
        let cluster = start(b).await;
        let c = cluster.client();
        c.create_bucket("full").await.expect("mb");
        let data = random_bytes(64 * MIB, 77);
        let err = c
            .upload(std::io::Cursor::new(data), "full", "too-big", &chunked(MIB as u64))
            .await
            .expect_err("a full cluster refuses the upload");
                let mut msg = err.to_string();
        let mut cause = std::error::Error::source(&err);
        while let Some(c) = cause {
            msg.push_str(&format!(": {c}"));
            cause = c.source();
        }
        let msg = msg.to_lowercase();
        eprintln!("FIGURES whole cluster full: client told {msg:?}");
        assert!(msg.contains("full"), "the error says the cluster is full: {msg}");
        assert!(c.stat("full", "too-big").await.expect_err("no partial file").is_not_found());
        drop(cluster);
        drop(disks);
        drop(small);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_partitioned_datanode_is_replaced_and_trimmed_when_it_rejoins() {
    bounded(async {
        // Datanode 3 lives in its own network namespace behind a veth link.
        let cluster = start(fast().datanodes(4).netns(3)).await;
        let c = cluster.client();
        let files = upload_files(&c, "part", 8, 5 * MIB, 600).await;
        let id = cluster.node_id(3).expect("id");
        let on_it = cluster.chunk_files(3);
        assert!(on_it > 0, "the namespaced node holds replicas");

        cluster.cut_link().expect("cut");
        let detect = wait_state(&cluster, id, "dead").await;
        let restore = wait_healthy(&cluster, Duration::from_secs(120)).await;
        let mut lost = bytes_lost(&c, "part", &files).await;
        for (path, _) in &files {
            for ch in c.locations("part", path).await.expect("locations").chunks {
                let live = ch.replicas.iter().filter(|r| r.node != id).count();
                assert!(live >= 3, "{path}: chunk {} has {live} replicas outside the partition", ch.id);
            }
        }

        cluster.restore_link().expect("restore");
        wait_state(&cluster, id, "live").await;
        let t = Instant::now();
        wait_until("excess replicas trimmed after the rejoin", Duration::from_secs(60), || async {
            let mut exact = true;
            for (path, _) in &files {
                for ch in c.locations("part", path).await?.chunks {
                    exact &= ch.replicas.len() == 3;
                }
            }
            let on_disk: usize = (0..4).map(|i| cluster.chunk_files(i)).sum();
            Ok(exact && on_disk == 3 * 40)
        })
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
        let trimmed = t.elapsed();
        lost += bytes_lost(&c, "part", &files).await;
        eprintln!(
            "FIGURES partition of 1 of 4 ({on_it} chunks): detect {:.1} s, restore {:.1} s after detection; rejoin trimmed in {:.1} s; no client traffic during the fault, bytes lost {lost}",
            detect.as_secs_f64(),
            restore.as_secs_f64(),
            trimmed.as_secs_f64()
        );
        assert_eq!(lost, 0);
    })
    .await;
}

/// Encrypted objects heal like any others, with no key anywhere in the
/// cluster's services: a rotten replica of a sealed chunk is found by the
/// scrubber and recopied, a killed datanode's sealed replicas are copied
/// again, and every object reads back identical, SSE-C ones only with
/// their key.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn encrypted_objects_survive_rot_and_a_killed_datanode() {
    bounded(async {
        let mut cluster = start(fast().datanodes(4).datanode_args(None, &["--scrub-interval", "1s"])).await;
        let c = cluster.client();
        c.create_bucket("enc").await.expect("mb");
        let customer = blob_client::sse::CustomerKey::new([42; 32]);
        let keyed = c.with_customer_key(customer.clone());
        let mut files = Vec::new();
        for i in 0..6u64 {
            let data = random_bytes(3 * MIB + 1000, 300 + i);
            let mut opts = chunked(MIB as u64);
            opts.sealing = Some(if i % 2 == 0 {
                c.sse_s3_sealing().await.expect("data key")
            } else {
                blob_client::sse::Sealing::customer(&customer)
            });
            let path = format!("f/{i}");
            keyed
                .upload(std::io::Cursor::new(data.clone()), "enc", &path, &opts)
                .await
                .expect("upload");
            files.push((path, sha256_hex(&data)));
        }
        // SSE-C objects are not readable without their key.
        let mut sink = Vec::new();
        let refused = c
            .download("enc", &files[1].0, &mut sink, &blob_client::DownloadOptions::default())
            .await;
        assert!(
            matches!(refused, Err(blob_client::Error::KeyRequired { .. })),
            "{refused:?}"
        );
        let wrong = c.with_customer_key(blob_client::sse::CustomerKey::new([7; 32]));
        let refused = wrong
            .download("enc", &files[1].0, &mut sink, &blob_client::DownloadOptions::default())
            .await;
        assert!(matches!(refused, Err(blob_client::Error::WrongKey { .. })), "{refused:?}");

        // Rot one replica of a sealed chunk of each of two objects.
        for (n, (path, _)) in files.iter().take(2).enumerate() {
            let ch = c.locations("enc", path).await.expect("locations").chunks[1].clone();
            let i = cluster.datanode_index(&ch.replicas[n].node).expect("index");
            cluster.corrupt_chunk(i, &ch.id, 7000 + n as u64).expect("corrupt");
        }
        wait_until("scrubber found the rot", Duration::from_secs(60), || async {
            Ok(cluster.datanode_metric("blob_datanode_scrub_corrupt_total").await? >= 2.0)
        })
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
        wait_healthy(&cluster, Duration::from_secs(60)).await;

        // Then a datanode dies: its sealed replicas are copied again.
        let victim = 2;
        let id = cluster.node_id(victim).expect("id");
        assert!(cluster.chunk_files(victim) > 0);
        cluster.kill_datanode(victim);
        wait_state(&cluster, id, "dead").await;
        let restore = wait_healthy(&cluster, Duration::from_secs(120)).await;
        let lost = bytes_lost(&keyed, "enc", &files).await;
        eprintln!(
            "FIGURES encrypted objects: 2 rotten replicas and 1 of 4 datanodes killed, restored {:.1} s after detection, bytes lost {lost}",
            restore.as_secs_f64()
        );
        assert_eq!(lost, 0);
        for (path, _) in &files {
            for ch in c.locations("enc", path).await.expect("locations").chunks {
                let live = ch.replicas.iter().filter(|r| r.node != id).count();
                assert!(live >= 3, "{path}: chunk {} has {live} live replicas", ch.id);
            }
        }
    })
    .await;
}
