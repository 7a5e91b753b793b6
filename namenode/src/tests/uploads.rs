//! Upload sessions: a commit needs its write quorum, replaces a file in one
//! step, and an ended session (aborted, expired, foreign) leaves nothing
//! visible.

use super::*;
use blob_common::proto::namenode::{UpdateMeta, WriteCondition};

fn no_such_file(t: &TestNn, path: &str) -> bool {
    matches!(t.stat(BUCKET, path), Err(Error::NoSuchFile { .. }))
}

#[test]
fn a_commit_below_the_write_quorum_is_refused_and_shows_nothing() {
    let t = namenode(3, |_| {});
    let c = chunk("quorum");
    let plan = open_session(&t, "a.jpg", 3, &[c]);
    assert_eq!(plan.min_replicas, 2, "a majority of 3");

    let one = vec![receipt(&t, 1, &c, plan.upload)];
    match commit(&t, plan.upload, &[c], one) {
        Err(Error::MissingReplicas {
            count: 1,
            first,
            have: 1,
            want: 2,
        }) => assert_eq!(first, c.id),
        other => panic!("one receipt of three must not commit: {other:?}"),
    }
    assert!(no_such_file(&t, "a.jpg"));
    assert!(
        chunk_record(&t, &c).is_none(),
        "a refused commit writes nothing"
    );

    let two = vec![
        receipt(&t, 1, &c, plan.upload),
        receipt(&t, 2, &c, plan.upload),
    ];
    let file = commit(&t, plan.upload, &[c], two).expect("a quorum commits");
    assert_eq!(file.chunks, vec![c]);
    assert_eq!(
        t.stat(BUCKET, "a.jpg").expect("visible").version,
        plan.upload
    );
    assert_eq!(replicas(&t, &c), vec![node(1), node(2)]);
    assert_eq!(chunk_record(&t, &c).map(|r| r.refs), Some(1));
}

#[test]
fn a_chunk_never_stored_in_the_session_or_bucket_cannot_be_committed() {
    let t = namenode(3, |_| {});
    let (sent, never) = (chunk("sent"), chunk("never sent"));
    let plan = open_session(&t, "b.bin", 1, &[sent, never]);
    let receipts = vec![receipt(&t, 1, &sent, plan.upload)];
    match commit(&t, plan.upload, &[sent, never], receipts) {
        Err(Error::MissingReplicas { first, have: 0, .. }) => assert_eq!(first, never.id),
        other => panic!("expected MissingReplicas for the unsent chunk: {other:?}"),
    }
    assert!(no_such_file(&t, "b.bin"));
}

#[test]
fn a_commit_replaces_the_previous_version_in_one_step() {
    let t = namenode(3, |_| {});
    let (old, new) = (chunk("version one"), chunk("version two"));
    let v1 = upload(&t, "doc.txt", &[old], &[1, 2, 3]);
    assert!(!marked_for_gc(&t, &old));

    // A second version that fails its commit leaves the first intact.
    let plan = open_session(&t, "doc.txt", 3, &[new]);
    let short = vec![receipt(&t, 1, &new, plan.upload)];
    assert!(commit(&t, plan.upload, &[new], short).is_err());
    let seen = t.stat(BUCKET, "doc.txt").expect("still there");
    assert_eq!((seen.version, seen.chunks), (v1.version, vec![old]));
    assert_eq!(chunk_record(&t, &old).map(|r| r.refs), Some(1));

    // Once it commits, readers see only the new chunk list, and the old
    // chunk's reference is gone with it.
    let receipts = (1..=3).map(|n| receipt(&t, n, &new, plan.upload)).collect();
    let v2 = commit(&t, plan.upload, &[new], receipts).expect("commit v2");
    let seen = t.stat(BUCKET, "doc.txt").expect("replaced");
    assert_eq!((seen.version, seen.chunks), (v2.version, vec![new]));
    assert_ne!(v1.version, v2.version);
    assert_eq!(chunk_record(&t, &old).map(|r| r.refs), Some(0));
    assert!(marked_for_gc(&t, &old));
    assert_eq!(chunk_record(&t, &new).map(|r| r.refs), Some(1));
    assert!(!marked_for_gc(&t, &new));
}

