//! Writes through the mount. A file written front to back streams: bytes go
//! into a background upload as the writer produces them (memory bounded by
//! a short pipe plus the upload's chunks in flight), and the upload commits
//! on `close` or `fsync`, so other readers see the old version or the new
//! one, never a part.
//!
//! Any other writer is staged ([`crate::stage`]): the first write before
//! the end (a muxer patching its header), a truncation to a size other
//! than 0, or an open of an existing file without `O_TRUNC` backs that open
//! file with a local staging file. A streamed file keeps a local copy of
//! what it sent (within `--write-cache-size`) so that it can switch at any
//! point; its upload is then parked, still holding the chunks it stored,
//! so the staged commit finds them already stored and sends only what
//! changed. An existing file is staged chunk by chunk: a chunk is copied
//! locally only when written into, and the commit keeps every other chunk
//! by id, so a 4 KiB edit of a 10 GiB file sends one chunk.
//!
//! Every write lands or fails loudly: a write that cannot be staged (the
//! write cache is full or off) fails with `ENOSPC`, an upload error with
//! `EIO`, and after either the open commits nothing (close and fsync fail
//! with `EIO`; the previous version stays). Writes that arrive slightly out
//! of order (several threads, the kernel's own concurrency) are held until
//! the gap fills; a write past the end leaves a hole of zeros, as POSIX
//! says.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::{StreamExt, TryStreamExt};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::io::StreamReader;

use crate::commit::{commit_pieces, BaseSource};
use crate::stage::{Layout, Piece, Segment, StageError, StageFile, StagingArea, Tee};
use blob_client::{Client, Error, FileInfo, FileLocations, UploadOptions, UploadOutcome};

/// Writes in the pipe to the upload (each up to the kernel's write size).
const PIPE_DEPTH: usize = 16;
/// Out-of-order bytes held before the gap is taken for a hole.
const MAX_PENDING: usize = 32 << 20;
/// Longest a staged commit waits for a parked upload to finish storing the
/// chunks it was given (they are then not sent again).
const PARKED_WAIT: Duration = Duration::from_secs(30);
static ZEROS: [u8; 1 << 20] = [0; 1 << 20];

/// Why a write or commit failed, for the errno.
#[derive(Debug)]
pub(crate) enum WriteError {
    /// Not something this open file can do (`EOPNOTSUPP`).
    Unsupported(String),
    /// The write needs the staging area and it has no room, or is off
    /// (`ENOSPC`).
    NoSpace(String),
    /// The upload or the staging file failed (`EIO`).
    Failed(String),
}

impl WriteError {
    fn message(&self) -> &str {
        match self {
            WriteError::Unsupported(m) | WriteError::NoSpace(m) | WriteError::Failed(m) => m,
        }
    }
}

impl From<StageError> for WriteError {
    fn from(e: StageError) -> Self {
        match e {
            StageError::Full { .. } => WriteError::NoSpace(e.to_string()),
            StageError::Io(_) => WriteError::Failed(e.to_string()),
        }
    }
}

/// How a file was opened for writing.
pub(crate) enum Opened {
    /// Created by this open.
    New,
    /// An existing file, truncated to 0 by the open.
    Truncated,
    /// An existing file kept as it is: this version.
    Existing(Arc<FileLocations>),
}

/// A running upload fed through a pipe.
struct Running {
    tx: mpsc::Sender<std::io::Result<Bytes>>,
    task: JoinHandle<Result<UploadOutcome, Error>>,
    /// Bytes the upload has stored (or found stored) so far.
    done: watch::Receiver<u64>,
}

impl Running {
    /// Ends the upload without a commit: its session is aborted, so the
    /// chunks it holds are released (a commit that took them holds its
    /// own references by then).
    fn stop(self, why: &'static str) {
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            self.task.abort();
            return;
        };
        rt.spawn(async move {
            let _ = self.tx.send(Err(std::io::Error::other(why))).await;
            match self.task.await {
                Ok(Err(e)) => tracing::debug!(error = %e, why, "upload stopped"),
                Ok(Ok(_)) => tracing::warn!(why, "an upload meant to stop committed"),
                Err(_) => {}
            }
        });
    }
}

