//! The CA every client of the blob store trusts. HTTP clients are built
//! with rustls and no built-in roots: an `https` URL verifies only against
//! the CA file a program is configured with (`ca_file` in client.toml,
//! `--ca-file`), and without one it is refused, never trusted blindly.

use std::path::{Path, PathBuf};

/// A CA file that could not be used.
#[derive(Debug, thiserror::Error)]
#[error("CA file {path}: {detail}")]
pub struct CaFileError {
    /// The file.
    pub path: PathBuf,
    /// What was wrong.
    pub detail: String,
}

/// `builder` trusting the PEM certificates in `ca_file` (one or more), if
/// given.
pub fn trust(
    builder: reqwest::ClientBuilder,
    ca_file: Option<&Path>,
) -> Result<reqwest::ClientBuilder, CaFileError> {
    let Some(path) = ca_file else {
        return Ok(builder);
    };
    let err = |detail: String| CaFileError {
        path: path.to_path_buf(),
        detail,
    };
    let pem = std::fs::read(path).map_err(|e| err(e.to_string()))?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| err(e.to_string()))?;
    if certs.is_empty() {
        return Err(err("no CERTIFICATE block found".into()));
    }
    Ok(certs
        .into_iter()
        .fold(builder, |b, c| b.add_root_certificate(c)))
}

/// Whether `err` is a server certificate this client does not trust (an
/// unknown CA, a name it is not valid for, expired): no retry changes
/// that, so it is final.
pub fn is_certificate_error(err: &reqwest::Error) -> bool {
    untrusted(err)
}

fn untrusted(e: &(dyn std::error::Error + 'static)) -> bool {
    if let Some(tls) = e.downcast_ref::<rustls::Error>() {
        return matches!(
            tls,
            rustls::Error::InvalidCertificate(_) | rustls::Error::NoCertificatesPresented
        );
    }
    // An io::Error's `source` skips the error it wraps (itself at times
    // another io::Error): look inside first.
    if let Some(inner) = e
        .downcast_ref::<std::io::Error>()
        .and_then(|io| io.get_ref())
    {
        if untrusted(inner) {
            return true;
        }
    }
    e.source().is_some_and(untrusted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ca_file_must_hold_a_certificate() {
        let dir = std::env::temp_dir().join(format!("blob-rpc-ca-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").expect("write");
        let e = trust(reqwest::Client::builder(), Some(&empty)).expect_err("empty");
        assert!(e.to_string().contains("empty.pem"), "{e}");
        let e =
            trust(reqwest::Client::builder(), Some(&dir.join("missing.pem"))).expect_err("missing");
        assert!(e.to_string().contains("missing.pem"), "{e}");
        assert!(trust(reqwest::Client::builder(), None).is_ok());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
