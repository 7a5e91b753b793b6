//! Bodies: request bodies stream through [`Hashing`] (MD5 for the ETag, and
//! the CRC32 / CRC32C / SHA-256 a client declared, in a header or an
//! aws-chunked trailer) into the client library's upload; response bodies
//! are chunk-aligned pieces read a few at a time. Memory per request stays
//! bounded whatever the object size.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use base64::Engine as _;
use blob_client::{Client, FileLocations};
use bytes::Bytes;
use futures::StreamExt;
use md5::Digest as _;
use tokio::io::{AsyncRead, ReadBuf};

/// A checksum S3 clients send with a body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Algo {
    Crc32,
    Crc32c,
    Sha256,
}

impl Algo {
    /// The algorithm a header name (`x-amz-checksum-<algo>`) declares.
    pub(crate) fn from_header(name: &str) -> Option<Algo> {
        match name.trim().to_ascii_lowercase().as_str() {
            "x-amz-checksum-crc32" => Some(Algo::Crc32),
            "x-amz-checksum-crc32c" => Some(Algo::Crc32c),
            "x-amz-checksum-sha256" => Some(Algo::Sha256),
            _ => None,
        }
    }

    pub(crate) fn header(self) -> &'static str {
        match self {
            Algo::Crc32 => "x-amz-checksum-crc32",
            Algo::Crc32c => "x-amz-checksum-crc32c",
            Algo::Sha256 => "x-amz-checksum-sha256",
        }
    }
}

/// Running digests of a body.
pub(crate) struct Digests {
    md5: md5::Md5,
    crc32: Option<crc32fast::Hasher>,
    crc32c: Option<u32>,
    sha256: Option<sha2::Sha256>,
    /// Bytes seen.
    pub(crate) len: u64,
}

impl Digests {
    pub(crate) fn new(algos: &[Algo]) -> Self {
        Self {
            md5: md5::Md5::new(),
            crc32: algos.contains(&Algo::Crc32).then(crc32fast::Hasher::new),
            crc32c: algos.contains(&Algo::Crc32c).then_some(0),
            sha256: algos.contains(&Algo::Sha256).then(sha2::Sha256::new),
            len: 0,
        }
    }

    fn update(&mut self, data: &[u8]) {
        self.md5.update(data);
        if let Some(h) = &mut self.crc32 {
            h.update(data);
        }
        if let Some(c) = &mut self.crc32c {
            *c = crc32c::crc32c_append(*c, data);
        }
        if let Some(h) = &mut self.sha256 {
            h.update(data);
        }
        self.len += data.len() as u64;
    }

    /// Raw MD5 of everything so far.
    pub(crate) fn md5(&self) -> [u8; 16] {
        self.md5.clone().finalize().into()
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
            Algo::Sha256 => self.sha256.as_ref().map(|h| b64(&h.clone().finalize())),
        }
    }
}

/// An `AsyncRead` that feeds [`Digests`] with every byte it yields and
/// refuses to yield more than `limit` bytes.
pub(crate) struct Hashing<R> {
    inner: R,
    digests: Arc<Mutex<Digests>>,
    limit: u64,
}

impl<R> Hashing<R> {
    pub(crate) fn new(inner: R, digests: Arc<Mutex<Digests>>, limit: u64) -> Self {
        Self {
            inner,
            digests,
            limit,
        }
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for Hashing<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = &r {
            let new = &buf.filled()[before..];
            if !new.is_empty() {
                let mut d = self.digests.lock().unwrap_or_else(|p| p.into_inner());
                d.update(new);
                if d.len > self.limit {
                    return Poll::Ready(Err(std::io::Error::other("EntityTooLarge")));
                }
            }
        }
        r
    }
}

/// A request body as an `AsyncRead`.
pub(crate) fn reader(blob: s3s::dto::StreamingBlob) -> impl AsyncRead + Unpin + Send {
    tokio_util::io::StreamReader::new(blob.map(|r| r.map_err(std::io::Error::other)))
}

/// Byte ranges of `[start, end)` cut at chunk boundaries, so that every
/// full chunk is fetched (and verified) whole.
pub(crate) fn pieces(locs: &FileLocations, start: u64, end: u64) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    for c in &locs.chunks {
        let (cs, ce) = (c.offset, c.offset + c.size);
        if ce <= start || c.size == 0 {
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
pub(crate) fn range_stream(
    client: Client,
    locs: Arc<FileLocations>,
    start: u64,
    end: u64,
    read_ahead: usize,
) -> impl futures::Stream<Item = Result<Bytes, std::io::Error>> + Send + Sync + Unpin + 'static {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(1);
    let list = pieces(&locs, start, end);
    tokio::spawn(async move {
        let mut fetched = futures::stream::iter(list)
            .map(|(s, len)| {
                let client = client.clone();
                let locs = locs.clone();
                async move { client.read_range_at(locs, s, len).await }
            })
            .buffered(read_ahead.max(1));
        while let Some(piece) = fetched.next().await {
            let item = piece.map_err(|e| {
                tracing::warn!(error = %e, "reading an object failed mid-body");
                std::io::Error::other(e.to_string())
            });
            let failed = item.is_err();
            if tx.send(item).await.is_err() || failed {
                return;
            }
        }
    });
    let mut rx = rx;
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn digests_match_known_values() {
        let d = Arc::new(Mutex::new(Digests::new(&[
            Algo::Crc32,
            Algo::Crc32c,
            Algo::Sha256,
        ])));
        let mut r = Hashing::new(&b"hello world"[..], d.clone(), 100);
        let mut out = Vec::new();
        r.read_to_end(&mut out).await.expect("read");
        let d = d.lock().expect("lock");
        assert_eq!(hex::encode(d.md5()), "5eb63bbbe01eeed093cb22bb8f5acdc3");
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
        let d = Arc::new(Mutex::new(Digests::new(&[])));
        let mut r = Hashing::new(&[0u8; 10][..], d, 5);
        let mut out = Vec::new();
        assert!(r.read_to_end(&mut out).await.is_err());
    }
}
