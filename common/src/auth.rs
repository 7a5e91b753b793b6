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

/// Access-key prefix of a gateway's session: a short-lived credential the
/// namenode gives an S3 gateway to act as one user without the user's
/// secret (`session.<expiry, Unix seconds>.<user's access key>`).
pub const SESSION_KEY_PREFIX: &str = "session.";

/// A session's access key.
pub fn session_access_key(user: &str, expires: u64) -> String {
    format!("{SESSION_KEY_PREFIX}{expires}.{user}")
}

/// The expiry and user of a session's access key, `None` when `access_key`
/// is not one.
pub fn parse_session_key(access_key: &str) -> Option<(u64, &str)> {
    let (expires, user) = access_key
        .strip_prefix(SESSION_KEY_PREFIX)?
        .split_once('.')?;
    Some((expires.parse().ok()?, user)).filter(|(_, u)| !u.is_empty())
}

/// A session's secret: HMAC-SHA256 of its access key under the namenode's
/// session root, so the namenode keeps no table of sessions.
pub fn session_secret(root: &[u8; 32], session_key: &str) -> String {
    hex::encode(hmac_hex(root, session_key).finalize().into_bytes())
}

/// The session root derived (HKDF-SHA256) from a key only the namenode
/// holds.
pub fn session_root(master: &[u8; 32]) -> [u8; 32] {
    let mut root = [0u8; 32];
    hkdf::Hkdf::<Sha256>::new(None, master)
        .expand(b"blobstore gateway sessions v1", &mut root)
        .expect("32 bytes is a valid HKDF-SHA256 length");
    root
}

/// The SigV4 signing key (`kSigning`) of `secret` for the credential scope
/// `date/region/service/aws4_request`: what an S3 gateway verifies
/// signatures with, so that it never holds the secret itself.
pub fn sigv4_signing_key(secret: &str, date: &str, region: &str, service: &str) -> [u8; 32] {
    let step =
        |key: &[u8], msg: &str| -> [u8; 32] { hmac_hex(key, msg).finalize().into_bytes().into() };
    let k_date = step(format!("AWS4{secret}").as_bytes(), date);
    let k_region = step(&k_date, region);
    let k_service = step(&k_region, service);
    step(&k_service, "aws4_request")
}

/// The `YYYYMMDD` (UTC) of a SigV4 credential scope made at `now`, Unix
/// seconds.
pub fn sigv4_date(now: u64) -> String {
    let format = time::macros::format_description!("[year][month][day]");
    i64::try_from(now)
        .ok()
        .and_then(|t| time::OffsetDateTime::from_unix_timestamp(t).ok())
        .and_then(|d| d.format(&format).ok())
        .unwrap_or_default()
}

/// Longest a SigV4 presigned URL lives (`X-Amz-Expires`), seconds.
pub const SIGV4_MAX_EXPIRES_SECS: u64 = 7 * 86_400;

/// Whether a SigV4 credential scope's date may still sign a request at
/// `now`: from a day ahead (clock skew across midnight) back to the
/// longest-lived presigned URL's first day. Signing keys are handed out
/// for such dates only.
pub fn sigv4_date_is_usable(date: &str, now: u64) -> bool {
    !date.is_empty()
        && (0..=SIGV4_MAX_EXPIRES_SECS / 86_400 + 2)
            .map(|days| (now + 86_400).saturating_sub(days * 86_400))
            .any(|t| sigv4_date(t) == date)
}

/// Whether `signature` (base64) is the SigV2 signature, HMAC-SHA1 under
/// `secret`, of `string_to_sign`; compared in constant time.
pub fn sigv2_signature_matches(secret: &str, string_to_sign: &str, signature: &str) -> bool {
    use base64::Engine as _;
    let Ok(sig) = base64::engine::general_purpose::STANDARD.decode(signature) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<sha1::Sha1>::new_from_slice(secret.as_bytes()) else {
        return false;
    };
    mac.update(string_to_sign.as_bytes());
    mac.verify_slice(&sig).is_ok()
}

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
    /// A gateway session past its expiry (HTTP 403).
    #[error("session credential expired")]
    SessionExpired,
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
    fn sigv4_signing_key_matches_the_aws_example() {
        // AWS's published example: "Deriving the signing key" (SigV4).
        let key = sigv4_signing_key(
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            "20120215",
            "us-east-1",
            "iam",
        );
        assert_eq!(
            hex::encode(key),
            "f4780e2d9f65fa895f9c67b32ce1baf0b0d8a43505a000a1a9e090d414db404d"
        );
    }

    #[test]
    fn signing_keys_are_for_dates_a_request_may_carry() {
        let now = 1_700_000_000; // 2023-11-14 22:13:20 UTC
        assert!(sigv4_date_is_usable("20231114", now));
        assert!(sigv4_date_is_usable("20231115", now));
        // A week-long presigned URL made eight calendar days ago (near
        // midnight) is still live.
        assert!(sigv4_date_is_usable("20231106", now));
        assert!(!sigv4_date_is_usable("20231105", now));
        assert!(!sigv4_date_is_usable("20231116", now));
        assert!(!sigv4_date_is_usable("2023111", now));
        assert!(!sigv4_date_is_usable("", now));
    }

    #[test]
    fn sigv2_signatures_match_the_aws_example() {
        // AWS's published SigV2 example (GET /photos/puppy.jpg).
        let sts = "GET\n\n\nTue, 27 Mar 2007 19:36:42 +0000\n/awsexamplebucket1/photos/puppy.jpg";
        let secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
        assert!(sigv2_signature_matches(
            secret,
            sts,
            "qgk2+6Sv9/oM7G3qLEjTH1a1l1g="
        ));
        assert!(!sigv2_signature_matches(
            "other",
            sts,
            "qgk2+6Sv9/oM7G3qLEjTH1a1l1g="
        ));
        assert!(!sigv2_signature_matches(secret, sts, "not base64!"));
    }

    #[test]
    fn session_keys_name_their_user_and_expiry() {
        let ak = session_access_key("BK.odd.key", 1_700_000_000);
        assert_eq!(parse_session_key(&ak), Some((1_700_000_000, "BK.odd.key")));
        assert_eq!(parse_session_key("session.12."), None);
        assert_eq!(parse_session_key("session.x.BK"), None);
        assert_eq!(parse_session_key("service.s3"), None);
        let root = session_root(&[7; 32]);
        assert_ne!(
            session_secret(&root, &ak),
            session_secret(&root, "session.1.BK")
        );
        assert_ne!(session_root(&[8; 32]), root);
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
