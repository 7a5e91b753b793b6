//! Sealed chunks: encryption at rest, done by whoever writes a chunk (the
//! client library), so that every service stores, replicates, repairs,
//! scrubs and caches the sealed bytes without a key.
//!
//! A sealed chunk is a run of blocks of [`BLOCK`] stored bytes (the last
//! one shorter), each `nonce (12) ‖ AES-256-GCM ciphertext ‖ tag (16)`,
//! with a random nonce per block and the block's index in its chunk as
//! associated data. Stored blocks line up with the datanodes' CRC blocks,
//! so a range read fetches, verifies and decrypts only the blocks it
//! touches; a reordered or truncated block fails its tag.
//!
//! Each object has its own data key ([`DataKey`]): random and wrapped by a
//! cluster master key for SSE-S3 ([`wrap_key`], [`unwrap_key`]), derived
//! from the customer's key and a random salt for SSE-C
//! ([`customer_data_key`]), with only a keyed digest of the customer key
//! kept ([`customer_key_check`]). A file's metadata says which
//! ([`SEALED`], [`SSE`] and the keys beside them); the sizes the namenode
//! reports for a sealed file are its plaintext sizes ([`plain_len`]).

use std::collections::BTreeMap;
use std::ops::Range;

use aes_gcm::aead::{AeadInPlace, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce, Tag};
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Stored bytes per sealed block: the datanodes' CRC block.
pub const BLOCK: usize = crate::checksum::BLOCK_SIZE;
/// Nonce bytes at the head of every sealed block.
pub const NONCE: usize = 12;
/// Tag bytes at the tail of every sealed block.
pub const TAG: usize = 16;
/// What sealing adds to each block.
pub const OVERHEAD: usize = NONCE + TAG;
/// Plaintext bytes per full block.
pub const PLAIN_BLOCK: usize = BLOCK - OVERHEAD;

/// Metadata key present (with [`LAYOUT`]) on every file whose chunks are
/// sealed: the namenode reports such a file's plaintext sizes.
pub const SEALED: &str = "sealed";
/// The one layout there is.
pub const LAYOUT: &str = "aes-256-gcm/64k/v1";
/// Metadata key naming the encryption mode: [`SSE_S3`] or [`SSE_C`].
pub const SSE: &str = "sse";
/// Mode value: data key wrapped by the cluster's master key.
pub const SSE_S3: &str = "AES256";
/// Mode value: data key derived from a key the customer sends.
pub const SSE_C: &str = "SSE-C";
/// Metadata key of an SSE-S3 file's wrapped data key.
pub const WRAPPED_KEY: &str = "sse-key";
/// Metadata key of an SSE-C file's salt (base64).
pub const CUSTOMER_SALT: &str = "sse-c-salt";
/// Metadata key of an SSE-C file's key check (base64 HMAC).
pub const CUSTOMER_CHECK: &str = "sse-c-check";

/// Whether a file's metadata says its chunks are sealed.
pub fn is_sealed(meta: &BTreeMap<String, String>) -> bool {
    meta.contains_key(SEALED)
}

/// Whether `key` is one of the metadata keys this module owns (kept with
/// the bytes they describe, never taken from a user).
pub fn is_seal_meta(key: &str) -> bool {
    key == SEALED || key == SSE || key.starts_with("sse-")
}

