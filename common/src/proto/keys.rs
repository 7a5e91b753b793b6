//! Access keys and who may do what to a bucket.
//!
//! Routes (admin keys only):
//! - `POST /v1/admin/keys` [`CreateKey`] → [`KeyCreated`] (the only answer
//!   holding the secret); `GET /v1/admin/keys` → [`ListKeys`];
//!   `GET /v1/admin/keys/{access_key}` → [`KeyDetails`];
//!   `DELETE /v1/admin/keys/{access_key}` → 204;
//!   `POST /v1/admin/keys/{access_key}/rotate` [`RotateKey`] → [`KeyCreated`]
//!   (a second secret) or, with `retire_old`, [`KeyDetails`];
//!   `PUT /v1/admin/keys/{access_key}/limits` [`KeyLimits`] → [`KeyDetails`]
//! - `GET /v1/admin/buckets/{bucket}` → [`BucketDetails`];
//!   `POST /v1/admin/buckets/{bucket}/grants` [`GrantChange`] → [`BucketDetails`];
//!   `PUT /v1/admin/buckets/{bucket}/quota` [`Quota`] → [`BucketDetails`]
//!
//! And for the S3 gateway, which verifies SigV4 itself but never holds a
//! user's secret: `GET /v1/service/keys/{access_key}?` [`GrantQuery`] →
//! [`GatewayGrant`] (the gateway's service credentials only; 404 for an
//! unknown key), and `POST /v1/service/keys/{access_key}/v2` [`VerifyV2`]
//! → 204 for the legacy signatures only the secret can check.

use serde::{Deserialize, Serialize};

/// Query of `GET /v1/service/keys/{access_key}`: the SigV4 credential
/// scope `date/region/service/aws4_request` the gateway verifies in.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GrantQuery {
    /// `YYYYMMDD` (UTC), from a week ago to tomorrow
    /// ([`crate::auth::sigv4_date_is_usable`]).
    pub date: String,
    /// The gateway's region.
    pub region: String,
    /// `s3` (or `sts`).
    pub service: String,
}

/// Body of `POST /v1/service/keys/{access_key}/v2`: a Signature Version 2
/// to check. SigV2 is an HMAC-SHA1 under the secret itself, so the
/// namenode, which holds it, checks it (204, or 403
/// `SignatureDoesNotMatch`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VerifyV2 {
    /// What the client signed.
    pub string_to_sign: String,
    /// The base64 signature it sent.
    pub signature: String,
}

/// What an S3 gateway gets for one access key, in place of its secret.
#[derive(Clone, Serialize, Deserialize)]
pub struct GatewayGrant {
    /// The access key.
    pub access_key: String,
    /// Whether it is an admin key.
    pub admin: bool,
    /// Hex SigV4 signing keys (`kSigning`) for the scope asked for, one per
    /// secret the key has, newest first: they verify signatures made in
    /// that scope and nothing else.
    pub signing_keys: Vec<String>,
    /// A short-lived credential that acts as this key on the namenode
    /// ([`crate::auth::SESSION_KEY_PREFIX`]).
    pub session_key: String,
    /// Its secret.
    pub session_secret: String,
    /// When the session ends, Unix seconds.
    pub expires: u64,
}

/// Body of `POST /v1/admin/keys`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CreateKey {
    /// A name for people: 1 to 64 printable characters.
    pub name: String,
    /// May administer the cluster (keys, grants, quotas, nodes).
    #[serde(default)]
    pub admin: bool,
}

/// A key with a secret in clear: the answer to creating or rotating one,
/// and the only time the secret is shown.
#[derive(Clone, Serialize, Deserialize)]
pub struct KeyCreated {
    /// Its name.
    pub name: String,
    /// The access key.
    pub access_key: String,
    /// The (new) secret.
    pub secret_key: String,
}

impl std::fmt::Debug for KeyCreated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyCreated")
            .field("name", &self.name)
            .field("access_key", &self.access_key)
            .finish_non_exhaustive()
    }
}

/// Per-key rate limits; `None` is unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyLimits {
    /// Requests per second (a burst of one second's worth).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rps: Option<u32>,
    /// Bytes per second moved to or from the datanodes (a burst of one
    /// second's worth, and at least one chunk).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bandwidth: Option<u64>,
}

