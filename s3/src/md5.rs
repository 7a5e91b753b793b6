//! MD5 for ETags, many bodies at once. S3 names an object or part by the
//! MD5 of its bytes, so every byte a client uploads is hashed once with it.
//! One MD5 stream cannot go faster than about 0.8 GB/s on a core here: each
//! 64-byte block depends on the one before. Independent streams can share
//! a core, though, one per SIMD lane (16 with AVX-512, 8 with AVX2), and a
//! gateway under load has many bodies arriving at once (`aws s3 cp` sends
//! 10 parts in parallel).
//!
//! So one thread does the MD5 of every body in flight ([`Lanes`]): bodies
//! hand it their frames as they pass (a reference, not a copy), each round
//! feeds `md5_many` the same number of queued bytes from every body that
//! has some (see [`run`]), and the thread answers a body's digest once all
//! of its frames are hashed. Each body may run at
//! most [`CREDIT`] bytes ahead of its hashing, so memory stays bounded when
//! the thread falls behind. A body alone gets the single-stream speed, which
//! is still faster than the `md-5` crate here (0.8 against 0.6 GB/s).

use std::collections::{HashMap, VecDeque};
use std::future::Future as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex, OnceLock};
use std::task::{Context, Poll};

use bytes::Bytes;
use md5_many::{Md5Many, Md5State};
use tokio::sync::{oneshot, Semaphore};
use tokio_util::sync::PollSemaphore;

/// Bytes a body may hand over before their MD5 is done.
pub(crate) const CREDIT: usize = 2 << 20;

enum Job {
    Data {
        id: u64,
        bytes: Bytes,
        credit: Credit,
    },
    Finish {
        id: u64,
        reply: oneshot::Sender<[u8; 16]>,
    },
    Abandon {
        id: u64,
    },
}

enum Queued {
    Data(Bytes, Credit),
    Finish(oneshot::Sender<[u8; 16]>),
}

/// The credit a queued frame holds, given back to its body when dropped:
/// once the frame is hashed, and also if it never will be (the body was
/// abandoned, or the thread died), so no body waits for credit forever.
struct Credit {
    sem: Arc<Semaphore>,
    permits: u32,
}

impl Credit {
    /// Gives back all but `keep` permits.
    fn shrink_to(&mut self, keep: u32) {
        if keep < self.permits {
            self.sem.add_permits((self.permits - keep) as usize);
            self.permits = keep;
        }
    }
}

impl Drop for Credit {
    fn drop(&mut self) {
        self.sem.add_permits(self.permits as usize);
    }
}

/// The hashing thread's handle; `None` when the thread could not start
/// (then every body hashes by itself).
pub(crate) struct Lanes {
    tx: Mutex<mpsc::Sender<Job>>,
    next_id: AtomicU64,
}

fn lanes() -> Option<&'static Lanes> {
    static LANES: OnceLock<Option<Lanes>> = OnceLock::new();
    LANES
        .get_or_init(|| {
            let (tx, rx) = mpsc::channel();
            match std::thread::Builder::new()
                .name("md5-lanes".into())
                .spawn(move || {
                    let _alive = Alive;
                    run(rx)
                }) {
                Ok(_) => Some(Lanes {
                    tx: Mutex::new(tx),
                    next_id: AtomicU64::new(1),
                }),
                Err(e) => {
                    tracing::warn!(error = %e, "starting the MD5 thread failed; bodies hash one by one");
                    None
                }
            }
        })
        .as_ref()
        .filter(|_| !THREAD_GONE.load(Ordering::Relaxed))
}

/// Set if the hashing thread ever ends (a panic: it never returns
/// otherwise). Bodies started after that hash one by one, so one bug
/// costs the uploads in flight, not every upload after them.
static THREAD_GONE: AtomicBool = AtomicBool::new(false);

/// Marks the thread gone when dropped, also while unwinding.
struct Alive;

impl Drop for Alive {
    fn drop(&mut self) {
        THREAD_GONE.store(true, Ordering::Relaxed);
        tracing::error!(
            "the MD5 thread stopped; ETags are computed one body at a time from now on"
        );
    }
}

impl Lanes {
    fn send(&self, job: Job) -> bool {
        let tx = self.tx.lock().unwrap_or_else(|p| p.into_inner());
        tx.send(job).is_ok()
    }
}

struct Entry {
    state: Md5State,
    queue: VecDeque<Queued>,
    /// Round in which this body last had bytes hashed (fair turns when
    /// more bodies are waiting than there are lanes).
    served: u64,
}

