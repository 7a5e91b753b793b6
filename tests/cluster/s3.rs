//! The S3 gateway driven by real clients against a real cluster: boto3 at
//! its defaults (tests/s3/boto3_suite.py), the AWS CLI, curl on pre-signed
//! URLs, blobctl-side reads of S3 writes (and the reverse), and bad input.

use std::path::{Path, PathBuf};
use std::process::Command;

use blob_tests::{random_bytes, sha256_hex, EdgeSpec, TestCluster, TEST_MIN_PART_SIZE};

use crate::{bounded, get, put, start};

pub(crate) fn venv_python() -> PathBuf {
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    PathBuf::from(home).join(".cache/blobstore/venv/bin/python")
}

/// A command with the cluster's S3 endpoint and admin keys in its env (and
/// its CA as `AWS_CA_BUNDLE`, when it runs TLS).
pub(crate) fn s3_cmd(c: &TestCluster, program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut cmd = Command::new(program);
    cmd.env("AWS_ENDPOINT_URL", c.s3_endpoint())
        .env("AWS_ACCESS_KEY_ID", &c.access_key)
        .env("AWS_SECRET_ACCESS_KEY", &c.secret_key)
        .env("AWS_REGION", "us-east-1")
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .env("AWS_CONFIG_FILE", "/nonexistent")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
        .env("MIN_PART_SIZE", TEST_MIN_PART_SIZE.to_string());
    if let Some(ca) = &c.ca_file {
        cmd.env("AWS_CA_BUNDLE", ca);
    }
    cmd
}

pub(crate) fn run(mut cmd: Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn aws(c: &TestCluster, args: &[&str]) -> String {
    let mut cmd = s3_cmd(c, "aws");
    cmd.args(args);
    if matches!(args.get(1), Some(&("cp" | "sync" | "rm" | "mv"))) {
        cmd.arg("--only-show-errors");
    }
    run(cmd)
}

fn aws_api(c: &TestCluster, args: &[&str]) -> serde_json::Value {
    let mut cmd = s3_cmd(c, "aws");
    cmd.arg("s3api").args(args).args(["--output", "json"]);
    let out = run(cmd);
    if out.trim().is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("parsing {out}: {e}"))
    }
}

fn file_sha(p: &Path) -> String {
    sha256_hex(&std::fs::read(p).unwrap_or_else(|e| panic!("reading {}: {e}", p.display())))
}

