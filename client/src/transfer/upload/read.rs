//! Reading the input: cut into chunks of `chunk_size` (the last one
//! shorter) in buffers reused from chunk to chunk ([`BufferPool`]), each
//! holding a permit of the upload's semaphore, hashed on the blocking pool
//! and handed to the coordinator in order.

use std::sync::{Arc, Mutex};

use blob_common::proto::namenode::ChunkRef;
use blob_common::seal::{sealed_len, DataKey};
use blob_common::ChunkId;
use bytes::Bytes;
use futures::StreamExt;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};

use crate::Error;

/// Chunks hashed at once (the machine's cores do the rest of the work).
const MAX_HASHING: usize = 4;

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
    seal: Option<DataKey>,
    permits: Arc<Semaphore>,
    tx: mpsc::Sender<Msg>,
) -> Result<Vec<ChunkRef>, Error>
where
    R: AsyncRead + Unpin + Send,
{
    // One buffer per permit at most, reused from chunk to chunk: no fresh
    // pages to fault in and zero for every chunk.
    let pool = BufferPool::new(permits.available_permits());
    // Sealed chunks go in buffers of their own, reused the same way.
    let sealed_pool = BufferPool::new(permits.available_permits());
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
        .map(|item| {
            let seal = seal.clone();
            let pool = sealed_pool.clone();
            async move {
                let (buf, permit, known) = item?;
                let (id, bytes) = match (known, seal) {
                    (Some(id), None) => (id, buf.into_bytes()),
                    (_, seal) => tokio::task::spawn_blocking(move || match seal {
                        Some(key) => {
                            let mut sealed = pool.take(sealed_len(chunk_size as u64) as usize);
                            key.seal_into(&buf, &mut sealed.vec);
                            drop(buf);
                            (ChunkId::of(&sealed), sealed.into_bytes())
                        }
                        None => (ChunkId::of(&buf), buf.into_bytes()),
                    })
                    .await
                    .map_err(|e| Error::Task(format!("hashing a chunk: {e}")))?,
                };
                Ok::<_, Error>(ReadyChunk {
                    chunk: ChunkRef {
                        id,
                        size: bytes.len() as u64,
                    },
                    bytes,
                    permit,
                })
            }
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

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
            read_chunks(
                std::io::Cursor::new(data),
                chunk_size,
                whole,
                None,
                permits,
                tx,
            )
            .await
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
        let r = read_chunks(Broken, 1024, None, None, Arc::new(Semaphore::new(1)), tx).await;
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
}
