//! The mount benchmark: on one local cluster (3 datanodes, RF 3, fsync on),
//! a 1 GiB file read sequentially through `blobctl mount` (`dd bs=1M`)
//! against `blobctl download` of the same file (to `/dev/null`, and to a
//! local file) and `dd` of a local copy,
//! and 1 GiB written through the mount against `blobctl upload`. Each pair
//! runs back to back in the same run, alternating, so the shared machine's
//! noise hits both sides alike; the best of `--runs` is kept per side.
//!
//! Run: `cargo run --release -p blob-tests --bin mount-bench [-- --size-mib 1024 --runs 2]`
//! (needs /dev/fuse and fusermount3, which `deploy/install-deps.sh` installs).

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use blob_tests::bench::{make_file, rss_mib, sibling};
use blob_tests::{Mount, TestCluster};

struct Args {
    size_mib: u64,
    runs: usize,
}

fn args() -> Result<Args> {
    let mut a = Args {
        size_mib: 1024,
        runs: 2,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut val = || it.next().context("flag needs a value");
        match flag.as_str() {
            "--size-mib" => a.size_mib = val()?.parse()?,
            "--runs" => a.runs = val()?.parse()?,
            other => bail!("unknown flag {other}; use --size-mib N, --runs N"),
        }
    }
    Ok(a)
}

/// Runs a command; returns its wall time in seconds.
fn timed(cmd: &mut Command) -> Result<f64> {
    let t = Instant::now();
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!("{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(t.elapsed().as_secs_f64())
}

fn dd(from: &Path, to: &Path, extra: &[&str]) -> Result<f64> {
    timed(
        Command::new("dd")
            .arg(format!("if={}", from.display()))
            .arg(format!("of={}", to.display()))
            .arg("bs=1M")
            .args(extra),
    )
}

/// Drops `path` from the page cache, so the next read comes from disk.
fn uncache(path: &Path) -> Result<()> {
    timed(
        Command::new("dd")
            .arg(format!("if={}", path.display()))
            .args(["iflag=nocache", "count=0"]),
    )
    .map(|_| ())
}

#[tokio::main]
async fn main() -> Result<()> {
    let a = args()?;
    let blobd = sibling("test-blobd")?;
    let blobctl = sibling("test-blobctl")?;
    let cluster = TestCluster::builder()
        .datanodes(3)
        .replication(3)
        .start(&blobd)
        .await?;
    let cfg = cluster.client_config()?;
    cluster.client().create_bucket("bench").await?;
    let mount = Mount::start(&blobctl, &cfg, "bench", &[])?;
    let tmp = tempfile::Builder::new()
        .prefix("mount-bench-")
        .tempdir_in(cluster.root())?;
    let mib = a.size_mib as f64;
    let blobctl_cmd = |args: &[&str]| {
        let mut c = Command::new(&blobctl);
        c.arg("--config").arg(&cfg).arg("-q").args(args);
        c
    };

    let (mut up, mut mw, mut down, mut mr, mut local_r, mut local_w, mut to_file) =
        (0f64, 0f64, 0f64, 0f64, 0f64, 0f64, 0f64);
    // Per-run ratios: each pair ran back to back, so its ratio is the
    // least disturbed figure; their median is reported beside the bests.
    let (mut read_ratios, mut write_ratios) = (Vec::new(), Vec::new());
    for run in 0..a.runs {
        // Fresh content each time: the store would skip chunks it holds.
        let u = tmp.path().join(format!("u{run}.bin"));
        let w = tmp.path().join(format!("w{run}.bin"));
        make_file(&u, a.size_mib, 100 + run as u64).await?;
        make_file(&w, a.size_mib, 200 + run as u64).await?;
        let remote = format!("bench/u{run}.bin");

        let s = dd(
            Path::new("/dev/zero"),
            &tmp.path().join("dd.bin"),
            &[&format!("count={}", a.size_mib), "conv=fsync"],
        )?;
        local_w = local_w.max(mib / s);
        let _ = std::fs::remove_file(tmp.path().join("dd.bin"));

        let r_up = mib
            / timed(&mut blobctl_cmd(&[
                "upload",
                &u.display().to_string(),
                &remote,
            ]))?;
        let r_mw = mib / dd(&w, &mount.path(&format!("w{run}.bin")), &[])?;

        uncache(&u)?;
        local_r = local_r.max(mib / dd(&u, Path::new("/dev/null"), &[])?);
        let r_down = mib / timed(&mut blobctl_cmd(&["download", &remote, "/dev/null"]))?;
        let copy = tmp.path().join("copy.bin");
        let r_file = mib
            / timed(&mut blobctl_cmd(&[
                "download",
                &remote,
                &copy.display().to_string(),
            ]))?;
        let _ = std::fs::remove_file(&copy);
        let r_mr = mib
            / dd(
                &mount.path(&format!("u{run}.bin")),
                Path::new("/dev/null"),
                &[],
            )?;

        let _ = std::fs::remove_file(&u);
        let _ = std::fs::remove_file(&w);
        eprintln!(
            "run {}: upload {r_up:.0} / mount write {r_mw:.0}, download {r_down:.0} (to a file {r_file:.0}) / mount read {r_mr:.0} MiB/s",
            run + 1
        );
        (up, mw, down, mr) = (up.max(r_up), mw.max(r_mw), down.max(r_down), mr.max(r_mr));
        to_file = to_file.max(r_file);
        read_ratios.push(r_mr / r_down);
        write_ratios.push(r_mw / r_up);
    }
    let rss = mount.pid().map_or(0.0, rss_mib);

    println!(
        "mount-bench: {} MiB file, 3 datanodes, RF 3, fsync on; best of {} runs",
        a.size_mib, a.runs
    );
    println!("  local disk read (uncached, dd)   {local_r:>7.0} MiB/s");
    println!("  local disk write (dd fsync)      {local_w:>7.0} MiB/s");
    println!("  blobctl download to /dev/null    {down:>7.0} MiB/s");
    println!("  blobctl download to a local file {to_file:>7.0} MiB/s");
    println!(
        "  mount read (dd bs=1M)            {mr:>7.0} MiB/s  {:>4.0}% of blobctl download to /dev/null (goal >= 80%), {:.0}% of it to a file",
        100.0 * mr / down,
        100.0 * mr / to_file
    );
    println!("  blobctl upload                   {up:>7.0} MiB/s");
    println!(
        "  mount write (dd bs=1M)           {mw:>7.0} MiB/s  {:>4.0}% of blobctl upload (goal >= 70%)",
        100.0 * mw / up
    );
    println!(
        "  per-run ratios, median           read {:.0}% of download, write {:.0}% of upload",
        100.0 * median(&mut read_ratios),
        100.0 * median(&mut write_ratios)
    );
    println!("  mount process RSS after          {rss:>7.0} MiB");
    Ok(())
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}