/// The entries of `meta` this module owns.
pub fn seal_meta(meta: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    meta.iter()
        .filter(|(k, _)| is_seal_meta(k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// `meta` with its sealing entries replaced by those of `from` (a copy or
/// a metadata update never changes how the bytes are sealed).
pub fn keep_seal_meta(
    mut meta: BTreeMap<String, String>,
    from: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    meta.retain(|k, _| !is_seal_meta(k));
    meta.extend(seal_meta(from));
    meta
}

/// Checks the sealing entries of a new file's metadata: none, or a known
/// [`LAYOUT`] under [`SEALED`]. Returns whether the file is sealed.
pub fn check_meta(meta: &BTreeMap<String, String>) -> Result<bool, String> {
    match meta.get(SEALED) {
        Some(l) if l == LAYOUT => Ok(true),
        Some(l) => Err(format!("unknown sealed-chunk layout {l:?}")),
        None => match meta.keys().find(|k| is_seal_meta(k)) {
            Some(k) => Err(format!("metadata key {k:?} is reserved for sealed files")),
            None => Ok(false),
        },
    }
}

/// Stored size of `plain` bytes sealed as one chunk.
pub fn sealed_len(plain: u64) -> u64 {
    let (full, rem) = (plain / PLAIN_BLOCK as u64, plain % PLAIN_BLOCK as u64);
    full * BLOCK as u64 + if rem > 0 { rem + OVERHEAD as u64 } else { 0 }
}

/// Plaintext size of a sealed chunk of `stored` bytes; `None` when no
/// sealed chunk has that size.
pub fn plain_len(stored: u64) -> Option<u64> {
    let (full, rem) = (stored / BLOCK as u64, stored % BLOCK as u64);
    match rem {
        0 => Some(full * PLAIN_BLOCK as u64),
        r if r > OVERHEAD as u64 => Some(full * PLAIN_BLOCK as u64 + r - OVERHEAD as u64),
        _ => None,
    }
}

/// The most plaintext that seals into at most `chunk_size` stored bytes.
pub fn plain_capacity(chunk_size: u64) -> u64 {
    let (full, rem) = (chunk_size / BLOCK as u64, chunk_size % BLOCK as u64);
    full * PLAIN_BLOCK as u64 + rem.saturating_sub(OVERHEAD as u64)
}

/// The plaintext size of a file whose chunks have these stored sizes.
pub fn plain_total(stored: impl IntoIterator<Item = u64>) -> Option<u64> {
    stored
        .into_iter()
        .try_fold(0u64, |acc, s| acc.checked_add(plain_len(s)?))
}

/// Which stored bytes of a sealed chunk of `stored` bytes hold the
/// plaintext range `plain`: the stored range (whole blocks), the index of
/// its first block, and how many plaintext bytes of that block precede
/// the range.
pub fn stored_range(plain: Range<u64>, stored: u64) -> (Range<u64>, u64, u64) {
    let pb = PLAIN_BLOCK as u64;
    let first = plain.start / pb;
    let last = plain.end.saturating_sub(1).max(plain.start) / pb;
    let from = first * BLOCK as u64;
    let to = ((last + 1) * BLOCK as u64).min(stored);
    (from..to, first, plain.start - first * pb)
}

/// Why sealed bytes could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    /// A block failed its tag: wrong key, or bytes changed.
    #[error("sealed block {block} does not authenticate (wrong key, or the bytes were altered)")]
    Tag {
        /// Index of the block in its chunk.
        block: u64,
    },
    /// A block too short to hold a nonce and a tag.
    #[error("sealed block {block} is {len} bytes, too short to be sealed")]
    Short {
        /// Index of the block in its chunk.
        block: u64,
        /// Its length.
        len: usize,
    },
    /// A wrapped key that is not one (bad encoding, unknown master key).
    #[error("wrapped data key: {0}")]
    Wrapped(String),
}

/// One object's data key.
#[derive(Clone)]
pub struct DataKey(Aes256Gcm);

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DataKey(…)")
    }
}

impl DataKey {
    /// The key with these bytes.
    pub fn new(key: &[u8; 32]) -> Self {
        Self(Aes256Gcm::new(key.into()))
    }

    /// Seals `plain` as one chunk: [`sealed_len`] bytes.
    pub fn seal(&self, plain: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(sealed_len(plain.len() as u64) as usize);
        self.seal_into(plain, &mut out);
        out
    }

