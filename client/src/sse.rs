//! Encryption at rest, from the client's side: sealing chunks before they
//! leave ([`Sealing`] in [`crate::UploadOptions::sealing`]) and opening
//! them after a read, with the key the file's metadata names.
//!
//! Two modes, as in S3. SSE-S3: the namenode grants a fresh data key per
//! object and keeps it only wrapped by its master key, in the object's
//! metadata; any reader with access asks the namenode to unwrap it
//! ([`Client::sealing_of`] does, transparently, and remembers the answer).
//! SSE-C: the data key is derived from the customer's key and a random
//! salt; only a keyed digest of the customer's key is kept, and a reader
//! must present the key ([`Client::with_customer_key`]).

use std::collections::BTreeMap;
use std::sync::Arc;

use base64::Engine as _;
use blob_common::proto::keys::{DataKeyGrant, UnwrapKey};
use blob_common::seal::{self, DataKey};
use reqwest::Method;

use crate::{Client, Error};

/// Clear data keys remembered per wrapped key, at most.
const KEY_CACHE: usize = 4096;

/// A customer's 256-bit key (SSE-C). Never logged or stored.
#[derive(Clone)]
pub struct CustomerKey([u8; 32]);

impl std::fmt::Debug for CustomerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CustomerKey(…)")
    }
}

impl CustomerKey {
    /// The key with these bytes.
    pub fn new(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// A key given as base64 (as S3 headers carry it), which must decode
    /// to 32 bytes.
    pub fn from_base64(b64: &str) -> Option<Self> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(b64.trim())
            .ok()?;
        Some(Self(bytes.try_into().ok()?))
    }

    /// A key read from a file: 32 raw bytes, or their base64 or hex.
    pub fn from_file_contents(data: &[u8]) -> Option<Self> {
        if let Ok(raw) = <[u8; 32]>::try_from(data) {
            return Some(Self(raw));
        }
        let text = std::str::from_utf8(data).ok()?.trim();
        if let Ok(bytes) = hex::decode(text) {
            return Some(Self(bytes.try_into().ok()?));
        }
        Self::from_base64(text)
    }

    /// Whether this is the key an SSE-C file (or multipart upload) with
    /// metadata `meta` was sealed with: its keyed digest with the file's
    /// salt is the one kept there.
    pub fn is_key_of(&self, meta: &BTreeMap<String, String>) -> bool {
        let salt = salt_of(meta).unwrap_or_default();
        let check = meta.get(seal::CUSTOMER_CHECK).map_or("", String::as_str);
        seal::customer_key_matches(&self.0, &salt, check)
    }

    /// Base64 of the key's MD5, as S3's `…-customer-key-MD5` header says.
    pub fn md5_base64(&self) -> String {
        use md5::Digest as _;
        base64::engine::general_purpose::STANDARD.encode(md5::Md5::digest(self.0))
    }
}

/// How an upload's chunks are sealed: the data key and the metadata that
/// names it (added to the file's metadata by the upload).
#[derive(Clone)]
pub struct Sealing {
    meta: BTreeMap<String, String>,
    key: DataKey,
}

impl std::fmt::Debug for Sealing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealing")
            .field("mode", &self.mode())
            .finish_non_exhaustive()
    }
}

impl Sealing {
    /// Sealing under a customer's key (SSE-C), with a fresh salt.
    pub fn customer(key: &CustomerKey) -> Sealing {
        let salt: [u8; 16] = rand::random();
        let b64 = base64::engine::general_purpose::STANDARD;
        let meta = BTreeMap::from([
            (seal::SEALED.to_string(), seal::LAYOUT.to_string()),
            (seal::SSE.to_string(), seal::SSE_C.to_string()),
            (seal::CUSTOMER_SALT.to_string(), b64.encode(salt)),
            (
                seal::CUSTOMER_CHECK.to_string(),
                b64.encode(seal::customer_key_check(&key.0, &salt)),
            ),
        ]);
        Sealing {
            meta,
            key: DataKey::new(&seal::customer_data_key(&key.0, &salt)),
        }
    }

