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
