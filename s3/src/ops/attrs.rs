//! S3 object attributes and where they are kept: the ETag, the content
//! headers and `x-amz-meta-*` live in the file's metadata under the keys
//! below; also the conversions of ETags and times into S3's types.

use std::collections::BTreeMap;
use std::time::{Duration, UNIX_EPOCH};

use blob_client::FileInfo;
use s3s::dto::*;

/// Metadata keys that hold S3 attributes (besides `x-amz-meta-*`).
pub(super) const ETAG: &str = "etag";
pub(super) const CONTENT_TYPE: &str = "content-type";
pub(super) const CONTENT_DISPOSITION: &str = "content-disposition";
pub(super) const CONTENT_ENCODING: &str = "content-encoding";
pub(super) const CONTENT_LANGUAGE: &str = "content-language";
pub(super) const CACHE_CONTROL: &str = "cache-control";
pub(super) const USER_META: &str = "x-amz-meta-";

/// Milliseconds since the epoch as an S3 timestamp.
pub(super) fn timestamp(ms: u64) -> Timestamp {
    Timestamp::from(UNIX_EPOCH + Duration::from_millis(ms))
}

/// A file's ETag: the stored one, or its version for a file written
/// outside S3.
pub(super) fn etag_of(file: &FileInfo) -> String {
    file.meta
        .get(ETAG)
        .cloned()
        .unwrap_or_else(|| file.version.to_string())
}

/// `etag` as a strong ETag, the only kind S3 answers with.
pub(super) fn strong(etag: &str) -> ETag {
    ETag::Strong(etag.to_string())
}

/// Metadata to store from an upload's headers.
pub(super) fn object_meta(
    content_type: Option<String>,
    disposition: Option<String>,
    encoding: Option<String>,
    language: Option<String>,
    cache_control: Option<String>,
    user: Option<Metadata>,
) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    for (k, v) in [
        (CONTENT_TYPE, content_type),
        (CONTENT_DISPOSITION, disposition),
        (CONTENT_ENCODING, encoding),
        (CONTENT_LANGUAGE, language),
        (CACHE_CONTROL, cache_control),
    ] {
        if let Some(v) = v {
            m.insert(k.to_string(), v);
        }
    }
    for (k, v) in user.unwrap_or_default() {
        m.insert(format!("{USER_META}{}", k.to_ascii_lowercase()), v);
    }
    m
}

/// The `x-amz-meta-*` entries of a file, without their prefix.
pub(super) fn user_meta(file: &FileInfo) -> Option<Metadata> {
    let m: Metadata = file
        .meta
        .iter()
        .filter_map(|(k, v)| {
            k.strip_prefix(USER_META)
                .map(|k| (k.to_string(), v.clone()))
        })
        .collect();
    (!m.is_empty()).then_some(m)
}
