//! Where `blobctl` finds its cluster and keys: flags, then the
//! environment (`BLOBCTL_*`), then the TOML file named by `--config` or
//! `BLOBCTL_CONFIG`, then `~/.config/blobctl/config.toml`. The file format
//! (`endpoint`, `access_key`, `secret_key`, optionally `zone`, `no_edge`,
//! `timeout` and `ca_file`) is the `client.toml` that `blobd dev` writes.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::anyhow;
use blob_client::{ClientConfig, Error};
use serde::Deserialize;

/// Environment variable naming the namenode URL.
pub(crate) const ENV_ENDPOINT: &str = "BLOBCTL_ENDPOINT";
/// Environment variable holding the access key id.
pub(crate) const ENV_ACCESS_KEY: &str = "BLOBCTL_ACCESS_KEY";
/// Environment variable holding the secret key.
pub(crate) const ENV_SECRET_KEY: &str = "BLOBCTL_SECRET_KEY";
/// Environment variable naming the config file.
pub(crate) const ENV_CONFIG: &str = "BLOBCTL_CONFIG";
/// Environment variable that, set to `1`, `true` or `yes`, makes reads go
/// to the datanodes only.
pub(crate) const ENV_NO_EDGE: &str = "BLOBCTL_NO_EDGE";
/// Environment variable naming the reader's zone.
pub(crate) const ENV_ZONE: &str = "BLOBCTL_ZONE";
/// Environment variable holding the timeout of every call (`30s`, `2m`).
pub(crate) const ENV_TIMEOUT: &str = "BLOBCTL_TIMEOUT";
/// Environment variable naming the CA file `https` services are verified
/// against.
pub(crate) const ENV_CA_FILE: &str = "BLOBCTL_CA_FILE";

/// How long one call to the namenode or a datanode may go without an
/// answer, unless configured.
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest wait for a TCP connection (shorter when the timeout is).
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Parses a timeout: a duration (`30s`, `500ms`, `2m`) above zero.
pub(crate) fn parse_timeout(s: &str) -> Result<Duration, String> {
    let d = blob_common::parse_duration(s)?;
    if d.is_zero() {
        return Err(format!(
            "invalid timeout {s:?}: it must be more than 0 (e.g. 2s, 500ms)"
        ));
    }
    Ok(d)
}

/// A timeout as the config file may write it: `"30s"`, or a number of
/// seconds.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(untagged)]
pub(crate) enum TimeoutSetting {
    /// Seconds.
    Secs(f64),
    /// A duration with a unit.
    Text(String),
}

impl TimeoutSetting {
    fn to_duration(&self) -> Result<Duration, String> {
        match self {
            TimeoutSetting::Secs(n) => parse_timeout(&format!("{n}s")),
            TimeoutSetting::Text(t) => parse_timeout(t),
        }
    }
}

/// One source of settings (flags, environment, a file). Any field may be
/// missing; sources are laid over each other, first one set wins.
#[derive(Clone, Default, PartialEq, Deserialize)]
pub(crate) struct ConfigLayer {
    /// Namenode base URL.
    #[serde(default)]
    pub(crate) endpoint: Option<String>,
    /// Access key id.
    #[serde(default)]
    pub(crate) access_key: Option<String>,
    /// Secret key.
    #[serde(default)]
    pub(crate) secret_key: Option<String>,
    /// The reader's zone (picks the edge cache).
    #[serde(default)]
    pub(crate) zone: Option<String>,
    /// Read from the datanodes only, never through an edge cache.
    #[serde(default)]
    pub(crate) no_edge: Option<bool>,
    /// Longest wait for an answer to one call.
    #[serde(default)]
    pub(crate) timeout: Option<TimeoutSetting>,
    /// PEM CA certificate(s) `https` services are verified against (in a
    /// file, relative to the file's directory).
    #[serde(default)]
    pub(crate) ca_file: Option<PathBuf>,
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
            .field("no_edge", &self.no_edge)
            .field("timeout", &self.timeout)
            .field("ca_file", &self.ca_file)
            .finish()
    }
}

impl ConfigLayer {
    /// Parses the TOML config file format. Unknown keys are ignored, so a
    /// file may carry settings for other tools.
    pub(crate) fn from_toml(text: &str) -> Result<Self, toml::de::Error> {
        let mut layer: Self = toml::from_str(text)?;
        layer.drop_empty();
        Ok(layer)
    }

