//! Access keys: the gateway verifies SigV4 with the user's secret, which it
//! asks the namenode for (`GET /v1/service/keys/{access_key}`, signed with
//! the cluster credentials, as datanodes sign), keeps for a short while,
//! and then acts as that user through a client holding the user's secret.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use blob_client::{Client, ClientConfig};
use blob_common::auth;
use blob_common::presign::Keyring;
use blob_common::proto::keys::AccessKeyInfo;
use s3s::auth::{S3Auth, SecretKey};
use s3s::{S3Error, S3ErrorCode, S3Result};

use crate::error::s3;
use crate::Config;

/// Longest access key looked up (anything longer cannot exist).
const MAX_ACCESS_KEY: usize = 128;

struct Entry {
    secret: String,
    client: Client,
    fetched: Instant,
}

/// The key cache, shared by the auth layer and the handlers.
#[derive(Clone)]
pub(crate) struct Keys {
    inner: Arc<Inner>,
}

struct Inner {
    cfg: Arc<Config>,
    /// Key lookups, signed with the cluster key.
    namenode: blob_rpc::Namenode,
    ttl: Duration,
    cache: Mutex<HashMap<String, Arc<Entry>>>,
}

impl Keys {
    pub(crate) fn new(cfg: Arc<Config>, keyring: Keyring) -> Result<Self, String> {
        let namenode = blob_rpc::Namenode::builder(
            &cfg.namenode,
            blob_rpc::Credentials::service(&keyring, blob_common::auth::ServiceRole::Gateway),
        )
        .timeout(Duration::from_secs(10))
        .ca_file(cfg.tls.ca_file.as_deref())
        .build()
        .map_err(|e| e.to_string())?;
        Ok(Self {
            inner: Arc::new(Inner {
                ttl: Duration::from_secs(cfg.key_cache_secs),
                cfg,
                namenode,
                cache: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// The handle on the namenode holding the cluster credentials.
    pub(crate) fn namenode(&self) -> &blob_rpc::Namenode {
        &self.inner.namenode
    }

    fn cached(&self, access_key: &str) -> Option<Arc<Entry>> {
        let cache = self.inner.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache
            .get(access_key)
            .filter(|e| e.fetched.elapsed() < self.inner.ttl)
            .cloned()
    }

    async fn entry(&self, access_key: &str) -> S3Result<Arc<Entry>> {
        if let Some(e) = self.cached(access_key) {
            return Ok(e);
        }
        if access_key.is_empty()
            || access_key.len() > MAX_ACCESS_KEY
            || access_key.starts_with(auth::CLUSTER_KEY_PREFIX)
        {
            return Err(s3(
                S3ErrorCode::InvalidAccessKeyId,
                "The AWS Access Key Id you provided does not exist in our records.",
            ));
        }
        let info = self.fetch(access_key).await?;
        let cfg = ClientConfig::new(
            self.inner.cfg.namenode.clone(),
            &info.access_key,
            &info.secret_key,
        )
        .with_zone(self.inner.cfg.zone.clone())
        .with_direct(self.inner.cfg.no_edge)
        .with_ca_file(self.inner.cfg.tls.ca_file.clone());
        let client = Client::new(cfg).map_err(|e| {
            tracing::warn!(error = %e, "building a client");
            S3Error::new(S3ErrorCode::InternalError)
        })?;
        let entry = Arc::new(Entry {
            secret: info.secret_key,
            client,
            fetched: Instant::now(),
        });
        let mut cache = self.inner.cache.lock().unwrap_or_else(|p| p.into_inner());
        // Bound the cache: drop expired entries when it grows.
        if cache.len() > 10_000 {
            let ttl = self.inner.ttl;
            cache.retain(|_, e| e.fetched.elapsed() < ttl);
        }
        cache.insert(access_key.to_string(), entry.clone());
        Ok(entry)
    }

    async fn fetch(&self, access_key: &str) -> S3Result<AccessKeyInfo> {
        let answer = self
            .inner
            .namenode
            .get(&["service", "keys", access_key])
            .decode::<AccessKeyInfo>()
            .await;
        match answer {
            Ok(info) => Ok(info),
            Err(e) if matches!(e.status(), Some(403 | 404)) => Err(s3(
                S3ErrorCode::InvalidAccessKeyId,
                "The AWS Access Key Id you provided does not exist in our records.",
            )),
            Err(e @ blob_rpc::Error::Transport { .. }) => {
                tracing::warn!(error = %e, "namenode unreachable for a key lookup");
                Err(s3(
                    S3ErrorCode::ServiceUnavailable,
                    "the namenode is unreachable",
                ))
            }
            Err(e @ blob_rpc::Error::Protocol { .. }) => {
                tracing::warn!(error = %e, "bad key lookup answer");
                Err(S3Error::new(S3ErrorCode::InternalError))
            }
            Err(e) => {
                tracing::warn!(error = %e, "key lookup failed");
                Err(s3(S3ErrorCode::ServiceUnavailable, "key lookup failed"))
            }
        }
    }

    /// The client acting as `access_key` (looked up if not cached).
    pub(crate) async fn client(&self, access_key: &str) -> S3Result<Client> {
        Ok(self.entry(access_key).await?.client.clone())
    }
}

#[async_trait::async_trait]
impl S3Auth for Keys {
    async fn get_secret_key(&self, access_key: &str) -> S3Result<SecretKey> {
        Ok(SecretKey::from(
            self.entry(access_key).await?.secret.clone(),
        ))
    }
}
