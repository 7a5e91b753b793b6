//! Buckets' named settings: kept with the bucket, replaced, removed, and
//! checked for name and size.

use super::*;

#[test]
fn bucket_settings_are_kept_replaced_and_removed() {
    let t = namenode(1, |_| {});
    let missing = t.bucket_setting(BUCKET, "cors").expect_err("unset");
    assert!(matches!(missing, Error::NoSuchSetting(_)), "{missing:?}");
    t.set_bucket_setting(BUCKET, "cors", Some("[1]".into()))
        .expect("set");
    t.set_bucket_setting(BUCKET, "cors", Some("[2]".into()))
        .expect("replace");
    assert_eq!(t.bucket_setting(BUCKET, "cors").expect("get").value, "[2]");
    // The bucket itself is unchanged by its settings.
    let before = t.head_bucket(BUCKET).expect("head").created_ms;
    assert_eq!(
        t.list_buckets(&crate::access::Principal::Service(
            blob_common::auth::ServiceRole::Gateway
        ))
        .expect("list")
        .buckets[0]
            .created_ms,
        before
    );
    t.set_bucket_setting(BUCKET, "cors", None).expect("remove");
    assert!(t.bucket_setting(BUCKET, "cors").is_err());

    for bad in ["", "CORS", "a/b", &"x".repeat(33)] {
        let e = t.set_bucket_setting(BUCKET, bad, Some("v".into()));
        assert!(matches!(e, Err(Error::BadRequest(_))), "{bad:?}: {e:?}");
    }
    let big = "v".repeat((64 << 10) + 1);
    assert!(matches!(
        t.set_bucket_setting(BUCKET, "cors", Some(big)),
        Err(Error::BadRequest(_))
    ));
    assert!(matches!(
        t.set_bucket_setting("no-such-bucket", "cors", Some("v".into())),
        Err(Error::NoSuchBucket(_))
    ));
}

#[test]
fn lifecycle_rules_expire_matching_files_and_old_uploads_only() {
    use blob_common::proto::lifecycle::{Rule, SETTING};
    let t = namenode(2, |c| c.lifecycle_day_ms = 1000);
    let rules = vec![Rule {
        enabled: true,
        prefix: "tmp/".into(),
        tags: vec![("kind".into(), "proxy".into())],
        expiration_days: Some(1),
        abort_multipart_days: Some(2),
        ..Rule::default()
    }];
    t.set_bucket_setting(BUCKET, SETTING, serde_json::to_string(&rules).ok())
        .expect("set rules");
    let tagged = |path: &str, tags: &str, tag: &str| {
        let f = upload(&t, path, &[chunk(tag)], &[1, 2]);
        t.update_meta(&blob_common::proto::namenode::UpdateMeta {
            bucket: BUCKET.into(),
            path: path.into(),
            set: BTreeMap::from([("tagging".to_string(), tags.to_string())]),
            ..Default::default()
        })
        .map(|_| f)
        .expect("tag")
    };
    let gone = tagged("tmp/a.mp4", "kind=proxy", "a");
    tagged("tmp/master.mp4", "kind=master", "b");
    tagged("keep/a.mp4", "kind=proxy", "c");
    let now = gone.created_ms;
    assert_eq!(
        t.apply_lifecycle(now + 999).expect("pass").expired,
        0,
        "too young"
    );
    let applied = t.apply_lifecycle(now + 1000).expect("pass");
    assert_eq!(applied.expired, 1);
    assert!(t.stat(BUCKET, "tmp/a.mp4").is_err());
    assert!(t.stat(BUCKET, "tmp/master.mp4").is_ok());
    assert!(t.stat(BUCKET, "keep/a.mp4").is_ok());
    assert!(marked_for_gc(&t, &chunk("a")), "its chunk goes to GC");
    assert!(!marked_for_gc(&t, &chunk("b")));
}
