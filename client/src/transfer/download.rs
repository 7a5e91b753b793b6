//! Download and range reads: chunks fetched in parallel from the replicas
//! the namenode lists (best first), verified against their ids, written in
//! order. A bad replica is reported and the next one tried; when every
//! replica failed the locations are fetched again (URLs expire) and the
//! round retried with backoff.

use std::io::Write;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use blob_common::names::{validate_bucket, validate_path};
use blob_common::proto::namenode::{BadReplica, FileInfo, FileLocations, ReplicaUrl};
use blob_common::seal::{self, DataKey};
use blob_common::ChunkId;
use bytes::Bytes;
use futures::StreamExt;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tracing::Instrument;

use super::{backoff, AbortOnDrop, ChunkBody, ProgressCounter};
use crate::aligned::SequentialFile;
use crate::error::redact_str;
use crate::{Client, DownloadOptions, Error};

/// Rounds over all replicas of a chunk (locations refreshed in between).
const ROUNDS: u32 = 4;

pub(crate) async fn download<W>(
    client: &Client,
    bucket: &str,
    path: &str,
    writer: W,
    opts: &DownloadOptions,
) -> Result<FileInfo, Error>
where
    W: AsyncWrite + Unpin + Send,
{
    validate_bucket(bucket)?;
    validate_path(path)?;
    let client = client.scoped();
    let span = tracing::info_span!("download", bucket, path, request_id = %client.request_id());
    let mut out = Output::Writer(writer);
    async move {
        let locs = client.locations(bucket, path).await?;
        write_file(&client, locs, &mut out, opts).await
    }
    .instrument(span)
    .await
}

/// [`download`] into a local file, written from the blocking pool.
async fn download_to_file(
    client: &Client,
    bucket: &str,
    path: &str,
    mut out: Output<tokio::io::Sink>,
    opts: &DownloadOptions,
) -> Result<(FileInfo, std::fs::File), Error> {
    let client = client.scoped();
    let span = tracing::info_span!("download", bucket, path, request_id = %client.request_id());
    let info = async {
        let locs = client.locations(bucket, path).await?;
        write_file(&client, locs, &mut out, opts).await
    }
    .instrument(span)
    .await?;
    let file = match out {
        Output::File(Some(f)) => f,
        Output::Sequential(f) => f
            .finish()
            .await
            .map_err(|e| Error::io("writing the output", e))?,
        _ => return Err(Error::Task("output file lost".into())),
    };
    Ok((info, file))
}

/// Where a download's bytes go.
enum Output<W> {
    /// Any async writer (stdout, a caller's buffer, …).
    Writer(W),
    /// A special file (`/dev/null`, a pipe), written from the blocking
    /// pool straight out of the received frames.
    File(Option<std::fs::File>),
    /// A new regular file: preallocated, written in aligned blocks past
    /// the page cache ([`crate::aligned`]).
    Sequential(SequentialFile),
}

impl<W: AsyncWrite + Unpin + Send> Output<W> {
    /// Told the size of the file to come.
    fn expect(&mut self, size: u64) {
        if let Output::Sequential(f) = self {
            f.preallocate(size);
        }
    }

    async fn write(&mut self, body: ChunkBody) -> Result<(), Error> {
        match self {
            Output::Sequential(file) => {
                for f in &body.frames {
                    file.write(f)
                        .await
                        .map_err(|e| Error::io("writing the output", e))?;
                }
                Ok(())
            }
            Output::Writer(w) => {
                for f in &body.frames {
                    w.write_all(f)
                        .await
                        .map_err(|e| Error::io("writing the output", e))?;
                }
                Ok(())
            }
            Output::File(slot) => {
                let Some(mut file) = slot.take() else {
                    return Err(Error::Task("output file lost by an earlier write".into()));
                };
                let (file, res) = tokio::task::spawn_blocking(move || {
                    let res = body.frames.iter().try_for_each(|f| file.write_all(f));
                    (file, res)
                })
                .await
                .map_err(|e| Error::Task(format!("writing the output: {e}")))?;
                *slot = Some(file);
                res.map_err(|e| Error::io("writing the output", e))
            }
        }
    }

    async fn flush(&mut self) -> Result<(), Error> {
        match self {
            Output::Writer(w) => w
                .flush()
                .await
                .map_err(|e| Error::io("writing the output", e)),
            Output::File(_) | Output::Sequential(_) => Ok(()),
        }
    }
}

