//! Writing a stream of bytes to a local file without filling the page
//! cache (see [`blob_common::aligned`]): whole blocks are written with
//! `O_DIRECT`, a few in flight on the blocking pool while the next ones
//! arrive. Used by downloads to a file and by the mount's write cache.

use std::collections::VecDeque;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

pub use blob_common::aligned::{open_direct, AlignedBuf, ALIGN, BLOCK};

/// Blocks being written at once: the writer waits for the disk only when it
/// is this far behind.
pub const IN_FLIGHT: usize = 4;

type BlockWrite = tokio::task::JoinHandle<(io::Result<()>, AlignedBuf)>;

/// Sequential writes to a regular file from offset 0: whole blocks go out
/// with `O_DIRECT` in the background, the tail (shorter than a block, not
/// aligned) through the ordinary handle at the end.
pub struct SequentialFile {
    file: Arc<File>,
    direct: Option<Arc<File>>,
    buf: AlignedBuf,
    spares: Vec<AlignedBuf>,
    writing: VecDeque<BlockWrite>,
    /// File offset of `buf`'s first byte.
    at: u64,
}

impl SequentialFile {
    /// Writes into `file`, opened at `path` (reopened with `O_DIRECT`
    /// where possible).
    pub fn new(file: File, path: &Path) -> Self {
        let direct = match open_direct(path) {
            Ok(f) => Some(Arc::new(f)),
            Err(e) => {
                tracing::debug!(path = %path.display(), error = %e, "no O_DIRECT: writing through the page cache");
                None
            }
        };
        Self {
            file: Arc::new(file),
            direct,
            buf: AlignedBuf::new(),
            spares: Vec::new(),
            writing: VecDeque::new(),
            at: 0,
        }
    }

    /// Reserves `len` bytes of disk for the file (best effort; see
    /// [`blob_common::aligned::preallocate`]).
    pub fn preallocate(&self, len: u64) {
        if let Err(e) = blob_common::aligned::preallocate(&self.file, len) {
            tracing::debug!(error = %e, "no preallocation");
        }
    }

    /// Bytes taken so far.
    pub fn len(&self) -> u64 {
        self.at + self.buf.len() as u64
    }

    /// Whether nothing was written yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends `data`.
    pub async fn write(&mut self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            let k = data.len().min(self.buf.room());
            self.buf.push(&data[..k]);
            data = &data[k..];
            if self.buf.room() == 0 {
                self.write_block().await?;
            }
        }
        Ok(())
    }

    async fn write_block(&mut self) -> io::Result<()> {
        while self.writing.len() >= IN_FLIGHT {
            self.wait_one().await?;
        }
        let spare = self.spares.pop().unwrap_or_default();
        let full = std::mem::replace(&mut self.buf, spare);
        let at = self.at;
        let target = self.direct.as_ref().unwrap_or(&self.file).clone();
        self.writing.push_back(tokio::task::spawn_blocking(move || {
            let res = target.write_all_at(full.bytes(), at);
            (res, full)
        }));
        self.at += BLOCK as u64;
        Ok(())
    }

    async fn wait_one(&mut self) -> io::Result<()> {
        let Some(h) = self.writing.pop_front() else {
            return Ok(());
        };
        let (res, mut buf) = h
            .await
            .map_err(|e| io::Error::other(format!("file write task: {e}")))?;
        buf.clear();
        self.spares.push(buf);
        res
    }

    /// Writes what is left, sets the file's length to what was written
    /// (dropping any preallocation past it), and gives the file back (not
    /// synced).
    pub async fn finish(mut self) -> io::Result<File> {
        while !self.writing.is_empty() {
            self.wait_one().await?;
        }
        let Self { file, buf, at, .. } = self;
        tokio::task::spawn_blocking(move || {
            // Every block task is done, so this is the last handle.
            let file = Arc::try_unwrap(file).or_else(|f| f.try_clone())?;
            file.write_all_at(buf.bytes(), at)?;
            file.set_len(at + buf.len() as u64)?;
            Ok(file)
        })
        .await
        .map_err(|e| io::Error::other(format!("file write task: {e}")))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_sequence_of_odd_writes_lands_byte_for_byte() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("out");
        let data: Vec<u8> = (0..(BLOCK * 2 + 12_345))
            .map(|i| (i * 7 % 251) as u8)
            .collect();
        let file = File::create(&path).unwrap_or_else(|e| panic!("{e}"));
        let mut w = SequentialFile::new(file, &path);
        w.preallocate(data.len() as u64 + 3 * BLOCK as u64);
        for piece in data.chunks(999_983) {
            w.write(piece).await.unwrap_or_else(|e| panic!("{e}"));
        }
        assert_eq!(w.len(), data.len() as u64);
        let f = w.finish().await.unwrap_or_else(|e| panic!("{e}"));
        drop(f);
        let back = std::fs::read(&path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(back.len(), data.len(), "preallocation past the end dropped");
        assert!(back == data);
    }
}
