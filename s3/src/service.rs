//! The S3 operations, each run as the signing user through that user's
//! client. Objects are files: the key is the path, and the S3 attributes
//! (ETag, content headers, `x-amz-meta-*`) live in the file's metadata.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};

use base64::Engine as _;
use blob_client::{
    Client, CompleteMultipart, CompletePart, CopyFile, CopyPart, CreateMultipart, FileInfo,
    FileLocations, ListFilesQuery, ListMultipartQuery, ListPartsQuery, PartTarget, UploadOptions,
};
use blob_common::limits::{Budget, Held};
use blob_common::names::{validate_bucket, validate_path};
use blob_common::UploadId;
use futures::StreamExt;
use s3s::dto::*;
use s3s::{S3Error, S3ErrorCode, S3Request, S3Response, S3Result, S3};

use crate::admit;
use crate::body::{self, Algo, Digests};
use crate::error::{bad_key, from_client, s3};
use crate::keys::Keys;
use crate::{Config, RequestId};

/// Sets the stored-object headers that GetObject and HeadObject answer
/// alike (their output types are distinct but share these field names).
macro_rules! fill_headers {
    ($out:ident, $file:ident) => {
        $out.e_tag = Some(strong(&etag_of(&$file)));
        $out.last_modified = Some(timestamp($file.created_ms));
        $out.content_type = Some(
            $file
                .meta
                .get(CONTENT_TYPE)
                .cloned()
                .unwrap_or_else(|| "binary/octet-stream".into()),
        );
        $out.metadata = user_meta(&$file);
        $out.content_disposition = $file.meta.get(CONTENT_DISPOSITION).cloned();
        $out.content_encoding = $file.meta.get(CONTENT_ENCODING).cloned();
        $out.content_language = $file.meta.get(CONTENT_LANGUAGE).cloned();
        $out.cache_control = $file.meta.get(CACHE_CONTROL).cloned();
    };
}

/// Largest single PUT and largest part (S3: 5 GiB).
const MAX_PUT: u64 = 5 << 30;
/// Metadata keys that hold S3 attributes (besides `x-amz-meta-*`).
const ETAG: &str = "etag";
const CONTENT_TYPE: &str = "content-type";
const CONTENT_DISPOSITION: &str = "content-disposition";
const CONTENT_ENCODING: &str = "content-encoding";
const CONTENT_LANGUAGE: &str = "content-language";
const CACHE_CONTROL: &str = "cache-control";
const USER_META: &str = "x-amz-meta-";

/// The S3 service.
pub(crate) struct Gateway {
    cfg: Arc<Config>,
    keys: Keys,
    /// Bytes of object bodies held in memory at once.
    budget: Budget,
}

impl Gateway {
    pub(crate) fn new(cfg: Arc<Config>, keys: Keys, budget: Budget) -> Self {
        Self { cfg, keys, budget }
    }

    /// Reserves the memory a read of `[start, end)` of `locs` holds.
    async fn reserve_read(&self, locs: &FileLocations, start: u64, end: u64) -> S3Result<Held> {
        let piece = body::largest_piece(locs, start, end);
        let want = admit::read_window(self.cfg.parallel, piece, end - start);
        self.budget.admit(want).await.map_err(admit::slow_down)
    }

    /// The client acting as the request's signer.
    async fn client<T>(&self, req: &S3Request<T>) -> S3Result<Client> {
        let Some(cred) = &req.credentials else {
            return Err(s3(
                S3ErrorCode::AccessDenied,
                "anonymous access is not allowed",
            ));
        };
        let client = self.keys.client(&cred.access_key).await?;
        Ok(match req.extensions.get::<RequestId>() {
            Some(id) => client.with_request_id(id.0.clone()),
            None => client,
        })
    }

    fn upload_options(&self, meta: BTreeMap<String, String>) -> UploadOptions {
        UploadOptions {
            chunk_size: self.cfg.chunk_size,
            parallel: self.cfg.parallel,
            replication: self.cfg.replication,
            meta,
            abort_on_error: true,
            ..UploadOptions::default()
        }
    }