/// Fetches every chunk of `locs` and writes them in order.
async fn write_file<W>(
    client: &Client,
    locs: FileLocations,
    out: &mut Output<W>,
    opts: &DownloadOptions,
) -> Result<FileInfo, Error>
where
    W: AsyncWrite + Unpin + Send,
{
    let started = std::time::Instant::now();
    let locator = Arc::new(Locator::open(client.clone(), Arc::new(locs)).await?);
    let file = locator.file().clone();
    out.expect(file.size);
    let progress = ProgressCounter::new(opts.progress.clone());
    let n = locator.chunk_count();
    let mut chunks = futures::stream::iter(0..n)
        .map(|index| {
            let locator = locator.clone();
            // Spawned so verification and body reads use every core;
            // aborted if the download stops early.
            AbortOnDrop(tokio::spawn(
                async move { locator.fetch(index, None).await }.in_current_span(),
            ))
        })
        .buffered(opts.parallel.max(1));
    let mut written = 0u64;
    while let Some(body) = chunks.next().await {
        let body = body??;
        let len = body.len as u64;
        out.write(body).await?;
        written += len;
        progress.add(len);
    }
    out.flush().await?;
    tracing::info!(
        size = written,
        chunks = n,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "download done"
    );
    Ok(file)
}

pub(crate) async fn download_to_path(
    client: &Client,
    bucket: &str,
    path: &str,
    local: &Path,
    opts: &DownloadOptions,
) -> Result<FileInfo, Error> {
    validate_bucket(bucket)?;
    validate_path(path)?;
    if let Some(special) = existing_special_file(local).await {
        // A device, FIFO or socket (`/dev/null`, a named pipe): written in
        // place. Renaming a temp file over it would replace the device node
        // with a regular file.
        let f = tokio::fs::OpenOptions::new()
            .write(true)
            .open(local)
            .await
            .map_err(|e| Error::io(format!("opening {}", local.display()), e))?
            .into_std()
            .await;
        tracing::debug!(path = %local.display(), kind = special, "writing to a special file in place");
        let out = Output::File(Some(f));
        return Ok(download_to_file(client, bucket, path, out, opts).await?.0);
    }
    let name = local.file_name().ok_or_else(|| {
        Error::io(
            format!("downloading to {}", local.display()),
            std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a file name"),
        )
    })?;
    let dir = match local.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".{}.part", hex::encode(rand::random::<[u8; 4]>())));
    let tmp = TempFile(Some(dir.join(tmp_name)));
    let tmp_path = tmp.path().to_path_buf();
    let f = tokio::fs::File::create(&tmp_path)
        .await
        .map_err(|e| Error::io(format!("creating {}", tmp_path.display()), e))?
        .into_std()
        .await;
    let out = Output::Sequential(SequentialFile::new(f, &tmp_path));
    let (info, f) = download_to_file(client, bucket, path, out, opts).await?;
    tokio::task::spawn_blocking(move || f.sync_all())
        .await
        .map_err(|e| Error::Task(format!("syncing the output: {e}")))?
        .map_err(|e| Error::io(format!("syncing {}", tmp_path.display()), e))?;
    tokio::fs::rename(&tmp_path, local).await.map_err(|e| {
        Error::io(
            format!("renaming {} to {}", tmp_path.display(), local.display()),
            e,
        )
    })?;
    tmp.keep();
    Ok(info)
}

/// What kind of special file `path` is, if it exists and is neither a
/// regular file nor a directory (symbolic links followed).
async fn existing_special_file(path: &Path) -> Option<&'static str> {
    use std::os::unix::fs::FileTypeExt;
    let t = tokio::fs::metadata(path).await.ok()?.file_type();
    if t.is_char_device() {
        Some("character device")
    } else if t.is_block_device() {
        Some("block device")
    } else if t.is_fifo() {
        Some("FIFO")
    } else if t.is_socket() {
        Some("socket")
    } else {
        None
    }
}

/// A temporary file removed when dropped, unless kept.
struct TempFile(Option<PathBuf>);

impl TempFile {
    fn path(&self) -> &Path {
        self.0.as_deref().unwrap_or(Path::new(""))
    }

    fn keep(mut self) {
        self.0 = None;
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = std::fs::remove_file(p);
        }
    }
}

pub(crate) async fn read_range_at(
    client: &Client,
    locs: Arc<FileLocations>,
    start: u64,
    len: u64,
) -> Result<Bytes, Error> {
    Ok(read_range_frames(client, locs, start, len)
        .await?
        .into_bytes())
}

