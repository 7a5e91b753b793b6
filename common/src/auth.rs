//! Request signing for the control API (namenode calls).
//!
//! Every call carries `x-blob-date` (Unix seconds), `x-blob-content-sha256`
//! (hex SHA-256 of the body) and
//! `Authorization: BLOB-HMAC-SHA256 Credential=<access key>, Signature=<hex>`
//! where the signature is HMAC-SHA256 under the access key's secret of the
//! string built by [`string_to_sign`]. The secret never crosses the wire,
//! a captured request cannot be replayed after [`MAX_SKEW_SECS`], and the
//! body cannot be altered. Datanodes sign their own calls the same way under
//! the cluster keyring, with the access key `cluster.<kid>`.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// The `Authorization` scheme name.
pub const SCHEME: &str = "BLOB-HMAC-SHA256";
/// Header carrying the request time, Unix seconds.
pub const DATE_HEADER: &str = "x-blob-date";
/// Header carrying the hex SHA-256 of the body.
pub const CONTENT_SHA_HEADER: &str = "x-blob-content-sha256";
/// How far a request's date may be from the server's clock.
pub const MAX_SKEW_SECS: u64 = 15 * 60;
/// Access-key prefix for calls signed with the cluster keyring (refused by
/// the namenode's API: that keyring signs chunk URLs, not calls).
pub const CLUSTER_KEY_PREFIX: &str = "cluster.";
/// Access-key prefix of a service identity (`service.datanode`, …).
pub const SERVICE_KEY_PREFIX: &str = "service.";

/// The services that call the namenode, each with its own secret and only
/// the routes its work needs: datanodes (heartbeats and chunk reports),
/// edges (locating chunks to warm, reporting bad origin bytes) and S3
/// gateways (access-key lookup, bucket settings for unsigned CORS
/// preflights).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ServiceRole {
    /// A datanode.
    Datanode,
    /// An edge cache.
    Edge,
    /// An S3 gateway.
    Gateway,
}

impl ServiceRole {
    /// Every role.
    pub const ALL: [ServiceRole; 3] = [
        ServiceRole::Datanode,
        ServiceRole::Edge,
        ServiceRole::Gateway,
    ];

    /// Its name in keyring files and access keys.
    pub fn name(self) -> &'static str {
        match self {
            ServiceRole::Datanode => "datanode",
            ServiceRole::Edge => "edge",
            ServiceRole::Gateway => "s3",
        }
    }

    /// The role a name gives.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.name() == name)
    }

    /// The access key it signs with.
    pub fn access_key(self) -> String {
        format!("{SERVICE_KEY_PREFIX}{}", self.name())
    }
}

/// Why a request's credentials were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// No `Authorization` header (HTTP 401).
    #[error("missing Authorization header")]
    Missing,
    /// The header or date is not in the expected form (HTTP 401).
    #[error("malformed credentials: {0}")]
    Malformed(&'static str),
    /// The access key does not exist (HTTP 403).
    #[error("unknown access key {0:?}")]
    UnknownKey(String),
    /// The signature is wrong: bad secret or altered request (HTTP 403).
    #[error("signature does not match (wrong secret or altered request)")]
    BadSignature,
    /// The request's date is too far from the server's clock (HTTP 403).
    #[error("request date {date} is more than {MAX_SKEW_SECS}s from server time {now}")]
    Skewed {
        /// The request's date.
        date: u64,
        /// The server's clock.
        now: u64,
    },
    /// The body does not hash to the declared value (HTTP 400).
    #[error("body does not match x-blob-content-sha256")]
    BodyMismatch,
}

impl AuthError {
    /// The HTTP status for this refusal.
    pub fn status(&self) -> u16 {
        match self {
            AuthError::Missing | AuthError::Malformed(_) => 401,
            AuthError::BodyMismatch => 400,
            _ => 403,
        }
    }
}

/// The canonical string a signature covers.
pub fn string_to_sign(method: &str, path: &str, query: &str, date: u64, body_sha: &str) -> String {
    format!(
        "{SCHEME}\n{date}\n{}\n{path}\n{query}\n{body_sha}",
        method.to_ascii_uppercase()
    )
}

