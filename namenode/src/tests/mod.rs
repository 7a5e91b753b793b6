//! Direct tests of the namenode's operations on a namenode opened over a
//! temp-dir RocksDB: no HTTP, no datanodes. Datanodes are simulated by
//! heartbeats, receipts signed with the cluster keyring and chunk reports;
//! time-dependent jobs (garbage collection, session expiry) are called with
//! the time to act at.

mod buckets;
mod gc;
mod placement;
mod receipts;
mod reports;
mod uploads;
mod versions;

use std::collections::BTreeMap;
use std::sync::Arc;

use blob_common::presign::{Keyring, Receipt};
use blob_common::proto::heartbeat::{Command, Heartbeat};
use blob_common::proto::namenode::{ChunkRef, CommitUpload, CreateUpload, FileInfo, UploadPlan};
use blob_common::{now_secs, ChunkId, NodeId, UploadId};

use crate::db::{ChunkRecord, CF_CHUNKS, CF_GC};
use crate::{Config, Error, Namenode};

/// The user every test uploads as.
pub(crate) const OWNER: &str = "alice";
/// The bucket every test uploads to.
pub(crate) const BUCKET: &str = "photos";

/// A namenode on a temp dir, removed when dropped.
pub(crate) struct TestNn {
    pub(crate) nn: Arc<Namenode>,
    _dir: tempfile::TempDir,
}

impl std::ops::Deref for TestNn {
    type Target = Namenode;
    fn deref(&self) -> &Namenode {
        &self.nn
    }
}

/// Opens a namenode with `nodes` live datanodes and the bucket [`BUCKET`],
/// after `tune` adjusted the default config.
pub(crate) fn namenode(nodes: u8, tune: impl FnOnce(&mut Config)) -> TestNn {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut cfg = Config {
        data_dir: dir.path().to_path_buf(),
        ..Config::default()
    };
    tune(&mut cfg);
    let nn = Namenode::open(cfg, Keyring::generate()).expect("open namenode");
    for n in 1..=nodes {
        nn.heartbeat(heartbeat(n)).expect("heartbeat");
    }
    nn.create_bucket(BUCKET, None).expect("create bucket");
    TestNn { nn, _dir: dir }
}

/// Datanode number `n`'s id.
pub(crate) fn node(n: u8) -> NodeId {
    NodeId([n; 8])
}

/// A heartbeat of datanode `n` with room to spare.
pub(crate) fn heartbeat(n: u8) -> Heartbeat {
    Heartbeat {
        node: node(n),
        url: format!("http://127.0.0.1:{}", 20_000 + u16::from(n)),
        capacity: 1 << 40,
        used: 0,
        available: 1 << 40,
        chunk_count: 0,
        load: 0,
        read_only: false,
    }
}

/// A chunk made of `tag`, with its real id.
pub(crate) fn chunk(tag: &str) -> ChunkRef {
    ChunkRef {
        id: ChunkId::of(tag.as_bytes()),
        size: tag.len() as u64,
    }
}

/// A receipt datanode `n` would sign for storing `c` in session `upload`
/// now.
pub(crate) fn receipt(t: &TestNn, n: u8, c: &ChunkRef, upload: UploadId) -> Receipt {
    Receipt::issue(&t.keyring, node(n), c.id, c.size, Some(upload), now_secs())
}

/// Opens a session for `path` with replication `rf` and the given chunks.
pub(crate) fn open_session(t: &TestNn, path: &str, rf: u8, chunks: &[ChunkRef]) -> UploadPlan {
    t.create_upload(
        OWNER,
        &CreateUpload {
            bucket: BUCKET.into(),
            path: path.into(),
            replication: Some(rf),
            chunk_size: 1 << 20,
            chunks: chunks.to_vec(),
        },
    )
    .expect("create upload")
}

/// Commits `chunks` in session `id` with `receipts`.
pub(crate) fn commit(
    t: &TestNn,
    id: UploadId,
    chunks: &[ChunkRef],
    receipts: Vec<Receipt>,
) -> Result<FileInfo, Error> {
    t.commit(
        OWNER,
        &id,
        &CommitUpload {
            chunks: chunks.to_vec(),
            manifest: None,
            receipts,
            meta: BTreeMap::new(),
            part: None,
            condition: None,
        },
    )
}

/// Uploads `path` made of `chunks`, every chunk stored on each of `on`.
pub(crate) fn upload(t: &TestNn, path: &str, chunks: &[ChunkRef], on: &[u8]) -> FileInfo {
    let plan = open_session(t, path, on.len() as u8, chunks);
    let receipts = chunks
        .iter()
        .flat_map(|c| on.iter().map(|n| receipt(t, *n, c, plan.upload)))
        .collect();
    commit(t, plan.upload, chunks, receipts).expect("commit")
}

/// The chunk's record, if the metadata knows it.
pub(crate) fn chunk_record(t: &TestNn, c: &ChunkRef) -> Option<ChunkRecord> {
    t.meta
        .get::<ChunkRecord>(CF_CHUNKS, c.id.as_bytes())
        .expect("read chunk record")
}

/// The nodes the metadata places `c` on, sorted.
pub(crate) fn replicas(t: &TestNn, c: &ChunkRef) -> Vec<NodeId> {
    let mut r = chunk_record(t, c).map(|r| r.replicas).unwrap_or_default();
    r.sort();
    r
}

/// Whether `c` carries a garbage-collection mark (no references).
pub(crate) fn marked_for_gc(t: &TestNn, c: &ChunkRef) -> bool {
    t.meta
        .get_raw(CF_GC, c.id.as_bytes())
        .expect("read gc mark")
        .is_some()
}

/// The chunks of every `Delete` waiting for datanode `n`.
pub(crate) fn deletes_for(t: &TestNn, n: u8) -> Vec<ChunkId> {
    t.take_commands(&node(n))
        .into_iter()
        .flat_map(|c| match c {
            Command::Delete { chunks, .. } => chunks,
            _ => vec![],
        })
        .collect()
}
