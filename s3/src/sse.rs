//! Server-side encryption, as S3 asks for it: headers checked before a
//! body is read ([`check`]), the sealing a write gets ([`sealing_for_write`]:
//! SSE-C, SSE-S3 or the bucket's default), the checks of a read against
//! the customer key ([`check_read`]) and the headers answered
//! ([`describe`]). The chunks are sealed and opened by the client library
//! (`blob_client::sse`), so every service stores them as opaque bytes.
//!
//! SSE-KMS is not offered: asking for it is `501 NotImplemented` before a
//! byte is read, never a silent plaintext.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine as _;
use blob_client::sse::{sse_mode, CustomerKey, Sealing};
use blob_client::Client;
use blob_common::seal;
use http::HeaderMap;
use md5::{Digest, Md5};
use s3s::dto::ServerSideEncryption;
use s3s::{S3ErrorCode, S3Result};

use crate::error::{from_client, s3};
use crate::service::Gateway;

/// The header asking for SSE-S3 or SSE-KMS.
const SSE: &str = "x-amz-server-side-encryption";
/// Headers that only go with [`SSE`]'s KMS forms.
const KMS: [&str; 3] = [
    "x-amz-server-side-encryption-aws-kms-key-id",
    "x-amz-server-side-encryption-context",
    "x-amz-server-side-encryption-bucket-key-enabled",
];
/// The SSE-C headers of the object written or read, and of a copy source.
const SSE_C: &str = "x-amz-server-side-encryption-customer-";
const SSE_C_SOURCE: &str = "x-amz-copy-source-server-side-encryption-customer-";

/// Operations that read an object (or a copy source) and never write one.
const READS: [&str; 3] = ["GetObject", "HeadObject", "GetObjectAttributes"];
/// Operations that write object data.
const WRITES: [&str; 5] = [
    "PutObject",
    "CreateMultipartUpload",
    "UploadPart",
    "CopyObject",
    "UploadPartCopy",
];

/// Checks `op`'s encryption headers before its body is read: malformed
/// ones get AWS's `400 InvalidArgument`, SSE-KMS (which this store does
/// not offer) `501 NotImplemented`. What the headers ask for is done by
/// the operation ([`sealing_for_write`], [`check_read`]).
pub(crate) fn check(op: &str, headers: &HeaderMap) -> S3Result<()> {
    let reads = READS.contains(&op);
    let writes = WRITES.contains(&op);
    if !(reads || writes) {
        return Ok(());
    }
    customer_key(headers, SSE_C_SOURCE)?;
    let customer = customer_key(headers, SSE_C)?.is_some();
    if reads {
        return Ok(());
    }
    if let Some(v) = headers.get(SSE) {
        let kms = match v.to_str().unwrap_or_default() {
            "AES256" => false,
            "aws:kms" | "aws:kms:dsse" => true,
            other => {
                return Err(s3(
                    S3ErrorCode::InvalidArgument,
                    format!("The encryption method specified is not supported: {other:?}"),
                ))
            }
        };
        if customer {
            return Err(s3(
                S3ErrorCode::InvalidArgument,
                "Server Side Encryption with Customer provided key is incompatible with the encryption method specified",
            ));
        }
        if kms {
            return Err(not_implemented(
                "Server-side encryption with KMS keys (SSE-KMS)",
            ));
        }
        return Ok(());
    }
    if KMS.iter().any(|h| headers.contains_key(*h)) {
        return Err(s3(
            S3ErrorCode::InvalidArgument,
            "x-amz-server-side-encryption-aws-kms-* headers need x-amz-server-side-encryption: aws:kms",
        ));
    }
    Ok(())
}

/// The customer key a request gives for the object it writes or reads
/// (`source`: for its copy source), already checked by [`check`].
pub(crate) fn request_key(headers: &HeaderMap, source: bool) -> Option<CustomerKey> {
    let prefix = if source { SSE_C_SOURCE } else { SSE_C };
    customer_key(headers, prefix).ok().flatten()
}