    /// Reads a TOML config file. `Ok(None)` when it does not exist.
    pub(crate) fn load(path: &Path) -> Result<Option<Self>, Error> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(Error::Io {
                    context: format!("reading config file {}", path.display()),
                    source: e,
                })
            }
        };
        let mut layer = Self::from_toml(&text)
            .map_err(|e| Error::Config(format!("{}: {e}", path.display())))?;
        if let (Some(ca), Some(dir)) = (&layer.ca_file, path.parent()) {
            layer.ca_file = Some(dir.join(ca));
        }
        Ok(Some(layer))
    }

    /// Treats empty strings (e.g. `BLOBCTL_SECRET_KEY=`) as unset.
    pub(crate) fn drop_empty(&mut self) {
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
        if self
            .ca_file
            .as_deref()
            .is_some_and(|p| p.as_os_str().is_empty())
        {
            self.ca_file = None;
        }
    }

    /// Fills this layer's unset fields from `lower`.
    pub(crate) fn or(mut self, lower: &ConfigLayer) -> Self {
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
        if self.no_edge.is_none() {
            self.no_edge = lower.no_edge;
        }
        if self.timeout.is_none() {
            self.timeout.clone_from(&lower.timeout);
        }
        if self.ca_file.is_none() {
            self.ca_file.clone_from(&lower.ca_file);
        }
        self
    }
}

/// The default config file: `~/.config/blobctl/config.toml`.
pub(crate) fn default_config_path() -> Option<PathBuf> {
    dirs::home_dir().map(|h| h.join(".config").join("blobctl").join("config.toml"))
}