    /// [`DataKey::seal`] appending to `out` (a buffer to reuse: no fresh
    /// pages to fault in for every chunk).
    pub fn seal_into(&self, plain: &[u8], out: &mut Vec<u8>) {
        out.reserve(sealed_len(plain.len() as u64) as usize);
        for (i, block) in plain.chunks(PLAIN_BLOCK).enumerate() {
            let nonce: [u8; NONCE] = rand::random();
            out.extend_from_slice(&nonce);
            let at = out.len();
            out.extend_from_slice(block);
            let tag = self
                .0
                .encrypt_in_place_detached(
                    Nonce::from_slice(&nonce),
                    &block_aad(i as u64),
                    &mut out[at..],
                )
                // Only for inputs past 64 GiB per block: never here.
                .unwrap_or_default();
            out.extend_from_slice(&tag);
        }
    }

    /// Opens whole sealed blocks in place, the first being block
    /// `first_block` of its chunk: the plaintext is moved to the front of
    /// `buf`, and its length returned.
    pub fn open_in_place(&self, buf: &mut [u8], first_block: u64) -> Result<usize, SealError> {
        let mut plain = 0usize;
        let mut at = 0usize;
        let mut block = first_block;
        while at < buf.len() {
            let end = (at + BLOCK).min(buf.len());
            let len = end - at;
            if len <= OVERHEAD {
                return Err(SealError::Short { block, len });
            }
            let (head, rest) = buf[at..end].split_at_mut(NONCE);
            let (body, tag) = rest.split_at_mut(len - OVERHEAD);
            self.0
                .decrypt_in_place_detached(
                    Nonce::from_slice(head),
                    &block_aad(block),
                    body,
                    Tag::from_slice(tag),
                )
                .map_err(|_| SealError::Tag { block })?;
            let n = body.len();
            buf.copy_within(at + NONCE..at + NONCE + n, plain);
            plain += n;
            at = end;
            block += 1;
        }
        Ok(plain)
    }
}

/// Associated data of block `index` of a chunk.
fn block_aad(index: u64) -> [u8; 24] {
    let mut aad = [0u8; 24];
    aad[..16].copy_from_slice(b"blobstore chunk ");
    aad[16..].copy_from_slice(&index.to_be_bytes());
    aad
}

/// A fresh random data key.
pub fn random_key() -> [u8; 32] {
    rand::random()
}

/// Associated data of a wrapped data key.
const WRAP_AAD: &[u8] = b"blobstore sse-s3 data key v1";

/// `key` wrapped by master key `master_id`: `v1:<id>:<base64 of nonce ‖
/// ciphertext ‖ tag>`.
pub fn wrap_key(master: &DataKey, master_id: u32, key: &[u8; 32]) -> String {
    wrap_bytes(master, master_id, key, WRAP_AAD)
}

/// `plain` sealed by master key `master_id` with associated data `aad`,
/// in the format of [`wrap_key`] (any length).
pub fn wrap_bytes(master: &DataKey, master_id: u32, plain: &[u8], aad: &[u8]) -> String {
    let nonce: [u8; NONCE] = rand::random();
    let mut body = plain.to_vec();
    let tag = master
        .0
        .encrypt_in_place_detached(Nonce::from_slice(&nonce), aad, &mut body)
        .unwrap_or_default();
    let mut blob = nonce.to_vec();
    blob.extend_from_slice(&body);
    blob.extend_from_slice(&tag);
    format!(
        "v1:{master_id}:{}",
        base64::engine::general_purpose::STANDARD.encode(blob)
    )
}

/// The master key id a wrapped key names.
pub fn wrapped_key_master(wrapped: &str) -> Result<u32, SealError> {
    let mut parts = wrapped.splitn(3, ':');
    match (parts.next(), parts.next()) {
        (Some("v1"), Some(id)) => id
            .parse()
            .map_err(|_| SealError::Wrapped(format!("bad master key id {id:?}"))),
        _ => Err(SealError::Wrapped("not a v1 wrapped key".into())),
    }
}

