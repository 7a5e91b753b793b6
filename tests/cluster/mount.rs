//! `blobctl mount` end to end: real FUSE mounts (fusermount3) of a real
//! cluster, driven by std::fs, coreutils and ffmpeg.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use blob_tests::{random_bytes, sha256_file, sha256_hex, Mount, TestCluster};

use crate::{blobctl_bin, bounded, chunked, get, put, start};

const MIB: usize = 1 << 20;

fn mount(cluster: &TestCluster, bucket: &str, args: &[&str]) -> Mount {
    let cfg = cluster.client_config().expect("client config");
    Mount::start(&blobctl_bin(), &cfg, bucket, args).unwrap_or_else(|e| panic!("{e:#}"))
}

fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> tokio::task::JoinHandle<T> {
    tokio::task::spawn_blocking(f)
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("readdir {}: {e}", dir.display()))
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn files_round_trip_through_the_mount_both_ways() {
    bounded(async {
        let cluster = start(TestCluster::builder()).await;
        let client = cluster.client();
        client.create_bucket("fsb").await.expect("bucket");
        let m = mount(&cluster, "fsb", &["--chunk-size", "1MiB", "--ttl", "200ms"]);

        // Written through the mount, read by the client library; and the reverse.
        std::fs::create_dir(m.path("in")).expect("mkdir in");
        for (i, n) in [0, 1, MIB - 1, MIB, MIB + 1, 3 * MIB + 17]
            .into_iter()
            .enumerate()
        {
            let data = random_bytes(n, i as u64);
            let name = format!("in/{n}.bin");
            std::fs::write(m.path(&name), &data).expect("write through the mount");
            let back = get(&client, "fsb", &name).await;
            assert_eq!(sha256_hex(&back), sha256_hex(&data), "{name} via blobctl");
            let out = format!("out/{n}.bin");
            put(&client, "fsb", &out, &data, &chunked(MIB as u64)).await;
            let read = std::fs::read(m.path(&out)).expect("read through the mount");
            assert_eq!(sha256_hex(&read), sha256_hex(&data), "{out} via the mount");
        }
        assert_eq!(
            names(&m.path("in")),
            [
                "0.bin",
                "1.bin",
                "1048575.bin",
                "1048576.bin",
                "1048577.bin",
                "3145745.bin"
            ]
        );
        assert_eq!(
            std::fs::metadata(m.path("in/3145745.bin"))
                .expect("stat")
                .len(),
            3145745
        );

        // 256 MiB each way, streamed (never whole in memory here).
        let tmp = tempfile::tempdir().expect("tmp");
        let local = tmp.path().join("big.bin");
        blob_tests::bench::make_file(&local, 256, 7)
            .await
            .expect("make file");
        let want = sha256_file(&local).expect("hash");
        let (l, dst) = (local.clone(), m.path("big/via-mount.bin"));
        std::fs::create_dir(m.path("big")).expect("mkdir big");
        let started = Instant::now();
        blocking(move || std::fs::copy(&l, &dst))
            .await
            .expect("join")
            .expect("cp into the mount");
        let write_s = started.elapsed().as_secs_f64();
        let back = tmp.path().join("back.bin");
        client
            .download_to_path("fsb", "big/via-mount.bin", &back, &Default::default())
            .await
            .expect("download");
        assert_eq!(
            sha256_file(&back).expect("hash"),
            want,
            "256 MiB written through the mount"
        );
        let f = tokio::fs::File::open(&local).await.expect("open");
        client
            .upload(f, "fsb", "big/via-client.bin", &Default::default())
            .await
            .expect("upload");
        let p = m.path("big/via-client.bin");
        let started = Instant::now();
        let got = blocking(move || sha256_file(&p))
            .await
            .expect("join")
            .expect("read");
        let read_s = started.elapsed().as_secs_f64();
        assert_eq!(got, want, "256 MiB read through the mount");
        // Sized from the file that was written and read back.
        let mib = std::fs::metadata(&local).expect("stat").len() as f64 / MIB as f64;
        eprintln!(
            "FIGURES mount {mib:.0} MiB: write {:.0} MiB/s, read {:.0} MiB/s",
            mib / write_s,
            mib / read_s
        );

        // Namespace operations.
        std::fs::write(m.path("in/tmp.m3u8.tmp"), b"#EXTM3U v2\n").expect("write tmp");
        std::fs::write(m.path("in/list.m3u8"), b"#EXTM3U v1\n").expect("write list");
        std::fs::rename(m.path("in/tmp.m3u8.tmp"), m.path("in/list.m3u8")).expect("rename over");
        assert_eq!(
            std::fs::read(m.path("in/list.m3u8")).expect("read"),
            b"#EXTM3U v2\n"
        );
        assert_eq!(get(&client, "fsb", "in/list.m3u8").await, b"#EXTM3U v2\n");
        assert!(!m.path("in/tmp.m3u8.tmp").exists());
        std::fs::remove_file(m.path("in/0.bin")).expect("unlink");
        assert!(client.stat("fsb", "in/0.bin").await.is_err());
        std::fs::create_dir(m.path("in/sub")).expect("mkdir");
        assert_eq!(
            std::fs::create_dir(m.path("in/sub"))
                .expect_err("mkdir twice")
                .kind(),
            std::io::ErrorKind::AlreadyExists
        );
        std::fs::write(m.path("in/sub/x"), b"x").expect("write in subdir");
        let err = std::fs::remove_dir(m.path("in/sub")).expect_err("rmdir of a non-empty dir");
        assert_eq!(err.raw_os_error(), Some(libc::ENOTEMPTY), "{err}");
        std::fs::remove_file(m.path("in/sub/x")).expect("unlink");
        std::fs::remove_dir(m.path("in/sub")).expect("rmdir");
        assert!(!m.path("in/sub").exists());
        std::fs::rename(m.path("in"), m.path("moved")).expect("rename a directory");
        assert_eq!(get(&client, "fsb", "moved/1.bin").await, random_bytes(1, 1));

        // Writing into bytes already written works (the open is staged and
        // only the chunk written into moves); appending works; O_TRUNC
        // replaces.
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .open(m.path("moved/3145745.bin"))
            .expect("open for writing");
        f.write_all(b"over").expect("write into the start");
        f.sync_all().expect("fsync commits");
        drop(f);
        let mut patched = random_bytes(3 * MIB + 17, 5);
        patched[..4].copy_from_slice(b"over");
        assert_eq!(
            sha256_hex(&get(&client, "fsb", "moved/3145745.bin").await),
            sha256_hex(&patched),
            "the file holds the write and nothing else changed"
        );
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(m.path("moved/3145745.bin"))
            .expect("open to append");
        f.write_all(b"tail").expect("append");
        drop(f);
        let mut want = patched;
        want.extend_from_slice(b"tail");
        assert_eq!(
            sha256_hex(&get(&client, "fsb", "moved/3145745.bin").await),
            sha256_hex(&want)
        );
        std::fs::write(m.path("moved/3145745.bin"), b"short").expect("truncate and write");
        assert_eq!(get(&client, "fsb", "moved/3145745.bin").await, b"short");
        std::fs::File::create(m.path("moved/1.bin")).expect("truncate to 0");
        assert_eq!(get(&client, "fsb", "moved/1.bin").await, b"");

        // Unmount from outside: the process exits on its own.
        let status = Command::new("fusermount3")
            .arg("-u")
            .arg(m.dir())
            .status()
            .expect("fusermount3");
        assert!(status.success());
        let mut m = m;
        let status = m.wait_exit(Duration::from_secs(10)).expect("exit");
        assert!(!m.is_mounted());
        assert!(status.success(), "{status}: {}", m.log_tail(20));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_daemon_mount_detaches_and_unmounts_with_fusermount() {
    bounded(async {
        let cluster = start(TestCluster::builder()).await;
        let client = cluster.client();
        client.create_bucket("dmn").await.expect("bucket");
        put(&client, "dmn", "a/b.txt", b"hello", &Default::default()).await;
        let dir = tempfile::tempdir().expect("dir");
        let log = dir.path().join("mount.log");
        let mnt = dir.path().join("mnt");
        std::fs::create_dir(&mnt).expect("mkdir");
        let out = Command::new(blobctl_bin())
            .arg("--config")
            .arg(cluster.client_config().expect("cfg"))
            .args(["mount", "dmn"])
            .arg(&mnt)
            .arg("--daemon")
            .arg("--log-file")
            .arg(&log)
            .output()
            .expect("blobctl mount --daemon");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            blob_mount::is_mounted(&mnt),
            "mounted once the command returns"
        );
        assert_eq!(std::fs::read(mnt.join("a/b.txt")).expect("read"), b"hello");
        let st = Command::new("fusermount3")
            .arg("-u")
            .arg(&mnt)
            .status()
            .expect("fusermount3");
        assert!(st.success());
        assert!(!blob_mount::is_mounted(&mnt));
        blob_tests::wait_until("daemon logs its unmount", Duration::from_secs(10), || {
            let log = log.clone();
            async move {
                Ok(std::fs::read_to_string(&log)
                    .unwrap_or_default()
                    .contains("unmounted"))
            }
        })
        .await
        .expect("daemon exit");

        // A missing bucket fails at once, with the reason.
        let out = Command::new(blobctl_bin())
            .arg("--config")
            .arg(cluster.client_config().expect("cfg"))
            .args(["mount", "nosuch"])
            .arg(&mnt)
            .output()
            .expect("blobctl mount");
        assert_eq!(out.status.code(), Some(2));
        assert!(String::from_utf8_lossy(&out.stderr).contains("no such bucket"));
    })
    .await;
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The pipeline: a 60 s H.264/AAC clip, then 4-second HLS from it, under `dir`.
fn video_pipeline(dir: &Path) {
    let ffmpeg = |args: &[&str]| {
        run(Command::new("ffmpeg")
            .args(["-hide_banner", "-loglevel", "error", "-nostdin", "-y"])
            .args(args)
            .current_dir(dir))
    };
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc=duration=60:size=320x240:rate=25",
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=440:duration=60",
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-g",
        "100",
        "-threads",
        "2",
        "-c:a",
        "aac",
        "-shortest",
        "-f",
        "mpegts",
        "clip.ts",
    ]);
    std::fs::create_dir_all(dir.join("hls")).expect("mkdir hls");
    ffmpeg(&[
        "-i",
        "clip.ts",
        "-c",
        "copy",
        "-f",
        "hls",
        "-hls_time",
        "4",
        "-hls_list_size",
        "0",
        "-hls_segment_filename",
        "hls/seg%03d.ts",
        "hls/index.m3u8",
    ]);
}

fn framemd5(playlist: &Path) -> String {
    run(Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-nostdin", "-i"])
        .arg(playlist)
        .args(["-f", "framemd5", "-"]))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ffmpeg_writes_and_reads_hls_through_the_mount() {
    bounded(async {
        let cluster = start(TestCluster::builder()).await;
        let client = cluster.client();
        client.create_bucket("video").await.expect("bucket");
        let m = mount(&cluster, "video", &[]);
        let local = tempfile::tempdir().expect("tmp");

        let dir = m.dir().to_path_buf();
        let started = Instant::now();
        blocking(move || video_pipeline(&dir))
            .await
            .expect("pipeline in the mount");
        let mount_s = started.elapsed().as_secs_f64();
        let dir = local.path().to_path_buf();
        blocking(move || video_pipeline(&dir))
            .await
            .expect("pipeline on local disk");

        let probe = run(Command::new("ffprobe")
            .args([
                "-v",
                "error",
                "-show_entries",
                "format=duration",
                "-of",
                "csv=p=0",
            ])
            .arg(m.path("hls/index.m3u8")));
        let duration: f64 = probe
            .trim()
            .parse()
            .unwrap_or_else(|e| panic!("{probe:?}: {e}"));
        assert!((duration - 60.0).abs() < 0.5, "duration {duration}");
        let playlist = std::fs::read_to_string(m.path("hls/index.m3u8")).expect("playlist");
        let segments: Vec<&str> = playlist.lines().filter(|l| l.ends_with(".ts")).collect();
        assert_eq!(segments.len(), 15, "{playlist}");
        assert!(playlist.contains("#EXT-X-ENDLIST"));
        for s in &segments {
            let st = client
                .stat("video", &format!("hls/{s}"))
                .await
                .expect("segment stored");
            assert!(st.size > 0);
        }
        assert_eq!(
            names(&m.path("hls")).len(),
            16,
            "15 segments and the playlist, no temporary files left"
        );

        let in_mount = framemd5(&m.path("hls/index.m3u8"));
        let on_disk = framemd5(&local.path().join("hls/index.m3u8"));
        assert!(
            in_mount.lines().count() > 1500 + 2500,
            "{} frames",
            in_mount.lines().count()
        );
        assert!(
            in_mount == on_disk,
            "decoded frames differ between the mount and local disk"
        );
        assert_eq!(
            sha256_file(&m.path("clip.ts")).expect("hash"),
            sha256_file(&local.path().join("clip.ts")).expect("hash")
        );
        eprintln!("FIGURES mount ffmpeg pipeline: {mount_s:.1} s");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn other_mounts_see_whole_versions_only() {
    bounded(async {
        let cluster = start(TestCluster::builder()).await;
        let client = cluster.client();
        client.create_bucket("two").await.expect("bucket");
        let v1 = random_bytes(6 * MIB, 1);
        let v2 = random_bytes(9 * MIB + 5, 2);
        put(&client, "two", "f.bin", &v1, &chunked(MIB as u64)).await;
        let a = mount(&cluster, "two", &["--chunk-size", "1MiB"]);
        let b = mount(&cluster, "two", &["--ttl", "100ms"]);
        let (h1, h2) = (sha256_hex(&v1), sha256_hex(&v2));

        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new([AtomicUsize::new(0), AtomicUsize::new(0)]);
        let reader = {
            let (stop, seen, path) = (stop.clone(), seen.clone(), b.path("f.bin"));
            let (h1, h2) = (h1.clone(), h2.clone());
            blocking(move || {
                let mut reads = 0;
                while !stop.load(Ordering::Relaxed) || reads < 3 {
                    let data = std::fs::read(&path).expect("read in the second mount");
                    let h = sha256_hex(&data);
                    if h == h1 {
                        seen[0].fetch_add(1, Ordering::Relaxed);
                    } else if h == h2 {
                        seen[1].fetch_add(1, Ordering::Relaxed);
                    } else {
                        panic!("a reader saw {} bytes that are neither version", data.len());
                    }
                    reads += 1;
                }
            })
        };
        let path = a.path("f.bin");
        let data = v2.clone();
        blocking(move || {
            let mut f = std::fs::File::create(&path).expect("open for writing");
            for piece in data.chunks(256 << 10) {
                f.write_all(piece).expect("write");
                std::thread::sleep(Duration::from_millis(20));
            }
        })
        .await
        .expect("writer");
        blob_tests::wait_until(
            "the second mount sees the new version",
            Duration::from_secs(10),
            || {
                let seen = seen.clone();
                async move { Ok(seen[1].load(Ordering::Relaxed) > 0) }
            },
        )
        .await
        .expect("new version visible");
        stop.store(true, Ordering::Relaxed);
        reader.await.expect("reader");
        assert!(
            seen[0].load(Ordering::Relaxed) > 0,
            "the old version was read during the write"
        );

        // A new file written in one mount is listed in the other.
        std::fs::write(a.path("new.txt"), b"new").expect("write");
        blob_tests::wait_until("listed in the second mount", Duration::from_secs(5), || {
            let dir = b.dir().to_path_buf();
            async move { Ok(names(&dir).contains(&"new.txt".to_string())) }
        })
        .await
        .expect("listing");
        assert_eq!(std::fs::read(b.path("new.txt")).expect("read"), b"new");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_seek_moves_only_the_blocks_it_reads() {
    bounded(async {
        let cluster = start(TestCluster::builder()).await;
        let client = cluster.client();
        client.create_bucket("seek").await.expect("bucket");
        let data = random_bytes(64 * MIB, 3);
        let chunk = put(&client, "seek", "movie.ts", &data, &Default::default())
            .await
            .file
            .chunk_size;
        let m = mount(&cluster, "seek", &[]);
        let before = cluster
            .datanode_metric("blob_datanode_sent_bytes_total")
            .await
            .expect("metric");
        let path = m.path("movie.ts");
        let at = 40 * MIB + 12_345;
        let got = blocking(move || {
            let mut f = std::fs::File::open(path).expect("open");
            f.seek(SeekFrom::Start(at as u64)).expect("seek");
            let mut buf = vec![0u8; 100_000];
            f.read_exact(&mut buf).expect("read");
            buf
        })
        .await
        .expect("reader");
        assert!(got == data[at..at + 100_000], "bytes after the seek");
        let read = got.len();
        let moved = cluster
            .datanode_metric("blob_datanode_sent_bytes_total")
            .await
            .expect("metric")
            - before;
        eprintln!(
            "FIGURES mount seek: {read} bytes read, {moved} bytes sent by datanodes (chunk {} MiB)",
            chunk / MIB as u64
        );
        assert!(moved >= 100_000.0, "moved {moved}");
        assert!(
            moved < 3.0 * MIB as f64,
            "a 100 kB read after a seek moved {moved} bytes"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dead_cluster_gives_eio_and_unmount_still_works() {
    bounded(async {
        let mut cluster = start(TestCluster::builder()).await;
        let client = cluster.client();
        client.create_bucket("dead").await.expect("bucket");
        let data = random_bytes(64 * MIB, 4);
        put(&client, "dead", "f.bin", &data, &Default::default()).await;
        let mut m = mount(&cluster, "dead", &["--timeout", "3s", "--readahead", "1"]);

        let killed = Arc::new(std::sync::Mutex::new(None::<Instant>));
        let started = Arc::new(AtomicBool::new(false));
        let reader = {
            let (killed, started, path) = (killed.clone(), started.clone(), m.path("f.bin"));
            blocking(move || {
                let mut f = std::fs::File::open(path).expect("open");
                let mut buf = vec![0u8; MIB];
                loop {
                    match f.read(&mut buf) {
                        Ok(0) => panic!("read the whole file from a dead cluster"),
                        Ok(_) => started.store(true, Ordering::Relaxed),
                        Err(e) => {
                            let at = killed
                                .lock()
                                .expect("lock")
                                .expect("error only after the kill");
                            return (e, at.elapsed());
                        }
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
            })
        };
        while !started.load(Ordering::Relaxed) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        for i in 0..3 {
            cluster.kill_datanode(i);
        }
        cluster.kill_namenode();
        *killed.lock().expect("lock") = Some(Instant::now());
        let (err, after) = reader.await.expect("reader");
        eprintln!("FIGURES mount dead cluster: {err} {after:?} after the kill");
        assert_eq!(err.raw_os_error(), Some(libc::EIO), "{err}");
        assert!(after < Duration::from_secs(12), "EIO took {after:?}");

        // Metadata calls fail too, within the timeout.
        let p = m.path("nothing-here");
        let t = Instant::now();
        let err = blocking(move || std::fs::metadata(p))
            .await
            .expect("join")
            .expect_err("stat");
        assert_eq!(err.raw_os_error(), Some(libc::EIO), "{err}");
        assert!(
            t.elapsed() < Duration::from_secs(8),
            "stat took {:?}",
            t.elapsed()
        );

        let status = m
            .terminate(Duration::from_secs(15))
            .expect("mount exits on SIGTERM");
        assert!(status.success(), "{status}: {}", m.log_tail(20));
        assert!(!m.is_mounted());
    })
    .await;
}

/// One container of the muxer test: its name, extension and the
/// muxer options that matter.
const MUXERS: [(&str, &str, &[&str]); 4] = [
    ("mp4", "mp4", &[]),
    ("mov", "mov", &[]),
    ("matroska", "mkv", &[]),
    ("mp4 +faststart", "mp4", &["-movflags", "+faststart"]),
];

/// Encodes a 30 s H.264/AAC test source to `out` with `extra` muxer
/// options; returns ffmpeg's exit status and its stderr.
fn encode_30s(out: &Path, extra: &[&str]) -> (std::process::ExitStatus, String) {
    let res = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-nostdin", "-y"])
        .args([
            "-f",
            "lavfi",
            "-i",
            "testsrc=duration=30:size=320x240:rate=25",
        ])
        .args(["-f", "lavfi", "-i", "sine=frequency=440:duration=30"])
        .args(["-c:v", "libx264", "-preset", "ultrafast", "-g", "50"])
        .args(["-threads", "2", "-c:a", "aac", "-shortest"])
        .args(extra)
        .arg(out)
        .output()
        .expect("ffmpeg");
    (
        res.status,
        String::from_utf8_lossy(&res.stderr).into_owned(),
    )
}

fn duration_of(path: &Path) -> f64 {
    let probe = run(Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "format=duration",
            "-of",
            "csv=p=0",
        ])
        .arg(path));
    probe
        .trim()
        .parse()
        .unwrap_or_else(|e| panic!("{}: {probe:?}: {e}", path.display()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn muxers_that_seek_back_write_mp4_mov_and_mkv_through_the_mount() {
    bounded(async {
        let cluster = start(TestCluster::builder()).await;
        let client = cluster.client();
        client.create_bucket("mux").await.expect("bucket");
        // Small chunks: each file is several, so a muxer's patch at the end
        // changes some and leaves the others as they were streamed.
        let chunk = 128u64 << 10;
        let m = mount(&cluster, "mux", &["--chunk-size", "128KiB"]);
        let local = tempfile::tempdir().expect("tmp");
        std::fs::create_dir(m.path("out")).expect("mkdir");

        for (i, (name, ext, extra)) in MUXERS.iter().enumerate() {
            let file = format!("clip{i}.{ext}");
            let (in_mount, on_disk) = (m.path(&format!("out/{file}")), local.path().join(&file));
            let (dst, extra_v) = (in_mount.clone(), extra.to_vec());
            let before = cluster
                .datanode_metric("blob_datanode_received_bytes_total")
                .await
                .expect("metric");
            let started = Instant::now();
            let (status, stderr) = blocking(move || encode_30s(&dst, &extra_v))
                .await
                .expect("join");
            let secs = started.elapsed().as_secs_f64();
            let received = cluster
                .datanode_metric("blob_datanode_received_bytes_total")
                .await
                .expect("metric")
                - before;
            assert!(status.success(), "{name}: ffmpeg failed in the mount: {stderr}");
            assert!(stderr.trim().is_empty(), "{name}: ffmpeg said: {stderr}");
            let (dst, extra_v) = (on_disk.clone(), extra.to_vec());
            let (status, stderr) = blocking(move || encode_30s(&dst, &extra_v))
                .await
                .expect("join");
            assert!(status.success(), "{name}: ffmpeg failed on local disk: {stderr}");

            let st = client
                .stat("mux", &format!("out/{file}"))
                .await
                .unwrap_or_else(|e| panic!("{name}: not stored: {e}"));
            let local_len = std::fs::metadata(&on_disk).expect("stat").len();
            assert_eq!(st.size, local_len, "{name}: size in the store");
            let d = duration_of(&in_mount);
            assert!((d - 30.0).abs() < 0.2, "{name}: duration {d}");
            let frames = framemd5(&in_mount);
            assert!(
                frames.lines().count() > 750,
                "{name}: {} frame lines",
                frames.lines().count()
            );
            assert!(
                frames == framemd5(&on_disk),
                "{name}: decoded frames differ between the mount and local disk"
            );
            let rf = f64::from(st.replication);
            eprintln!(
                "FIGURES mount muxer {name}: {} bytes written in {secs:.1} s, duration {d:.2} s, frames match local disk; datanodes received {received} bytes ({:.2} x file x RF)",
                st.size,
                received / (st.size as f64 * rf)
            );
            if extra.is_empty() {
                // Streamed chunks the header patch left alone are not sent
                // twice: the file once, plus the few chunks that changed.
                assert!(
                    received <= rf * (st.size + 3 * chunk) as f64,
                    "{name}: {received} bytes received for a {}-byte file",
                    st.size
                );
            }
        }
        // The staged opens left nothing behind and nothing else is listed.
        assert_eq!(names(&m.path("out")).len(), MUXERS.len());
    })
    .await;
}

/// `blobctl cat` of a file, hashed as it streams.
fn cat_sha256(cfg: &Path, target: &str) -> String {
    use sha2::Digest;
    let mut child = Command::new(blobctl_bin())
        .arg("--config")
        .arg(cfg)
        .args(["cat", target])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("blobctl cat");
    let mut out = child.stdout.take().expect("stdout");
    let mut h = sha2::Sha256::new();
    let mut buf = vec![0u8; MIB];
    loop {
        let n = out.read(&mut buf).expect("read blobctl cat");
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    assert!(child.wait().expect("wait").success(), "blobctl cat failed");
    hex::encode(h.finalize())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_4k_edit_of_a_1gib_file_sends_one_chunk() {
    bounded(async {
        let cluster = start(TestCluster::builder()).await;
        let client = cluster.client();
        client.create_bucket("edit").await.expect("bucket");
        let tmp = tempfile::tempdir().expect("tmp");
        let local = tmp.path().join("big.bin");
        blob_tests::bench::make_file(&local, 1024, 11)
            .await
            .expect("make file");
        let f = tokio::fs::File::open(&local).await.expect("open");
        let stored = client
            .upload(f, "edit", "big.bin", &Default::default())
            .await
            .expect("upload");
        let chunk = stored.file.chunk_size;
        let m = mount(&cluster, "edit", &[]);

        let before = cluster
            .datanode_metric("blob_datanode_received_bytes_total")
            .await
            .expect("metric");
        let at: u64 = 600 << 20;
        let target = m.path("big.bin");
        let started = Instant::now();
        let out = Command::new("python3")
            .arg("-c")
            .arg(
                "import sys\n\
                 f = open(sys.argv[1], 'r+b')\n\
                 f.seek(int(sys.argv[2]))\n\
                 f.write(bytes(range(256)) * 16)\n\
                 f.close()\n",
            )
            .arg(&target)
            .arg(at.to_string())
            .output()
            .expect("python3");
        let close_s = started.elapsed().as_secs_f64();
        assert!(
            out.status.success(),
            "python: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let received = cluster
            .datanode_metric("blob_datanode_received_bytes_total")
            .await
            .expect("metric")
            - before;

        // The same edit on the local copy.
        let patch: Vec<u8> = (0..=255u8).cycle().take(4096).collect();
        // The edit `blobctl cat` must show, byte for byte, below.
        let patch_len = patch.len();
        {
            use std::os::unix::fs::FileExt;
            let f = std::fs::OpenOptions::new()
                .write(true)
                .open(&local)
                .expect("open local");
            f.write_at(&patch, at).expect("patch local");
        }
        let want = sha256_file(&local).expect("hash");
        let cfg = cluster.client_config().expect("cfg");
        let got = blocking(move || cat_sha256(&cfg, "edit/big.bin"))
            .await
            .expect("join");
        assert_eq!(got, want, "blobctl cat shows exactly the 4 KiB edit");
        let after = client.stat("edit", "big.bin").await.expect("stat");
        assert_eq!(after.size, 1 << 30);
        let shared = after
            .chunks
            .iter()
            .zip(&stored.file.chunks)
            .filter(|(a, b)| a.id == b.id)
            .count();
        assert_eq!(
            shared,
            stored.file.chunks.len() - 1,
            "every chunk but the edited one is shared with the old version"
        );
        let replication = f64::from(after.replication);
        eprintln!(
            "FIGURES mount {} KiB edit of a {} GiB file: write+close {close_s:.2} s, datanodes received {received} bytes (one {chunk}-byte chunk x RF {replication} = {})",
            patch_len / 1024,
            after.size >> 30,
            chunk as f64 * replication
        );
        assert!(received > 0.0, "the edited chunk was stored");
        assert!(
            received <= chunk as f64 * replication,
            "a 4 KiB edit moved {received} bytes into the datanodes"
        );
    })
    .await;
}

/// Reads a whole file through the mount.
fn read_all(p: &Path) -> Vec<u8> {
    std::fs::read(p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn truncate_appends_after_seeks_and_concurrent_writers() {
    bounded(async {
        let cluster = start(TestCluster::builder()).await;
        let client = cluster.client();
        client.create_bucket("trunc").await.expect("bucket");
        let orig = random_bytes(3 * MIB + 17, 21);
        put(&client, "trunc", "t.bin", &orig, &chunked(MIB as u64)).await;
        let m = mount(&cluster, "trunc", &["--chunk-size", "1MiB"]);

        // truncate(1) up, then down, then to zero.
        let t = m.path("t.bin");
        run(Command::new("truncate").args(["-s", "5000000"]).arg(&t));
        let mut want = orig.clone();
        want.resize(5_000_000, 0);
        assert!(
            read_all(&t) == want,
            "truncated up: the old bytes, then zeros"
        );
        assert!(get(&client, "trunc", "t.bin").await == want);
        run(Command::new("truncate").args(["-s", "1500000"]).arg(&t));
        assert!(read_all(&t) == orig[..1_500_000], "truncated down");
        assert!(get(&client, "trunc", "t.bin").await == orig[..1_500_000]);
        run(Command::new("truncate").args(["-s", "0"]).arg(&t));
        assert!(get(&client, "trunc", "t.bin").await.is_empty());

        // ftruncate while writing, then write on; reads on the same handle.
        let data = random_bytes(2 * MIB, 22);
        let p = m.path("g.bin");
        let d = data.clone();
        blocking(move || {
            let mut f = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(true)
                .open(&p)
                .expect("create");
            f.write_all(&d).expect("write");
            f.set_len(1_000_003).expect("ftruncate");
            f.seek(SeekFrom::End(0)).expect("seek");
            f.write_all(b"tail").expect("write after truncate");
            let mut back = Vec::new();
            f.seek(SeekFrom::Start(0)).expect("seek");
            f.read_to_end(&mut back).expect("read back before close");
            assert_eq!(back.len(), 1_000_007);
            assert!(back[..1_000_003] == d[..1_000_003] && &back[1_000_003..] == b"tail");
        })
        .await
        .expect("writer");
        let mut want = data[..1_000_003].to_vec();
        want.extend_from_slice(b"tail");
        assert!(
            get(&client, "trunc", "g.bin").await == want,
            "ftruncate + write"
        );

        // Appending after a seek back; then O_APPEND on the committed file.
        let p = m.path("h.bin");
        // Long enough that the local copy kept while streaming is partly
        // written out, partly still in memory when the seek comes.
        let (a, b) = (random_bytes(10 * MIB + 7, 23), random_bytes(MIB + 5, 24));
        let (a2, b2) = (a.clone(), b.clone());
        blocking(move || {
            let mut f = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(true)
                .open(&p)
                .expect("create");
            f.write_all(&a2).expect("write");
            f.seek(SeekFrom::Start(10)).expect("seek back");
            f.write_all(b"XY").expect("patch");
            f.seek(SeekFrom::Start(5 * MIB as u64 + 3))
                .expect("seek back");
            f.write_all(b"MID").expect("patch the middle");
            let mut back = vec![0u8; 2 * MIB];
            f.seek(SeekFrom::Start(4 * MIB as u64)).expect("seek");
            f.read_exact(&mut back).expect("read back");
            assert!(back[..MIB + 3] == a2[4 * MIB..5 * MIB + 3]);
            assert_eq!(&back[MIB + 3..MIB + 6], b"MID");
            assert!(back[MIB + 6..] == a2[5 * MIB + 6..6 * MIB]);
            f.seek(SeekFrom::End(0)).expect("seek to the end");
            f.write_all(&b2).expect("append after the patch");
            drop(f);
            let mut f = std::fs::OpenOptions::new()
                .append(true)
                .open(&p)
                .expect("open to append");
            f.write_all(b"end").expect("append");
        })
        .await
        .expect("writer");
        let mut want = a;
        want[10..12].copy_from_slice(b"XY");
        want[5 * MIB + 3..5 * MIB + 6].copy_from_slice(b"MID");
        want.extend_from_slice(&b);
        want.extend_from_slice(b"end");
        assert!(
            get(&client, "trunc", "h.bin").await == want,
            "append after a seek back"
        );

        // Two opens of one file written at once: each close commits a whole
        // version, the last one wins, nothing torn.
        let base = random_bytes(4 * MIB, 25);
        put(&client, "trunc", "two.bin", &base, &chunked(MIB as u64)).await;
        let p = m.path("two.bin");
        let open_rw = |p: &Path| {
            std::fs::OpenOptions::new()
                .write(true)
                .open(p)
                .expect("open without O_TRUNC")
        };
        let (fa, fb) = (open_rw(&p), open_rw(&p));
        let wa = blocking(move || {
            use std::os::unix::fs::FileExt;
            // Back to front, 64 KiB at a time.
            for i in (0..64u64).rev() {
                fa.write_at(&[b'a'; 64 << 10], i << 16).expect("write a");
            }
            fa
        });
        let wb = blocking(move || {
            use std::os::unix::fs::FileExt;
            for i in 0..32u64 {
                fb.write_at(&[b'b'; 64 << 10], (i << 16) + 100)
                    .expect("write b");
            }
            fb
        });
        let (fa, fb) = (wa.await.expect("a"), wb.await.expect("b"));
        fa.sync_all().expect("commit a");
        let all_a = vec![b'a'; 4 * MIB];
        assert!(
            get(&client, "trunc", "two.bin").await == all_a,
            "a's version"
        );
        drop(fa);
        fb.sync_all().expect("commit b");
        drop(fb);
        let mut want_b = base.clone();
        want_b[100..100 + (32 << 16)].fill(b'b');
        assert!(
            get(&client, "trunc", "two.bin").await == want_b,
            "the last close wins, whole"
        );

        // A write the write cache cannot take fails with ENOSPC, and that
        // open commits nothing.
        let small = mount(
            &cluster,
            "trunc",
            &["--chunk-size", "1MiB", "--write-cache-size", "1MiB"],
        );
        let p = small.path("big-mp4-like.bin");
        let err = blocking(move || {
            let mut f = std::fs::File::create(&p).expect("create");
            f.write_all(&random_bytes(4 * MIB, 26)).expect("stream");
            f.seek(SeekFrom::Start(40)).expect("seek back");
            let err = f.write_all(b"moov").expect_err("no room to stage");
            let close = f.sync_all().expect_err("nothing to commit");
            (err, close)
        })
        .await
        .expect("writer");
        assert_eq!(err.0.raw_os_error(), Some(libc::ENOSPC), "{}", err.0);
        assert_eq!(err.1.raw_os_error(), Some(libc::EIO), "{}", err.1);
        assert!(
            client.stat("trunc", "big-mp4-like.bin").await.is_err(),
            "no half-made file"
        );

        // rm -r of a directory that exists only through its files' paths.
        for f in ["imp/a/1.bin", "imp/a/2.bin", "imp/b.bin"] {
            put(&client, "trunc", f, b"x", &Default::default()).await;
        }
        run(Command::new("rm").arg("-r").arg(m.path("imp")));
        assert!(!m.path("imp").exists());
        let left = client
            .list_all(
                "trunc",
                &blob_client::ListFilesQuery {
                    prefix: Some("imp/".into()),
                    ..Default::default()
                },
            )
            .await
            .expect("list");
        assert!(left.files.is_empty(), "{:?}", left.files);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_mount_point_that_is_not_empty_is_refused_unless_asked() {
    bounded(async {
        let cluster = start(TestCluster::builder()).await;
        cluster
            .client()
            .create_bucket("nonempty")
            .await
            .expect("bucket");
        let cfg = cluster.client_config().expect("cfg");
        let dir = tempfile::tempdir().expect("dir");
        let mnt = dir.path().join("mnt");
        std::fs::create_dir(&mnt).expect("mkdir");
        std::fs::write(mnt.join("local.txt"), b"mine").expect("write");
        let out = Command::new(blobctl_bin())
            .arg("--config")
            .arg(&cfg)
            .args(["mount", "nonempty"])
            .arg(&mnt)
            .output()
            .expect("blobctl mount");
        assert_eq!(out.status.code(), Some(2));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("not empty"), "{stderr}");
        assert!(!blob_mount::is_mounted(&mnt));

        let out = Command::new(blobctl_bin())
            .arg("--config")
            .arg(&cfg)
            .args(["mount", "nonempty"])
            .arg(&mnt)
            .args(["--nonempty", "--daemon", "--log-file"])
            .arg(dir.path().join("log"))
            .output()
            .expect("blobctl mount --nonempty");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(blob_mount::is_mounted(&mnt));
        assert!(!mnt.join("local.txt").exists(), "hidden while mounted");
        let st = Command::new("fusermount3")
            .arg("-u")
            .arg(&mnt)
            .status()
            .expect("fusermount3");
        assert!(st.success());
        assert_eq!(std::fs::read(mnt.join("local.txt")).expect("read"), b"mine");
    })
    .await;
}

/// Regular files in the staging directories under `cache`.
fn staged_files(cache: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(cache).expect("cache dir").flatten() {
        if e.path().is_dir() {
            for f in std::fs::read_dir(e.path()).expect("staging dir").flatten() {
                out.push(f.path());
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_mount_leaves_the_previous_version_and_no_staging_files() {
    bounded(async {
        let cluster = start(TestCluster::builder()).await;
        let client = cluster.client();
        client.create_bucket("kill").await.expect("bucket");
        let v1 = random_bytes(24 * MIB + 3, 31);
        put(&client, "kill", "f.bin", &v1, &chunked(MIB as u64)).await;
        let cache = tempfile::tempdir().expect("cache");
        let cache_arg = cache.path().display().to_string();
        let mut m = mount(
            &cluster,
            "kill",
            &["--chunk-size", "1MiB", "--cache-dir", &cache_arg],
        );

        // Seek-back writes all over the file, until the mount dies.
        let writes = Arc::new(AtomicUsize::new(0));
        let writer = {
            let (writes, path) = (writes.clone(), m.path("f.bin"));
            blocking(move || {
                use std::os::unix::fs::FileExt;
                let f = std::fs::OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .expect("open without O_TRUNC");
                let mut at = 23 * MIB as u64;
                loop {
                    if let Err(e) = f.write_at(&[0xEE; 4096], at) {
                        return e;
                    }
                    writes.fetch_add(1, Ordering::Relaxed);
                    at = (at + 7 * MIB as u64 + 4096) % (24 * MIB as u64);
                }
            })
        };
        blob_tests::wait_until("seek-back writes staged", Duration::from_secs(30), || {
            let (writes, cache) = (writes.clone(), cache.path().to_path_buf());
            async move {
                Ok(writes.load(Ordering::Relaxed) >= 20 && !staged_files(&cache).is_empty())
            }
        })
        .await
        .expect("staging");
        let pid = m.pid().expect("pid");
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGKILL,
        )
        .expect("SIGKILL");
        m.wait_exit(Duration::from_secs(10)).expect("killed");
        let err = writer.await.expect("writer");
        eprintln!(
            "FIGURES mount SIGKILL: {} seek-back writes done, then: {err}",
            writes.load(Ordering::Relaxed)
        );
        assert!(
            !staged_files(cache.path()).is_empty(),
            "the dead mount left its staging files"
        );

        // Another mount reads the previous version, whole.
        let other = mount(&cluster, "kill", &[]);
        let p = other.path("f.bin");
        let got = blocking(move || sha256_file(&p))
            .await
            .expect("join")
            .expect("read");
        assert_eq!(got, sha256_hex(&v1), "the previous version is intact");
        assert_eq!(
            sha256_hex(&get(&client, "kill", "f.bin").await),
            sha256_hex(&v1)
        );

        // The next mount on that cache directory removes what was left.
        drop(m);
        let again = mount(&cluster, "kill", &["--cache-dir", &cache_arg]);
        assert!(
            staged_files(cache.path()).is_empty(),
            "left over: {:?}",
            staged_files(cache.path())
        );
        let dirs = std::fs::read_dir(cache.path())
            .expect("cache")
            .flatten()
            .filter(|e| e.path().is_dir())
            .count();
        assert_eq!(dirs, 1, "only the running mount's directory");
        assert_eq!(sha256_hex(&read_all(&again.path("f.bin"))), sha256_hex(&v1));

        // A mount that stops cleanly takes its staging directory with it.
        let mut again = again;
        let status = again.terminate(Duration::from_secs(15)).expect("exit");
        assert!(status.success(), "{status}: {}", again.log_tail(20));
        let left: Vec<_> = std::fs::read_dir(cache.path())
            .expect("cache")
            .flatten()
            .map(|e| e.file_name())
            .filter(|n| n != ".lock")
            .collect();
        assert!(left.is_empty(), "left after a clean stop: {left:?}");
    })
    .await;
}

/// `blobctl mount --sse AES256` and `--sse-c-key-file`: files written
/// through the mount, front to back, with a seek back (a muxer patching
/// its header: staged) and rewritten with O_TRUNC, are stored encrypted
/// (their metadata says how, and no datanode holds their plaintext) and
/// read back identical; a file patched in place keeps its mode.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mount_writes_encrypted_files() {
    bounded(async {
        let c = start(TestCluster::builder().fsync(false)).await;
        let client = c.client();
        client.create_bucket("encm").await.expect("mb");
        let cfg = c.client_config().expect("config");
        let dir = tempfile::tempdir().expect("tempdir");
        let key_file = dir.path().join("key");
        std::fs::write(&key_file, random_bytes(32, 91)).expect("write key");
        // A recognisable plaintext: the same 4 KiB block over and over.
        let block = random_bytes(4096, 92);
        let body: Vec<u8> = block
            .iter()
            .copied()
            .cycle()
            .take((9 << 20) + 333)
            .collect();
        let header = b"HEADER-PATCHED-AFTER-THE-BODY";
        let mut patched = body.clone();
        patched[..header.len()].copy_from_slice(header);

        let key_arg = key_file.to_str().expect("utf-8").to_string();
        for (mode, args) in [
            ("AES256", vec!["--sse", "AES256", "--chunk-size", "1MiB"]),
            (
                "SSE-C",
                vec!["--sse-c-key-file", key_arg.as_str(), "--chunk-size", "1MiB"],
            ),
        ] {
            let m = Mount::start(&blobctl_bin(), &cfg, "encm", &args).expect("mount");
            let name = |n: &str| format!("{mode}-{n}");
            // Front to back (streamed).
            std::fs::write(m.path(&name("stream")), &body).expect("write streamed");
            // Written, then its header patched (staged).
            {
                let mut f = std::fs::File::create(m.path(&name("muxed"))).expect("create");
                f.write_all(&body).expect("write body");
                f.seek(SeekFrom::Start(0)).expect("seek");
                f.write_all(header).expect("write header");
                f.sync_all().expect("fsync commits the staged file");
            }
            // A clear file rewritten with O_TRUNC becomes encrypted.
            put(
                &client,
                "encm",
                &name("rewritten"),
                b"clear before",
                &Default::default(),
            )
            .await;
            std::fs::write(m.path(&name("rewritten")), &body).expect("rewrite");
            // A clear file patched in place keeps its clear chunks.
            let other = random_bytes(3 << 20, 93);
            put(&client, "encm", &name("inplace"), &other, &chunked(1 << 20)).await;
            {
                let mut f = std::fs::OpenOptions::new()
                    .write(true)
                    .open(m.path(&name("inplace")))
                    .expect("open in place");
                f.seek(SeekFrom::Start(100)).expect("seek");
                f.write_all(b"patch").expect("patch");
                f.sync_all().expect("fsync");
            }
            for (n, want) in [("stream", &body), ("muxed", &patched), ("rewritten", &body)] {
                let got = std::fs::read(m.path(&name(n)))
                    .unwrap_or_else(|e| panic!("{mode} {n}: {e}\n{}", m.log_tail(30)));
                assert_eq!(
                    sha256_hex(&got),
                    sha256_hex(want),
                    "{mode} {n} through the mount"
                );
            }
            drop(m);
            let inplace = client.stat("encm", &name("inplace")).await.expect("stat");
            assert_eq!(
                blob_client::sse::sse_mode(&inplace.meta),
                None,
                "{mode} inplace"
            );
            client
                .delete_file("encm", &name("inplace"))
                .await
                .expect("rm");
            let reader = match mode {
                "SSE-C" => client.with_customer_key(
                    blob_client::sse::CustomerKey::from_file_contents(&random_bytes(32, 91))
                        .expect("key"),
                ),
                _ => client.clone(),
            };
            for (n, want) in [("stream", &body), ("muxed", &patched), ("rewritten", &body)] {
                let f = client.stat("encm", &name(n)).await.expect("stat");
                assert_eq!(
                    blob_client::sse::sse_mode(&f.meta),
                    Some(mode),
                    "{mode} {n}"
                );
                assert_eq!(f.size, want.len() as u64, "{mode} {n}: the plaintext size");
                let got = get(&reader, "encm", &name(n)).await;
                assert_eq!(sha256_hex(&got), sha256_hex(want), "{mode} {n} read back");
            }
        }
        // No datanode holds the plaintext block; a clear upload of it shows
        // the search can find it.
        let holds_block = |c: &TestCluster| {
            let mut found = 0u64;
            let mut stack = vec![c.root().to_path_buf()];
            while let Some(d) = stack.pop() {
                for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
                    let p = e.path();
                    if p.is_dir() {
                        stack.push(p);
                    } else if p.to_string_lossy().contains("datanode") {
                        let bytes = std::fs::read(&p).unwrap_or_default();
                        if bytes.windows(64).any(|w| w == &block[..64]) {
                            found += 1;
                        }
                    }
                }
            }
            found
        };
        assert_eq!(holds_block(&c), 0, "a datanode file holds the plaintext");
        put(&client, "encm", "clear", &body, &chunked(1 << 20)).await;
        assert!(holds_block(&c) > 0, "the search finds a clear copy");
    })
    .await;
}
