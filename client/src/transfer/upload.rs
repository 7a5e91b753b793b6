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
//! receipts too, and the commit whatever is left. That is what lets a
//! re-run of a failed upload skip every chunk already stored. The session
//! is never aborted here, unless the caller asks for it (`abort_on_error`)
//! or its commit check refuses.
//!
//! The pieces: [`read`] cuts and hashes the input, [`coordinator`] plans
//! and spawns, [`put`] stores one chunk, [`receipts`] reports what was
//! stored, and [`commit`] stages long lists and commits; this module runs
//! them together for one upload.

use std::sync::Arc;
use std::time::Instant;

use blob_common::names::{validate_bucket, validate_path};
use blob_common::proto::namenode::CommitUpload;
use blob_common::ChunkId;
use tokio::io::AsyncRead;
use tokio::sync::{mpsc, Semaphore};
use tracing::Instrument;

use crate::{Client, Error, UploadOptions, UploadOutcome};

mod commit;
mod coordinator;
mod put;
mod read;
mod receipts;

pub(crate) use commit::{commit_upload, stage_long_lists};
pub(crate) use put::PutJob;
pub(crate) use receipts::ReceiptBox;

use coordinator::Coordinator;
use read::read_chunks;

/// Uploads `reader` to `bucket/path` (or to a part, per `opts`) and
/// commits it: what `Client::upload` runs, in a span of its own.
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
    let sealed;
    let opts = match (&opts.sealing, &opts.encrypt) {
        (None, Some(how)) => {
            sealed = UploadOptions {
                sealing: Some(client.sealing_for(how).await?),
                ..opts.clone()
            };
            &sealed
        }
        _ => opts,
    };
    let span = tracing::info_span!("upload", bucket, path, request_id = %client.request_id());
    run(client, reader, bucket, path, opts)
        .instrument(span)
        .await
}

/// Reads and plans/PUTs at once, then commits; on failure aborts the
/// session or hands over its receipts, as `opts.abort_on_error` says.
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
    let mut coord = Coordinator::new(client.clone(), bucket, path, opts);
    // Sealed chunks hold less plaintext than their stored size, and their
    // ids are those of the sealed bytes, never of the input's.
    let seal = opts.sealing.as_ref().map(|s| s.key().clone());
    let (read_size, whole) = match &seal {
        Some(_) => (
            blob_common::seal::plain_capacity(chunk_size as u64) as usize,
            None,
        ),
        None => (chunk_size, opts.input_sha256.map(ChunkId)),
    };
    let reading = read_chunks(reader, read_size, whole, seal, permits, tx);
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
    if let Some(sealing) = &opts.sealing {
        meta.extend(sealing.meta().clone());
    }
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
        condition: opts.condition.clone(),
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