    /// Streams a request body into `bucket/key` (or a part), verifying
    /// Content-MD5 and declared checksums before the commit.
    #[allow(clippy::too_many_arguments)]
    async fn put_body<T>(
        &self,
        client: &Client,
        req: &S3Request<T>,
        blob: Option<StreamingBlob>,
        bucket: &str,
        key: &str,
        meta: BTreeMap<String, String>,
        part: Option<PartTarget>,
        declared: Declared,
    ) -> S3Result<(FileInfo, String)> {
        if declared.length.is_some_and(|l| l > MAX_PUT as i64) {
            return Err(s3(
                S3ErrorCode::EntityTooLarge,
                "Your proposed upload exceeds the maximum allowed size (5 GiB).",
            ));
        }
        let mut algos: Vec<Algo> = declared.checksums.iter().map(|(a, _)| *a).collect();
        let trailer_names: Vec<Algo> = req
            .headers
            .get("x-amz-trailer")
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(',').filter_map(Algo::from_header).collect())
            .unwrap_or_default();
        algos.extend(trailer_names.iter().copied());
        let digests = Arc::new(Mutex::new(Digests::new(&algos)));
        let trailers = req.trailing_headers.clone();
        let content_md5 = declared.content_md5.clone();
        let checksums = declared.checksums.clone();
        let d2 = digests.clone();
        let check: blob_client::CommitHook = Arc::new(move |_chunks| {
            let d = d2.lock().unwrap_or_else(|p| p.into_inner());
            let md5 = d.md5().ok_or("the body was not read to its end")?;
            if let Some(want) = &content_md5 {
                let got = base64::engine::general_purpose::STANDARD.encode(md5);
                if got != want.trim() {
                    return Err(format!(
                        "The Content-MD5 you specified did not match what we received (got {got})."
                    ));
                }
            }
            let mut wanted = checksums.clone();
            if let Some(t) = &trailers {
                for algo in &trailer_names {
                    let v = t
                        .read(|h| {
                            h.get(algo.header())
                                .and_then(|v| v.to_str().ok())
                                .map(str::to_string)
                        })
                        .flatten();
                    match v {
                        Some(v) => wanted.push((*algo, v)),
                        None => return Err(format!("missing trailer {}", algo.header())),
                    }
                }
            }
            for (algo, want) in &wanted {
                if d.checksum(*algo).as_deref() != Some(want.trim()) {
                    return Err(format!(
                        "The {} you specified did not match the calculated checksum.",
                        algo.header()
                    ));
                }
            }
            Ok(BTreeMap::from([(ETAG.to_string(), hex::encode(md5))]))
        });
        let mut opts = self.upload_options(meta);
        opts.before_commit = Some(check);
        opts.part = part;
        opts.input_sha256 = checked_payload_sha256(req);
        let blob = blob.unwrap_or_else(|| {
            StreamingBlob::wrap(futures::stream::empty::<Result<bytes::Bytes, std::io::Error>>())
        });
        // The upload holds at most its window of the body in memory.
        let window = admit::upload_window(
            self.cfg.parallel,
            self.cfg.chunk_size,
            declared.length.and_then(|l| u64::try_from(l).ok()),
        );
        let held = self.budget.admit(window).await.map_err(admit::slow_down)?;
        let reader = body::hashed(body::frames(blob), digests.clone(), MAX_PUT);
        let out = client
            .upload(reader, bucket, key, &opts)
            .await
            .map_err(from_client)?;
        drop(held);
        let etag = out
            .file
            .meta
            .get(ETAG)
            .cloned()
            .or_else(|| {
                let d = digests.lock().unwrap_or_else(|p| p.into_inner());
                d.md5().map(hex::encode)
            })
            .unwrap_or_default();
        Ok((out.file, etag))
    }
}

/// The SHA-256 a request declares for its body when `s3s` checks the body
/// against it before the body ends: a PUT signed with SigV4 (header or
/// pre-signed) with one `x-amz-content-sha256` of 64 lowercase hex digits.
/// A body of one chunk then takes it as its chunk id instead of being
/// hashed again. Other requests (SigV2, POST forms) get no such check, and
/// a hash trusted there could name a chunk the bucket already holds, so
/// they hash their bytes.
fn checked_payload_sha256<T>(req: &S3Request<T>) -> Option<[u8; 32]> {
    if req.method != http::Method::PUT {
        return None;
    }
    let header_v4 = req
        .headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("AWS4-HMAC-SHA256 "));
    let query_v4 = req
        .uri
        .query()
        .is_some_and(|q| q.contains("X-Amz-Algorithm=AWS4-HMAC-SHA256"));
    if !(header_v4 || query_v4) {
        return None;
    }
    let mut values = req.headers.get_all("x-amz-content-sha256").iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        return None;
    };
    let value = value.to_str().ok()?;
    if value.len() != 64
        || !value
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    {
        return None;
    }
    hex::decode(value).ok()?.try_into().ok()
}

/// What a client declared about a body.
#[derive(Default)]
struct Declared {
    length: Option<i64>,
    content_md5: Option<String>,
    checksums: Vec<(Algo, String)>,
}

fn declared(
    length: Option<i64>,
    content_md5: Option<String>,
    crc32: Option<String>,
    crc32c: Option<String>,
    sha256: Option<String>,
) -> Declared {
    let mut checksums = Vec::new();
    for (algo, v) in [
        (Algo::Crc32, crc32),
        (Algo::Crc32c, crc32c),
        (Algo::Sha256, sha256),
    ] {
        if let Some(v) = v {
            checksums.push((algo, v));
        }
    }
    Declared {
        length,
        content_md5,
        checksums,
    }
}

fn check_bucket(bucket: &str) -> S3Result<()> {
    validate_bucket(bucket).map_err(|e| s3(S3ErrorCode::InvalidBucketName, e.to_string()))
}

fn check_key(key: &str) -> S3Result<()> {
    validate_path(key).map_err(|e| bad_key(key, &e))
}

fn timestamp(ms: u64) -> Timestamp {
    Timestamp::from(UNIX_EPOCH + Duration::from_millis(ms))
}

fn secs(ts: &Timestamp) -> i64 {
    time::OffsetDateTime::from(ts.clone()).unix_timestamp()
}

fn etag_of(file: &FileInfo) -> String {
    file.meta
        .get(ETAG)
        .cloned()
        .unwrap_or_else(|| file.version.to_string())
}

fn strong(etag: &str) -> ETag {
    ETag::Strong(etag.to_string())
}

/// Metadata to store from an upload's headers.
fn object_meta(
    content_type: Option<String>,
    disposition: Option<String>,
    encoding: Option<String>,
    language: Option<String>,
    cache_control: Option<String>,
    user: Option<Metadata>,
) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    for (k, v) in [
        (CONTENT_TYPE, content_type),
        (CONTENT_DISPOSITION, disposition),
        (CONTENT_ENCODING, encoding),
        (CONTENT_LANGUAGE, language),
        (CACHE_CONTROL, cache_control),
    ] {
        if let Some(v) = v {
            m.insert(k.to_string(), v);
        }
    }
    for (k, v) in user.unwrap_or_default() {
        m.insert(format!("{USER_META}{}", k.to_ascii_lowercase()), v);
    }
    m
}

