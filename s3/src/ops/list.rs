//! Object listings: ListObjects (v1, `marker`) and ListObjectsV2
//! (continuation tokens), both one page of the namenode's listing with
//! `delimiter` roll-up and optional `encoding-type=url`.

use base64::Engine as _;
use blob_client::{Client, ListFilesQuery};
use s3s::dto::*;
use s3s::{S3ErrorCode, S3Request, S3Response, S3Result};

use super::args::{check_bucket, url_encode};
use super::attrs::{strong, timestamp};
use crate::error::{from_client, s3};
use crate::service::Gateway;

/// ListObjects (v1, `marker` paging).
pub(crate) async fn list_objects(
    gw: &Gateway,
    req: S3Request<ListObjectsInput>,
) -> S3Result<S3Response<ListObjectsOutput>> {
    let client = gw.client(&req).await?;
    let i = &req.input;
    let url = i
        .encoding_type
        .as_ref()
        .is_some_and(|e| e.as_str() == EncodingType::URL);
    let max_keys = max_keys(i.max_keys)?;
    let owner = owner(&req, true);
    let page = list_page(
        &client,
        &i.bucket,
        i.prefix.clone(),
        i.delimiter.clone(),
        i.marker.clone(),
        max_keys,
        url,
        owner,
    )
    .await?;
    let enc = |s: &Option<String>| s.clone().map(|s| if url { url_encode(&s) } else { s });
    Ok(S3Response::new(ListObjectsOutput {
        name: Some(i.bucket.clone()),
        prefix: Some(enc(&i.prefix).unwrap_or_default()),
        marker: Some(enc(&i.marker).unwrap_or_default()),
        max_keys: Some(max_keys),
        is_truncated: Some(page.next.is_some()),
        next_marker: enc(&page.next),
        delimiter: enc(&non_empty(&i.delimiter)),
        encoding_type: i.encoding_type.clone(),
        contents: Some(page.contents),
        common_prefixes: Some(page.prefixes),
        ..Default::default()
    }))
}

/// ListObjectsV2 (continuation-token paging).
pub(crate) async fn list_objects_v2(
    gw: &Gateway,
    req: S3Request<ListObjectsV2Input>,
) -> S3Result<S3Response<ListObjectsV2Output>> {
    let client = gw.client(&req).await?;
    let i = &req.input;
    let url = i
        .encoding_type
        .as_ref()
        .is_some_and(|e| e.as_str() == EncodingType::URL);
    let max_keys = max_keys(i.max_keys)?;
    let owner = owner(&req, i.fetch_owner == Some(true));
    let after = match &i.continuation_token {
        Some(t) => Some(token_decode(t)?),
        None => i.start_after.clone(),
    };
    let page = list_page(
        &client,
        &i.bucket,
        i.prefix.clone(),
        i.delimiter.clone(),
        after,
        max_keys,
        url,
        owner,
    )
    .await?;
    let enc = |s: &Option<String>| s.clone().map(|s| if url { url_encode(&s) } else { s });
    let key_count = (page.contents.len() + page.prefixes.len()) as i32;
    Ok(S3Response::new(ListObjectsV2Output {
        name: Some(i.bucket.clone()),
        prefix: Some(enc(&i.prefix).unwrap_or_default()),
        max_keys: Some(max_keys),
        key_count: Some(key_count),
        continuation_token: i.continuation_token.clone(),
        is_truncated: Some(page.next.is_some()),
        next_continuation_token: page.next.as_deref().map(token_encode),
        delimiter: enc(&non_empty(&i.delimiter)),
        encoding_type: i.encoding_type.clone(),
        start_after: enc(&i.start_after),
        contents: Some(page.contents),
        common_prefixes: Some(page.prefixes),
        ..Default::default()
    }))
}

/// Most keys in one page (S3: 1,000).
const MAX_KEYS: i32 = 1000;

