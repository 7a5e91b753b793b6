//! The commit of a staged file: its chunk list is known piece by piece
//! (stored chunks by id, local runs cut and hashed from the staging file),
//! so only the chunks the namenode does not hold in the bucket move.
//!
//! Flow: pieces are planned in batches (one namenode call each); a local
//! piece is read and hashed just before its batch, holding one of
//! `parallel` permits until it is stored or found already stored, so memory
//! stays at `parallel` chunks as in a streamed upload; chunk PUTs run as the
//! next batch is read. The commit hands in every receipt and makes the new
//! version visible in one step. A stored chunk is normally "already
//! stored"; if the version it came from was replaced meanwhile (another
//! writer committed first), its bytes are fetched and sent again.

use std::collections::HashSet;
use std::fs::File;
use std::ops::Range;
use std::sync::Arc;

use blob_common::proto::namenode::{ChunkBatch, ChunkRef, CommitUpload, CreateUpload, FileInfo};
use blob_common::{ChunkId, UploadId};
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tracing::Instrument;

use crate::stage::{read_padded, BaseChunk, Piece};
use blob_client::session::{self, with_retries, ChunkPut, Receipts};
use blob_client::sse::Sealing;
use blob_client::{Client, Error, FileLocations, UploadOptions};

/// Most pieces planned in one namenode call.
const MAX_BATCH: usize = 256;

/// Where the stored chunks of a staged file can be read: the locations of
/// the version it started from, fetched when first needed and again when
/// they no longer serve (expired URLs, or a newer version that shares the
/// chunk).
pub(crate) struct BaseSource {
    locs: Option<Arc<FileLocations>>,
}

impl BaseSource {
    pub(crate) fn new(locs: Option<Arc<FileLocations>>) -> Self {
        Self { locs }
    }

    /// Bytes `range` of stored chunk `c` of `bucket/path`.
    pub(crate) async fn read(
        &mut self,
        client: &Client,
        bucket: &str,
        path: &str,
        c: &BaseChunk,
        range: Range<u64>,
    ) -> Result<Bytes, Error> {
        let mut last = None;
        for fresh in [false, true] {
            let locs = match (&self.locs, fresh) {
                (Some(l), false) => l.clone(),
                _ => {
                    let l = Arc::new(client.locations(bucket, path).await?);
                    self.locs = Some(l.clone());
                    l
                }
            };
            // The chunk where it was, else anywhere in this version.
            let at = locs
                .chunks
                .iter()
                .find(|l| l.offset == c.offset && l.id == c.id)
                .or_else(|| {
                    locs.chunks
                        .iter()
                        .find(|l| l.id == c.id && l.size == c.size)
                })
                .map(|l| l.offset);
            let Some(at) = at else {
                last = Some(Error::Changed {
                    bucket: bucket.to_string(),
                    path: path.to_string(),
                });
                continue;
            };
            match client
                .read_range_at(locs, at + range.start, range.end - range.start)
                .await
            {
                Ok(b) => return Ok(b),
                Err(e) => {
                    tracing::debug!(chunk = %c.id.short(), error = %e, "reading a stored chunk failed; asking for fresh locations");
                    last = Some(e);
                }
            }
        }
        Err(last.unwrap_or(Error::Changed {
            bucket: bucket.to_string(),
            path: path.to_string(),
        }))
    }
}

/// What a staged commit did.
pub(crate) struct Committed {
    pub(crate) file: FileInfo,
    pub(crate) chunks_sent: u64,
    pub(crate) bytes_sent: u64,
}

/// One piece, ready to plan: its chunk, and its bytes if local.
struct Ready {
    chunk: ChunkRef,
    /// Base chunk index of a stored piece.
    stored: Option<usize>,
    bytes: Option<(Bytes, OwnedSemaphorePermit)>,
}

/// Commits `pieces` as the new version of `bucket/path`. Local pieces are
/// read from `file` (the staging file), stored ones that must be sent
/// again from `base` (`chunks` are the layout's base chunks). With
/// `sealing`, every piece is local and sealed before it is hashed (the
/// chunk id is that of the sealed bytes), and the file carries the
/// sealing's metadata.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn commit_pieces(
    client: &Client,
    bucket: &str,
    path: &str,
    opts: &UploadOptions,
    sealing: Option<&Sealing>,
    pieces: &[Piece],
    file: Option<Arc<File>>,
    base: &mut BaseSource,
    chunks: &[BaseChunk],
) -> Result<Committed, Error> {
    let client = client.scoped();
    let span =
        tracing::info_span!("staged_commit", bucket, path, request_id = %client.request_id());
    let mut session: Option<(UploadId, u8, u8)> = None;
    if sealing.is_some() && pieces.iter().any(|p| matches!(p, Piece::Stored { .. })) {
        return Err(Error::Task(
            "a sealed commit takes local pieces only".into(),
        ));
    }
    let res = run(
        &client,
        bucket,
        path,
        opts,
        sealing,
        pieces,
        file,
        base,
        chunks,
        &mut session,
    )
    .instrument(span)
    .await;
    if res.is_err() {
        if let Some((id, ..)) = session {
            if let Err(e) = client.abort_upload(&id).await {
                tracing::warn!(upload = %id, error = %e, "could not abort the upload session");
            }
        }
    }
    res
}

