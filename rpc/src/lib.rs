//! The one client of the namenode's signed JSON API (`/v1/…`).
//!
//! The client library, the datanodes (heartbeats, chunk reports), the edge
//! caches (warm-up, locations, bad replicas) and the S3 gateway (access
//! key lookups) all talk to the namenode through [`Namenode`], so signing,
//! request ids, timeouts, retries and the reading of error answers are
//! written once:
//!
//! - every call is signed with [`blob_common::auth::sign`] over exactly the
//!   path, query and body that go on the wire, with the caller's
//!   [`Credentials`] (a user's key, or the cluster key of a service);
//! - every call carries an `x-request-id` (the caller's operation id, or a
//!   fresh one) so one operation can be followed through the logs;
//! - a failed call is retried only when that cannot repeat a change
//!   ([`retry`]);
//! - every failure is one [`Error`], whose variants say what to do next.
//!
//! This is also where the namenode's address is resolved for each call
//! ([`Namenode::url`]): the one place that learns about other namenodes
//! when there is more than one.
//!
//! ```no_run
//! # async fn f() -> Result<(), blob_rpc::Error> {
//! use blob_rpc::{Credentials, Namenode};
//! use blob_common::proto::namenode::ListBuckets;
//! let nn = Namenode::new("http://127.0.0.1:9870", Credentials::new("AK", "secret"))?;
//! let buckets: ListBuckets = nn.get(&["buckets"]).decode().await?;
//! # Ok(()) }
//! ```

use std::sync::Arc;
use std::time::Duration;

use blob_common::auth;
use blob_common::presign::Keyring;
use blob_common::{new_request_id, REQUEST_ID};
use bytes::Bytes;
use reqwest::Url;
use serde::de::DeserializeOwned;
use serde::Serialize;

mod error;
pub mod retry;
pub mod tls;

pub use error::{chain, from_response, redact_str, redact_url, Error};
pub use reqwest::Method;
pub use retry::RetryPolicy;

/// Default time a call may take, answer included.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Who signs: an access key and its secret.
#[derive(Clone)]
pub struct Credentials {
    access_key: String,
    secret: Vec<u8>,
}

impl Credentials {
    /// A user's (or admin's) key.
    pub fn new(access_key: impl Into<String>, secret: impl Into<Vec<u8>>) -> Self {
        Credentials {
            access_key: access_key.into(),
            secret: secret.into(),
        }
    }

    /// The identity a service of `role` signs with.
    pub fn service(keyring: &Keyring, role: blob_common::auth::ServiceRole) -> Self {
        let (access_key, secret) = keyring.service_credentials(role);
        Credentials::new(access_key, secret)
    }

    /// The access key (never the secret).
    pub fn access_key(&self) -> &str {
        &self.access_key
    }
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key", &self.access_key)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// A handle on the namenode; cheap to clone, shared by every task.
#[derive(Clone, Debug)]
pub struct Namenode {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    base: Url,
    creds: Credentials,
    http: reqwest::Client,
    timeout: Duration,
    retry: RetryPolicy,
}

/// Options of a [`Namenode`] handle beyond its address and credentials.
#[derive(Debug)]
pub struct Builder {
    base: String,
    creds: Credentials,
    http: Option<reqwest::Client>,
    ca_file: Option<std::path::PathBuf>,
    timeout: Duration,
    retry: RetryPolicy,
}

impl Builder {
    /// The HTTP client to send with (to share its connection pool with
    /// other traffic). By default a client of its own.
    pub fn http(mut self, http: reqwest::Client) -> Self {
        self.http = Some(http);
        self
    }

    /// The CA an `https` namenode is verified against, for the client this
    /// handle makes itself (one given with [`Builder::http`] brings its
    /// own).
    pub fn ca_file(mut self, ca_file: Option<&std::path::Path>) -> Self {
        self.ca_file = ca_file.map(std::path::Path::to_path_buf);
        self
    }

    /// How long one attempt of a call may take ([`DEFAULT_TIMEOUT`]).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// When calls are retried ([`RetryPolicy::default`]).
    pub fn retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// The handle; fails when the address is not an `http(s)` URL.
    pub fn build(self) -> Result<Namenode, Error> {
        let invalid = |detail: String| Error::InvalidUrl {
            url: self.base.clone(),
            detail,
        };
        let base = Url::parse(&self.base).map_err(|e| invalid(e.to_string()))?;
        if !matches!(base.scheme(), "http" | "https") || base.cannot_be_a_base() {
            return Err(invalid("not an http(s) URL".into()));
        }
        let http = match self.http {
            Some(http) => http,
            None => tls::trust(reqwest::Client::builder(), self.ca_file.as_deref())
                .map_err(|e| invalid(e.to_string()))?
                .build()
                .map_err(|e| invalid(format!("building the HTTP client: {e}")))?,
        };
        Ok(Namenode {
            inner: Arc::new(Inner {
                base,
                creds: self.creds,
                http,
                timeout: self.timeout,
                retry: self.retry,
            }),
        })
    }
}

impl Namenode {
    /// A handle with default options.
    pub fn new(base: &str, creds: Credentials) -> Result<Self, Error> {
        Self::builder(base, creds).build()
    }

    /// A handle with options.
    pub fn builder(base: &str, creds: Credentials) -> Builder {
        Builder {
            base: base.to_string(),
            creds,
            http: None,
            ca_file: None,
            timeout: DEFAULT_TIMEOUT,
            retry: RetryPolicy::default(),
        }
    }

    /// The access key calls are signed with.
    pub fn access_key(&self) -> &str {
        self.inner.creds.access_key()
    }

