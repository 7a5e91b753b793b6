//! Bucket configurations the gateway keeps as named bucket settings at the
//! namenode (CORS rules, lifecycle rules, bucket tags), each a JSON list:
//! read, replaced and removed the same way for every S3 call that manages
//! one.

use blob_client::Client;
use s3s::{S3ErrorCode, S3Response, S3Result};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::args::check_bucket;
use crate::error::{from_client, s3};

/// `bucket`'s list under `name`: empty when it has none (404 when the
/// bucket does not exist).
pub(super) async fn read<T: DeserializeOwned>(
    client: &Client,
    bucket: &str,
    name: &str,
) -> S3Result<Vec<T>> {
    check_bucket(bucket)?;
    match client
        .bucket_setting(bucket, name)
        .await
        .map_err(from_client)?
    {
        None => Ok(Vec::new()),
        Some(v) => serde_json::from_str(&v).map_err(|e| {
            s3(
                S3ErrorCode::InternalError,
                format!("stored {name} setting of {bucket}: {e}"),
            )
        }),
    }
}

/// Replaces `bucket`'s list under `name`, or removes it with `None`.
pub(super) async fn write<T: Serialize>(
    client: &Client,
    bucket: &str,
    name: &str,
    value: Option<&[T]>,
) -> S3Result<()> {
    check_bucket(bucket)?;
    let json = value
        .map(serde_json::to_string)
        .transpose()
        .map_err(|e| s3(S3ErrorCode::InternalError, format!("encoding {name}: {e}")))?;
    client
        .set_bucket_setting(bucket, name, json)
        .await
        .map_err(from_client)
}

/// The 204 a Delete… of a bucket configuration answers.
pub(super) fn no_content<T: Default>() -> S3Response<T> {
    let mut resp = S3Response::new(T::default());
    resp.status = Some(http::StatusCode::NO_CONTENT);
    resp
}
