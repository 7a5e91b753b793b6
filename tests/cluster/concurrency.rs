//! Concurrent writers never produce a mixed or partial file.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use blob_tests::{random_bytes, sha256_hex, TestCluster};

use crate::{bounded, chunked, get, put, start};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_concurrent_uploads_all_land_intact() {
    bounded(async {
        let cluster = start(TestCluster::builder()).await;
        let c = cluster.client();
        c.create_bucket("many").await.expect("mb");
        let mut tasks = Vec::new();
        for i in 0..20u64 {
            let c = c.clone();
            tasks.push(tokio::spawn(async move {
                let data = random_bytes(1_500_000 + i as usize * 10_007, 100 + i);
                put(
                    &c,
                    "many",
                    &format!("file-{i:02}"),
                    &data,
                    &chunked(256 << 10),
                )
                .await;
                sha256_hex(&data)
            }));
        }
        let mut sums = Vec::new();
        for t in tasks {
            sums.push(t.await.expect("upload task"));
        }
        for (i, want) in sums.iter().enumerate() {
            let back = get(&c, "many", &format!("file-{i:02}")).await;
            assert_eq!(&sha256_hex(&back), want, "file-{i:02}");
        }
        let listed = c.list_all("many", &Default::default()).await.expect("ls");
        assert_eq!(listed.files.len(), 20);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn overwrites_with_readers_show_only_whole_versions() {
    bounded(async {
        let cluster = start(TestCluster::builder()).await;
        let c = cluster.client();
        c.create_bucket("race").await.expect("mb");
        let versions: Vec<Vec<u8>> = (0..10)
            .map(|i| random_bytes(600_000 + i * 1000, 7_000 + i as u64))
            .collect();
        let valid: HashSet<String> = versions.iter().map(|v| sha256_hex(v)).collect();
        put(&c, "race", "hot", &versions[0], &chunked(64 << 10)).await;

        let done = Arc::new(AtomicBool::new(false));
        let mut readers = Vec::new();
        for _ in 0..4 {
            let (c, done, valid) = (c.clone(), done.clone(), valid.clone());
            readers.push(tokio::spawn(async move {
                let mut reads = 0;
                while !done.load(Ordering::Relaxed) || reads == 0 {
                    let back = get(&c, "race", "hot").await;
                    assert!(
                        valid.contains(&sha256_hex(&back)),
                        "a read returned a mixed or partial file ({} bytes)",
                        back.len()
                    );
                    reads += 1;
                }
                reads
            }));
        }
        let mut writers = Vec::new();
        for v in versions.clone() {
            let c = c.clone();
            writers.push(tokio::spawn(async move {
                put(&c, "race", "hot", &v, &chunked(64 << 10)).await;
            }));
        }
        for w in writers {
            w.await.expect("writer");
        }
        done.store(true, Ordering::Relaxed);
        let mut total = 0;
        for r in readers {
            total += r.await.expect("reader");
        }
        assert!(total >= 4);
        let last = get(&c, "race", "hot").await;
        assert!(valid.contains(&sha256_hex(&last)));
    })
    .await;
}
