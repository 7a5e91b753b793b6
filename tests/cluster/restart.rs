//! A namenode killed with SIGKILL comes back with every committed file and
//! without any uncommitted one.

use blob_common::proto::namenode::{ChunkRef, CreateUpload};
use blob_common::ChunkId;
use blob_tests::{random_bytes, sha256_hex, TestCluster};

use crate::{bounded, chunked, get, put, start};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn namenode_sigkill_keeps_committed_files_and_hides_uncommitted() {
    bounded(async {
        let mut cluster = start(TestCluster::builder()).await;
        let c = cluster.client();
        c.create_bucket("durable").await.expect("mb");
        let mut files = Vec::new();
        for i in 0..10u64 {
            let data = random_bytes(200_000 * (i as usize + 1), 300 + i);
            put(
                &c,
                "durable",
                &format!("dir/f{i}"),
                &data,
                &chunked(256 << 10),
            )
            .await;
            files.push((format!("dir/f{i}"), sha256_hex(&data)));
        }
        c.rename("durable", "dir/f0", "moved/f0").await.expect("mv");
        files[0].0 = "moved/f0".into();
        c.delete_file("durable", "dir/f9").await.expect("rm");
        files.pop();

        // An upload whose chunks are stored but which is never committed.
        let pending = random_bytes(300_000, 999);
        let plan = c
            .create_upload(&CreateUpload {
                bucket: "durable".into(),
                path: "pending".into(),
                replication: None,
                chunk_size: 1 << 20,
                chunks: vec![ChunkRef {
                    id: ChunkId::of(&pending),
                    size: pending.len() as u64,
                }],
            })
            .await
            .expect("open session");
        let url = plan.chunks[0].put.as_ref().expect("put target").url.clone();
        let resp = reqwest::Client::new()
            .put(url)
            .body(pending)
            .send()
            .await
            .expect("PUT chunk");
        assert!(resp.status().is_success());

        cluster.kill_namenode();
        cluster.restart_namenode().await.expect("restart namenode");

        for (path, sum) in &files {
            assert_eq!(&sha256_hex(&get(&c, "durable", path).await), sum, "{path}");
        }
        assert!(c
            .stat("durable", "dir/f9")
            .await
            .expect_err("deleted")
            .is_not_found());
        assert!(c
            .stat("durable", "dir/f0")
            .await
            .expect_err("renamed")
            .is_not_found());
        assert!(c
            .stat("durable", "pending")
            .await
            .expect_err("uncommitted")
            .is_not_found());
        let listed = c
            .list_all("durable", &Default::default())
            .await
            .expect("ls");
        assert_eq!(listed.files.len(), files.len());
    })
    .await;
}