/// A file streamed front to back.
#[derive(Default)]
struct Stream {
    upload: Option<Running>,
    /// Bytes of the committed version the upload starts with (appending to
    /// an existing file with staging off).
    base: u64,
    /// The file's size as written so far.
    end: u64,
    /// Writes past `end`, by offset, waiting for the gap to fill.
    pending: BTreeMap<u64, Bytes>,
    pending_bytes: usize,
    /// A local copy of `0..end`, so the file can be staged at any point.
    tee: Option<Tee>,
    /// Why there is no local copy (`None`: not made yet).
    no_tee: Option<String>,
}

/// A file backed by a staging file.
struct Staged {
    layout: Layout,
    file: Option<StageFile>,
    base: BaseSource,
    /// The upload the file was streaming into before it was staged: kept
    /// (without a commit) until the staged commit, so the chunks it stored
    /// stay in the bucket and are not sent again.
    parked: Option<(Running, u64)>,
    /// Committed encrypted: this open file takes no more writes (an
    /// encrypted file is rewritten whole, never patched).
    sealed: bool,
}

enum Mode {
    Stream(Stream),
    Staged(Staged),
}

struct State {
    mode: Mode,
    /// Changes not committed yet.
    dirty: bool,
    /// A failure; every later write and commit reports it.
    failed: Option<String>,
}

/// A file open for writing (shared by every handle writing the same open).
pub(crate) struct Writer {
    client: Client,
    bucket: String,
    path: std::sync::Mutex<String>,
    opts: UploadOptions,
    staging: Option<Arc<StagingArea>>,
    state: tokio::sync::Mutex<State>,
    /// Size as written so far (for `stat` while writing).
    size: AtomicU64,
    /// Never committed: the path has no version in the store yet.
    new_file: AtomicBool,
    /// Unlinked while open: nothing is committed.
    discarded: AtomicBool,
}

/// In-place writes (and appends, and truncation to a size other than 0)
/// build the new version from the old one's chunks, which an encrypted
/// file's are not in clear: refused with `EPERM`. Rewriting such a file
/// whole (`O_TRUNC`) works, and reading it is transparent.
pub(crate) fn refuse_sealed_base(path: &str, locs: &FileLocations) -> Result<(), fuser::Errno> {
    if blob_common::seal::is_sealed(&locs.file.meta) {
        tracing::warn!(%path, "in-place writes to an encrypted file are not supported; rewrite it whole: EPERM");
        return Err(fuser::Errno::EPERM);
    }
    Ok(())
}

impl Writer {
    /// A writer for `path`, opened as `opened`; with `staging`, any writer
    /// is taken (else only front-to-back writes and appends). A new or
    /// truncated file is committed on close even if nothing is written.
    pub(crate) fn new(
        client: Client,
        bucket: String,
        path: String,
        opts: UploadOptions,
        staging: Option<Arc<StagingArea>>,
        opened: Opened,
    ) -> Self {
        let (mode, size, new_file, dirty) = match opened {
            Opened::New => (Mode::Stream(Stream::default()), 0, true, true),
            Opened::Truncated => (Mode::Stream(Stream::default()), 0, false, true),
            Opened::Existing(locs) => {
                let size = locs.file.size;
                let mode = if staging.is_some() {
                    Mode::Staged(Staged {
                        layout: Layout::stored(locs.chunks.iter().map(|c| (c.id, c.size))),
                        file: None,
                        base: BaseSource::new(Some(locs)),
                        parked: None,
                        sealed: false,
                    })
                } else {
                    Mode::Stream(Stream {
                        base: size,
                        end: size,
                        ..Stream::default()
                    })
                };
                (mode, size, false, false)
            }
        };
        Self {
            client,
            bucket,
            path: std::sync::Mutex::new(path),
            opts,
            staging,
            state: tokio::sync::Mutex::new(State {
                mode,
                dirty,
                failed: None,
            }),
            size: AtomicU64::new(size),
            new_file: AtomicBool::new(new_file),
            discarded: AtomicBool::new(false),
        }
    }