#[test]
fn an_aborted_session_leaves_nothing_visible_and_holds_nothing() {
    let t = namenode(3, |_| {});
    let c = chunk("aborted");
    let plan = open_session(&t, "gone.bin", 2, &[c]);
    // Receipts handed in before the commit make the session hold the chunk.
    let batch = blob_common::proto::namenode::ChunkBatch {
        chunks: vec![],
        receipts: vec![
            receipt(&t, 1, &c, plan.upload),
            receipt(&t, 2, &c, plan.upload),
        ],
    };
    t.add_chunks(OWNER, &plan.upload, &batch)
        .expect("add chunks");
    assert_eq!(chunk_record(&t, &c).map(|r| r.refs), Some(1));

    t.abort(OWNER, &plan.upload).expect("abort");
    assert!(no_such_file(&t, "gone.bin"));
    assert_eq!(chunk_record(&t, &c).map(|r| r.refs), Some(0));
    assert!(marked_for_gc(&t, &c));
    assert!(matches!(
        commit(&t, plan.upload, &[c], vec![]),
        Err(Error::NoSuchUpload(_))
    ));
}

#[test]
fn an_expired_session_is_dropped_with_its_references_after_its_ttl_only() {
    let t = namenode(3, |cfg| cfg.upload_ttl_ms = 60_000);
    let c = chunk("expiring");
    let plan = open_session(&t, "late.bin", 2, &[c]);
    let batch = blob_common::proto::namenode::ChunkBatch {
        chunks: vec![],
        receipts: vec![
            receipt(&t, 1, &c, plan.upload),
            receipt(&t, 2, &c, plan.upload),
        ],
    };
    t.add_chunks(OWNER, &plan.upload, &batch)
        .expect("add chunks");
    let opened = blob_common::now_ms();

    t.expire_uploads(opened + 30_000).expect("expire");
    assert!(
        t.upload_record(&plan.upload, OWNER).is_ok(),
        "half its ttl: the session lives"
    );
    assert_eq!(chunk_record(&t, &c).map(|r| r.refs), Some(1));

    t.expire_uploads(opened + 61_000).expect("expire");
    assert!(matches!(
        t.upload_record(&plan.upload, OWNER),
        Err(Error::NoSuchUpload(_))
    ));
    assert!(matches!(
        commit(&t, plan.upload, &[c], vec![]),
        Err(Error::NoSuchUpload(_))
    ));
    assert!(no_such_file(&t, "late.bin"));
    assert_eq!(chunk_record(&t, &c).map(|r| r.refs), Some(0));
    assert!(marked_for_gc(&t, &c));
}

#[test]
fn a_session_answers_only_its_owner() {
    let t = namenode(3, |_| {});
    let c = chunk("mine");
    let plan = open_session(&t, "mine.bin", 1, &[c]);
    let receipts = vec![receipt(&t, 1, &c, plan.upload)];
    let foreign = t.commit(
        "mallory",
        &plan.upload,
        &CommitUpload {
            chunks: vec![c],
            manifest: None,
            receipts,
            meta: BTreeMap::new(),
            part: None,
            condition: None,
        },
    );
    assert!(matches!(foreign, Err(Error::NoSuchUpload(_))));
    assert!(matches!(
        t.abort("mallory", &plan.upload),
        Err(Error::NoSuchUpload(_))
    ));
    assert!(no_such_file(&t, "mine.bin"));
    assert!(t.upload_record(&plan.upload, OWNER).is_ok());
}

/// Commits `chunks` (stored on datanodes 1 and 2) in session `id`, only if
/// `condition` holds.
fn commit_if(
    t: &TestNn,
    id: UploadId,
    chunks: &[ChunkRef],
    condition: WriteCondition,
) -> Result<FileInfo, Error> {
    let receipts = chunks
        .iter()
        .flat_map(|c| [1, 2].map(|n| receipt(t, n, c, id)))
        .collect();
    t.commit(
        OWNER,
        &id,
        &CommitUpload {
            chunks: chunks.to_vec(),
            receipts,
            condition: Some(condition),
            ..CommitUpload::default()
        },
    )
}

