//! Writes through the mount: bytes stream into a background upload as the
//! writer produces them (memory bounded by a short pipe plus the upload's
//! chunks in flight), and the upload commits on `close` or `fsync`, so other
//! readers see the old version or the new one, never a part.
//!
//! Files are written front to back. Writes that arrive slightly out of
//! order (several threads, or the kernel's own concurrency) are held until
//! the gap fills; a write past the end leaves a hole of zeros, as POSIX
//! says; a write into bytes already sent is refused with `EOPNOTSUPP`, and
//! then nothing of that open is committed (close fails with `EIO`).
//! Writing on after a commit (a second `fsync`, or an existing file opened
//! without `O_TRUNC`) starts a new version that begins with the committed
//! bytes: its full chunks are already stored, so only the tail moves again.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::io::StreamReader;

use crate::{Client, Error, FileInfo, UploadOptions, UploadOutcome};

/// Writes in the pipe to the upload (each up to the kernel's write size).
const PIPE_DEPTH: usize = 16;
/// Out-of-order bytes held before the gap is taken for a hole.
const MAX_PENDING: usize = 32 << 20;
static ZEROS: [u8; 1 << 20] = [0; 1 << 20];

/// Why a write or commit failed, for the errno.
#[derive(Debug)]
pub(super) enum WriteError {
    /// Not something this mount does (`EOPNOTSUPP`); the reason is logged.
    Unsupported(String),
    /// The upload failed (`EIO`); the cause is logged.
    Failed(String),
}

struct Running {
    tx: mpsc::Sender<Bytes>,
    task: JoinHandle<Result<UploadOutcome, Error>>,
}

#[derive(Default)]
struct State {
    upload: Option<Running>,
    /// Bytes of the committed version the next upload starts with.
    base: u64,
    /// The file's size as written so far.
    end: u64,
    /// Writes past `end`, by offset, waiting for the gap to fill.
    pending: BTreeMap<u64, Bytes>,
    pending_bytes: usize,
    /// Changes not committed yet.
    dirty: bool,
    /// A failure; every later write and commit reports it.
    failed: Option<String>,
}

/// A file open for writing (shared by every handle writing the same open).
pub(super) struct Writer {
    client: Client,
    bucket: String,
    path: std::sync::Mutex<String>,
    opts: UploadOptions,
    state: tokio::sync::Mutex<State>,
    /// Size as written so far (for `stat` while writing).
    size: AtomicU64,
    /// Never committed: the path has no version in the store yet.
    new_file: AtomicBool,
    /// Unlinked while open: nothing is committed.
    discarded: AtomicBool,
}

impl Writer {
    /// A writer for `path`. `existing` is the size of the committed version
    /// kept as the start of the file (0 for a new or truncated file); a new
    /// or truncated file is committed on close even if nothing is written.
    pub(super) fn new(
        client: Client,
        bucket: String,
        path: String,
        opts: UploadOptions,
        existing: Option<u64>,
        truncate: bool,
    ) -> Self {
        let base = if truncate { 0 } else { existing.unwrap_or(0) };
        Self {
            client,
            bucket,
            path: std::sync::Mutex::new(path),
            opts,
            state: tokio::sync::Mutex::new(State {
                base,
                end: base,
                dirty: truncate || existing.is_none(),
                ..State::default()
            }),
            size: AtomicU64::new(base),
            new_file: AtomicBool::new(existing.is_none()),
            discarded: AtomicBool::new(false),
        }
    }

