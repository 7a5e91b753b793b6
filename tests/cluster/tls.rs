//! One scenario over TLS on every hop: a cluster whose namenode,
//! datanodes, edge and S3 gateway all serve TLS with certificates from a
//! local CA, driven by blobctl, the AWS CLI and boto3 (with
//! `AWS_CA_BUNDLE`), the mount and a read through the edge; clients without
//! the CA are refused with a certificate error, and plain HTTP to a TLS
//! port is refused without disturbing the service.

use std::path::Path;
use std::time::Duration;

use blob_client::{Client, DownloadOptions};
use blob_tests::{random_bytes, sha256_file, sha256_hex, EdgeSpec, Mount, TestCluster};

use crate::s3::{run, s3_cmd, venv_python};
use crate::{blobctl_bin, bounded, chunked, get, put, start};

const MIB: usize = 1 << 20;

/// Runs blobctl with `config` and only `env` for its BLOBCTL_* settings.
fn blobctl(config: &Path, args: &[&str], env: &[(&str, &str)]) -> (i32, Vec<u8>, String) {
    crate::cli::blobctl_env(config, args, None, env)
}

/// An error with its causes.
fn chain(e: blob_client::Error) -> String {
    format!("{:#}", anyhow::Error::new(e))
}

/// Whether an error (with its causes) says a certificate was not trusted.
fn is_certificate_error(text: &str) -> bool {
    let t = text.to_ascii_lowercase();
    t.contains("certificate") || t.contains("unknownissuer")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_hop_speaks_tls_and_only_the_clusters_ca_is_trusted() {
    bounded(async {
        let c = start(
            TestCluster::builder()
                .fsync(false)
                .tls(true)
                .s3(true)
                .edge(EdgeSpec::new("z1")),
        )
        .await;
        let ca = c.ca_file.clone().expect("a TLS cluster has a CA");
        for url in [c.endpoint(), c.s3_endpoint(), c.edge_url(0)]
            .into_iter()
            .chain(c.datanodes.iter().map(|d| d.url()))
        {
            assert!(url.starts_with("https://"), "{url}");
        }
        let client = c.client_direct();
        client.create_bucket("tls-b").await.expect("bucket");

        tracing::info!("--- pre-signed chunk URLs are https (datanodes registered so)");
        let nodes = client.list_nodes().await.expect("nodes");
        assert_eq!(nodes.nodes.len(), 3);
        for n in &nodes.nodes {
            assert!(n.url.starts_with("https://"), "{n:?}");
        }

        tracing::info!("--- blobctl upload and download over https");
        let tmp = tempfile::tempdir().expect("tmp");
        let src = tmp.path().join("src.bin");
        let data = random_bytes(20 * MIB + 12_345, 15);
        std::fs::write(&src, &data).expect("write source");
        let cfg = c.client_config_direct().expect("client config");
        let text = std::fs::read_to_string(&cfg).expect("config text");
        assert!(text.contains("ca_file"), "{text}");
        let back = tmp.path().join("back.bin");
        let src_s = src.display().to_string();
        let back_s = back.display().to_string();
        for args in [
            vec!["upload", "--chunk-size", "4MiB", &src_s, "tls-b/cli.bin"],
            vec!["download", "tls-b/cli.bin", &back_s],
        ] {
            let (code, _, err) = blobctl(&cfg, &args, &[]);
            assert_eq!(code, 0, "blobctl {args:?}: {err}");
        }
        assert_eq!(
            sha256_file(&back).expect("hash"),
            sha256_hex(&data),
            "blobctl round trip"
        );
        // The CA from the environment works as well as from the file.
        let bare = tmp.path().join("no-ca.toml");
        std::fs::write(
            &bare,
            text.lines()
                .filter(|l| !l.starts_with("ca_file"))
                .collect::<Vec<_>>()
                .join("\n"),
        )
        .expect("write config");
        let ca_s = ca.display().to_string();
        let (code, out, err) = blobctl(&bare, &["ls", "tls-b"], &[("BLOBCTL_CA_FILE", &ca_s)]);
        assert_eq!(code, 0, "{err}");
        assert!(String::from_utf8_lossy(&out).contains("cli.bin"));

        tracing::info!("--- without the CA: refused, with a certificate error, not data");
        let (code, out, err) = blobctl(&bare, &["cat", "tls-b/cli.bin"], &[]);
        assert_eq!(code, 2, "{err}");
        assert!(out.is_empty(), "no data without the CA");
        assert!(is_certificate_error(&err), "{err}");
        // Final at once: no retry makes an untrusted certificate trusted.
        let t = std::time::Instant::now();
        let (code, _, err) = blobctl(&bare, &["upload", &src_s, "tls-b/never.bin"], &[]);
        assert_eq!(code, 2, "{err}");
        assert!(is_certificate_error(&err), "{err}");
        assert!(
            t.elapsed() < Duration::from_secs(3),
            "refused in {:?}, not retried",
            t.elapsed()
        );
        let untrusted = Client::new(blob_client::ClientConfig::new(
            c.endpoint(),
            &c.access_key,
            &c.secret_key,
        ))
        .expect("client");
        let e = untrusted
            .list_buckets()
            .await
            .expect_err("no CA, no answer");
        let e = chain(e);
        assert!(is_certificate_error(&e), "{e}");
        let other_ca = tmp.path().join("other-ca");
        let other = blobd::cluster::Certs::open(&other_ca).expect("another CA");
        let stranger = Client::new(
            blob_client::ClientConfig::new(c.endpoint(), &c.access_key, &c.secret_key)
                .with_ca_file(Some(other.ca_file())),
        )
        .expect("client");
        let e = stranger
            .list_buckets()
            .await
            .expect_err("another CA, no answer");
        let e = chain(e);
        assert!(is_certificate_error(&e), "{e}");

        tracing::info!("--- plain HTTP to TLS ports: refused, the services keep serving");
        let plain = reqwest::Client::builder()
            .timeout(Duration::from_secs(15))
            .build()
            .expect("client");
        let mut ports: Vec<String> = vec![c.endpoint(), c.s3_endpoint(), c.edge_url(0)];
        ports.extend(c.datanodes.iter().map(|d| d.url()));
        for url in &ports {
            let http = url.replacen("https://", "http://", 1);
            let r = plain.get(format!("{http}/")).send().await;
            assert!(r.is_err(), "plain HTTP to {url} was answered: {r:?}");
        }
        assert!(c.namenode.is_started());
        let listed = client.list_buckets().await.expect("still serving");
        assert!(listed.buckets.iter().any(|b| b.name == "tls-b"));

        tracing::info!("--- the AWS CLI with AWS_CA_BUNDLE");
        let s3_back = tmp.path().join("s3-back.bin");
        run({
            let mut cmd = s3_cmd(&c, "aws");
            cmd.args([
                "s3",
                "cp",
                &src_s,
                "s3://tls-b/aws.bin",
                "--only-show-errors",
            ]);
            cmd
        });
        run({
            let mut cmd = s3_cmd(&c, "aws");
            cmd.args([
                "s3",
                "cp",
                "s3://tls-b/aws.bin",
                &s3_back.display().to_string(),
                "--only-show-errors",
            ]);
            cmd
        });
        assert_eq!(sha256_file(&s3_back).expect("hash"), sha256_hex(&data));
        // Written through S3, read by the client library: the same bytes.
        assert_eq!(
            sha256_hex(&get(&client, "tls-b", "aws.bin").await),
            sha256_hex(&data)
        );
        let out = {
            let mut cmd = s3_cmd(&c, "aws");
            cmd.env_remove("AWS_CA_BUNDLE")
                .args(["s3", "ls", "s3://tls-b/"]);
            cmd.output().expect("aws")
        };
        assert!(!out.status.success(), "aws without the CA was answered");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(is_certificate_error(&err), "{err}");

        tracing::info!("--- boto3 with AWS_CA_BUNDLE");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("s3/tls.py");
        let out = run({
            let mut cmd = s3_cmd(&c, venv_python());
            cmd.arg(script).env(
                "PYTHONPATH",
                Path::new(env!("CARGO_MANIFEST_DIR")).join("s3"),
            );
            cmd
        });
        eprintln!("{out}");
        assert!(out.contains(" 0 failed"), "{out}");

        tracing::info!("--- the mount");
        let m = Mount::start(&blobctl_bin(), &cfg, "tls-b", &["--chunk-size", "1MiB"])
            .unwrap_or_else(|e| panic!("{e:#}"));
        let small = random_bytes(3 * MIB + 17, 16);
        let (path, write) = (m.path("mounted.bin"), small.clone());
        tokio::task::spawn_blocking(move || std::fs::write(path, write))
            .await
            .expect("task")
            .expect("write through the mount");
        assert_eq!(
            sha256_hex(&get(&client, "tls-b", "mounted.bin").await),
            sha256_hex(&small)
        );
        let path = m.path("cli.bin");
        let read = tokio::task::spawn_blocking(move || std::fs::read(path))
            .await
            .expect("task")
            .expect("read through the mount");
        assert_eq!(
            sha256_hex(&read),
            sha256_hex(&data),
            "read through the mount"
        );
        drop(m);

        tracing::info!("--- a read through the edge over https");
        let edge_data = random_bytes(5 * MIB, 17);
        put(
            &client,
            "tls-b",
            "edge.bin",
            &edge_data,
            &chunked(MIB as u64),
        )
        .await;
        let zoned = c.client_in("z1");
        let edges = zoned.list_edges().await.expect("edges");
        assert!(edges.edges[0].url.starts_with("https://"), "{edges:?}");
        let stats = || async {
            zoned
                .edge_stats(&edges.edges[0].url, &edges.stats_query)
                .await
                .expect("edge stats")
        };
        // The gateway reads in zone z1 too: count from here.
        let before = stats().await;
        let mut out = Vec::new();
        zoned
            .download("tls-b", "edge.bin", &mut out, &DownloadOptions::default())
            .await
            .expect("download through the edge");
        assert_eq!(sha256_hex(&out), sha256_hex(&edge_data));
        let after = stats().await;
        assert_eq!(
            (after.misses - before.misses, after.fills - before.fills),
            (5, 5),
            "every chunk filled from a datanode over https: {after:?}"
        );
    })
    .await;
}
