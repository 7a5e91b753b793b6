//! The S3 service: the gateway's shared state, the client acting for each
//! request's signer, and the one `S3` impl `s3s` calls. Each method of the
//! impl hands its request to the operation of the same name in its
//! family's module under [`crate::ops`]; no operation logic lives here.

use std::collections::BTreeMap;
use std::sync::Arc;

use blob_client::{Client, FileLocations, UploadOptions};
use blob_server::limits::{Budget, Held};
use s3s::dto::*;
use s3s::{S3ErrorCode, S3Request, S3Response, S3Result, S3};

use crate::admit;
use crate::body;
use crate::compat::Authenticated;
use crate::cors::Cors;
use crate::error::s3;
use crate::keys::Keys;
use crate::locations::LocationCache;
use crate::ops::{bucket, copy, delete, get, lifecycle, list, multipart, put, tagging, versioning};
use crate::{Config, RequestId};

/// Longest validity of a pre-signed URL AWS accepts: 7 days, in seconds.
const MAX_PRESIGN_EXPIRES: u64 = 604_800;

/// Checks what `s3s` does not: the signature's credential scope names this
/// gateway's region, and a pre-signed URL's `X-Amz-Expires` is between 1 s
/// and 7 days. Errors are AWS's: `AuthorizationHeaderMalformed` (header
/// signatures) or `AuthorizationQueryParametersError` (pre-signed URLs),
/// naming the region expected.
pub(crate) fn check_scope(ours: &str, signed: Option<&str>, query: Option<&str>) -> S3Result<()> {
    let presigned_expires = query.and_then(|q| {
        q.split('&')
            .find_map(|kv| kv.strip_prefix("X-Amz-Expires="))
            .map(str::to_string)
    });
    let presigned = presigned_expires.is_some();
    if let Some(region) = signed {
        if region != ours {
            let (code, what) = if presigned {
                (
                    S3ErrorCode::AuthorizationQueryParametersError,
                    "Error parsing the X-Amz-Credential parameter;",
                )
            } else {
                (
                    S3ErrorCode::AuthorizationHeaderMalformed,
                    "The authorization header is malformed;",
                )
            };
            return Err(s3(
                code,
                format!("{what} the region '{region}' is wrong; expecting '{ours}'"),
            ));
        }
    }
    if let Some(v) = presigned_expires {
        match v.parse::<u64>() {
            Ok(n) if (1..=MAX_PRESIGN_EXPIRES).contains(&n) => {}
            Ok(n) if n > MAX_PRESIGN_EXPIRES => {
                return Err(s3(
                    S3ErrorCode::AuthorizationQueryParametersError,
                    "X-Amz-Expires must be less than a week (in seconds) that is 604800",
                ))
            }
            _ => {
                return Err(s3(
                    S3ErrorCode::AuthorizationQueryParametersError,
                    "X-Amz-Expires should be a number between 1 and 604800",
                ))
            }
        }
    }
    Ok(())
}

/// The S3 service.
pub(crate) struct Gateway {
    pub(crate) cfg: Arc<Config>,
    keys: Keys,
    /// Bytes of object bodies held in memory at once.
    pub(crate) budget: Budget,
    /// Locations of objects read recently.
    pub(crate) locations: LocationCache,
    /// Buckets' CORS rules.
    pub(crate) cors: Arc<Cors>,
    /// Buckets' default encryption.
    pub(crate) encryption: crate::sse::Defaults,
}

impl Gateway {
    pub(crate) fn new(cfg: Arc<Config>, keys: Keys, budget: Budget, cors: Arc<Cors>) -> Self {
        let locations = LocationCache::new(cfg.location_cache_chunks);
        Self {
            cfg,
            keys,
            budget,
            locations,
            cors,
            encryption: crate::sse::Defaults::new(),
        }
    }

