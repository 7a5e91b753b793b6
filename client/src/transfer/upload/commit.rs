//! The commit: long receipt and chunk lists go ahead in pages (receipt
//! batches, manifest pages) so the commit request stays small, then the
//! commit itself, retried when its answer may have been lost.

use blob_common::presign::Receipt;
use blob_common::proto::namenode::{
    ChunkBatch, ChunkRef, CommitUpload, FileInfo, ManifestPage, MAX_PAGE,
};
use blob_common::UploadId;

use crate::transfer::{backoff, with_retries, MAX_ATTEMPTS};
use crate::{Client, Error};

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
