//! Local staging for files written out of order: where an open file's
//! bytes live once it cannot be streamed front to back any more.
//!
//! A [`StagingArea`] is one directory per running mount under the cache
//! directory, held by an exclusive `flock` for the mount's life; the next
//! mount to start there removes the directories whose lock nobody holds
//! (a mount that was killed), so a crash leaves nothing behind for long.
//! Its budget counts the disk blocks the staging files really take
//! (holes are free), and a write that would go over it fails with
//! `ENOSPC` instead of being lost. A [`StageFile`] is one file's bytes in
//! the area. Where each byte of a staged file is (stored chunk or staging
//! file) is the [`Layout`] in [`layout`]; the [`Tee`] that keeps a local
//! copy while a file streams is in [`tee`].

use std::fs::File;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::Context;
use bytes::{Bytes, BytesMut};
use nix::fcntl::{Flock, FlockArg};

mod layout;
mod tee;

pub(crate) use layout::{BaseChunk, Layout, Piece, Segment};
pub(crate) use tee::Tee;

/// Names of the directories (and their lock files) of running mounts.
const INSTANCE_PREFIX: &str = "mount-";

/// The staging directory of one running mount, with its byte budget.
pub(crate) struct StagingArea {
    dir: PathBuf,
    capacity: u64,
    used: Mutex<u64>,
    next: AtomicU64,
    /// Held while the mount runs: tells a mount starting later that this
    /// directory is in use.
    _lock: Flock<File>,
}

impl StagingArea {
    /// Opens a fresh staging directory under `root` (created if missing)
    /// with room for `capacity` bytes, after removing the directories of
    /// mounts that are gone.
    pub(crate) fn open(root: &Path, capacity: u64) -> anyhow::Result<Arc<Self>> {
        std::fs::create_dir_all(root)
            .with_context(|| format!("creating the cache directory {}", root.display()))?;
        // Sweeps and creations take the root's lock, so a sweep never sees
        // a directory whose lock is not taken yet.
        let root_lock = lock_file(&root.join(".lock"), FlockArg::LockExclusive)
            .with_context(|| format!("locking {}", root.display()))?;
        let removed = sweep(root);
        if removed > 0 {
            tracing::info!(root = %root.display(), files = removed, "removed staging files left by a mount that stopped");
        }
        let name = format!(
            "{INSTANCE_PREFIX}{}-{}",
            std::process::id(),
            hex::encode(rand::random::<[u8; 4]>())
        );
        let lock = lock_file(
            &root.join(format!("{name}.lock")),
            FlockArg::LockExclusiveNonblock,
        )
        .context("locking the staging directory")?;
        let dir = root.join(&name);
        std::fs::create_dir(&dir)
            .with_context(|| format!("creating the staging directory {}", dir.display()))?;
        drop(root_lock);
        Ok(Arc::new(Self {
            dir,
            capacity,
            used: Mutex::new(0),
            next: AtomicU64::new(1),
            _lock: lock,
        }))
    }

    /// Removes this mount's directory: a mount that stops cleanly leaves
    /// nothing behind. Staging files still open lose their data.
    pub(crate) fn remove(&self) {
        // The lock file first: a directory left without one (the process
        // killed right here) is swept by the next mount.
        let mut lock = self.dir.clone().into_os_string();
        lock.push(".lock");
        let _ = std::fs::remove_file(lock);
        match std::fs::remove_dir_all(&self.dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(dir = %self.dir.display(), error = %e, "could not remove the staging directory")
            }
        }
    }

    /// This mount's directory.
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// Bytes staged now.
    pub(crate) fn used(&self) -> u64 {
        *self.used.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A new, empty staging file.
    pub(crate) fn create(self: &Arc<Self>) -> std::io::Result<StageFile> {
        let path = self
            .dir
            .join(self.next.fetch_add(1, Ordering::Relaxed).to_string());
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)?;
        Ok(StageFile {
            file: Arc::new(file),
            path,
            area: self.clone(),
            reserved: 0,
        })
    }

    /// Takes `n` bytes of the budget; false (nothing taken) when they are
    /// not there.
    fn reserve(&self, n: u64) -> bool {
        let mut used = self.used.lock().unwrap_or_else(|p| p.into_inner());
        if used.saturating_add(n) > self.capacity {
            return false;
        }
        *used += n;
        true
    }

    /// Takes `n` bytes whatever the budget (blocks already on disk).
    fn force(&self, n: u64) {
        let mut used = self.used.lock().unwrap_or_else(|p| p.into_inner());
        *used = used.saturating_add(n);
    }

    fn release(&self, n: u64) {
        let mut used = self.used.lock().unwrap_or_else(|p| p.into_inner());
        *used = used.saturating_sub(n);
    }
}

impl Drop for StagingArea {
    fn drop(&mut self) {
        self.remove();
    }
}

/// Opens (creating) and locks `path`.
fn lock_file(path: &Path, how: FlockArg) -> anyhow::Result<Flock<File>> {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    Flock::lock(f, how).map_err(|(_, e)| anyhow::anyhow!("locking {}: {e}", path.display()))
}