/// Whether a write asks for SSE-S3 by header.
fn asks_sse_s3(headers: &HeaderMap) -> bool {
    headers.get(SSE).is_some_and(|v| v.as_bytes() == b"AES256")
}

/// How a new object (or multipart upload) is to be sealed: as its headers
/// ask (SSE-C with the request's key, SSE-S3 with a fresh data key), else
/// as its bucket's default encryption says, else not at all.
pub(crate) async fn sealing_for_write(
    gw: &Gateway,
    client: &Client,
    headers: &HeaderMap,
    bucket: &str,
) -> S3Result<Option<Sealing>> {
    if let Some(key) = request_key(headers, false) {
        return Ok(Some(Sealing::customer(&key)));
    }
    let s3_default = if asks_sse_s3(headers) {
        true
    } else {
        gw.encryption.default_of(client, bucket).await?.is_some()
    };
    if !s3_default {
        return Ok(None);
    }
    client.sse_s3_sealing().await.map(Some).map_err(from_client)
}

/// Checks a read of an object with metadata `meta` (`source`: as a copy
/// source) against the
/// request's customer key, as AWS answers: an SSE-C object needs its key
/// (400 `InvalidRequest` without one, 403 `AccessDenied` with another),
/// and a key for an object stored without one is 400 `InvalidRequest`.
pub(crate) fn check_read(
    meta: &BTreeMap<String, String>,
    headers: &HeaderMap,
    source: bool,
) -> S3Result<()> {
    let what = if source {
        "the copy source"
    } else {
        "this object"
    };
    let key = request_key(headers, source);
    match (sse_mode(meta), key) {
        (Some(seal::SSE_C), None) => Err(s3(
            S3ErrorCode::InvalidRequest,
            format!("The object was stored using a form of Server Side Encryption. The correct parameters must be provided to retrieve {what}."),
        )),
        (Some(seal::SSE_C), Some(key)) => {
            if key.is_key_of(meta) {
                Ok(())
            } else {
                Err(s3(S3ErrorCode::AccessDenied, format!("Access Denied: the customer key given is not the one {what} was encrypted with.")))
            }
        }
        (_, Some(_)) => Err(not_applicable(what)),
        _ => Ok(()),
    }
}

/// What to answer about an object's encryption: the
/// `x-amz-server-side-encryption` value for SSE-S3, and for SSE-C the
/// algorithm and the key MD5 the request sent.
pub(crate) struct Described {
    pub(crate) sse: Option<ServerSideEncryption>,
    pub(crate) customer_algorithm: Option<String>,
    pub(crate) customer_key_md5: Option<String>,
}

/// [`Described`] for an object with metadata `meta`, read or written by a
/// request with `headers`.
pub(crate) fn describe(meta: &BTreeMap<String, String>, headers: &HeaderMap) -> Described {
    match sse_mode(meta) {
        Some(seal::SSE_S3) => Described {
            sse: Some(ServerSideEncryption::from_static(
                ServerSideEncryption::AES256,
            )),
            customer_algorithm: None,
            customer_key_md5: None,
        },
        Some(seal::SSE_C) => Described {
            sse: None,
            customer_algorithm: Some("AES256".into()),
            customer_key_md5: request_key(headers, false).map(|k| k.md5_base64()),
        },
        _ => Described {
            sse: None,
            customer_algorithm: None,
            customer_key_md5: None,
        },
    }
}

/// Buckets' default encryption (PutBucketEncryption), kept as the bucket
/// setting [`SETTING`] and remembered here for a few seconds, so that a
/// PUT does not cost a namenode call to learn it. Another gateway's change
/// is seen within [`DEFAULT_TTL`].
pub(crate) struct Defaults {
    cache: Mutex<HashMap<String, (Instant, Option<String>)>>,
}

/// The bucket setting holding a bucket's default encryption.
pub(crate) const SETTING: &str = "encryption";
/// How long a bucket's default is remembered.
pub(crate) const DEFAULT_TTL: Duration = Duration::from_secs(5);