/// One key as listed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeySummary {
    /// The access key.
    pub access_key: String,
    /// Its name.
    pub name: String,
    /// May administer the cluster.
    pub admin: bool,
    /// Creation time, ms since the epoch.
    pub created_ms: u64,
    /// Secrets it signs with: 2 between a rotation and `--retire-old`.
    pub secrets: u8,
    /// Rate limits.
    #[serde(default)]
    pub limits: KeyLimits,
}

/// Answer to `GET /v1/admin/keys`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ListKeys {
    /// Every key, by access key.
    pub keys: Vec<KeySummary>,
}

/// What a key may do to one bucket.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Permissions {
    /// List, stat and read files.
    #[serde(default)]
    pub read: bool,
    /// Write, overwrite, rename and delete files.
    #[serde(default)]
    pub write: bool,
    /// Everything, plus the bucket's settings and its deletion.
    #[serde(default)]
    pub owner: bool,
}

impl Permissions {
    /// Whether no permission is set.
    pub fn is_empty(&self) -> bool {
        !(self.read || self.write || self.owner)
    }
}

/// A key's permissions on one bucket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BucketGrant {
    /// The bucket.
    pub bucket: String,
    /// What the key may do there.
    #[serde(flatten)]
    pub allowed: Permissions,
}

/// Answer to `GET /v1/admin/keys/{access_key}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeyDetails {
    /// The key.
    #[serde(flatten)]
    pub key: KeySummary,
    /// The buckets it may use (admin keys may use every bucket).
    pub buckets: Vec<BucketGrant>,
}

/// Body of `POST /v1/admin/keys/{access_key}/rotate`.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct RotateKey {
    /// Instead of adding a secret, drop the older of the two.
    #[serde(default)]
    pub retire_old: bool,
}

/// A key's grant on a bucket, as listed in [`BucketDetails`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyGrant {
    /// The access key.
    pub access_key: String,
    /// What it may do.
    #[serde(flatten)]
    pub allowed: Permissions,
}

/// Body of `POST /v1/admin/buckets/{bucket}/grants`: `allow` adds the
/// permissions set, `deny` removes them (all of them when none is set).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GrantChange {
    /// The key.
    pub access_key: String,
    /// Add (`true`) or remove (`false`).
    pub allow: bool,
    /// The permissions added or removed.
    #[serde(flatten)]
    pub permissions: Permissions,
}

/// A bucket's limits; `None` is unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quota {
    /// Most bytes of live objects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_bytes: Option<u64>,
    /// Most live objects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_objects: Option<u64>,
}

/// What a bucket holds, as its quota counts it: every live object and
/// every archived version, each at its full size (shared chunks count for
/// each file that uses them).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Bytes.
    pub bytes: u64,
    /// Objects (and archived versions).
    pub objects: u64,
}

/// Answer to `GET /v1/admin/buckets/{bucket}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BucketDetails {
    /// The bucket.
    pub name: String,
    /// The key that made it (none for buckets made before owners were kept).
    pub owner: Option<String>,
    /// Creation time, ms since the epoch.
    pub created_ms: u64,
    /// Keys granted access besides the owner and admin keys.
    pub grants: Vec<KeyGrant>,
    /// What it holds.
    pub usage: Usage,
    /// Its limits.
    pub quota: Quota,
}

impl std::fmt::Debug for GatewayGrant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewayGrant")
            .field("access_key", &self.access_key)
            .field("admin", &self.admin)
            .field("expires", &self.expires)
            .finish_non_exhaustive()
    }
}

/// Answer to `POST /v1/sse/data-key` (any user): a fresh data key for one
/// SSE-S3 object, and the same key wrapped by the cluster's master key,
/// to be kept in the object's metadata ([`crate::seal::WRAPPED_KEY`]).
#[derive(Clone, Serialize, Deserialize)]
pub struct DataKeyGrant {
    /// The key, base64.
    pub key: String,
    /// The key wrapped by the master key ([`crate::seal::wrap_key`]).
    pub wrapped: String,
}

impl std::fmt::Debug for DataKeyGrant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataKeyGrant")
            .field("wrapped", &self.wrapped)
            .finish_non_exhaustive()
    }
}

/// Body of `POST /v1/sse/unwrap` (any user): a wrapped data key, answered
/// with a [`DataKeyGrant`] holding it in clear.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UnwrapKey {
    /// As kept in an object's metadata.
    pub wrapped: String,
}