/// Removes the staging directories under `root` whose lock no running
/// mount holds (and directories that never got a lock); returns how many
/// files they held.
fn sweep(root: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(root) else {
        return 0;
    };
    // Each mount's directory and lock file, whichever of the two is left.
    let names: std::collections::BTreeSet<String> = entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let name = name.strip_suffix(".lock").unwrap_or(&name).to_string();
            name.starts_with(INSTANCE_PREFIX).then_some(name)
        })
        .collect();
    let mut removed = 0;
    for name in names {
        let lock_path = root.join(format!("{name}.lock"));
        let lock = match lock_file(&lock_path, FlockArg::LockExclusiveNonblock) {
            Ok(l) => l,
            // Held: a running mount's.
            Err(_) => continue,
        };
        let dir = root.join(&name);
        removed += std::fs::read_dir(&dir).map_or(0, |d| d.count());
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(dir = %dir.display(), error = %e, "could not remove a stale staging directory");
                continue;
            }
        }
        let _ = std::fs::remove_file(&lock_path);
        drop(lock);
    }
    removed
}

/// Why a staging file operation failed.
#[derive(Debug)]
pub(crate) enum StageError {
    /// The write would take the staging area over its budget.
    Full { want: u64, used: u64, capacity: u64 },
    /// The local file system failed.
    Io(std::io::Error),
}

impl std::fmt::Display for StageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StageError::Full {
                want,
                used,
                capacity,
            } => write!(
                f,
                "the write cache is full: {want} more bytes wanted, {used} of {capacity} in use (--write-cache-size)"
            ),
            StageError::Io(e) => write!(f, "staging file: {e}"),
        }
    }
}

/// One staged file: bytes at the same offsets as in the file being
/// written, sparse where nothing is local. Removed when dropped.
pub(crate) struct StageFile {
    file: Arc<File>,
    path: PathBuf,
    area: Arc<StagingArea>,
    /// Budget taken: the blocks the file holds (measured after each
    /// change).
    reserved: u64,
}

/// Blocks a write of `len` bytes may allocate (a partial block at each
/// end takes a whole one).
fn worst_case_blocks(len: u64) -> u64 {
    const BLOCK: u64 = 4096;
    len.div_ceil(BLOCK) * BLOCK + BLOCK
}

impl StageFile {
    /// Writes `data` at `offset`; `Full` (nothing written) when the
    /// area's budget cannot take it.
    pub(crate) async fn write_at(&mut self, offset: u64, data: Bytes) -> Result<(), StageError> {
        let want = worst_case_blocks(data.len() as u64);
        if !self.area.reserve(want) {
            return Err(StageError::Full {
                want,
                used: self.area.used(),
                capacity: self.area.capacity,
            });
        }
        self.reserved += want;
        let file = self.file.clone();
        let res = blocking(move || file.write_all_at(&data, offset)).await;
        self.settle();
        res.map_err(StageError::Io)
    }

    /// `len` bytes from `offset` (zeros where the file has none).
    pub(crate) async fn read_at(&self, offset: u64, len: u64) -> std::io::Result<Bytes> {
        let file = self.file.clone();
        blocking(move || read_padded(&file, offset, len)).await
    }

    /// Cuts or extends the file to `len` bytes (an extension is a hole).
    pub(crate) async fn set_len(&mut self, len: u64) -> Result<(), StageError> {
        let file = self.file.clone();
        let res = blocking(move || file.set_len(len)).await;
        self.settle();
        res.map_err(StageError::Io)
    }

    /// Brings the budget taken to the blocks the file really holds.
    fn settle(&mut self) {
        self.settle_with(0);
    }

    /// [`StageFile::settle`], with `pending` bytes of writes under way on
    /// top.
    fn settle_with(&mut self, pending: u64) {
        let Ok(meta) = self.file.metadata() else {
            return;
        };
        let held = meta.blocks() * 512 + pending;
        if held > self.reserved {
            self.area.force(held - self.reserved);
        } else {
            self.area.release(self.reserved - held);
        }
        self.reserved = held;
    }

    /// The file, for reads on the blocking pool.
    pub(crate) fn handle(&self) -> Arc<File> {
        self.file.clone()
    }

    /// Takes `n` bytes of the budget for a write about to be made.
    fn reserve(&mut self, n: u64) -> Result<(), StageError> {
        if !self.area.reserve(n) {
            return Err(StageError::Full {
                want: n,
                used: self.area.used(),
                capacity: self.area.capacity,
            });
        }
        self.reserved += n;
        Ok(())
    }

    /// A second handle on the file that writes around the page cache
    /// (`O_DIRECT`), where the file system allows it.
    fn open_direct(&self) -> std::io::Result<File> {
        blob_client::aligned::open_direct(&self.path)
    }
}

