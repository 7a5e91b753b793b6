//! Helpers the benchmark programs (`src/bin/*-bench.rs`) share.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use tokio::io::AsyncWriteExt;

/// A binary built next to the running one (`test-blobd`, `test-blobctl`).
pub fn sibling(name: &str) -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let path = exe.parent().context("exe dir")?.join(name);
    if !path.exists() {
        bail!(
            "{} not found: build with `cargo build --release -p blob-tests --bins`",
            path.display()
        );
    }
    Ok(path)
}

/// Writes `mib` MiB of incompressible data (distinct per `seed`) to
/// `path` without holding it in memory.
pub async fn make_file(path: &Path, mib: u64, seed: u64) -> Result<()> {
    let mut f = tokio::fs::File::create(path).await?;
    for i in 0..mib {
        f.write_all(&crate::random_bytes(1 << 20, seed * 1_000_000 + i))
            .await?;
    }
    f.flush().await?;
    Ok(())
}

/// A process's resident memory in MiB (0 when it cannot be read).
pub fn rss_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kib| kib / 1024.0)
}
