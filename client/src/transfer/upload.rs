//! Upload: read → hash → plan → PUT → report receipts → commit, overlapped.
//!
//! Three stages run at once inside the caller's future:
//! - the reader takes a permit of the `parallel`-permit semaphore, reads a
//!   chunk, and hashes it on the blocking pool;
//! - the coordinator sends batches of whatever chunks are ready to the
//!   namenode and spawns one PUT task per chunk to send, releasing the
//!   permit of a chunk already stored at once;
//! - PUT tasks (with their permit and buffer) retarget and retry when a
//!   pipeline comes back short, and drop the buffer when done.
//!
//! A background reporter sends receipts to the namenode shortly after they
//! arrive, coalescing those gathered meanwhile; batches carry pending
//! receipts too, and the commit whatever is left. That is what lets a re-run of a failed upload skip
//! every chunk already stored. The session is never aborted here, unless
//! the caller asks for it (`abort_on_error`) or its commit check refuses.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use blob_common::names::{validate_bucket, validate_path};
use blob_common::presign::Receipt;
use blob_common::proto::namenode::{
    ChunkBatch, ChunkRef, CommitUpload, CreateUpload, FileInfo, ManifestPage, PutTarget, Retarget,
    UploadPlan, MAX_PAGE,
};
use blob_common::{ChunkId, NodeId, UploadId};
use bytes::Bytes;
use futures::StreamExt;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::{mpsc, Notify, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::{backoff, with_retries, AbortOnDrop, ProgressCounter, MAX_ATTEMPTS};
use crate::{Client, Error, UploadOptions, UploadOutcome};

/// How long the receipt reporter gathers receipts before it reports them.
const REPORT_GATHER: Duration = Duration::from_millis(100);

/// Most chunk ids sent to the namenode in one batch.
const MAX_BATCH: usize = 256;
/// Chunks hashed at once (the machine's cores do the rest of the work).
const MAX_HASHING: usize = 4;
/// Time allowed to hand over receipts after a failed upload.
const FINAL_REPORT_TIMEOUT: Duration = Duration::from_secs(5);

/// A chunk read and hashed, holding one permit until it is stored or found
/// already stored.
pub(crate) struct ReadyChunk {
    pub(crate) chunk: ChunkRef,
    pub(crate) bytes: Bytes,
    pub(crate) permit: OwnedSemaphorePermit,
}

/// What the reader hands the coordinator.
pub(crate) enum Msg {
    Chunk(ReadyChunk),
    /// The input ended and every chunk was sent before this.
    Eof,
}

pub(crate) async fn upload<R>(
    client: &Client,
    reader: R,
    bucket: &str,
    path: &str,
    opts: &UploadOptions,
) -> Result<UploadOutcome, Error>
where
    R: AsyncRead + Unpin + Send,
{
    validate_bucket(bucket)?;
    validate_path(path)?;
    opts.validate()?;
    let client = client.scoped();
    let span = tracing::info_span!("upload", bucket, path, request_id = %client.request_id());
    run(client, reader, bucket, path, opts)
        .instrument(span)
        .await
}

async fn run<R>(
    client: Client,
    reader: R,
    bucket: &str,
    path: &str,
    opts: &UploadOptions,
) -> Result<UploadOutcome, Error>
where
    R: AsyncRead + Unpin + Send,
{
    let started = Instant::now();
    let chunk_size = usize::try_from(opts.chunk_size)
        .map_err(|_| Error::Config("chunk size does not fit in memory".into()))?;
    let permits = Arc::new(Semaphore::new(opts.parallel));
    let (tx, rx) = mpsc::channel(opts.parallel);
    let mut coord = Coordinator {
        client: client.clone(),
        bucket: bucket.to_string(),
        path: path.to_string(),
        chunk_size: opts.chunk_size,
        replication_asked: opts.replication,
        session: None,
        receipts: Arc::new(ReceiptBox::default()),
        reporter: None,
        progress: Arc::new(ProgressCounter::new(opts.progress.clone())),
        seen: HashSet::new(),
        puts: JoinSet::new(),
        sent: 0,
        skipped: 0,
        bytes_sent: 0,
    };
    let whole = opts.input_sha256.map(ChunkId);
    let reading = read_chunks(reader, chunk_size, whole, permits, tx);
    let result = tokio::try_join!(reading, coord.run(rx));
    let chunks = match result {
        Ok((chunks, ())) => chunks,
        Err(e) => {
            if opts.abort_on_error {
                coord.abort().await;
            } else {
                coord.hand_over_receipts().await;
            }
            return Err(e);
        }
    };
    let Some(session) = coord.session.clone() else {
        return Err(Error::Task("upload ended without a session".into()));
    };
    if let Some(reporter) = coord.reporter.take() {
        reporter.finish().await;
    }
    let chunk_count = chunks.len() as u64;
    let mut meta = opts.meta.clone();
    if let Some(check) = &opts.before_commit {
        match check(&chunks) {
            Ok(extra) => meta.extend(extra),
            Err(why) => {
                coord.abort().await;
                return Err(Error::Refused(why));
            }
        }
    }
    let mut receipts = coord.receipts.take();
    let staged = match stage_long_lists(&client, &session.id, &chunks, &mut receipts).await {
        Ok(staged) => staged,
        Err(e) => {
            coord.receipts.put_back(receipts);
            if opts.abort_on_error {
                coord.abort().await;
            } else {
                coord.hand_over_receipts().await;
            }
            return Err(e);
        }
    };
    let commit = CommitUpload {
        chunks: if staged { Vec::new() } else { chunks },
        manifest: staged.then_some(chunk_count),
        receipts,
        meta,
        part: opts.part,
    };
    let file = match commit_upload(&client, bucket, path, &session.id, &commit).await {
        Ok(f) => f,
        Err(e) => {
            if opts.abort_on_error {
                coord.abort().await;
            } else {
                coord.receipts.put_back(commit.receipts);
                coord.hand_over_receipts().await;
            }
            return Err(e);
        }
    };
    tracing::info!(
        upload = %session.id,
        size = file.size,
        chunks_sent = coord.sent,
        chunks_skipped = coord.skipped,
        bytes_sent = coord.bytes_sent,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "upload committed"
    );
    Ok(UploadOutcome {
        file,
        chunks_sent: coord.sent,
        chunks_skipped: coord.skipped,
        bytes_sent: coord.bytes_sent,
    })
}

/// Keeps the commit request small: receipts beyond one page go ahead in
/// batches, and a chunk list longer than a page is staged as manifest
/// pages. Returns whether the chunk list was staged (the commit then names
/// the manifest instead of listing the chunks).
pub(crate) async fn stage_long_lists(
    client: &Client,
    upload: &UploadId,
    chunks: &[ChunkRef],
    receipts: &mut Vec<Receipt>,
) -> Result<bool, Error> {
    while receipts.len() > MAX_PAGE {
        let batch = ChunkBatch {
            chunks: Vec::new(),
            receipts: receipts.split_off(receipts.len() - MAX_PAGE),
        };
        if let Err(e) = with_retries("report receipts", || client.send_batch(upload, &batch)).await
        {
            receipts.extend(batch.receipts);
            return Err(e);
        }
    }
    if chunks.len() <= MAX_PAGE {
        return Ok(false);
    }
    for (i, page) in chunks.chunks(MAX_PAGE).enumerate() {
        let page = ManifestPage {
            start: (i * MAX_PAGE) as u64,
            chunks: page.to_vec(),
        };
        with_retries("stage chunk list", || {
            client.send_manifest_page(upload, &page)
        })
        .await?;
    }
    tracing::debug!(chunks = chunks.len(), "chunk list staged in pages");
    Ok(true)
}

/// Commits, retrying transient failures. A retry that finds the session
/// gone after an attempt whose answer was lost checks whether that attempt
/// did commit (the file's version is the session id).
pub(crate) async fn commit_upload(
    client: &Client,
    bucket: &str,
    path: &str,
    upload: &UploadId,
    req: &CommitUpload,
) -> Result<FileInfo, Error> {
    let mut attempt = 1;
    let mut maybe_committed = false;
    loop {
        match client.commit_upload(upload, req).await {
            Ok(f) => return Ok(f),
            Err(e) if maybe_committed && (e.is_not_found() || e.is_conflict()) => {
                return match client.stat(bucket, path).await {
                    Ok(f) if &f.version == upload => Ok(f),
                    _ => Err(e),
                };
            }
            Err(e) if e.is_retryable() && attempt < MAX_ATTEMPTS => {
                tracing::warn!(attempt, error = %e, "commit failed, retrying");
                maybe_committed = true;
                tokio::time::sleep(backoff(attempt)).await;
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Reads `reader` into chunks of `chunk_size` (the last one shorter),
/// hashes them on the blocking pool, and sends them in order to `tx`, each
/// holding a permit of `permits` taken before its buffer was allocated.
/// `whole` is the SHA-256 of the entire input when the reader has checked
/// it before its end: an input of a single chunk takes it as the chunk's id
/// instead of hashing again (a datanode checks every chunk against its id
/// whatever the source). Returns every chunk of the input, in order.
pub(crate) async fn read_chunks<R>(
    reader: R,
    chunk_size: usize,
    whole: Option<ChunkId>,
    permits: Arc<Semaphore>,
    tx: mpsc::Sender<Msg>,
) -> Result<Vec<ChunkRef>, Error>
where
    R: AsyncRead + Unpin + Send,
{
    // One buffer per permit at most, reused from chunk to chunk: no fresh
    // pages to fault in and zero for every chunk.
    let pool = BufferPool::new(permits.available_permits());
    let start = Reading {
        reader,
        done: false,
        first: true,
        carry: None,
    };
    let raw = futures::stream::unfold(start, move |mut st| {
        let permits = permits.clone();
        let pool = pool.clone();
        async move {
            if st.done {
                return None;
            }
            // Closed only when the upload is being torn down.
            let permit = permits.acquire_owned().await.ok()?;
            let first = std::mem::replace(&mut st.first, false);
            let buf = match read_full(&mut st.reader, chunk_size, st.carry.take(), &pool).await {
                Ok(buf) if buf.is_empty() => return None,
                Ok(buf) => buf,
                Err(e) => {
                    st.done = true;
                    return Some((Err(e), st));
                }
            };
            let mut known = None;
            st.done = buf.len() < chunk_size;
            if first && whole.is_some() {
                // A full first chunk is the whole input only if the input
                // ends right there: look one byte ahead.
                if !st.done {
                    match probe(&mut st.reader).await {
                        Ok(None) => st.done = true,
                        Ok(Some(b)) => st.carry = Some(b),
                        Err(e) => {
                            st.done = true;
                            return Some((Err(e), st));
                        }
                    }
                }
                if st.done {
                    known = whole;
                }
            }
            Some((Ok((buf, permit, known)), st))
        }
    });
    let hashed = raw
        .map(|item| async move {
            let (buf, permit, known) = item?;
            let (id, buf) = match known {
                Some(id) => (id, buf),
                None => tokio::task::spawn_blocking(move || (ChunkId::of(&buf), buf))
                    .await
                    .map_err(|e| Error::Task(format!("hashing a chunk: {e}")))?,
            };
            Ok::<_, Error>(ReadyChunk {
                chunk: ChunkRef {
                    id,
                    size: buf.len() as u64,
                },
                bytes: buf.into_bytes(),
                permit,
            })
        })
        .buffered(MAX_HASHING);
    let mut hashed = std::pin::pin!(hashed);
    let mut chunks = Vec::new();
    while let Some(ready) = hashed.next().await {
        let ready = ready?;
        chunks.push(ready.chunk);
        if tx.send(Msg::Chunk(ready)).await.is_err() {
            // The coordinator stopped; its error is the one to report.
            return Ok(chunks);
        }
    }
    let _ = tx.send(Msg::Eof).await;
    Ok(chunks)
}

/// Where [`read_chunks`] is in its input.
struct Reading<R> {
    reader: R,
    done: bool,
    first: bool,
    /// A byte read ahead of the next chunk.
    carry: Option<u8>,
}

/// Reads until `size` bytes or the end of the input, into a buffer of
/// `pool` (its spare capacity is read into as it is, never zeroed first),
/// starting with `carry` when a byte was read ahead.
async fn read_full<R: AsyncRead + Unpin>(
    reader: &mut R,
    size: usize,
    carry: Option<u8>,
    pool: &Arc<BufferPool>,
) -> Result<PooledBuf, Error> {
    let mut buf = pool.take(size);
    buf.vec.extend(carry);
    while buf.vec.len() < size {
        let want = (size - buf.vec.len()) as u64;
        match (&mut *reader).take(want).read_buf(&mut buf.vec).await {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::io("reading the input", e)),
        }
    }
    Ok(buf)
}

/// Reads one byte ahead: `None` at the end of the input.
async fn probe<R: AsyncRead + Unpin>(reader: &mut R) -> Result<Option<u8>, Error> {
    let mut b = [0u8; 1];
    loop {
        match reader.read(&mut b).await {
            Ok(0) => return Ok(None),
            Ok(_) => return Ok(Some(b[0])),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::io("reading the input", e)),
        }
    }
}

/// Chunk buffers of one upload: a buffer whose chunk is done (stored, or
/// found already stored) comes back here for the next chunk read. Keeps at
/// most `keep` idle buffers; dies with the upload (buffers still in use
/// then are simply freed).
pub(crate) struct BufferPool {
    free: Mutex<Vec<Vec<u8>>>,
    keep: usize,
}

impl BufferPool {
    pub(crate) fn new(keep: usize) -> Arc<Self> {
        Arc::new(Self {
            free: Mutex::new(Vec::new()),
            keep,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Vec<u8>>> {
        self.free.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// An empty buffer with room for `size` bytes.
    pub(crate) fn take(self: &Arc<Self>, size: usize) -> PooledBuf {
        let reused = {
            let mut free = self.lock();
            free.iter()
                .position(|v| v.capacity() >= size)
                .map(|i| free.swap_remove(i))
        };
        let mut vec = reused.unwrap_or_else(|| Vec::with_capacity(size));
        vec.clear();
        PooledBuf {
            vec,
            pool: Arc::downgrade(self),
        }
    }

    fn put(&self, vec: Vec<u8>) {
        let mut free = self.lock();
        if free.len() < self.keep {
            free.push(vec);
        }
    }

    #[cfg(test)]
    fn idle(&self) -> usize {
        self.lock().len()
    }
}

/// A buffer that goes back to its pool when dropped.
pub(crate) struct PooledBuf {
    vec: Vec<u8>,
    pool: std::sync::Weak<BufferPool>,
}

impl PooledBuf {
    pub(crate) fn len(&self) -> usize {
        self.vec.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.vec.is_empty()
    }

    /// Shared, immutable bytes; the buffer goes back to the pool when the
    /// last clone is dropped.
    pub(crate) fn into_bytes(self) -> Bytes {
        Bytes::from_owner(self)
    }
}

impl AsRef<[u8]> for PooledBuf {
    fn as_ref(&self) -> &[u8] {
        &self.vec
    }
}

impl std::ops::Deref for PooledBuf {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.vec
    }
}

impl Drop for PooledBuf {
    fn drop(&mut self) {
        if let Some(pool) = self.pool.upgrade() {
            pool.put(std::mem::take(&mut self.vec));
        }
    }
}

/// Receipts not yet reported to the namenode.
#[derive(Default)]
pub(crate) struct ReceiptBox {
    pending: Mutex<Vec<Receipt>>,
    arrived: Notify,
}

impl ReceiptBox {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Receipt>> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// New receipts: wakes the reporter.
    pub(crate) fn push(&self, receipts: impl IntoIterator<Item = Receipt>) {
        let mut pending = self.lock();
        let before = pending.len();
        pending.extend(receipts);
        if pending.len() > before {
            self.arrived.notify_one();
        }
    }

    /// Receipts whose report failed: kept for the next call, without waking
    /// the reporter (it would only fail again at once).
    pub(crate) fn put_back(&self, receipts: Vec<Receipt>) {
        self.lock().extend(receipts);
    }

    pub(crate) fn take(&self) -> Vec<Receipt> {
        std::mem::take(&mut *self.lock())
    }

    /// At most one page of receipts; the reporter is woken again for the
    /// rest.
    fn take_page(&self) -> Vec<Receipt> {
        let mut pending = self.lock();
        if pending.len() <= MAX_PAGE {
            return std::mem::take(&mut *pending);
        }
        let rest = pending.split_off(MAX_PAGE);
        let page = std::mem::replace(&mut *pending, rest);
        self.arrived.notify_one();
        page
    }
}

/// The background task reporting receipts.
struct Reporter {
    stop: CancellationToken,
    task: AbortOnDrop<()>,
}

impl Reporter {
    fn start(client: Client, upload: UploadId, receipts: Arc<ReceiptBox>) -> Self {
        let stop = CancellationToken::new();
        let task = tokio::spawn(
            report_receipts(client, upload, receipts, stop.clone())
                .instrument(tracing::Span::current()),
        );
        Reporter {
            stop,
            task: AbortOnDrop(task),
        }
    }

    /// Stops the reporter once its report in flight, if any, is answered.
    async fn finish(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

async fn report_receipts(
    client: Client,
    upload: UploadId,
    receipts: Arc<ReceiptBox>,
    stop: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = receipts.arrived.notified() => {}
        }
        // Gather for a moment: receipts of a short upload then go with its
        // commit (one synced namenode write instead of two), and a long
        // one reports in batches.
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(REPORT_GATHER) => {}
        }
        let batch = ChunkBatch {
            chunks: Vec::new(),
            receipts: receipts.take_page(),
        };
        if batch.receipts.is_empty() {
            continue;
        }
        let n = batch.receipts.len();
        match with_retries("report receipts", || client.send_batch(&upload, &batch)).await {
            Ok(_) => tracing::debug!(receipts = n, "receipts reported"),
            Err(e) => {
                tracing::warn!(receipts = n, error = %e, "reporting receipts failed; they go with the next call");
                receipts.put_back(batch.receipts);
            }
        }
    }
}

#[derive(Clone)]
struct Session {
    id: UploadId,
    replication: u8,
    /// Replicas a chunk needs before its PUT counts (the write quorum).
    quorum: u8,
}

struct Coordinator {
    client: Client,
    bucket: String,
    path: String,
    chunk_size: u64,
    replication_asked: Option<u8>,
    session: Option<Session>,
    receipts: Arc<ReceiptBox>,
    reporter: Option<Reporter>,
    progress: Arc<ProgressCounter>,
    /// Chunks of this upload already planned (a repeated chunk is sent once).
    seen: HashSet<ChunkId>,
    puts: JoinSet<Result<u64, Error>>,
    sent: u64,
    skipped: u64,
    bytes_sent: u64,
}

impl Coordinator {
    /// Plans chunks as they become ready and collects finished PUTs, until
    /// the input ended and every PUT is done.
    async fn run(&mut self, mut rx: mpsc::Receiver<Msg>) -> Result<(), Error> {
        let mut ready: Vec<ReadyChunk> = Vec::new();
        let mut eof = false;
        loop {
            if !ready.is_empty() || (eof && self.session.is_none()) {
                self.plan(std::mem::take(&mut ready)).await?;
                continue;
            }
            if eof && self.puts.is_empty() {
                return Ok(());
            }
            tokio::select! {
                biased;
                Some(done) = self.puts.join_next(), if !self.puts.is_empty() => {
                    let size = done.map_err(|e| Error::Task(format!("chunk PUT: {e}")))??;
                    self.sent += 1;
                    self.bytes_sent += size;
                    self.progress.add(size);
                }
                msg = rx.recv(), if !eof => {
                    match msg {
                        Some(Msg::Chunk(c)) => {
                            ready.push(c);
                            // Take whatever else is ready: no waiting to fill a batch.
                            while ready.len() < MAX_BATCH {
                                match rx.try_recv() {
                                    Ok(Msg::Chunk(c)) => ready.push(c),
                                    Ok(Msg::Eof) => {
                                        eof = true;
                                        break;
                                    }
                                    Err(_) => break,
                                }
                            }
                        }
                        Some(Msg::Eof) | None => eof = true,
                    }
                }
                else => return Ok(()),
            }
        }
    }

    fn skip(&mut self, c: ReadyChunk) {
        self.skipped += 1;
        self.progress.add(c.chunk.size);
        // Dropping the chunk frees its buffer and its permit.
    }

    /// Sends one batch to the namenode (opening the session with the first)
    /// and acts on its plan.
    async fn plan(&mut self, batch: Vec<ReadyChunk>) -> Result<(), Error> {
        let mut fresh = Vec::with_capacity(batch.len());
        for c in batch {
            if self.seen.insert(c.chunk.id) {
                fresh.push(c);
            } else {
                self.skip(c);
            }
        }
        let refs: Vec<ChunkRef> = fresh.iter().map(|c| c.chunk).collect();
        let plan = match &self.session {
            None => {
                let req = CreateUpload {
                    bucket: self.bucket.clone(),
                    path: self.path.clone(),
                    replication: self.replication_asked,
                    chunk_size: self.chunk_size,
                    chunks: refs.clone(),
                };
                let plan = with_retries("open upload", || self.client.create_upload(&req)).await?;
                if plan.replication == 0 {
                    return Err(self.bad_plan("replication 0"));
                }
                tracing::info!(upload = %plan.upload, replication = plan.replication, "upload session opened");
                let quorum = match plan.min_replicas {
                    0 => plan.replication,
                    q => q.min(plan.replication),
                };
                self.session = Some(Session {
                    id: plan.upload,
                    replication: plan.replication,
                    quorum,
                });
                self.reporter = Some(Reporter::start(
                    self.client.clone(),
                    plan.upload,
                    self.receipts.clone(),
                ));
                plan
            }
            Some(_) if refs.is_empty() => return Ok(()),
            Some(session) => {
                let req = ChunkBatch {
                    chunks: refs.clone(),
                    receipts: self.receipts.take_page(),
                };
                let id = session.id;
                match with_retries("plan chunks", || self.client.send_batch(&id, &req)).await {
                    Ok(plan) => plan,
                    Err(e) => {
                        self.receipts.put_back(req.receipts);
                        return Err(e);
                    }
                }
            }
        };
        self.check_plan(&plan, &refs)?;
        let Some(session) = self.session.clone() else {
            return Err(self.bad_plan("no session"));
        };
        for (c, p) in fresh.into_iter().zip(plan.chunks) {
            match p.put {
                None => {
                    tracing::debug!(chunk = %c.chunk.id.short(), "already stored");
                    self.skip(c);
                }
                Some(target) => {
                    let job = PutJob {
                        client: self.client.clone(),
                        upload: session.id,
                        replication: session.replication,
                        quorum: session.quorum,
                        chunk: c.chunk,
                        bytes: c.bytes,
                        receipts: self.receipts.clone(),
                    };
                    let span = tracing::debug_span!("put_chunk", chunk = %c.chunk.id.short());
                    let permit = c.permit;
                    self.puts.spawn(
                        async move {
                            let _permit = permit;
                            job.run(target).await
                        }
                        .instrument(span),
                    );
                }
            }
        }
        Ok(())
    }

    fn check_plan(&self, plan: &UploadPlan, refs: &[ChunkRef]) -> Result<(), Error> {
        if let Some(s) = &self.session {
            if plan.upload != s.id {
                return Err(self.bad_plan(&format!("plan for session {}", plan.upload)));
            }
        }
        if plan.chunks.len() != refs.len()
            || plan.chunks.iter().zip(refs).any(|(p, r)| p.id != r.id)
        {
            return Err(self.bad_plan(&format!(
                "plan lists {} chunks that do not match the {} asked for",
                plan.chunks.len(),
                refs.len()
            )));
        }
        Ok(())
    }

    fn bad_plan(&self, detail: &str) -> Error {
        Error::protocol(&self.client.meta_url(&["uploads"], &[]), detail)
    }

    /// After a failure: stops every PUT and hands the receipts gathered so
    /// far to the namenode (best effort), so a re-run skips those chunks.
    /// Stops the PUTs still running and abandons the session (best
    /// effort: an unreachable namenode leaves it behind).
    async fn abort(&mut self) {
        self.puts.abort_all();
        if let Some(reporter) = self.reporter.take() {
            reporter.finish().await;
        }
        if let Some(session) = &self.session {
            if let Err(e) = self.client.abort_upload(&session.id).await {
                tracing::warn!(upload = %session.id, error = %e, "could not abort the upload session");
            }
        }
    }

    async fn hand_over_receipts(&mut self) {
        self.puts.shutdown().await;
        if let Some(reporter) = self.reporter.take() {
            reporter.finish().await;
        }
        let Some(session) = &self.session else { return };
        let deadline = tokio::time::Instant::now() + FINAL_REPORT_TIMEOUT;
        loop {
            let receipts = self.receipts.take_page();
            if receipts.is_empty() {
                return;
            }
            let n = receipts.len();
            let req = ChunkBatch {
                chunks: Vec::new(),
                receipts,
            };
            match tokio::time::timeout_at(deadline, self.client.send_batch(&session.id, &req)).await
            {
                Ok(Ok(_)) => tracing::debug!(receipts = n, "receipts handed over after failure"),
                Ok(Err(e)) => {
                    tracing::warn!(receipts = n, error = %e, "could not hand over receipts");
                    return;
                }
                Err(_) => {
                    tracing::warn!(receipts = n, "timed out handing over receipts");
                    return;
                }
            }
        }
    }
}

/// One chunk to store on `replication` nodes, done once `quorum` hold it.
pub(crate) struct PutJob {
    pub(crate) client: Client,
    pub(crate) upload: UploadId,
    pub(crate) replication: u8,
    pub(crate) quorum: u8,
    pub(crate) chunk: ChunkRef,
    pub(crate) bytes: Bytes,
    pub(crate) receipts: Arc<ReceiptBox>,
}

impl PutJob {
    /// PUTs the chunk, retargeting to new nodes for the replicas still
    /// missing after a short pipeline or an unreachable primary, with
    /// exponential backoff. Returns the chunk's size.
    pub(crate) async fn run(self, first: PutTarget) -> Result<u64, Error> {
        let mut have: Vec<NodeId> = Vec::new();
        let mut exclude: Vec<NodeId> = Vec::new();
        let mut target = first;
        let mut attempts = 0;
        loop {
            attempts += 1;
            let last = match self.put_once(&target, &mut have, &mut exclude).await {
                Ok(()) => return Ok(self.chunk.size),
                Err(e) => e,
            };
            tracing::warn!(attempt = attempts, have = have.len(), error = %last, "chunk PUT incomplete");
            if have.len() >= usize::from(self.quorum) {
                // Durable on a write quorum: one try for the missing
                // replicas on other nodes, then done either way (the
                // namenode repairs what is still missing).
                self.fill_after_quorum(&mut have, &mut exclude).await;
                return Ok(self.chunk.size);
            }
            let mut last = last;
            // A new pipeline for the missing replicas; namenode trouble
            // uses up attempts too.
            target = loop {
                if attempts >= MAX_ATTEMPTS {
                    return Err(Error::Exhausted {
                        chunk: self.chunk.id,
                        attempts,
                        last: Box::new(last),
                    });
                }
                tokio::time::sleep(backoff(attempts)).await;
                let req = Retarget {
                    chunk: self.chunk,
                    have: have.clone(),
                    exclude: exclude.clone(),
                };
                match self.client.retarget(&self.upload, &req).await {
                    Ok(t) => break t,
                    Err(e) if e.is_retryable() => {
                        attempts += 1;
                        last = e;
                    }
                    Err(e) => return Err(e),
                }
            };
        }
    }

    /// After a write reached its quorum but not its factor: asks for
    /// nodes for the missing replicas and PUTs there once. Failures are
    /// only logged: the chunk is durable already.
    async fn fill_after_quorum(&self, have: &mut Vec<NodeId>, exclude: &mut Vec<NodeId>) {
        let req = Retarget {
            chunk: self.chunk,
            have: have.clone(),
            exclude: exclude.clone(),
        };
        let outcome = match self.client.retarget(&self.upload, &req).await {
            Ok(target) => self.put_once(&target, have, exclude).await,
            Err(e) => Err(e),
        };
        match outcome {
            Ok(()) => tracing::debug!(replicas = have.len(), "missing replicas filled"),
            Err(e) => tracing::info!(
                replicas = have.len(),
                wanted = self.replication,
                error = %e,
                "chunk stored on a write quorum; the namenode repairs the rest"
            ),
        }
    }

    /// One PUT along `target`. `Ok` once `replication` nodes hold the chunk;
    /// otherwise records which nodes failed and returns why.
    async fn put_once(
        &self,
        target: &PutTarget,
        have: &mut Vec<NodeId>,
        exclude: &mut Vec<NodeId>,
    ) -> Result<(), Error> {
        let Some(primary) = target.targets.first().copied() else {
            return Err(Error::protocol(
                &self.client.meta_url(&["uploads"], &[]),
                "put target with an empty pipeline",
            ));
        };
        let answer = match self
            .client
            .put_chunk(&target.url, &self.chunk.id, self.bytes.clone())
            .await
        {
            Ok(a) => a,
            Err(e) => {
                // Unreachable or failing primary: ask for another one. A 4xx
                // (e.g. an expired URL) only needs a fresh URL.
                if e.is_retryable() && !exclude.contains(&primary) {
                    exclude.push(primary);
                }
                return Err(e);
            }
        };
        let mut fresh = Vec::new();
        for r in answer.receipts {
            if r.chunk == self.chunk.id && r.size == self.chunk.size && !have.contains(&r.node) {
                have.push(r.node);
                fresh.push(r);
            }
        }
        self.receipts.push(fresh);
        let mut detail = Vec::new();
        for f in &answer.failed {
            if !exclude.contains(&f.node) {
                exclude.push(f.node);
            }
            detail.push(format!("{}: {}", f.node, f.error));
        }
        if have.len() >= usize::from(self.replication) {
            return Ok(());
        }
        // Nodes after a broken link of the pipeline neither stored nor
        // failed: they were never reached, so they stay eligible (excluding
        // them could leave too few nodes for the missing replicas).
        Err(Error::Underreplicated {
            chunk: self.chunk.id,
            stored: have.len(),
            wanted: self.replication,
            detail: detail.join("; "),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs the reader over `data` with a consumer that frees each permit
    /// at once; returns the reader's list and what the consumer received.
    async fn collect(
        data: Vec<u8>,
        chunk_size: usize,
        parallel: usize,
    ) -> (Vec<ChunkRef>, Vec<(ChunkRef, Bytes)>, bool) {
        collect_known(data, chunk_size, parallel, None).await
    }

    /// [`collect`] with the input's SHA-256 given as known.
    async fn collect_known(
        data: Vec<u8>,
        chunk_size: usize,
        parallel: usize,
        whole: Option<ChunkId>,
    ) -> (Vec<ChunkRef>, Vec<(ChunkRef, Bytes)>, bool) {
        let permits = Arc::new(Semaphore::new(parallel));
        let (tx, mut rx) = mpsc::channel(parallel);
        let reading = tokio::spawn(async move {
            read_chunks(std::io::Cursor::new(data), chunk_size, whole, permits, tx).await
        });
        let mut got = Vec::new();
        let mut eof = false;
        while let Some(m) = rx.recv().await {
            match m {
                Msg::Chunk(c) => got.push((c.chunk, c.bytes)),
                Msg::Eof => eof = true,
            }
        }
        let refs = match reading.await {
            Ok(Ok(r)) => r,
            _ => panic!("reader failed"),
        };
        (refs, got, eof)
    }

    #[tokio::test]
    async fn input_is_cut_in_order_with_a_short_last_chunk() {
        let data: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        let (refs, got, eof) = collect(data.clone(), 4096, 2).await;
        assert!(eof);
        let sizes: Vec<u64> = refs.iter().map(|r| r.size).collect();
        assert_eq!(sizes, vec![4096, 4096, 1808]);
        let joined: Vec<u8> = got.iter().flat_map(|(_, b)| b.to_vec()).collect();
        assert_eq!(joined, data);
        for (r, (c, b)) in refs.iter().zip(&got) {
            assert_eq!(r, c);
            assert_eq!(r.id, ChunkId::of(b));
        }
    }

    /// A known SHA-256 of the input names a single-chunk input (full or
    /// short) without hashing; an input one byte longer than a chunk is
    /// hashed chunk by chunk and loses no byte to the look-ahead.
    #[tokio::test]
    async fn a_known_input_hash_names_a_single_chunk_only() {
        // Not the bytes' real hash: proof that it was taken as given.
        let given = ChunkId([9; 32]);
        for len in [4096, 1000] {
            let (refs, got, eof) = collect_known(vec![3u8; len], 4096, 2, Some(given)).await;
            assert!(eof);
            assert_eq!(refs.len(), 1);
            assert_eq!(refs[0].id, given);
            assert_eq!(got[0].1.len(), len);
        }
        let data: Vec<u8> = (0..4097u32).map(|i| (i % 253) as u8).collect();
        let (refs, got, eof) = collect_known(data.clone(), 4096, 2, Some(given)).await;
        assert!(eof);
        let sizes: Vec<u64> = refs.iter().map(|r| r.size).collect();
        assert_eq!(sizes, vec![4096, 1]);
        let joined: Vec<u8> = got.iter().flat_map(|(_, b)| b.to_vec()).collect();
        assert_eq!(joined, data);
        for (r, (_, b)) in refs.iter().zip(&got) {
            assert_eq!(r.id, ChunkId::of(b));
        }
    }

    #[tokio::test]
    async fn exact_multiple_and_empty_input() {
        let (refs, _, eof) = collect(vec![7u8; 8192], 4096, 3).await;
        assert!(eof);
        assert_eq!(refs.len(), 2);
        let (refs, got, eof) = collect(Vec::new(), 4096, 3).await;
        assert!(eof);
        assert!(refs.is_empty() && got.is_empty());
    }

    #[tokio::test]
    async fn reader_never_holds_more_chunks_than_permits() {
        let permits = Arc::new(Semaphore::new(3));
        let (tx, mut rx) = mpsc::channel(16);
        let p = permits.clone();
        let reading = tokio::spawn(async move {
            read_chunks(
                std::io::Cursor::new(vec![1u8; 100 * 1024]),
                1024,
                None,
                p,
                tx,
            )
            .await
        });
        let mut held = Vec::new();
        for _ in 0..3 {
            match rx.recv().await {
                Some(Msg::Chunk(c)) => held.push(c),
                _ => panic!("expected a chunk"),
            }
        }
        // Every permit is held by a chunk: the reader must be stuck.
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(rx.try_recv().is_err());
        assert_eq!(permits.available_permits(), 0);
        // Finishing one chunk lets exactly one more through.
        held.remove(0);
        match tokio::time::timeout(Duration::from_secs(5), rx.recv()).await {
            Ok(Some(Msg::Chunk(c))) => held.push(c),
            _ => panic!("expected a chunk after a permit was freed"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(rx.try_recv().is_err());
        drop(held);
        drop(rx);
        assert!(matches!(reading.await, Ok(Ok(_))));
    }

    #[tokio::test]
    async fn read_errors_surface() {
        struct Broken;
        impl AsyncRead for Broken {
            fn poll_read(
                self: std::pin::Pin<&mut Self>,
                _: &mut std::task::Context<'_>,
                _: &mut tokio::io::ReadBuf<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                std::task::Poll::Ready(Err(std::io::Error::other("disk on fire")))
            }
        }
        let (tx, _rx) = mpsc::channel(1);
        let r = read_chunks(Broken, 1024, None, Arc::new(Semaphore::new(1)), tx).await;
        assert!(matches!(r, Err(Error::Io { .. })));
    }

    #[tokio::test]
    async fn chunk_buffers_are_reused_and_bounded() {
        let pool = BufferPool::new(2);
        let mut input = std::io::Cursor::new(vec![5u8; 10_000]);
        let a = read_full(&mut input, 4096, None, &pool).await;
        let b = read_full(&mut input, 4096, None, &pool).await;
        let c = read_full(&mut input, 4096, None, &pool).await;
        let (a, b, c) = match (a, b, c) {
            (Ok(a), Ok(b), Ok(c)) => (a, b, c),
            _ => panic!("read failed"),
        };
        assert_eq!((a.len(), b.len(), c.len()), (4096, 4096, 1808));
        let bytes = a.into_bytes();
        let clone = bytes.clone();
        drop(bytes);
        assert_eq!(pool.idle(), 0, "a clone still holds the buffer");
        drop(clone);
        assert_eq!(pool.idle(), 1);
        drop((b, c));
        assert_eq!(pool.idle(), 2, "at most `keep` idle buffers");
        // The next read reuses a buffer (whatever it held is gone).
        let mut more = std::io::Cursor::new(vec![9u8; 100]);
        let d = read_full(&mut more, 4096, None, &pool)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(&d[..], &[9u8; 100][..]);
        assert_eq!(pool.idle(), 1);
        // Buffers outliving their pool are just freed.
        drop(pool);
        drop(d);
    }

    #[test]
    fn receipt_box_takes_everything_once() {
        let b = ReceiptBox::default();
        assert!(b.take().is_empty());
        let r = Receipt {
            node: NodeId([1; 8]),
            chunk: ChunkId::of(b"x"),
            size: 1,
            upload: None,
            issued: 0,
            kid: "k".into(),
            sig: "s".into(),
        };
        b.push(vec![r.clone(), r.clone()]);
        b.put_back(vec![r]);
        assert_eq!(b.take().len(), 3);
        assert!(b.take().is_empty());
    }
}