/// [`read_range_at`] as the frames received (no copy into one buffer).
pub(crate) async fn read_range_frames(
    client: &Client,
    locs: Arc<FileLocations>,
    start: u64,
    len: u64,
) -> Result<ChunkBody, Error> {
    let size = locs.file.size;
    if start > size {
        return Err(Error::RangeNotSatisfiable { start, size });
    }
    let end = start.saturating_add(len).min(size);
    if end == start {
        return Ok(ChunkBody::default());
    }
    let locator = Arc::new(Locator::open(client.clone(), locs).await?);
    let pieces = plan_range(&locator.initial_chunks(), start..end);
    let mut fetched = futures::stream::iter(pieces)
        .map(|(index, range)| {
            let locator = locator.clone();
            AbortOnDrop(tokio::spawn(
                async move { locator.fetch(index, range).await }.in_current_span(),
            ))
        })
        .buffered(crate::config::DEFAULT_PARALLEL);
    let mut body = ChunkBody::default();
    while let Some(part) = fetched.next().await {
        let part = part??;
        body.len += part.len;
        body.frames.extend(part.frames);
    }
    Ok(body)
}

/// The chunks a byte range `want` of a file touches: `(index, None)` for a
/// chunk wholly inside it, `(index, Some(range within the chunk))` for a
/// partial one. `chunks` are `(offset, size)` in file order.
pub(crate) fn plan_range(
    chunks: &[(u64, u64)],
    want: Range<u64>,
) -> Vec<(usize, Option<Range<u64>>)> {
    let mut out = Vec::new();
    for (i, &(offset, size)) in chunks.iter().enumerate() {
        let chunk_end = offset + size;
        if chunk_end <= want.start || size == 0 {
            continue;
        }
        if offset >= want.end {
            break;
        }
        let from = want.start.max(offset) - offset;
        let to = want.end.min(chunk_end) - offset;
        out.push((i, (from > 0 || to < size).then_some(from..to)));
    }
    out
}

/// The chunk list of one version of a file, with replica URLs that are
/// refreshed from the namenode when every replica of a chunk failed.
/// Concurrent refreshes coalesce into one call.
struct Locator {
    client: Client,
    file: FileInfo,
    /// Chunk ids and sizes as first listed: refreshed lists must agree.
    chunks: Vec<(ChunkId, u64, u64)>,
    /// Offset and size of each chunk's bytes in the file: those of
    /// `chunks`, or for a sealed file those of the plaintext they hold.
    spans: Vec<(u64, u64)>,
    /// The key of a sealed file.
    seal: Option<DataKey>,
    current: tokio::sync::Mutex<(u64, Arc<FileLocations>)>,
}

impl Locator {
    /// The locator of `locs`, with the key to open its chunks if they are
    /// sealed (checked against the file's metadata).
    async fn open(client: Client, locs: Arc<FileLocations>) -> Result<Self, Error> {
        let f = &locs.file;
        let seal = client
            .sealing_of(&f.bucket, &f.path, &f.meta)
            .await?
            .map(|s| s.key().clone());
        Self::new(client, locs, seal)
    }

    fn new(client: Client, locs: Arc<FileLocations>, seal: Option<DataKey>) -> Result<Self, Error> {
        let bad =
            |detail: String| Error::protocol(&client.meta_url(&["file", "locations"], &[]), detail);
        let mut offset = 0u64;
        let mut chunks = Vec::with_capacity(locs.chunks.len());
        for c in &locs.chunks {
            if c.offset != offset {
                return Err(bad(format!(
                    "chunk {} at offset {}, expected {offset}",
                    c.id, c.offset
                )));
            }
            chunks.push((c.id, c.offset, c.size));
            offset += c.size;
        }
        // Where each chunk's bytes lie in the file (its plaintext, when
        // sealed); a sealed chunk of an impossible size counts 0 bytes, so
        // the sum cannot match.
        let spans: Vec<(u64, u64)> = crate::sse::spans(&locs)
            .into_iter()
            .map(|(o, size, _)| (o, size))
            .collect();
        let plain = spans.last().map_or(0, |&(o, size)| o + size);
        if plain != locs.file.size {
            return Err(bad(format!(
                "chunks add up to {plain} bytes, file is {}",
                locs.file.size
            )));
        }
        Ok(Self {
            client,
            file: locs.file.clone(),
            chunks,
            spans,
            seal,
            current: tokio::sync::Mutex::new((0, locs)),
        })
    }

