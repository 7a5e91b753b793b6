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
/// `Expires`, kept as the HTTP date it was sent as.
pub(super) const EXPIRES: &str = "expires";
/// Additional checksums a writer sent (and that matched), as
/// `checksum-crc32` and so on, base64 as S3 gives them.
pub(super) const CHECKSUM_PREFIX: &str = "checksum-";
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

/// Metadata to store from the headers of a write's input (PutObject,
/// CreateMultipartUpload, CopyObject: their input types share these field
/// names).
macro_rules! object_meta {
    ($i:expr) => {
        $crate::ops::attrs::meta_from_headers(
            [
                $i.content_type.clone(),
                $i.content_disposition.clone(),
                $i.content_encoding.clone(),
                $i.content_language.clone(),
                $i.cache_control.clone(),
            ],
            $i.expires.as_ref(),
            $i.metadata.clone(),
        )
    };
}
pub(super) use object_meta;

/// Metadata to store from an upload's headers: the content headers (in
/// the order of [`object_meta!`]), `Expires` and `x-amz-meta-*`.
/// `aws-chunked` is a transfer detail, not the object's encoding: it is
/// dropped from `Content-Encoding`.
pub(super) fn meta_from_headers(
    content: [Option<String>; 5],
    expires: Option<&Timestamp>,
    user: Option<Metadata>,
) -> BTreeMap<String, String> {
    let [content_type, disposition, encoding, language, cache_control] = content;
    let encoding = encoding
        .map(|e| {
            e.split(',')
                .map(str::trim)
                .filter(|t| !t.is_empty() && !t.eq_ignore_ascii_case("aws-chunked"))
                .collect::<Vec<_>>()
                .join(",")
        })
        .filter(|e| !e.is_empty());
    let expires = expires.and_then(|t| {
        let mut out = Vec::new();
        t.format(TimestampFormat::HttpDate, &mut out).ok()?;
        String::from_utf8(out).ok()
    });
    let mut m = BTreeMap::new();
    for (k, v) in [
        (CONTENT_TYPE, content_type),
        (CONTENT_DISPOSITION, disposition),
        (CONTENT_ENCODING, encoding),
        (CONTENT_LANGUAGE, language),
        (CACHE_CONTROL, cache_control),
        (EXPIRES, expires),
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

/// The metadata that describes a file's bytes rather than how to serve
/// them (ETag, part sizes, checksums): a copy keeps it even when it
/// replaces the rest.
pub(super) fn byte_attrs(file: &FileInfo) -> impl Iterator<Item = (String, String)> + '_ {
    file.meta
        .iter()
        .filter(|(k, _)| {
            k.as_str() == ETAG
                || k.as_str() == blob_client::PART_SIZES
                || k.starts_with(CHECKSUM_PREFIX)
        })
        .map(|(k, v)| (k.clone(), v.clone()))
}

/// The additional checksums kept for a file (those a writer sent).
pub(super) fn checksums_of(file: &FileInfo) -> Option<Checksum> {
    let get = |algo: &str| file.meta.get(&format!("{CHECKSUM_PREFIX}{algo}")).cloned();
    let c = Checksum {
        checksum_crc32: get("crc32"),
        checksum_crc32c: get("crc32c"),
        checksum_crc64nvme: get("crc64nvme"),
        checksum_sha1: get("sha1"),
        checksum_sha256: get("sha256"),
        ..Default::default()
    };
    let any = c.checksum_crc32.is_some()
        || c.checksum_crc32c.is_some()
        || c.checksum_crc64nvme.is_some()
        || c.checksum_sha1.is_some()
        || c.checksum_sha256.is_some();
    any.then(|| Checksum {
        checksum_type: Some(ChecksumType::from_static(ChecksumType::FULL_OBJECT)),
        ..c
    })
}

/// A file's stored `Expires`.
pub(super) fn expires_of(file: &FileInfo) -> Option<Timestamp> {
    let v = file.meta.get(EXPIRES)?;
    Timestamp::parse(TimestampFormat::HttpDate, v).ok()
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