/// Runs one of the boto3 scripts in tests/s3 against `c`, asserting that
/// every check passed; returns its output.
pub(crate) fn boto3_script(c: &TestCluster, name: &str) -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("s3").join(name);
    let out = run({
        let mut cmd = s3_cmd(c, venv_python());
        cmd.arg(script);
        cmd
    });
    eprintln!("{out}");
    assert!(out.contains(" 0 failed"), "{out}");
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn boto3_at_its_defaults_passes_the_suite() {
    bounded(async {
        let c = start(TestCluster::builder().fsync(false).s3(true)).await;
        let out = boto3_script(&c, "boto3_suite.py");
        assert!(
            out.contains("ok   aws-chunked bodies with checksum trailers"),
            "{out}"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn boto3_and_aws_cli_get_aws_exact_semantics() {
    bounded(async {
        let c = start(TestCluster::builder().fsync(false).s3(true)).await;
        boto3_script(&c, "boto3_semantics.py");

        // The same through the AWS CLI: conditional writes, a part read,
        // and SSE-KMS asked for but refused, with nothing stored.
        aws(&c, &["s3", "mb", "s3://cli-semantics"]);
        let dir = tempfile::tempdir().expect("tempdir");
        let body = dir.path().join("body");
        std::fs::write(&body, random_bytes(300_000, 16)).expect("write body");
        let body_arg = body.to_str().expect("utf-8 path");
        let put = |extra: &[&str]| {
            let mut cmd = s3_cmd(&c, "aws");
            cmd.args(["s3api", "put-object", "--bucket", "cli-semantics", "--key"])
                .args(extra)
                .args(["--body", body_arg]);
            cmd.output().expect("run aws")
        };
        let first = put(&["once", "--if-none-match", "*"]);
        assert!(first.status.success(), "{first:?}");
        let second = put(&["once", "--if-none-match", "*"]);
        let err = String::from_utf8_lossy(&second.stderr).into_owned();
        assert!(
            !second.status.success(),
            "a second If-None-Match: * write succeeded"
        );
        assert!(err.contains("PreconditionFailed"), "{err}");
        let kms = ["sse", "--server-side-encryption", "aws:kms"];
        let out = put(&kms);
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(!out.status.success(), "{kms:?} was accepted");
        assert!(err.contains("NotImplemented"), "{kms:?}: {err}");
        let mut head = s3_cmd(&c, "aws");
        head.args([
            "s3api",
            "head-object",
            "--bucket",
            "cli-semantics",
            "--key",
            "sse",
        ]);
        let out = head.output().expect("run aws");
        assert!(!out.status.success(), "a refused SSE write left an object");
        let part = dir.path().join("part");
        let v = aws_api(
            &c,
            &[
                "get-object",
                "--bucket",
                "cli-semantics",
                "--key",
                "once",
                "--part-number",
                "1",
                part.to_str().expect("utf-8 path"),
            ],
        );
        assert_eq!(file_sha(&part), file_sha(&body), "{v}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_browser_on_another_origin_fetches_hls_only_as_cors_allows() {
    bounded(async {
        let c = start(TestCluster::builder().fsync(false).s3(true)).await;
        // Each page Chromium rendered is kept here, and its result printed.
        let out = tempfile::tempdir().expect("tempdir");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("s3/cors_browser.py");
        let mut cmd = s3_cmd(&c, venv_python());
        cmd.arg(script).env("OUT_DIR", out.path()).env(
            "PYTHONPATH",
            Path::new(env!("CARGO_MANIFEST_DIR")).join("s3"),
        );
        let printed = run(cmd);
        eprintln!("{printed}");
        assert!(printed.contains(" 0 failed"), "{printed}");
        let allowed = std::fs::read_to_string(out.path().join("allowed.html")).expect("dump");
        assert!(allowed.contains("OK seg0.ts 206"), "{allowed}");
        let refused = std::fs::read_to_string(out.path().join("without-rules.html")).expect("dump");
        assert!(refused.contains("FAILED"), "{refused}");
    })
    .await;
}

/// Every regular file under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            match e.file_type() {
                Ok(t) if t.is_dir() => todo.push(e.path()),
                Ok(t) if t.is_file() => out.push(e.path()),
                _ => {}
            }
        }
    }
    out
}

/// How many of `files` hold any of three 256-byte pieces of `plain` (at
/// its start, middle and end).
fn files_holding(files: &[(PathBuf, Vec<u8>)], plain: &[u8]) -> usize {
    let n = plain.len();
    let needles: Vec<&[u8]> = [1000, n / 2, n - 300]
        .iter()
        .map(|&at| &plain[at..at + 256])
        .collect();
    files
        .iter()
        .filter(|(_, bytes)| {
            needles
                .iter()
                .any(|needle| memchr::memmem::find(bytes, needle).is_some())
        })
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn encrypted_objects_round_trip_and_reach_no_disk_in_clear() {
    bounded(async {
        // Memory tier 0: every chunk the edge caches lands on its disk.
        let c = start(
            TestCluster::builder()
                .fsync(false)
                .s3(true)
                .edge(EdgeSpec::new("z1").capacity(0, 256 << 20)),
        )
        .await;
        let out = tempfile::tempdir().expect("tempdir");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("s3/sse.py");
        let mut cmd = s3_cmd(&c, venv_python());
        cmd.arg(script).env("OUT_DIR", out.path()).env(
            "PYTHONPATH",
            Path::new(env!("CARGO_MANIFEST_DIR")).join("s3"),
        );
        let printed = run(cmd);
        eprintln!("{printed}");
        assert!(printed.contains(" 0 failed"), "{printed}");

        // The AWS CLI, multipart (20 MiB), with SSE-S3 and with SSE-C.
        let big = out.path().join("cli.bin");
        std::fs::write(&big, random_bytes(20 << 20, 31)).expect("write");
        let key = out.path().join("key");
        std::fs::write(&key, random_bytes(32, 32)).expect("write key");
        let (big_s, key_s) = (
            big.to_str().unwrap_or_default(),
            key.to_str().unwrap_or_default(),
        );
        let key_arg = format!("fileb://{key_s}");
        aws(
            &c,
            &["s3", "cp", big_s, "s3://sse/cli-s3", "--sse", "AES256"],
        );
        aws(
            &c,
            &[
                "s3",
                "cp",
                big_s,
                "s3://sse/cli-c",
                "--sse-c",
                "AES256",
                "--sse-c-key",
                &key_arg,
            ],
        );
        let back = out.path().join("back");
        aws(
            &c,
            &[
                "s3",
                "cp",
                "s3://sse/cli-s3",
                back.to_str().unwrap_or_default(),
            ],
        );
        assert_eq!(file_sha(&back), file_sha(&big));
        aws(
            &c,
            &[
                "s3",
                "cp",
                "s3://sse/cli-c",
                back.to_str().unwrap_or_default(),
                "--sse-c",
                "AES256",
                "--sse-c-key",
                &key_arg,
            ],
        );
        assert_eq!(file_sha(&back), file_sha(&big));
        let mut no_key = s3_cmd(&c, "aws");
        no_key.args([
            "s3",
            "cp",
            "s3://sse/cli-c",
            back.to_str().unwrap_or_default(),
        ]);
        let refused = no_key.output().expect("run aws");
        assert!(
            !refused.status.success(),
            "an SSE-C object was read without its key"
        );

        // Every file of the cluster (datanodes, the edge's disk, the
        // namenode): only the object stored in clear can be found there.
        // The edge writes what it serves a moment after serving it.
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        let files: Vec<(PathBuf, Vec<u8>)> = files_under(c.root())
            .into_iter()
            .filter_map(|p| std::fs::read(&p).ok().map(|b| (p, b)))
            .collect();
        let edge_files = files
            .iter()
            .filter(|(p, _)| p.to_string_lossy().contains("edge-0"))
            .count();
        assert!(edge_files > 0, "the edge cached nothing on disk");
        let mut found = Vec::new();
        for name in [
            "plain.bin",
            "sse-s3.bin",
            "sse-c.bin",
            "sse-mp.bin",
            "cli.bin",
        ] {
            let plain = std::fs::read(out.path().join(name)).expect("plaintext kept by the script");
            let n = files_holding(&files, &plain);
            eprintln!("{name}: found in {n} of {} files", files.len());
            found.push((name, n));
        }
        assert!(
            found[0].1 >= 3,
            "the grep cannot find even the clear object: {found:?}"
        );
        for (name, n) in &found[1..] {
            assert_eq!(*n, 0, "{name} was found in clear on disk: {found:?}");
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn versioned_buckets_keep_every_version_through_gc() {
    bounded(async {
        // A short GC grace: overwritten versions' chunks would be collected
        // within the script's wait if nothing kept them.
        let c = start(TestCluster::builder().fsync(false).s3(true).grace(
            std::time::Duration::from_secs(1),
            std::time::Duration::from_secs(3600),
        ))
        .await;
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("s3/versioning.py");
        let mut cmd = s3_cmd(&c, venv_python());
        cmd.arg(script).env("GC_WAIT_SECS", "4").env(
            "PYTHONPATH",
            Path::new(env!("CARGO_MANIFEST_DIR")).join("s3"),
        );
        let out = run(cmd);
        eprintln!("{out}");
        assert!(out.contains(" 0 failed"), "{out}");

        // The same through the AWS CLI.
        let dir = tempfile::tempdir().expect("tempdir");
        let (one, two) = (dir.path().join("one"), dir.path().join("two"));
        std::fs::write(&one, random_bytes(200_000, 91)).expect("write");
        std::fs::write(&two, random_bytes(300_000, 92)).expect("write");
        aws(&c, &["s3", "mb", "s3://cli-versions"]);
        aws(
            &c,
            &[
                "s3api",
                "put-bucket-versioning",
                "--bucket",
                "cli-versions",
                "--versioning-configuration",
                "Status=Enabled",
            ],
        );
        let status = aws_api(&c, &["get-bucket-versioning", "--bucket", "cli-versions"]);
        assert_eq!(status["Status"], "Enabled", "{status}");
        let path = |p: &Path| p.to_str().unwrap_or_default().to_string();
        let first = aws_api(
            &c,
            &[
                "put-object",
                "--bucket",
                "cli-versions",
                "--key",
                "k",
                "--body",
                &path(&one),
            ],
        );
        aws(&c, &["s3", "cp", &path(&two), "s3://cli-versions/k"]);
        let listed = aws_api(&c, &["list-object-versions", "--bucket", "cli-versions"]);
        let versions = listed["Versions"].as_array().cloned().unwrap_or_default();
        assert_eq!(versions.len(), 2, "{listed}");
        let old = first["VersionId"].as_str().unwrap_or_default().to_string();
        assert!(versions
            .iter()
            .any(|v| v["VersionId"] == old.as_str() && v["IsLatest"] == false));
        let back = dir.path().join("back");
        aws_api(
            &c,
            &[
                "get-object",
                "--bucket",
                "cli-versions",
                "--key",
                "k",
                "--version-id",
                &old,
                &path(&back),
            ],
        );
        assert_eq!(file_sha(&back), file_sha(&one));
        let deleted = aws_api(
            &c,
            &["delete-object", "--bucket", "cli-versions", "--key", "k"],
        );
        assert_eq!(deleted["DeleteMarker"], true, "{deleted}");
        let mut get = s3_cmd(&c, "aws");
        get.args(["s3", "cp", "s3://cli-versions/k", &path(&back)]);
        assert!(
            !get.output().expect("run aws").status.success(),
            "read past a delete marker"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lifecycle_rules_expire_objects_and_abort_old_uploads() {
    bounded(async {
        let day = std::time::Duration::from_secs(2);
        let c = start(
            TestCluster::builder()
                .fsync(false)
                .s3(true)
                .lifecycle_day(day),
        )
        .await;
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("s3/lifecycle.py");
        let mut cmd = s3_cmd(&c, venv_python());
        cmd.arg(script)
            .env("LIFECYCLE_DAY_SECS", day.as_secs().to_string())
            .env(
                "PYTHONPATH",
                Path::new(env!("CARGO_MANIFEST_DIR")).join("s3"),
            );
        let out = run(cmd);
        eprintln!("{out}");
        assert!(out.contains(" 0 failed"), "{out}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn aws_cli_round_trips_files_trees_and_presigned_urls() {
    bounded(async {
        let c = start(TestCluster::builder().fsync(false).s3(true)).await;
        let dir = tempfile::tempdir().expect("tempdir");
        let big = dir.path().join("big.bin");
        std::fs::write(&big, random_bytes(100 << 20, 7)).expect("write");
        aws(&c, &["s3", "mb", "s3://cli"]);

        tracing::info!("--- cp 100 MiB up and down (multipart)");
        aws(
            &c,
            &[
                "s3",
                "cp",
                big.to_str().unwrap_or_default(),
                "s3://cli/big.bin",
            ],
        );
        let back = dir.path().join("back.bin");
        aws(
            &c,
            &[
                "s3",
                "cp",
                "s3://cli/big.bin",
                back.to_str().unwrap_or_default(),
            ],
        );
        assert_eq!(file_sha(&big), file_sha(&back));
        let head = aws_api(&c, &["head-object", "--bucket", "cli", "--key", "big.bin"]);
        assert_eq!(head["ContentLength"], 100 << 20);
        assert!(
            head["ETag"].as_str().unwrap_or_default().contains('-'),
            "{head}"
        );
        assert!(aws(&c, &["s3", "ls", "s3://cli"]).contains("big.bin"));

        tracing::info!("--- sync a tree both ways");
        let tree = dir.path().join("tree");
        for (i, rel) in ["a/1.txt", "a/b/2.txt", "c/3.bin", "top.txt"]
            .iter()
            .enumerate()
        {
            let p = tree.join(rel);
            std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
            std::fs::write(&p, random_bytes(1000 + i * 5000, i as u64)).expect("write");
        }
        aws(
            &c,
            &[
                "s3",
                "sync",
                tree.to_str().unwrap_or_default(),
                "s3://cli/tree",
            ],
        );
        let down = dir.path().join("down");
        aws(
            &c,
            &[
                "s3",
                "sync",
                "s3://cli/tree",
                down.to_str().unwrap_or_default(),
            ],
        );
        for rel in ["a/1.txt", "a/b/2.txt", "c/3.bin", "top.txt"] {
            assert_eq!(
                file_sha(&tree.join(rel)),
                file_sha(&down.join(rel)),
                "{rel}"
            );
        }
        // A second sync has nothing to do.
        assert_eq!(
            aws(
                &c,
                &[
                    "s3",
                    "sync",
                    tree.to_str().unwrap_or_default(),
                    "s3://cli/tree"
                ]
            )
            .trim(),
            ""
        );

        tracing::info!("--- s3api: listing with delimiter and pagination, copy, metadata");
        let l = aws_api(
            &c,
            &[
                "list-objects-v2",
                "--bucket",
                "cli",
                "--prefix",
                "tree/",
                "--delimiter",
                "/",
            ],
        );
        let prefixes: Vec<&str> = l["CommonPrefixes"]
            .as_array()
            .map(|a| a.iter().filter_map(|p| p["Prefix"].as_str()).collect())
            .unwrap_or_default();
        assert_eq!(prefixes, ["tree/a/", "tree/c/"]);
        let l = aws_api(
            &c,
            &[
                "list-objects-v2",
                "--bucket",
                "cli",
                "--prefix",
                "tree/",
                "--page-size",
                "1",
            ],
        );
        assert_eq!(l["Contents"].as_array().map(Vec::len), Some(4), "{l}");
        let l = aws_api(
            &c,
            &[
                "list-objects-v2",
                "--bucket",
                "cli",
                "--max-items",
                "2",
                "--prefix",
                "tree/",
            ],
        );
        assert_eq!(l["Contents"].as_array().map(Vec::len), Some(2));
        assert!(l["NextToken"].is_string(), "{l}");
        let small = dir.path().join("small");
        std::fs::write(&small, b"hello s3").expect("write");
        aws_api(
            &c,
            &[
                "put-object",
                "--bucket",
                "cli",
                "--key",
                "meta.txt",
                "--body",
                small.to_str().unwrap_or_default(),
                "--metadata",
                "origin=test,take=2",
                "--content-type",
                "text/plain",
            ],
        );
        aws_api(
            &c,
            &[
                "copy-object",
                "--bucket",
                "cli",
                "--key",
                "meta-copy.txt",
                "--copy-source",
                "cli/meta.txt",
            ],
        );
        let head = aws_api(
            &c,
            &["head-object", "--bucket", "cli", "--key", "meta-copy.txt"],
        );
        assert_eq!(head["Metadata"]["origin"], "test");
        assert_eq!(head["ContentType"], "text/plain");

        tracing::info!("--- presign, then curl");
        let url = aws(
            &c,
            &["s3", "presign", "s3://cli/meta.txt", "--expires-in", "300"],
        );
        let body = run({
            let mut cmd = Command::new("curl");
            cmd.args(["-sf", url.trim()]);
            cmd
        });
        assert_eq!(body, "hello s3");

        tracing::info!("--- rm --recursive, rb");
        aws(&c, &["s3", "rm", "--recursive", "s3://cli"]);
        aws(&c, &["s3", "rb", "s3://cli"]);
        assert!(!aws(&c, &["s3", "ls"]).contains("cli"));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn objects_are_files_both_ways() {
    bounded(async {
        let c = start(TestCluster::builder().fsync(false).s3(true)).await;
        let client = c.client();
        client.create_bucket("both").await.expect("mb");
        let dir = tempfile::tempdir().expect("tempdir");

        // S3 → blobctl's library.
        let data = random_bytes(9 << 20, 3);
        let f = dir.path().join("up.bin");
        std::fs::write(&f, &data).expect("write");
        aws_api(
            &c,
            &[
                "put-object",
                "--bucket",
                "both",
                "--key",
                "from-s3.bin",
                "--body",
                f.to_str().unwrap_or_default(),
            ],
        );
        assert_eq!(
            sha256_hex(&get(&client, "both", "from-s3.bin").await),
            sha256_hex(&data)
        );

        // Library → S3.
        let data2 = random_bytes(3 << 20, 4);
        put(
            &client,
            "both",
            "from-blob.bin",
            &data2,
            &Default::default(),
        )
        .await;
        let back = dir.path().join("back.bin");
        aws(
            &c,
            &[
                "s3",
                "cp",
                "s3://both/from-blob.bin",
                back.to_str().unwrap_or_default(),
            ],
        );
        assert_eq!(file_sha(&back), sha256_hex(&data2));
    })
    .await;
}

/// The gateway keeps chunk locations between reads of an object; a write
/// that did not go through it (here the client library) must still be seen
/// by its next read, ranged or whole, and a delete must make it 404.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn s3_reads_see_writes_made_around_the_gateway() {
    bounded(async {
        let c = start(TestCluster::builder().fsync(false).s3(true)).await;
        let client = c.client();
        client.create_bucket("seen").await.expect("mb");
        let dir = tempfile::tempdir().expect("tempdir");
        let part = dir.path().join("part.bin");
        let whole = dir.path().join("whole.bin");
        let part_s = part.to_str().unwrap_or_default();
        let range = |c: &TestCluster| {
            aws_api(
                c,
                &[
                    "get-object", "--bucket", "seen", "--key", "v.bin", "--range",
                    "bytes=1048570-1048679", part_s,
                ],
            );
            std::fs::read(&part).expect("range")
        };
        let mut versions = Vec::new();
        for v in 0..3u64 {
            let data = random_bytes(3 << 20, 70 + v);
            put(&client, "seen", "v.bin", &data, &crate::chunked(1 << 20)).await;
            // Twice: the second read of a version uses kept locations.
            for _ in 0..2 {
                assert_eq!(range(&c), &data[1_048_570..1_048_680], "version {v}");
            }
            aws(
                &c,
                &["s3", "cp", "s3://seen/v.bin", whole.to_str().unwrap_or_default()],
            );
            assert_eq!(file_sha(&whole), sha256_hex(&data), "version {v}");
            versions.push(data);
        }
        println!(
            "FIGURES s3 reads after {} overwrites by another client: every range and whole read matched the latest version",
            versions.len() - 1
        );
        client.delete_file("seen", "v.bin").await.expect("delete");
        let mut cmd = s3_cmd(&c, "aws");
        cmd.args([
            "s3api", "get-object", "--bucket", "seen", "--key", "v.bin", part_s,
        ]);
        let out = cmd.output().expect("aws");
        assert!(!out.status.success(), "a deleted object was still read");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("NoSuchKey"),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    })
    .await;
}

/// A credential scoped to another region, and pre-signed URLs valid for
/// more than 7 days (or less than 1 s), are refused with AWS's codes; a
/// 7-day URL works.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn s3_refuses_other_regions_and_presigns_past_a_week() {
    bounded(async {
        let c = start(TestCluster::builder().fsync(false).s3(true)).await;
        let client = c.client();
        client.create_bucket("scope").await.expect("mb");
        put(&client, "scope", "k", b"scoped bytes", &Default::default()).await;
        let script = r#"
import json, sys, urllib.request, urllib.error
import boto3, botocore.config, botocore.exceptions
def s3(region):
    return boto3.client("s3", region_name=region,
        config=botocore.config.Config(signature_version="s3v4", retries={"max_attempts": 1}))
out = {}
try:
    s3("eu-west-1").head_bucket(Bucket="scope")
    out["head_eu"] = "ok"
except botocore.exceptions.ClientError as e:
    out["head_eu"] = e.response["ResponseMetadata"]["HTTPStatusCode"]
try:
    s3("eu-west-1").list_objects_v2(Bucket="scope")
    out["list_eu"] = "ok"
except botocore.exceptions.ClientError as e:
    out["list_eu"] = e.response["Error"]["Code"]
def fetch(url):
    try:
        with urllib.request.urlopen(url) as r:
            return [r.status, r.read().decode()]
    except urllib.error.HTTPError as e:
        return [e.code, e.read().decode()]
home = s3("us-east-1")
for name, secs in [("week", 604800), ("eight_days", 8 * 86400), ("decades", 999999999)]:
    url = home.generate_presigned_url("get_object", Params={"Bucket": "scope", "Key": "k"}, ExpiresIn=secs)
    out[name] = fetch(url)
json.dump(out, sys.stdout)
"#;
        let mut cmd = s3_cmd(&c, venv_python());
        cmd.args(["-c", script]);
        let v: serde_json::Value = serde_json::from_str(run(cmd).trim()).expect("json");
        println!("FIGURES s3 scope checks: {v}");
        assert_eq!(v["list_eu"], "AuthorizationHeaderMalformed", "{v}");
        assert_eq!(v["head_eu"], 400, "{v}");
        assert_eq!(v["week"][0], 200, "{v}");
        assert_eq!(v["week"][1], "scoped bytes", "{v}");
        for long in ["eight_days", "decades"] {
            assert_eq!(v[long][0], 400, "{long}: {v}");
            let body = v[long][1].as_str().unwrap_or_default();
            assert!(body.contains("AuthorizationQueryParametersError"), "{long}: {body}");
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_input_gets_s3_errors_not_500s() {
    bounded(async {
        let c = start(TestCluster::builder().fsync(false).s3(true)).await;
        let http = reqwest::Client::new();
        let base = c.s3_endpoint();
        let check = |status: u16, body: &str, code: &str| {
            assert!((400..500).contains(&status), "{status}: {body}");
            assert!(
                body.contains(&format!("<Code>{code}</Code>")),
                "{code}: {body}"
            );
            assert!(body.contains("<RequestId>"), "{body}");
        };

        let r = http.get(format!("{base}/")).send().await.expect("send");
        let s = r.status().as_u16();
        check(s, &r.text().await.unwrap_or_default(), "AccessDenied");

        let r = http
            .get(format!("{base}/bucket/key"))
            .header("authorization", "AWS4-HMAC-SHA256 garbage")
            .send()
            .await
            .expect("send");
        let s = r.status().as_u16();
        let body = r.text().await.unwrap_or_default();
        assert!((400..500).contains(&s), "{s}: {body}");
        assert!(body.contains("<RequestId>"), "{body}");

        let r = http
            .get(format!("{base}/"))
            .header("x-big", "x".repeat(100_000))
            .send()
            .await
            .expect("send");
        // hyper refuses an oversized header block before any handler runs.
        let s = r.status().as_u16();
        assert!((400..500).contains(&s), "{s}");

        // Signed requests with bad bodies, through the AWS CLI's signer.
        let dir = tempfile::tempdir().expect("tempdir");
        aws(&c, &["s3", "mb", "s3://badin"]);
        let xml = dir.path().join("bad.xml");
        std::fs::write(&xml, "<Delete><Object><Key>a</Key>").expect("write");
        let mut cmd = s3_cmd(&c, "aws");
        cmd.args([
            "s3api",
            "create-multipart-upload",
            "--bucket",
            "badin",
            "--key",
            "k",
            "--output",
            "json",
        ]);
        let upload: serde_json::Value =
            serde_json::from_str(&run(cmd)).expect("create-multipart-upload answer");
        let id = upload["UploadId"].as_str().unwrap_or_default().to_string();
        let mut cmd = s3_cmd(&c, "aws");
        cmd.args([
            "s3api",
            "complete-multipart-upload",
            "--bucket",
            "badin",
            "--key",
            "k",
            "--upload-id",
            &id,
            "--multipart-upload",
            "{\"Parts\":[]}",
        ]);
        let out = cmd.output().expect("run aws");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert!(err.contains("MalformedXML"), "{err}");
        let mut cmd = s3_cmd(&c, "aws");
        cmd.args([
            "s3api",
            "put-object",
            "--bucket",
            "badin",
            "--key",
            &"k".repeat(1100),
        ]);
        let out = cmd.output().expect("run aws");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("KeyTooLongError"), "{err}");
        let mut cmd = s3_cmd(&c, "aws");
        cmd.args(["s3api", "create-bucket", "--bucket", "Not_Valid"]);
        let out = cmd.output().expect("run aws");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("InvalidBucketName"), "{err}");
        // Errors raised while the request is parsed carry S3's message too.
        assert!(!err.contains("operation: Unknown"), "{err}");
        // The gateway is still up and well.
        assert!(aws(&c, &["s3", "ls"]).contains("badin"));
        let _ = xml;
    })
    .await;
}
