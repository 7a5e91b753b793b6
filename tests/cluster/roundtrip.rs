//! Files of every awkward size go up and come back byte-identical.

use blob_tests::{random_bytes, sha256_hex, TestCluster};

use crate::{bounded, chunked, get, put, start};

const CHUNK: u64 = 1 << 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sizes_around_chunk_boundaries_round_trip() {
    bounded(async {
        let cluster = start(TestCluster::builder()).await;
        let c = cluster.client();
        c.create_bucket("sizes").await.expect("mb");
        let chunk = CHUNK as usize;
        let sizes = [0, 1, chunk - 1, chunk, chunk + 1, 3 * chunk + 17];
        for (i, &size) in sizes.iter().enumerate() {
            let data = random_bytes(size, i as u64 + 1);
            let path = format!("f/{size}.bin");
            let out = put(&c, "sizes", &path, &data, &chunked(CHUNK)).await;
            assert_eq!(out.file.size, size as u64);
            assert_eq!(out.file.chunks.len() as u64, (size as u64).div_ceil(CHUNK));
            let back = get(&c, "sizes", &path).await;
            assert_eq!(sha256_hex(&back), sha256_hex(&data), "size {size}");
            let st = c.stat("sizes", &path).await.expect("stat");
            assert_eq!((st.size, st.replication), (size as u64, 3));
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_64_mib_file_round_trips_with_default_chunks() {
    bounded(async {
        let cluster = start(TestCluster::builder()).await;
        let c = cluster.client();
        c.create_bucket("big").await.expect("mb");
        let data = random_bytes(64 << 20, 42);
        let out = put(&c, "big", "video.mp4", &data, &Default::default()).await;
        assert_eq!(out.file.chunks.len(), 8);
        let back = get(&c, "big", "video.mp4").await;
        assert_eq!(sha256_hex(&back), sha256_hex(&data));
        // A range read touching two chunks.
        let start_at = (8 << 20) - 100;
        let part = c
            .read_range("big", "video.mp4", start_at, 300)
            .await
            .expect("range");
        assert_eq!(&part[..], &data[start_at as usize..start_at as usize + 300]);
        // A download to a file lands whole.
        let dir = tempfile::tempdir().expect("tempdir");
        let local = dir.path().join("copy");
        c.download_to_path("big", "video.mp4", &local, &Default::default())
            .await
            .expect("download");
        assert_eq!(
            sha256_hex(&std::fs::read(&local).expect("read")),
            sha256_hex(&data)
        );
        // A download to a FIFO (like one to /dev/null) writes into it and
        // leaves it in place, instead of renaming a temp file over it.
        let fifo = dir.path().join("fifo");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .expect("mkfifo");
        assert!(made.success());
        let reader = {
            let fifo = fifo.clone();
            std::thread::spawn(move || std::fs::read(fifo).expect("read fifo"))
        };
        c.download_to_path("big", "video.mp4", &fifo, &Default::default())
            .await
            .expect("download to a FIFO");
        let got = tokio::task::spawn_blocking(move || reader.join().expect("reader"))
            .await
            .expect("join");
        assert_eq!(sha256_hex(&got), sha256_hex(&data));
        use std::os::unix::fs::FileTypeExt;
        assert!(std::fs::metadata(&fifo)
            .expect("stat")
            .file_type()
            .is_fifo());
    })
    .await;
}