impl Entry {
    /// Bytes queued ahead of the body's end (or of its next non-data item).
    fn pending(&self) -> usize {
        self.queue
            .iter()
            .map_while(|q| match q {
                Queued::Data(b, ..) => Some(b.len()),
                _ => None,
            })
            .sum()
    }

    /// Whether the body has ended: its digest is awaited.
    fn ending(&self) -> bool {
        self.queue.iter().any(|q| matches!(q, Queued::Finish(_)))
    }

    /// Takes exactly `len` queued bytes (at most [`Entry::pending`]): a
    /// slice of the front frame when it holds them, else a copy of the
    /// frames in order. Frames used up give back their credit.
    fn take(&mut self, len: usize) -> Bytes {
        let mut out: Option<Vec<u8>> = None;
        let mut first: Option<Bytes> = None;
        let mut need = len;
        while need > 0 {
            let Some(Queued::Data(bytes, mut credit)) = self.queue.pop_front() else {
                break;
            };
            let used = bytes.slice(..need.min(bytes.len()));
            if bytes.len() > need {
                // The rest stays at the front, holding no more credit than
                // its length: a body's held credit never exceeds its queued
                // bytes, so the < 64 bytes it may leave unhashed can never
                // keep it from the room its next frame needs.
                let rest = bytes.slice(need..);
                credit.shrink_to(credit.permits.min(rest.len() as u32));
                self.queue.push_front(Queued::Data(rest, credit));
            }
            need -= used.len();
            match (&mut out, first.take()) {
                (None, None) if need == 0 => return used,
                (None, None) => first = Some(used),
                (None, Some(f)) => {
                    let mut v = Vec::with_capacity(len);
                    v.extend_from_slice(&f);
                    v.extend_from_slice(&used);
                    out = Some(v);
                }
                (Some(v), _) => v.extend_from_slice(&used),
            }
        }
        match (out, first) {
            (Some(v), _) => Bytes::from(v),
            (None, Some(f)) => f,
            (None, None) => Bytes::new(),
        }
    }

    /// Bytes this body can hash now: whole 64-byte blocks, so that its
    /// state stays block-aligned (`md5_many` has a fast path for aligned
    /// states only), or everything once the body has ended.
    fn hashable(&self) -> usize {
        let pending = self.pending();
        if self.ending() {
            pending
        } else {
            pending & !63
        }
    }

    /// Hashes what [`Entry::hashable`] allows, alone.
    fn hash_alone(&mut self) {
        let n = self.hashable();
        let bytes = self.take(n);
        self.state.update(&bytes);
    }
}

/// A body with fewer bytes queued hashes them alone: a round takes the
/// same length from every lane, so one short input would shorten the
/// round for all the others.
const MIN_LANE_BYTES: usize = 4096;

/// The most one body gives to one round.
const MAX_LANE_BYTES: usize = 1 << 20;

/// Fewest bodies worth a round of lanes: with fewer, each hashes alone
/// (padding 3 bodies to 16 lanes measured 1.0 GB/s against 0.84 alone).
const MIN_LANES: usize = 3;

/// How long the thread lets open bodies that have nothing queued catch up
/// before it hashes the others without them.
const GATHER: std::time::Duration = std::time::Duration::from_millis(2);

/// Rounds hashed in lanes so far (tests check the lanes were used).
static LANE_ROUNDS: AtomicU64 = AtomicU64::new(0);

