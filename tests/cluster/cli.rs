//! `blobctl` end to end: stdin → stdout, files, listings, errors.

use std::io::Write;
use std::process::{Command, Stdio};

use blob_tests::{random_bytes, sha256_hex, TestCluster};

use crate::{blobctl_bin, bounded, chunked, put, start};

pub(crate) fn blobctl(
    config: &std::path::Path,
    args: &[&str],
    stdin: Option<&[u8]>,
) -> (i32, Vec<u8>, String) {
    blobctl_env(config, args, stdin, &[])
}

/// Runs blobctl with `config` (and no BLOBCTL_* setting from this
/// process's environment, only `env`); returns (exit code, stdout,
/// stderr).
pub(crate) fn blobctl_env(
    config: &std::path::Path,
    args: &[&str],
    stdin: Option<&[u8]>,
    env: &[(&str, &str)],
) -> (i32, Vec<u8>, String) {
    let mut child = Command::new(blobctl_bin())
        .arg("--config")
        .arg(config)
        .args(args)
        .env_remove("BLOBCTL_ENDPOINT")
        .env_remove("BLOBCTL_ACCESS_KEY")
        .env_remove("BLOBCTL_SECRET_KEY")
        .env_remove("BLOBCTL_CA_FILE")
        .envs(env.iter().copied())
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

        // An upload too: one namenode call that runs out of time ends it.
        let started = std::time::Instant::now();
        let (code, _, err) = blobctl(
            &cfg,
            &["upload", "-", "hung/up.bin", "--timeout", "2s"],
            Some(&random_bytes(100_000, 7)),
        );
        let took = started.elapsed();
        assert_eq!(code, 2, "{err}");
        assert!(
            took < std::time::Duration::from_secs(3),
            "upload took {took:?} with --timeout 2s: {err}"
        );
        assert!(err.contains("no answer"), "{err}");

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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn blobctl_exit_codes_say_not_found_and_final_errors_are_not_retried() {
    bounded(async {
        let cluster = start(TestCluster::builder()).await;
        let cfg = cluster.client_config().expect("config");
        let run = |args: &[&str]| blobctl(&cfg, args, None);
        let (code, _, err) = run(&["mb", "codes"]);
        assert_eq!(code, 0, "{err}");
        let (code, _, err) = blobctl(&cfg, &["upload", "-", "codes/dir/f"], Some(b"data"));
        assert_eq!(code, 0, "{err}");

        // Not found: 1, with a message for people.
        for args in [
            &["upload", "/no/such/local/file", "codes/x"][..],
            &["ls", "nosuchbucket"],
            &["ls", "codes/nothing-here"],
            &["ls", "codes/dir/*.mp4"],
            &["stat", "codes/dir/missing"],
            &["upload", "-", "nosuchbucket/x"],
            &["download", "codes/dir/missing", "-"],
        ] {
            let (code, out, err) = run(args);
            assert_eq!(code, 1, "{args:?} should exit 1: {err}");
            assert!(out.is_empty(), "{args:?}");
            assert!(err.starts_with("blobctl: "), "{args:?}: {err}");
            assert!(
                !err.contains("Some(") && !err.contains("retrying"),
                "{args:?}: {err}"
            );
        }
        // An empty bucket lists nothing, successfully.
        let (code, _, err) = run(&["mb", "empty"]);
        assert_eq!(code, 0, "{err}");
        let (code, out, err) = run(&["ls", "empty"]);
        assert_eq!((code, out.len()), (0, 0), "{err}");

        // Usage: 2.
        let (code, _, err) = run(&["ls", "--no-such-flag"]);
        assert_eq!(code, 2, "{err}");
        let (code, _, err) = run(&["ls", "codes", "--timeout", "soon"]);
        assert_eq!(code, 2, "{err}");
        assert!(err.contains("invalid duration"), "{err}");

        // Errors that retrying cannot fix fail at once, without warnings.
        let started = std::time::Instant::now();
        let (code, _, err) = blobctl(
            &cfg,
            &["upload", "-", "codes/rf7", "--replication", "7"],
            Some(b"x"),
        );
        assert_eq!(code, 2, "{err}");
        assert!(err.contains("not enough live datanodes"), "{err}");
        assert!(!err.to_lowercase().contains("retrying"), "{err}");
        assert!(
            started.elapsed() < std::time::Duration::from_secs(3),
            "{:?}: {err}",
            started.elapsed()
        );
        let (code, _, err) = run(&["ls", "codes", "--secret-key", "not-the-secret"]);
        assert_eq!(code, 2, "{err}");
        assert!(!err.to_lowercase().contains("retrying"), "{err}");
    })
    .await;
}

fn text(out: Vec<u8>) -> String {
    String::from_utf8(out).expect("utf8 output")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn blobctl_globs_du_find_and_rm_r_see_exactly_the_tree() {
    bounded(async {
        let cluster = start(TestCluster::builder()).await;
        let cfg = cluster.client_config().expect("config");
        let c = cluster.client();
        c.create_bucket("tree").await.expect("mb");
        let tree: &[(&str, usize)] = &[
            ("videos/2026/a.mp4", 1000),
            ("videos/2026/b.mp4", 2000),
            ("videos/2026/c.mkv", 10),
            ("videos/2026/sub/d.mp4", 5),
            ("videos/2025/e.mp4", 3000),
            ("videos2/f.mp4", 7),
            ("docs/x1.txt", 1),
            ("docs/x2.txt", 2),
            ("docs/y10.txt", 3),
            ("top.bin", 0),
        ];
        for (i, (path, size)) in tree.iter().enumerate() {
            put(
                &c,
                "tree",
                path,
                &random_bytes(*size, i as u64),
                &chunked(64 << 10),
            )
            .await;
        }
        let ok = |args: &[&str]| {
            let (code, out, err) = blobctl(&cfg, args, None);
            assert_eq!(code, 0, "blobctl {args:?} failed: {err}");
            (text(out), err)
        };
        let names = |listing: &str| -> Vec<String> {
            listing
                .lines()
                .filter_map(|l| l.split_whitespace().last().map(String::from))
                .collect()
        };

        // Globs match within one segment, exactly.
        let (out, _) = ok(&["ls", "tree/videos/2026/*.mp4"]);
        assert_eq!(names(&out), ["a.mp4", "b.mp4"], "{out}");
        let (out, _) = ok(&["ls", "tree/docs/x?.txt"]);
        assert_eq!(names(&out), ["x1.txt", "x2.txt"], "{out}");
        let (out, _) = ok(&["ls", "tree/docs/[xy]1*"]);
        assert_eq!(names(&out), ["x1.txt", "y10.txt"], "{out}");
        let (out, _) = ok(&["ls", "tree/videos/*"]);
        assert_eq!(names(&out), ["2025/", "2026/"], "{out}");
        let (out, _) = ok(&["ls", "-r", "tree/videos/2026/*"]);
        assert_eq!(
            names(&out),
            [
                "videos/2026/a.mp4",
                "videos/2026/b.mp4",
                "videos/2026/c.mkv",
                "videos/2026/sub/d.mp4"
            ],
            "{out}"
        );
        let (out, _) = ok(&["ls", "--json", "tree/videos/*/*.mp4"]);
        let v: serde_json::Value = serde_json::from_str(&out).expect("one JSON document");
        let paths: Vec<&str> = v["files"]
            .as_array()
            .expect("files")
            .iter()
            .filter_map(|f| f["path"].as_str())
            .collect();
        assert_eq!(
            paths,
            [
                "videos/2025/e.mp4",
                "videos/2026/a.mp4",
                "videos/2026/b.mp4"
            ]
        );

        // Sizes, long format.
        let (out, _) = ok(&["ls", "-h", "tree/videos/2025/"]);
        assert!(out.contains("2.9 KiB") && out.contains("e.mp4"), "{out}");
        let (out, _) = ok(&["ls", "-l", "tree/docs/"]);
        assert!(
            out.starts_with("MODIFIED") && out.contains("VERSION"),
            "{out}"
        );
        assert_eq!(out.lines().count(), 4, "{out}");

        // du: per directory and in total; `videos` is not `videos2`.
        let (out, _) = ok(&["du", "--json", "tree/videos"]);
        let v: serde_json::Value = serde_json::from_str(&out).expect("du json");
        assert_eq!(v["bytes"], 6015);
        assert_eq!(v["files"], 5);
        let dirs: Vec<(String, u64, u64)> = v["directories"]
            .as_array()
            .expect("directories")
            .iter()
            .map(|d| {
                (
                    d["path"].as_str().unwrap_or_default().to_string(),
                    d["bytes"].as_u64().unwrap_or_default(),
                    d["files"].as_u64().unwrap_or_default(),
                )
            })
            .collect();
        assert_eq!(
            dirs,
            [
                ("tree/videos/2025/".to_string(), 3000, 1),
                ("tree/videos/2026/".to_string(), 3015, 4),
                ("tree/videos/2026/sub/".to_string(), 5, 1),
            ]
        );
        let (out, _) = ok(&["du", "-sh", "tree/videos"]);
        assert_eq!(out.lines().count(), 1, "{out}");
        assert!(
            out.contains("5.9 KiB") && out.contains("tree/videos"),
            "{out}"
        );
        let (out, _) = ok(&["du", "-s", "tree"]);
        assert!(out.contains("6028") && out.contains("10 files"), "{out}");

        // find by name and age.
        let (out, _) = ok(&["find", "tree", "--name", "*.mp4"]);
        assert_eq!(
            out.lines().collect::<Vec<_>>(),
            [
                "tree/videos/2025/e.mp4",
                "tree/videos/2026/a.mp4",
                "tree/videos/2026/b.mp4",
                "tree/videos/2026/sub/d.mp4",
                "tree/videos2/f.mp4"
            ]
        );
        let (out, _) = ok(&["find", "tree/docs", "--newer", "1h"]);
        assert_eq!(out.lines().count(), 3, "{out}");
        let (code, out, err) = blobctl(&cfg, &["find", "tree", "--newer", "2099-01-01"], None);
        assert_eq!((code, out.len()), (1, 0), "{err}");
        let (out, _) = ok(&["find", "tree/docs", "--name", "x*", "--json"]);
        let v: serde_json::Value = serde_json::from_str(&out).expect("find json");
        assert_eq!(v["files"].as_array().map(Vec::len), Some(2), "{out}");

        // download says what it did.
        let dir = tempfile::tempdir().expect("tempdir");
        let dest = format!("{}/", dir.path().display());
        let (_, err) = ok(&["download", "tree/videos/2026/a.mp4", &dest]);
        assert!(err.starts_with("downloaded 1000 B in "), "{err}");
        assert!(err.contains("a.mp4"), "{err}");

        // rm -r: not a terminal, so no question; a count; exactly the tree.
        let (_, err) = ok(&["rm", "-r", "tree/videos"]);
        assert!(
            err.contains("removed 5 files (5.9 KiB) under tree/videos"),
            "{err}"
        );
        let (code, _, err) = blobctl(&cfg, &["ls", "tree/videos/"], None);
        assert_eq!(code, 1, "{err}");
        let (code, _, err) = blobctl(&cfg, &["rm", "-r", "tree/videos"], None);
        assert_eq!(code, 1, "{err}");
        let (out, _) = ok(&["ls", "-r", "tree"]);
        assert_eq!(
            names(&out),
            [
                "docs/x1.txt",
                "docs/x2.txt",
                "docs/y10.txt",
                "top.bin",
                "videos2/f.mp4"
            ],
            "{out}"
        );
        let (_, err) = ok(&["rm", "-rf", "tree/docs/"]);
        assert!(err.contains("removed 3 files"), "{err}");
    })
    .await;
}

/// Every file under `dir` whose name says it is a log.
/// The services' log files (`namenode.log`, `datanode-0.log`, …), which sit
/// at the top of the cluster's directory. Data directories are left out:
/// RocksDB's write-ahead log is also named `*.log` and holds binary data.
fn log_files(dir: &std::path::Path, found: &mut Vec<std::path::PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_file() && p.extension().is_some_and(|x| x == "log") {
            found.push(p);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_colour_codes_go_to_pipes_or_log_files() {
    bounded(async {
        let cluster = start(TestCluster::builder()).await;
        let cfg = cluster.client_config().expect("config");
        for no_color in [false, true] {
            let mut cmd = Command::new(blobctl_bin());
            cmd.arg("--config")
                .arg(&cfg)
                .args(["ls", "nosuchbucket"])
                .env("RUST_LOG", "debug")
                .stdin(Stdio::null());
            if no_color {
                cmd.env("NO_COLOR", "1");
            }
            let out = cmd.output().expect("blobctl");
            assert_eq!(out.status.code(), Some(1));
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(err.contains("DEBUG"), "logs expected: {err}");
            assert!(!out.stderr.contains(&0x1b), "ESC in stderr: {err:?}");
            assert!(!out.stdout.contains(&0x1b));
        }
        let (code, out, err) = blobctl(&cfg, &["--help"], None);
        assert_eq!(code, 0, "{err}");
        assert!(!out.contains(&0x1b) && !err.contains('\u{1b}'));
        let (code, _, err) = blobctl(&cfg, &["ls", "--bad-flag"], None);
        assert_eq!(code, 2);
        assert!(!err.contains('\u{1b}'), "{err:?}");

        let mut logs = Vec::new();
        log_files(cluster.root(), &mut logs);
        assert!(
            !logs.is_empty(),
            "no service logs under {}",
            cluster.root().display()
        );
        for log in logs {
            let bytes = std::fs::read(&log).expect("read log");
            assert!(!bytes.contains(&0x1b), "ESC in {}", log.display());
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn blobctl_writes_shell_completions() {
    bounded(async {
        // Needs no cluster and no configuration.
        let dir = tempfile::tempdir().expect("tempdir");
        let none = dir.path().join("none.toml");
        std::fs::write(&none, "").expect("write");
        for (shell, marker) in [
            ("bash", "complete -F _blobctl"),
            ("zsh", "#compdef blobctl"),
            ("fish", "complete -c blobctl"),
        ] {
            let (code, out, err) = blobctl(&none, &["completions", shell], None);
            assert_eq!(code, 0, "{shell}: {err}");
            let script = text(out);
            assert!(script.contains(marker), "{shell}: {script}");
            assert!(script.contains("du") && script.contains("find"), "{shell}");
        }
        let (code, _, _) = blobctl(&none, &["completions", "tcsh"], None);
        assert_eq!(code, 2);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn blobctl_cp_r_round_trips_a_nested_tree() {
    bounded(async {
        let cluster = start(TestCluster::builder()).await;
        let cfg = cluster.client_config().expect("config");
        let (code, _, err) = blobctl(&cfg, &["mb", "trees"], None);
        assert_eq!(code, 0, "{err}");

        // 200 files, 0 bytes to 2 chunks + 1, up to four levels deep.
        const CHUNK: usize = 64 << 10;
        let src = tempfile::tempdir().expect("tempdir");
        let edges = [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK, 2 * CHUNK + 1];
        let mut expected = std::collections::BTreeMap::new();
        let mut total = 0u64;
        for i in 0..200usize {
            let dir = match i % 4 {
                0 => String::new(),
                1 => format!("a{}/", i % 3),
                2 => format!("a{}/b{}/", i % 3, i % 5),
                _ => format!("a{}/b{}/c{}/", i % 3, i % 5, i % 2),
            };
            let size = edges
                .get(i)
                .copied()
                .unwrap_or((i * 7919) % (2 * CHUNK + 2));
            let rel = format!("{dir}f{i:03}.bin");
            let data = random_bytes(size, 1000 + i as u64);
            let path = src.path().join(&rel);
            std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            std::fs::write(&path, &data).expect("write");
            expected.insert(rel, sha256_hex(&data));
            total += size as u64;
        }
        let src_arg = src.path().to_str().expect("utf8").to_string();
        let (code, out, err) =
            blobctl(&cfg, &["cp", "-r", "--dry-run", &src_arg, "trees/up"], None);
        assert_eq!(code, 0, "{err}");
        let out = text(out);
        assert_eq!(out.lines().count(), 200, "{out}");
        assert!(
            out.contains("/a1/b2/c1/f007.bin to trees/up/a1/b2/c1/f007.bin\n"),
            "{out}"
        );
        assert!(err.starts_with("dry run: 200 files"), "{err}");
        let (code, out, err) = blobctl(&cfg, &["ls", "trees/"], None);
        assert_eq!(
            (code, out.len()),
            (0, 0),
            "the dry run copied nothing: {err}"
        );
        let (code, _, err) = blobctl(
            &cfg,
            &["cp", "-r", &src_arg, "trees/up", "--chunk-size", "64KiB"],
            None,
        );
        assert_eq!(code, 0, "{err}");
        assert_eq!(err.lines().count(), 1, "one summary line: {err}");
        assert!(err.starts_with("uploaded 200 of 200 files"), "{err}");

        let (code, out, err) = blobctl(&cfg, &["du", "-s", "--json", "trees/up"], None);
        assert_eq!(code, 0, "{err}");
        let v: serde_json::Value = serde_json::from_slice(&out).expect("du json");
        assert_eq!(v["bytes"], total);
        assert_eq!(v["files"], 200);

        // Again: every chunk is stored already.
        let (code, _, err) = blobctl(
            &cfg,
            &["cp", "-r", &src_arg, "trees/up", "--chunk-size", "64KiB"],
            None,
        );
        assert_eq!(code, 0, "{err}");
        assert!(err.contains(", 0 B sent"), "{err}");

        let dst = tempfile::tempdir().expect("tempdir");
        let out_dir = dst.path().join("restored");
        let out_arg = out_dir.to_str().expect("utf8").to_string();
        let (code, _, err) = blobctl(&cfg, &["cp", "-r", "trees/up", &out_arg], None);
        assert_eq!(code, 0, "{err}");
        assert!(err.starts_with("downloaded 200 of 200 files"), "{err}");
        for (rel, sha) in &expected {
            let back = std::fs::read(out_dir.join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"));
            assert_eq!(&sha256_hex(&back), sha, "{rel}");
        }
        let mut count = 0;
        let mut stack = vec![out_dir.clone()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).expect("read_dir").flatten() {
                if e.path().is_dir() {
                    stack.push(e.path());
                } else {
                    count += 1;
                }
            }
        }
        assert_eq!(count, 200, "nothing more came back");

        // One file each way without -r; missing sources exit 1.
        let one = dst.path().join("one.bin");
        let one_arg = one.to_str().expect("utf8");
        let (code, _, err) = blobctl(&cfg, &["cp", "trees/up/f004.bin", one_arg], None);
        assert_eq!(code, 0, "{err}");
        assert_eq!(
            sha256_hex(&std::fs::read(&one).expect("read")),
            expected["f004.bin"]
        );
        let (code, _, err) = blobctl(&cfg, &["cp", one_arg, "trees/single/"], None);
        assert_eq!(code, 0, "{err}");
        let (code, _, err) = blobctl(&cfg, &["cp", &src_arg, "trees/x"], None);
        assert_eq!(code, 2, "a directory without -r: {err}");
        assert!(err.contains("-r"), "{err}");
        let (code, _, err) = blobctl(&cfg, &["cp", "-r", "/no/such/dir", "trees/x"], None);
        assert_eq!(code, 1, "{err}");
        let (code, _, err) = blobctl(&cfg, &["cp", "-r", "trees/nothing", &out_arg], None);
        assert_eq!(code, 1, "{err}");
    })
    .await;
}

#[test]
fn blobd_dev_help_names_everything_it_starts() {
    let out = Command::new(crate::blobd_bin())
        .args(["dev", "--help"])
        .stdin(Stdio::null())
        .output()
        .expect("blobd dev --help");
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for what in [
        "namenode",
        "datanodes",
        "S3 gateway",
        "edge cache",
        "client.toml",
        "s3.env",
        "cluster.json",
    ] {
        assert!(
            help.contains(what),
            "`blobd dev --help` lacks {what}:\n{help}"
        );
    }
    assert!(!out.stdout.contains(&0x1b), "colour codes in a pipe");
}

/// Runs blobctl on a pseudo-terminal (through `script`), typing `input`.
fn blobctl_on_a_terminal(config: &std::path::Path, args: &str, input: &[u8]) -> (i32, String) {
    let line = format!(
        "{} --config {} {args}",
        blobctl_bin().display(),
        config.display()
    );
    let mut child = Command::new("script")
        .args(["-qec", &line, "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn script");
    let mut pipe = child.stdin.take().expect("stdin");
    let input = input.to_vec();
    std::thread::spawn(move || {
        // Typed once the question is up.
        std::thread::sleep(std::time::Duration::from_millis(500));
        let _ = pipe.write_all(&input);
        std::thread::sleep(std::time::Duration::from_secs(2));
    });
    let out = child.wait_with_output().expect("script output");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rm_r_asks_on_a_terminal() {
    bounded(async {
        let cluster = start(TestCluster::builder()).await;
        let cfg = cluster.client_config().expect("config");
        let c = cluster.client();
        c.create_bucket("asks").await.expect("mb");
        for p in ["dir/a", "dir/b/c"] {
            put(&c, "asks", p, b"bytes", &chunked(64 << 10)).await;
        }
        let (code, out) = blobctl_on_a_terminal(&cfg, "rm -r asks/dir", b"n\n");
        assert_eq!(code, 0, "{out}");
        assert!(
            out.contains("remove 2 files (10 B) under asks/dir? [y/N]"),
            "{out}"
        );
        assert!(out.contains("nothing removed"), "{out}");
        assert_eq!(
            c.list_all("asks", &Default::default())
                .await
                .expect("ls")
                .files
                .len(),
            2
        );
        let (code, out) = blobctl_on_a_terminal(&cfg, "rm -r asks/dir", b"y\n");
        assert_eq!(code, 0, "{out}");
        assert!(out.contains("removed 2 files"), "{out}");
        assert!(c
            .list_all("asks", &Default::default())
            .await
            .expect("ls")
            .files
            .is_empty());
    })
    .await;
}

/// [`blobctl`] with its hash cache (`sync`) in `cache`, not the user's;
/// killed (and the test failed) if it runs longer than two minutes.
fn blobctl_cached(
    config: &std::path::Path,
    cache: &std::path::Path,
    args: &[&str],
) -> (i32, Vec<u8>, String) {
    let child = Command::new(blobctl_bin())
        .arg("--config")
        .arg(config)
        .args(args)
        .env_remove("BLOBCTL_ENDPOINT")
        .env_remove("BLOBCTL_ACCESS_KEY")
        .env_remove("BLOBCTL_SECRET_KEY")
        .env("XDG_CACHE_HOME", cache)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn blobctl");
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let out = match rx.recv_timeout(std::time::Duration::from_secs(120)) {
        Ok(out) => out.expect("blobctl output"),
        Err(_) => {
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
            panic!("blobctl {args:?} did not finish within 120 s");
        }
    };
    (
        out.status.code().unwrap_or(-1),
        out.stdout,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs blobctl with `--json`; exit status 0 and the document, or panics.
fn blobctl_json(
    config: &std::path::Path,
    cache: &std::path::Path,
    args: &[&str],
) -> serde_json::Value {
    let mut all = args.to_vec();
    all.push("--json");
    let (code, out, err) = blobctl_cached(config, cache, &all);
    assert_eq!(code, 0, "blobctl {args:?}: {err}");
    serde_json::from_slice(&out)
        .unwrap_or_else(|e| panic!("blobctl {args:?}: {e}: {}", String::from_utf8_lossy(&out)))
}

/// Every file under `root`, by `/`-separated relative path, with its SHA-256.
fn tree_hashes(root: &std::path::Path) -> std::collections::BTreeMap<String, String> {
    let mut found = std::collections::BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read_dir").flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p
                    .strip_prefix(root)
                    .expect("under root")
                    .to_str()
                    .expect("utf8")
                    .to_string();
                found.insert(rel, sha256_hex(&std::fs::read(&p).expect("read")));
            }
        }
    }
    found
}

/// The paths under `bucket/prefix/`, relative to it.
async fn store_paths(c: &blob_client::Client, bucket: &str, prefix: &str) -> Vec<String> {
    let q = blob_client::ListFilesQuery {
        prefix: Some(format!("{prefix}/")),
        ..Default::default()
    };
    c.list_all(bucket, &q)
        .await
        .expect("list")
        .files
        .into_iter()
        .map(|f| f.path[prefix.len() + 1..].to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn blobctl_sync_moves_exactly_what_differs_in_a_1000_file_tree() {
    bounded(async {
        let cluster = start(TestCluster::builder()).await;
        let cfg = cluster.client_config().expect("config");
        let c = cluster.client();
        c.create_bucket("mirror").await.expect("mb");
        let cache = tempfile::tempdir().expect("tempdir");
        let cache = cache.path();

        // 1,000 files, 0 bytes to 3 chunks + 1, up to four levels deep;
        // most are small so the tree stays quick to move.
        const CHUNK: usize = 64 << 10;
        let edges = [
            0,
            1,
            CHUNK - 1,
            CHUNK,
            CHUNK + 1,
            2 * CHUNK,
            3 * CHUNK,
            3 * CHUNK + 1,
        ];
        let src = tempfile::tempdir().expect("tempdir");
        let mut sizes = std::collections::BTreeMap::new();
        let mut rels = Vec::new();
        // Written an hour ago, as far as the hash cache can tell.
        let past = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
        for i in 0..1000usize {
            let dir = match i % 4 {
                0 => String::new(),
                1 => format!("d{}/", i % 7),
                2 => format!("d{}/e{}/", i % 7, i % 5),
                _ => format!("d{}/e{}/f{}/", i % 7, i % 5, i % 3),
            };
            let size = match edges.get(i) {
                Some(s) => *s,
                None if i % 97 == 0 => (i * 7919) % (3 * CHUNK + 2),
                None => (i * 7919) % 4096,
            };
            let rel = format!("{dir}file{i:04}.bin");
            let path = src.path().join(&rel);
            std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            std::fs::write(&path, random_bytes(size, 5000 + i as u64)).expect("write");
            std::fs::File::options()
                .write(true)
                .open(&path)
                .and_then(|f| f.set_modified(past))
                .expect("set mtime");
            sizes.insert(rel.clone(), size as u64);
            rels.push(rel);
        }
        let expected = tree_hashes(src.path());
        assert_eq!(expected.len(), 1000);
        let total: u64 = sizes.values().sum();
        let src_arg = src.path().to_str().expect("utf8").to_string();

        tracing::info!("--- the tree goes up with cp -r");
        let up = blobctl_json(
            &cfg,
            cache,
            &["cp", "-r", &src_arg, "mirror/tree", "--chunk-size", "64KiB"],
        );
        assert_eq!(
            (&up["copied"], &up["failed"], &up["bytes"]),
            (&1000.into(), &0.into(), &total.into()),
            "{up}"
        );
        let listed = store_paths(&c, "mirror", "tree").await;
        assert_eq!(listed, sizes.keys().cloned().collect::<Vec<_>>());

        tracing::info!("--- and comes back with identical SHA-256s");
        let dst = tempfile::tempdir().expect("tempdir");
        let back = dst.path().join("back");
        let back_arg = back.to_str().expect("utf8").to_string();
        let down = blobctl_json(&cfg, cache, &["cp", "-r", "mirror/tree", &back_arg]);
        assert_eq!((&down["copied"], &down["failed"]), (&1000.into(), &0.into()));
        assert_eq!(tree_hashes(&back), expected);

        tracing::info!("--- re-syncing an unchanged tree moves nothing, both ways");
        let sync_up = |extra: &[&str]| {
            let mut args = vec!["sync", src_arg.as_str(), "mirror/tree", "--chunk-size", "64KiB"];
            args.extend_from_slice(extra);
            blobctl_json(&cfg, cache, &args)
        };
        let s = sync_up(&[]);
        assert_eq!(
            (&s["sent"], &s["skipped"], &s["deleted"], &s["failed"]),
            (&0.into(), &1000.into(), &0.into(), &0.into()),
            "{s}"
        );
        assert_eq!(s["hashed"], 1000, "the first sync reads every file: {s}");
        let s = sync_up(&[]);
        assert_eq!((&s["sent"], &s["skipped"]), (&0.into(), &1000.into()), "{s}");
        assert_eq!(s["hashed"], 0, "the second one reads none: {s}");
        let s = blobctl_json(&cfg, cache, &["sync", "mirror/tree", &back_arg]);
        assert_eq!(
            (&s["sent"], &s["skipped"], &s["deleted"], &s["hashed"]),
            (&0.into(), &1000.into(), &0.into(), &1000.into()),
            "{s}"
        );

        tracing::info!("--- change 3 files, delete 2, sync --delete");
        let small = rels[4].as_str(); // same size, other bytes
        let grown = rels[6].as_str(); // another size
        let big = rels[7].as_str(); // 3 chunks + 1: first chunk changed
        assert_eq!(sizes[small], (CHUNK + 1) as u64);
        assert_eq!(sizes[big], (3 * CHUNK + 1) as u64);
        let small_new = random_bytes(CHUNK + 1, 77);
        std::fs::write(src.path().join(small), &small_new).expect("write");
        let grown_new = random_bytes(2 * CHUNK + 5, 78);
        std::fs::write(src.path().join(grown), &grown_new).expect("write");
        let mut big_new = std::fs::read(src.path().join(big)).expect("read");
        big_new[..16].copy_from_slice(b"changed 16 bytes");
        std::fs::write(src.path().join(big), &big_new).expect("write");
        let gone = [rels[0].as_str(), rels[10].as_str()];
        for g in gone {
            std::fs::remove_file(src.path().join(g)).expect("rm");
        }
        let expected = tree_hashes(src.path());
        let dry = sync_up(&["--delete", "--dry-run"]);
        assert_eq!(
            (&dry["sent"], &dry["deleted"], &dry["skipped"]),
            (&3.into(), &2.into(), &995.into()),
            "{dry}"
        );
        assert_eq!(store_paths(&c, "mirror", "tree").await.len(), 1000);
        let s = sync_up(&["--delete"]);
        // Chunks sent: the small file's 2, the grown file's 3, and only the
        // big file's first chunk.
        let chunks_sent = (small_new.len() + grown_new.len() + CHUNK) as u64;
        assert_eq!(
            (&s["sent"], &s["skipped"], &s["deleted"], &s["failed"]),
            (&3.into(), &995.into(), &2.into(), &0.into()),
            "{s}"
        );
        assert_eq!(s["bytes_sent"], chunks_sent, "{s}");
        // Only the two same-size changes were read; the rest came from the
        // cache, the grown file differed by size.
        assert_eq!(s["hashed"], 2, "{s}");
        let listed = store_paths(&c, "mirror", "tree").await;
        assert_eq!(listed, expected.keys().cloned().collect::<Vec<_>>());
        for (rel, data) in [(small, &small_new), (grown, &grown_new), (big, &big_new)] {
            let got = crate::get(&c, "mirror", &format!("tree/{rel}")).await;
            assert_eq!(sha256_hex(&got), sha256_hex(data), "{rel}");
        }

        tracing::info!("--- and the copy on disk follows with sync --delete");
        let s = blobctl_json(&cfg, cache, &["sync", "mirror/tree", &back_arg, "--delete"]);
        assert_eq!(
            (&s["sent"], &s["skipped"], &s["deleted"], &s["failed"]),
            (&3.into(), &995.into(), &2.into(), &0.into()),
            "{s}"
        );
        assert_eq!(tree_hashes(&back), expected);
        let s = sync_up(&["--delete"]);
        assert_eq!((&s["sent"], &s["deleted"]), (&0.into(), &0.into()), "{s}");

        // The summary line says the same.
        let (code, _, err) = blobctl_cached(&cfg, cache, &["sync", &src_arg, "mirror/tree"]);
        assert_eq!(code, 0, "{err}");
        assert!(
            err.contains(": 0 sent (0 B, 0 B of chunks the store lacked), 998 unchanged, 0 deleted, 0 failed"),
            "{err}"
        );
        let (code, _, err) = blobctl_cached(&cfg, cache, &["sync", "mirror/nothing", &back_arg]);
        assert_eq!(code, 1, "{err}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn blobctl_filters_store_copies_and_moves_select_exactly_the_keys() {
    bounded(async {
        let cluster = start(TestCluster::builder()).await;
        let cfg = cluster.client_config().expect("config");
        let c = cluster.client();
        for b in ["fil", "fcp"] {
            c.create_bucket(b).await.expect("mb");
        }
        let cache = tempfile::tempdir().expect("tempdir");
        let cache = cache.path();
        let src = tempfile::tempdir().expect("tempdir");
        let mut all = Vec::new();
        for dir in ["", "logs/", "logs/old/", "media/"] {
            for name in ["a.txt", "b.gz", "keep1.log", "keep22.log", "c.mp4"] {
                let rel = format!("{dir}{name}");
                let path = src.path().join(&rel);
                std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
                std::fs::write(&path, rel.as_bytes()).expect("write");
                all.push(rel);
            }
        }
        all.sort();
        let src_arg = src.path().to_str().expect("utf8").to_string();
        let pick = |f: &dyn Fn(&str) -> bool| -> Vec<String> {
            all.iter().filter(|p| f(p)).cloned().collect()
        };

        tracing::info!("--- cp -r with filters: the last matching rule wins");
        let r = blobctl_json(
            &cfg,
            cache,
            &[
                "cp",
                "-r",
                &src_arg,
                "fil/txt",
                "--exclude",
                "*",
                "--include",
                "*.txt",
            ],
        );
        let want = pick(&|p| p.ends_with(".txt"));
        assert_eq!(r["copied"], want.len(), "{r}");
        assert_eq!(store_paths(&c, "fil", "txt").await, want);

        tracing::info!("--- globs in store paths pick what ls shows");
        let got = tempfile::tempdir().expect("tempdir");
        let g = got.path().join("g");
        let g_arg = g.to_str().expect("utf8");
        let r = blobctl_json(&cfg, cache, &["cp", "fil/txt/*/a.txt", g_arg]);
        assert_eq!(r["copied"], 2, "{r}");
        let back: Vec<String> = tree_hashes(&g).into_keys().collect();
        assert_eq!(back, ["logs/a.txt", "media/a.txt"]);
        let r = blobctl_json(&cfg, cache, &["cp", "-r", "fil/txt/l*", "fcp/globbed"]);
        assert_eq!(r["copied"], 2, "{r}");
        assert_eq!(
            store_paths(&c, "fcp", "globbed").await,
            ["logs/a.txt", "logs/old/a.txt"]
        );
        assert!(
            c.list_all("fcp", &Default::default())
                .await
                .expect("ls")
                .files
                .len()
                == 2
        );
        c.delete_file("fcp", "globbed/logs/a.txt")
            .await
            .expect("rm");
        c.delete_file("fcp", "globbed/logs/old/a.txt")
            .await
            .expect("rm");
        let (code, _, err) = blobctl_cached(&cfg, cache, &["cp", "fil/txt/*.none", g_arg]);
        assert_eq!(code, 1, "{err}");
        let r = blobctl_json(
            &cfg,
            cache,
            &[
                "cp",
                "-r",
                &src_arg,
                "fil/logs",
                "--exclude",
                "logs/*",
                "--include",
                "logs/keep?.log",
                "--exclude",
                "*.mp4",
            ],
        );
        let want = pick(&|p| {
            let in_logs = p.starts_with("logs/");
            let keep = p.starts_with("logs/keep") && p.len() == "logs/keepN.log".len();
            (!in_logs || keep) && !p.ends_with(".mp4")
        });
        assert_eq!(r["copied"], want.len(), "{r}");
        assert_eq!(store_paths(&c, "fil", "logs").await, want);

        tracing::info!("--- sync --delete leaves excluded keys alone");
        let before = store_paths(&c, "fil", "logs").await;
        let r = blobctl_json(
            &cfg,
            cache,
            &[
                "sync",
                &src_arg,
                "fil/logs",
                "--delete",
                "--exclude",
                "*.gz",
            ],
        );
        // Sent: what the copy left out, but *.gz; skipped: what it copied,
        // but *.gz; deleted: none (the store has no file the source lacks).
        let sent = pick(&|p| !p.ends_with(".gz") && !before.iter().any(|b| b == p));
        let skipped = before.iter().filter(|p| !p.ends_with(".gz")).count();
        assert_eq!(
            (&r["sent"], &r["skipped"], &r["deleted"]),
            (&sent.len().into(), &skipped.into(), &0.into()),
            "{r}"
        );
        let had = store_paths(&c, "fil", "logs").await;
        let want = pick(&|p| !p.ends_with(".gz") || before.iter().any(|b| b == p));
        assert_eq!(had, want, "the .gz files from before stay, the rest came");
        std::fs::remove_file(src.path().join("media/b.gz")).expect("rm");
        std::fs::remove_file(src.path().join("media/a.txt")).expect("rm");
        let r = blobctl_json(
            &cfg,
            cache,
            &[
                "sync",
                &src_arg,
                "fil/logs",
                "--delete",
                "--exclude",
                "*.gz",
            ],
        );
        assert_eq!((&r["deleted"], &r["sent"]), (&1.into(), &0.into()), "{r}");
        let had = store_paths(&c, "fil", "logs").await;
        assert!(
            had.contains(&"media/b.gz".to_string()) && !had.contains(&"media/a.txt".to_string())
        );

        tracing::info!("--- store to store: metadata only, across buckets");
        let r = blobctl_json(
            &cfg,
            cache,
            &["cp", "-r", "fil/logs", "fcp/copy", "--include", "*"],
        );
        assert_eq!(r["op"], "copy", "{r}");
        assert_eq!(r["copied"], had.len(), "{r}");
        assert_eq!(r["bytes_sent"], 0, "{r}");
        assert_eq!(store_paths(&c, "fcp", "copy").await, had);
        let a = c.stat("fil", "logs/logs/old/c.mp4").await.expect("stat");
        let b = c.stat("fcp", "copy/logs/old/c.mp4").await.expect("stat");
        assert_eq!(a.chunks, b.chunks, "the copy shares the chunks");
        let (code, _, err) = blobctl_cached(&cfg, cache, &["cp", "fil/logs/a.txt", "fcp/single/"]);
        assert_eq!(code, 0, "{err}");
        assert_eq!(c.stat("fcp", "single/a.txt").await.expect("stat").size, 5);

        tracing::info!("--- mv of a directory, within a bucket and across");
        let before = store_paths(&c, "fcp", "copy").await;
        let (code, _, err) = blobctl_cached(&cfg, cache, &["mv", "fcp/copy", "fcp/moved"]);
        assert_eq!(code, 0, "{err}");
        assert!(
            err.starts_with(&format!("moved {n} of {n} files", n = before.len())),
            "{err}"
        );
        assert_eq!(store_paths(&c, "fcp", "moved").await, before);
        assert!(store_paths(&c, "fcp", "copy").await.is_empty());
        let (code, _, err) = blobctl_cached(&cfg, cache, &["mv", "fcp/moved/logs", "fil/across/"]);
        assert_eq!(code, 0, "{err}");
        let moved: Vec<String> = before
            .iter()
            .filter_map(|p| p.strip_prefix("logs/"))
            .map(String::from)
            .collect();
        assert_eq!(store_paths(&c, "fil", "across/logs").await, moved);
        assert!(store_paths(&c, "fcp", "moved/logs").await.is_empty());
        let (code, _, err) =
            blobctl_cached(&cfg, cache, &["mv", "fcp/single/a.txt", "fil/one.txt"]);
        assert_eq!(code, 0, "{err}");
        assert_eq!(c.stat("fil", "one.txt").await.expect("stat").size, 5);
        let (code, _, err) = blobctl_cached(&cfg, cache, &["mv", "fil/across", "fil/across/inner"]);
        assert_eq!(code, 2, "{err}");
        let (code, _, err) = blobctl_cached(&cfg, cache, &["mv", "fil/no/such", "fil/x"]);
        assert_eq!(code, 1, "{err}");
        // Within the store, sync has nothing on cp -r (metadata only).
        let (code, _, err) = blobctl_cached(&cfg, cache, &["sync", "fil/across", "fcp/x"]);
        assert_eq!(code, 2, "{err}");
        assert!(err.contains("cp -r"), "{err}");
        // A dry run lists what it would do, and does nothing.
        let (code, out, err) = blobctl_cached(
            &cfg,
            cache,
            &["sync", "--dry-run", "--delete", &src_arg, "fcp/dry"],
        );
        assert_eq!(code, 0, "{err}");
        let out = text(out);
        assert_eq!(out.lines().count(), all.len() - 2, "{out}");
        assert!(
            out.contains("/logs/old/c.mp4 to fcp/dry/logs/old/c.mp4\n"),
            "{out}"
        );
        assert!(
            err.starts_with(&format!("dry run: {} files", all.len() - 2)),
            "{err}"
        );
        assert!(store_paths(&c, "fcp", "dry").await.is_empty());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tree_copies_show_one_aggregate_bar_on_a_terminal_only() {
    bounded(async {
        let cluster = start(TestCluster::builder()).await;
        let cfg = cluster.client_config().expect("config");
        cluster.client().create_bucket("bars").await.expect("mb");
        let src = tempfile::tempdir().expect("tempdir");
        for i in 0..40usize {
            let p = src.path().join(format!("d{}/f{i}", i % 4));
            std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
            std::fs::write(&p, random_bytes(1000 + i * 3000, i as u64)).expect("write");
        }
        let src_arg = src.path().to_str().expect("utf8");
        let (code, out) = blobctl_on_a_terminal(&cfg, &format!("cp -r {src_arg} bars/t"), b"");
        assert_eq!(code, 0, "{out}");
        assert!(
            out.contains("/40 files"),
            "files counted on the bar: {out:?}"
        );
        assert!(out.contains("uploaded 40 of 40 files"), "{out:?}");
        // On a pipe: the summary line only.
        let (code, _, err) = blobctl(&cfg, &["cp", "-r", src_arg, "bars/u"], None);
        assert_eq!(code, 0, "{err}");
        assert_eq!(err.lines().count(), 1, "{err:?}");
        assert!(!err.contains('\u{1b}'), "{err:?}");
    })
    .await;
}

/// `--sse` and `--sse-c-key-file`: files go up encrypted (their metadata
/// says how), come back identical, trees too; an SSE-C file is refused
/// without its key file and with another key.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn blobctl_encrypts_with_sse_s3_and_customer_keys() {
    bounded(async {
        let cluster = start(TestCluster::builder()).await;
        let cfg = cluster.client_config().expect("config");
        let dir = tempfile::tempdir().expect("tempdir");
        let run = |args: &[&str]| blobctl(&cfg, args, None);
        let ok = |args: &[&str]| {
            let (code, out, err) = run(args);
            assert_eq!(code, 0, "blobctl {args:?} failed: {err}");
            out
        };
        let path = |name: &str| dir.path().join(name).to_string_lossy().into_owned();
        let data = random_bytes((3 << 20) + 77, 81);
        std::fs::write(path("in"), &data).expect("write");
        std::fs::write(path("key"), random_bytes(32, 82)).expect("write key");
        std::fs::write(path("other"), hex::encode(random_bytes(32, 83))).expect("write key");
        ok(&["mb", "enc"]);
        ok(&[
            "upload",
            &path("in"),
            "enc/s3.bin",
            "--sse",
            "AES256",
            "--chunk-size",
            "1MiB",
        ]);
        ok(&[
            "upload",
            &path("in"),
            "enc/c.bin",
            "--sse-c-key-file",
            &path("key"),
        ]);
        let c = cluster.client();
        for (name, mode) in [("s3.bin", "AES256"), ("c.bin", "SSE-C")] {
            let f = c.stat("enc", name).await.expect("stat");
            assert_eq!(f.size, data.len() as u64, "{name}: the plaintext size");
            assert_eq!(blob_client::sse::sse_mode(&f.meta), Some(mode), "{name}");
        }
        ok(&["download", "enc/s3.bin", &path("s3.out")]);
        assert_eq!(std::fs::read(path("s3.out")).expect("read"), data);
        ok(&[
            "download",
            "enc/c.bin",
            &path("c.out"),
            "--sse-c-key-file",
            &path("key"),
        ]);
        assert_eq!(std::fs::read(path("c.out")).expect("read"), data);
        let (code, _, err) = run(&["download", "enc/c.bin", &path("x")]);
        assert_ne!(code, 0);
        assert!(err.contains("customer key"), "{err}");
        let (code, _, err) = run(&["cat", "enc/c.bin", "--sse-c-key-file", &path("other")]);
        assert_ne!(code, 0);
        assert!(err.contains("another customer key"), "{err}");

        // A tree, each file with its own data key.
        std::fs::create_dir_all(dir.path().join("tree/sub")).expect("mkdir");
        std::fs::write(dir.path().join("tree/a"), random_bytes(100_000, 84)).expect("write");
        std::fs::write(dir.path().join("tree/sub/b"), random_bytes(10, 85)).expect("write");
        ok(&["cp", "-r", &path("tree"), "enc/tree", "--sse", "AES256"]);
        let a = c.stat("enc", "tree/a").await.expect("stat");
        let b = c.stat("enc", "tree/sub/b").await.expect("stat");
        let key = blob_common::seal::WRAPPED_KEY;
        assert!(a.meta.contains_key(key) && a.meta.get(key) != b.meta.get(key));
        ok(&["cp", "-r", "enc/tree", &path("back")]);
        assert_eq!(
            std::fs::read(dir.path().join("back/sub/b")).expect("read"),
            random_bytes(10, 85)
        );
    })
    .await;
}
