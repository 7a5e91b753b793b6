//! Deletes: DeleteObject and DeleteObjects (multi-object delete, a few
//! keys at a time, each key's outcome reported on its own).

use futures::StreamExt;
use s3s::dto::*;
use s3s::{S3Error, S3ErrorCode, S3Request, S3Response, S3Result};

use super::args::{check_bucket, check_key};
use crate::error::{from_client, s3};
use crate::service::Gateway;

/// DeleteObject: deleting a missing key succeeds.
pub(crate) async fn delete_object(
    gw: &Gateway,
    req: S3Request<DeleteObjectInput>,
) -> S3Result<S3Response<DeleteObjectOutput>> {
    let client = gw.client(&req).await?;
    check_bucket(&req.input.bucket)?;
    check_key(&req.input.key)?;
    gw.locations.forget(&req.input.bucket, &req.input.key);
    match client.delete_file(&req.input.bucket, &req.input.key).await {
        Ok(()) => {}
        // Deleting a missing key succeeds in S3; a missing bucket does not.
        Err(e) if e.code() == Some("NoSuchFile") => {}
        Err(e) => return Err(from_client(e)),
    }
    Ok(S3Response::new(DeleteObjectOutput::default()))
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
    let keys: Vec<String> = req
        .input
        .delete
        .objects
        .iter()
        .map(|o| o.key.clone())
        .collect();
    let results: Vec<(String, Result<(), S3Error>)> = futures::stream::iter(keys)
        .map(|key| {
            let client = client.clone();
            let bucket = bucket.clone();
            gw.locations.forget(&bucket, &key);
            async move {
                let r = match check_key(&key) {
                    Err(e) => Err(e),
                    Ok(()) => match client.delete_file(&bucket, &key).await {
                        Ok(()) => Ok(()),
                        Err(e) if e.code() == Some("NoSuchFile") => Ok(()),
                        Err(e) => Err(from_client(e)),
                    },
                };
                (key, r)
            }
        })
        .buffered(8)
        .collect()
        .await;
    let mut deleted = Vec::new();
    let mut errors = Vec::new();
    for (key, r) in results {
        match r {
            Ok(()) => {
                if !quiet {
                    deleted.push(DeletedObject {
                        key: Some(key),
                        ..Default::default()
                    })
                }
            }
            Err(e) => errors.push(Error {
                code: Some(e.code().as_str().to_string()),
                key: Some(key),
                message: e.message().map(str::to_string),
                version_id: None,
            }),
        }
    }
    Ok(S3Response::new(DeleteObjectsOutput {
        deleted: Some(deleted),
        errors: Some(errors),
        ..Default::default()
    }))
}
