//! Bucket operations: list, create, head, delete, and the bucket's
//! location (region). A bucket is a namespace root at the namenode.

use s3s::dto::*;
use s3s::{S3ErrorCode, S3Request, S3Response, S3Result};

use super::args::check_bucket;
use super::attrs::timestamp;
use super::list::{token_decode, token_encode};
use super::settings;
use crate::cors;
use crate::error::{from_client, s3};
use crate::service::Gateway;

/// Most buckets in one ListBuckets page (S3: 10,000).
const MAX_BUCKETS: i32 = 10_000;

/// ListBuckets: the buckets the signer can see, by name, in pages of
/// `max-buckets` from after `continuation-token`, under `prefix`.
pub(crate) async fn list_buckets(
    gw: &Gateway,
    req: S3Request<ListBucketsInput>,
) -> S3Result<S3Response<ListBucketsOutput>> {
    let client = gw.client(&req).await?;
    let i = &req.input;
    let max = match i.max_buckets {
        None => None,
        Some(n) if (1..=MAX_BUCKETS).contains(&n) => Some(n as usize),
        Some(_) => {
            return Err(s3(
                S3ErrorCode::InvalidArgument,
                format!("max-buckets must be between 1 and {MAX_BUCKETS}"),
            ))
        }
    };
    // The token names the last bucket of the previous page.
    let after = match &i.continuation_token {
        None => None,
        Some(t) => Some(token_decode(t)?),
    };
    let l = client.list_buckets().await.map_err(from_client)?;
    let mut names: Vec<_> = l
        .buckets
        .into_iter()
        .filter(|b| {
            i.prefix
                .as_ref()
                .is_none_or(|p| b.name.starts_with(p.as_str()))
        })
        .filter(|b| after.as_ref().is_none_or(|a| b.name.as_str() > a.as_str()))
        .collect();
    names.sort_by(|a, b| a.name.cmp(&b.name));
    let mut next = None;
    if let Some(max) = max.filter(|&m| names.len() > m) {
        names.truncate(max);
        next = names.last().map(|b| token_encode(&b.name));
    }
    let buckets = names
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
        continuation_token: next,
        prefix: i.prefix.clone(),
    }))
}

