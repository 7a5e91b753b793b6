//! `blobd dev`: a whole cluster from one command, in child processes that
//! can be killed and restarted one by one, and in one process; a restart
//! on the same directory keeps the data.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use blob_tests::{random_bytes, sha256_hex, wait_until};
use blobd::ClusterFile;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::{blobctl_bin, blobd_bin, bounded};

/// Kills every process it holds when dropped, so a failed test leaves none.
#[derive(Default)]
struct Reaper(Vec<u32>);

impl Drop for Reaper {
    fn drop(&mut self) {
        for pid in &self.0 {
            let _ = kill(Pid::from_raw(*pid as i32), Signal::SIGKILL);
        }
    }
}

fn start_dev(dir: &Path, extra: &[&str]) -> Child {
    let _ = std::fs::remove_file(dir.join("cluster.json"));
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.with_extension("log"))
        .expect("log");
    Command::new(blobd_bin())
        .arg("dev")
        .arg("--data")
        .arg(dir)
        .args(["--port", "0", "--heartbeat", "500ms"])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .expect("spawn blobd dev")
}

async fn cluster_file(dir: &Path) -> ClusterFile {
    let path = dir.join("cluster.json");
    wait_until("cluster.json", Duration::from_secs(60), || async {
        Ok(path.exists())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}: {}", blob_tests::tail(&dir.with_extension("log"), 30)));
    serde_json::from_str(&std::fs::read_to_string(&path).expect("read cluster.json"))
        .expect("parse cluster.json")
}

fn blobctl(config: &Path, args: &[&str], stdin: Option<Vec<u8>>) -> Vec<u8> {
    use std::io::Write;
    let mut child = Command::new(blobctl_bin())
        .arg("--config")
        .arg(config)
        .arg("-q")
        .args(args)
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
        std::thread::spawn(move || {
            let _ = pipe.write_all(&input);
        });
    }
    let out = child.wait_with_output().expect("blobctl");
    assert!(
        out.status.success(),
        "blobctl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Once the cluster answers: makes bucket `dev` (retrying until the
/// namenode is up), waits for the datanodes, and sends `data` to `path`
/// and reads it back with the same SHA-256.
async fn first_round_trip(config: &Path, path: &str, data: &[u8]) {
    wait_until("namenode answers", Duration::from_secs(30), || async {
        Ok(Command::new(blobctl_bin())
            .arg("--config")
            .arg(config)
            .args(["-q", "mb", "dev"])
            .status()
            .is_ok_and(|s| s.success()))
    })
    .await
    .expect("bucket created");
    wait_ready(config).await;
    blobctl(
        config,
        &["upload", "-", path, "--chunk-size", "1MiB"],
        Some(data.to_vec()),
    );
    assert_eq!(
        sha256_hex(&blobctl(config, &["cat", path], None)),
        sha256_hex(data)
    );
}

async fn wait_ready(config: &Path) {
    // Uploads need every datanode registered: retry a tiny upload.
    wait_until(
        "cluster accepts uploads",
        Duration::from_secs(30),
        || async {
            let ok = Command::new(blobctl_bin())
                .arg("--config")
                .arg(config)
                .args(["-q", "upload", "-", "dev/probe"])
                .stdin(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            Ok(ok)
        },
    )
    .await
    .expect("cluster ready");
}

async fn stop(mut dev: Child, cluster: &ClusterFile) {
    let _ = kill(Pid::from_raw(dev.id() as i32), Signal::SIGTERM);
    let status = tokio::task::spawn_blocking(move || dev.wait())
        .await
        .expect("join")
        .expect("wait");
    assert!(
        status.success(),
        "blobd dev exits cleanly on SIGTERM: {status}"
    );
    for pid in std::iter::once(&cluster.namenode)
        .chain(&cluster.datanodes)
        .filter_map(|s| s.pid)
    {
        wait_until("children gone", Duration::from_secs(15), || async {
            Ok(kill(Pid::from_raw(pid as i32), None).is_err() || is_zombie(pid))
        })
        .await
        .expect("service processes stop with blobd dev");
    }
}

fn is_zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |s| s.contains(") Z "))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dev_cluster_in_processes_survives_a_killed_datanode_and_a_restart() {
    bounded(async {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("data");
        std::fs::create_dir_all(&dir).expect("mkdir");
        let mut reaper = Reaper::default();

        let dev = start_dev(&dir, &["--processes", "--datanodes", "3"]);
        reaper.0.push(dev.id());
        let cluster = cluster_file(&dir).await;
        assert_eq!(cluster.datanodes.len(), 3);
        for s in std::iter::once(&cluster.namenode).chain(&cluster.datanodes) {
            reaper.0.push(s.pid.expect("processes mode records pids"));
            assert!(s.url.starts_with("http://127.0.0.1:"), "{}", s.url);
        }
        let config = cluster.client_config.clone();
        let data = random_bytes(3 << 20 | 99, 17);
        first_round_trip(&config, "dev/file.bin", &data).await;

        eprintln!("uploaded and read back through blobd dev --processes");
        // SIGKILL a datanode by its recorded pid, restart it with its recorded command.
        let victim = &cluster.datanodes[0];
        kill(
            Pid::from_raw(victim.pid.expect("pid") as i32),
            Signal::SIGKILL,
        )
        .expect("kill datanode");
        let spawn = || {
            Command::new(&victim.command[0])
                .args(&victim.command[1..])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("restart datanode")
        };
        let mut restarted = spawn();
        reaper.0.push(restarted.id());
        let health = format!("{}/v1/health", victim.url);
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            if reqwest::get(&health)
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                break;
            }
            // Its port may be held for a moment as the local port of another
            // connection: start it again until it binds.
            if restarted.try_wait().ok().flatten().is_some() {
                restarted = spawn();
                reaper.0.push(restarted.id());
            }
            assert!(
                std::time::Instant::now() < deadline,
                "datanode back on its port within 30 s"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(
            sha256_hex(&blobctl(&config, &["cat", "dev/file.bin"], None)),
            sha256_hex(&data)
        );
        eprintln!("read back after a datanode SIGKILL and restart");
        let _ = restarted.kill();
        let _ = restarted.wait();
        stop(dev, &cluster).await;

        // The same directory, now in one process: everything is still there.
        let dev = start_dev(&dir, &[]);
        reaper.0.push(dev.id());
        let cluster = cluster_file(&dir).await;
        assert!(cluster.namenode.pid.is_none());
        let config = cluster.client_config.clone();
        wait_ready(&config).await;
        assert_eq!(
            sha256_hex(&blobctl(&config, &["cat", "dev/file.bin"], None)),
            sha256_hex(&data)
        );
        stop(dev, &cluster).await;
    })
    .await;
}

/// `KEY=value` lines of an env file.
fn env_file(path: &Path) -> Vec<(String, String)> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dev_cluster_with_tls_hands_out_https_endpoints_and_its_ca() {
    bounded(async {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("data");
        std::fs::create_dir_all(&dir).expect("mkdir");
        let mut reaper = Reaper::default();

        let dev = start_dev(&dir, &["--tls", "--datanodes", "3"]);
        reaper.0.push(dev.id());
        let cluster = cluster_file(&dir).await;
        let s3 = cluster.s3.as_ref().expect("an S3 gateway");
        let edge = cluster.edge.as_ref().expect("an edge");
        for s in [&cluster.namenode, s3, edge]
            .into_iter()
            .chain(&cluster.datanodes)
        {
            assert!(s.url.starts_with("https://127.0.0.1:"), "{}", s.url);
        }
        let ca = dir.join("tls").join("ca.pem");
        let config = cluster.client_config.clone();
        let text = std::fs::read_to_string(&config).expect("client.toml");
        assert!(
            text.contains(&format!("ca_file = \"{}\"", ca.display())),
            "{text}"
        );
        let env = env_file(&dir.join("s3.env"));
        let get = |k: &str| {
            env.iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.clone())
                .unwrap_or_else(|| panic!("{k} in s3.env: {env:?}"))
        };
        assert_eq!(get("AWS_CA_BUNDLE"), ca.display().to_string());
        assert_eq!(get("AWS_ENDPOINT_URL"), s3.url);

        let data = random_bytes(2 << 20 | 7, 18);
        first_round_trip(&config, "dev/tls.bin", &data).await;
        // The S3 tools' file as written: the AWS CLI trusts the gateway.
        let out = Command::new("aws")
            .args(["s3", "ls", "s3://dev/"])
            .env("AWS_CONFIG_FILE", "/nonexistent")
            .env("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .output()
            .expect("aws");
        assert!(
            out.status.success() && String::from_utf8_lossy(&out.stdout).contains("tls.bin"),
            "aws s3 ls with s3.env: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        stop(dev, &cluster).await;

        // Restarted on the same directory, as processes: the same CA, so
        // the same client.toml still reads the data.
        let dev = start_dev(&dir, &["--tls", "--processes", "--datanodes", "3"]);
        reaper.0.push(dev.id());
        let cluster = cluster_file(&dir).await;
        for s in std::iter::once(&cluster.namenode).chain(&cluster.datanodes) {
            reaper.0.push(s.pid.expect("processes mode records pids"));
            assert!(s.url.starts_with("https://"), "{}", s.url);
        }
        wait_ready(&config).await;
        assert_eq!(
            sha256_hex(&blobctl(&config, &["cat", "dev/tls.bin"], None)),
            sha256_hex(&data)
        );
        stop(dev, &cluster).await;
    })
    .await;
}