    /// Reserves the memory a read of `[start, end)` of `locs` holds.
    pub(crate) async fn reserve_read(
        &self,
        locs: &FileLocations,
        start: u64,
        end: u64,
    ) -> S3Result<Held> {
        let piece = body::largest_piece(locs, start, end);
        let want = admit::read_window(self.cfg.parallel, piece, end - start);
        self.budget.admit(want).await.map_err(admit::slow_down)
    }

    /// The client acting as the request's signer.
    pub(crate) async fn client<T>(&self, req: &S3Request<T>) -> S3Result<Client> {
        // A second pass (see `compat`) carries the signer of the first.
        let (access_key, region, query) =
            match (&req.credentials, req.extensions.get::<Authenticated>()) {
                (Some(cred), _) => (
                    &cred.access_key,
                    req.region.as_ref().map(|r| r.as_str()),
                    req.uri.query(),
                ),
                (None, Some(a)) => (&a.access_key, a.region.as_deref(), a.query.as_deref()),
                (None, None) => {
                    return Err(s3(
                        S3ErrorCode::AccessDenied,
                        "anonymous access is not allowed",
                    ))
                }
            };
        check_scope(&self.cfg.region, region, query)?;
        let client = self.keys.client(access_key).await?;
        let client = match req.extensions.get::<RequestId>() {
            Some(id) => client.with_request_id(id.0.clone()),
            None => client,
        };
        // SSE-C: the key of the object read or written goes with every
        // call of this request.
        Ok(match crate::sse::request_key(&req.headers, false) {
            Some(key) => client.with_customer_key(key),
            None => client,
        })
    }

    /// How this gateway uploads a body: its chunk size, parallelism and
    /// replication, aborting the session on failure.
    pub(crate) fn upload_options(&self, meta: BTreeMap<String, String>) -> UploadOptions {
        UploadOptions {
            chunk_size: self.cfg.chunk_size,
            parallel: self.cfg.parallel,
            replication: self.cfg.replication,
            meta,
            abort_on_error: true,
            ..UploadOptions::default()
        }
    }
}

#[async_trait::async_trait]
impl S3 for Gateway {
    async fn list_buckets(
        &self,
        req: S3Request<ListBucketsInput>,
    ) -> S3Result<S3Response<ListBucketsOutput>> {
        bucket::list_buckets(self, req).await
    }

    async fn create_bucket(
        &self,
        req: S3Request<CreateBucketInput>,
    ) -> S3Result<S3Response<CreateBucketOutput>> {
        bucket::create_bucket(self, req).await
    }

    async fn head_bucket(
        &self,
        req: S3Request<HeadBucketInput>,
    ) -> S3Result<S3Response<HeadBucketOutput>> {
        bucket::head_bucket(self, req).await
    }

    async fn delete_bucket(
        &self,
        req: S3Request<DeleteBucketInput>,
    ) -> S3Result<S3Response<DeleteBucketOutput>> {
        bucket::delete_bucket(self, req).await
    }

    async fn put_bucket_cors(
        &self,
        req: S3Request<PutBucketCorsInput>,
    ) -> S3Result<S3Response<PutBucketCorsOutput>> {
        bucket::put_bucket_cors(self, req).await
    }

    async fn get_bucket_cors(
        &self,
        req: S3Request<GetBucketCorsInput>,
    ) -> S3Result<S3Response<GetBucketCorsOutput>> {
        bucket::get_bucket_cors(self, req).await
    }

    async fn delete_bucket_cors(
        &self,
        req: S3Request<DeleteBucketCorsInput>,
    ) -> S3Result<S3Response<DeleteBucketCorsOutput>> {
        bucket::delete_bucket_cors(self, req).await
    }

    async fn put_bucket_versioning(
        &self,
        req: S3Request<PutBucketVersioningInput>,
    ) -> S3Result<S3Response<PutBucketVersioningOutput>> {
        versioning::put_bucket_versioning(self, req).await
    }

    async fn get_bucket_versioning(
        &self,
        req: S3Request<GetBucketVersioningInput>,
    ) -> S3Result<S3Response<GetBucketVersioningOutput>> {
        versioning::get_bucket_versioning(self, req).await
    }

