//! Bodies: request bodies stream through [`Hashing`] (MD5 for the ETag, on
//! the shared hashing thread of [`crate::md5`], and the CRC32 / CRC32C /
//! SHA-256 a client declared, in a header or an aws-chunked trailer) into
//! the client library's upload; response bodies are chunk-aligned pieces
//! read a few at a time. Memory per request stays bounded whatever the
//! object size.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use base64::Engine as _;
use blob_client::{Client, FileLocations};
use blob_server::limits::Held;
use bytes::Bytes;
use futures::StreamExt;
use tokio::io::AsyncRead;

use crate::md5::Md5Body;

/// A checksum S3 clients send with a body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Algo {
    Crc32,
    Crc32c,
    Crc64Nvme,
    Sha1,
    Sha256,
}

impl Algo {
    /// The algorithm a header name (`x-amz-checksum-<algo>`) declares.
    pub(crate) fn from_header(name: &str) -> Option<Algo> {
        match name.trim().to_ascii_lowercase().as_str() {
            "x-amz-checksum-crc32" => Some(Algo::Crc32),
            "x-amz-checksum-crc32c" => Some(Algo::Crc32c),
            "x-amz-checksum-crc64nvme" => Some(Algo::Crc64Nvme),
            "x-amz-checksum-sha1" => Some(Algo::Sha1),
            "x-amz-checksum-sha256" => Some(Algo::Sha256),
            _ => None,
        }
    }

    pub(crate) fn header(self) -> &'static str {
        match self {
            Algo::Crc32 => "x-amz-checksum-crc32",
            Algo::Crc32c => "x-amz-checksum-crc32c",
            Algo::Crc64Nvme => "x-amz-checksum-crc64nvme",
            Algo::Sha1 => "x-amz-checksum-sha1",
            Algo::Sha256 => "x-amz-checksum-sha256",
        }
    }
}

/// Running digests of a body.
pub(crate) struct Digests {
    /// Set once the whole body has been hashed (on the MD5 thread).
    md5: Option<[u8; 16]>,
    crc32: Option<crc32fast::Hasher>,
    crc32c: Option<u32>,
    crc64nvme: Option<crc64fast_nvme::Digest>,
    sha1: Option<sha1::Sha1>,
    sha256: Option<sha2::Sha256>,
    /// Bytes seen.
    pub(crate) len: u64,
}

impl Digests {
    pub(crate) fn new(algos: &[Algo]) -> Self {
        Self {
            md5: None,
            crc32: algos.contains(&Algo::Crc32).then(crc32fast::Hasher::new),
            crc32c: algos.contains(&Algo::Crc32c).then_some(0),
            crc64nvme: algos
                .contains(&Algo::Crc64Nvme)
                .then(crc64fast_nvme::Digest::new),
            sha1: algos
                .contains(&Algo::Sha1)
                .then(<sha1::Sha1 as sha2::Digest>::new),
            sha256: algos
                .contains(&Algo::Sha256)
                .then(<sha2::Sha256 as sha2::Digest>::new),
            len: 0,
        }
    }

    fn update(&mut self, data: &[u8]) {
        if let Some(h) = &mut self.crc32 {
            h.update(data);
        }
        if let Some(c) = &mut self.crc32c {
            *c = crc32c::crc32c_append(*c, data);
        }
        if let Some(h) = &mut self.crc64nvme {
            h.write(data);
        }
        if let Some(h) = &mut self.sha1 {
            sha2::Digest::update(h, data);
        }
        if let Some(h) = &mut self.sha256 {
            sha2::Digest::update(h, data);
        }
        self.len += data.len() as u64;
    }

    /// Raw MD5 of the body, once it has been read to its end.
    pub(crate) fn md5(&self) -> Option<[u8; 16]> {
        self.md5
    }

    /// The base64 value of `algo` as S3 sends it, if it was computed.
    pub(crate) fn checksum(&self, algo: Algo) -> Option<String> {
        let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
        match algo {
            Algo::Crc32 => self
                .crc32
                .as_ref()
                .map(|h| b64(&h.clone().finalize().to_be_bytes())),
            Algo::Crc32c => self.crc32c.map(|c| b64(&c.to_be_bytes())),
            Algo::Crc64Nvme => self
                .crc64nvme
                .as_ref()
                .map(|h| b64(&h.sum64().to_be_bytes())),
            Algo::Sha1 => self
                .sha1
                .as_ref()
                .map(|h| b64(&sha2::Digest::finalize(h.clone()))),
            Algo::Sha256 => self
                .sha256
                .as_ref()
                .map(|h| b64(&sha2::Digest::finalize(h.clone()))),
        }
    }
}

