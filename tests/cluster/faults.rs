//! Killed datanodes and rotten bytes do not lose data.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use blob_client::DownloadOptions;
use blob_tests::{random_bytes, sha256_hex, TestCluster};

use crate::{bounded, chunked, get, put, start};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn upload_succeeds_with_a_datanode_killed_just_before() {
    bounded(async {
        let mut cluster = start(TestCluster::builder().datanodes(4)).await;
        let c = cluster.client();
        c.create_bucket("kill").await.expect("mb");
        // The namenode has not noticed yet: placements still name the dead node.
        cluster.kill_datanode(1);
        let dead = cluster.node_id(1).expect("id");
        let data = random_bytes(24 << 20, 3);
        let out = put(&c, "kill", "during.bin", &data, &chunked(1 << 20)).await;
        assert_eq!(out.file.size, data.len() as u64);
        assert_eq!(
            sha256_hex(&get(&c, "kill", "during.bin").await),
            sha256_hex(&data)
        );
        // Every chunk has three replicas, none on the dead node.
        let locs = c.locations("kill", "during.bin").await.expect("locations");
        for ch in &locs.chunks {
            let live: Vec<_> = ch.replicas.iter().filter(|r| r.node != dead).collect();
            assert!(
                live.len() >= 3,
                "chunk {} has {} live replicas",
                ch.id,
                live.len()
            );
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn download_survives_a_datanode_killed_midway() {
    bounded(async {
        let cluster = start(TestCluster::builder().datanodes(4)).await;
        let c = cluster.client();
        c.create_bucket("kill").await.expect("mb");
        let data = random_bytes(48 << 20, 4);
        put(&c, "kill", "movie.bin", &data, &chunked(1 << 20)).await;
        // Kill the node the reader prefers for the later chunks.
        let locs = c.locations("kill", "movie.bin").await.expect("locations");
        let victim_id = locs.chunks.last().expect("chunks").replicas[0].node;
        let victim = cluster.datanode_index(&victim_id).expect("victim index");

        let cluster = Arc::new(Mutex::new(cluster));
        let killed = Arc::new(AtomicBool::new(false));
        let (cl, k) = (cluster.clone(), killed.clone());
        let opts = DownloadOptions {
            parallel: 2,
            progress: Some(Arc::new(move |done: u64| {
                if done >= 12 << 20 && !k.swap(true, Ordering::SeqCst) {
                    if let Ok(mut cl) = cl.lock() {
                        cl.kill_datanode(victim);
                    }
                }
            })),
        };
        let mut out = Vec::new();
        c.download("kill", "movie.bin", &mut out, &opts)
            .await
            .expect("download despite the kill");
        assert!(
            killed.load(Ordering::SeqCst),
            "the kill happened during the download"
        );
        assert_eq!(sha256_hex(&out), sha256_hex(&data));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn flipped_bytes_are_caught_and_served_from_another_replica() {
    bounded(async {
        let cluster = start(TestCluster::builder()).await;
        let c = cluster.client();
        c.create_bucket("rot").await.expect("mb");
        let data = random_bytes(3 << 20, 8);
        put(&c, "rot", "file", &data, &chunked(1 << 20)).await;
        let locs = c.locations("rot", "file").await.expect("locations");
        // Corrupt the preferred replica of every chunk, at a different block each.
        let mut victims = Vec::new();
        for (n, ch) in locs.chunks.iter().enumerate() {
            let i = cluster.datanode_index(&ch.replicas[0].node).expect("index");
            cluster
                .corrupt_chunk(i, &ch.id, 100 + n as u64 * 70_000)
                .expect("corrupt");
            victims.push(i);
        }
        let before = cluster
            .datanode_metric("blob_datanode_corrupt_chunks_total")
            .await
            .expect("metric");
        assert_eq!(sha256_hex(&get(&c, "rot", "file").await), sha256_hex(&data));
        let after = cluster
            .datanode_metric("blob_datanode_corrupt_chunks_total")
            .await
            .expect("metric");
        assert!(
            after - before >= locs.chunks.len() as f64,
            "each bad replica is counted ({before} → {after})"
        );
        // The bad replicas are out of service: a second read is clean too.
        assert_eq!(sha256_hex(&get(&c, "rot", "file").await), sha256_hex(&data));
        // And a range read of a corrupted block never returns bad bytes.
        let part = c.read_range("rot", "file", 90, 100).await.expect("range");
        assert_eq!(&part[..], &data[90..190]);
    })
    .await;
}
