//! The namenode's access-key lookup, for services that verify a user's
//! own signature scheme (the S3 gateway checks SigV4 with the secret).
//!
//! Route: `GET /v1/admin/keys/{access_key}` → [`AccessKeyInfo`] (cluster
//! credentials only; 404 for an unknown key).

use serde::{Deserialize, Serialize};

/// Answer to `GET /v1/admin/keys/{access_key}`.
#[derive(Clone, Serialize, Deserialize)]
pub struct AccessKeyInfo {
    /// The access key.
    pub access_key: String,
    /// Its secret.
    pub secret_key: String,
    /// Whether it is an admin key.
    pub admin: bool,
}

impl std::fmt::Debug for AccessKeyInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessKeyInfo")
            .field("access_key", &self.access_key)
            .field("admin", &self.admin)
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