/// A body's frames as they pass: each feeds [`Digests`] (MD5 on the
/// shared MD5 thread, the rest here), no more than `limit` bytes pass, and
/// the end is given only once the MD5 is known.
pub(crate) struct Hashing<S> {
    inner: S,
    digests: Arc<Mutex<Digests>>,
    md5: Md5Body,
    limit: u64,
    /// A frame waiting for the MD5 thread to have room.
    held: Option<Bytes>,
    ended: bool,
    done: bool,
}

impl<S> Hashing<S> {
    pub(crate) fn new(inner: S, digests: Arc<Mutex<Digests>>, limit: u64) -> Self {
        Self {
            inner,
            digests,
            md5: Md5Body::new(),
            limit,
            held: None,
            ended: false,
            done: false,
        }
    }
}

impl<S> futures::Stream for Hashing<S>
where
    S: futures::Stream<Item = Result<Bytes, std::io::Error>> + Unpin,
{
    type Item = Result<Bytes, std::io::Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            if this.done {
                return Poll::Ready(None);
            }
            if let Some(frame) = this.held.take() {
                if this.md5.poll_room(cx, frame.len()).is_pending() {
                    this.held = Some(frame);
                    return Poll::Pending;
                }
                this.md5.feed(&frame);
                return Poll::Ready(Some(Ok(frame)));
            }
            if this.ended {
                let md5 = std::task::ready!(this.md5.poll_digest(cx));
                this.done = true;
                return match md5 {
                    Ok(md5) => {
                        this.digests.lock().unwrap_or_else(|p| p.into_inner()).md5 = Some(md5);
                        Poll::Ready(None)
                    }
                    Err(e) => Poll::Ready(Some(Err(std::io::Error::other(e)))),
                };
            }
            match std::task::ready!(Pin::new(&mut this.inner).poll_next(cx)) {
                Some(Ok(frame)) if frame.is_empty() => {}
                Some(Ok(frame)) => {
                    let mut d = this.digests.lock().unwrap_or_else(|p| p.into_inner());
                    d.update(&frame);
                    if d.len > this.limit {
                        this.done = true;
                        return Poll::Ready(Some(Err(std::io::Error::other("EntityTooLarge"))));
                    }
                    drop(d);
                    this.held = Some(frame);
                }
                Some(Err(e)) => {
                    this.done = true;
                    return Poll::Ready(Some(Err(e)));
                }
                None => this.ended = true,
            }
        }
    }
}

/// A body's frames hashed into `digests` (see [`Hashing`]), as an
/// `AsyncRead` for the client library's upload.
pub(crate) fn hashed<S>(
    frames: S,
    digests: Arc<Mutex<Digests>>,
    limit: u64,
) -> impl AsyncRead + Unpin + Send
where
    S: futures::Stream<Item = Result<Bytes, std::io::Error>> + Unpin + Send,
{
    tokio_util::io::StreamReader::new(Hashing::new(frames, digests, limit))
}

/// A request body's frames.
pub(crate) fn frames(
    blob: s3s::dto::StreamingBlob,
) -> impl futures::Stream<Item = Result<Bytes, std::io::Error>> + Unpin + Send {
    blob.map(|r| r.map_err(std::io::Error::other))
}

/// Byte ranges of `[start, end)` cut at chunk boundaries, so that every
/// full chunk is fetched (and verified) whole.
pub(crate) fn pieces(locs: &FileLocations, start: u64, end: u64) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    for (offset, size, _) in blob_client::sse::spans(locs) {
        let (cs, ce) = (offset, offset + size);
        if ce <= start || size == 0 {
            continue;
        }
        if cs >= end {
            break;
        }
        let s = cs.max(start);
        let e = ce.min(end);
        out.push((s, e - s));
    }
    out
}

/// Bytes `[start, end)` of a file as a stream, `read_ahead` pieces in
/// flight. A producer task feeds a one-slot channel, so an abandoned
/// response stops the reads.
///
/// Nothing is answered before the first piece is in hand: a chunk the
/// namenode lists no replica for, or a first piece that cannot be read,
/// fails here (an error status), never as a body that ends early. A piece
/// that fails later ends the stream with an error, which aborts the
/// response: its client sees a truncated transfer, never a clean short
/// body. `held` (the read's place in the gateway's budget) is kept until
/// the stream is done.
pub(crate) async fn range_stream(
    client: Client,
    locs: Arc<FileLocations>,
    (start, end): (u64, u64),
    read_ahead: usize,
    held: Held,
) -> Result<
    impl futures::Stream<Item = Result<Bytes, std::io::Error>> + Send + Sync + Unpin + 'static,
    blob_client::Error,