    /// The namenode URL for `/v1/<segments…>` with `query` pairs (each
    /// percent-encoded; no `?` at all when there are none).
    pub fn url(&self, segments: &[&str], query: &[(&str, &str)]) -> Url {
        let mut url = self.inner.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().push("v1").extend(segments);
        }
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        url
    }

    /// A call of `method` on `/v1/<segments…>`, to be completed and sent.
    pub fn call(&self, method: Method, segments: &[&str]) -> Call<'_> {
        Call {
            nn: self,
            method,
            url: self.url(segments, &[]),
            body: Ok(Bytes::new()),
            request_id: None,
            timeout: None,
            retry: None,
        }
    }

    /// A `GET` on `/v1/<segments…>`.
    pub fn get(&self, segments: &[&str]) -> Call<'_> {
        self.call(Method::GET, segments)
    }

    /// A `POST` on `/v1/<segments…>`.
    pub fn post(&self, segments: &[&str]) -> Call<'_> {
        self.call(Method::POST, segments)
    }
}

/// One call being put together: add a query, a JSON body, a request id,
/// then send it with [`Call::decode`], [`Call::ok`] or [`Call::bytes`].
#[must_use = "a call does nothing until it is sent"]
pub struct Call<'a> {
    nn: &'a Namenode,
    method: Method,
    url: Url,
    /// The encoded JSON body (shared, not copied, by retries), or why it
    /// could not be encoded.
    body: Result<Bytes, String>,
    request_id: Option<String>,
    timeout: Option<Duration>,
    retry: Option<RetryPolicy>,
}

impl Call<'_> {
    /// Adds query pairs (percent-encoded).
    pub fn query(mut self, pairs: &[(&str, &str)]) -> Self {
        if !pairs.is_empty() {
            self.url.query_pairs_mut().extend_pairs(pairs);
        }
        self
    }

    /// Sends `body` as JSON.
    pub fn body(mut self, body: &(impl Serialize + ?Sized)) -> Self {
        self.body = serde_json::to_vec(body)
            .map(Bytes::from)
            .map_err(|e| format!("encoding the request: {e}"));
        self
    }

    /// The `x-request-id` to send (by default a fresh one).
    pub fn request_id(mut self, id: impl Into<String>) -> Self {
        self.request_id = Some(id.into());
        self
    }

    /// How long each attempt may take (the handle's timeout by default).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// When this call is retried (the handle's policy by default).
    pub fn retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = Some(retry);
        self
    }

    /// The URL this call goes to.
    pub fn url(&self) -> &Url {
        &self.url
    }

    /// Sends the call and decodes its JSON answer.
    pub async fn decode<T: DeserializeOwned>(self) -> Result<T, Error> {
        let url = self.url.clone();
        let bytes = self.bytes().await?;
        serde_json::from_slice(&bytes).map_err(|e| Error::protocol(&url, format!("bad JSON: {e}")))
    }

    /// Sends the call; its answer's body is of no interest.
    pub async fn ok(self) -> Result<(), Error> {
        self.bytes().await.map(drop)
    }

    /// Sends the call and returns its answer's body, retrying transient
    /// failures as its [`RetryPolicy`] allows.
    pub async fn bytes(self) -> Result<Bytes, Error> {
        let body = match &self.body {
            Ok(b) => b.clone(),
            Err(detail) => return Err(Error::protocol(&self.url, detail.clone())),
        };
        let policy = self.retry.unwrap_or(self.nn.inner.retry);
        let request_id = self.request_id.clone().unwrap_or_else(new_request_id);
        let mut attempt = 1;
        loop {
            match self.once(&body, &request_id).await {
                Ok(bytes) => return Ok(bytes),
                Err((err, retry_after))
                    if attempt < policy.attempts && retry::is_transient(&self.method, &err) =>
                {
                    let wait = policy.delay(attempt, retry_after);
                    tracing::debug!(
                        method = %self.method,
                        url = %redact_url(&self.url),
                        %request_id,
                        attempt,
                        wait_ms = wait.as_millis() as u64,
                        error = %err,
                        "namenode call failed; retrying"
                    );
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
                Err((err, _)) => return Err(err),
            }
        }
    }

    /// One attempt; on failure also the wait the server asked for.
    async fn once(
        &self,
        body: &Bytes,
        request_id: &str,
    ) -> Result<Bytes, (Error, Option<Duration>)> {
        let inner = &self.nn.inner;
        let url = &self.url;
        let signed = auth::sign(
            &inner.creds.access_key,
            &inner.creds.secret,
            self.method.as_str(),
            url.path(),
            url.query().unwrap_or(""),
            blob_common::now_secs(),
            body,
        );
        let mut req = inner
            .http
            .request(self.method.clone(), url.clone())
            .timeout(self.timeout.unwrap_or(inner.timeout))
            .header(reqwest::header::AUTHORIZATION, signed.authorization)
            .header(auth::DATE_HEADER, signed.date)
            .header(auth::CONTENT_SHA_HEADER, signed.content_sha256)
            .header(REQUEST_ID, request_id);
        if !body.is_empty() {
            req = req
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.clone());
        }
        tracing::debug!(method = %self.method, url = %redact_url(url), %request_id, "namenode call");
        let resp = req
            .send()
            .await
            .map_err(|e| (Error::transport(url, e), None))?;
        if resp.status().is_success() {
            return resp
                .bytes()
                .await
                .map_err(|e| (Error::transport(url, e), None));
        }
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        Err((from_response(resp, url, request_id).await, retry_after))
    }
}

#[cfg(test)]
mod tests;
