//! The cluster's master keys: they wrap each SSE-S3 object's data key
//! (kept wrapped in the object's metadata) and seal the secrets of access
//! keys in the database, and never leave the namenode.
//!
//! They live in `<data dir>/sse-master-keys`, mode 0600, one key per line
//! as `<id> <64 hex digits>`; the last line is the key new objects use,
//! the others still unwrap what they wrapped. The file is made with one
//! random key on first start. Rotation: append a line with a higher id and
//! a new random key (`blobd` then wraps with it after a restart), and keep
//! the old lines for as long as objects wrapped by them exist.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use blob_common::proto::keys::DataKeyGrant;
use blob_common::seal::{self, DataKey};

use crate::error::Error;

/// File name of the master keys in the data directory.
pub const MASTER_KEYS_FILE: &str = "sse-master-keys";

/// The master keys, by id; the highest id is current.
pub(crate) struct MasterKeys {
    keys: BTreeMap<u32, DataKey>,
    /// Derived from the current key: signs the S3 gateway's sessions.
    session_root: [u8; 32],
}

impl MasterKeys {
    /// Loads the master keys of `data_dir`, making the file on first start.
    pub(crate) fn load_or_create(data_dir: &Path) -> Result<Self, Error> {
        let path = data_dir.join(MASTER_KEYS_FILE);
        if !path.exists() {
            let text = format!("1 {}\n", hex::encode(seal::random_key()));
            blob_common::write_private(&path, text.as_bytes())
                .map_err(|e| Error::Internal(format!("writing {}: {e}", path.display())))?;
            tracing::info!(path = %path.display(), "made the SSE-S3 master key");
        }
        warn_if_readable_by_others(&path);
        let text = std::fs::read_to_string(&path)
            .map_err(|e| Error::Internal(format!("reading {}: {e}", path.display())))?;
        Self::parse(&text).map_err(|e| Error::Internal(format!("{}: {e}", path.display())))
    }

    fn parse(text: &str) -> Result<Self, String> {
        let mut keys = BTreeMap::new();
        let mut current: Option<(u32, [u8; 32])> = None;
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bad = || format!("line {}: expected `<id> <64 hex digits>`", n + 1);
            let (id, hexkey) = line.split_once(char::is_whitespace).ok_or_else(bad)?;
            let id: u32 = id.parse().map_err(|_| bad())?;
            let bytes = hex::decode(hexkey.trim()).map_err(|_| bad())?;
            let key: [u8; 32] = bytes.try_into().map_err(|_| bad())?;
            if keys.insert(id, DataKey::new(&key)).is_some() {
                return Err(format!("line {}: key id {id} appears twice", n + 1));
            }
            if current.is_none_or(|(c, _)| id > c) {
                current = Some((id, key));
            }
        }
        let (_, current) = current.ok_or("no master key")?;
        Ok(Self {
            keys,
            session_root: blob_common::auth::session_root(&current),
        })
    }

    /// A fresh data key, in clear and wrapped by the current master key.
    pub(crate) fn grant(&self) -> Result<DataKeyGrant, Error> {
        let (id, master) = self
            .keys
            .last_key_value()
            .ok_or_else(|| Error::Internal("no master key".into()))?;
        let key = seal::random_key();
        Ok(DataKeyGrant {
            key: base64::engine::general_purpose::STANDARD.encode(key),
            wrapped: seal::wrap_key(master, *id, &key),
        })
    }

    /// The data key `wrapped` holds.
    pub(crate) fn unwrap(&self, wrapped: &str) -> Result<DataKeyGrant, Error> {
        let bad = |e: seal::SealError| Error::BadRequest(e.to_string());
        let id = seal::wrapped_key_master(wrapped).map_err(bad)?;
        let master = self.keys.get(&id).ok_or_else(|| {
            Error::BadRequest(format!(
                "wrapped data key names master key {id}, which this namenode does not have"
            ))
        })?;
        let key = seal::unwrap_key(master, wrapped).map_err(bad)?;
        Ok(DataKeyGrant {
            key: base64::engine::general_purpose::STANDARD.encode(key),
            wrapped: wrapped.to_string(),
        })
    }
}

/// Associated data of a sealed access-key secret.
const SECRET_AAD: &[u8] = b"blobstore access key secret v1";

impl MasterKeys {
    /// An access key's secret sealed by the current master key.
    pub(crate) fn seal_secret(&self, secret: &str) -> Result<String, Error> {
        let (id, master) = self
            .keys
            .last_key_value()
            .ok_or_else(|| Error::Internal("no master key".into()))?;
        Ok(seal::wrap_bytes(master, *id, secret.as_bytes(), SECRET_AAD))
    }

    /// A secret [`MasterKeys::seal_secret`] sealed.
    pub(crate) fn open_secret(&self, sealed: &str) -> Result<String, Error> {
        let bad = |e: String| Error::Corrupt(format!("sealed access key secret: {e}"));
        let id = seal::wrapped_key_master(sealed).map_err(|e| bad(e.to_string()))?;
        let master = self.keys.get(&id).ok_or_else(|| {
            bad(format!(
                "master key {id} is missing from {MASTER_KEYS_FILE}"
            ))
        })?;
        let plain =
            seal::unwrap_bytes(master, sealed, SECRET_AAD).map_err(|e| bad(e.to_string()))?;
        String::from_utf8(plain).map_err(|e| bad(e.to_string()))
    }
}

impl MasterKeys {
    /// The secret of a gateway session's access key
    /// ([`blob_common::auth::session_access_key`]).
    pub(crate) fn session_secret(&self, session_key: &str) -> String {
        blob_common::auth::session_secret(&self.session_root, session_key)
    }
}

fn warn_if_readable_by_others(path: &PathBuf) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(m) = std::fs::metadata(path) {
        if m.permissions().mode() & 0o077 != 0 {
            tracing::warn!(path = %path.display(), mode = format!("{:o}", m.permissions().mode() & 0o777), "the SSE-S3 master key file is readable by others; chmod 600 it");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_made_once_private_and_rotate_by_appending() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let keys = MasterKeys::load_or_create(dir.path()).unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join(MASTER_KEYS_FILE);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path)
            .unwrap_or_else(|e| panic!("{e}"))
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let old = keys.grant().unwrap_or_else(|e| panic!("{e}"));
        assert!(old.wrapped.starts_with("v1:1:"));
        // Loading again keeps the same key.
        let again = MasterKeys::load_or_create(dir.path()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            again.unwrap(&old.wrapped).ok().map(|g| g.key),
            Some(old.key.clone())
        );
        // Rotation: a new line; new grants use it, old ones still open.
        let mut text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{e}"));
        text.push_str(&format!("2 {}\n", hex::encode([6u8; 32])));
        std::fs::write(&path, text).unwrap_or_else(|e| panic!("{e}"));
        let rotated = MasterKeys::load_or_create(dir.path()).unwrap_or_else(|e| panic!("{e}"));
        assert!(rotated
            .grant()
            .is_ok_and(|g| g.wrapped.starts_with("v1:2:")));
        assert_eq!(
            rotated.unwrap(&old.wrapped).ok().map(|g| g.key),
            Some(old.key)
        );
        assert!(rotated.unwrap("v1:9:AAAA").is_err());
        assert!(MasterKeys::parse("1 abc").is_err());
        assert!(MasterKeys::parse("# nothing\n").is_err());
    }
}