/// Hex SHA-256 of a body.
pub fn body_sha256(body: &[u8]) -> String {
    hex::encode(Sha256::digest(body))
}

fn hmac_hex(secret: &[u8], msg: &str) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(msg.as_bytes());
    mac
}

/// The headers a signed request carries.
#[derive(Debug, Clone)]
pub struct SignedHeaders {
    /// `Authorization` value.
    pub authorization: String,
    /// `x-blob-date` value.
    pub date: String,
    /// `x-blob-content-sha256` value.
    pub content_sha256: String,
}

/// Signs a request.
pub fn sign(
    access_key: &str,
    secret: &[u8],
    method: &str,
    path: &str,
    query: &str,
    date: u64,
    body: &[u8],
) -> SignedHeaders {
    let body_sha = body_sha256(body);
    let sts = string_to_sign(method, path, query, date, &body_sha);
    let sig = hex::encode(hmac_hex(secret, &sts).finalize().into_bytes());
    SignedHeaders {
        authorization: format!("{SCHEME} Credential={access_key}, Signature={sig}"),
        date: date.to_string(),
        content_sha256: body_sha,
    }
}

/// A parsed `Authorization` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    /// The access key named.
    pub access_key: String,
    /// The hex signature.
    pub signature: String,
}

/// Parses an `Authorization` header value.
pub fn parse_authorization(value: Option<&str>) -> Result<Credential, AuthError> {
    let value = value.ok_or(AuthError::Missing)?;
    let rest = value
        .strip_prefix(SCHEME)
        .and_then(|r| r.strip_prefix(' '))
        .ok_or(AuthError::Malformed("expected BLOB-HMAC-SHA256 scheme"))?;
    let mut access_key = None;
    let mut signature = None;
    for part in rest.split(',').map(str::trim) {
        if let Some(v) = part.strip_prefix("Credential=") {
            access_key = Some(v.to_string());
        } else if let Some(v) = part.strip_prefix("Signature=") {
            signature = Some(v.to_string());
        }
    }
    match (access_key, signature) {
        (Some(access_key), Some(signature)) if !access_key.is_empty() => Ok(Credential {
            access_key,
            signature,
        }),
        _ => Err(AuthError::Malformed("expected Credential= and Signature=")),
    }
}

/// Everything the server saw of a request, for verification.
#[derive(Debug, Clone, Copy)]
pub struct RequestParts<'a> {
    /// HTTP method.
    pub method: &'a str,
    /// Path as sent (still percent-encoded).
    pub path: &'a str,
    /// Raw query string, or empty.
    pub query: &'a str,
    /// `x-blob-date` header value.
    pub date: Option<&'a str>,
    /// `x-blob-content-sha256` header value.
    pub content_sha256: Option<&'a str>,
    /// The body received.
    pub body: &'a [u8],
}

/// Verifies a request against the secret of the access key it names:
/// [`verify_signature`], then [`check_body`].
pub fn verify(
    cred: &Credential,
    secret: &[u8],
    req: &RequestParts<'_>,
    now: u64,
) -> Result<(), AuthError> {
    verify_signature(cred, secret, req, now)?;
    check_body(req.content_sha256, req.body)
}

/// Verifies everything a signature covers that arrives before the body:
/// method, path, query, date (within [`MAX_SKEW_SECS`]) and the body's
/// SHA-256 *as declared* in `x-blob-content-sha256`. `req.body` is not
/// looked at, so a server can refuse a request before reading a byte of
/// its body, and check the body with [`check_body`] once read.
pub fn verify_signature(
    cred: &Credential,
    secret: &[u8],
    req: &RequestParts<'_>,
    now: u64,
) -> Result<(), AuthError> {
    let date: u64 = req
        .date
        .ok_or(AuthError::Malformed("missing x-blob-date"))?
        .parse()
        .map_err(|_| AuthError::Malformed("x-blob-date is not Unix seconds"))?;
    if date.abs_diff(now) > MAX_SKEW_SECS {
        return Err(AuthError::Skewed { date, now });
    }
    let declared = req
        .content_sha256
        .ok_or(AuthError::Malformed("missing x-blob-content-sha256"))?;
    let sts = string_to_sign(
        req.method,
        req.path,
        req.query,
        date,
        &declared.to_ascii_lowercase(),
    );
    let sig = hex::decode(&cred.signature).map_err(|_| AuthError::BadSignature)?;
    hmac_hex(secret, &sts)
        .verify_slice(&sig)
        .map_err(|_| AuthError::BadSignature)
}