#[test]
fn conditional_commits_replace_only_the_version_they_name() {
    let t = namenode(3, |_| {});
    let (a, b) = (chunk("version a"), chunk("version b"));
    // Absent: a first write succeeds, a second (opened before the first
    // committed) conflicts, one opened after it fails its precondition.
    let first = open_session(&t, "clip.mp4", 2, &[a]).upload;
    let racing = open_session(&t, "clip.mp4", 2, &[b]).upload;
    std::thread::sleep(std::time::Duration::from_millis(5));
    let v1 = commit_if(&t, first, &[a], WriteCondition::Absent).expect("first write");
    let e = commit_if(&t, racing, &[b], WriteCondition::Absent).expect_err("race");
    assert!(matches!(e, Error::ConditionalConflict(_)), "{e:?}");
    std::thread::sleep(std::time::Duration::from_millis(5));
    let late = open_session(&t, "clip.mp4", 2, &[b]).upload;
    let e = commit_if(&t, late, &[b], WriteCondition::Absent).expect_err("exists");
    assert!(matches!(e, Error::PreconditionFailed(_)), "{e:?}");
    assert_eq!(
        t.stat(BUCKET, "clip.mp4").expect("stat").version,
        v1.version
    );

    // Etag: the file's ETag is its version here (no stored etag).
    let wrong = open_session(&t, "clip.mp4", 2, &[b]).upload;
    let e = commit_if(&t, wrong, &[b], WriteCondition::Etag("\"0abc\"".into()))
        .expect_err("wrong etag");
    assert!(matches!(e, Error::PreconditionFailed(_)), "{e:?}");
    let right = open_session(&t, "clip.mp4", 2, &[b]).upload;
    let etag = format!("\"{}\"", v1.version);
    let v2 = commit_if(&t, right, &[b], WriteCondition::Etag(etag)).expect("if-match");
    let now = t.stat(BUCKET, "clip.mp4").expect("stat");
    assert_eq!((now.version, now.chunks), (v2.version, vec![b]));

    // Etag on a missing file: 404, nothing written.
    let missing = open_session(&t, "other.mp4", 2, &[a]).upload;
    let e = commit_if(
        &t,
        missing,
        &[a],
        WriteCondition::Etag(v1.version.to_string()),
    )
    .expect_err("missing");
    assert!(matches!(e, Error::NoSuchFile { .. }), "{e:?}");
    assert!(no_such_file(&t, "other.mp4"));
}

#[test]
fn metadata_changes_in_place_under_a_new_version() {
    let t = namenode(2, |_| {});
    let c = chunk("tagged bytes");
    let v1 = upload(&t, "tagged.bin", &[c], &[1, 2]);
    let update = |if_version, value: &str| {
        t.update_meta(&UpdateMeta {
            bucket: BUCKET.into(),
            path: "tagged.bin".into(),
            if_version,
            set: BTreeMap::from([("tagging".to_string(), value.to_string())]),
            remove: vec![],
        })
    };
    let v2 = update(Some(v1.version), "a=1").expect("update");
    assert_ne!(v2.version, v1.version);
    assert_eq!(
        (v2.chunks, v2.created_ms, v2.size),
        (v1.chunks, v1.created_ms, v1.size)
    );
    assert_eq!(v2.meta.get("tagging").map(String::as_str), Some("a=1"));
    // A change against a version that is gone is refused.
    let e = update(Some(v1.version), "b=2").expect_err("stale");
    assert!(matches!(e, Error::PreconditionFailed(_)), "{e:?}");
    assert_eq!(
        t.stat(BUCKET, "tagged.bin")
            .expect("stat")
            .meta
            .get("tagging")
            .map(String::as_str),
        Some("a=1")
    );
}
