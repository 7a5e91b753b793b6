//! Server-side encryption headers. The store does not encrypt objects
//! yet, so a request that asks for encryption is refused before a byte of
//! its body is read: a client must never believe its data is encrypted
//! when it is stored in clear.
//!
//! - A write (PutObject, CreateMultipartUpload, UploadPart, CopyObject,
//!   UploadPartCopy) asking for SSE-S3, SSE-KMS or SSE-C: `501
//!   NotImplemented`, after the headers' own checks (a malformed one gets
//!   AWS's `400 InvalidArgument`).
//! - A read (GetObject, HeadObject) or a copy source with SSE-C headers:
//!   no stored object is encrypted, so, as AWS answers for an object
//!   stored without a customer key, `400 InvalidRequest`.

use base64::Engine as _;
use http::HeaderMap;
use md5::{Digest, Md5};
use s3s::{S3ErrorCode, S3Result};

use crate::error::s3;

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

/// Refuses `op` when its headers ask for server-side encryption.
pub(crate) fn check(op: &str, headers: &HeaderMap) -> S3Result<()> {
    let reads = READS.contains(&op);
    let writes = WRITES.contains(&op);
    if !(reads || writes) {
        return Ok(());
    }
    if customer_key(headers, SSE_C_SOURCE)? {
        return Err(not_applicable("the copy source"));
    }
    let customer = customer_key(headers, SSE_C)?;
    if reads {
        return match customer {
            true => Err(not_applicable("this object")),
            false => Ok(()),
        };
    }
    if let Some(v) = headers.get(SSE) {
        match v.to_str().unwrap_or_default() {
            "AES256" | "aws:kms" | "aws:kms:dsse" => {}
            other => {
                return Err(s3(
                    S3ErrorCode::InvalidArgument,
                    format!("The encryption method specified is not supported: {other:?}"),
                ))
            }
        }
        if customer {
            return Err(s3(
                S3ErrorCode::InvalidArgument,
                "Server Side Encryption with Customer provided key is incompatible with the encryption method specified",
            ));
        }
        return Err(not_implemented("Server-side encryption (SSE-S3, SSE-KMS)"));
    }
    if KMS.iter().any(|h| headers.contains_key(*h)) {
        return Err(s3(
            S3ErrorCode::InvalidArgument,
            "x-amz-server-side-encryption-aws-kms-* headers need x-amz-server-side-encryption: aws:kms",
        ));
    }
    if customer {
        return Err(not_implemented(
            "Server-side encryption with customer-provided keys (SSE-C)",
        ));
    }
    Ok(())
}

/// Checks a set of SSE-C headers (`prefix` + `algorithm`, `key`,
/// `key-MD5`) as AWS does: all three or none, AES256, a 256-bit key in
/// base64 and the base64 MD5 of that key. True when they are present
/// and well-formed.
fn customer_key(headers: &HeaderMap, prefix: &str) -> S3Result<bool> {
    let get = |name: &str| {
        headers
            .get(format!("{prefix}{name}"))
            .map(|v| v.to_str().unwrap_or_default().trim().to_string())
    };
    let (algo, key, md5) = (get("algorithm"), get("key"), get("key-md5"));
    if algo.is_none() && key.is_none() && md5.is_none() {
        return Ok(false);
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
        .filter(|k| k.len() == 32)
    else {
        return invalid("The secret key was invalid for the specified algorithm.");
    };
    let want = Md5::digest(&key);
    if md5.and_then(|m| b64.decode(m).ok()).as_deref() != Some(&want[..]) {
        return invalid(
            "The calculated MD5 hash of the key did not match the hash that was provided.",
        );
    }
    Ok(true)
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
    fn writes_asking_for_encryption_are_refused_and_plain_ones_pass() {
        for op in WRITES {
            assert_eq!(code(op, &[]), None);
            assert_eq!(
                code(op, &[(SSE, "AES256")]),
                Some(S3ErrorCode::NotImplemented)
            );
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
            assert_eq!(code(op, &as_refs(&c)), Some(S3ErrorCode::NotImplemented));
        }
        assert_eq!(code("ListObjectsV2", &[(SSE, "AES256")]), None);
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
        // Nothing stored is encrypted: a read with a good key is refused as
        // AWS refuses one for an object stored without a customer key.
        for op in READS {
            assert_eq!(code(op, &as_refs(&good)), Some(S3ErrorCode::InvalidRequest));
        }
        let source = customer(SSE_C_SOURCE);
        assert_eq!(
            code("CopyObject", &as_refs(&source)),
            Some(S3ErrorCode::InvalidRequest)
        );
    }
}
