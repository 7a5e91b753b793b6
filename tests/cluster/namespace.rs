//! Buckets and listings: prefix, delimiter and pagination behave like S3's.

use blob_common::proto::namenode::ListFilesQuery;
use blob_tests::TestCluster;

use crate::{bounded, chunked, put, start};

fn q(
    prefix: &str,
    delimiter: Option<&str>,
    start_after: Option<String>,
    limit: usize,
) -> ListFilesQuery {
    ListFilesQuery {
        prefix: Some(prefix.to_string()),
        delimiter: delimiter.map(str::to_string),
        start_after,
        limit: Some(limit),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn listings_page_through_prefixes_and_delimiters() {
    bounded(async {
        let cluster = start(TestCluster::builder().datanodes(1).replication(1)).await;
        let c = cluster.client();
        c.create_bucket("nsp").await.expect("mb");
        assert!(c
            .create_bucket("nsp")
            .await
            .expect_err("exists")
            .is_conflict());
        let paths = ["a/1", "a/2", "a/sub/3", "b/1", "c", "d/x/y", "é/ü", "zz"];
        for p in paths {
            put(&c, "nsp", p, p.as_bytes(), &chunked(64 << 10)).await;
        }

        // Everything, two at a time: all paths once, in byte order.
        let mut seen = Vec::new();
        let mut after = None;
        loop {
            let page = c
                .list_files("nsp", &q("", None, after.clone(), 2))
                .await
                .expect("ls");
            assert!(page.files.len() <= 2);
            seen.extend(page.files.iter().map(|f| f.path.clone()));
            match page.next_start_after {
                Some(n) => after = Some(n),
                None => break,
            }
        }
        let mut sorted: Vec<String> = paths.iter().map(|s| s.to_string()).collect();
        sorted.sort();
        assert_eq!(seen, sorted);

        // With a delimiter, one page at a time: directories roll up.
        let mut files = Vec::new();
        let mut prefixes = Vec::new();
        let mut after = None;
        loop {
            let page = c
                .list_files("nsp", &q("", Some("/"), after.clone(), 1))
                .await
                .expect("ls");
            assert_eq!(page.files.len() + page.common_prefixes.len(), 1, "{page:?}");
            files.extend(page.files.iter().map(|f| f.path.clone()));
            prefixes.extend(page.common_prefixes.clone());
            match page.next_start_after {
                Some(n) => after = Some(n),
                None => break,
            }
        }
        assert_eq!(files, vec!["c", "zz"]);
        assert_eq!(prefixes, vec!["a/", "b/", "d/", "é/"]);

        // A prefix inside a directory.
        let page = c
            .list_files("nsp", &q("a/", Some("/"), None, 100))
            .await
            .expect("ls");
        let names: Vec<_> = page.files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(names, vec!["a/1", "a/2"]);
        assert_eq!(page.common_prefixes, vec!["a/sub/"]);
        assert!(page.next_start_after.is_none());

        // Rename replaces, deletes free the bucket for removal.
        c.rename("nsp", "a/1", "a/2").await.expect("mv over");
        assert_eq!(
            c.read_range("nsp", "a/2", 0, 100)
                .await
                .expect("read")
                .as_ref(),
            b"a/1"
        );
        assert!(c
            .delete_bucket("nsp")
            .await
            .expect_err("not empty")
            .is_conflict());
        for f in c
            .list_all("nsp", &Default::default())
            .await
            .expect("ls")
            .files
        {
            c.delete_file("nsp", &f.path).await.expect("rm");
        }
        c.delete_bucket("nsp").await.expect("rb");
        assert!(!c.head_bucket("nsp").await.expect("head"));
        assert!(c.list_buckets().await.expect("buckets").buckets.is_empty());
    })
    .await;
}