    fn file(&self) -> &FileInfo {
        &self.file
    }

    fn chunk_count(&self) -> usize {
        self.chunks.len()
    }

    fn initial_chunks(&self) -> Vec<(u64, u64)> {
        self.spans.clone()
    }

    async fn snapshot(&self) -> (u64, Arc<FileLocations>) {
        self.current.lock().await.clone()
    }

    /// Fresh locations, unless another task refreshed since `seen`.
    async fn refresh(&self, seen: u64) -> Result<(u64, Arc<FileLocations>), Error> {
        let mut cur = self.current.lock().await;
        if cur.0 != seen {
            return Ok(cur.clone());
        }
        // The same version again, wherever the file is now.
        let (bucket, path) = (&self.file.bucket, &self.file.path);
        let fresh = match &self.file.version_id {
            Some(v) => self.client.locations_of_version(bucket, path, v).await?,
            None => self.client.locations(bucket, path).await?,
        };
        if fresh.file.version != self.file.version {
            return Err(Error::Changed {
                bucket: self.file.bucket.clone(),
                path: self.file.path.clone(),
            });
        }
        *cur = (cur.0 + 1, Arc::new(fresh));
        Ok(cur.clone())
    }

    /// Chunk `index`, whole (verified) or the part `range` of it.
    async fn fetch(&self, index: usize, range: Option<Range<u64>>) -> Result<ChunkBody, Error> {
        let Some(&(id, _, size)) = self.chunks.get(index) else {
            return Err(Error::Task(format!("no chunk {index}")));
        };
        let (mut generation, mut locs) = self.snapshot().await;
        let mut attempts = 0;
        let mut last = Error::NoReplica { chunk: id };
        for round in 1..=ROUNDS {
            let replicas = match locs.chunks.get(index) {
                Some(c) if c.id == id && c.size == size => c.replicas.clone(),
                _ => {
                    return Err(Error::Changed {
                        bucket: self.file.bucket.clone(),
                        path: self.file.path.clone(),
                    })
                }
            };
            if replicas.is_empty() {
                last = Error::NoReplica { chunk: id };
            }
            let skip_edges = self.client.edge_down() && replicas.iter().any(|r| r.edge.is_none());
            for replica in &replicas {
                if replica.edge.is_some() && skip_edges {
                    continue;
                }
                attempts += 1;
                let fetched = match &self.seal {
                    None => self.fetch_from(id, size, replica, range.clone()).await,
                    Some(key) => {
                        self.fetch_sealed(key, id, size, replica, range.clone())
                            .await
                    }
                };
                match fetched {
                    Ok(b) => return Ok(b),
                    Err(e) => {
                        if replica.edge.is_some() && e.is_unreachable() {
                            // Read from the datanodes until the edge is back.
                            self.client.mark_edge_down();
                        }
                        tracing::debug!(
                            chunk = %id.short(),
                            node = %replica.node,
                            url = %redact_str(&replica.url),
                            error = %e,
                            "replica failed"
                        );
                        last = e;
                    }
                }
            }
            if round == ROUNDS {
                break;
            }
            tracing::warn!(chunk = %id.short(), round, error = %last, "every replica failed; refreshing locations");
            tokio::time::sleep(backoff(round)).await;
            match self.refresh(generation).await {
                Ok((g, l)) => {
                    generation = g;
                    locs = l;
                }
                Err(e) if e.is_retryable() => last = e,
                Err(e) => return Err(e),
            }
        }
        Err(Error::Exhausted {
            chunk: id,
            attempts,
            last: Box::new(last),
        })
    }