/// `max-keys` as S3 takes it: at most [`MAX_KEYS`] (a larger value is
/// clamped), never negative.
fn max_keys(asked: Option<i32>) -> S3Result<i32> {
    match asked {
        None => Ok(MAX_KEYS),
        Some(n) if n < 0 => Err(s3(
            S3ErrorCode::InvalidArgument,
            "Argument maxKeys must be an integer between 0 and 2147483647",
        )),
        Some(n) => Ok(n.min(MAX_KEYS)),
    }
}

/// `delimiter`, absent when empty (S3 leaves an empty one out).
fn non_empty(s: &Option<String>) -> Option<String> {
    s.clone().filter(|s| !s.is_empty())
}

/// The owner listed with each object when `wanted` (ListObjects always,
/// ListObjectsV2 with `fetch-owner=true`). Objects have no owner of their
/// own yet: every key may use every bucket, so it is the signer, as in
/// ListBuckets.
fn owner<T>(req: &S3Request<T>, wanted: bool) -> Option<Owner> {
    let key = &req.credentials.as_ref()?.access_key;
    wanted.then(|| Owner {
        display_name: Some(key.clone()),
        id: Some(key.clone()),
    })
}

/// A continuation token (ListObjectsV2, ListBuckets): the name to resume
/// after, opaque and safe in a query string.
pub(super) fn token_encode(s: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
}

/// The name a continuation token resumes after.
pub(super) fn token_decode(t: &str) -> S3Result<String> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(t)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| {
            s3(
                S3ErrorCode::InvalidArgument,
                "The continuation token provided is incorrect",
            )
        })
}

/// A listing page in S3's terms.
struct Page {
    contents: Vec<Object>,
    prefixes: Vec<CommonPrefix>,
    next: Option<String>,
}

/// One page of the namenode's listing; `max_keys <= 0` only checks that
/// the bucket exists.
#[allow(clippy::too_many_arguments)]
async fn list_page(
    client: &Client,
    bucket: &str,
    prefix: Option<String>,
    delimiter: Option<String>,
    start_after: Option<String>,
    max_keys: i32,
    url: bool,
    owner: Option<Owner>,
) -> S3Result<Page> {
    check_bucket(bucket)?;
    if max_keys <= 0 {
        client.head_bucket(bucket).await.map_err(from_client)?;
        return Ok(Page {
            contents: vec![],
            prefixes: vec![],
            next: None,
        });
    }
    let q = ListFilesQuery {
        prefix: prefix.filter(|p| !p.is_empty()),
        delimiter: delimiter.filter(|d| !d.is_empty()),
        start_after: start_after.filter(|s| !s.is_empty()),
        limit: Some(max_keys.clamp(1, MAX_KEYS) as usize),
    };
    let l = client.list_files(bucket, &q).await.map_err(from_client)?;
    let enc = |s: String| if url { url_encode(&s) } else { s };
    let contents = l
        .files
        .into_iter()
        .map(|f| Object {
            e_tag: Some(strong(
                &f.etag.clone().unwrap_or_else(|| f.version.to_string()),
            )),
            key: Some(enc(f.path)),
            last_modified: Some(timestamp(f.created_ms)),
            size: Some(f.size as i64),
            storage_class: Some(ObjectStorageClass::from_static(
                ObjectStorageClass::STANDARD,
            )),
            owner: owner.clone(),
            ..Default::default()
        })
        .collect();
    let prefixes = l
        .common_prefixes
        .into_iter()
        .map(|p| CommonPrefix {
            prefix: Some(enc(p)),
        })
        .collect();
    Ok(Page {
        contents,
        prefixes,
        next: l.next_start_after,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_tokens_round_trip_and_keys_encode() {
        let t = token_encode("a/ü b");
        assert_eq!(token_decode(&t).ok().as_deref(), Some("a/ü b"));
        assert!(token_decode("!!").is_err());
        assert_eq!(url_encode("a b/ü+"), "a%20b/%C3%BC%2B");
    }
}
