//! Identifier newtypes. Each displays as lowercase hex, parses from hex with
//! validation, and serializes as a hex string.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};

/// The error for an identifier that is not well-formed hex of the right length.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {kind}: expected {len} lowercase hex characters")]
pub struct ParseIdError {
    kind: &'static str,
    len: usize,
}

macro_rules! hex_id {
    ($(#[$doc:meta])* $name:ident, $bytes:expr, $kind:expr) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub [u8; $bytes]);

        impl $name {
            /// The raw bytes.
            pub fn as_bytes(&self) -> &[u8; $bytes] {
                &self.0
            }

            /// A short form (first 12 hex characters) for log fields.
            pub fn short(&self) -> String {
                let mut s = self.to_string();
                s.truncate(12);
                s
            }

            /// Builds the id from raw bytes of the right length.
            pub fn from_slice(b: &[u8]) -> Option<Self> {
                <[u8; $bytes]>::try_from(b).ok().map(Self)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                let mut buf = [0u8; $bytes * 2];
                // Encoding into a buffer of exactly twice the length cannot fail.
                hex::encode_to_slice(self.0, &mut buf).map_err(|_| fmt::Error)?;
                f.write_str(std::str::from_utf8(&buf).map_err(|_| fmt::Error)?)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.short())
            }
        }

        impl FromStr for $name {
            type Err = ParseIdError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                let err = ParseIdError { kind: $kind, len: $bytes * 2 };
                if s.len() != $bytes * 2 || s.bytes().any(|c| c.is_ascii_uppercase()) {
                    return Err(err);
                }
                let mut out = [0u8; $bytes];
                hex::decode_to_slice(s, &mut out).map_err(|_| err)?;
                Ok(Self(out))
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = std::borrow::Cow::<'de, str>::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

hex_id!(
    /// A chunk's id: the SHA-256 of its bytes. Chunks are immutable and
    /// content-addressed, so equal ids mean equal bytes.
    ChunkId,
    32,
    "chunk id"
);
hex_id!(
    /// A datanode's id, made at random on its first start and kept in its
    /// data directory.
    NodeId,
    8,
    "node id"
);
hex_id!(
    /// An upload session's id (also the version id of the file it commits).
    UploadId,
    16,
    "upload id"
);

impl ChunkId {
    /// The id of a chunk with these bytes.
    pub fn of(buf: &[u8]) -> Self {
        Self(Sha256::digest(buf).into())
    }

    /// The id from a finished SHA-256 hasher.
    pub fn from_hasher(h: Sha256) -> Self {
        Self(h.finalize().into())
    }
}

impl NodeId {
    /// A fresh random node id.
    pub fn random() -> Self {
        Self(rand::random())
    }
}

impl UploadId {
    /// A fresh random upload id.
    pub fn random() -> Self {
        Self(rand::random())
    }
}

/// Header carrying a request's id, forwarded across services so one
/// operation can be followed through every log.
pub const REQUEST_ID: &str = "x-request-id";

/// A fresh random request id (16 hex characters).
pub fn new_request_id() -> String {
    hex::encode(rand::random::<[u8; 8]>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_id_round_trips_through_hex_and_json() {
        let id = ChunkId::of(b"hello");
        let s = id.to_string();
        assert_eq!(
            s,
            "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
        );
        assert_eq!(s.parse::<ChunkId>().ok(), Some(id));
        let json = serde_json::to_string(&id).unwrap_or_default();
        assert_eq!(json, format!("\"{s}\""));
        assert_eq!(serde_json::from_str::<ChunkId>(&json).ok(), Some(id));
        assert_eq!(id.short(), "2cf24dba5fb0");
    }

    #[test]
    fn bad_hex_is_rejected() {
        assert!("abc".parse::<ChunkId>().is_err());
        assert!("zz".repeat(32).parse::<ChunkId>().is_err());
        assert!("AB".repeat(8).parse::<NodeId>().is_err());
        assert!("ab".repeat(8).parse::<NodeId>().is_ok());
    }
}