#[allow(clippy::too_many_arguments)]
async fn run(
    client: &Client,
    bucket: &str,
    path: &str,
    opts: &UploadOptions,
    sealing: Option<&Sealing>,
    pieces: &[Piece],
    file: Option<Arc<File>>,
    base: &mut BaseSource,
    chunks: &[BaseChunk],
    session: &mut Option<(UploadId, u8, u8)>,
) -> Result<Committed, Error> {
    let started = std::time::Instant::now();
    let parallel = opts.parallel.max(1);
    let permits = Arc::new(Semaphore::new(parallel));
    let receipts = Receipts::default();
    let mut puts: JoinSet<Result<u64, Error>> = JoinSet::new();
    let mut refs = Vec::with_capacity(pieces.len());
    let mut seen: HashSet<ChunkId> = HashSet::new();
    let (mut sent, mut bytes_sent) = (0u64, 0u64);
    let mut rest = pieces;
    loop {
        // A batch: up to MAX_BATCH pieces, of which at most `parallel` local.
        let mut locals = 0;
        let mut n = 0;
        while n < rest.len() && n < MAX_BATCH {
            if matches!(rest[n], Piece::Local { .. }) {
                if locals == parallel {
                    break;
                }
                locals += 1;
            }
            n += 1;
        }
        let (batch, tail) = rest.split_at(n);
        rest = tail;
        let ready: Vec<Ready> = futures::stream::iter(batch.iter().copied())
            .map(|p| prepare(p, file.clone(), permits.clone(), sealing.cloned()))
            .buffered(parallel)
            .try_collect()
            .await?;
        refs.extend(ready.iter().map(|r| r.chunk));
        let fresh: Vec<Ready> = ready
            .into_iter()
            .filter(|r| seen.insert(r.chunk.id))
            .collect();
        let asked: Vec<ChunkRef> = fresh.iter().map(|r| r.chunk).collect();
        let plan = match *session {
            None => {
                let req = CreateUpload {
                    bucket: bucket.to_string(),
                    path: path.to_string(),
                    replication: opts.replication,
                    chunk_size: opts.chunk_size,
                    chunks: asked.clone(),
                };
                let plan = with_retries("open upload", || client.create_upload(&req)).await?;
                if plan.replication == 0 {
                    return Err(Error::Task("the namenode planned replication 0".into()));
                }
                let quorum = match plan.min_replicas {
                    0 => plan.replication,
                    q => q.min(plan.replication),
                };
                *session = Some((plan.upload, plan.replication, quorum));
                plan
            }
            Some(_) if asked.is_empty() => {
                if rest.is_empty() {
                    break;
                }
                continue;
            }
            Some((id, ..)) => {
                let req = ChunkBatch {
                    chunks: asked.clone(),
                    receipts: receipts.take(),
                };
                match with_retries("plan chunks", || client.send_batch(&id, &req)).await {
                    Ok(p) => p,
                    Err(e) => {
                        receipts.put_back(req.receipts);
                        return Err(e);
                    }
                }
            }
        };
        let Some((upload, replication, quorum)) = *session else {
            return Err(Error::Task("no upload session".into()));
        };
        if plan.upload != upload
            || plan.chunks.len() != asked.len()
            || plan.chunks.iter().zip(&asked).any(|(p, a)| p.id != a.id)
        {
            return Err(Error::Task(format!(
                "the namenode's plan does not match the {} chunks asked for",
                asked.len()
            )));
        }
        let put = |puts: &mut JoinSet<Result<u64, Error>>,
                   chunk: ChunkRef,
                   bytes: Bytes,
                   permit: OwnedSemaphorePermit,
                   target| {
            let job = ChunkPut {
                upload,
                replication,
                quorum,
                chunk,
                bytes,
                receipts: receipts.clone(),
            };
            let client = client.clone();
            let span = tracing::debug_span!("put_chunk", chunk = %chunk.id.short());
            puts.spawn(
                async move {
                    let _permit = permit;
                    job.run(&client, target).await
                }
                .instrument(span),
            );
        };
        // Local pieces first: each gives up its permit (found stored) or
        // hands it to its PUT, so the stored ones below can take permits.
        let mut again = Vec::new();
        for (r, p) in fresh.into_iter().zip(plan.chunks) {
            let Some(target) = p.put else {
                continue; // already stored: its bytes and permit go now
            };
            match (r.bytes, r.stored) {
                (Some((bytes, permit)), _) => put(&mut puts, r.chunk, bytes, permit, target),
                (None, Some(index)) => again.push((r.chunk, index, target)),
                (None, None) => return Err(Error::Task("a piece without bytes".into())),
            }
        }
        for (chunk, index, target) in again {
            let Some(c) = chunks.get(index) else {
                return Err(Error::Task(format!("no base chunk {index}")));
            };
            tracing::info!(chunk = %c.id.short(), "a kept chunk is no longer in the bucket (the version it came from was replaced); sending it again");
            let permit = permits
                .clone()
                .acquire_owned()
                .await
                .map_err(|e| Error::Task(e.to_string()))?;
            let bytes = base.read(client, bucket, path, c, 0..c.size).await?;
            if bytes.len() as u64 != c.size || ChunkId::of(&bytes) != c.id {
                return Err(Error::Integrity {
                    chunk: c.id,
                    detail: "bytes read back do not match the chunk".into(),
                });
            }
            put(&mut puts, chunk, bytes, permit, target);
        }
        while let Some(done) = puts.try_join_next() {
            bytes_sent += done.map_err(|e| Error::Task(format!("chunk PUT: {e}")))??;
            sent += 1;
        }
        if rest.is_empty() {
            break;
        }
    }
    while let Some(done) = puts.join_next().await {
        bytes_sent += done.map_err(|e| Error::Task(format!("chunk PUT: {e}")))??;
        sent += 1;
    }
    let Some((upload, ..)) = *session else {
        return Err(Error::Task("no upload session".into()));
    };
    let chunk_count = refs.len();
    let mut pending = receipts.take();
    let staged = match session::stage_long_lists(client, &upload, &refs, &mut pending).await {
        Ok(staged) => staged,
        Err(e) => {
            receipts.put_back(pending);
            return Err(e);
        }
    };
    let commit = CommitUpload {
        chunks: if staged { Vec::new() } else { refs },
        manifest: staged.then_some(chunk_count as u64),
        receipts: pending,
        meta: {
            let mut meta = opts.meta.clone();
            if let Some(s) = sealing {
                meta.extend(s.meta().clone());
            }
            meta
        },
        part: None,
        condition: None,
    };
    let file = session::commit(client, bucket, path, &upload, &commit).await?;
    tracing::info!(
        upload = %upload,
        size = file.size,
        chunks = chunk_count,
        chunks_sent = sent,
        bytes_sent,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "staged file committed"
    );
    Ok(Committed {
        file,
        chunks_sent: sent,
        bytes_sent,
    })
}

