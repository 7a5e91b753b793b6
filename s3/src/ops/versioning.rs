//! Bucket versioning: Put/GetBucketVersioning (the bucket setting the
//! namenode acts on, see its `ops::versions`) and ListObjectVersions.
//! Version ids on reads, writes, copies and deletes are set where those
//! operations are answered.

use s3s::dto::*;
use s3s::{S3ErrorCode, S3Request, S3Response, S3Result};

use super::args::check_bucket;
use super::attrs::{strong, timestamp};
use crate::error::{from_client, s3};
use crate::service::Gateway;

/// The bucket setting the namenode reads a bucket's versioning from.
const SETTING: &str = "versioning";

/// PutBucketVersioning: `Enabled` or `Suspended` (MFA delete is not
/// offered).
pub(crate) async fn put_bucket_versioning(
    gw: &Gateway,
    req: S3Request<PutBucketVersioningInput>,
) -> S3Result<S3Response<PutBucketVersioningOutput>> {
    let client = gw.client(&req).await?;
    let i = &req.input;
    check_bucket(&i.bucket)?;
    let cfg = &i.versioning_configuration;
    if cfg
        .mfa_delete
        .as_ref()
        .is_some_and(|m| m.as_str() == MFADelete::ENABLED)
    {
        return Err(s3(
            S3ErrorCode::NotImplemented,
            "MFA delete is not supported by this store.",
        ));
    }
    let status = match cfg.status.as_ref().map(|s| s.as_str()) {
        Some(s @ (BucketVersioningStatus::ENABLED | BucketVersioningStatus::SUSPENDED)) => s,
        _ => {
            return Err(s3(
                S3ErrorCode::MalformedXML,
                "The versioning status must be Enabled or Suspended.",
            ))
        }
    };
    client
        .set_bucket_setting(&i.bucket, SETTING, Some(status.to_string()))
        .await
        .map_err(from_client)?;
    Ok(S3Response::new(PutBucketVersioningOutput::default()))
}

/// GetBucketVersioning: no status for a bucket whose versioning was never
/// turned on.
pub(crate) async fn get_bucket_versioning(
    gw: &Gateway,
    req: S3Request<GetBucketVersioningInput>,
) -> S3Result<S3Response<GetBucketVersioningOutput>> {
    let client = gw.client(&req).await?;
    check_bucket(&req.input.bucket)?;
    let status = client
        .bucket_setting(&req.input.bucket, SETTING)
        .await
        .map_err(from_client)?;
    Ok(S3Response::new(GetBucketVersioningOutput {
        status: status.map(BucketVersioningStatus::from),
        mfa_delete: None,
    }))
}

/// ListObjectVersions: every version and delete marker under a prefix,
/// paged by key and version id markers.
pub(crate) async fn list_object_versions(
    gw: &Gateway,
    req: S3Request<ListObjectVersionsInput>,
) -> S3Result<S3Response<ListObjectVersionsOutput>> {
    let client = gw.client(&req).await?;
    let i = &req.input;
    check_bucket(&i.bucket)?;
    if i.version_id_marker.is_some() && i.key_marker.is_none() {
        return Err(s3(
            S3ErrorCode::InvalidArgument,
            "A version-id marker cannot be specified without a key marker.",
        ));
    }
    if i.delimiter.as_ref().is_some_and(|d| !d.is_empty()) {
        return Err(s3(
            S3ErrorCode::NotImplemented,
            "ListObjectVersions with a delimiter is not supported by this store.",
        ));
    }
    let max = i.max_keys.unwrap_or(1000).clamp(0, 1000);
    let page = if max == 0 {
        blob_client::ListVersions::default()
    } else {
        client
            .list_versions(
                &i.bucket,
                &blob_client::ListVersionsQuery {
                    prefix: i.prefix.clone(),
                    key_marker: i.key_marker.clone(),
                    version_marker: i.version_id_marker.clone(),
                    limit: Some(max as usize),
                },
            )
            .await
            .map_err(from_client)?
    };
    let mut versions = Vec::new();
    let mut markers = Vec::new();
    for v in page.versions {
        if v.delete_marker {
            markers.push(DeleteMarkerEntry {
                is_latest: Some(v.latest),
                key: Some(v.path),
                last_modified: Some(timestamp(v.created_ms)),
                owner: None,
                version_id: Some(v.version_id),
            });
        } else {
            versions.push(ObjectVersion {
                e_tag: v.etag.as_deref().map(strong),
                is_latest: Some(v.latest),
                key: Some(v.path),
                last_modified: Some(timestamp(v.created_ms)),
                size: Some(v.size as i64),
                storage_class: Some(ObjectVersionStorageClass::from_static(
                    ObjectVersionStorageClass::STANDARD,
                )),
                version_id: Some(v.version_id),
                ..Default::default()
            });
        }
    }
    Ok(S3Response::new(ListObjectVersionsOutput {
        name: Some(i.bucket.clone()),
        prefix: i.prefix.clone(),
        key_marker: i.key_marker.clone(),
        version_id_marker: i.version_id_marker.clone(),
        max_keys: Some(max),
        is_truncated: Some(page.truncated),
        next_key_marker: page.next_key_marker,
        next_version_id_marker: page.next_version_marker,
        versions: Some(versions),
        delete_markers: Some(markers),
        ..Default::default()
    }))
}