    async fn list_object_versions(
        &self,
        req: S3Request<ListObjectVersionsInput>,
    ) -> S3Result<S3Response<ListObjectVersionsOutput>> {
        versioning::list_object_versions(self, req).await
    }

    async fn put_bucket_encryption(
        &self,
        req: S3Request<PutBucketEncryptionInput>,
    ) -> S3Result<S3Response<PutBucketEncryptionOutput>> {
        bucket::put_bucket_encryption(self, req).await
    }

    async fn get_bucket_encryption(
        &self,
        req: S3Request<GetBucketEncryptionInput>,
    ) -> S3Result<S3Response<GetBucketEncryptionOutput>> {
        bucket::get_bucket_encryption(self, req).await
    }

    async fn delete_bucket_encryption(
        &self,
        req: S3Request<DeleteBucketEncryptionInput>,
    ) -> S3Result<S3Response<DeleteBucketEncryptionOutput>> {
        bucket::delete_bucket_encryption(self, req).await
    }

    async fn get_bucket_location(
        &self,
        req: S3Request<GetBucketLocationInput>,
    ) -> S3Result<S3Response<GetBucketLocationOutput>> {
        bucket::get_bucket_location(self, req).await
    }

    async fn put_object(
        &self,
        req: S3Request<PutObjectInput>,
    ) -> S3Result<S3Response<PutObjectOutput>> {
        put::put_object(self, req).await
    }

    async fn get_object(
        &self,
        req: S3Request<GetObjectInput>,
    ) -> S3Result<S3Response<GetObjectOutput>> {
        get::get_object(self, req).await
    }

    async fn head_object(
        &self,
        req: S3Request<HeadObjectInput>,
    ) -> S3Result<S3Response<HeadObjectOutput>> {
        get::head_object(self, req).await
    }

    async fn get_object_attributes(
        &self,
        req: S3Request<GetObjectAttributesInput>,
    ) -> S3Result<S3Response<GetObjectAttributesOutput>> {
        get::get_object_attributes(self, req).await
    }

    async fn put_bucket_lifecycle_configuration(
        &self,
        req: S3Request<PutBucketLifecycleConfigurationInput>,
    ) -> S3Result<S3Response<PutBucketLifecycleConfigurationOutput>> {
        lifecycle::put_bucket_lifecycle(self, req).await
    }

    async fn get_bucket_lifecycle_configuration(
        &self,
        req: S3Request<GetBucketLifecycleConfigurationInput>,
    ) -> S3Result<S3Response<GetBucketLifecycleConfigurationOutput>> {
        lifecycle::get_bucket_lifecycle(self, req).await
    }

    async fn delete_bucket_lifecycle(
        &self,
        req: S3Request<DeleteBucketLifecycleInput>,
    ) -> S3Result<S3Response<DeleteBucketLifecycleOutput>> {
        lifecycle::delete_bucket_lifecycle(self, req).await
    }

    async fn put_bucket_tagging(
        &self,
        req: S3Request<PutBucketTaggingInput>,
    ) -> S3Result<S3Response<PutBucketTaggingOutput>> {
        tagging::put_bucket_tagging(self, req).await
    }

    async fn get_bucket_tagging(
        &self,
        req: S3Request<GetBucketTaggingInput>,
    ) -> S3Result<S3Response<GetBucketTaggingOutput>> {
        tagging::get_bucket_tagging(self, req).await
    }

    async fn delete_bucket_tagging(
        &self,
        req: S3Request<DeleteBucketTaggingInput>,
    ) -> S3Result<S3Response<DeleteBucketTaggingOutput>> {
        tagging::delete_bucket_tagging(self, req).await
    }

    async fn put_object_tagging(
        &self,
        req: S3Request<PutObjectTaggingInput>,
    ) -> S3Result<S3Response<PutObjectTaggingOutput>> {
        tagging::put_object_tagging(self, req).await
    }

    async fn get_object_tagging(
        &self,
        req: S3Request<GetObjectTaggingInput>,
    ) -> S3Result<S3Response<GetObjectTaggingOutput>> {
        tagging::get_object_tagging(self, req).await
    }

