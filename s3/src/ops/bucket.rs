//! Bucket operations: list, create, head, delete, and the bucket's
//! location (region). A bucket is a namespace root at the namenode.

use s3s::dto::*;
use s3s::{S3ErrorCode, S3Request, S3Response, S3Result};

use super::args::check_bucket;
use super::attrs::timestamp;
use crate::error::{from_client, s3};
use crate::service::Gateway;

/// ListBuckets: the buckets the signer can see.
pub(crate) async fn list_buckets(
    gw: &Gateway,
    req: S3Request<ListBucketsInput>,
) -> S3Result<S3Response<ListBucketsOutput>> {
    let client = gw.client(&req).await?;
    let l = client.list_buckets().await.map_err(from_client)?;
    let buckets = l
        .buckets
        .into_iter()
        .map(|b| Bucket {
            name: Some(b.name),
            creation_date: Some(timestamp(b.created_ms)),
            bucket_region: Some(gw.cfg.region.clone()),
        })
        .collect();
    let owner = req.credentials.as_ref().map(|c| Owner {
        display_name: Some(c.access_key.clone()),
        id: Some(c.access_key.clone()),
    });
    Ok(S3Response::new(ListBucketsOutput {
        buckets: Some(buckets),
        owner,
        ..Default::default()
    }))
}

/// CreateBucket.
pub(crate) async fn create_bucket(
    gw: &Gateway,
    req: S3Request<CreateBucketInput>,
) -> S3Result<S3Response<CreateBucketOutput>> {
    let client = gw.client(&req).await?;
    check_bucket(&req.input.bucket)?;
    client
        .create_bucket(&req.input.bucket)
        .await
        .map_err(from_client)?;
    Ok(S3Response::new(CreateBucketOutput {
        location: Some(format!("/{}", req.input.bucket)),
    }))
}

/// HeadBucket: 404 `NoSuchBucket` when it does not exist.
pub(crate) async fn head_bucket(
    gw: &Gateway,
    req: S3Request<HeadBucketInput>,
) -> S3Result<S3Response<HeadBucketOutput>> {
    let client = gw.client(&req).await?;
    check_bucket(&req.input.bucket)?;
    match client.head_bucket(&req.input.bucket).await {
        Ok(true) => Ok(S3Response::new(HeadBucketOutput {
            bucket_region: Some(gw.cfg.region.clone()),
            ..Default::default()
        })),
        Ok(false) => Err(s3(
            S3ErrorCode::NoSuchBucket,
            "The specified bucket does not exist",
        )),
        Err(e) if e.is_not_found() => Err(s3(
            S3ErrorCode::NoSuchBucket,
            "The specified bucket does not exist",
        )),
        Err(e) => Err(from_client(e)),
    }
}

/// DeleteBucket.
pub(crate) async fn delete_bucket(
    gw: &Gateway,
    req: S3Request<DeleteBucketInput>,
) -> S3Result<S3Response<DeleteBucketOutput>> {
    let client = gw.client(&req).await?;
    check_bucket(&req.input.bucket)?;
    client
        .delete_bucket(&req.input.bucket)
        .await
        .map_err(from_client)?;
    Ok(S3Response::new(DeleteBucketOutput::default()))
}

/// GetBucketLocation: the gateway's region (none for `us-east-1`, as S3 answers).
pub(crate) async fn get_bucket_location(
    gw: &Gateway,
    req: S3Request<GetBucketLocationInput>,
) -> S3Result<S3Response<GetBucketLocationOutput>> {
    let client = gw.client(&req).await?;
    check_bucket(&req.input.bucket)?;
    if !client
        .head_bucket(&req.input.bucket)
        .await
        .map_err(from_client)?
    {
        return Err(s3(
            S3ErrorCode::NoSuchBucket,
            "The specified bucket does not exist",
        ));
    }
    let location_constraint = (gw.cfg.region != "us-east-1")
        .then(|| BucketLocationConstraint::from(gw.cfg.region.clone()));
    Ok(S3Response::new(GetBucketLocationOutput {
        location_constraint,
    }))
}
