//! Receipts: signed by a datanode over node, chunk, size, upload session
//! and issue time; the namenode refuses a forged one, one for another
//! session, and an old (or future) one.

use blob_common::auth::MAX_SKEW_SECS;

use super::*;

fn refused(t: &TestNn, plan: &UploadPlan, c: &ChunkRef, r: Receipt) -> Error {
    let err = commit(t, plan.upload, &[*c], vec![r]).expect_err("receipt must be refused");
    assert!(
        matches!(t.stat(BUCKET, "r.bin"), Err(Error::NoSuchFile { .. })),
        "a refused receipt leaves no file"
    );
    assert_eq!(chunk_record(t, c).map(|r| r.replicas), None);
    err
}

/// A change made to a receipt after it was signed.
type Alteration = Box<dyn Fn(&mut Receipt)>;

fn session(t: &TestNn, c: &ChunkRef) -> UploadPlan {
    open_session(t, "r.bin", 1, &[*c])
}

#[test]
fn a_receipt_signed_with_another_key_or_altered_is_refused() {
    let t = namenode(2, |_| {});
    let c = chunk("forged");
    let plan = session(&t, &c);
    let forged = Receipt::issue(
        &Keyring::generate(),
        node(1),
        c.id,
        c.size,
        Some(plan.upload),
        now_secs(),
    );
    assert!(matches!(
        refused(&t, &plan, &c, forged),
        Error::BadReceipt(_)
    ));
    // The signature covers every field, the issue time and session too.
    let good = receipt(&t, 1, &c, plan.upload);
    let alterations: Vec<(&str, Alteration)> = vec![
        ("node", Box::new(|r| r.node = node(2))),
        ("size", Box::new(|r| r.size += 1)),
        ("issued", Box::new(|r| r.issued -= 1)),
        ("upload", Box::new(|r| r.upload = Some(UploadId::random()))),
        ("sig", Box::new(|r| r.sig = "00".repeat(32))),
    ];
    for (field, alter) in alterations {
        let mut r = good.clone();
        alter(&mut r);
        let err = refused(&t, &plan, &c, r);
        assert!(
            matches!(err, Error::BadReceipt(_)),
            "altered {field}: {err:?}"
        );
    }
    commit(&t, plan.upload, &[c], vec![good]).expect("the unaltered receipt commits");
}

#[test]
fn a_receipt_issued_for_another_session_is_refused() {
    let t = namenode(2, |_| {});
    let c = chunk("replayed");
    let plan = session(&t, &c);
    let other = open_session(&t, "other.bin", 1, &[c]);
    let theirs = receipt(&t, 1, &c, other.upload);
    let err = refused(&t, &plan, &c, theirs);
    assert!(
        matches!(&err, Error::BadRequest(m) if m.contains("another upload session")),
        "{err:?}"
    );
    let sessionless = Receipt::issue(&t.keyring, node(1), c.id, c.size, None, now_secs());
    assert!(matches!(
        refused(&t, &plan, &c, sessionless),
        Error::BadRequest(_)
    ));
}

#[test]
fn a_receipt_older_than_its_url_could_be_or_from_the_future_is_refused() {
    let t = namenode(2, |cfg| cfg.presign_ttl_secs = 600);
    let c = chunk("stale");
    let plan = session(&t, &c);
    let max_age = 600 + MAX_SKEW_SECS;
    let at =
        |issued: u64| Receipt::issue(&t.keyring, node(1), c.id, c.size, Some(plan.upload), issued);
    for issued in [now_secs() - max_age - 5, now_secs() + MAX_SKEW_SECS + 60] {
        let err = refused(&t, &plan, &c, at(issued));
        assert!(
            matches!(&err, Error::BadRequest(m) if m.contains("no longer valid")),
            "issued {issued}: {err:?}"
        );
    }
    // Within its age (with room for the test's own clock) it counts.
    commit(&t, plan.upload, &[c], vec![at(now_secs() - max_age + 30)])
        .expect("a receipt within its age commits");
}
