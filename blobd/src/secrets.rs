//! The cluster secret file: made by the namenode on first start (with a
//! secret for each service role), and the files given to each kind of
//! service, holding only what its role needs (`datanode.secret`,
//! `edge.secret`, `s3.secret` beside it). Written with mode 0600.

use std::path::Path;

use anyhow::{Context, Result};
use blob_common::auth::ServiceRole;
use blob_common::presign::Keyring;

/// Reads the keyring from `path`.
pub fn load(path: &Path) -> Result<Keyring> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading cluster secret {}", path.display()))?;
    Keyring::parse(&text)
        .map_err(anyhow::Error::msg)
        .with_context(|| format!("parsing cluster secret {}", path.display()))
}

/// The file beside the cluster secret `cluster` that a service of `role`
/// is given.
pub fn role_file(cluster: &Path, role: ServiceRole) -> std::path::PathBuf {
    cluster.with_file_name(format!("{}.secret", role.name()))
}

/// Writes each role's file beside the cluster secret `cluster`.
pub fn write_role_files(cluster: &Path, ring: &Keyring) -> Result<()> {
    for role in ServiceRole::ALL {
        let path = role_file(cluster, role);
        blob_common::write_private(&path, ring.for_role(role).to_file_text().as_bytes())
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// Reads the keyring from `path`, creating a random one there first if the
/// file does not exist, and adding service secrets to one made before
/// services had their own; then writes each role's file beside it.
pub fn load_or_create(path: &Path) -> Result<Keyring> {
    let ring = load_or_create_ring(path)?;
    write_role_files(path, &ring)?;
    Ok(ring)
}

fn load_or_create_ring(path: &Path) -> Result<Keyring> {
    if path.exists() {
        let mut ring = load(path)?;
        if ring.ensure_services() {
            blob_common::write_private(path, ring.to_file_text().as_bytes())
                .with_context(|| format!("writing {}", path.display()))?;
            tracing::info!(file = %path.display(), "added service secrets to the cluster secret");
        }
        return Ok(ring);
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
