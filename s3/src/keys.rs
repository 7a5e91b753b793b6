//! Access keys, without their secrets: for each access key and SigV4
//! credential scope the gateway asks the namenode for a grant
//! (`GET /v1/service/keys/{access_key}`, signed with the gateway's own
//! service identity): the signing keys SigV4 derives for that day, region
//! and service, which verify signatures in that scope only, and a
//! short-lived session credential to act as the key on the namenode. The
//! user's secret never reaches the gateway. Grants are kept for
//! `key_cache_secs`, sessions replaced well before they end.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use blob_client::{Client, ClientConfig};
use blob_common::auth;
use blob_common::presign::Keyring;
use blob_common::proto::keys::{GatewayGrant, VerifyV2};
use s3s::auth::{S3Auth, SecretKey};
use s3s::{S3Error, S3ErrorCode, S3Result};

use crate::error::s3;
use crate::Config;

/// Longest access key looked up (anything longer cannot exist).
const MAX_ACCESS_KEY: usize = 128;
/// A session this close to its end is replaced before it is used again.
const SESSION_MARGIN_SECS: u64 = 300;
/// Entries kept before expired ones are dropped.
const MAX_ENTRIES: usize = 10_000;

/// (access key, date, region, service): what a set of signing keys is for.
type ScopeId = (String, String, String, String);

fn scope_id(access_key: &str, date: &str, region: &str, service: &str) -> ScopeId {
    (
        access_key.to_string(),
        date.to_string(),
        region.to_string(),
        service.to_string(),
    )
}

/// A grant fetched this recently is not asked for again when a signature
/// fails to match it: bounds what bad signatures cost the namenode.
const REFRESH_FLOOR: Duration = Duration::from_secs(1);

/// The signing keys of one access key in one credential scope.
struct Scoped {
    keys: Vec<[u8; 32]>,
    fetched: Instant,
}

/// The client acting as one access key, through its session.
struct Session {
    client: Client,
    expires: u64,
    fetched: Instant,
}

/// The key cache, shared by the auth layer and the handlers.
#[derive(Clone)]
pub(crate) struct Keys {
    inner: Arc<Inner>,
}

