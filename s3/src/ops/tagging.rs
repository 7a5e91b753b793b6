//! Object and bucket tags: `x-amz-tagging` on PutObject, CreateMultipartUpload and
//! CopyObject (`x-amz-tagging-directive`), Put/Get/DeleteObjectTagging, and
//! `x-amz-tagging-count` on GetObject. A file keeps its tags in its
//! metadata as the URL-encoded query string the header uses; changing them
//! changes the file's metadata in place (its bytes, ETag and time stay).
//! A bucket keeps its tags (Put/Get/DeleteBucketTagging) as a bucket
//! setting ([`super::settings`]).

use std::collections::BTreeMap;

use blob_client::{FileInfo, UpdateMeta};
use blob_common::proto::lifecycle::decode_tags;
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use s3s::dto::*;
use s3s::{S3ErrorCode, S3Request, S3Response, S3Result};

use super::args::{check_bucket, check_key};
use super::settings;
use crate::error::{from_client, s3};
use crate::service::Gateway;

/// The metadata key of a file's tags.
pub(super) const TAGGING: &str = blob_common::proto::lifecycle::TAGS_META;
/// Most tags on one object (S3: 10).
const MAX_TAGS: usize = 10;

/// Tags, in the order given.
pub(super) type Tags = Vec<(String, String)>;

fn invalid(msg: impl Into<String>) -> s3s::S3Error {
    s3(S3ErrorCode::InvalidTag, msg)
}

/// Checks tags as S3 does: at most 10, keys of 1 to 128 characters and
/// values of at most 256, no key twice, none in the reserved `aws:`
/// namespace.
pub(super) fn check(tags: &Tags) -> S3Result<()> {
    if tags.len() > MAX_TAGS {
        return Err(invalid(format!(
            "Object tags cannot be greater than {MAX_TAGS}"
        )));
    }
    let mut seen = std::collections::HashSet::new();
    for (k, v) in tags {
        if k.is_empty() || k.chars().count() > 128 {
            return Err(invalid("The TagKey you have provided is invalid"));
        }
        if v.chars().count() > 256 {
            return Err(invalid("The TagValue you have provided is invalid"));
        }
        if k.starts_with("aws:") {
            return Err(invalid("Your TagKey cannot be prefixed with aws:"));
        }
        if !seen.insert(k.as_str()) {
            return Err(invalid("Cannot provide multiple Tags with the same key"));
        }
    }
    Ok(())
}

/// Tags from the `x-amz-tagging` form (`k1=v1&k2=v2`, URL-encoded).
pub(super) fn parse(header: &str) -> S3Result<Tags> {
    let tags = decode_tags(header).ok_or_else(|| invalid("The tag set is not valid UTF-8"))?;
    check(&tags)?;
    Ok(tags)
}

