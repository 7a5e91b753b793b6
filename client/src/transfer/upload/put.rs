//! One chunk's PUT: along the pipeline the namenode planned, then
//! retargeted to other nodes for the replicas still missing (a short
//! pipeline, an unreachable primary), with backoff, until the replication
//! factor is reached, or a write quorum with one try to fill the rest.

use std::sync::Arc;

use blob_common::proto::namenode::{ChunkRef, PutTarget, Retarget};
use blob_common::{NodeId, UploadId};
use bytes::Bytes;

use super::receipts::ReceiptBox;
use crate::transfer::{backoff, MAX_ATTEMPTS};
use crate::{Client, Error};

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
                    // Too few nodes for the missing replicas is final for
                    // a new session, but mid-upload it passes: a node
                    // late with its heartbeat under load, or back from a
                    // restart, is eligible again a moment later.
                    Err(e) if e.is_retryable() || e.code() == Some("NotEnoughNodes") => {
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