/// CreateBucket.
pub(crate) async fn create_bucket(
    gw: &Gateway,
    req: S3Request<CreateBucketInput>,
) -> S3Result<S3Response<CreateBucketOutput>> {
    let client = gw.client(&req).await?;
    check_bucket(&req.input.bucket)?;
    let asked = req
        .input
        .create_bucket_configuration
        .as_ref()
        .and_then(|c| c.location_constraint.as_ref())
        .map(|l| l.as_str())
        .filter(|l| !l.is_empty());
    if let Some(region) = asked.filter(|&r| r != gw.cfg.region) {
        return Err(s3(
            S3ErrorCode::IllegalLocationConstraintException,
            format!(
                "The {region} location constraint is incompatible for the region specific endpoint this request was sent to ({}).",
                gw.cfg.region
            ),
        ));
    }
    match client.create_bucket(&req.input.bucket).await {
        Ok(_) => {}
        // In us-east-1, S3 answers a CreateBucket of a bucket the caller
        // already owns with 200 (elsewhere BucketAlreadyOwnedByYou).
        // Every key may use every bucket here, so each is the caller's.
        Err(e) if e.is_conflict() && gw.cfg.region == "us-east-1" => {}
        Err(e) => return Err(from_client(e)),
    }
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

/// PutBucketCors: the bucket's CORS rules, kept by the namenode.
pub(crate) async fn put_bucket_cors(
    gw: &Gateway,
    req: S3Request<PutBucketCorsInput>,
) -> S3Result<S3Response<PutBucketCorsOutput>> {
    let client = gw.client(&req).await?;
    let i = &req.input;
    let rules = cors::rules_from(&i.cors_configuration)?;
    settings::write(&client, &i.bucket, cors::SETTING, Some(&rules)).await?;
    gw.cors.forget(&i.bucket);
    Ok(S3Response::new(PutBucketCorsOutput::default()))
}

/// GetBucketCors: 404 `NoSuchCORSConfiguration` when the bucket has none.
pub(crate) async fn get_bucket_cors(
    gw: &Gateway,
    req: S3Request<GetBucketCorsInput>,
) -> S3Result<S3Response<GetBucketCorsOutput>> {
    let client = gw.client(&req).await?;
    let rules: Vec<cors::Rule> = settings::read(&client, &req.input.bucket, cors::SETTING).await?;
    if rules.is_empty() {
        return Err(s3(
            S3ErrorCode::NoSuchCORSConfiguration,
            "The CORS configuration does not exist",
        ));
    }
    Ok(S3Response::new(GetBucketCorsOutput {
        cors_rules: Some(cors::rules_to(&rules)),
    }))
}

/// DeleteBucketCors: 204 whether or not the bucket had rules.
pub(crate) async fn delete_bucket_cors(
    gw: &Gateway,
    req: S3Request<DeleteBucketCorsInput>,
) -> S3Result<S3Response<DeleteBucketCorsOutput>> {
    let client = gw.client(&req).await?;
    settings::write::<cors::Rule>(&client, &req.input.bucket, cors::SETTING, None).await?;
    gw.cors.forget(&req.input.bucket);
    Ok(settings::no_content())
}

/// PutBucketEncryption: the bucket's default encryption for new objects
/// that name none. SSE-S3 (`AES256`) only; SSE-KMS is `501`.
pub(crate) async fn put_bucket_encryption(
    gw: &Gateway,
    req: S3Request<PutBucketEncryptionInput>,
) -> S3Result<S3Response<PutBucketEncryptionOutput>> {
    let client = gw.client(&req).await?;
    let i = &req.input;
    check_bucket(&i.bucket)?;
    let rules = &i.server_side_encryption_configuration.rules;
    let [rule] = rules.as_slice() else {
        return Err(s3(
            S3ErrorCode::MalformedXML,
            "A server-side encryption configuration holds exactly one rule.",
        ));
    };
    let Some(default) = &rule.apply_server_side_encryption_by_default else {
        return Err(s3(
            S3ErrorCode::MalformedXML,
            "The rule needs ApplyServerSideEncryptionByDefault.",
        ));
    };
    match default.sse_algorithm.as_str() {
        ServerSideEncryption::AES256 => {}
        "aws:kms" | "aws:kms:dsse" => {
            return Err(s3(
                S3ErrorCode::NotImplemented,
                "SSE-KMS is not supported by this store; use AES256 (SSE-S3).",
            ))
        }
        other => {
            return Err(s3(
                S3ErrorCode::InvalidArgument,
                format!("The encryption method specified is not supported: {other:?}"),
            ))
        }
    }
    client
        .set_bucket_setting(
            &i.bucket,
            crate::sse::SETTING,
            Some(ServerSideEncryption::AES256.to_string()),
        )
        .await
        .map_err(from_client)?;
    gw.encryption.forget(&i.bucket);
    Ok(S3Response::new(PutBucketEncryptionOutput::default()))
}

/// GetBucketEncryption: 404 `ServerSideEncryptionConfigurationNotFoundError`
/// when the bucket has no default.
pub(crate) async fn get_bucket_encryption(
    gw: &Gateway,
    req: S3Request<GetBucketEncryptionInput>,
) -> S3Result<S3Response<GetBucketEncryptionOutput>> {
    let client = gw.client(&req).await?;
    let bucket = &req.input.bucket;
    check_bucket(bucket)?;
    let algo = client
        .bucket_setting(bucket, crate::sse::SETTING)
        .await
        .map_err(from_client)?;
    let Some(algo) = algo else {
        let mut e = s3(
            S3ErrorCode::ServerSideEncryptionConfigurationNotFoundError,
            "The server side encryption configuration was not found",
        );
        e.set_status_code(http::StatusCode::NOT_FOUND);
        return Err(e);
    };
    Ok(S3Response::new(GetBucketEncryptionOutput {
        server_side_encryption_configuration: Some(ServerSideEncryptionConfiguration {
            rules: vec![ServerSideEncryptionRule {
                apply_server_side_encryption_by_default: Some(ServerSideEncryptionByDefault {
                    kms_master_key_id: None,
                    sse_algorithm: ServerSideEncryption::from(algo),
                }),
                bucket_key_enabled: None,
            }],
        }),
    }))
}

/// DeleteBucketEncryption: 204; new objects are then stored in clear
/// unless they ask otherwise.
pub(crate) async fn delete_bucket_encryption(
    gw: &Gateway,
    req: S3Request<DeleteBucketEncryptionInput>,
) -> S3Result<S3Response<DeleteBucketEncryptionOutput>> {
    let client = gw.client(&req).await?;
    let bucket = &req.input.bucket;
    check_bucket(bucket)?;
    client
        .set_bucket_setting(bucket, crate::sse::SETTING, None)
        .await
        .map_err(from_client)?;
    gw.encryption.forget(bucket);
    Ok(settings::no_content())
}
