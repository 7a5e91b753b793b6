//! Datanode chunk reports and corruption claims: a report moves replicas
//! in the map (full reports page by page, within each page's range), an
//! unknown chunk is an orphan, and a reader's claim only asks the holder to
//! verify; the replica leaves the map when the holder reports it corrupt.

use blob_common::proto::heartbeat::{ChunkReport, ReportRange};
use blob_common::proto::namenode::BadReplica;

use super::*;
use crate::db::CF_CORRUPT;

fn report(n: u8, full: bool) -> ChunkReport {
    ChunkReport {
        node: node(n),
        full,
        range: None,
        chunks: vec![],
        deleted: vec![],
        corrupt: vec![],
        verified: vec![],
    }
}

/// Four chunks of one file on nodes 1, 2 and 3, sorted by id.
fn four_chunks(t: &TestNn) -> Vec<ChunkRef> {
    let mut chunks: Vec<ChunkRef> = (0..4).map(|i| chunk(&format!("part {i}"))).collect();
    upload(t, "four.bin", &chunks, &[1, 2, 3]);
    chunks.sort_by_key(|c| c.id);
    chunks
}

#[test]
fn a_full_report_page_removes_only_replicas_missing_from_its_own_range() {
    let t = namenode(3, |_| {});
    let c = four_chunks(&t);
    let (first_half, second_half) = (
        ReportRange {
            start: None,
            end: Some(c[2].id),
        },
        ReportRange {
            start: Some(c[2].id),
            end: None,
        },
    );
    // Page 1 covers c0 and c1 and lists only c1: c0 is gone from node 1.
    // c2 and c3 are outside the page and keep their replica.
    let mut page = report(1, true);
    page.range = Some(first_half.clone());
    page.chunks = vec![c[1]];
    t.chunk_report(&page).expect("page 1");
    assert_eq!(replicas(&t, &c[0]), vec![node(2), node(3)]);
    for k in &c[1..] {
        assert_eq!(replicas(&t, k), vec![node(1), node(2), node(3)]);
    }

    // Page 2 lists all it covers: nothing changes.
    let mut page = report(1, true);
    page.range = Some(second_half);
    page.chunks = vec![c[2], c[3]];
    t.chunk_report(&page).expect("page 2");
    for k in &c[1..] {
        assert_eq!(replicas(&t, k), vec![node(1), node(2), node(3)]);
    }

    // A page listing a chunk outside its range is refused whole.
    let mut bad = report(2, true);
    bad.range = Some(first_half);
    bad.chunks = vec![c[1], c[3]];
    assert!(matches!(t.chunk_report(&bad), Err(Error::BadRequest(_))));
    assert_eq!(replicas(&t, &c[0]), vec![node(2), node(3)]);
}

#[test]
fn an_incremental_report_adds_received_and_drops_deleted_replicas_only() {
    let t = namenode(4, |_| {});
    let c = four_chunks(&t);
    let mut inc = report(4, false);
    inc.chunks = vec![c[0]];
    t.chunk_report(&inc).expect("node 4 received c0");
    assert_eq!(
        replicas(&t, &c[0]),
        vec![node(1), node(2), node(3), node(4)]
    );

    // Listing nothing is not "holding nothing": only `deleted` removes.
    let mut inc = report(1, false);
    inc.deleted = vec![c[1].id];
    t.chunk_report(&inc).expect("node 1 deleted c1");
    assert_eq!(replicas(&t, &c[1]), vec![node(2), node(3)]);
    for k in &c[2..] {
        assert_eq!(replicas(&t, k), vec![node(1), node(2), node(3)]);
    }
}

#[test]
fn a_report_orders_deletes_of_orphans_but_never_of_a_referenced_chunk() {
    let t = namenode(3, |cfg| cfg.orphan_grace_ms = 0);
    let c = four_chunks(&t);
    let stray = chunk("nobody knows me");
    let mut full = report(2, true);
    full.chunks = vec![c[0], c[1], c[2], c[3], stray];
    t.chunk_report(&full).expect("full report");
    assert!(
        chunk_record(&t, &stray).is_none(),
        "an orphan is not adopted"
    );

    t.repair_pass().expect("repair pass");
    assert_eq!(deletes_for(&t, 2), vec![stray.id]);
    for k in &c {
        assert_eq!(replicas(&t, k), vec![node(1), node(2), node(3)]);
    }
}

#[test]
fn an_orphan_is_kept_for_its_grace() {
    let t = namenode(3, |cfg| cfg.orphan_grace_ms = 3_600_000);
    let stray = chunk("new and unknown");
    let mut inc = report(1, false);
    inc.chunks = vec![stray];
    t.chunk_report(&inc).expect("report");
    t.repair_pass().expect("repair pass");
    assert!(deletes_for(&t, 1).is_empty());
}

#[test]
fn a_corruption_claim_changes_nothing_until_the_holder_confirms_it() {
    let t = namenode(3, |_| {});
    let c = four_chunks(&t)[0];
    let claim = BadReplica {
        chunk: c.id,
        node: node(1),
        reason: "checksum mismatch".into(),
        actual: None,
    };
    t.bad_replica("reader", &claim).expect("claim");
    assert_eq!(replicas(&t, &c), vec![node(1), node(2), node(3)]);
    assert_eq!(
        t.take_commands(&node(1)),
        vec![Command::Verify { chunks: vec![c.id] }]
    );
    assert!(t.claims.is_suspect(&c.id, &node(1)));

    // The holder re-verifies it good: the claim is refuted.
    let mut verdict = report(1, false);
    verdict.verified = vec![c.id];
    t.chunk_report(&verdict).expect("verified");
    assert!(!t.claims.is_suspect(&c.id, &node(1)));
    assert_eq!(replicas(&t, &c), vec![node(1), node(2), node(3)]);
    assert!(t
        .meta
        .get_raw(CF_CORRUPT, &corrupt_key(&c, 1))
        .expect("read")
        .is_none());

    // A second claim; this time the holder finds it corrupt and quarantines
    // it: only now does the replica leave the map.
    t.bad_replica("reader", &claim).expect("claim");
    assert_eq!(
        t.take_commands(&node(1)),
        vec![Command::Verify { chunks: vec![c.id] }]
    );
    let mut verdict = report(1, false);
    verdict.corrupt = vec![c.id];
    verdict.deleted = vec![c.id];
    t.chunk_report(&verdict).expect("corrupt");
    assert_eq!(replicas(&t, &c), vec![node(2), node(3)]);
    assert!(t
        .meta
        .get_raw(CF_CORRUPT, &corrupt_key(&c, 1))
        .expect("read")
        .is_some());
}

#[test]
fn a_claim_against_a_node_that_holds_no_such_replica_orders_nothing() {
    let t = namenode(4, |_| {});
    let c = four_chunks(&t)[0];
    let claim = BadReplica {
        chunk: c.id,
        node: node(4),
        reason: "bad".into(),
        actual: None,
    };
    t.bad_replica("reader", &claim).expect("claim");
    assert!(t.take_commands(&node(4)).is_empty());
    assert!(!t.claims.is_suspect(&c.id, &node(4)));
    // And repeated claims on a real replica order one verification at a
    // time, whatever the reporters say.
    let claim = BadReplica {
        node: node(1),
        ..claim
    };
    for _ in 0..5 {
        t.bad_replica("reader", &claim).expect("claim");
    }
    assert_eq!(t.take_commands(&node(1)).len(), 1);
}

fn corrupt_key(c: &ChunkRef, n: u8) -> Vec<u8> {
    let mut key = c.id.as_bytes().to_vec();
    key.extend_from_slice(node(n).as_bytes());
    key
}
