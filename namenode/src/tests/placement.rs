//! Placement: every replica of a chunk on a distinct node, only on live
//! nodes in normal service, and a replication factor above the live nodes
//! written on all of them as long as that reaches the write quorum.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use super::*;
use crate::db::AdminState;
use crate::nodes::Nodes;

fn targets(plan: &UploadPlan) -> Vec<Vec<NodeId>> {
    plan.chunks
        .iter()
        .map(|c| {
            c.put
                .as_ref()
                .expect("a new chunk gets a PUT")
                .targets
                .clone()
        })
        .collect()
}

#[test]
fn replicas_go_to_distinct_nodes_and_never_to_a_draining_one() {
    let t = namenode(5, |_| {});
    t.decommission(&node(5)).expect("decommission node 5");
    let chunks: Vec<ChunkRef> = (0..50).map(|i| chunk(&format!("c{i}"))).collect();
    let plan = open_session(&t, "spread.bin", 3, &chunks);
    let mut used = HashSet::new();
    for ts in targets(&plan) {
        let distinct: HashSet<_> = ts.iter().collect();
        assert_eq!((ts.len(), distinct.len()), (3, 3), "{ts:?}");
        assert!(!ts.contains(&node(5)), "node 5 is draining: {ts:?}");
        used.extend(ts);
    }
    assert_eq!(used.len(), 4, "every node in service takes some chunks");
}

#[test]
fn a_factor_above_the_live_nodes_uses_every_node_if_that_reaches_the_quorum() {
    let t = namenode(2, |_| {});
    let plan = open_session(&t, "wide.bin", 3, &[chunk("wide")]);
    assert_eq!(plan.min_replicas, 2);
    let mut ts = targets(&plan).remove(0);
    ts.sort();
    assert_eq!(ts, vec![node(1), node(2)]);

    let lonely = namenode(1, |_| {});
    let refused = lonely.create_upload(
        OWNER,
        &CreateUpload {
            bucket: BUCKET.into(),
            path: "wide.bin".into(),
            replication: Some(3),
            chunk_size: 1 << 20,
            chunks: vec![chunk("wide")],
        },
    );
    assert!(
        matches!(refused, Err(Error::NotEnoughNodes { want: 2, live: 1 })),
        "{refused:?}"
    );
}

#[test]
fn a_retarget_avoids_the_nodes_that_have_the_chunk_and_those_that_failed() {
    let t = namenode(5, |_| {});
    let c = chunk("retry");
    let plan = open_session(&t, "retry.bin", 3, &[c]);
    for _ in 0..20 {
        let put = t
            .retarget(
                OWNER,
                &plan.upload,
                &blob_common::proto::namenode::Retarget {
                    chunk: c,
                    have: vec![node(1)],
                    exclude: vec![node(2), node(3)],
                },
            )
            .expect("retarget");
        let mut ts = put.targets;
        ts.sort();
        assert_eq!(ts, vec![node(4), node(5)], "two more replicas, elsewhere");
    }
}

#[test]
fn placement_skips_dead_and_draining_nodes_at_the_time_it_is_asked() {
    let t0 = Instant::now() + Duration::from_secs(120);
    let mut nodes = Nodes::new(Duration::from_secs(10), Duration::from_secs(60));
    nodes.tick(t0);
    for n in 1..=5 {
        nodes.heartbeat(heartbeat(n), t0);
    }
    nodes.set_admin(&node(2), AdminState::Decommissioning);
    // Nodes 3, 4, 5 keep heartbeating; node 1 falls silent.
    let later = t0 + Duration::from_secs(61);
    for s in 1..=61 {
        let at = t0 + Duration::from_secs(s);
        nodes.tick(at);
        for n in 3..=5 {
            nodes.heartbeat(heartbeat(n), at);
        }
    }
    let mut rng = rand::thread_rng();
    for _ in 0..100 {
        let mut got: Vec<NodeId> = nodes
            .place(3, &[], later, &mut rng)
            .expect("three nodes in service")
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        got.sort();
        assert_eq!(got, vec![node(3), node(4), node(5)]);
    }
    assert!(matches!(
        nodes.place(4, &[], later, &mut rng),
        Err(Error::NotEnoughNodes { want: 4, live: 3 })
    ));
    // Before node 1 went silent it was a candidate.
    assert_eq!(
        nodes.writable_excluding(&[], t0 + Duration::from_secs(1)),
        4
    );
}