/// Unwraps a key made by [`wrap_key`] with `master`.
pub fn unwrap_key(master: &DataKey, wrapped: &str) -> Result<[u8; 32], SealError> {
    let plain = unwrap_bytes(master, wrapped, WRAP_AAD)?;
    plain
        .try_into()
        .map_err(|p: Vec<u8>| SealError::Wrapped(format!("a {}-byte key", p.len())))
}

/// Opens what [`wrap_bytes`] sealed with `master` and `aad`.
pub fn unwrap_bytes(master: &DataKey, wrapped: &str, aad: &[u8]) -> Result<Vec<u8>, SealError> {
    let b64 = wrapped
        .splitn(3, ':')
        .nth(2)
        .ok_or_else(|| SealError::Wrapped("not a v1 wrapped key".into()))?;
    let blob = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|e| SealError::Wrapped(format!("bad base64: {e}")))?;
    if blob.len() < NONCE + TAG {
        return Err(SealError::Wrapped(format!("{} bytes", blob.len())));
    }
    let (nonce, rest) = blob.split_at(NONCE);
    let (body, tag) = rest.split_at(rest.len() - TAG);
    let mut plain = body.to_vec();
    master
        .0
        .decrypt_in_place_detached(
            Nonce::from_slice(nonce),
            aad,
            &mut plain,
            Tag::from_slice(tag),
        )
        .map_err(|_| SealError::Wrapped("does not authenticate under its master key".into()))?;
    Ok(plain)
}

/// The data key of an SSE-C object: HKDF-SHA256 of the customer's key
/// with the object's salt.
pub fn customer_data_key(customer: &[u8; 32], salt: &[u8]) -> [u8; 32] {
    let hk = hkdf::Hkdf::<Sha256>::new(Some(salt), customer);
    let mut out = [0u8; 32];
    // 32 bytes is far below HKDF-SHA256's limit.
    let _ = hk.expand(b"blobstore sse-c data key v1", &mut out);
    out
}

/// The keyed digest kept to recognise an SSE-C object's key later: an
/// HMAC-SHA256 of the salt under the customer's key.
pub fn customer_key_check(customer: &[u8; 32], salt: &[u8]) -> [u8; 32] {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(customer)
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(b"blobstore sse-c key check v1");
    mac.update(salt);
    mac.finalize().into_bytes().into()
}

