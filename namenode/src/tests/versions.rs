//! Versioned buckets: old versions are kept (and their chunks with them),
//! deletes leave markers, one version can be read, listed and removed, and
//! removing the newest brings the one before back.

use blob_common::now_ms;
use blob_common::proto::namenode::ListVersionsQuery;

use super::*;

fn versions(t: &TestNn, prefix: &str) -> Vec<(String, String, bool, bool)> {
    let q = ListVersionsQuery {
        prefix: Some(prefix.to_string()),
        ..Default::default()
    };
    t.list_versions(BUCKET, &q)
        .expect("list versions")
        .versions
        .into_iter()
        .map(|v| (v.path, v.version_id, v.latest, v.delete_marker))
        .collect()
}

fn set_versioning(t: &TestNn, state: &str) {
    t.set_bucket_setting(BUCKET, "versioning", Some(state.to_string()))
        .expect("set versioning");
}

#[test]
fn versions_are_kept_listed_read_and_removed() {
    let t = namenode(3, |cfg| {
        cfg.gc_grace_ms = 1;
        cfg.presign_ttl_secs = 1;
    });
    let (a, b, c) = (chunk("v1"), chunk("v2"), chunk("unversioned"));
    // Written before versioning: the "null" version, kept once enabled.
    let null = upload(&t, "m.mov", &[c], &[1, 2]);
    assert_eq!(null.version_id, None);
    set_versioning(&t, "Enabled");
    let v1 = upload(&t, "m.mov", &[a], &[1, 2]);
    let v2 = upload(&t, "m.mov", &[b], &[1, 2]);
    let (id1, id2) = (v1.version_id.expect("id"), v2.version_id.expect("id"));
    assert_ne!(id1, id2);
    assert_eq!(
        t.stat_version(BUCKET, "m.mov", None)
            .expect("current")
            .chunks,
        vec![b]
    );
    assert_eq!(
        t.stat_version(BUCKET, "m.mov", Some(&id1))
            .expect("v1")
            .chunks,
        vec![a]
    );
    assert_eq!(
        t.stat_version(BUCKET, "m.mov", Some("null"))
            .expect("null")
            .chunks,
        vec![c]
    );
    assert_eq!(
        versions(&t, "m"),
        vec![
            ("m.mov".into(), id2.clone(), true, false),
            ("m.mov".into(), id1.clone(), false, false),
            ("m.mov".into(), "null".into(), false, false),
        ]
    );

    // A delete leaves a marker; the file is gone, its versions are not,
    // and the GC keeps every chunk they need.
    let del = t.delete_path(BUCKET, "m.mov", None).expect("delete");
    assert!(del.delete_marker);
    let marker = del.version_id.expect("marker id");
    assert!(matches!(
        t.stat_version(BUCKET, "m.mov", None),
        Err(Error::NoSuchFile { .. })
    ));
    assert!(matches!(
        t.stat_version(BUCKET, "m.mov", Some(&marker)),
        Err(Error::DeleteMarker(_))
    ));
    t.collect_garbage(now_ms() + 3_600_000).expect("gc");
    for ch in [a, b, c] {
        assert!(
            chunk_record(&t, &ch).is_some(),
            "a live version's chunk was collected"
        );
    }
    let listed = versions(&t, "");
    assert_eq!(listed.len(), 4);
    assert_eq!(listed[0], ("m.mov".into(), marker.clone(), true, true));
    assert!(
        t.delete_bucket(BUCKET).is_err(),
        "a bucket with versions is not empty"
    );

    // Removing the marker brings v2 back; removing v2 then brings v1.
    t.delete_path(BUCKET, "m.mov", Some(&marker))
        .expect("remove marker");
    assert_eq!(
        t.stat_version(BUCKET, "m.mov", None).expect("back").chunks,
        vec![b]
    );
    t.delete_path(BUCKET, "m.mov", Some(&id2))
        .expect("remove v2");
    assert_eq!(
        t.stat_version(BUCKET, "m.mov", None).expect("v1").chunks,
        vec![a]
    );
    t.collect_garbage(now_ms() + 3_600_000).expect("gc");
    assert!(
        chunk_record(&t, &b).is_none(),
        "a removed version's chunk is collected"
    );
    assert!(matches!(
        t.delete_path(BUCKET, "m.mov", Some(&id2)),
        Err(Error::NoSuchVersion { .. })
    ));
}

#[test]
fn suspended_versioning_replaces_the_null_version_only() {
    let t = namenode(3, |_| {});
    set_versioning(&t, "Enabled");
    let kept = upload(&t, "f", &[chunk("kept")], &[1, 2])
        .version_id
        .expect("id");
    set_versioning(&t, "Suspended");
    let n1 = upload(&t, "f", &[chunk("null 1")], &[1, 2]);
    assert_eq!(n1.version_id, None);
    upload(&t, "f", &[chunk("null 2")], &[1, 2]);
    let ids: Vec<String> = versions(&t, "f").into_iter().map(|v| v.1).collect();
    assert_eq!(
        ids,
        vec!["null".to_string(), kept],
        "one null version, the kept one below"
    );
}

#[test]
fn version_listings_page_by_key_and_version() {
    let t = namenode(3, |_| {});
    set_versioning(&t, "Enabled");
    for path in ["a", "b", "c"] {
        for n in 0..3 {
            upload(&t, path, &[chunk(&format!("{path}{n}"))], &[1, 2]);
        }
    }
    let all = versions(&t, "");
    assert_eq!(all.len(), 9);
    let mut paged = Vec::new();
    let mut q = ListVersionsQuery {
        limit: Some(2),
        ..Default::default()
    };
    loop {
        let page = t.list_versions(BUCKET, &q).expect("page");
        paged.extend(page.versions.iter().map(|v| {
            (
                v.path.clone(),
                v.version_id.clone(),
                v.latest,
                v.delete_marker,
            )
        }));
        if !page.truncated {
            break;
        }
        q.key_marker = page.next_key_marker;
        q.version_marker = page.next_version_marker;
    }
    assert_eq!(paged, all);
}

#[test]
fn noncurrent_versions_expire_days_after_they_were_replaced() {
    use blob_common::proto::lifecycle::{Rule, SETTING};
    let t = namenode(3, |c| c.lifecycle_day_ms = 1000);
    set_versioning(&t, "Enabled");
    let rules = vec![Rule {
        enabled: true,
        prefix: "old/".into(),
        noncurrent_days: Some(1),
        ..Rule::default()
    }];
    t.set_bucket_setting(BUCKET, SETTING, serde_json::to_string(&rules).ok())
        .expect("rules");
    upload(&t, "old/f", &[chunk("first")], &[1, 2]);
    let second = upload(&t, "old/f", &[chunk("second")], &[1, 2]);
    upload(&t, "keep/f", &[chunk("k1")], &[1, 2]);
    upload(&t, "keep/f", &[chunk("k2")], &[1, 2]);
    let replaced = second.created_ms;
    let a = t.apply_lifecycle(replaced + 999).expect("pass");
    assert_eq!(a.noncurrent, 0, "too young");
    let a = t.apply_lifecycle(replaced + 1000).expect("pass");
    assert_eq!(a.noncurrent, 1);
    assert_eq!(
        versions(&t, "old/").len(),
        1,
        "only the current version is left"
    );
    assert_eq!(
        versions(&t, "keep/").len(),
        2,
        "another prefix keeps its versions"
    );
    assert_eq!(
        t.stat_version(BUCKET, "old/f", None)
            .expect("current")
            .chunks,
        vec![chunk("second")]
    );
    assert!(marked_for_gc(&t, &chunk("first")), "its chunk goes to GC");
}