/// The hashing thread: gathers frames and hashes them in rounds, answering
/// each body's digest once its bytes are done.
///
/// `md5_many` is fast only when every lane gets the same number of bytes
/// (measured here, 16 lanes of AVX-512: 4.7 GB/s equal, 1.0 GB/s with
/// frames of mixed sizes), and when it gets all its lanes (9 to 15 inputs
/// ran at 1.8 to 2.6 GB/s, no faster than 8). So a round takes the same
/// length from every waiting body (the least any of them has queued, up to
/// [`MAX_LANE_BYTES`], copied together when it spans frames), and fills
/// the lanes nobody needs with a copy of a real input whose result is
/// dropped: 10 bodies padded to 16 lanes hash at 3.2 GB/s.
///
/// Bodies arrive a frame at a time, so at any instant only a few of those
/// in flight have bytes queued. Before a round, the thread waits up to
/// [`GATHER`] for every open body to have some (never when a body has
/// ended: its digest is awaited), which a body's [`CREDIT`] covers many
/// times over. Fewer than [`MIN_LANES`] bodies hash alone, at
/// single-stream speed.
fn run(rx: mpsc::Receiver<Job>) {
    let engine = Md5Many::new();
    let width = engine.lanes().max(1);
    let mut bodies: HashMap<u64, Entry> = HashMap::new();
    let mut round = 0u64;
    let take = |bodies: &mut HashMap<u64, Entry>, job: Job| {
        let (id, item) = match job {
            Job::Data { id, bytes, credit } => (id, Queued::Data(bytes, credit)),
            Job::Finish { id, reply } => (id, Queued::Finish(reply)),
            // Nobody waits for this body any more: drop what it queued.
            Job::Abandon { id } => {
                bodies.remove(&id);
                return;
            }
        };
        bodies
            .entry(id)
            .or_insert_with(|| Entry {
                state: Md5State::new(),
                queue: VecDeque::new(),
                served: 0,
            })
            .queue
            .push_back(item);
    };
    while let Ok(job) = rx.recv() {
        take(&mut bodies, job);
        let mut gathering: Option<std::time::Instant> = None;
        loop {
            while let Ok(job) = rx.try_recv() {
                take(&mut bodies, job);
            }
            // Ends first: a body whose next item is its end is answered.
            bodies.retain(|_, e| match e.queue.front() {
                Some(Queued::Finish(_)) => {
                    if let Some(Queued::Finish(reply)) = e.queue.pop_front() {
                        let _ = reply.send(e.state.finalize());
                    }
                    false
                }
                _ => true,
            });
            let mut ready: Vec<(u64, u64, usize)> = bodies
                .iter()
                .map(|(id, e)| (e.served, *id, e.hashable()))
                .filter(|(_, _, n)| *n > 0)
                .collect();
            if ready.is_empty() {
                break;
            }
            let all_in = ready.len() >= bodies.len().min(width);
            let ending = bodies.values().any(Entry::ending);
            if !all_in && !ending {
                let since = *gathering.get_or_insert_with(std::time::Instant::now);
                if let Some(left) = GATHER.checked_sub(since.elapsed()) {
                    match rx.recv_timeout(left) {
                        Ok(job) => take(&mut bodies, job),
                        Err(mpsc::RecvTimeoutError::Timeout) => {}
                        Err(mpsc::RecvTimeoutError::Disconnected) => return,
                    }
                    continue;
                }
            }
            gathering = None;
            round += 1;
            ready.sort_unstable();
            ready.truncate(width);
            let mut lanes: Vec<(u64, usize)> = ready
                .iter()
                .filter(|(_, _, n)| *n >= MIN_LANE_BYTES)
                .map(|(_, id, n)| (*id, *n))
                .collect();
            if lanes.len() < MIN_LANES {
                lanes.clear();
            }
            for (_, id, _) in &ready {
                if let Some(e) = bodies.get_mut(id) {
                    e.served = round;
                    if !lanes.iter().any(|(l, _)| l == id) {
                        e.hash_alone();
                    }
                }
            }
            // Whole blocks, as every state in a round must stay aligned.
            let len = lanes
                .iter()
                .map(|(_, n)| *n)
                .min()
                .unwrap_or(0)
                .min(MAX_LANE_BYTES)
                & !63;
            let mut used = Vec::with_capacity(width);
            let mut states = Vec::with_capacity(width);
            let mut inputs = Vec::with_capacity(width);
            for (id, _) in &lanes {
                if let Some(e) = bodies.get_mut(id) {
                    used.push(*id);
                    states.push(e.state);
                    inputs.push(e.take(len));
                }
            }
            let Some(first) = inputs.first().cloned() else {
                continue;
            };
            let real = states.len();
            while states.len() < width {
                states.push(Md5State::new());
                inputs.push(first.clone());
            }
            let slices: Vec<&[u8]> = inputs.iter().map(|b| &b[..]).collect();
            engine.update_many(&mut states, &slices);
            LANE_ROUNDS.fetch_add(1, Ordering::Relaxed);
            for (id, state) in used.iter().zip(&states[..real]) {
                if let Some(e) = bodies.get_mut(id) {
                    e.state = *state;
                }
            }
        }
    }
}