/// Whether `customer` is the key whose check is `check` (base64), in
/// constant time.
pub fn customer_key_matches(customer: &[u8; 32], salt: &[u8], check: &str) -> bool {
    let Ok(want) = base64::engine::general_purpose::STANDARD.decode(check) else {
        return false;
    };
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(customer)
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(b"blobstore sse-c key check v1");
    mac.update(salt);
    mac.verify_slice(&want).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 31 % 251) as u8).collect()
    }

    #[test]
    fn sizes_round_trip() {
        for plain in [0u64, 1, 100, PLAIN_BLOCK as u64 - 1, PLAIN_BLOCK as u64] {
            assert_eq!(plain_len(sealed_len(plain)), Some(plain));
        }
        for plain in [PLAIN_BLOCK as u64 + 1, 8 << 20, (8 << 20) + 12345] {
            assert_eq!(plain_len(sealed_len(plain)), Some(plain));
            assert!(sealed_len(plain) > plain);
        }
        assert_eq!(plain_len(OVERHEAD as u64), None);
        assert_eq!(plain_len(BLOCK as u64 + 5), None);
        for chunk in [64u64 << 10, 8 << 20, (8 << 20) + 100, 1 << 20] {
            let cap = plain_capacity(chunk);
            assert!(sealed_len(cap) <= chunk);
            assert!(sealed_len(cap + 1) > chunk);
        }
        assert_eq!(
            plain_total([sealed_len(10), sealed_len(70_000)]),
            Some(70_010)
        );
        assert_eq!(plain_total([BLOCK as u64 + 3]), None);
    }

    #[test]
    fn sealing_round_trips_and_hides_the_plaintext() {
        let key = DataKey::new(&[7; 32]);
        for n in [0, 1, PLAIN_BLOCK, PLAIN_BLOCK + 1, 3 * PLAIN_BLOCK + 77] {
            let plain = data(n);
            let mut sealed = key.seal(&plain);
            assert_eq!(sealed.len() as u64, sealed_len(n as u64));
            if n >= 64 {
                assert!(!sealed.windows(64).any(|w| w == &plain[..64]));
            }
            let len = key
                .open_in_place(&mut sealed, 0)
                .unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(&sealed[..len], &plain[..]);
        }
        // Random nonces: the same plaintext never seals the same way twice.
        assert_ne!(key.seal(&data(100)), key.seal(&data(100)));
    }

    #[test]
    fn ranges_open_only_their_blocks() {
        let key = DataKey::new(&[9; 32]);
        let plain = data(5 * PLAIN_BLOCK + 1000);
        let sealed = key.seal(&plain);
        let pb = PLAIN_BLOCK as u64;
        for want in [
            0..10,
            5..pb + 3,
            pb..2 * pb,
            3 * pb - 1..5 * pb + 1000,
            5 * pb + 999..5 * pb + 1000,
        ] {
            let (range, first, skip) = stored_range(want.clone(), sealed.len() as u64);
            let mut part = sealed[range.start as usize..range.end as usize].to_vec();
            let len = key
                .open_in_place(&mut part, first)
                .unwrap_or_else(|e| panic!("{e}"));
            let got = &part[skip as usize..skip as usize + (want.end - want.start) as usize];
            assert!(len as u64 >= skip + want.end - want.start);
            assert_eq!(got, &plain[want.start as usize..want.end as usize]);
        }
    }

    #[test]
    fn wrong_keys_moved_blocks_and_flipped_bits_fail() {
        let key = DataKey::new(&[1; 32]);
        let sealed = key.seal(&data(2 * PLAIN_BLOCK));
        let mut other = sealed.clone();
        assert!(DataKey::new(&[2; 32]).open_in_place(&mut other, 0).is_err());
        let mut flipped = sealed.clone();
        flipped[BLOCK + 100] ^= 1;
        assert!(matches!(
            key.open_in_place(&mut flipped, 0),
            Err(SealError::Tag { block: 1 })
        ));
        // Block 1 presented as block 0.
        let mut moved = sealed[BLOCK..].to_vec();
        assert!(key.open_in_place(&mut moved, 0).is_err());
        let mut short = sealed[..OVERHEAD].to_vec();
        assert!(matches!(
            key.open_in_place(&mut short, 0),
            Err(SealError::Short { .. })
        ));
    }

    #[test]
    fn wrapped_keys_open_only_under_their_master() {
        let master = DataKey::new(&[3; 32]);
        let key = random_key();
        let wrapped = wrap_key(&master, 4, &key);
        assert_eq!(wrapped_key_master(&wrapped).ok(), Some(4));
        assert_eq!(unwrap_key(&master, &wrapped).ok(), Some(key));
        assert!(unwrap_key(&DataKey::new(&[4; 32]), &wrapped).is_err());
        assert!(unwrap_key(&master, "v1:4:AAAA").is_err());
        assert!(wrapped_key_master("garbage").is_err());
    }

    #[test]
    fn customer_keys_are_checked_without_being_kept() {
        let salt = [5u8; 16];
        let check =
            base64::engine::general_purpose::STANDARD.encode(customer_key_check(&[8; 32], &salt));
        assert!(customer_key_matches(&[8; 32], &salt, &check));
        assert!(!customer_key_matches(&[9; 32], &salt, &check));
        assert!(!customer_key_matches(&[8; 32], &[6u8; 16], &check));
        assert_ne!(customer_data_key(&[8; 32], &salt), [8; 32]);
        assert_ne!(
            customer_data_key(&[8; 32], &salt),
            customer_data_key(&[8; 32], &[6u8; 16])
        );
    }
}
