//! Tests of the chunk store: durable writes, range reads with block
//! CRCs, corruption, deletes racing writes, and the byte budget.

use super::*;
use blob_common::checksum::BLOCK_SIZE;

fn data(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 9) as u8)
        .collect()
}

fn frames(buf: &[u8], step: usize) -> Vec<Bytes> {
    buf.chunks(step).map(Bytes::copy_from_slice).collect()
}

fn open(dir: &Path) -> Store {
    Store::open(dir, true, Metrics::new()).unwrap_or_else(|e| panic!("open: {e}"))
}

fn tmp_is_empty(dir: &Path) -> bool {
    fs::read_dir(dir.join("tmp"))
        .map(|mut d| d.next().is_none())
        .unwrap_or(false)
}

#[test]
fn write_then_read_ranges_across_block_boundaries() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let store = open(dir.path());
    let buf = data(3 * BLOCK_SIZE + 1234, 7);
    let id = ChunkId::of(&buf);
    let out = store.write_chunk(&id, buf.len() as u64, frames(&buf, 10_000));
    assert_eq!(out.ok(), Some(WriteOutcome { existed: false }));
    let path = chunk_path(dir.path(), &id);
    let on_disk = fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    assert_eq!(on_disk, buf.len() as u64 + 4 * 4 + FOOTER_LEN);
    assert!(tmp_is_empty(dir.path()));
    assert_eq!(store.chunk_count(), 1);
    assert_eq!(store.used(), buf.len() as u64);

    let bs = BLOCK_SIZE as u64;
    let len = buf.len() as u64;
    for (a, b) in [
        (0, len),
        (0, 1),
        (bs - 1, bs + 1),
        (bs - 10, 3 * bs + 5),
        (2 * bs, 3 * bs),
        (len - 1, len),
        (5, 5 + bs * 2),
    ] {
        let got = store
            .read_range(&id, a, b)
            .unwrap_or_else(|e| panic!("read {a}..{b}: {e}"));
        assert_eq!(got, &buf[a as usize..b as usize], "range {a}..{b}");
    }
    let f = store.open_chunk(&id).unwrap_or_else(|e| panic!("{e}"));
    let mut streamed = Vec::new();
    let res = store.read_frames(&f, 100, len, |b| {
        assert!(b.len() <= READ_FRAME);
        streamed.extend_from_slice(&b);
        true
    });
    assert!(res.is_ok());
    assert_eq!(streamed, &buf[100..]);
}

#[test]
fn a_flipped_byte_fails_its_block_and_quarantines_the_chunk() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let metrics = Metrics::new();
    let store = Store::open(dir.path(), false, metrics.clone()).unwrap_or_else(|e| panic!("{e}"));
    let buf = data(4 * BLOCK_SIZE, 3);
    let id = ChunkId::of(&buf);
    assert!(store
        .write_chunk(&id, buf.len() as u64, frames(&buf, 65_000))
        .is_ok());
    let path = chunk_path(dir.path(), &id);
    let mut raw = fs::read(&path).unwrap_or_default();
    let bad = 2 * BLOCK_SIZE + 77;
    raw[bad] ^= 0x40;
    fs::write(&path, &raw).unwrap_or_else(|e| panic!("{e}"));

    // Ranges in other blocks still verify.
    let bs = BLOCK_SIZE as u64;
    let ok = store.read_range(&id, 0, 2 * bs);
    assert_eq!(ok.ok().as_deref(), Some(&buf[..2 * BLOCK_SIZE]));
    let ok = store.read_range(&id, 3 * bs, 4 * bs);
    assert_eq!(ok.ok().as_deref(), Some(&buf[3 * BLOCK_SIZE..]));

    // A range touching the bad block fails and moves the file aside.
    let err = store.read_range(&id, 2 * bs - 5, 2 * bs + 100);
    assert!(matches!(err, Err(Error::Corrupt { chunk, .. }) if chunk == id));
    assert!(!path.exists());
    assert!(!store.contains(&id));
    assert_eq!(store.chunk_count(), 0);
    assert_eq!(metrics.corrupt_chunks.get(), 1);
    let quarantined = fs::read_dir(dir.path().join("corrupt"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(quarantined, 1);
    assert!(matches!(
        store.read_range(&id, 0, 10),
        Err(Error::ChunkNotFound(_))
    ));
    let (_, removed) = store.take_changes();
    assert_eq!(removed, vec![id]);
}

#[test]
fn a_truncated_file_is_quarantined_on_open() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let store = open(dir.path());
    let buf = data(1000, 1);
    let id = ChunkId::of(&buf);
    assert!(store.write_chunk(&id, 1000, frames(&buf, 100)).is_ok());
    let path = chunk_path(dir.path(), &id);
    let raw = fs::read(&path).unwrap_or_default();
    fs::write(&path, &raw[..raw.len() - 3]).unwrap_or_else(|e| panic!("{e}"));
    assert!(matches!(store.open_chunk(&id), Err(Error::Corrupt { .. })));
    assert!(!path.exists());
}