impl Defaults {
    pub(crate) fn new() -> Self {
        Self {
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// `bucket`'s default algorithm (`AES256`), if it has one.
    pub(crate) async fn default_of(
        &self,
        client: &Client,
        bucket: &str,
    ) -> S3Result<Option<String>> {
        {
            let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((at, v)) = cache.get(bucket) {
                if at.elapsed() < DEFAULT_TTL {
                    return Ok(v.clone());
                }
            }
        }
        let v = match client.bucket_setting(bucket, SETTING).await {
            Ok(v) => v,
            // A missing bucket is the write's own error to report.
            Err(e) if e.is_not_found() => None,
            Err(e) => return Err(from_client(e)),
        };
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() > 10_000 {
            cache.retain(|_, (at, _)| at.elapsed() < DEFAULT_TTL);
        }
        cache.insert(bucket.to_string(), (Instant::now(), v.clone()));
        Ok(v)
    }

    /// Forgets what was remembered of `bucket` (its default changed here).
    pub(crate) fn forget(&self, bucket: &str) {
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache.remove(bucket);
    }
}

/// Checks a set of SSE-C headers (`prefix` + `algorithm`, `key`,
/// `key-MD5`) as AWS does: all three or none, AES256, a 256-bit key in
/// base64 and the base64 MD5 of that key. True when they are present
/// and well-formed.
fn customer_key(headers: &HeaderMap, prefix: &str) -> S3Result<Option<CustomerKey>> {
    let get = |name: &str| {
        headers
            .get(format!("{prefix}{name}"))
            .map(|v| v.to_str().unwrap_or_default().trim().to_string())
    };
    let (algo, key, md5) = (get("algorithm"), get("key"), get("key-md5"));
    if algo.is_none() && key.is_none() && md5.is_none() {
        return Ok(None);
    }
    let invalid = |msg: &str| Err(s3(S3ErrorCode::InvalidArgument, msg.to_string()));
    let Some(algo) = algo else {
        return invalid("Requests specifying Server Side Encryption with Customer provided keys must provide a valid encryption algorithm.");
    };
    if algo != "AES256" {
        return invalid("The encryption algorithm specified is not valid (only AES256 is).");
    }
    let b64 = base64::engine::general_purpose::STANDARD;
    let Some(key) = key
        .and_then(|k| b64.decode(k).ok())
        .and_then(|k| <[u8; 32]>::try_from(k).ok())
    else {
        return invalid("The secret key was invalid for the specified algorithm.");
    };
    let want = Md5::digest(key);
    if md5.and_then(|m| b64.decode(m).ok()).as_deref() != Some(&want[..]) {
        return invalid(
            "The calculated MD5 hash of the key did not match the hash that was provided.",
        );
    }
    Ok(Some(CustomerKey::new(key)))
}

fn not_applicable(what: &str) -> s3s::S3Error {
    s3(
        S3ErrorCode::InvalidRequest,
        format!("The encryption parameters are not applicable to {what}: it is not encrypted with a customer-provided key."),
    )
}

fn not_implemented(what: &str) -> s3s::S3Error {
    s3(
        S3ErrorCode::NotImplemented,
        format!("{what} is not supported by this store; nothing was stored. Send the request without the encryption headers to store the object unencrypted."),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(
                http::HeaderName::from_bytes(k.as_bytes()).expect("name"),
                http::HeaderValue::from_str(v).expect("value"),
            );
        }
        h
    }

    fn code(op: &str, pairs: &[(&str, &str)]) -> Option<S3ErrorCode> {
        check(op, &headers(pairs)).err().map(|e| e.code().clone())
    }

    fn customer(prefix: &str) -> Vec<(String, String)> {
        let b64 = base64::engine::general_purpose::STANDARD;
        let key = [7u8; 32];
        vec![
            (format!("{prefix}algorithm"), "AES256".into()),
            (format!("{prefix}key"), b64.encode(key)),
            (format!("{prefix}key-MD5"), b64.encode(Md5::digest(key))),
        ]
    }

    fn as_refs(v: &[(String, String)]) -> Vec<(&str, &str)> {
        v.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
    }

    #[test]
    fn sse_s3_and_sse_c_writes_pass_kms_is_refused_and_bad_values_are_invalid() {
        for op in WRITES {
            assert_eq!(code(op, &[]), None);
            assert_eq!(code(op, &[(SSE, "AES256")]), None);
            assert_eq!(
                code(op, &[(SSE, "aws:kms"), (KMS[0], "k")]),
                Some(S3ErrorCode::NotImplemented)
            );
            assert_eq!(
                code(op, &[(SSE, "rot13")]),
                Some(S3ErrorCode::InvalidArgument)
            );
            assert_eq!(
                code(op, &[(KMS[0], "k")]),
                Some(S3ErrorCode::InvalidArgument)
            );
            let c = customer(SSE_C);
            assert_eq!(code(op, &as_refs(&c)), None);
            let mut both = c.clone();
            both.push((SSE.to_string(), "AES256".to_string()));
            assert_eq!(
                code(op, &as_refs(&both)),
                Some(S3ErrorCode::InvalidArgument)
            );
        }
        assert_eq!(code("ListObjectsV2", &[(SSE, "AES256")]), None);
    }

    #[test]
    fn reads_are_checked_against_the_object() {
        let key = CustomerKey::new([7u8; 32]);
        let sealing = Sealing::customer(&key);
        let good = headers(&as_refs(&customer(SSE_C)));
        let meta = sealing.meta().clone();
        assert!(check_read(&meta, &good, false).is_ok());
        let err = |m: &BTreeMap<String, String>, h: &HeaderMap| {
            check_read(m, h, false).err().map(|e| e.code().clone())
        };
        assert_eq!(
            err(&meta, &HeaderMap::new()),
            Some(S3ErrorCode::InvalidRequest)
        );
        let other = Sealing::customer(&CustomerKey::new([8u8; 32]));
        assert_eq!(err(other.meta(), &good), Some(S3ErrorCode::AccessDenied));
        assert_eq!(
            err(&BTreeMap::new(), &good),
            Some(S3ErrorCode::InvalidRequest)
        );
        assert_eq!(err(&BTreeMap::new(), &HeaderMap::new()), None);
        let d = describe(&meta, &good);
        assert_eq!(d.customer_algorithm.as_deref(), Some("AES256"));
        assert_eq!(d.customer_key_md5, Some(key.md5_base64()));
        assert!(d.sse.is_none());
    }

    #[test]
    fn customer_keys_are_checked_before_anything_else() {
        let good = customer(SSE_C);
        let mut wrong_md5 = good.clone();
        wrong_md5[2].1 = base64::engine::general_purpose::STANDARD.encode([0u8; 16]);
        let mut short_key = good.clone();
        short_key[1].1 = base64::engine::general_purpose::STANDARD.encode([1u8; 16]);
        let mut other_algo = good.clone();
        other_algo[0].1 = "AES128".into();
        for bad in [&wrong_md5, &short_key, &other_algo, &good[1..].to_vec()] {
            for op in ["PutObject", "GetObject", "HeadObject"] {
                assert_eq!(
                    code(op, &as_refs(bad)),
                    Some(S3ErrorCode::InvalidArgument),
                    "{op} {bad:?}"
                );
            }
        }
        for op in READS {
            assert_eq!(code(op, &as_refs(&good)), None);
        }
        let source = customer(SSE_C_SOURCE);
        assert_eq!(code("CopyObject", &as_refs(&source)), None);
        let mut bad_source = source.clone();
        bad_source[2].1 = base64::engine::general_purpose::STANDARD.encode([0u8; 16]);
        assert_eq!(
            code("CopyObject", &as_refs(&bad_source)),
            Some(S3ErrorCode::InvalidArgument)
        );
    }
}
