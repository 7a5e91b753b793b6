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
        eprintln!(
            "FIGURES mount 256 MiB: write {:.0} MiB/s, read {:.0} MiB/s",
            256.0 / write_s,
            256.0 / read_s
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

        // Writing into bytes already written is refused; appending works;
        // O_TRUNC replaces.
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .open(m.path("moved/3145745.bin"))
            .expect("open for writing");
        let err = f.write_all(b"over").expect_err("write into the middle");
        assert_eq!(err.raw_os_error(), Some(libc::EOPNOTSUPP), "{err}");
        let err = f
            .sync_all()
            .expect_err("nothing is committed after a refused write");
        assert_eq!(err.raw_os_error(), Some(libc::EIO), "{err}");
        drop(f);
        assert_eq!(
            sha256_hex(&get(&client, "fsb", "moved/3145745.bin").await),
            sha256_hex(&random_bytes(3 * MIB + 17, 5)),
            "the file is unchanged"
        );
        // ffmpeg's MP4 muxer patches its header at the end: refused, and the
        // half-made file never appears.
        let mp4 = m.path("moved/clip.mp4");
        let out = Command::new("ffmpeg")
            .args([
                "-hide_banner",
                "-loglevel",
                "error",
                "-nostdin",
                "-f",
                "lavfi",
            ])
            .args([
                "-i",
                "testsrc=duration=2:size=160x120:rate=25",
                "-c:v",
                "libx264",
            ])
            .arg(&mp4)
            .output()
            .expect("ffmpeg");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("Operation not supported"),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            client.stat("fsb", "moved/clip.mp4").await.is_err(),
            "no half-made MP4"
        );
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(m.path("moved/3145745.bin"))
            .expect("open to append");
        f.write_all(b"tail").expect("append");
        drop(f);
        let mut want = random_bytes(3 * MIB + 17, 5);
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
            blob_client::mount::is_mounted(&mnt),
            "mounted once the command returns"
        );
        assert_eq!(std::fs::read(mnt.join("a/b.txt")).expect("read"), b"hello");
        let st = Command::new("fusermount3")
            .arg("-u")
            .arg(&mnt)
            .status()
            .expect("fusermount3");
        assert!(st.success());
        assert!(!blob_client::mount::is_mounted(&mnt));
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
        put(&client, "seek", "movie.ts", &data, &Default::default()).await;
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
        let moved = cluster
            .datanode_metric("blob_datanode_sent_bytes_total")
            .await
            .expect("metric")
            - before;
        eprintln!(
            "FIGURES mount seek: 100000 bytes read, {moved} bytes sent by datanodes (chunk 8 MiB)"
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
