//! The cluster secret file: made by the namenode on first start, read by
//! datanodes. Written with mode 0600.

use std::path::Path;

use anyhow::{Context, Result};
use blob_common::presign::Keyring;

/// Reads the keyring from `path`.
pub fn load(path: &Path) -> Result<Keyring> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading cluster secret {}", path.display()))?;
    Keyring::parse(&text)
        .map_err(anyhow::Error::msg)
        .with_context(|| format!("parsing cluster secret {}", path.display()))
}

/// Reads the keyring from `path`, creating a random one there first if the
/// file does not exist.
pub fn load_or_create(path: &Path) -> Result<Keyring> {
    if path.exists() {
        return load(path);
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let ring = Keyring::generate();
    blob_common::write_private(path, ring.to_file_text().as_bytes())
        .with_context(|| format!("writing {}", path.display()))?;
    tracing::info!(file = %path.display(), "created cluster secret");
    Ok(ring)
}