/// Tags in the `x-amz-tagging` form.
pub(super) fn encode(tags: &Tags) -> String {
    tags.iter()
        .map(|(k, v)| {
            format!(
                "{}={}",
                utf8_percent_encode(k, NON_ALPHANUMERIC),
                utf8_percent_encode(v, NON_ALPHANUMERIC)
            )
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// A file's tags.
pub(super) fn tags_of(file: &FileInfo) -> Tags {
    file.meta
        .get(TAGGING)
        .and_then(|t| parse(t).ok())
        .unwrap_or_default()
}

/// Puts the tags of an `x-amz-tagging` header into `meta`.
pub(super) fn tag_meta(
    header: Option<&String>,
    meta: &mut BTreeMap<String, String>,
) -> S3Result<()> {
    if let Some(h) = header {
        let tags = parse(h)?;
        if tags.is_empty() {
            meta.remove(TAGGING);
        } else {
            meta.insert(TAGGING.into(), encode(&tags));
        }
    }
    Ok(())
}

/// Tags of an S3 tag set (a missing value is empty).
fn from_set(set: &TagSet) -> S3Result<Tags> {
    let mut tags = Tags::new();
    for t in set {
        let Some(k) = &t.key else {
            return Err(invalid("The TagKey you have provided is invalid"));
        };
        tags.push((k.clone(), t.value.clone().unwrap_or_default()));
    }
    check(&tags)?;
    Ok(tags)
}

/// Tags as an S3 tag set.
fn to_set(tags: Tags) -> TagSet {
    tags.into_iter()
        .map(|(k, v)| Tag {
            key: Some(k),
            value: Some(v),
        })
        .collect()
}

/// PutBucketTagging: the bucket's tags, kept as a bucket setting.
pub(crate) async fn put_bucket_tagging(
    gw: &Gateway,
    req: S3Request<PutBucketTaggingInput>,
) -> S3Result<S3Response<PutBucketTaggingOutput>> {
    let client = gw.client(&req).await?;
    let tags = from_set(&req.input.tagging.tag_set)?;
    settings::write(&client, &req.input.bucket, TAGGING, Some(&tags)).await?;
    Ok(S3Response::new(PutBucketTaggingOutput::default()))
}

/// GetBucketTagging: 404 `NoSuchTagSet` when the bucket has none.
pub(crate) async fn get_bucket_tagging(
    gw: &Gateway,
    req: S3Request<GetBucketTaggingInput>,
) -> S3Result<S3Response<GetBucketTaggingOutput>> {
    let client = gw.client(&req).await?;
    let tags: Tags = settings::read(&client, &req.input.bucket, TAGGING).await?;
    if tags.is_empty() {
        return Err(s3(S3ErrorCode::NoSuchTagSet, "The TagSet does not exist"));
    }
    Ok(S3Response::new(GetBucketTaggingOutput {
        tag_set: to_set(tags),
    }))
}

/// DeleteBucketTagging (204).
pub(crate) async fn delete_bucket_tagging(
    gw: &Gateway,
    req: S3Request<DeleteBucketTaggingInput>,
) -> S3Result<S3Response<DeleteBucketTaggingOutput>> {
    let client = gw.client(&req).await?;
    settings::write::<(String, String)>(&client, &req.input.bucket, TAGGING, None).await?;
    Ok(settings::no_content())
}

/// PutObjectTagging: replaces an object's tags.
pub(crate) async fn put_object_tagging(
    gw: &Gateway,
    req: S3Request<PutObjectTaggingInput>,
) -> S3Result<S3Response<PutObjectTaggingOutput>> {
    let client = gw.client(&req).await?;
    let i = &req.input;
    check_bucket(&i.bucket)?;
    check_key(&i.key)?;
    let tags = from_set(&i.tagging.tag_set)?;
    let mut update = UpdateMeta {
        bucket: i.bucket.clone(),
        path: i.key.clone(),
        ..Default::default()
    };
    if tags.is_empty() {
        update.remove.push(TAGGING.into());
    } else {
        update.set.insert(TAGGING.into(), encode(&tags));
    }
    client.update_meta(&update).await.map_err(from_client)?;
    gw.locations.forget(&i.bucket, &i.key);
    Ok(S3Response::new(PutObjectTaggingOutput::default()))
}

/// GetObjectTagging: an object's tags (an empty set when it has none).
pub(crate) async fn get_object_tagging(
    gw: &Gateway,
    req: S3Request<GetObjectTaggingInput>,
) -> S3Result<S3Response<GetObjectTaggingOutput>> {
    let client = gw.client(&req).await?;
    let i = &req.input;
    check_bucket(&i.bucket)?;
    check_key(&i.key)?;
    let file = client.stat(&i.bucket, &i.key).await.map_err(from_client)?;
    Ok(S3Response::new(GetObjectTaggingOutput {
        tag_set: to_set(tags_of(&file)),
        version_id: None,
    }))
}

/// DeleteObjectTagging: removes an object's tags (204).
pub(crate) async fn delete_object_tagging(
    gw: &Gateway,
    req: S3Request<DeleteObjectTaggingInput>,
) -> S3Result<S3Response<DeleteObjectTaggingOutput>> {
    let client = gw.client(&req).await?;
    let i = &req.input;
    check_bucket(&i.bucket)?;
    check_key(&i.key)?;
    let update = UpdateMeta {
        bucket: i.bucket.clone(),
        path: i.key.clone(),
        remove: vec![TAGGING.into()],
        ..Default::default()
    };
    client.update_meta(&update).await.map_err(from_client)?;
    gw.locations.forget(&i.bucket, &i.key);
    Ok(settings::no_content())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(r: S3Result<Tags>) -> Option<S3ErrorCode> {
        r.err().map(|e| e.code().clone())
    }

    #[test]
    fn tag_headers_round_trip_and_are_checked() {
        let tags = parse("project=blue%20sky&take=3&empty=").expect("valid");
        assert_eq!(
            tags,
            vec![
                ("project".into(), "blue sky".into()),
                ("take".into(), "3".into()),
                ("empty".into(), String::new())
            ]
        );
        assert_eq!(parse(&encode(&tags)).expect("again"), tags);
        assert_eq!(
            parse("a+b=c+d").expect("plus")[0],
            ("a b".into(), "c d".into())
        );
        let eleven: Vec<String> = (0..11).map(|i| format!("k{i}=v")).collect();
        assert_eq!(
            code(parse(&eleven.join("&"))),
            Some(S3ErrorCode::InvalidTag)
        );
        assert_eq!(code(parse("a=1&a=2")), Some(S3ErrorCode::InvalidTag));
        assert_eq!(code(parse("aws:x=1")), Some(S3ErrorCode::InvalidTag));
        assert_eq!(
            code(parse(&format!("{}=1", "k".repeat(129)))),
            Some(S3ErrorCode::InvalidTag)
        );
        assert_eq!(
            code(parse(&format!("k={}", "v".repeat(257)))),
            Some(S3ErrorCode::InvalidTag)
        );
        assert_eq!(parse("").expect("none"), Tags::new());
    }
}