    async fn delete_object_tagging(
        &self,
        req: S3Request<DeleteObjectTaggingInput>,
    ) -> S3Result<S3Response<DeleteObjectTaggingOutput>> {
        tagging::delete_object_tagging(self, req).await
    }

    async fn delete_object(
        &self,
        req: S3Request<DeleteObjectInput>,
    ) -> S3Result<S3Response<DeleteObjectOutput>> {
        delete::delete_object(self, req).await
    }

    async fn delete_objects(
        &self,
        req: S3Request<DeleteObjectsInput>,
    ) -> S3Result<S3Response<DeleteObjectsOutput>> {
        delete::delete_objects(self, req).await
    }

    async fn copy_object(
        &self,
        req: S3Request<CopyObjectInput>,
    ) -> S3Result<S3Response<CopyObjectOutput>> {
        copy::copy_object(self, req).await
    }

    async fn list_objects(
        &self,
        req: S3Request<ListObjectsInput>,
    ) -> S3Result<S3Response<ListObjectsOutput>> {
        list::list_objects(self, req).await
    }

    async fn list_objects_v2(
        &self,
        req: S3Request<ListObjectsV2Input>,
    ) -> S3Result<S3Response<ListObjectsV2Output>> {
        list::list_objects_v2(self, req).await
    }

    async fn create_multipart_upload(
        &self,
        req: S3Request<CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
        multipart::create_multipart_upload(self, req).await
    }

    async fn upload_part(
        &self,
        req: S3Request<UploadPartInput>,
    ) -> S3Result<S3Response<UploadPartOutput>> {
        multipart::upload_part(self, req).await
    }

    async fn upload_part_copy(
        &self,
        req: S3Request<UploadPartCopyInput>,
    ) -> S3Result<S3Response<UploadPartCopyOutput>> {
        copy::upload_part_copy(self, req).await
    }

    async fn complete_multipart_upload(
        &self,
        req: S3Request<CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
        multipart::complete_multipart_upload(self, req).await
    }

    async fn abort_multipart_upload(
        &self,
        req: S3Request<AbortMultipartUploadInput>,
    ) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
        multipart::abort_multipart_upload(self, req).await
    }

    async fn list_parts(
        &self,
        req: S3Request<ListPartsInput>,
    ) -> S3Result<S3Response<ListPartsOutput>> {
        multipart::list_parts(self, req).await
    }

    async fn list_multipart_uploads(
        &self,
        req: S3Request<ListMultipartUploadsInput>,
    ) -> S3Result<S3Response<ListMultipartUploadsOutput>> {
        multipart::list_multipart_uploads(self, req).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(r: S3Result<()>) -> Option<S3ErrorCode> {
        r.err().map(|e| e.code().clone())
    }

    #[test]
    fn the_credential_scope_and_presign_lifetime_are_checked() {
        assert!(check_scope("us-east-1", Some("us-east-1"), None).is_ok());
        assert!(check_scope("us-east-1", None, None).is_ok());
        assert_eq!(
            code(check_scope(
                "us-east-1",
                Some("eu-west-1"),
                Some("list-type=2")
            )),
            Some(S3ErrorCode::AuthorizationHeaderMalformed)
        );
        let q = |e: &str| {
            format!("X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Expires={e}&X-Amz-Signature=0")
        };
        assert_eq!(
            code(check_scope("us-east-1", Some("eu-west-1"), Some(&q("60")))),
            Some(S3ErrorCode::AuthorizationQueryParametersError)
        );
        assert!(check_scope("us-east-1", Some("us-east-1"), Some(&q("604800"))).is_ok());
        for bad in ["604801", "999999999", "0", "-5", "x"] {
            assert_eq!(
                code(check_scope("us-east-1", Some("us-east-1"), Some(&q(bad)))),
                Some(S3ErrorCode::AuthorizationQueryParametersError),
                "{bad}"
            );
        }
    }
}
