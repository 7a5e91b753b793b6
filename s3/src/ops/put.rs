//! Writes: PutObject, and the body upload it shares with UploadPart
//! ([`put_body`]): the body streams through the MD5 (the ETag) and any
//! declared checksums into the client's upload, whose commit is refused
//! unless Content-MD5 and the declared checksums (headers or aws-chunked
//! trailers) match what arrived.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use blob_client::{Client, FileInfo, PartTarget, WriteCondition};
use s3s::dto::*;
use s3s::{S3ErrorCode, S3Request, S3Response, S3Result};

use super::args::{check_bucket, check_key};
use super::attrs::{object_meta, strong, ETAG};
use super::conditions::write_condition;
use super::tagging::tag_meta;
use crate::admit;
use crate::body::{self, Algo, Digests};
use crate::compat::Authenticated;
use crate::error::{from_client, s3};
use crate::service::Gateway;

/// Largest single PUT and largest part (S3: 5 GiB).
pub(super) const MAX_PUT: u64 = 5 << 30;

/// PutObject: streams the body into a file.
pub(crate) async fn put_object(
    gw: &Gateway,
    req: S3Request<PutObjectInput>,
) -> S3Result<S3Response<PutObjectOutput>> {
    let client = gw.client(&req).await?;
    let mut req = req;
    let blob = req.input.body.take();
    let i = &req.input;
    check_bucket(&i.bucket)?;
    check_key(&i.key)?;
    gw.locations.forget(&i.bucket, &i.key);
    let mut meta = object_meta!(i);
    tag_meta(i.tagging.as_ref(), &mut meta)?;
    let decl = declared(
        i.content_length,
        i.content_md5.clone(),
        declared_checksums!(i),
    );
    let decl = Declared {
        condition: write_condition(i.if_match.as_ref(), i.if_none_match.as_ref())?,
        ..decl
    };
    let (bucket, key) = (i.bucket.clone(), i.key.clone());
    let sealing = crate::sse::sealing_for_write(gw, &client, &req.headers, &bucket).await?;
    let decl = Declared { sealing, ..decl };
    let (file, etag) = put_body(gw, &client, &req, blob, &bucket, &key, meta, None, decl).await?;
    let d = crate::sse::describe(&file.meta, &req.headers);
    Ok(S3Response::new(PutObjectOutput {
        e_tag: Some(strong(&etag)),
        size: Some(file.size as i64),
        version_id: file.version_id.clone(),
        server_side_encryption: d.sse,
        sse_customer_algorithm: d.customer_algorithm,
        sse_customer_key_md5: d.customer_key_md5,
        ..Default::default()
    }))
}

/// Streams a request body into `bucket/key` (or a part), verifying
/// Content-MD5 and declared checksums before the commit.
#[allow(clippy::too_many_arguments)]
pub(super) async fn put_body<T>(
    gw: &Gateway,
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
    // An empty Content-MD5 counts as one (s3s reads it as absent).
    let sent_md5 = req
        .headers
        .get("content-md5")
        .map(|v| v.to_str().unwrap_or("?").to_string());
    if let Some(md5) = sent_md5.as_ref().or(declared.content_md5.as_ref()) {
        let b64 = base64::engine::general_purpose::STANDARD;
        if b64.decode(md5.trim()).map_or(true, |d| d.len() != 16) {
            return Err(s3(
                S3ErrorCode::InvalidDigest,
                "The Content-MD5 you specified is not valid.",
            ));
        }
    }
    // A signed payload hash the signature check could not verify (a body
    // of unknown length, see `compat`) is verified here.
    let payload_sha256 = req
        .extensions
        .get::<Authenticated>()
        .and_then(|a| a.payload_sha256.clone());
    let mut algos: Vec<Algo> = declared.checksums.iter().map(|(a, _)| *a).collect();
    if payload_sha256.is_some() {
        algos.push(Algo::Sha256);
    }
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
        if let Some(want) = &payload_sha256 {
            let got = d.checksum(Algo::Sha256).and_then(|b| {
                base64::engine::general_purpose::STANDARD
                    .decode(b)
                    .ok()
                    .map(hex::encode)
            });
            if got.as_deref() != Some(want.as_str()) {
                return Err(
                    "The provided 'x-amz-content-sha256' header does not match what was computed."
                        .to_string(),
                );
            }
        }
        let mut attrs = BTreeMap::from([(ETAG.to_string(), hex::encode(md5))]);
        for (algo, want) in &wanted {
            if d.checksum(*algo).as_deref() != Some(want.trim()) {
                return Err(format!(
                    "The {} you specified did not match the calculated checksum.",
                    algo.header()
                ));
            }
            // Kept, to be returned on request (x-amz-checksum-mode).
            let name = algo.header().trim_start_matches("x-amz-");
            attrs.insert(name.to_string(), want.trim().to_string());
        }
        Ok(attrs)
    });
    let mut opts = gw.upload_options(meta);
    opts.before_commit = Some(check);
    opts.part = part;
    opts.condition = declared.condition;
    opts.sealing = declared.sealing;
    opts.input_sha256 = checked_payload_sha256(req);
    let blob = blob.unwrap_or_else(|| {
        StreamingBlob::wrap(futures::stream::empty::<Result<bytes::Bytes, std::io::Error>>())
    });
    // The upload holds at most its window of the body in memory.
    let window = admit::upload_window(
        gw.cfg.parallel,
        gw.cfg.chunk_size,
        declared.length.and_then(|l| u64::try_from(l).ok()),
    );
    let held = gw.budget.admit(window).await.map_err(admit::slow_down)?;
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

/// The checksums a write's input declares (PutObject, UploadPart: their
/// input types share these field names), in [`declared`]'s order.
macro_rules! declared_checksums {
    ($i:expr) => {
        [
            $i.checksum_crc32.clone(),
            $i.checksum_crc32c.clone(),
            $i.checksum_crc64nvme.clone(),
            $i.checksum_sha1.clone(),
            $i.checksum_sha256.clone(),
        ]
    };
}
pub(super) use declared_checksums;

/// What a client declared about a body.
#[derive(Default)]
pub(super) struct Declared {
    length: Option<i64>,
    content_md5: Option<String>,
    checksums: Vec<(Algo, String)>,
    /// What the version replaced must be (conditional writes).
    condition: Option<WriteCondition>,
    /// How the bytes are sealed (encryption at rest), if they are.
    pub(super) sealing: Option<blob_client::sse::Sealing>,
}

/// What a request declares about its body, from its headers.
pub(super) fn declared(
    length: Option<i64>,
    content_md5: Option<String>,
    [crc32, crc32c, crc64nvme, sha1, sha256]: [Option<String>; 5],
) -> Declared {
    let mut checksums = Vec::new();
    for (algo, v) in [
        (Algo::Crc32, crc32),
        (Algo::Crc32c, crc32c),
        (Algo::Crc64Nvme, crc64nvme),
        (Algo::Sha1, sha1),
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
        condition: None,
        sealing: None,
    }
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
}