struct Inner {
    cfg: Arc<Config>,
    /// Grants, signed with the gateway's service identity.
    namenode: blob_rpc::Namenode,
    ttl: Duration,
    scoped: Mutex<HashMap<ScopeId, Arc<Scoped>>>,
    /// By access key.
    sessions: Mutex<HashMap<String, Arc<Session>>>,
    /// SigV2 signatures the namenode accepted, by hash of (key, string to
    /// sign, signature).
    verified_v2: Mutex<HashMap<[u8; 32], Instant>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Inserts into a cache, first dropping what `fresh` says is stale once it
/// has grown past [`MAX_ENTRIES`].
fn insert_bounded<K: std::hash::Hash + Eq, V>(
    cache: &Mutex<HashMap<K, V>>,
    key: K,
    value: V,
    fresh: impl Fn(&V) -> bool,
) {
    let mut cache = lock(cache);
    if cache.len() > MAX_ENTRIES {
        cache.retain(|_, v| fresh(v));
    }
    cache.insert(key, value);
}

/// Refuses, without asking the namenode, what cannot be a user's key.
fn check_access_key(access_key: &str) -> S3Result<()> {
    let impossible = access_key.is_empty()
        || access_key.len() > MAX_ACCESS_KEY
        || [
            auth::CLUSTER_KEY_PREFIX,
            auth::SERVICE_KEY_PREFIX,
            auth::SESSION_KEY_PREFIX,
        ]
        .iter()
        .any(|p| access_key.starts_with(p));
    if impossible {
        Err(no_such_key())
    } else {
        Ok(())
    }
}

/// An S3 error for what the namenode answered a key's grant or check.
fn lookup_answer<T>(answer: Result<T, blob_rpc::Error>) -> S3Result<T> {
    match answer {
        Ok(v) => Ok(v),
        Err(e) if matches!(e.status(), Some(403 | 404)) => Err(no_such_key()),
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

fn no_such_key() -> S3Error {
    s3(
        S3ErrorCode::InvalidAccessKeyId,
        "The AWS Access Key Id you provided does not exist in our records.",
    )
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
                scoped: Mutex::new(HashMap::new()),
                sessions: Mutex::new(HashMap::new()),
                verified_v2: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// The handle on the namenode holding the gateway's credentials.
    pub(crate) fn namenode(&self) -> &blob_rpc::Namenode {
        &self.inner.namenode
    }

    fn session_fresh(&self, s: &Session) -> bool {
        s.fetched.elapsed() < self.inner.ttl
            && s.expires > blob_common::now_secs() + SESSION_MARGIN_SECS
    }

    /// The kept session of `access_key`, while it is fresh.
    fn fresh_session(&self, access_key: &str) -> Option<Arc<Session>> {
        lock(&self.inner.sessions)
            .get(access_key)
            .filter(|s| self.session_fresh(s))
            .cloned()
    }

    /// The signing keys of `access_key` for one credential scope, asked
    /// for when not cached; the grant's session is kept too.
    async fn signing_keys(
        &self,
        access_key: &str,
        date: &str,
        region: &str,
        service: &str,
    ) -> S3Result<Arc<Scoped>> {
        let id = scope_id(access_key, date, region, service);
        let ttl = self.inner.ttl;
        if let Some(s) = lock(&self.inner.scoped)
            .get(&id)
            .filter(|s| s.fetched.elapsed() < ttl)
        {
            return Ok(s.clone());
        }
        let grant = self.fetch(access_key, date, region, service).await?;
        let keys = grant
            .signing_keys
            .iter()
            .map(|k| {
                hex::decode(k)
                    .ok()
                    .and_then(|b| <[u8; 32]>::try_from(b).ok())
            })
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| {
                tracing::warn!(access_key, "a grant's signing key is not 32 hex bytes");
                S3Error::new(S3ErrorCode::InternalError)
            })?;
        // The client (and its connections) is kept while its session is
        // fresh: a grant for another scope does not replace it.
        if self.fresh_session(access_key).is_none() {
            self.keep_session(&grant)?;
        }
        let scoped = Arc::new(Scoped {
            keys,
            fetched: Instant::now(),
        });
        insert_bounded(&self.inner.scoped, id, scoped.clone(), |s| {
            s.fetched.elapsed() < ttl
        });
        Ok(scoped)
    }

    /// Builds and keeps the client acting as the grant's key.
    fn keep_session(&self, grant: &GatewayGrant) -> S3Result<Arc<Session>> {
        let cfg = &self.inner.cfg;
        let client_cfg = ClientConfig::new(
            cfg.namenode.clone(),
            &grant.session_key,
            &grant.session_secret,
        )
        .with_zone(cfg.zone.clone())
        .with_direct(cfg.no_edge)
        .with_ca_file(cfg.tls.ca_file.clone());
        let client = Client::new(client_cfg).map_err(|e| {
            tracing::warn!(error = %e, "building a client");
            S3Error::new(S3ErrorCode::InternalError)
        })?;
        let session = Arc::new(Session {
            client,
            expires: grant.expires,
            fetched: Instant::now(),
        });
        insert_bounded(
            &self.inner.sessions,
            grant.access_key.clone(),
            session.clone(),
            |s| self.session_fresh(s),
        );
        Ok(session)
    }

    /// Has the namenode check a SigV2 signature.
    async fn check_v2(
        &self,
        access_key: &str,
        string_to_sign: &str,
        signature: &str,
    ) -> S3Result<()> {
        check_access_key(access_key)?;
        let answer = self
            .inner
            .namenode
            .post(&["service", "keys", access_key, "v2"])
            .body(&VerifyV2 {
                string_to_sign: string_to_sign.to_string(),
                signature: signature.to_string(),
            })
            .ok()
            .await;
        match answer {
            Err(e) if e.status() == Some(403) && e.code() == Some("SignatureDoesNotMatch") => {
                Err(S3Error::new(S3ErrorCode::SignatureDoesNotMatch))
            }
            other => lookup_answer(other),
        }
    }

    async fn fetch(
        &self,
        access_key: &str,
        date: &str,
        region: &str,
        service: &str,
    ) -> S3Result<GatewayGrant> {
        check_access_key(access_key)?;
        if !auth::sigv4_date_is_usable(date, blob_common::now_secs()) {
            return Err(s3(
                S3ErrorCode::RequestTimeTooSkewed,
                "The difference between the request time and the server's time is too large.",
            ));
        }
        let answer = self
            .inner
            .namenode
            .get(&["service", "keys", access_key])
            .query(&[("date", date), ("region", region), ("service", service)])
            .decode::<GatewayGrant>()
            .await;
        lookup_answer(answer)
    }

    /// The client acting as `access_key`: its session, asked for again
    /// (today's scope in this gateway's region) when gone or near its end.
    pub(crate) async fn client(&self, access_key: &str) -> S3Result<Client> {
        if let Some(s) = self.fresh_session(access_key) {
            return Ok(s.client.clone());
        }
        let date = auth::sigv4_date(blob_common::now_secs());
        let grant = self
            .fetch(access_key, &date, &self.inner.cfg.region, "s3")
            .await?;
        Ok(self.keep_session(&grant)?.client.clone())
    }
}

#[async_trait::async_trait]
impl S3Auth for Keys {
    /// Never asked: SigV4 goes through [`S3Auth::get_signing_key`] and
    /// SigV2 through [`S3Auth::verify_v2`].
    async fn get_secret_key(&self, _access_key: &str) -> S3Result<SecretKey> {
        Err(S3Error::new(S3ErrorCode::InternalError))
    }

    /// After a signature matched none of the cached keys: the grant asked
    /// again (a secret rotated since it was fetched signs at once), unless
    /// it was fetched under a second ago or its keys are unchanged.
    async fn refresh_signing_key(
        &self,
        access_key: &str,
        date: &str,
        region: &str,
        service: &str,
    ) -> S3Result<Option<SecretKey>> {
        let id = scope_id(access_key, date, region, service);
        let cached = lock(&self.inner.scoped).get(&id).cloned();
        if cached
            .as_ref()
            .is_some_and(|s| s.fetched.elapsed() < REFRESH_FLOOR)
        {
            return Ok(None);
        }
        lock(&self.inner.scoped).remove(&id);
        let fresh = self.signing_keys(access_key, date, region, service).await?;
        if cached.is_some_and(|old| old.keys == fresh.keys) {
            return Ok(None);
        }
        Ok(Some(SecretKey::signing_keys(
            date,
            region,
            service,
            fresh.keys.clone(),
        )))
    }

    /// SigV2 signs with the secret itself, which this gateway never holds:
    /// the namenode checks it. A signature it accepted is remembered for
    /// the key cache's lifetime (a presigned URL fetched again and again
    /// costs one check).
    async fn verify_v2(
        &self,
        access_key: &str,
        string_to_sign: &str,
        signature: &str,
    ) -> S3Result<SecretKey> {
        use sha2::Digest as _;
        let id: [u8; 32] = sha2::Sha256::new()
            .chain_update(access_key)
            .chain_update([0])
            .chain_update(string_to_sign)
            .chain_update([0])
            .chain_update(signature)
            .finalize()
            .into();
        let ttl = self.inner.ttl;
        let known = lock(&self.inner.verified_v2)
            .get(&id)
            .is_some_and(|at| at.elapsed() < ttl);
        if !known {
            self.check_v2(access_key, string_to_sign, signature).await?;
            insert_bounded(&self.inner.verified_v2, id, Instant::now(), |at| {
                at.elapsed() < ttl
            });
        }
        Ok(SecretKey::from(""))
    }

    async fn get_signing_key(
        &self,
        access_key: &str,
        date: &str,
        region: &str,
        service: &str,
    ) -> S3Result<SecretKey> {
        let scoped = self.signing_keys(access_key, date, region, service).await?;
        Ok(SecretKey::signing_keys(
            date,
            region,
            service,
            scoped.keys.clone(),
        ))
    }
}