/// A piece ready to plan: a stored one as it is; a local one read from the
/// staging file and hashed (on the blocking pool), holding a permit.
async fn prepare(
    p: Piece,
    file: Option<Arc<File>>,
    permits: Arc<Semaphore>,
    sealing: Option<Sealing>,
) -> Result<Ready, Error> {
    match p {
        Piece::Stored { index, id, size } => Ok(Ready {
            chunk: ChunkRef { id, size },
            stored: Some(index),
            bytes: None,
        }),
        Piece::Local { offset, size } => {
            let permit = permits
                .acquire_owned()
                .await
                .map_err(|e| Error::Task(e.to_string()))?;
            let (id, bytes) = tokio::task::spawn_blocking(move || {
                let bytes = match &file {
                    Some(f) => read_padded(f, offset, size)?,
                    // Nothing local was ever written: a hole.
                    None => Bytes::from(vec![0u8; size as usize]),
                };
                let bytes = match &sealing {
                    Some(s) => Bytes::from(s.seal(&bytes)),
                    None => bytes,
                };
                Ok::<_, std::io::Error>((ChunkId::of(&bytes), bytes))
            })
            .await
            .map_err(|e| Error::Task(format!("hashing a chunk: {e}")))?
            .map_err(|e| Error::Io {
                context: "reading the staging file".into(),
                source: e,
            })?;
            Ok(Ready {
                chunk: ChunkRef {
                    id,
                    size: bytes.len() as u64,
                },
                stored: None,
                bytes: Some((bytes, permit)),
            })
        }
    }
}
