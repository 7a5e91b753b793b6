//! `blobctl` end to end: stdin → stdout, files, listings, errors.

use std::io::Write;
use std::process::{Command, Stdio};

use blob_tests::{random_bytes, sha256_hex, TestCluster};

use crate::{blobctl_bin, bounded, start};

fn blobctl(
    config: &std::path::Path,
    args: &[&str],
    stdin: Option<&[u8]>,
) -> (i32, Vec<u8>, String) {
    let mut child = Command::new(blobctl_bin())
        .arg("--config")
        .arg(config)
        .args(args)
        .env_remove("BLOBCTL_ENDPOINT")
        .env_remove("BLOBCTL_ACCESS_KEY")
        .env_remove("BLOBCTL_SECRET_KEY")
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn blobctl");
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().expect("stdin");
        let input = input.to_vec();
        std::thread::spawn(move || {
            let _ = pipe.write_all(&input);
        });
    }
    let out = child.wait_with_output().expect("blobctl output");
    (
        out.status.code().unwrap_or(-1),
        out.stdout,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn blobctl_round_trips_stdin_to_stdout_and_manages_files() {
    bounded(async {
        let cluster = start(TestCluster::builder()).await;
        let cfg = cluster.client_config().expect("config");
        let ok = |args: &[&str], stdin: Option<&[u8]>| {
            let (code, out, err) = blobctl(&cfg, args, stdin);
            assert_eq!(code, 0, "blobctl {args:?} failed: {err}");
            out
        };
        ok(&["mb", "cli"], None);
        let data = random_bytes(5 << 20 | 12345, 21);
        ok(
            &["upload", "-", "cli/in/stream.bin", "--chunk-size", "1MiB"],
            Some(&data),
        );
        let out = ok(&["cat", "cli/in/stream.bin"], None);
        assert_eq!(sha256_hex(&out), sha256_hex(&data));
        let out = ok(&["download", "cli/in/stream.bin", "-"], None);
        assert_eq!(sha256_hex(&out), sha256_hex(&data));

        let dir = tempfile::tempdir().expect("tempdir");
        let local = dir.path().join("local.bin");
        std::fs::write(&local, &data[..1000]).expect("write");
        ok(&["upload", local.to_str().expect("utf8"), "cli/in/"], None);
        let back = dir.path().join("back.bin");
        ok(
            &["download", "cli/in/local.bin", back.to_str().expect("utf8")],
            None,
        );
        assert_eq!(std::fs::read(&back).expect("read"), &data[..1000]);

        let listing = String::from_utf8(ok(&["ls", "cli"], None)).expect("utf8");
        assert!(listing.contains("in/"), "{listing}");
        let listing = String::from_utf8(ok(&["ls", "-r", "cli"], None)).expect("utf8");
        assert!(
            listing.contains("in/stream.bin") && listing.contains("in/local.bin"),
            "{listing}"
        );
        let stat =
            String::from_utf8(ok(&["stat", "--json", "cli/in/stream.bin"], None)).expect("utf8");
        let v: serde_json::Value = serde_json::from_str(&stat).expect("stat json");
        assert_eq!(v["size"], data.len() as u64);

        ok(&["mv", "cli/in/local.bin", "cli/out/local.bin"], None);
        let (code, _, err) = blobctl(&cfg, &["stat", "cli/in/local.bin"], None);
        assert_eq!(code, 1, "missing file exits 1: {err}");
        let (code, _, err) = blobctl(&cfg, &["rb", "cli"], None);
        assert_eq!(code, 2, "non-empty bucket: {err}");
        assert!(err.to_lowercase().contains("not empty"), "{err}");
        ok(&["rm", "cli/out/local.bin"], None);
        ok(&["rm", "cli/in/stream.bin"], None);
        ok(&["rb", "cli"], None);

        // Bad input is a clear error, not a crash.
        let (code, _, err) = blobctl(&cfg, &["mb", "Bad_Name"], None);
        assert_eq!(code, 2, "{err}");
        assert!(err.contains("bucket"), "{err}");
        let (code, _, err) = blobctl(&cfg, &["upload", "-", "cli/../x"], Some(b"x"));
        assert_eq!(code, 2, "{err}");
    })
    .await;
}

/// Resumes a SIGSTOPped process when dropped, so a failed assertion does
/// not leave the namenode frozen for the cluster's cleanup.
struct Resume(nix::unistd::Pid);

impl Drop for Resume {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(self.0, nix::sys::signal::Signal::SIGCONT);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn blobctl_gives_up_on_a_stopped_namenode_after_its_timeout() {
    bounded(async {
        let cluster = start(TestCluster::builder()).await;
        let cfg = cluster.client_config().expect("config");
        let (code, _, err) = blobctl(&cfg, &["mb", "hung"], None);
        assert_eq!(code, 0, "{err}");

        let pid = nix::unistd::Pid::from_raw(cluster.namenode_pid().expect("pid") as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGSTOP).expect("SIGSTOP");
        let resume = Resume(pid);
        tracing::info!("--- namenode stopped");

        let started = std::time::Instant::now();
        let (code, out, err) = blobctl(&cfg, &["ls", "hung", "--timeout", "2s"], None);
        let took = started.elapsed();
        assert_eq!(code, 2, "a timeout is an error: {err}");
        assert!(out.is_empty(), "{}", String::from_utf8_lossy(&out));
        assert!(
            took < std::time::Duration::from_secs(3),
            "ls took {took:?} with --timeout 2s: {err}"
        );
        assert!(
            took >= std::time::Duration::from_secs(2),
            "ls gave up before its timeout ({took:?}): {err}"
        );
        assert!(err.contains("no answer") && err.contains("2 s"), "{err}");
        assert!(!err.contains("Some(") && !err.contains("retrying"), "{err}");

        // The environment and the config file set it too.
        let with_file = cfg.with_file_name("client-timeout.toml");
        let text = std::fs::read_to_string(&cfg).expect("read config");
        std::fs::write(&with_file, format!("{text}\ntimeout = \"1s\"\n")).expect("write config");
        let started = std::time::Instant::now();
        let (code, _, err) = blobctl(&with_file, &["stat", "hung/x"], None);
        let took = started.elapsed();
        assert_eq!(code, 2, "{err}");
        assert!(took < std::time::Duration::from_secs(2), "{took:?}: {err}");
        assert!(err.contains("within 1 s"), "{err}");
        let started = std::time::Instant::now();
        let out = Command::new(blobctl_bin())
            .arg("--config")
            .arg(&cfg)
            .args(["ls", "hung"])
            .env("BLOBCTL_TIMEOUT", "1s")
            .stdin(Stdio::null())
            .output()
            .expect("blobctl");
        assert_eq!(out.status.code(), Some(2));
        assert!(started.elapsed() < std::time::Duration::from_secs(2));

        drop(resume);
        tracing::info!("--- namenode resumed");
        let (code, _, err) = blobctl(&cfg, &["ls", "hung", "--timeout", "2s"], None);
        assert_eq!(code, 0, "{err}");
    })
    .await;
}