impl Drop for StageFile {
    fn drop(&mut self) {
        self.area.release(self.reserved);
        if let Err(e) = std::fs::remove_file(&self.path) {
            tracing::warn!(path = %self.path.display(), error = %e, "could not remove a staging file");
        }
    }
}

/// Reads `len` bytes at `offset` of `file`, zeros past its end.
pub(crate) fn read_padded(file: &File, offset: u64, len: u64) -> std::io::Result<Bytes> {
    let len = usize::try_from(len).map_err(std::io::Error::other)?;
    let mut buf = BytesMut::zeroed(len);
    let mut done = 0;
    while done < len {
        match file.read_at(&mut buf[done..], offset + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(buf.freeze())
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> std::io::Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(format!("staging I/O task: {e}"))))
}

#[cfg(test)]
mod tests {
    use super::tee::TEE_BLOCK;
    use super::*;

    #[tokio::test]
    async fn staging_files_count_real_blocks_and_refuse_past_the_budget() {
        let root = tempfile::tempdir().expect("tmp");
        let area = StagingArea::open(root.path(), 1 << 20).expect("area");
        let mut f = area.create().expect("file");
        // A write far into the file takes its blocks, not its offset.
        f.write_at(100 << 20, Bytes::from(vec![7u8; 4096]))
            .await
            .expect("write");
        assert!(area.used() <= 64 << 10, "used {}", area.used());
        let got = f.read_at((100 << 20) - 2, 6).await.expect("read");
        assert_eq!(&got[..], &[0, 0, 7, 7, 7, 7]);
        // Past the end: zeros.
        assert_eq!(
            &f.read_at((101 << 20) - 2, 4).await.expect("read")[..],
            &[0; 4]
        );
        let err = f
            .write_at(0, Bytes::from(vec![1u8; 2 << 20]))
            .await
            .expect_err("over the budget");
        assert!(matches!(err, StageError::Full { .. }), "{err}");
        f.set_len(0).await.expect("truncate");
        assert_eq!(area.used(), 0);
        drop(f);
        assert_eq!(std::fs::read_dir(area.dir()).expect("dir").count(), 0);
    }

    #[tokio::test]
    async fn a_tee_keeps_every_byte_across_blocks_and_hands_over_a_staging_file() {
        let root = tempfile::tempdir().expect("tmp");
        let area = StagingArea::open(root.path(), 64 << 20).expect("area");
        let mut tee = Tee::new(area.create().expect("file"));
        // Pieces of odd sizes across several blocks.
        let data: Vec<u8> = (0..(TEE_BLOCK * 2 + 12_345))
            .map(|i| (i % 251) as u8)
            .collect();
        for piece in data.chunks(300_001) {
            tee.append(piece).await.expect("append");
        }
        assert_eq!(tee.len(), data.len() as u64);
        // Reads across the written part and the buffered tail.
        let at = TEE_BLOCK * 2 - 10;
        let got = tee.read_at(at as u64, 100).await.expect("read");
        assert_eq!(&got[..], &data[at..at + 100]);
        let f = tee.finish().await.expect("finish");
        let all = f.read_at(0, data.len() as u64).await.expect("read");
        assert!(all[..] == data[..]);
        assert!(area.used() >= data.len() as u64);
        drop(f);
        assert_eq!(area.used(), 0);

        // Over the budget: refused.
        let small = StagingArea::open(root.path(), 1 << 20).expect("area");
        let mut tee = Tee::new(small.create().expect("file"));
        let err = tee
            .append(&vec![1u8; TEE_BLOCK])
            .await
            .expect_err("a block over the budget");
        assert!(matches!(err, StageError::Full { .. }), "{err}");
    }

    #[test]
    fn a_new_area_removes_what_a_dead_mount_left_and_spares_a_live_one() {
        let root = tempfile::tempdir().expect("tmp");
        // A dead mount's directory: no lock held.
        let dead = root.path().join(format!("{INSTANCE_PREFIX}1-dead"));
        std::fs::create_dir(&dead).expect("mkdir");
        std::fs::write(dead.join("1"), b"left over").expect("write");
        std::fs::write(
            root.path().join(format!("{INSTANCE_PREFIX}1-dead.lock")),
            b"",
        )
        .expect("lock file");
        // A lock file whose directory went already.
        let orphan = root.path().join(format!("{INSTANCE_PREFIX}2-gone.lock"));
        std::fs::write(&orphan, b"").expect("orphan lock");
        let live = StagingArea::open(root.path(), 1 << 20).expect("live");
        assert!(!dead.exists());
        assert!(!orphan.exists());
        assert!(!root
            .path()
            .join(format!("{INSTANCE_PREFIX}1-dead.lock"))
            .exists());
        let f = live.create().expect("file");
        let second = StagingArea::open(root.path(), 1 << 20).expect("second");
        assert!(live.dir().exists(), "a running mount's directory stays");
        assert_eq!(std::fs::read_dir(live.dir()).expect("dir").count(), 1);
        assert_ne!(live.dir(), second.dir());
        drop(f);
    }
}
