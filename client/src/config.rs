//! Client configuration: where the namenode is, the credentials to sign
//! with, the reader's zone, and timeouts. Built in code; reading it from
//! files, the environment or flags is the calling program's business
//! (`blobctl` does it in its own `config` module).

use std::path::PathBuf;
use std::time::Duration;

use crate::error::Error;

/// Smallest chunk size an upload may use.
pub const MIN_CHUNK_SIZE: u64 = 64 * 1024;
/// Largest chunk size an upload may use.
pub const MAX_CHUNK_SIZE: u64 = 256 * 1024 * 1024;
/// Default chunk size of an upload.
pub const DEFAULT_CHUNK_SIZE: u64 = 8 * 1024 * 1024;
/// Default number of chunks in flight.
pub const DEFAULT_PARALLEL: usize = 8;

/// How to reach and authenticate to a cluster.
#[derive(Clone)]
pub struct ClientConfig {
    /// Base URL of the namenode, e.g. `http://127.0.0.1:9870` (or
    /// `https://…`, verified against [`ClientConfig::ca_file`]).
    pub endpoint: String,
    /// Access key id the requests are signed for.
    pub access_key: String,
    /// Secret of the access key. Never sent, logged or displayed.
    pub secret_key: String,
    /// Time allowed to open a TCP connection.
    pub connect_timeout: Duration,
    /// Time allowed for a whole metadata call to the namenode, retries
    /// included; past it the call fails with
    /// [`Error::Timeout`](crate::Error::Timeout) and is not retried.
    pub request_timeout: Duration,
    /// Time allowed between two reads of a chunk transfer (a silent
    /// datanode is given up on after this long, however big the chunk).
    pub data_idle_timeout: Duration,
    /// The reader's zone: the namenode points reads at this zone's edge
    /// cache (or the nearest one) when edges are configured.
    pub zone: Option<String>,
    /// Read from the datanodes only, never through an edge cache.
    pub direct: bool,
    /// Time allowed to connect to an edge cache before reading from the
    /// datanodes instead.
    pub edge_connect_timeout: Duration,
    /// After an edge could not be reached, reads go straight to the
    /// datanodes for this long.
    pub edge_retry_after: Duration,
    /// PEM CA certificate(s) that `https` namenodes, datanodes and edges
    /// are verified against. No other CA is trusted: without it, `https`
    /// URLs are refused.
    pub ca_file: Option<PathBuf>,
}

impl ClientConfig {
    /// A configuration with default timeouts.
    pub fn new(
        endpoint: impl Into<String>,
        access_key: impl Into<String>,
        secret_key: impl Into<String>,
    ) -> Self {
        Self {
            endpoint: endpoint.into(),
            access_key: access_key.into(),
            secret_key: secret_key.into(),
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(60),
            data_idle_timeout: Duration::from_secs(120),
            zone: None,
            direct: false,
            edge_connect_timeout: Duration::from_secs(1),
            edge_retry_after: Duration::from_secs(10),
            ca_file: None,
        }
    }

    /// The same configuration trusting the CA in `ca_file`.
    pub fn with_ca_file(mut self, ca_file: Option<PathBuf>) -> Self {
        self.ca_file = ca_file;
        self
    }

    /// The same configuration for a reader in `zone`.
    pub fn with_zone(mut self, zone: Option<String>) -> Self {
        self.zone = zone.filter(|z| !z.trim().is_empty());
        self
    }

    /// The same configuration with every call bounded by `timeout`: a
    /// namenode call in all, a datanode transfer between two reads, and a
    /// connection at most `timeout` (and never more than the default
    /// connect timeout).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = self.connect_timeout.min(timeout);
        self.request_timeout = timeout;
        self.data_idle_timeout = timeout;
        self
    }

    /// The same configuration reading from the datanodes only (`true`),
    /// never through an edge cache.
    pub fn with_direct(mut self, direct: bool) -> Self {
        self.direct = direct;
        self
    }

    /// Checks the fields: an `http`/`https` endpoint with a host, and
    /// non-empty credentials.
    pub fn validate(&self) -> Result<reqwest::Url, Error> {
        let url = reqwest::Url::parse(&self.endpoint)
            .map_err(|e| Error::Config(format!("endpoint {:?}: {e}", self.endpoint)))?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(Error::Config(format!(
                "endpoint {:?}: expected http://host:port",
                self.endpoint
            )));
        }
        if url.query().is_some() {
            return Err(Error::Config(format!(
                "endpoint {:?}: must not have a query string",
                self.endpoint
            )));
        }
        if self.access_key.is_empty() {
            return Err(Error::Config("access key is empty".into()));
        }
        if self.secret_key.is_empty() {
            return Err(Error::Config("secret key is empty".into()));
        }
        Ok(url)
    }
}

impl std::fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientConfig")
            .field("endpoint", &self.endpoint)
            .field("access_key", &self.access_key)
            .field("secret_key", &"<redacted>")
            .field("connect_timeout", &self.connect_timeout)
            .field("request_timeout", &self.request_timeout)
            .field("data_idle_timeout", &self.data_idle_timeout)
            .field("zone", &self.zone)
            .field("direct", &self.direct)
            .field("ca_file", &self.ca_file)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_is_redacted() {
        let c = ClientConfig::new("http://x:1", "AK", "very-secret");
        assert!(!format!("{c:?}").contains("very-secret"));
    }

    #[test]
    fn validation_refuses_bad_endpoints() {
        assert!(ClientConfig::new("http://127.0.0.1:9870", "a", "s")
            .validate()
            .is_ok());
        for bad in ["127.0.0.1:9870", "ftp://x", "http://x/?a=b", "nonsense"] {
            assert!(
                ClientConfig::new(bad, "a", "s").validate().is_err(),
                "{bad}"
            );
        }
        assert!(ClientConfig::new("http://x", "", "s").validate().is_err());
        assert!(ClientConfig::new("http://x", "a", "").validate().is_err());
    }
}