    pub(crate) fn path(&self) -> String {
        self.path.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The file was renamed while open: commits go to the new path.
    pub(crate) fn set_path(&self, path: String) {
        *self.path.lock().unwrap_or_else(|p| p.into_inner()) = path;
    }

    pub(crate) fn size(&self) -> u64 {
        self.size.load(Ordering::Relaxed)
    }

    pub(crate) fn is_new(&self) -> bool {
        self.new_file.load(Ordering::Relaxed)
    }

    fn chunk_size(&self) -> u64 {
        self.opts.chunk_size.max(1)
    }

    /// Whether [`Writer::read`] can serve what was written so far.
    pub(crate) async fn readable(&self) -> bool {
        match &self.state.lock().await.mode {
            Mode::Stream(s) => s.tee.is_some() || (s.end == 0 && s.base == 0),
            // Committed encrypted: readers read the committed version.
            Mode::Staged(g) => !g.sealed,
        }
    }

    /// The file was unlinked: drop what was written, commit nothing.
    pub(crate) async fn discard(&self) {
        self.discarded.store(true, Ordering::Relaxed);
        let mut st = self.state.lock().await;
        stop_uploads(&mut st.mode, "the file was unlinked");
        st.mode = Mode::Stream(Stream::default());
        st.dirty = false;
    }

    /// Writes `data` at `offset`.
    pub(crate) async fn write(&self, offset: u64, data: Bytes) -> Result<(), WriteError> {
        let mut st = self.state.lock().await;
        if let Some(e) = &st.failed {
            return Err(WriteError::Failed(e.clone()));
        }
        if data.is_empty() {
            return Ok(());
        }
        let res = self.write_at(&mut st, offset, data).await;
        if let Err(e) = &res {
            self.fail(&mut st, e.message().to_string());
        }
        res
    }

    async fn write_at(&self, st: &mut State, offset: u64, data: Bytes) -> Result<(), WriteError> {
        st.dirty = true;
        let Mode::Stream(s) = &mut st.mode else {
            return self.staged_write(st, offset, data).await;
        };
        if offset < s.end {
            tracing::info!(path = %self.path(), offset, end = s.end, "a write before the end: the file is staged from here on");
            self.to_staged(st).await?;
            return self.staged_write(st, offset, data).await;
        }
        if offset > s.end {
            s.pending_bytes += data.len();
            if let Some(old) = s.pending.insert(offset, data) {
                s.pending_bytes -= old.len();
            }
            if s.pending_bytes > MAX_PENDING {
                // Too much is held out of order: the gaps are holes.
                return self.drain_pending(st, true).await;
            }
            return Ok(());
        }
        self.push(s, data).await?;
        self.drain_pending(st, false).await
    }

    /// Truncates (or extends) the file to `len` bytes.
    pub(crate) async fn truncate(&self, len: u64) -> Result<(), WriteError> {
        let mut st = self.state.lock().await;
        if let Some(e) = &st.failed {
            return Err(WriteError::Failed(e.clone()));
        }
        let res = self.truncate_to(&mut st, len).await;
        if let Err(e) = &res {
            self.fail(&mut st, e.message().to_string());
        }
        res
    }

    async fn truncate_to(&self, st: &mut State, len: u64) -> Result<(), WriteError> {
        if let Mode::Stream(s) = &mut st.mode {
            if len == 0 {
                // Whatever was sent is dropped: a new, empty version.
                stop_uploads(&mut st.mode, "the file was truncated");
                st.mode = Mode::Stream(Stream::default());
                st.dirty = true;
                self.size.store(0, Ordering::Relaxed);
                return Ok(());
            }
            if len == s.end && s.pending.is_empty() {
                return Ok(());
            }
            tracing::info!(path = %self.path(), len, end = s.end, "a truncation: the file is staged from here on");
            self.to_staged(st).await?;
        }
        let chunk_size = self.chunk_size();
        let path = self.path();
        let Mode::Staged(g) = &mut st.mode else {
            return Err(WriteError::Failed("not staged".into()));
        };
        if let Some(i) = g.layout.cut_by(len) {
            self.copy_local(g, &path, i, true).await?;
        }
        if len > g.layout.size() {
            let size = g.layout.size();
            for (i, fetch) in g.layout.to_copy(size, len, chunk_size) {
                self.copy_local(g, &path, i, fetch).await?;
            }
        }
        g.layout.truncate(len);
        self.stage_file(g)?.set_len(len).await?;
        st.dirty = true;
        self.size.store(len, Ordering::Relaxed);
        Ok(())
    }

    /// Up to `len` bytes from `offset`, as written so far.
    pub(crate) async fn read(&self, offset: u64, len: u64) -> Result<Bytes, WriteError> {
        let mut st = self.state.lock().await;
        let path = self.path();
        match &mut st.mode {
            Mode::Stream(s) => {
                let end = offset.saturating_add(len).min(s.end);
                if end <= offset {
                    return Ok(Bytes::new());
                }
                match &mut s.tee {
                    Some(t) => t
                        .read_at(offset, end - offset)
                        .await
                        .map_err(|e| WriteError::Failed(format!("staging file: {e}"))),
                    None => Err(WriteError::Unsupported(format!(
                        "reading {path} while it is written without a local copy ({})",
                        s.no_tee.as_deref().unwrap_or("none was made")
                    ))),
                }
            }
            Mode::Staged(g) if g.sealed => Err(WriteError::Unsupported(format!(
                "{path} was committed encrypted: reopen it to read it"
            ))),
            Mode::Staged(g) => {
                let mut out = BytesMut::new();
                for seg in g.layout.segments(offset, len) {
                    let part = match seg {
                        Segment::Stored { index, range } => {
                            let c = g.layout.base[index];
                            g.base
                                .read(&self.client, &self.bucket, &path, &c, range)
                                .await
                                .map_err(|e| WriteError::Failed(format!("{e:#}")))?
                        }
                        Segment::Local { offset, len } => match &g.file {
                            Some(f) => f
                                .read_at(offset, len)
                                .await
                                .map_err(|e| WriteError::Failed(format!("staging file: {e}")))?,
                            None => Bytes::from(vec![0u8; len as usize]),
                        },
                    };
                    out.extend_from_slice(&part);
                }
                Ok(out.freeze())
            }
        }
    }

    /// Commits what was written (close, fsync): the file then holds exactly
    /// the bytes written. A no-op when nothing changed since the last commit.
    pub(crate) async fn commit(&self) -> Result<Option<FileInfo>, WriteError> {
        let mut st = self.state.lock().await;
        if let Some(e) = &st.failed {
            return Err(WriteError::Failed(e.clone()));
        }
        if self.discarded.load(Ordering::Relaxed) || !st.dirty {
            return Ok(None);
        }
        let res = match self.drain_pending(&mut st, true).await {
            Err(e) => Err(e.message().to_string()),
            Ok(()) => match st.mode {
                Mode::Stream(_) => self.commit_stream(&mut st).await,
                Mode::Staged(_) => self.commit_staged(&mut st).await,
            },
        };
        match res {
            Ok(file) => {
                tracing::debug!(bucket = %self.bucket, path = %self.path(), size = file.size, "committed");
                st.dirty = false;
                self.new_file.store(false, Ordering::Relaxed);
                Ok(Some(file))
            }
            Err(e) => Err(self.fail(&mut st, e)),
        }
    }

    async fn commit_stream(&self, st: &mut State) -> Result<FileInfo, String> {
        let Mode::Stream(s) = &mut st.mode else {
            return Err("not streaming".into());
        };
        if s.upload.is_none() {
            self.start(s).await.map_err(|e| e.message().to_string())?;
        }
        let Some(Running { tx, task, .. }) = s.upload.take() else {
            return Err("upload did not start".into());
        };
        drop(tx);
        let outcome = match task.await {
            Ok(Ok(o)) => o,
            Ok(Err(e)) => return Err(format!("{e:#}")),
            Err(e) => return Err(format!("upload task: {e}")),
        };
        if outcome.file.size != s.end {
            return Err(format!(
                "committed {} bytes, {} were written",
                outcome.file.size, s.end
            ));
        }
        // Writing on stages on top of this version.
        st.mode = if self.staging.is_some() {
            Mode::Staged(Staged {
                layout: Layout::stored(outcome.file.chunks.iter().map(|c| (c.id, c.size))),
                file: None,
                base: BaseSource::new(None),
                parked: None,
                sealed: self.opts.encrypt.is_some(),
            })
        } else {
            Mode::Stream(Stream {
                base: s.end,
                end: s.end,
                no_tee: Some("the write cache is off (--write-cache-size 0)".into()),
                ..Stream::default()
            })
        };
        Ok(outcome.file)
    }

    async fn commit_staged(&self, st: &mut State) -> Result<FileInfo, String> {
        let path = self.path();
        let Mode::Staged(g) = &mut st.mode else {
            return Err("not staged".into());
        };
        if let Some((parked, fed)) = &g.parked {
            // The chunks it was given whole: found already stored once it
            // has stored them.
            let want = fed / self.chunk_size() * self.chunk_size();
            let mut done = parked.done.clone();
            let _ = tokio::time::timeout(PARKED_WAIT, done.wait_for(|&n| n >= want)).await;
        }
        let started = std::time::Instant::now();
        // A file rewritten whole is encrypted when the mount encrypts what
        // it writes (its chunks then hold less plaintext); one patched in
        // place keeps the clear chunks it did not change, and stays clear.
        let pieces = g.layout.pieces(self.chunk_size());
        let whole = !pieces.iter().any(|p| matches!(p, Piece::Stored { .. }));
        let sealing = match (&self.opts.encrypt, whole) {
            (Some(how), true) => Some(
                self.client
                    .sealing_for(how)
                    .await
                    .map_err(|e| format!("{e:#}"))?,
            ),
            _ => None,
        };
        // Sealed chunks hold less plaintext: cut again at their capacity.
        let pieces = match sealing {
            Some(_) => g
                .layout
                .pieces(blob_common::seal::plain_capacity(self.chunk_size())),
            None => pieces,
        };
        let local = g.layout.local_bytes();
        let res = commit_pieces(
            &self.client,
            &self.bucket,
            &path,
            &self.opts,
            sealing.as_ref(),
            &pieces,
            g.file.as_ref().map(StageFile::handle),
            &mut g.base,
            &g.layout.base,
        )
        .await;
        if let Some((parked, _)) = g.parked.take() {
            parked.stop("superseded by the staged commit");
        }
        let done = res.map_err(|e| format!("{e:#}"))?;
        g.sealed = sealing.is_some();
        if done.file.size != g.layout.size() {
            return Err(format!(
                "committed {} bytes, the file has {}",
                done.file.size,
                g.layout.size()
            ));
        }
        tracing::info!(
            path = %path,
            size = done.file.size,
            local_bytes = local,
            chunks_sent = done.chunks_sent,
            bytes_sent = done.bytes_sent,
            ms = started.elapsed().as_millis() as u64,
            "staged commit"
        );
        // The committed version is the base of what comes next.
        g.layout = Layout::stored(done.file.chunks.iter().map(|c| (c.id, c.size)));
        g.file = None;
        g.base = BaseSource::new(None);
        Ok(done.file)
    }

    fn fail(&self, st: &mut State, msg: String) -> WriteError {
        tracing::warn!(bucket = %self.bucket, path = %self.path(), error = %msg, "write failed; this open commits nothing");
        st.failed = Some(msg.clone());
        stop_uploads(&mut st.mode, "the write failed");
        st.mode = Mode::Stream(Stream::default());
        WriteError::Failed(msg)
    }

    /// The staging file of a staged file, created when first needed.
    fn stage_file<'a>(&self, g: &'a mut Staged) -> Result<&'a mut StageFile, WriteError> {
        if g.file.is_none() {
            let Some(area) = &self.staging else {
                return Err(WriteError::NoSpace(
                    "the write cache is off (--write-cache-size 0)".into(),
                ));
            };
            let f = area
                .create()
                .map_err(|e| WriteError::Failed(format!("creating a staging file: {e}")))?;
            g.file = Some(f);
        }
        g.file
            .as_mut()
            .ok_or_else(|| WriteError::Failed("no staging file".into()))
    }

    /// Base chunk `index` goes into the staging file (its stored bytes
    /// fetched first when `fetch`).
    async fn copy_local(
        &self,
        g: &mut Staged,
        path: &str,
        index: usize,
        fetch: bool,
    ) -> Result<(), WriteError> {
        let c = g.layout.base[index];
        if fetch {
            let bytes = g
                .base
                .read(&self.client, &self.bucket, path, &c, 0..c.size)
                .await
                .map_err(|e| {
                    WriteError::Failed(format!("reading chunk {}: {e:#}", c.id.short()))
                })?;
            self.stage_file(g)?.write_at(c.offset, bytes).await?;
        }
        g.layout.mark_local(index);
        Ok(())
    }

    async fn staged_write(
        &self,
        st: &mut State,
        offset: u64,
        data: Bytes,
    ) -> Result<(), WriteError> {
        let chunk_size = self.chunk_size();
        let path = self.path();
        let Mode::Staged(g) = &mut st.mode else {
            return Err(WriteError::Failed("not staged".into()));
        };
        if g.sealed {
            return Err(WriteError::Unsupported(
                "the file was committed encrypted; reopen it with O_TRUNC to rewrite it".into(),
            ));
        }
        let end = offset + data.len() as u64;
        for (i, fetch) in g.layout.to_copy(offset, end, chunk_size) {
            self.copy_local(g, &path, i, fetch).await?;
        }
        self.stage_file(g)?.write_at(offset, data).await?;
        g.layout.extend(end);
        self.size.store(g.layout.size(), Ordering::Relaxed);
        Ok(())
    }

    /// Switches a streamed file to staging, on its local copy; the upload
    /// is parked.
    async fn to_staged(&self, st: &mut State) -> Result<(), WriteError> {
        let Mode::Stream(s) = &mut st.mode else {
            return Ok(());
        };
        let tee = match s.tee.take() {
            Some(t) => Some(t.finish().await?),
            // Nothing sent yet: a fresh staging file will do.
            None if s.end == 0 && s.base == 0 => {
                self.staging.as_ref().and_then(|a| a.create().ok())
            }
            None => None,
        };
        let Some(tee) = tee else {
            let why = s
                .no_tee
                .clone()
                .unwrap_or_else(|| "the write cache is off (--write-cache-size 0)".to_string());
            return Err(WriteError::NoSpace(format!(
                "a write before the end needs a local copy of the file, and there is none: {why}"
            )));
        };
        let parked = s.upload.take().map(|r| (r, s.end));
        let pending = std::mem::take(&mut s.pending);
        let end = s.end;
        st.mode = Mode::Staged(Staged {
            layout: Layout::local(end),
            file: Some(tee),
            base: BaseSource::new(None),
            parked,
            sealed: false,
        });
        for (offset, data) in pending {
            self.staged_write(st, offset, data).await?;
        }
        Ok(())
    }

    /// Starts the upload of a new version, fed first with the committed
    /// version's first `base` bytes when appending.
    async fn start(&self, s: &mut Stream) -> Result<(), WriteError> {
        let (tx, rx) = mpsc::channel::<std::io::Result<Bytes>>(PIPE_DEPTH);
        let pipe = StreamReader::new(
            futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|b| (b, rx)) })
                .boxed(),
        );
        let path = self.path();
        let reader: Pin<Box<dyn AsyncRead + Send>> = if s.base > 0 {
            let prefix = self
                .committed_prefix(&path, s.base)
                .await
                .map_err(WriteError::Failed)?;
            Box::pin(prefix.chain(pipe))
        } else {
            Box::pin(pipe)
        };
        let (done_tx, done) = watch::channel(0u64);
        let opts = UploadOptions {
            progress: Some(Arc::new(move |n| {
                done_tx.send_replace(n);
            })),
            ..self.opts.clone()
        };
        let (client, bucket) = (self.client.clone(), self.bucket.clone());
        let task = tokio::spawn(async move { client.upload(reader, &bucket, &path, &opts).await });
        s.upload = Some(Running { tx, task, done });
        if s.tee.is_none() && s.no_tee.is_none() {
            match &self.staging {
                None => s.no_tee = Some("the write cache is off (--write-cache-size 0)".into()),
                Some(_) if s.base > 0 => {
                    s.no_tee = Some("an append to a committed version is not copied".into())
                }
                Some(area) => match area.create() {
                    Ok(f) => s.tee = Some(Tee::new(f)),
                    Err(e) => s.no_tee = Some(format!("creating a staging file: {e}")),
                },
            }
        }
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

    /// Sends `data` (which starts at `end`) into the upload, and into the
    /// local copy.
    async fn push(&self, s: &mut Stream, data: Bytes) -> Result<(), WriteError> {
        if s.upload.is_none() {
            self.start(s).await?;
        }
        let len = data.len() as u64;
        let at = s.end;
        let send = async {
            match &s.upload {
                Some(r) => r.tx.send(Ok(data.clone())).await.is_ok(),
                None => false,
            }
        };
        let copy = async {
            match s.tee.as_mut() {
                Some(t) => t.append(&data).await,
                None => Ok(()),
            }
        };
        let (sent, copied) = tokio::join!(send, copy);
        if let Err(e) = copied {
            // Streaming goes on; only a later write before the end fails.
            tracing::info!(path = %self.path(), size = at + len, reason = %e, "no local copy of this file any more: a write before its end will fail");
            s.tee = None;
            s.no_tee = Some(e.to_string());
        }
        if !sent {
            // The upload ended early: it failed; collect why.
            let why = match s.upload.take() {
                Some(r) => match r.task.await {
                    Ok(Err(e)) => format!("{e:#}"),
                    Ok(Ok(_)) => "upload ended before the input did".to_string(),
                    Err(e) => format!("upload task: {e}"),
                },
                None => "upload did not start".to_string(),
            };
            return Err(WriteError::Failed(why));
        }
        s.end += len;
        self.size.store(s.end, Ordering::Relaxed);
        Ok(())
    }

    /// Sends held writes that now continue the file; with `holes`, first
    /// fills the gaps before them with zeros. A held write overlapping what
    /// was sent stages the file.
    async fn drain_pending(&self, st: &mut State, holes: bool) -> Result<(), WriteError> {
        loop {
            let Mode::Stream(s) = &mut st.mode else {
                return Ok(());
            };
            let Some((&offset, _)) = s.pending.first_key_value() else {
                return Ok(());
            };
            if offset > s.end {
                if !holes {
                    return Ok(());
                }
                self.zeros(s, offset - s.end).await?;
            }
            if offset < s.end {
                tracing::info!(path = %self.path(), offset, end = s.end, "overlapping writes: the file is staged from here on");
                return self.to_staged(st).await;
            }
            let Some((_, data)) = s.pending.pop_first() else {
                return Ok(());
            };
            s.pending_bytes -= data.len();
            self.push(s, data).await?;
        }
    }

    async fn zeros(&self, s: &mut Stream, mut n: u64) -> Result<(), WriteError> {
        while n > 0 {
            let k = n.min(ZEROS.len() as u64) as usize;
            self.push(s, Bytes::from_static(&ZEROS[..k])).await?;
            n -= k as u64;
        }
        Ok(())
    }
}

/// Stops the uploads of `mode` without a commit.
fn stop_uploads(mode: &mut Mode, why: &'static str) {
    match mode {
        Mode::Stream(s) => {
            if let Some(r) = s.upload.take() {
                r.stop(why);
            }
        }
        Mode::Staged(g) => {
            if let Some((r, _)) = g.parked.take() {
                r.stop(why);
            }
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        if let Ok(mut st) = self.state.try_lock() {
            stop_uploads(&mut st.mode, "the file was closed without a commit");
        }
    }
}