/// Checks a body against the SHA-256 its signed request declared.
pub fn check_body(declared: Option<&str>, body: &[u8]) -> Result<(), AuthError> {
    let declared = declared.ok_or(AuthError::Malformed("missing x-blob-content-sha256"))?;
    if declared.eq_ignore_ascii_case(&body_sha256(body)) {
        Ok(())
    } else {
        Err(AuthError::BodyMismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts<'a>(h: &'a SignedHeaders, body: &'a [u8]) -> RequestParts<'a> {
        RequestParts {
            method: "POST",
            path: "/v1/buckets",
            query: "",
            date: Some(&h.date),
            content_sha256: Some(&h.content_sha256),
            body,
        }
    }

    #[test]
    fn signed_request_verifies_and_tampering_fails() {
        let h = sign("AK", b"secret", "post", "/v1/buckets", "", 100, b"{}");
        let cred = parse_authorization(Some(&h.authorization)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(cred.access_key, "AK");
        assert_eq!(verify(&cred, b"secret", &parts(&h, b"{}"), 100), Ok(()));
        assert_eq!(
            verify(&cred, b"wrong", &parts(&h, b"{}"), 100),
            Err(AuthError::BadSignature)
        );
        assert_eq!(
            verify(&cred, b"secret", &parts(&h, b"{ }"), 100),
            Err(AuthError::BodyMismatch)
        );
        let mut p = parts(&h, b"{}");
        p.path = "/v1/buckets/x";
        assert_eq!(
            verify(&cred, b"secret", &p, 100),
            Err(AuthError::BadSignature)
        );
        assert!(matches!(
            verify(&cred, b"secret", &parts(&h, b"{}"), 100 + MAX_SKEW_SECS + 1),
            Err(AuthError::Skewed { .. })
        ));
    }

    #[test]
    fn the_signature_is_checked_before_the_body_is_read() {
        let h = sign("AK", b"secret", "post", "/v1/buckets", "", 100, b"{}");
        let cred = parse_authorization(Some(&h.authorization)).unwrap_or_else(|e| panic!("{e}"));
        // The headers alone verify; the body is not needed for that.
        assert_eq!(
            verify_signature(&cred, b"secret", &parts(&h, b"not read"), 100),
            Ok(())
        );
        assert_eq!(
            verify_signature(&cred, b"wrong", &parts(&h, b""), 100),
            Err(AuthError::BadSignature)
        );
        // A declared hash other than the signed one fails the signature.
        let other = body_sha256(b"[]");
        let mut p = parts(&h, b"");
        p.content_sha256 = Some(&other);
        assert_eq!(
            verify_signature(&cred, b"secret", &p, 100),
            Err(AuthError::BadSignature)
        );
        assert_eq!(check_body(Some(&h.content_sha256), b"{}"), Ok(()));
        assert_eq!(
            check_body(Some(&h.content_sha256), b"{ }"),
            Err(AuthError::BodyMismatch)
        );
    }

    #[test]
    fn bad_headers_are_refused() {
        assert_eq!(parse_authorization(None), Err(AuthError::Missing));
        assert!(matches!(
            parse_authorization(Some("Bearer x")),
            Err(AuthError::Malformed(_))
        ));
        assert!(matches!(
            parse_authorization(Some("BLOB-HMAC-SHA256 Credential=")),
            Err(AuthError::Malformed(_))
        ));
        assert_eq!(AuthError::Missing.status(), 401);
        assert_eq!(AuthError::BadSignature.status(), 403);
    }
}