    /// The metadata that names this sealing.
    pub fn meta(&self) -> &BTreeMap<String, String> {
        &self.meta
    }

    /// `AES256` (SSE-S3) or `SSE-C`.
    pub fn mode(&self) -> &str {
        self.meta.get(seal::SSE).map(String::as_str).unwrap_or("")
    }

    /// `plain` sealed as one stored chunk ([`seal::plain_capacity`] of
    /// the chunk size at most).
    pub fn seal(&self, plain: &[u8]) -> Vec<u8> {
        self.key.seal(plain)
    }

    pub(crate) fn key(&self) -> &DataKey {
        &self.key
    }
}

/// How to encrypt new files: what [`crate::UploadOptions::encrypt`] makes a
/// fresh [`Sealing`] of for each upload.
#[derive(Debug, Clone)]
pub enum Encrypt {
    /// SSE-S3: a new data key from the namenode per file.
    S3,
    /// SSE-C: the customer's key, with a new salt per file.
    Customer(CustomerKey),
}

/// The encryption mode a file's metadata names, if any: `AES256` (SSE-S3)
/// or `SSE-C`.
pub fn sse_mode(meta: &BTreeMap<String, String>) -> Option<&str> {
    seal::is_sealed(meta)
        .then(|| meta.get(seal::SSE).map(String::as_str))
        .flatten()
}

/// Where each chunk's bytes lie in the file `locs` describes: `(offset,
/// size)` in file order, those of the plaintext for a sealed file (whose
/// stored chunks are larger), and whether the chunk has a replica listed.
pub fn spans(locs: &crate::FileLocations) -> Vec<(u64, u64, bool)> {
    let sealed = seal::is_sealed(&locs.file.meta);
    let mut at = 0u64;
    locs.chunks
        .iter()
        .map(|c| {
            let size = if sealed {
                seal::plain_len(c.size).unwrap_or(0)
            } else {
                c.size
            };
            let span = (at, size, !c.replicas.is_empty());
            at += size;
            span
        })
        .collect()
}

impl Client {
    /// The customer key this handle reads SSE-C files with, if any.
    pub fn customer_key(&self) -> Option<&CustomerKey> {
        self.customer_key.as_deref()
    }

    /// A handle that reads and writes SSE-C files with `key`.
    pub fn with_customer_key(&self, key: CustomerKey) -> Client {
        let mut c = self.clone();
        c.customer_key = Some(Arc::new(key));
        c
    }

    /// A fresh sealing of kind `how`.
    pub async fn sealing_for(&self, how: &Encrypt) -> Result<Sealing, Error> {
        match how {
            Encrypt::S3 => self.sse_s3_sealing().await,
            Encrypt::Customer(key) => Ok(Sealing::customer(key)),
        }
    }

    /// Sealing for a new SSE-S3 object: a fresh data key from the
    /// namenode.
    pub async fn sse_s3_sealing(&self) -> Result<Sealing, Error> {
        let grant: DataKeyGrant = self
            .nn(Method::POST, &["sse", "data-key"])
            .body(&serde_json::json!({}))
            .decode()
            .await?;
        let key = decode_key(&self.meta_url(&["sse", "data-key"], &[]), &grant.key)?;
        self.remember_key(&grant.wrapped, &key);
        Ok(Sealing {
            meta: BTreeMap::from([
                (seal::SEALED.to_string(), seal::LAYOUT.to_string()),
                (seal::SSE.to_string(), seal::SSE_S3.to_string()),
                (seal::WRAPPED_KEY.to_string(), grant.wrapped),
            ]),
            key,
        })
    }