#[test]
fn wrong_hash_or_length_stores_nothing() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let store = open(dir.path());
    let buf = data(BLOCK_SIZE + 5, 9);
    let id = ChunkId::of(&buf);
    let n = buf.len() as u64;

    let mut other = buf.clone();
    other[10] ^= 1;
    let res = store.write_chunk(&id, n, frames(&other, 4096));
    assert!(matches!(res, Err(Error::DigestMismatch { .. })));

    let res = store.write_chunk(&id, n, frames(&buf[..buf.len() - 1], 4096));
    assert!(matches!(
        res,
        Err(Error::IncompleteBody { received, .. }) if received == n - 1
    ));

    let mut longer = buf.clone();
    longer.push(0);
    let res = store.write_chunk(&id, n, frames(&longer, 4096));
    assert!(matches!(res, Err(Error::IncompleteBody { .. })));

    assert!(!chunk_path(dir.path(), &id).exists());
    assert!(!store.contains(&id));
    assert!(tmp_is_empty(dir.path()));
    assert_eq!(store.take_changes().0, vec![]);
}

#[test]
fn rewriting_a_stored_chunk_verifies_and_keeps_one_copy() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let store = open(dir.path());
    let buf = data(5000, 2);
    let id = ChunkId::of(&buf);
    assert_eq!(
        store.write_chunk(&id, 5000, frames(&buf, 999)).ok(),
        Some(WriteOutcome { existed: false })
    );
    assert_eq!(
        store.write_chunk(&id, 5000, frames(&buf, 999)).ok(),
        Some(WriteOutcome { existed: true })
    );
    assert!(tmp_is_empty(dir.path()));
    assert_eq!(store.chunk_count(), 1);
    assert_eq!(store.used(), 5000);
}

#[test]
fn empty_chunk_round_trips() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let store = open(dir.path());
    let id = ChunkId::of(b"");
    assert!(store.write_chunk(&id, 0, Vec::new()).is_ok());
    let f = store.open_chunk(&id).unwrap_or_else(|e| panic!("{e}"));
    assert!(f.is_empty());
    assert_eq!(store.read_range(&id, 0, 0).ok(), Some(Vec::new()));
}

#[test]
fn restart_removes_temp_files_and_rebuilds_the_index() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let a = data(100_000, 4);
    let b = data(3, 5);
    {
        let store = open(dir.path());
        for buf in [&a, &b] {
            let id = ChunkId::of(buf);
            assert!(store
                .write_chunk(&id, buf.len() as u64, frames(buf, 7000))
                .is_ok());
        }
    }
    let leftover = dir.path().join("tmp").join("half-written");
    fs::write(&leftover, b"partial").unwrap_or_else(|e| panic!("{e}"));
    fs::write(dir.path().join("chunks").join("stray"), b"x").unwrap_or_else(|e| panic!("{e}"));

    let store = open(dir.path());
    assert!(!leftover.exists());
    assert_eq!(store.chunk_count(), 2);
    assert_eq!(store.used(), 100_003);
    assert_eq!(store.size_of(&ChunkId::of(&a)), Some(100_000));
    let mut report = store.full_report();
    report.sort_by_key(|c| c.size);
    assert_eq!(
        report,
        vec![
            ChunkRef {
                id: ChunkId::of(&b),
                size: 3
            },
            ChunkRef {
                id: ChunkId::of(&a),
                size: 100_000
            }
        ]
    );
    assert_eq!(
        store
            .read_range(&ChunkId::of(&a), 99_990, 100_000)
            .ok()
            .as_deref(),
        Some(&a[99_990..])
    );
}

#[test]
fn changes_are_reported_once_and_requeued_on_failure() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let store = open(dir.path());
    let buf = data(10, 1);
    let id = ChunkId::of(&buf);
    assert!(store.write_chunk(&id, 10, frames(&buf, 3)).is_ok());
    let (added, removed) = store.take_changes();
    assert_eq!(added, vec![ChunkRef { id, size: 10 }]);
    assert!(removed.is_empty());
    assert_eq!(store.take_changes().0, vec![]);
    store.requeue_changes(added.clone(), removed);
    assert_eq!(store.take_changes().0, added);
    assert!(store.write_chunk(&id, 10, frames(&buf, 3)).is_ok());
    assert_eq!(store.full_report(), added);
    assert_eq!(store.take_changes().0, vec![]);
}

#[tokio::test]
async fn spawned_writer_streams_frames_to_disk() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let store = Arc::new(open(dir.path()));
    let buf = data(2 * BLOCK_SIZE + 3, 8);
    let id = ChunkId::of(&buf);
    let budget = blob_server::limits::Budget::new(1 << 20, std::time::Duration::from_secs(1));
    let held = |n: usize| {
        let b = budget.clone();
        async move { Arc::new(b.admit(n as u64).await.unwrap_or_else(|e| panic!("{e}"))) }
    };
    let w = store.spawn_writer(id, buf.len() as u64);
    for f in frames(&buf, 16 * 1024) {
        let h = held(f.len()).await;
        assert!(w.send(f, h).await);
    }
    assert_eq!(w.finish().await.ok(), Some(WriteOutcome { existed: false }));
    assert!(store.contains(&id));
    // Every frame left the budget once written.
    assert_eq!(budget.in_flight_bytes(), 0);

    // A writer dropped mid-body leaves nothing behind.
    let other = data(1000, 9);
    let w = store.spawn_writer(ChunkId::of(&other), 1000);
    let h = held(500).await;
    assert!(w.send(Bytes::copy_from_slice(&other[..500]), h).await);
    assert!(matches!(
        w.finish().await,
        Err(Error::IncompleteBody { received: 500, .. })
    ));
    assert!(tmp_is_empty(dir.path()));
    assert!(!store.contains(&ChunkId::of(&other)));
    assert_eq!(budget.in_flight_bytes(), 0);
}
