//! Garbage collection: an unreferenced chunk is deleted from its holders
//! after its grace, never while a session holds it or an upload was told to
//! send it (its pending mark).

use blob_common::now_ms;

use super::*;

/// A collection pass at `at` (Unix ms); whether `c` survived it.
fn survives(t: &TestNn, c: &ChunkRef, at: u64) -> bool {
    t.collect_garbage(at).expect("collect garbage");
    chunk_record(t, c).is_some()
}

#[test]
fn an_unreferenced_chunk_is_collected_after_its_grace_and_deleted_from_every_holder() {
    // Short URLs: the upload's own pending mark is over long before the grace.
    let t = namenode(3, |cfg| {
        cfg.gc_grace_ms = 60_000;
        cfg.presign_ttl_secs = 1;
    });
    let (c, kept) = (chunk("deleted file"), chunk("kept file"));
    upload(&t, "old.bin", &[c], &[1, 2]);
    upload(&t, "keep.bin", &[kept], &[1, 2]);
    let before = now_ms();
    t.delete_file(BUCKET, "old.bin").expect("delete");
    let after = now_ms();

    assert!(survives(&t, &c, before + 60_000 - 1), "within its grace");
    assert!(deletes_for(&t, 1).is_empty());

    assert!(!survives(&t, &c, after + 60_000), "past its grace");
    assert_eq!(deletes_for(&t, 1), vec![c.id]);
    assert_eq!(deletes_for(&t, 2), vec![c.id]);
    assert!(deletes_for(&t, 3).is_empty(), "node 3 never held it");
    assert!(
        survives(&t, &kept, after + 10 * 60_000),
        "a referenced chunk is never collected"
    );
}

#[test]
fn a_chunk_an_upload_was_told_to_send_outlives_the_grace_until_its_mark_expires() {
    let t = namenode(3, |cfg| {
        cfg.gc_grace_ms = 1_000;
        cfg.presign_ttl_secs = 600;
    });
    let c = chunk("reused");
    upload(&t, "first.bin", &[c], &[1, 2]);
    t.delete_file(BUCKET, "first.bin").expect("delete");
    // A new upload of the same bytes is told to PUT the chunk: its URL is
    // valid for 600 s, plus a minute of slack.
    let planned = now_ms();
    let plan = open_session(&t, "second.bin", 2, &[c]);
    assert!(plan.chunks[0].put.is_some());
    let pending_until = planned + 600_000 + 60_000;

    assert!(
        survives(&t, &c, planned + 5_000),
        "grace is over but the mark holds"
    );
    assert!(survives(&t, &c, pending_until - 5_000));
    assert!(deletes_for(&t, 1).is_empty());
    assert!(!survives(&t, &c, now_ms() + 600_000 + 60_000 + 1_000));
    assert_eq!(deletes_for(&t, 1), vec![c.id]);
}

#[test]
fn a_chunk_held_by_an_open_session_is_not_collected_until_the_session_ends() {
    let t = namenode(3, |cfg| {
        cfg.gc_grace_ms = 1_000;
        cfg.presign_ttl_secs = 1;
    });
    let c = chunk("in flight");
    let plan = open_session(&t, "wip.bin", 2, &[c]);
    let batch = blob_common::proto::namenode::ChunkBatch {
        chunks: vec![],
        receipts: vec![
            receipt(&t, 1, &c, plan.upload),
            receipt(&t, 2, &c, plan.upload),
        ],
    };
    t.add_chunks(OWNER, &plan.upload, &batch)
        .expect("add chunks");
    let far = now_ms() + 24 * 3_600_000;
    assert!(survives(&t, &c, far), "the session references it");
    t.abort(OWNER, &plan.upload).expect("abort");
    assert!(!survives(&t, &c, far), "the session is gone");
    let mut all = deletes_for(&t, 1);
    all.extend(deletes_for(&t, 2));
    assert_eq!(all, vec![c.id, c.id]);
}