/// The MD5 of one body, computed on the hashing thread: wait for
/// [`Md5Body::poll_room`], [`Md5Body::feed`] each frame in order, then
/// [`Md5Body::poll_digest`].
pub(crate) enum Md5Body {
    Lanes {
        lanes: &'static Lanes,
        id: u64,
        credit: PollSemaphore,
        reply: Option<oneshot::Receiver<[u8; 16]>>,
        /// The thread went away with some of this body's frames.
        lost: bool,
    },
    Local(Md5State),
}

/// The hashing thread stopped (a bug): the body's digest is unknown.
#[derive(Debug, thiserror::Error)]
#[error("the MD5 thread stopped; this body's ETag cannot be computed")]
pub(crate) struct Lost;

impl Md5Body {
    pub(crate) fn new() -> Self {
        match lanes() {
            Some(lanes) => Md5Body::Lanes {
                lanes,
                id: lanes.next_id.fetch_add(1, Ordering::Relaxed),
                credit: PollSemaphore::new(Arc::new(Semaphore::new(CREDIT))),
                reply: None,
                lost: false,
            },
            None => Md5Body::Local(Md5State::new()),
        }
    }

    /// Ready when `len` more bytes may be handed over.
    pub(crate) fn poll_room(&mut self, cx: &mut Context<'_>, len: usize) -> Poll<()> {
        let Md5Body::Lanes { credit, lost, .. } = self else {
            return Poll::Ready(());
        };
        if len == 0 || *lost {
            return Poll::Ready(());
        }
        match credit.poll_acquire_many(cx, permits(len)) {
            Poll::Ready(Some(permit)) => {
                permit.forget();
                Poll::Ready(())
            }
            // Never closed; nothing to wait for if it were.
            Poll::Ready(None) => Poll::Ready(()),
            Poll::Pending => Poll::Pending,
        }
    }

    /// Hands over the next frame (a reference to it); call once
    /// [`Md5Body::poll_room`] is ready for its length.
    pub(crate) fn feed(&mut self, bytes: &Bytes) {
        match self {
            _ if bytes.is_empty() => {}
            Md5Body::Local(state) => state.update(bytes),
            Md5Body::Lanes {
                lanes,
                id,
                credit,
                lost,
                ..
            } => {
                let job = Job::Data {
                    id: *id,
                    bytes: bytes.clone(),
                    credit: Credit {
                        sem: credit.clone_inner(),
                        permits: permits(bytes.len()),
                    },
                };
                if !*lost && !lanes.send(job) {
                    tracing::error!("the MD5 thread stopped");
                    *lost = true;
                }
            }
        }
    }