fn user_meta(file: &FileInfo) -> Option<Metadata> {
    let m: Metadata = file
        .meta
        .iter()
        .filter_map(|(k, v)| {
            k.strip_prefix(USER_META)
                .map(|k| (k.to_string(), v.clone()))
        })
        .collect();
    (!m.is_empty()).then_some(m)
}

fn cond_matches(cond: &ETagCondition, etag: &str) -> bool {
    match cond {
        ETagCondition::Any => true,
        ETagCondition::ETag(e) => e.value().trim_matches('"') == etag,
    }
}

/// Evaluates conditional headers as S3 does: 412 for If-Match /
/// If-Unmodified-Since, 304 for If-None-Match / If-Modified-Since.
fn check_conditions(
    file: &FileInfo,
    if_match: Option<&ETagCondition>,
    if_none_match: Option<&ETagCondition>,
    if_modified_since: Option<&Timestamp>,
    if_unmodified_since: Option<&Timestamp>,
) -> S3Result<()> {
    let etag = etag_of(file);
    let modified = (file.created_ms / 1000) as i64;
    match if_match {
        Some(c) if !cond_matches(c, &etag) => {
            return Err(s3(
                S3ErrorCode::PreconditionFailed,
                "At least one of the pre-conditions you specified did not hold",
            ))
        }
        Some(_) => {}
        None => {
            if let Some(t) = if_unmodified_since {
                if modified > secs(t) {
                    return Err(s3(
                        S3ErrorCode::PreconditionFailed,
                        "At least one of the pre-conditions you specified did not hold",
                    ));
                }
            }
        }
    }
    match if_none_match {
        Some(c) if cond_matches(c, &etag) => return Err(not_modified()),
        Some(_) => {}
        None => {
            if let Some(t) = if_modified_since {
                if modified <= secs(t) {
                    return Err(not_modified());
                }
            }
        }
    }
    Ok(())
}

fn not_modified() -> S3Error {
    let mut e = S3Error::new(S3ErrorCode::NotModified);
    e.set_status_code(http::StatusCode::NOT_MODIFIED);
    e
}

fn parse_upload(id: &str) -> S3Result<UploadId> {
    UploadId::from_str(id).map_err(|_| {
        s3(
            S3ErrorCode::NoSuchUpload,
            "The specified upload does not exist.",
        )
    })
}

fn part_number(n: i32) -> S3Result<u32> {
    u32::try_from(n)
        .ok()
        .filter(|n| (1..=blob_common::proto::multipart::MAX_PARTS).contains(n))
        .ok_or_else(|| {
            s3(
                S3ErrorCode::InvalidArgument,
                "Part number must be an integer between 1 and 10000, inclusive",
            )
        })
}

fn url_encode(s: &str) -> String {
    // S3's encoding-type=url: everything but unreserved characters and '/'.
    const SET: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~')
        .remove(b'/');
    percent_encoding::utf8_percent_encode(s, SET).to_string()
}

fn token_encode(s: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
}

