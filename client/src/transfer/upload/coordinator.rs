//! The coordinator: opens the upload session with the first batch of
//! ready chunks, sends later batches (with pending receipts) for a plan,
//! releases at once the chunks already stored or repeated, and spawns one
//! [`PutJob`] per chunk to send. After a failure it either abandons the
//! session or hands the receipts gathered so far to the namenode.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use blob_common::proto::namenode::{ChunkBatch, ChunkRef, CreateUpload, UploadPlan};
use blob_common::{ChunkId, UploadId};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tracing::Instrument;

use super::put::PutJob;
use super::read::{Msg, ReadyChunk};
use super::receipts::{ReceiptBox, Reporter};
use crate::transfer::{with_retries, ProgressCounter};
use crate::{Client, Error, UploadOptions};

/// Most chunk ids sent to the namenode in one batch.
const MAX_BATCH: usize = 256;
/// Time allowed to hand over receipts after a failed upload.
const FINAL_REPORT_TIMEOUT: Duration = Duration::from_secs(5);

/// The upload session the namenode opened with the first batch.
#[derive(Clone)]
pub(super) struct Session {
    pub(super) id: UploadId,
    replication: u8,
    /// Replicas a chunk needs before its PUT counts (the write quorum).
    quorum: u8,
}

/// Plans one upload's chunks and runs their PUTs.
pub(super) struct Coordinator {
    client: Client,
    bucket: String,
    path: String,
    chunk_size: u64,
    replication_asked: Option<u8>,
    pub(super) session: Option<Session>,
    pub(super) receipts: Arc<ReceiptBox>,
    pub(super) reporter: Option<Reporter>,
    progress: Arc<ProgressCounter>,
    /// Chunks of this upload already planned (a repeated chunk is sent once).
    seen: HashSet<ChunkId>,
    puts: JoinSet<Result<u64, Error>>,
    pub(super) sent: u64,
    pub(super) skipped: u64,
    pub(super) bytes_sent: u64,
}

impl Coordinator {
    /// A coordinator with no session yet (the first batch opens it).
    pub(super) fn new(client: Client, bucket: &str, path: &str, opts: &UploadOptions) -> Self {
        Coordinator {
            client,
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
        }
    }

    /// Plans chunks as they become ready and collects finished PUTs, until
    /// the input ended and every PUT is done.
    pub(super) async fn run(&mut self, mut rx: mpsc::Receiver<Msg>) -> Result<(), Error> {
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

    /// A chunk not to send (repeated, or already stored): done at once.
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

    /// Checks that a plan answers this session and lists exactly the
    /// chunks asked for, in order.
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

    /// The error for a plan that does not fit what was asked.
    fn bad_plan(&self, detail: &str) -> Error {
        Error::protocol(&self.client.meta_url(&["uploads"], &[]), detail)
    }

    /// Stops the PUTs still running and abandons the session (best
    /// effort: an unreachable namenode leaves it behind).
    pub(super) async fn abort(&mut self) {
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

    /// After a failure: stops every PUT and hands the receipts gathered so
    /// far to the namenode (best effort), so a re-run skips those chunks.
    pub(super) async fn hand_over_receipts(&mut self) {
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
