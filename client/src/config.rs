//! Client configuration: where the namenode is, the credentials to sign
//! with, and timeouts; plus the TOML file format `blobctl` and `blobd dev`
//! share (`endpoint`, `access_key`, `secret_key`, and optionally `zone`).

use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

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
    /// Base URL of the namenode, e.g. `http://127.0.0.1:9870`.
    pub endpoint: String,
    /// Access key id the requests are signed for.
    pub access_key: String,
    /// Secret of the access key. Never sent, logged or displayed.
    pub secret_key: String,
    /// Time allowed to open a TCP connection.
    pub connect_timeout: Duration,
    /// Time allowed for a whole metadata call to the namenode.
    pub request_timeout: Duration,
    /// Time allowed between two reads of a chunk transfer (a silent
    /// datanode is given up on after this long, however big the chunk).
    pub data_idle_timeout: Duration,
    /// The reader's zone: the namenode points reads at this zone's edge
    /// cache (or the nearest one) when edges are configured.
    pub zone: Option<String>,
    /// Time allowed to connect to an edge cache before reading from the
    /// datanodes instead.
    pub edge_connect_timeout: Duration,
    /// After an edge could not be reached, reads go straight to the
    /// datanodes for this long.
    pub edge_retry_after: Duration,
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
            edge_connect_timeout: Duration::from_secs(1),
            edge_retry_after: Duration::from_secs(10),
        }
    }

    /// The same configuration for a reader in `zone`.
    pub fn with_zone(mut self, zone: Option<String>) -> Self {
        self.zone = zone.filter(|z| !z.trim().is_empty());
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
            .finish()
    }
}

/// One source of settings (flags, environment, a file). Any field may be
/// missing; sources are laid over each other, first one set wins.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
pub struct ConfigLayer {
    /// Namenode base URL.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// Access key id.
    #[serde(default)]
    pub access_key: Option<String>,
    /// Secret key.
    #[serde(default)]
    pub secret_key: Option<String>,
    /// The reader's zone (picks the edge cache).
    #[serde(default)]
    pub zone: Option<String>,
}

impl std::fmt::Debug for ConfigLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConfigLayer")
            .field("endpoint", &self.endpoint)
            .field("access_key", &self.access_key)
            .field(
                "secret_key",
                &self.secret_key.as_ref().map(|_| "<redacted>"),
            )
            .field("zone", &self.zone)
            .finish()
    }
}

impl ConfigLayer {
    /// Parses the TOML config file format. Unknown keys are ignored, so a
    /// file may carry settings for other tools.
    pub fn from_toml(text: &str) -> Result<Self, toml::de::Error> {
        let mut layer: Self = toml::from_str(text)?;
        layer.drop_empty();
        Ok(layer)
    }

    /// Reads a TOML config file. `Ok(None)` when it does not exist.
    pub fn load(path: &Path) -> Result<Option<Self>, Error> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(Error::io(
                    format!("reading config file {}", path.display()),
                    e,
                ))
            }
        };
        Self::from_toml(&text)
            .map(Some)
            .map_err(|e| Error::Config(format!("{}: {e}", path.display())))
    }

    /// Treats empty strings (e.g. `BLOBCTL_SECRET_KEY=`) as unset.
    pub fn drop_empty(&mut self) {
        for f in [
            &mut self.endpoint,
            &mut self.access_key,
            &mut self.secret_key,
            &mut self.zone,
        ] {
            if f.as_deref().is_some_and(str::is_empty) {
                *f = None;
            }
        }
    }

    /// Fills this layer's unset fields from `lower`.
    pub fn or(mut self, lower: &ConfigLayer) -> Self {
        if self.endpoint.is_none() {
            self.endpoint.clone_from(&lower.endpoint);
        }
        if self.access_key.is_none() {
            self.access_key.clone_from(&lower.access_key);
        }
        if self.secret_key.is_none() {
            self.secret_key.clone_from(&lower.secret_key);
        }
        if self.zone.is_none() {
            self.zone.clone_from(&lower.zone);
        }
        self
    }
}

/// The default config file: `~/.config/blobctl/config.toml`.
pub fn default_config_path() -> Option<std::path::PathBuf> {
    dirs::home_dir().map(|h| h.join(".config").join("blobctl").join("config.toml"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_file_is_parsed_and_secret_is_redacted() {
        let l = ConfigLayer::from_toml(
            "endpoint = \"http://127.0.0.1:9870\"\naccess_key = \"AK\"\nsecret_key = \"SK\"\nother = 1\n",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(l.endpoint.as_deref(), Some("http://127.0.0.1:9870"));
        assert_eq!(l.secret_key.as_deref(), Some("SK"));
        assert!(!format!("{l:?}").contains("SK"));
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

    #[test]
    fn missing_file_is_none() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            ConfigLayer::load(&dir.path().join("nope.toml")).ok(),
            Some(None)
        );
        let p = dir.path().join("bad.toml");
        std::fs::write(&p, "endpoint = ").unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(ConfigLayer::load(&p), Err(Error::Config(_))));
    }
}
