//! The [`Tee`]: while a file streams into the store, a copy of its bytes
//! goes to a staging file through `O_DIRECT` in aligned blocks, so a later
//! seek back can switch to staging without reading anything again.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};

use super::{StageError, StageFile};

pub(crate) use blob_client::aligned::{AlignedBuf, BLOCK as TEE_BLOCK, IN_FLIGHT as TEE_IN_FLIGHT};

/// A block being written out; gives its buffer back.
pub(crate) type BlockWrite = tokio::task::JoinHandle<(std::io::Result<()>, AlignedBuf)>;

/// The local copy of a file being streamed, so that it can be staged at
/// any point. Appended in [`TEE_BLOCK`]s written with `O_DIRECT` in the
/// background (up to [`TEE_IN_FLIGHT`] at once): filling the page cache
/// with a copy nobody may ever read costs more CPU than the upload itself
/// on a busy machine, and evicts what readers use.
pub(crate) struct Tee {
    pub(crate) file: StageFile,
    pub(crate) direct: Option<Arc<File>>,
    /// Bytes from `buf_at` on, not written out yet.
    pub(crate) buf: AlignedBuf,
    pub(crate) spares: Vec<AlignedBuf>,
    /// Blocks before `buf_at` still being written, oldest first.
    pub(crate) writing: std::collections::VecDeque<BlockWrite>,
    pub(crate) buf_at: u64,
}

impl Tee {
    pub(crate) fn new(file: StageFile) -> Self {
        let direct = match file.open_direct() {
            Ok(f) => Some(Arc::new(f)),
            Err(e) => {
                tracing::debug!(error = %e, "no O_DIRECT for the write cache: local copies go through the page cache");
                None
            }
        };
        Self {
            file,
            direct,
            buf: AlignedBuf::new(),
            spares: Vec::new(),
            writing: std::collections::VecDeque::new(),
            buf_at: 0,
        }
    }

    /// Bytes copied so far.
    pub(crate) fn len(&self) -> u64 {
        self.buf_at + self.buf.len() as u64
    }

    /// Appends `data`; `Full` when the write cache cannot take it.
    pub(crate) async fn append(&mut self, mut data: &[u8]) -> Result<(), StageError> {
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

    /// Starts writing the full buffer out at `buf_at`, once fewer than
    /// [`TEE_IN_FLIGHT`] blocks are under way.
    pub(crate) async fn write_block(&mut self) -> Result<(), StageError> {
        while self.writing.len() >= TEE_IN_FLIGHT {
            self.wait_one().await?;
        }
        self.file.reserve(TEE_BLOCK as u64)?;
        let spare = self.spares.pop().unwrap_or_default();
        let full = std::mem::replace(&mut self.buf, spare);
        let (at, direct, file) = (self.buf_at, self.direct.clone(), self.file.handle());
        self.writing.push_back(tokio::task::spawn_blocking(move || {
            let res = match &direct {
                Some(d) => d.write_all_at(full.bytes(), at),
                None => file.write_all_at(full.bytes(), at),
            };
            (res, full)
        }));
        self.buf_at += TEE_BLOCK as u64;
        Ok(())
    }

    /// Waits for the oldest block under way.
    pub(crate) async fn wait_one(&mut self) -> Result<(), StageError> {
        let Some(h) = self.writing.pop_front() else {
            return Ok(());
        };
        let (res, mut buf) = h
            .await
            .map_err(|e| StageError::Io(std::io::Error::other(format!("staging I/O task: {e}"))))?;
        buf.clear();
        self.spares.push(buf);
        self.file
            .settle_with(self.writing.len() as u64 * TEE_BLOCK as u64);
        res.map_err(StageError::Io)
    }

    /// Waits until every block under way is written.
    pub(crate) async fn drain(&mut self) -> Result<(), StageError> {
        while !self.writing.is_empty() {
            self.wait_one().await?;
        }
        Ok(())
    }

    /// The copy as a staging file, what was still buffered written out.
    pub(crate) async fn finish(mut self) -> Result<StageFile, StageError> {
        self.drain().await?;
        if !self.buf.is_empty() {
            let tail = Bytes::copy_from_slice(self.buf.bytes());
            self.file.write_at(self.buf_at, tail).await?;
        }
        Ok(self.file)
    }

    /// `len` bytes from `offset` of the copy (cut at its end).
    pub(crate) async fn read_at(&mut self, offset: u64, len: u64) -> std::io::Result<Bytes> {
        let end = offset.saturating_add(len).min(self.len());
        if end <= offset {
            return Ok(Bytes::new());
        }
        if offset < self.buf_at {
            self.drain().await.map_err(|e| match e {
                StageError::Io(e) => e,
                other => std::io::Error::other(other.to_string()),
            })?;
        }
        let mut out = BytesMut::with_capacity((end - offset) as usize);
        if offset < self.buf_at {
            let to = end.min(self.buf_at);
            out.extend_from_slice(&self.file.read_at(offset, to - offset).await?);
        }
        if end > self.buf_at {
            let from = (offset.max(self.buf_at) - self.buf_at) as usize;
            let to = (end - self.buf_at) as usize;
            out.extend_from_slice(&self.buf.bytes()[from..to]);
        }
        Ok(out.freeze())
    }
}