fn token_decode(t: &str) -> S3Result<String> {
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

fn copy_source(src: &CopySource) -> S3Result<(String, String)> {
    match src {
        CopySource::Bucket { bucket, key, .. } => Ok((bucket.to_string(), key.to_string())),
        _ => Err(s3(
            S3ErrorCode::InvalidArgument,
            "copy from an access point is not supported",
        )),
    }
}

/// A listing page in S3's terms.
struct Page {
    contents: Vec<Object>,
    prefixes: Vec<CommonPrefix>,
    next: Option<String>,
}

async fn list_page(
    client: &Client,
    bucket: &str,
    prefix: Option<String>,
    delimiter: Option<String>,
    start_after: Option<String>,
    max_keys: i32,
    url: bool,
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
        limit: Some(max_keys.clamp(1, 1000) as usize),
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

#[async_trait::async_trait]
impl S3 for Gateway {
    async fn list_buckets(
        &self,
        req: S3Request<ListBucketsInput>,
    ) -> S3Result<S3Response<ListBucketsOutput>> {
        let client = self.client(&req).await?;
        let l = client.list_buckets().await.map_err(from_client)?;
        let buckets = l
            .buckets
            .into_iter()
            .map(|b| Bucket {
                name: Some(b.name),
                creation_date: Some(timestamp(b.created_ms)),
                bucket_region: Some(self.cfg.region.clone()),
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

    async fn create_bucket(
        &self,
        req: S3Request<CreateBucketInput>,
    ) -> S3Result<S3Response<CreateBucketOutput>> {
        let client = self.client(&req).await?;
        check_bucket(&req.input.bucket)?;
        client
            .create_bucket(&req.input.bucket)
            .await
            .map_err(from_client)?;
        Ok(S3Response::new(CreateBucketOutput {
            location: Some(format!("/{}", req.input.bucket)),
        }))
    }

    async fn head_bucket(
        &self,
        req: S3Request<HeadBucketInput>,
    ) -> S3Result<S3Response<HeadBucketOutput>> {
        let client = self.client(&req).await?;
        check_bucket(&req.input.bucket)?;
        match client.head_bucket(&req.input.bucket).await {
            Ok(true) => Ok(S3Response::new(HeadBucketOutput {
                bucket_region: Some(self.cfg.region.clone()),
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

    async fn delete_bucket(
        &self,
        req: S3Request<DeleteBucketInput>,
    ) -> S3Result<S3Response<DeleteBucketOutput>> {
        let client = self.client(&req).await?;
        check_bucket(&req.input.bucket)?;
        client
            .delete_bucket(&req.input.bucket)
            .await
            .map_err(from_client)?;
        Ok(S3Response::new(DeleteBucketOutput::default()))
    }

    async fn get_bucket_location(
        &self,
        req: S3Request<GetBucketLocationInput>,
    ) -> S3Result<S3Response<GetBucketLocationOutput>> {
        let client = self.client(&req).await?;
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
        let location_constraint = (self.cfg.region != "us-east-1")
            .then(|| BucketLocationConstraint::from(self.cfg.region.clone()));
        Ok(S3Response::new(GetBucketLocationOutput {
            location_constraint,
        }))
    }

    async fn put_object(
        &self,
        req: S3Request<PutObjectInput>,
    ) -> S3Result<S3Response<PutObjectOutput>> {
        let client = self.client(&req).await?;
        let mut req = req;
        let blob = req.input.body.take();
        let i = &req.input;
        check_bucket(&i.bucket)?;
        check_key(&i.key)?;
        let meta = object_meta(
            i.content_type.clone(),
            i.content_disposition.clone(),
            i.content_encoding.clone(),
            i.content_language.clone(),
            i.cache_control.clone(),
            i.metadata.clone(),
        );
        let decl = declared(
            i.content_length,
            i.content_md5.clone(),
            i.checksum_crc32.clone(),
            i.checksum_crc32c.clone(),
            i.checksum_sha256.clone(),
        );
        let (bucket, key) = (i.bucket.clone(), i.key.clone());
        let (file, etag) = self
            .put_body(&client, &req, blob, &bucket, &key, meta, None, decl)
            .await?;
        Ok(S3Response::new(PutObjectOutput {
            e_tag: Some(strong(&etag)),
            size: Some(file.size as i64),
            ..Default::default()
        }))
    }

    async fn get_object(
        &self,
        req: S3Request<GetObjectInput>,
    ) -> S3Result<S3Response<GetObjectOutput>> {
        let client = self.client(&req).await?;
        let i = &req.input;
        check_bucket(&i.bucket)?;
        check_key(&i.key)?;
        let locs = client
            .locations(&i.bucket, &i.key)
            .await
            .map_err(from_client)?;
        let file = locs.file.clone();
        check_conditions(
            &file,
            i.if_match.as_ref(),
            i.if_none_match.as_ref(),
            i.if_modified_since.as_ref(),
            i.if_unmodified_since.as_ref(),
        )?;
        let size = file.size;
        let (range, content_range) = match &i.range {
            Some(r) => {
                let r = r.check(size).map_err(|_| {
                    s3(
                        S3ErrorCode::InvalidRange,
                        "The requested range is not satisfiable",
                    )
                })?;
                let cr = format!("bytes {}-{}/{size}", r.start, r.end - 1);
                (r, Some(cr))
            }
            None => (0..size, None),
        };
        let held = self.reserve_read(&locs, range.start, range.end).await?;
        let stream = body::range_stream(
            client,
            Arc::new(locs),
            (range.start, range.end),
            self.cfg.parallel,
            held,
        )
        .await
        .map_err(from_client)?;
        let mut out = GetObjectOutput {
            body: Some(StreamingBlob::wrap(stream)),
            content_length: Some((range.end - range.start) as i64),
            content_range,
            accept_ranges: Some("bytes".into()),
            ..Default::default()
        };
        fill_headers!(out, file);
        if let Some(v) = &i.response_content_type {
            out.content_type = Some(v.clone());
        }
        if let Some(v) = &i.response_content_disposition {
            out.content_disposition = Some(v.clone());
        }
        if let Some(v) = &i.response_cache_control {
            out.cache_control = Some(v.clone());
        }
        if let Some(v) = &i.response_content_encoding {
            out.content_encoding = Some(v.clone());
        }
        let mut resp = S3Response::new(out);
        if i.range.is_some() {
            resp.status = Some(http::StatusCode::PARTIAL_CONTENT);
        }
        Ok(resp)
    }

    async fn head_object(
        &self,
        req: S3Request<HeadObjectInput>,
    ) -> S3Result<S3Response<HeadObjectOutput>> {
        let client = self.client(&req).await?;
        let i = &req.input;
        check_bucket(&i.bucket)?;
        check_key(&i.key)?;
        let file = client.stat(&i.bucket, &i.key).await.map_err(from_client)?;
        check_conditions(
            &file,
            i.if_match.as_ref(),
            i.if_none_match.as_ref(),
            i.if_modified_since.as_ref(),
            i.if_unmodified_since.as_ref(),
        )?;
        let mut len = file.size;
        let mut content_range = None;
        if let Some(r) = &i.range {
            let r = r.check(file.size).map_err(|_| {
                s3(
                    S3ErrorCode::InvalidRange,
                    "The requested range is not satisfiable",
                )
            })?;
            content_range = Some(format!("bytes {}-{}/{}", r.start, r.end - 1, file.size));
            len = r.end - r.start;
        }
        let mut out = HeadObjectOutput {
            content_length: Some(len as i64),
            content_range,
            accept_ranges: Some("bytes".into()),
            ..Default::default()
        };
        fill_headers!(out, file);
        if let Some(n) = etag_of(&file)
            .split_once('-')
            .and_then(|(_, n)| n.parse().ok())
        {
            out.parts_count = Some(n);
        }
        Ok(S3Response::new(out))
    }

    async fn delete_object(
        &self,
        req: S3Request<DeleteObjectInput>,
    ) -> S3Result<S3Response<DeleteObjectOutput>> {
        let client = self.client(&req).await?;
        check_bucket(&req.input.bucket)?;
        check_key(&req.input.key)?;
        match client.delete_file(&req.input.bucket, &req.input.key).await {
            Ok(()) => {}
            // Deleting a missing key succeeds in S3; a missing bucket does not.
            Err(e) if e.code() == Some("NoSuchFile") => {}
            Err(e) => return Err(from_client(e)),
        }
        Ok(S3Response::new(DeleteObjectOutput::default()))
    }

    async fn delete_objects(
        &self,
        req: S3Request<DeleteObjectsInput>,
    ) -> S3Result<S3Response<DeleteObjectsOutput>> {
        let client = self.client(&req).await?;
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

    async fn copy_object(
        &self,
        req: S3Request<CopyObjectInput>,
    ) -> S3Result<S3Response<CopyObjectOutput>> {
        let client = self.client(&req).await?;
        let i = &req.input;
        check_bucket(&i.bucket)?;
        check_key(&i.key)?;
        let (src_bucket, src_key) = copy_source(&i.copy_source)?;
        check_bucket(&src_bucket)?;
        check_key(&src_key)?;
        let src = client
            .stat(&src_bucket, &src_key)
            .await
            .map_err(from_client)?;
        check_copy_conditions(
            &src,
            i.copy_source_if_match.as_ref(),
            i.copy_source_if_none_match.as_ref(),
            i.copy_source_if_modified_since.as_ref(),
            i.copy_source_if_unmodified_since.as_ref(),
        )?;
        let replace = i
            .metadata_directive
            .as_ref()
            .is_some_and(|d| d.as_str().eq_ignore_ascii_case(MetadataDirective::REPLACE));
        if src_bucket == i.bucket && src_key == i.key && !replace {
            return Err(s3(
                S3ErrorCode::InvalidRequest,
                "This copy request is illegal because it is trying to copy an object to itself without changing the object's metadata.",
            ));
        }
        let meta = replace.then(|| {
            let mut m = object_meta(
                i.content_type.clone(),
                i.content_disposition.clone(),
                i.content_encoding.clone(),
                i.content_language.clone(),
                i.cache_control.clone(),
                i.metadata.clone(),
            );
            if let Some(e) = src.meta.get(ETAG) {
                m.insert(ETAG.into(), e.clone());
            }
            m
        });
        let file = client
            .copy_file(&CopyFile {
                src_bucket,
                src_path: src_key,
                bucket: i.bucket.clone(),
                path: i.key.clone(),
                meta,
            })
            .await
            .map_err(from_client)?;
        Ok(S3Response::new(CopyObjectOutput {
            copy_object_result: Some(CopyObjectResult {
                e_tag: Some(strong(&etag_of(&file))),
                last_modified: Some(timestamp(file.created_ms)),
                ..Default::default()
            }),
            ..Default::default()
        }))
    }

    async fn list_objects(
        &self,
        req: S3Request<ListObjectsInput>,
    ) -> S3Result<S3Response<ListObjectsOutput>> {
        let client = self.client(&req).await?;
        let i = &req.input;
        let url = i
            .encoding_type
            .as_ref()
            .is_some_and(|e| e.as_str() == EncodingType::URL);
        let max_keys = i.max_keys.unwrap_or(1000);
        let page = list_page(
            &client,
            &i.bucket,
            i.prefix.clone(),
            i.delimiter.clone(),
            i.marker.clone(),
            max_keys,
            url,
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
            delimiter: enc(&i.delimiter),
            encoding_type: i.encoding_type.clone(),
            contents: Some(page.contents),
            common_prefixes: Some(page.prefixes),
            ..Default::default()
        }))
    }

    async fn list_objects_v2(
        &self,
        req: S3Request<ListObjectsV2Input>,
    ) -> S3Result<S3Response<ListObjectsV2Output>> {
        let client = self.client(&req).await?;
        let i = &req.input;
        let url = i
            .encoding_type
            .as_ref()
            .is_some_and(|e| e.as_str() == EncodingType::URL);
        let max_keys = i.max_keys.unwrap_or(1000);
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
            delimiter: enc(&i.delimiter),
            encoding_type: i.encoding_type.clone(),
            start_after: enc(&i.start_after),
            contents: Some(page.contents),
            common_prefixes: Some(page.prefixes),
            ..Default::default()
        }))
    }

    async fn create_multipart_upload(
        &self,
        req: S3Request<CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
        let client = self.client(&req).await?;
        let i = &req.input;
        check_bucket(&i.bucket)?;
        check_key(&i.key)?;
        let meta = object_meta(
            i.content_type.clone(),
            i.content_disposition.clone(),
            i.content_encoding.clone(),
            i.content_language.clone(),
            i.cache_control.clone(),
            i.metadata.clone(),
        );
        let info = client
            .create_multipart(&CreateMultipart {
                bucket: i.bucket.clone(),
                path: i.key.clone(),
                meta,
            })
            .await
            .map_err(from_client)?;
        Ok(S3Response::new(CreateMultipartUploadOutput {
            bucket: Some(i.bucket.clone()),
            key: Some(i.key.clone()),
            upload_id: Some(info.upload.to_string()),
            ..Default::default()
        }))
    }

    async fn upload_part(
        &self,
        req: S3Request<UploadPartInput>,
    ) -> S3Result<S3Response<UploadPartOutput>> {
        let client = self.client(&req).await?;
        let mut req = req;
        let blob = req.input.body.take();
        let i = &req.input;
        check_bucket(&i.bucket)?;
        check_key(&i.key)?;
        let number = part_number(i.part_number)?;
        let upload = parse_upload(&i.upload_id)?;
        let decl = declared(
            i.content_length,
            i.content_md5.clone(),
            i.checksum_crc32.clone(),
            i.checksum_crc32c.clone(),
            i.checksum_sha256.clone(),
        );
        let (bucket, key) = (i.bucket.clone(), i.key.clone());
        let target = PartTarget { upload, number };
        let (_, etag) = self
            .put_body(
                &client,
                &req,
                blob,
                &bucket,
                &key,
                BTreeMap::new(),
                Some(target),
                decl,
            )
            .await?;
        Ok(S3Response::new(UploadPartOutput {
            e_tag: Some(strong(&etag)),
            ..Default::default()
        }))
    }

    async fn upload_part_copy(
        &self,
        req: S3Request<UploadPartCopyInput>,
    ) -> S3Result<S3Response<UploadPartCopyOutput>> {
        let client = self.client(&req).await?;
        let i = &req.input;
        check_bucket(&i.bucket)?;
        check_key(&i.key)?;
        let number = part_number(i.part_number)?;
        let upload = parse_upload(&i.upload_id)?;
        let (src_bucket, src_key) = copy_source(&i.copy_source)?;
        check_bucket(&src_bucket)?;
        check_key(&src_key)?;
        let locs = client
            .locations(&src_bucket, &src_key)
            .await
            .map_err(from_client)?;
        let src = locs.file.clone();
        check_copy_conditions(
            &src,
            i.copy_source_if_match.as_ref(),
            i.copy_source_if_none_match.as_ref(),
            i.copy_source_if_modified_since.as_ref(),
            i.copy_source_if_unmodified_since.as_ref(),
        )?;
        let range = match &i.copy_source_range {
            Some(r) => parse_copy_range(r, src.size)?,
            None => 0..src.size,
        };
        if range.end - range.start > MAX_PUT {
            return Err(s3(S3ErrorCode::EntityTooLarge, "a part is at most 5 GiB"));
        }
        // The whole of a single-part object: share its chunks.
        if range == (0..src.size) {
            match client
                .copy_part(
                    &upload,
                    &CopyPart {
                        number,
                        src_bucket: src_bucket.clone(),
                        src_path: src_key.clone(),
                    },
                )
                .await
            {
                Ok(p) => {
                    return Ok(S3Response::new(UploadPartCopyOutput {
                        copy_part_result: Some(CopyPartResult {
                            e_tag: Some(strong(&p.etag)),
                            last_modified: Some(timestamp(p.created_ms)),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }))
                }
                Err(e) if e.code() == Some("NotCopyable") => {}
                Err(e) => return Err(from_client(e)),
            }
        }
        // Otherwise read the range and upload it as the part (chunks the
        // bucket already holds are not sent again).
        // The read's window, and the upload's below, are reserved apart.
        let held = self.reserve_read(&locs, range.start, range.end).await?;
        let stream = body::range_stream(
            client.clone(),
            Arc::new(locs),
            (range.start, range.end),
            self.cfg.parallel,
            held,
        )
        .await
        .map_err(from_client)?;
        let upload_held = self
            .budget
            .admit(admit::upload_window(
                self.cfg.parallel,
                self.cfg.chunk_size,
                Some(range.end - range.start),
            ))
            .await
            .map_err(admit::slow_down)?;
        let digests = Arc::new(Mutex::new(Digests::new(&[])));
        let reader = body::hashed(stream, digests.clone(), MAX_PUT);
        let d2 = digests.clone();
        let mut opts = self.upload_options(BTreeMap::new());
        opts.part = Some(PartTarget { upload, number });
        opts.before_commit = Some(Arc::new(move |_| {
            let md5 = d2.lock().unwrap_or_else(|p| p.into_inner()).md5();
            let md5 = md5.ok_or("the source was not read to its end")?;
            Ok(BTreeMap::from([(ETAG.to_string(), hex::encode(md5))]))
        }));
        let out = client
            .upload(reader, &i.bucket, &i.key, &opts)
            .await
            .map_err(from_client)?;
        drop(upload_held);
        Ok(S3Response::new(UploadPartCopyOutput {
            copy_part_result: Some(CopyPartResult {
                e_tag: Some(strong(&etag_of(&out.file))),
                last_modified: Some(timestamp(out.file.created_ms)),
                ..Default::default()
            }),
            ..Default::default()
        }))
    }

    async fn complete_multipart_upload(
        &self,
        req: S3Request<CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
        let client = self.client(&req).await?;
        let i = &req.input;
        check_bucket(&i.bucket)?;
        check_key(&i.key)?;
        let upload = parse_upload(&i.upload_id)?;
        let parts = i
            .multipart_upload
            .as_ref()
            .and_then(|m| m.parts.clone())
            .unwrap_or_default();
        if parts.is_empty() {
            return Err(s3(
                S3ErrorCode::MalformedXML,
                "The XML you provided was not well-formed or did not validate against our published schema.",
            ));
        }
        let mut list = Vec::with_capacity(parts.len());
        for p in parts {
            let number = part_number(p.part_number.unwrap_or(0))?;
            let etag = p.e_tag.map(|e| e.value().to_string()).unwrap_or_default();
            list.push(CompletePart { number, etag });
        }
        let file = client
            .complete_multipart(
                &upload,
                &CompleteMultipart {
                    parts: list,
                    min_part_size: self.cfg.min_part_size,
                },
            )
            .await
            .map_err(from_client)?;
        Ok(S3Response::new(CompleteMultipartUploadOutput {
            bucket: Some(i.bucket.clone()),
            key: Some(i.key.clone()),
            e_tag: Some(strong(&etag_of(&file))),
            location: Some(format!("/{}/{}", i.bucket, url_encode(&i.key))),
            ..Default::default()
        }))
    }

    async fn abort_multipart_upload(
        &self,
        req: S3Request<AbortMultipartUploadInput>,
    ) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
        let client = self.client(&req).await?;
        check_bucket(&req.input.bucket)?;
        let upload = parse_upload(&req.input.upload_id)?;
        client.abort_multipart(&upload).await.map_err(from_client)?;
        Ok(S3Response::new(AbortMultipartUploadOutput::default()))
    }

    async fn list_parts(
        &self,
        req: S3Request<ListPartsInput>,
    ) -> S3Result<S3Response<ListPartsOutput>> {
        let client = self.client(&req).await?;
        let i = &req.input;
        check_bucket(&i.bucket)?;
        let upload = parse_upload(&i.upload_id)?;
        let max = i.max_parts.unwrap_or(1000).clamp(1, 1000);
        let after = i.part_number_marker.and_then(|m| u32::try_from(m).ok());
        let l = client
            .list_parts(
                &upload,
                &ListPartsQuery {
                    after,
                    limit: Some(max as usize),
                },
            )
            .await
            .map_err(from_client)?;
        let next = l.parts.last().map(|p| p.number as i32);
        let parts = l
            .parts
            .into_iter()
            .map(|p| Part {
                e_tag: Some(strong(&p.etag)),
                last_modified: Some(timestamp(p.created_ms)),
                part_number: Some(p.number as i32),
                size: Some(p.size as i64),
                ..Default::default()
            })
            .collect();
        Ok(S3Response::new(ListPartsOutput {
            bucket: Some(i.bucket.clone()),
            key: Some(i.key.clone()),
            upload_id: Some(i.upload_id.clone()),
            max_parts: Some(max),
            part_number_marker: i.part_number_marker,
            next_part_number_marker: next,
            is_truncated: Some(l.truncated),
            parts: Some(parts),
            storage_class: Some(StorageClass::from_static(StorageClass::STANDARD)),
            ..Default::default()
        }))
    }

    async fn list_multipart_uploads(
        &self,
        req: S3Request<ListMultipartUploadsInput>,
    ) -> S3Result<S3Response<ListMultipartUploadsOutput>> {
        let client = self.client(&req).await?;
        let i = &req.input;
        check_bucket(&i.bucket)?;
        let max = i.max_uploads.unwrap_or(1000).clamp(1, 1000) as usize;
        let prefix = i.prefix.clone().unwrap_or_default();
        let delimiter = i.delimiter.clone().filter(|d| !d.is_empty());
        // A marker that is a common prefix resumes after everything under it.
        let skip = i
            .key_marker
            .clone()
            .filter(|m| delimiter.as_ref().is_some_and(|d| m.ends_with(d.as_str())));
        let mut uploads = Vec::new();
        let mut prefixes: Vec<String> = Vec::new();
        let mut next: Option<(String, Option<String>)> = None;
        let mut truncated = false;
        let (mut after, mut after_upload) = (i.key_marker.clone(), i.upload_id_marker.clone());
        'pages: loop {
            let page = client
                .list_multipart(&ListMultipartQuery {
                    bucket: i.bucket.clone(),
                    prefix: i.prefix.clone(),
                    after: after.clone(),
                    after_upload: after_upload.clone(),
                    limit: Some(1000),
                })
                .await
                .map_err(from_client)?;
            if let Some(u) = page.uploads.last() {
                after = Some(u.path.clone());
                after_upload = Some(u.upload.to_string());
            }
            for u in page.uploads {
                if skip
                    .as_ref()
                    .is_some_and(|p| u.path.starts_with(p.as_str()))
                {
                    continue;
                }
                // Keys sort in order, so one common prefix's keys are adjacent.
                let rolled = delimiter.as_ref().and_then(|d| {
                    let rest = u.path.get(prefix.len()..)?;
                    let at = rest.find(d.as_str())?;
                    Some(format!("{prefix}{}", &rest[..at + d.len()]))
                });
                if rolled.is_some() && prefixes.last() == rolled.as_ref() {
                    continue;
                }
                if uploads.len() + prefixes.len() == max {
                    truncated = true;
                    break 'pages;
                }
                match rolled {
                    Some(p) => {
                        next = Some((p.clone(), None));
                        prefixes.push(p);
                    }
                    None => {
                        next = Some((u.path.clone(), Some(u.upload.to_string())));
                        uploads.push(MultipartUpload {
                            initiated: Some(timestamp(u.created_ms)),
                            key: Some(u.path),
                            upload_id: Some(u.upload.to_string()),
                            storage_class: Some(StorageClass::from_static(StorageClass::STANDARD)),
                            ..Default::default()
                        });
                    }
                }
            }
            if !page.truncated {
                break;
            }
        }
        let (next_key, next_upload) = match next.filter(|_| truncated) {
            Some((k, u)) => (Some(k), u),
            None => (None, None),
        };
        Ok(S3Response::new(ListMultipartUploadsOutput {
            bucket: Some(i.bucket.clone()),
            prefix: i.prefix.clone(),
            delimiter: delimiter.clone(),
            key_marker: i.key_marker.clone(),
            upload_id_marker: i.upload_id_marker.clone(),
            max_uploads: Some(max as i32),
            is_truncated: Some(truncated),
            next_key_marker: next_key,
            next_upload_id_marker: next_upload,
            uploads: Some(uploads),
            common_prefixes: (!prefixes.is_empty()).then(|| {
                prefixes
                    .into_iter()
                    .map(|p| CommonPrefix { prefix: Some(p) })
                    .collect()
            }),
            ..Default::default()
        }))
    }
}

fn check_copy_conditions(
    src: &FileInfo,
    if_match: Option<&ETagCondition>,
    if_none_match: Option<&ETagCondition>,
    if_modified_since: Option<&Timestamp>,
    if_unmodified_since: Option<&Timestamp>,
) -> S3Result<()> {
    let etag = etag_of(src);
    let modified = (src.created_ms / 1000) as i64;
    let failed = || {
        s3(
            S3ErrorCode::PreconditionFailed,
            "At least one of the pre-conditions you specified did not hold",
        )
    };
    if let Some(m) = if_match {
        if !cond_matches(m, &etag) {
            return Err(failed());
        }
    } else if let Some(t) = if_unmodified_since {
        if modified > secs(t) {
            return Err(failed());
        }
    }
    if let Some(m) = if_none_match {
        if cond_matches(m, &etag) {
            return Err(failed());
        }
    } else if let Some(t) = if_modified_since {
        if modified <= secs(t) {
            return Err(failed());
        }
    }
    Ok(())
}

/// `bytes=first-last` of `x-amz-copy-source-range`, within the source.
fn parse_copy_range(r: &str, size: u64) -> S3Result<std::ops::Range<u64>> {
    let bad = || {
        s3(S3ErrorCode::InvalidArgument, "The x-amz-copy-source-range value must be of the form bytes=first-last where first and last are the zero-based offsets of the first and last bytes to copy")
    };
    let (a, b) = r
        .trim()
        .strip_prefix("bytes=")
        .and_then(|s| s.split_once('-'))
        .ok_or_else(bad)?;
    let first: u64 = a.parse().map_err(|_| bad())?;
    let last: u64 = b.parse().map_err(|_| bad())?;
    if first > last || last >= size {
        return Err(s3(
            S3ErrorCode::InvalidRange,
            "The requested range is not satisfiable",
        ));
    }
    Ok(first..last + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(method: &str, uri: &str, headers: &[(&str, &str)]) -> S3Request<()> {
        let mut map = http::HeaderMap::new();
        for (k, v) in headers {
            map.append(
                http::HeaderName::from_bytes(k.as_bytes()).expect("name"),
                http::HeaderValue::from_str(v).expect("value"),
            );
        }
        S3Request {
            input: (),
            method: method.parse().expect("method"),
            uri: uri.parse().expect("uri"),
            headers: map,
            extensions: http::Extensions::new(),
            credentials: None,
            region: None,
            service: None,
            trailing_headers: None,
        }
    }

    /// Only a hash `s3s` checks names a chunk: a SigV4 PUT with exactly one
    /// lowercase hex `x-amz-content-sha256`.
    #[test]
    fn a_payload_hash_is_trusted_only_where_it_is_checked() {
        let hash = "a".repeat(64);
        let v4 = "AWS4-HMAC-SHA256 Credential=K/20260101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=00";
        let put = |uri: &str, headers: &[(&str, &str)]| {
            checked_payload_sha256(&request("PUT", uri, headers))
        };
        let sha = ("x-amz-content-sha256", hash.as_str());
        assert_eq!(put("/b/k", &[("authorization", v4), sha]), Some([0xaa; 32]));
        let presigned = "/b/k?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=K";
        assert_eq!(put(presigned, &[sha]), Some([0xaa; 32]));
        // SigV2, no signature, a POST, a repeated or odd header: not checked.
        assert_eq!(put("/b/k", &[("authorization", "AWS K:c2ln"), sha]), None);
        assert_eq!(put("/b/k", &[sha]), None);
        let post = checked_payload_sha256(&request("POST", "/b", &[("authorization", v4), sha]));
        assert_eq!(post, None);
        assert_eq!(put("/b/k", &[("authorization", v4), sha, sha]), None);
        let upper = "A".repeat(64);
        let upper = ("x-amz-content-sha256", upper.as_str());
        assert_eq!(put("/b/k", &[("authorization", v4), upper]), None);
        let unsigned = ("x-amz-content-sha256", "UNSIGNED-PAYLOAD");
        assert_eq!(put("/b/k", &[("authorization", v4), unsigned]), None);
    }

    #[test]
    fn copy_ranges_parse_and_check() {
        assert_eq!(parse_copy_range("bytes=0-9", 10).ok(), Some(0..10));
        assert!(parse_copy_range("bytes=0-10", 10).is_err());
        assert!(parse_copy_range("0-1", 10).is_err());
        assert!(parse_copy_range("bytes=5-1", 10).is_err());
    }

    #[test]
    fn list_tokens_round_trip_and_keys_encode() {
        let t = token_encode("a/ü b");
        assert_eq!(token_decode(&t).ok().as_deref(), Some("a/ü b"));
        assert!(token_decode("!!").is_err());
        assert_eq!(url_encode("a b/ü+"), "a%20b/%C3%BC%2B");
    }
}