/// Lays the configuration sources over each other: flags, then the
/// environment (`env` looks a variable up), then the file named by
/// `--config` or `BLOBCTL_CONFIG` (which must exist), then `home_file`
/// (if it exists).
pub(crate) fn load_config(
    flags: ConfigLayer,
    config_flag: Option<PathBuf>,
    env: &dyn Fn(&str) -> Option<String>,
    home_file: Option<PathBuf>,
) -> anyhow::Result<ClientConfig> {
    let mut flags = flags;
    flags.drop_empty();
    let mut from_env = ConfigLayer {
        endpoint: env(ENV_ENDPOINT),
        access_key: env(ENV_ACCESS_KEY),
        secret_key: env(ENV_SECRET_KEY),
        zone: env(ENV_ZONE),
        no_edge: env(ENV_NO_EDGE).map(|v| matches!(v.as_str(), "1" | "true" | "yes")),
        timeout: env(ENV_TIMEOUT)
            .filter(|v| !v.trim().is_empty())
            .map(TimeoutSetting::Text),
        ca_file: env(ENV_CA_FILE).map(PathBuf::from),
    };
    from_env.drop_empty();
    let explicit =
        config_flag.or_else(|| env(ENV_CONFIG).filter(|s| !s.is_empty()).map(PathBuf::from));
    let file = match &explicit {
        Some(p) => ConfigLayer::load(p)?
            .ok_or_else(|| anyhow!("config file {} does not exist", p.display()))?,
        None => ConfigLayer::default(),
    };
    let home = match &home_file {
        Some(p) => ConfigLayer::load(p)?.unwrap_or_default(),
        None => ConfigLayer::default(),
    };
    let merged = flags.or(&from_env).or(&file).or(&home);
    let missing = |what: &str, flag: &str, var: &str, key: &str| {
        anyhow!(
            "no {what} configured: pass {flag}, set {var}, or put `{key} = \"...\"` in the file \
             named by --config/{ENV_CONFIG} or in ~/.config/blobctl/config.toml"
        )
    };
    let endpoint = merged
        .endpoint
        .ok_or_else(|| missing("endpoint", "--endpoint", ENV_ENDPOINT, "endpoint"))?;
    let access_key = merged
        .access_key
        .ok_or_else(|| missing("access key", "--access-key", ENV_ACCESS_KEY, "access_key"))?;
    let secret_key = merged
        .secret_key
        .ok_or_else(|| missing("secret key", "--secret-key", ENV_SECRET_KEY, "secret_key"))?;
    let timeout = match &merged.timeout {
        Some(t) => t.to_duration().map_err(|e| {
            anyhow!("{e} (from --timeout, {ENV_TIMEOUT} or `timeout` in the config file)")
        })?,
        None => DEFAULT_TIMEOUT,
    };
    let mut cfg = ClientConfig::new(endpoint, access_key, secret_key)
        .with_zone(merged.zone)
        .with_direct(merged.no_edge.unwrap_or(false))
        .with_ca_file(merged.ca_file);
    cfg.connect_timeout = CONNECT_TIMEOUT;
    Ok(cfg.with_timeout(timeout))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn layer(e: Option<&str>, a: Option<&str>, s: Option<&str>) -> ConfigLayer {
        ConfigLayer {
            endpoint: e.map(String::from),
            access_key: a.map(String::from),
            secret_key: s.map(String::from),
            zone: None,
            no_edge: None,
            timeout: None,
            ca_file: None,
        }
    }

    #[test]
    fn the_ca_file_comes_from_flag_env_or_file_relative_to_it() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let file = write(
            dir.path(),
            "file.toml",
            "endpoint = \"https://file:1\"\naccess_key = \"ak\"\nsecret_key = \"sk\"\nca_file = \"tls/ca.pem\"\n",
        );
        let none = |_: &str| None;
        let c = load_config(layer(None, None, None), Some(file.clone()), &none, None)
            .unwrap_or_else(|e| panic!("{e:#}"));
        assert_eq!(c.ca_file, Some(dir.path().join("tls/ca.pem")));
        let env = |k: &str| (k == ENV_CA_FILE).then(|| "/env/ca.pem".to_string());
        let c = load_config(layer(None, None, None), Some(file.clone()), &env, None)
            .unwrap_or_else(|e| panic!("{e:#}"));
        assert_eq!(c.ca_file, Some(PathBuf::from("/env/ca.pem")));
        let mut flags = layer(None, None, None);
        flags.ca_file = Some("/flag/ca.pem".into());
        let c = load_config(flags, Some(file), &env, None).unwrap_or_else(|e| panic!("{e:#}"));
        assert_eq!(c.ca_file, Some(PathBuf::from("/flag/ca.pem")));
    }

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap_or_else(|e| panic!("{e}"));
        p
    }

    #[test]
    fn the_zone_comes_from_flag_env_or_file() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let file = write(
            dir.path(),
            "file.toml",
            "endpoint = \"http://file:1\"\naccess_key = \"ak\"\nsecret_key = \"sk\"\nzone = \"file-zone\"\n",
        );
        let none = |_: &str| None;
        let c = load_config(layer(None, None, None), Some(file.clone()), &none, None)
            .unwrap_or_else(|e| panic!("{e:#}"));
        assert_eq!(c.zone.as_deref(), Some("file-zone"));
        let env = |k: &str| (k == ENV_ZONE).then(|| "env-zone".to_string());
        let c = load_config(layer(None, None, None), Some(file.clone()), &env, None)
            .unwrap_or_else(|e| panic!("{e:#}"));
        assert_eq!(c.zone.as_deref(), Some("env-zone"));
        let mut flags = layer(None, None, None);
        flags.zone = Some("flag-zone".into());
        let c =
            load_config(flags, Some(file.clone()), &env, None).unwrap_or_else(|e| panic!("{e:#}"));
        assert_eq!(c.zone.as_deref(), Some("flag-zone"));
        // An empty value means unset.
        let empty = |k: &str| (k == ENV_ZONE).then(String::new);
        let bare = write(
            dir.path(),
            "bare.toml",
            "endpoint = \"http://file:1\"\naccess_key = \"ak\"\nsecret_key = \"sk\"\n",
        );
        let c = load_config(layer(None, None, None), Some(bare), &empty, None)
            .unwrap_or_else(|e| panic!("{e:#}"));
        assert_eq!(c.zone, None);
    }

    #[test]
    fn the_timeout_comes_from_flag_env_or_file() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let base = "endpoint = \"http://file:1\"\naccess_key = \"ak\"\nsecret_key = \"sk\"\n";
        let bare = write(dir.path(), "bare.toml", base);
        let none = |_: &str| None;
        let c = load_config(layer(None, None, None), Some(bare.clone()), &none, None)
            .unwrap_or_else(|e| panic!("{e:#}"));
        assert_eq!(c.request_timeout, DEFAULT_TIMEOUT);
        assert_eq!(c.data_idle_timeout, DEFAULT_TIMEOUT);
        assert_eq!(c.connect_timeout, CONNECT_TIMEOUT);
        let text = write(dir.path(), "t.toml", &format!("{base}timeout = \"2s\"\n"));
        let c = load_config(layer(None, None, None), Some(text), &none, None)
            .unwrap_or_else(|e| panic!("{e:#}"));
        assert_eq!(c.request_timeout, Duration::from_secs(2));
        assert_eq!(c.connect_timeout, Duration::from_secs(2));
        let num = write(dir.path(), "n.toml", &format!("{base}timeout = 7\n"));
        let c = load_config(layer(None, None, None), Some(num.clone()), &none, None)
            .unwrap_or_else(|e| panic!("{e:#}"));
        assert_eq!(c.request_timeout, Duration::from_secs(7));
        let env = |k: &str| (k == ENV_TIMEOUT).then(|| "500ms".to_string());
        let c = load_config(layer(None, None, None), Some(num.clone()), &env, None)
            .unwrap_or_else(|e| panic!("{e:#}"));
        assert_eq!(c.request_timeout, Duration::from_millis(500));
        let mut flags = layer(None, None, None);
        flags.timeout = Some(TimeoutSetting::Text("1m".into()));
        let c = load_config(flags, Some(num), &env, None).unwrap_or_else(|e| panic!("{e:#}"));
        assert_eq!(c.request_timeout, Duration::from_secs(60));
        let zero = write(dir.path(), "z.toml", &format!("{base}timeout = \"0s\"\n"));
        let e = match load_config(layer(None, None, None), Some(zero), &none, None) {
            Err(e) => format!("{e:#}"),
            Ok(_) => panic!("a zero timeout was accepted"),
        };
        assert!(e.contains("more than 0") && e.contains("timeout"), "{e}");
    }

    #[test]
    fn config_precedence_is_flags_env_file_home() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let file = write(
            dir.path(),
            "file.toml",
            "endpoint = \"http://file:1\"\naccess_key = \"file-ak\"\nsecret_key = \"file-sk\"\n",
        );
        let home = write(
            dir.path(),
            "home.toml",
            "endpoint = \"http://home:1\"\naccess_key = \"home-ak\"\nsecret_key = \"home-sk\"\n",
        );
        let env: HashMap<&str, &str> = [
            (ENV_ENDPOINT, "http://env:1"),
            (ENV_ACCESS_KEY, "env-ak"),
            (ENV_CONFIG, "/does/not/matter-when-flag-given"),
        ]
        .into();
        let lookup = |k: &str| env.get(k).map(|v| v.to_string());

        // Each setting from the highest source that has it.
        let c = load_config(
            layer(Some("http://flag:1"), None, None),
            Some(file.clone()),
            &lookup,
            Some(home.clone()),
        )
        .unwrap_or_else(|e| panic!("{e:#}"));
        assert_eq!(c.endpoint, "http://flag:1");
        assert_eq!(c.access_key, "env-ak");
        assert_eq!(c.secret_key, "file-sk");

        // Without flags, env wins over the file.
        let c = load_config(layer(None, None, None), Some(file.clone()), &lookup, None)
            .unwrap_or_else(|e| panic!("{e:#}"));
        assert_eq!(c.endpoint, "http://env:1");

        // Without env or file, the home file answers.
        let none = |_: &str| None;
        let c = load_config(layer(None, None, None), None, &none, Some(home.clone()))
            .unwrap_or_else(|e| panic!("{e:#}"));
        assert_eq!(c.endpoint, "http://home:1");
        assert_eq!(c.secret_key, "home-sk");

        // The file named by BLOBCTL_CONFIG is read when --config is not given,
        // and outranks the home file.
        let file_str = file.to_string_lossy().to_string();
        let via_env = |k: &str| (k == ENV_CONFIG).then(|| file_str.clone());
        let c = load_config(layer(None, None, None), None, &via_env, Some(home.clone()))
            .unwrap_or_else(|e| panic!("{e:#}"));
        assert_eq!(c.access_key, "file-ak");

        // Empty values count as unset.
        let empty = |k: &str| (k == ENV_ENDPOINT).then(String::new);
        let c = load_config(layer(Some(""), None, None), None, &empty, Some(home))
            .unwrap_or_else(|e| panic!("{e:#}"));
        assert_eq!(c.endpoint, "http://home:1");
    }

    #[test]
    fn missing_settings_name_every_place() {
        let none = |_: &str| None;
        let e = match load_config(
            layer(Some("http://x:1"), Some("ak"), None),
            None,
            &none,
            None,
        ) {
            Err(e) => format!("{e:#}"),
            Ok(_) => panic!("expected an error"),
        };
        for place in [
            "--secret-key",
            ENV_SECRET_KEY,
            "--config",
            ENV_CONFIG,
            "config.toml",
            "secret_key",
        ] {
            assert!(e.contains(place), "{e} lacks {place}");
        }
        // An explicitly named file must exist; the home file need not.
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let all = layer(Some("http://x:1"), Some("ak"), Some("sk"));
        assert!(load_config(all.clone(), Some(dir.path().join("nope.toml")), &none, None).is_err());
        assert!(load_config(all, None, &none, Some(dir.path().join("nope.toml"))).is_ok());
    }
}
