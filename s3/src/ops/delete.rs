//! Deletes: DeleteObject and DeleteObjects (multi-object delete, a few
//! keys at a time, each key's outcome reported on its own).

use futures::StreamExt;
use s3s::dto::*;
use s3s::{S3Error, S3ErrorCode, S3Request, S3Response, S3Result};

use super::args::{check_bucket, check_key};
use crate::error::{from_client, s3};
use crate::service::Gateway;

/// DeleteObject: deleting a missing key succeeds. In a versioned bucket
/// it leaves a delete marker, or with `versionId` removes that version.
pub(crate) async fn delete_object(
    gw: &Gateway,
    req: S3Request<DeleteObjectInput>,
) -> S3Result<S3Response<DeleteObjectOutput>> {
    let client = gw.client(&req).await?;
    let i = &req.input;
    check_bucket(&i.bucket)?;
    check_key(&i.key)?;
    gw.locations.forget(&i.bucket, &i.key);
    let out = delete_one(&client, &i.bucket, &i.key, i.version_id.as_deref()).await?;
    let mut resp = S3Response::new(out);
    resp.status = Some(http::StatusCode::NO_CONTENT);
    Ok(resp)
}

/// Deletes `bucket/key` (or one version of it) as DeleteObject does.
async fn delete_one(
    client: &blob_client::Client,
    bucket: &str,
    key: &str,
    version: Option<&str>,
) -> S3Result<DeleteObjectOutput> {
    match client.delete_path(bucket, key, version).await {
        Ok(o) => Ok(DeleteObjectOutput {
            delete_marker: o.delete_marker.then_some(true),
            version_id: o.version_id,
            ..Default::default()
        }),
        // Deleting a missing key (or version) succeeds in S3; a missing
        // bucket does not.
        Err(e) if matches!(e.code(), Some("NoSuchFile") | Some("NoSuchVersion")) => {
            Ok(DeleteObjectOutput {
                version_id: version.map(str::to_string),
                ..Default::default()
            })
        }
        Err(e) if e.code() == Some("BadRequest") && version.is_some() => Err(s3(
            S3ErrorCode::InvalidArgument,
            "Invalid version id specified",
        )),
        Err(e) => Err(from_client(e)),
    }
}

/// DeleteObjects: up to 1000 keys, a few deleted at once.
pub(crate) async fn delete_objects(
    gw: &Gateway,
    req: S3Request<DeleteObjectsInput>,
) -> S3Result<S3Response<DeleteObjectsOutput>> {
    let client = gw.client(&req).await?;
    let bucket = req.input.bucket.clone();
    check_bucket(&bucket)?;
    if req.input.delete.objects.len() > 1000 {
        return Err(s3(
            S3ErrorCode::MalformedXML,
            "at most 1000 keys per request",
        ));
    }
    if !client.head_bucket(&bucket).await.map_err(from_client)? {
        return Err(s3(
            S3ErrorCode::NoSuchBucket,
            "The specified bucket does not exist",
        ));
    }
    let quiet = req.input.delete.quiet.unwrap_or(false);
    let keys: Vec<(String, Option<String>)> = req
        .input
        .delete
        .objects
        .iter()
        .map(|o| (o.key.clone(), o.version_id.clone()))
        .collect();
    type Outcome = (String, Option<String>, Result<DeleteObjectOutput, S3Error>);
    let results: Vec<Outcome> = futures::stream::iter(keys)
        .map(|(key, version)| {
            let client = client.clone();
            let bucket = bucket.clone();
            gw.locations.forget(&bucket, &key);
            async move {
                let r = match check_key(&key) {
                    Err(e) => Err(e),
                    Ok(()) => delete_one(&client, &bucket, &key, version.as_deref()).await,
                };
                (key, version, r)
            }
        })
        .buffered(8)
        .collect()
        .await;
    let mut deleted = Vec::new();
    let mut errors = Vec::new();
    for (key, version, r) in results {
        match r {
            Ok(out) => {
                if !quiet {
                    let marker = out.delete_marker == Some(true);
                    deleted.push(DeletedObject {
                        key: Some(key),
                        version_id: version.clone(),
                        delete_marker: out.delete_marker,
                        delete_marker_version_id: if marker && version.is_none() {
                            out.version_id
                        } else {
                            None
                        },
                    })
                }
            }
            Err(e) => errors.push(Error {
                code: Some(e.code().as_str().to_string()),
                key: Some(key),
                message: e.message().map(str::to_string),
                version_id: version,
            }),
        }
    }
    Ok(S3Response::new(DeleteObjectsOutput {
        deleted: Some(deleted),
        errors: Some(errors),
        ..Default::default()
    }))
}