    pub(super) fn path(&self) -> String {
        self.path.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The file was renamed while open: commits go to the new path.
    pub(super) fn set_path(&self, path: String) {
        *self.path.lock().unwrap_or_else(|p| p.into_inner()) = path;
    }

    pub(super) fn size(&self) -> u64 {
        self.size.load(Ordering::Relaxed)
    }

    pub(super) fn is_new(&self) -> bool {
        self.new_file.load(Ordering::Relaxed)
    }

    /// The file was unlinked: drop what was written, commit nothing.
    pub(super) async fn discard(&self) {
        self.discarded.store(true, Ordering::Relaxed);
        let mut st = self.state.lock().await;
        if let Some(r) = st.upload.take() {
            r.task.abort();
        }
        st.dirty = false;
        st.pending.clear();
    }

    /// Writes `data` at `offset`.
    pub(super) async fn write(&self, offset: u64, data: Bytes) -> Result<(), WriteError> {
        let mut st = self.state.lock().await;
        if let Some(e) = &st.failed {
            return Err(WriteError::Failed(e.clone()));
        }
        if data.is_empty() {
            return Ok(());
        }
        if offset < st.end {
            // Refused, and the file is not committed either: without this
            // write its content is not what the writer meant (an MP4 whose
            // header was never patched, say). Close then fails with EIO and
            // the previous version, if any, stays.
            let why = format!(
                "write of {} bytes at offset {offset}, before the end ({} bytes): files are written front to back",
                data.len(),
                st.end
            );
            st.failed = Some(format!("an earlier write was refused: {why}"));
            if let Some(r) = st.upload.take() {
                r.task.abort();
            }
            return Err(WriteError::Unsupported(why));
        }
        if offset > st.end {
            st.pending_bytes += data.len();
            if let Some(old) = st.pending.insert(offset, data) {
                st.pending_bytes -= old.len();
            }
            if st.pending_bytes > MAX_PENDING {
                // Too much is held out of order: the gaps are holes.
                self.drain_pending(&mut st, true).await?;
            }
            return Ok(());
        }
        self.push(&mut st, data).await?;
        self.drain_pending(&mut st, false).await
    }

    /// Commits what was written (close, fsync): the file then holds exactly
    /// the bytes written. A no-op when nothing changed since the last commit.
    pub(super) async fn commit(&self) -> Result<Option<FileInfo>, WriteError> {
        let mut st = self.state.lock().await;
        if let Some(e) = &st.failed {
            return Err(WriteError::Failed(e.clone()));
        }
        if self.discarded.load(Ordering::Relaxed) || !st.dirty {
            return Ok(None);
        }
        self.drain_pending(&mut st, true).await?;
        if st.upload.is_none() {
            self.start(&mut st).await?;
        }
        let Some(Running { tx, task }) = st.upload.take() else {
            return Err(WriteError::Failed("upload did not start".into()));
        };
        drop(tx);
        let path = self.path();
        let outcome = match task.await {
            Ok(Ok(o)) => o,
            Ok(Err(e)) => return Err(self.fail(&mut st, format!("{e:#}"))),
            Err(e) => return Err(self.fail(&mut st, format!("upload task: {e}"))),
        };
        if outcome.file.size != st.end {
            let msg = format!(
                "committed {} bytes, {} were written",
                outcome.file.size, st.end
            );
            return Err(self.fail(&mut st, msg));
        }
        tracing::debug!(bucket = %self.bucket, %path, size = st.end, "committed");
        st.dirty = false;
        st.base = st.end;
        self.new_file.store(false, Ordering::Relaxed);
        Ok(Some(outcome.file))
    }

    /// Truncates to zero: what was written is dropped and the file is
    /// committed empty unless written again first.
    pub(super) async fn truncate(&self) {
        let mut st = self.state.lock().await;
        if let Some(r) = st.upload.take() {
            r.task.abort();
        }
        *st = State {
            dirty: true,
            ..State::default()
        };
        self.size.store(0, Ordering::Relaxed);
    }

    fn fail(&self, st: &mut State, msg: String) -> WriteError {
        tracing::warn!(bucket = %self.bucket, path = %self.path(), error = %msg, "write failed");
        st.failed = Some(msg.clone());
        if let Some(r) = st.upload.take() {
            r.task.abort();
        }
        WriteError::Failed(msg)
    }

    /// Starts the upload of a new version, fed first with the committed
    /// version's first `base` bytes when appending.
    async fn start(&self, st: &mut State) -> Result<(), WriteError> {
        let (tx, rx) = mpsc::channel::<Bytes>(PIPE_DEPTH);
        let pipe = StreamReader::new(
            futures::stream::unfold(rx, |mut rx| async move {
                rx.recv().await.map(|b| (Ok::<_, std::io::Error>(b), rx))
            })
            .boxed(),
        );
        let path = self.path();
        let reader: Pin<Box<dyn AsyncRead + Send>> = if st.base > 0 {
            let prefix = self.committed_prefix(&path, st.base).await;
            let prefix = match prefix {
                Ok(p) => p,
                Err(e) => return Err(self.fail(st, e)),
            };
            Box::pin(prefix.chain(pipe))
        } else {
            Box::pin(pipe)
        };
        let (client, bucket, opts) = (self.client.clone(), self.bucket.clone(), self.opts.clone());
        let task = tokio::spawn(async move { client.upload(reader, &bucket, &path, &opts).await });
        st.upload = Some(Running { tx, task });
        Ok(())
    }

    /// The first `base` bytes of the committed version, as a reader.
    async fn committed_prefix(
        &self,
        path: &str,
        base: u64,
    ) -> Result<impl AsyncRead + Send + 'static, String> {
        let locs = self
            .client
            .locations(&self.bucket, path)
            .await
            .map_err(|e| format!("reading the committed version to append to: {e:#}"))?;
        if locs.file.size != base {
            return Err(format!(
                "the file changed to {} bytes (was {base}) before it was appended to",
                locs.file.size
            ));
        }
        let locs = Arc::new(locs);
        let client = self.client.clone();
        let spans: Vec<(u64, u64)> = locs.chunks.iter().map(|c| (c.offset, c.size)).collect();
        let stream = futures::stream::iter(spans)
            .map(move |(offset, size)| {
                let (client, locs) = (client.clone(), locs.clone());
                async move { client.read_range_at(locs, offset, size).await }
            })
            .buffered(2)
            .map_err(std::io::Error::other)
            .boxed();
        Ok(StreamReader::new(stream))
    }