    /// The plaintext `range` (all of it: `None`) of sealed chunk `id` from
    /// one replica: the blocks holding it are fetched (verified against
    /// the id when that is the whole chunk) and opened.
    async fn fetch_sealed(
        &self,
        key: &DataKey,
        id: ChunkId,
        size: u64,
        replica: &ReplicaUrl,
        range: Option<Range<u64>>,
    ) -> Result<ChunkBody, Error> {
        let plain_size = seal::plain_len(size).unwrap_or(0);
        let want = range.unwrap_or(0..plain_size);
        let (stored, first_block, skip) = seal::stored_range(want.clone(), size);
        let whole = stored.start == 0 && stored.end == size;
        let body = self
            .fetch_from(id, size, replica, (!whole).then_some(stored))
            .await?;
        let key = key.clone();
        let len = (want.end - want.start) as usize;
        tokio::task::spawn_blocking(move || {
            let mut buf = Vec::with_capacity(body.len);
            for f in &body.frames {
                buf.extend_from_slice(f);
            }
            let opened =
                key.open_in_place(&mut buf, first_block)
                    .map_err(|e| Error::Integrity {
                        chunk: id,
                        detail: e.to_string(),
                    })?;
            let skip = skip as usize;
            if opened < skip + len {
                return Err(Error::Integrity {
                    chunk: id,
                    detail: format!("{opened} bytes opened, {} expected", skip + len),
                });
            }
            let bytes = Bytes::from(buf).slice(skip..skip + len);
            Ok(ChunkBody {
                frames: if len > 0 { vec![bytes] } else { Vec::new() },
                len,
                digest: None,
            })
        })
        .await
        .map_err(|e| Error::Task(format!("opening a sealed chunk: {e}")))?
    }

    /// One replica. A whole chunk is hashed as it arrives (in this per-chunk
    /// task); a mismatch is reported to the namenode as a bad replica.
    async fn fetch_from(
        &self,
        id: ChunkId,
        size: u64,
        replica: &ReplicaUrl,
        range: Option<Range<u64>>,
    ) -> Result<ChunkBody, Error> {
        let body = self
            .client
            .get_chunk(&replica.url, &id, size, range, replica.edge.is_some())
            .await?;
        let actual = match body.digest {
            None => return Ok(body),
            Some(actual) if actual == id => return Ok(body),
            Some(actual) => actual,
        };
        let reason = format!("content hashes to {actual}");
        if let Some(zone) = &replica.edge {
            // An edge verifies what it serves; it is no replica to report.
            tracing::warn!(chunk = %id.short(), edge = %zone, %reason, "edge served bad bytes");
            return Err(Error::Integrity {
                chunk: id,
                detail: format!("edge of zone {zone}: {reason}"),
            });
        }
        tracing::warn!(chunk = %id.short(), node = %replica.node, %reason, "bad replica");
        let report = BadReplica {
            chunk: id,
            node: replica.node,
            reason: reason.clone(),
            actual: Some(actual),
        };
        if let Err(e) = self.client.report_bad_replica(&report).await {
            tracing::warn!(chunk = %id.short(), node = %replica.node, error = %e, "could not report bad replica");
        }
        Err(Error::Integrity {
            chunk: id,
            detail: format!("replica on {} is corrupt: {reason}", replica.node),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_touches_only_its_chunks() {
        let chunks = [(0, 10), (10, 10), (20, 5)];
        assert_eq!(
            plan_range(&chunks, 0..25),
            vec![(0, None), (1, None), (2, None)]
        );
        assert_eq!(plan_range(&chunks, 3..7), vec![(0, Some(3..7))]);
        assert_eq!(
            plan_range(&chunks, 5..22),
            vec![(0, Some(5..10)), (1, None), (2, Some(0..2))]
        );
        assert_eq!(plan_range(&chunks, 10..20), vec![(1, None)]);
        assert_eq!(
            plan_range(&chunks, 19..21),
            vec![(1, Some(9..10)), (2, Some(0..1))]
        );
        assert_eq!(plan_range(&chunks, 24..25), vec![(2, Some(4..5))]);
        assert!(plan_range(&chunks, 25..25).is_empty());
        assert!(plan_range(&[], 0..1).is_empty());
    }

    #[tokio::test]
    async fn devices_are_special_files_and_regular_files_are_not() {
        assert_eq!(
            existing_special_file(Path::new("/dev/null")).await,
            Some("character device")
        );
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let f = dir.path().join("f");
        std::fs::write(&f, b"x").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(existing_special_file(&f).await, None);
        assert_eq!(existing_special_file(dir.path()).await, None);
        assert_eq!(
            existing_special_file(&dir.path().join("missing")).await,
            None
        );
    }

    #[test]
    fn temp_file_is_removed_unless_kept() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let a = dir.path().join("a");
        std::fs::write(&a, b"x").unwrap_or_else(|e| panic!("{e}"));
        drop(TempFile(Some(a.clone())));
        assert!(!a.exists());
        let b = dir.path().join("b");
        std::fs::write(&b, b"x").unwrap_or_else(|e| panic!("{e}"));
        TempFile(Some(b.clone())).keep();
        assert!(b.exists());
    }
}
