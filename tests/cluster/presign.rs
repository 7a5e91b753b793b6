//! Datanodes verify pre-signed URLs themselves: anything off is a 403 with
//! a reason, and nothing is stored.

use blob_common::presign::{self, Claims, Keyring, Op, PipelineNode};
use blob_common::ChunkId;
use blob_tests::{random_bytes, TestCluster};

use crate::{bounded, start};

fn keyring(cluster: &TestCluster) -> Keyring {
    let text = std::fs::read_to_string(cluster.root().join("cluster.secret")).expect("secret file");
    Keyring::parse(&text).expect("keyring")
}

fn claims(cluster: &TestCluster, op: Op, chunk: ChunkId, size: u64, exp: u64) -> Claims {
    Claims {
        op,
        chunk,
        exp,
        kid: String::new(),
        size: (op == Op::Put).then_some(size),
        pipeline: vec![PipelineNode {
            node: cluster.node_id(0).expect("node id"),
            url: cluster.datanodes[0].url(),
        }],
        upload: None,
        origins: vec![],
    }
}

async fn put(url: &str, body: Vec<u8>) -> (u16, String) {
    let resp = reqwest::Client::new()
        .put(url)
        .body(body)
        .send()
        .await
        .expect("PUT");
    (
        resp.status().as_u16(),
        resp.text().await.unwrap_or_default(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_urls_get_403_and_store_nothing() {
    bounded(async {
        let cluster = start(TestCluster::builder().datanodes(1).replication(1)).await;
        let ring = keyring(&cluster);
        let base = cluster.datanodes[0].url();
        let data = random_bytes(100_000, 5);
        let id = ChunkId::of(&data);
        let later = blob_common::now_secs() + 600;
        let good = presign::url(
            &base,
            &ring,
            &claims(&cluster, Op::Put, id, data.len() as u64, later),
        );

        let mut cases: Vec<(&str, String, Vec<u8>, &str)> = Vec::new();
        let expired = presign::url(
            &base,
            &ring,
            &claims(&cluster, Op::Put, id, data.len() as u64, 1000),
        );
        cases.push(("expired", expired, data.clone(), "expired"));
        let mut tampered = good.clone();
        let last = tampered.pop().expect("nonempty");
        tampered.push(if last == '0' { '1' } else { '0' });
        cases.push(("tampered signature", tampered, data.clone(), "signature"));
        let get_url = presign::url(&base, &ring, &claims(&cluster, Op::Get, id, 0, later));
        cases.push(("wrong operation", get_url, data.clone(), "signed for get"));
        let other = ChunkId::of(b"something else");
        let wrong_chunk = good.replace(&id.to_string(), &other.to_string());
        cases.push(("wrong chunk", wrong_chunk, data.clone(), "signed for chunk"));
        cases.push(("wrong size", good.clone(), data[..50_000].to_vec(), "bytes"));
        let foreign = Keyring::generate();
        let forged = presign::url(
            &base,
            &foreign,
            &claims(&cluster, Op::Put, id, data.len() as u64, later),
        );
        cases.push(("foreign key", forged, data.clone(), "signature"));

        for (what, url, body, reason) in cases {
            let (status, text) = put(&url, body).await;
            assert_eq!(status, 403, "{what}: {text}");
            assert!(
                text.to_lowercase().contains(reason),
                "{what}: reason {text:?} should mention {reason:?}"
            );
            assert!(
                !cluster.chunk_file(0, &id).exists(),
                "{what}: chunk stored anyway"
            );
            assert!(
                !cluster.chunk_file(0, &other).exists(),
                "{what}: chunk stored anyway"
            );
        }

        // A tampered GET is refused too; the good URL works.
        let (status, text) = put(&good, data.clone()).await;
        assert_eq!(status, 200, "{text}");
        assert!(cluster.chunk_file(0, &id).exists());
        let get_good = presign::url(&base, &ring, &claims(&cluster, Op::Get, id, 0, later));
        let resp = reqwest::get(&get_good).await.expect("GET");
        assert_eq!(resp.status().as_u16(), 200);
        assert_eq!(resp.bytes().await.expect("body").to_vec(), data);
        let resp = reqwest::get(get_good.replace("&s=", "&s=00"))
            .await
            .expect("GET");
        assert_eq!(resp.status().as_u16(), 403);
    })
    .await;
}