    /// Sends `data` (which starts at `end`) into the upload.
    async fn push(&self, st: &mut State, data: Bytes) -> Result<(), WriteError> {
        if st.upload.is_none() {
            self.start(st).await?;
        }
        let len = data.len() as u64;
        let sent = match &st.upload {
            Some(r) => r.tx.send(data).await.is_ok(),
            None => false,
        };
        if !sent {
            // The upload ended early: it failed; collect why.
            let why = match st.upload.take() {
                Some(r) => match r.task.await {
                    Ok(Err(e)) => format!("{e:#}"),
                    Ok(Ok(_)) => "upload ended before the input did".to_string(),
                    Err(e) => format!("upload task: {e}"),
                },
                None => "upload did not start".to_string(),
            };
            return Err(self.fail(st, why));
        }
        st.end += len;
        st.dirty = true;
        self.size.store(st.end, Ordering::Relaxed);
        Ok(())
    }

    /// Sends held writes that now continue the file; with `holes`, first
    /// fills the gaps before them with zeros.
    async fn drain_pending(&self, st: &mut State, holes: bool) -> Result<(), WriteError> {
        loop {
            let Some((&offset, _)) = st.pending.first_key_value() else {
                return Ok(());
            };
            if offset > st.end {
                if !holes {
                    return Ok(());
                }
                self.zeros(st, offset - st.end).await?;
            }
            let Some((offset, data)) = st.pending.pop_first() else {
                return Ok(());
            };
            st.pending_bytes -= data.len();
            let skip = (st.end - offset) as usize;
            if skip >= data.len() {
                continue;
            }
            if skip > 0 {
                return Err(WriteError::Unsupported(format!(
                    "overlapping writes at offset {offset}"
                )));
            }
            self.push(st, data).await?;
        }
    }

    async fn zeros(&self, st: &mut State, mut n: u64) -> Result<(), WriteError> {
        while n > 0 {
            let k = n.min(ZEROS.len() as u64) as usize;
            self.push(st, Bytes::from_static(&ZEROS[..k])).await?;
            n -= k as u64;
        }
        Ok(())
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        if let Ok(mut st) = self.state.try_lock() {
            if let Some(r) = st.upload.take() {
                r.task.abort();
            }
        }
    }
}
