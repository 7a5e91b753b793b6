//! `blobctl mount` in the foreground for the mount scenarios: started on a
//! fresh directory, awaited until the kernel shows it, unmounted and
//! stopped when dropped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::tail;

/// A `blobctl mount` of a bucket in the foreground, on a fresh temporary
/// directory; unmounted and stopped when dropped.
pub struct Mount {
    dir: tempfile::TempDir,
    child: Option<Child>,
    log: PathBuf,
}

impl Mount {
    /// Mounts `bucket` with `blobctl --config CONFIG mount BUCKET DIR ARGS`
    /// and waits until the kernel shows the mount.
    pub fn start(blobctl: &Path, config: &Path, bucket: &str, args: &[&str]) -> Result<Mount> {
        let dir = tempfile::Builder::new().prefix("blob-mnt-").tempdir()?;
        let log = std::env::temp_dir().join(format!(
            "blob-mount-{}-{}.log",
            std::process::id(),
            hex::encode(rand::random::<[u8; 4]>())
        ));
        let out = std::fs::File::create(&log)?;
        let child = Command::new(blobctl)
            .arg("--config")
            .arg(config)
            .arg("mount")
            .arg(bucket)
            .arg(dir.path())
            .args(args)
            .env_remove("BLOBCTL_ENDPOINT")
            .env_remove("BLOBCTL_ACCESS_KEY")
            .env_remove("BLOBCTL_SECRET_KEY")
            .env("RUST_LOG", "info,fuser=error")
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .context("starting blobctl mount")?;
        let mut m = Mount {
            dir,
            child: Some(child),
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !blob_mount::is_mounted(m.dir.path()) {
            if let Some(c) = m.child.as_mut() {
                if let Ok(Some(status)) = c.try_wait() {
                    bail!("blobctl mount exited ({status}):\n{}", tail(&m.log, 20));
                }
            }
            if Instant::now() > deadline {
                bail!("not mounted after 20 s:\n{}", tail(&m.log, 20));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(m)
    }

    /// The mount point.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `rel` inside the mount.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// The mount process's id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The mount's log so far (last `n` lines).
    pub fn log_tail(&self, n: usize) -> String {
        tail(&self.log, n)
    }

    /// Sends SIGTERM and waits (up to `within`) for the process to unmount
    /// and exit; returns its exit status.
    pub fn terminate(&mut self, within: Duration) -> Result<std::process::ExitStatus> {
        let Some(pid) = self.pid() else {
            bail!("not running");
        };
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGTERM,
        )?;
        self.wait_exit(within).inspect_err(|_| {
            if let Some(mut c) = self.child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        })
    }

    /// Waits (up to `within`) for the process to exit on its own, as it
    /// does when unmounted from outside; returns its exit status.
    pub fn wait_exit(&mut self, within: Duration) -> Result<std::process::ExitStatus> {
        let Some(child) = self.child.as_mut() else {
            bail!("not running");
        };
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = child.try_wait()? {
                self.child = None;
                return Ok(status);
            }
            if Instant::now() > deadline {
                bail!(
                    "blobctl mount still running after {within:?}:\n{}",
                    tail(&self.log, 20)
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether the kernel still shows the mount.
    pub fn is_mounted(&self) -> bool {
        blob_mount::is_mounted(self.dir.path())
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        if self.is_mounted() {
            let _ = Command::new("fusermount3")
                .arg("-u")
                .arg("-z")
                .arg(self.dir.path())
                .stderr(Stdio::null())
                .status();
        }
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_file(&self.log);
    }
}