> {
    if let Some((i, _)) = blob_client::sse::spans(&locs)
        .into_iter()
        .enumerate()
        .find(|(_, (o, size, listed))| *o < end && o + size > start && *size > 0 && !listed)
    {
        return Err(blob_client::Error::NoReplica {
            chunk: locs.chunks[i].id,
        });
    }
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<Vec<Bytes>, blob_client::Error>>(1);
    let list = pieces(&locs, start, end);
    tokio::spawn(async move {
        // Each piece as the frames received: passed on as they are, never
        // copied into one buffer.
        let mut fetched = futures::stream::iter(list)
            .map(|(s, len)| {
                let client = client.clone();
                let locs = locs.clone();
                async move { client.read_range_frames_at(locs, s, len).await }
            })
            .buffered(read_ahead.max(1));
        while let Some(piece) = fetched.next().await {
            let failed = piece.is_err();
            if tx.send(piece).await.is_err() || failed {
                return;
            }
        }
    });
    let first = match rx.recv().await {
        Some(Ok(b)) => Some(b),
        Some(Err(e)) => return Err(e),
        None => None,
    };
    let rest = futures::stream::poll_fn(move |cx| rx.poll_recv(cx));
    Ok(futures::stream::iter(first.map(Ok))
        .chain(rest)
        .flat_map(|piece| match piece {
            Ok(frames) => futures::stream::iter(frames.into_iter().map(Ok).collect::<Vec<_>>()),
            Err(e) => futures::stream::iter(vec![Err(e)]),
        })
        .map(move |item| {
            // The read's window stays reserved until the body is done.
            let _ = &held;
            item.map_err(|e| {
                tracing::warn!(error = %e, "reading an object failed mid-body; aborting the response");
                std::io::Error::other(e.to_string())
            })
        }))
}

/// The largest chunk of `locs` that `[start, end)` touches: the biggest
/// piece [`range_stream`] holds.
pub(crate) fn largest_piece(locs: &FileLocations, start: u64, end: u64) -> u64 {
    pieces(locs, start, end)
        .iter()
        .map(|&(_, len)| len)
        .max()
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    async fn hash(
        data: &'static [u8],
        algos: &[Algo],
        limit: u64,
    ) -> (std::io::Result<Vec<u8>>, Digests) {
        let d = Arc::new(Mutex::new(Digests::new(algos)));
        let frames = futures::stream::iter(
            data.chunks(4)
                .map(|c| Ok(Bytes::from_static(c)))
                .collect::<Vec<_>>(),
        );
        let mut r = hashed(frames, d.clone(), limit);
        let mut out = Vec::new();
        let res = r.read_to_end(&mut out).await.map(|_| out);
        drop(r);
        let d = Arc::into_inner(d)
            .expect("one owner")
            .into_inner()
            .expect("lock");
        (res, d)
    }

    #[tokio::test]
    async fn digests_match_known_values() {
        let (out, d) = hash(
            b"hello world",
            &[Algo::Crc32, Algo::Crc32c, Algo::Sha256],
            100,
        )
        .await;
        assert_eq!(out.expect("read"), b"hello world");
        assert_eq!(
            hex::encode(d.md5().expect("md5")),
            "5eb63bbbe01eeed093cb22bb8f5acdc3"
        );
        // Values as the AWS SDKs compute them for "hello world".
        assert_eq!(d.checksum(Algo::Crc32).as_deref(), Some("DUoRhQ=="));
        assert_eq!(d.checksum(Algo::Crc32c).as_deref(), Some("yZRlqg=="));
        assert_eq!(
            d.checksum(Algo::Sha256).as_deref(),
            Some("uU0nuZNNPgilLlLX2n2r+sSE7+N6U4DukIj3rOLvzek=")
        );
    }

    #[tokio::test]
    async fn a_body_over_the_limit_fails() {
        let (out, d) = hash(&[0u8; 10], &[], 5).await;
        assert!(out.is_err());
        assert_eq!(d.md5(), None);
    }
}
