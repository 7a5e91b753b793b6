//! Upload sessions driven chunk by chunk, for writers that build a file's
//! chunk list themselves instead of streaming one input through
//! [`Client::upload`] (the FUSE mount's commit of a staged file: chunks it
//! kept are named by id, only changed ones are cut, hashed and sent).
//!
//! The caller opens the session ([`Client::create_upload`]), plans chunks
//! in batches ([`Client::send_batch`]), stores each planned chunk with a
//! [`ChunkPut`], hands the [`Receipts`] in with the next batch or the
//! commit, and finishes with [`stage_long_lists`] and [`commit`]. These
//! are the same steps, retries and retargeting [`Client::upload`] uses.

use std::future::Future;
use std::sync::Arc;

use blob_common::presign::Receipt;
use blob_common::proto::namenode::{ChunkRef, CommitUpload, FileInfo, PutTarget};
use blob_common::UploadId;
use bytes::Bytes;

use crate::transfer::upload::{self, PutJob, ReceiptBox};
use crate::{Client, Error};

/// Runs `call` until it succeeds, fails with a final error (a 4xx other
/// than 408/429, …) or the retry budget is used up, with exponential
/// backoff between attempts. `what` names the call in the log.
pub async fn with_retries<T, F, Fut>(what: &'static str, call: F) -> Result<T, Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, Error>>,
{
    crate::transfer::with_retries(what, call).await
}

/// Receipts of stored replicas not yet handed to the namenode. Clones
/// share one box, so chunk PUTs running in parallel fill it together.
#[derive(Clone, Default)]
pub struct Receipts(Arc<ReceiptBox>);

impl Receipts {
    /// Every receipt collected so far; the box is left empty.
    pub fn take(&self) -> Vec<Receipt> {
        self.0.take()
    }

    /// Puts back receipts whose report failed, for the next call.
    pub fn put_back(&self, receipts: Vec<Receipt>) {
        self.0.put_back(receipts);
    }
}

/// One planned chunk to store on `replication` datanodes; done once
/// `quorum` of them hold it.
pub struct ChunkPut {
    /// The open session.
    pub upload: UploadId,
    /// Replicas wanted, as the namenode planned.
    pub replication: u8,
    /// Replicas that must be stored before the chunk counts as written.
    pub quorum: u8,
    /// The chunk's id and size.
    pub chunk: ChunkRef,
    /// The chunk's bytes (checked against its id by every datanode).
    pub bytes: Bytes,
    /// Where the receipts of the stored replicas go.
    pub receipts: Receipts,
}

impl ChunkPut {
    /// PUTs the chunk to `first` (the namenode's target), retargeting to
    /// new datanodes for replicas still missing after a short pipeline or
    /// an unreachable primary. Returns the chunk's size.
    pub async fn run(self, client: &Client, first: PutTarget) -> Result<u64, Error> {
        PutJob {
            client: client.clone(),
            upload: self.upload,
            replication: self.replication,
            quorum: self.quorum,
            chunk: self.chunk,
            bytes: self.bytes,
            receipts: self.receipts.0,
        }
        .run(first)
        .await
    }
}

/// Keeps the commit request small: receipts beyond one page are reported
/// ahead in batches, and a chunk list longer than a page is staged as
/// manifest pages. Returns whether the chunk list was staged (the commit
/// then names the manifest instead of listing the chunks).
pub async fn stage_long_lists(
    client: &Client,
    upload: &UploadId,
    chunks: &[ChunkRef],
    receipts: &mut Vec<Receipt>,
) -> Result<bool, Error> {
    upload::stage_long_lists(client, upload, chunks, receipts).await
}

/// Commits the session as the new version of `bucket/path`, retrying
/// transient failures; a retry that finds the session gone checks whether
/// the lost attempt did commit.
pub async fn commit(
    client: &Client,
    bucket: &str,
    path: &str,
    upload: &UploadId,
    req: &CommitUpload,
) -> Result<FileInfo, Error> {
    upload::commit_upload(client, bucket, path, upload, req).await
}
