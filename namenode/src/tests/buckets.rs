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
        t.list_buckets().expect("list").buckets[0].created_ms,
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