    /// The digest of everything fed, once the thread has hashed it all.
    pub(crate) fn poll_digest(&mut self, cx: &mut Context<'_>) -> Poll<Result<[u8; 16], Lost>> {
        let (lanes, id, reply, lost) = match self {
            Md5Body::Local(state) => return Poll::Ready(Ok(state.finalize())),
            Md5Body::Lanes {
                lanes,
                id,
                reply,
                lost,
                ..
            } => (lanes, id, reply, lost),
        };
        if *lost {
            return Poll::Ready(Err(Lost));
        }
        let rx = match reply {
            Some(rx) => rx,
            None => {
                let (tx, rx) = oneshot::channel();
                if !lanes.send(Job::Finish { id: *id, reply: tx }) {
                    *lost = true;
                    return Poll::Ready(Err(Lost));
                }
                reply.insert(rx)
            }
        };
        match std::pin::Pin::new(rx).poll(cx) {
            Poll::Ready(Ok(d)) => Poll::Ready(Ok(d)),
            Poll::Ready(Err(_)) => {
                *lost = true;
                Poll::Ready(Err(Lost))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

/// Permits a frame of `len` bytes takes: its length, up to all of a body's
/// credit but the 63 bytes a body may hold back to stay block-aligned.
fn permits(len: usize) -> u32 {
    len.min(CREDIT - 64) as u32
}

impl Drop for Md5Body {
    fn drop(&mut self) {
        // A body that asked for its digest was ended on the thread.
        if let Md5Body::Lanes {
            lanes,
            id,
            reply: None,
            lost: false,
            ..
        } = self
        {
            lanes.send(Job::Abandon { id: *id });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use md5::Digest as _;

    /// Drives one body through the thread, frame by frame.
    async fn digest_of(frames: Vec<Bytes>) -> [u8; 16] {
        let mut body = Md5Body::new();
        for f in &frames {
            std::future::poll_fn(|cx| body.poll_room(cx, f.len())).await;
            body.feed(f);
        }
        std::future::poll_fn(|cx| body.poll_digest(cx))
            .await
            .expect("digest")
    }

    /// Many bodies at once, each cut into frames of its own odd sizes,
    /// give the same digests as the `md-5` crate; bodies abandoned
    /// half-way do not disturb the others.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_bodies_match_md5() {
        let mut tasks = Vec::new();
        for n in 0..40usize {
            tasks.push(tokio::spawn(async move {
                let len = [0, 1, 55, 56, 63, 64, 65, 1000, 70_001, 3 << 20][n % 10] + n;
                let data: Vec<u8> = (0..len).map(|i| (i * 31 + n * 7 + i / 251) as u8).collect();
                let data = Bytes::from(data);
                if n % 7 == 3 {
                    // Abandoned after one frame.
                    let mut body = Md5Body::new();
                    let f = data.slice(..len.min(100));
                    std::future::poll_fn(|cx| body.poll_room(cx, f.len())).await;
                    body.feed(&f);
                    drop(body);
                }
                let mut frames = Vec::new();
                let mut at = 0;
                let mut step = 1 + n * 977;
                while at < len {
                    let end = (at + step).min(len);
                    frames.push(data.slice(at..end));
                    at = end;
                    step = step * 3 % 100_003 + 1;
                }
                let got = digest_of(frames).await;
                let want: [u8; 16] = md5::Md5::digest(&data).into();
                assert_eq!(got, want, "body {n} of {len} bytes");
            }));
        }
        for t in tasks {
            t.await.expect("task");
        }
        assert!(
            LANE_ROUNDS.load(Ordering::Relaxed) > 0,
            "no round used the lanes"
        );
    }

    /// `take` hands out exactly the bytes asked for, in order, across
    /// frames, and gives back a frame's credit only once it is used up.
    #[test]
    fn take_spans_frames_and_returns_credit_when_used_up() {
        let credit = Arc::new(Semaphore::new(0));
        let mut e = Entry {
            state: Md5State::new(),
            queue: VecDeque::new(),
            served: 0,
        };
        for f in [&b"abc"[..], b"defgh", b"ij"] {
            let bytes = Bytes::copy_from_slice(f);
            let credit = Credit {
                sem: credit.clone(),
                permits: f.len() as u32,
            };
            e.queue.push_back(Queued::Data(bytes, credit));
        }
        assert_eq!(e.pending(), 10);
        // A frame cut short keeps no more credit than the bytes left.
        assert_eq!(&e.take(2)[..], b"ab");
        assert_eq!(credit.available_permits(), 2);
        assert_eq!(&e.take(5)[..], b"cdefg");
        assert_eq!(credit.available_permits(), 7);
        assert_eq!(&e.take(3)[..], b"hij");
        assert_eq!(credit.available_permits(), 10);
        assert_eq!(e.pending(), 0);
        // Credit of frames never hashed comes back when they are dropped.
        let held = Credit {
            sem: credit.clone(),
            permits: 0,
        };
        e.queue
            .push_back(Queued::Data(Bytes::from_static(b"xyz"), held));
        drop(e);
        assert_eq!(credit.available_permits(), 10);
    }

    /// A body larger than its credit waits for the thread and still
    /// finishes.
    #[tokio::test]
    async fn a_body_beyond_its_credit_completes() {
        let data = Bytes::from(vec![7u8; 3 * CREDIT + 5]);
        let frames: Vec<Bytes> = data.chunks(1 << 20).map(Bytes::copy_from_slice).collect();
        let want: [u8; 16] = md5::Md5::digest(&data).into();
        assert_eq!(digest_of(frames).await, want);
        // Frames of a body's whole credit or more that end off a block
        // boundary (as UploadPartCopy's range pieces can): the bytes held
        // back to stay aligned must not keep the next frame waiting.
        let sizes = [CREDIT - 1, CREDIT + 37, 5, 2 * CREDIT + 11, CREDIT];
        let data: Vec<u8> = (0..sizes.iter().sum::<usize>())
            .map(|i| (i % 251) as u8)
            .collect();
        let mut frames = Vec::new();
        let mut at = 0;
        for n in sizes {
            frames.push(Bytes::copy_from_slice(&data[at..at + n]));
            at += n;
        }
        let want: [u8; 16] = md5::Md5::digest(&data).into();
        let got = tokio::time::timeout(std::time::Duration::from_secs(20), digest_of(frames))
            .await
            .expect("the body finished");
        assert_eq!(got, want);
    }
}