    /// The sealing a file (or multipart upload) with metadata `meta` was
    /// written with, `None` if it is stored in clear: the SSE-S3 key
    /// unwrapped by the namenode, or this handle's customer key once it
    /// proves to be the file's.
    pub async fn sealing_of(
        &self,
        bucket: &str,
        path: &str,
        meta: &BTreeMap<String, String>,
    ) -> Result<Option<Sealing>, Error> {
        if !seal::is_sealed(meta) {
            return Ok(None);
        }
        let url = self.meta_url(&["file"], &[("bucket", bucket), ("path", path)]);
        let url = &url;
        let sealed = seal::seal_meta(meta);
        let key = match sse_mode(meta) {
            Some(seal::SSE_S3) => {
                let wrapped = meta.get(seal::WRAPPED_KEY).ok_or_else(|| {
                    Error::protocol(url, "an SSE-S3 file without its wrapped key")
                })?;
                match self.remembered_key(wrapped) {
                    Some(k) => k,
                    None => {
                        let grant: DataKeyGrant = self
                            .nn(Method::POST, &["sse", "unwrap"])
                            .body(&UnwrapKey {
                                wrapped: wrapped.clone(),
                            })
                            .decode()
                            .await?;
                        let key = decode_key(url, &grant.key)?;
                        self.remember_key(wrapped, &key);
                        key
                    }
                }
            }
            Some(seal::SSE_C) => {
                let Some(customer) = &self.customer_key else {
                    return Err(Error::KeyRequired {
                        bucket: bucket.into(),
                        path: path.into(),
                    });
                };
                let salt = salt_of(meta)
                    .ok_or_else(|| Error::protocol(url, "an SSE-C file without its salt"))?;
                if !customer.is_key_of(meta) {
                    return Err(Error::WrongKey {
                        bucket: bucket.into(),
                        path: path.into(),
                    });
                }
                DataKey::new(&seal::customer_data_key(&customer.0, &salt))
            }
            other => {
                return Err(Error::protocol(
                    url,
                    format!("unknown encryption mode {other:?}"),
                ))
            }
        };
        Ok(Some(Sealing { meta: sealed, key }))
    }

    fn remembered_key(&self, wrapped: &str) -> Option<DataKey> {
        let keys = self.inner.keys.lock().unwrap_or_else(|e| e.into_inner());
        keys.get(wrapped).cloned()
    }

    fn remember_key(&self, wrapped: &str, key: &DataKey) {
        let mut keys = self.inner.keys.lock().unwrap_or_else(|e| e.into_inner());
        if keys.len() >= KEY_CACHE {
            keys.clear();
        }
        keys.insert(wrapped.to_string(), key.clone());
    }
}

/// The salt kept with an SSE-C file.
fn salt_of(meta: &BTreeMap<String, String>) -> Option<Vec<u8>> {
    let b64 = base64::engine::general_purpose::STANDARD;
    meta.get(seal::CUSTOMER_SALT)
        .and_then(|s| b64.decode(s).ok())
}

fn decode_key(url: &reqwest::Url, b64: &str) -> Result<DataKey, Error> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .ok_or_else(|| Error::protocol(url, "a data key that is not 32 bytes of base64"))?;
    Ok(DataKey::new(&bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn customer_keys_parse_from_files_and_headers() {
        let raw = [4u8; 32];
        let b64 = base64::engine::general_purpose::STANDARD.encode(raw);
        for data in [
            raw.to_vec(),
            hex::encode(raw).into_bytes(),
            format!("{b64}\n").into_bytes(),
        ] {
            assert_eq!(
                CustomerKey::from_file_contents(&data).map(|k| k.0),
                Some(raw)
            );
        }
        assert!(CustomerKey::from_file_contents(b"short").is_none());
        assert!(CustomerKey::from_base64("AAAA").is_none());
        assert_eq!(format!("{:?}", CustomerKey::new(raw)), "CustomerKey(…)");
    }

    #[test]
    fn customer_sealing_keeps_no_key_and_names_its_mode() {
        let key = CustomerKey::new([1; 32]);
        let s = Sealing::customer(&key);
        assert_eq!(s.mode(), seal::SSE_C);
        assert_eq!(sse_mode(s.meta()), Some(seal::SSE_C));
        let b64 = base64::engine::general_purpose::STANDARD.encode([1u8; 32]);
        assert!(s.meta().values().all(|v| !v.contains(&b64)));
        assert!(seal::check_meta(s.meta()).is_ok_and(|sealed| sealed));
    }
}
