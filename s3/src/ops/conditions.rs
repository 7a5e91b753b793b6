//! Conditional requests: `If-Match`, `If-None-Match`,
//! `If-Modified-Since` and `If-Unmodified-Since` on reads, and their
//! `x-amz-copy-source-if-*` forms on copies, evaluated against a file's
//! ETag and modification time.

use blob_client::{FileInfo, WriteCondition};
use s3s::dto::*;
use s3s::{S3Error, S3ErrorCode, S3Result};

use super::attrs::{etag_of, timestamp};
use crate::error::s3;

/// A timestamp in whole seconds (HTTP dates have no finer unit).
pub(super) fn secs(ts: &Timestamp) -> i64 {
    time::OffsetDateTime::from(ts.clone()).unix_timestamp()
}

/// Whether an `If-Match` / `If-None-Match` value names `etag`.
pub(super) fn cond_matches(cond: &ETagCondition, etag: &str) -> bool {
    match cond {
        ETagCondition::Any => true,
        ETagCondition::ETag(e) => e.value().trim_matches('"') == etag,
    }
}

/// The condition a write's `If-Match` / `If-None-Match` put on the
/// version it replaces (S3's conditional writes): `If-None-Match: *` or
/// `If-Match: <etag>`; other forms are not something S3 does (501).
pub(super) fn write_condition(
    if_match: Option<&ETagCondition>,
    if_none_match: Option<&ETagCondition>,
) -> S3Result<Option<WriteCondition>> {
    let unsupported = |what: &str| {
        Err(s3(
            S3ErrorCode::NotImplemented,
            format!("A header you provided implies functionality that is not implemented: {what}"),
        ))
    };
    match (if_match, if_none_match) {
        (None, None) => Ok(None),
        (None, Some(ETagCondition::Any)) => Ok(Some(WriteCondition::Absent)),
        (None, Some(ETagCondition::ETag(_))) => {
            unsupported("If-None-Match with an ETag (only * is)")
        }
        (Some(ETagCondition::ETag(e)), None) => {
            Ok(Some(WriteCondition::Etag(e.value().to_string())))
        }
        (Some(ETagCondition::Any), None) => unsupported("If-Match: * (only an ETag is)"),
        (Some(_), Some(_)) => unsupported("If-Match together with If-None-Match"),
    }
}

/// Evaluates conditional headers as S3 does: 412 for If-Match /
/// If-Unmodified-Since, 304 for If-None-Match / If-Modified-Since, each
/// answer with the object's ETag and Last-Modified.
pub(super) fn check_conditions(
    file: &FileInfo,
    if_match: Option<&ETagCondition>,
    if_none_match: Option<&ETagCondition>,
    if_modified_since: Option<&Timestamp>,
    if_unmodified_since: Option<&Timestamp>,
) -> S3Result<()> {
    let etag = etag_of(file);
    let modified = (file.created_ms / 1000) as i64;
    let failed = match if_match {
        Some(c) => !cond_matches(c, &etag),
        None => if_unmodified_since.is_some_and(|t| modified > secs(t)),
    };
    if failed {
        let e = s3(
            S3ErrorCode::PreconditionFailed,
            "At least one of the pre-conditions you specified did not hold",
        );
        return Err(with_validators(e, file));
    }
    let unchanged = match if_none_match {
        Some(c) => cond_matches(c, &etag),
        None => if_modified_since.is_some_and(|t| modified <= secs(t)),
    };
    if unchanged {
        return Err(with_validators(not_modified(), file));
    }
    Ok(())
}

/// 304 Not Modified: the object did not change since the client's copy.
pub(super) fn not_modified() -> S3Error {
    let mut e = S3Error::new(S3ErrorCode::NotModified);
    e.set_status_code(http::StatusCode::NOT_MODIFIED);
    e
}

/// `e` with the file's `ETag` and `Last-Modified` headers, as S3 sends on
/// 304 and 412 answers so a client can tell which version it met.
fn with_validators(mut e: S3Error, file: &FileInfo) -> S3Error {
    let mut h = http::HeaderMap::new();
    if let Ok(v) = http::HeaderValue::from_str(&format!("\"{}\"", etag_of(file))) {
        h.insert(http::header::ETAG, v);
    }
    let mut date = Vec::new();
    if timestamp(file.created_ms)
        .format(TimestampFormat::HttpDate, &mut date)
        .is_ok()
    {
        if let Ok(v) = http::HeaderValue::from_bytes(&date) {
            h.insert(http::header::LAST_MODIFIED, v);
        }
    }
    e.set_headers(h);
    e
}

/// Evaluates the `x-amz-copy-source-if-*` headers against the copy's
/// source: every failed one is a 412.
pub(super) fn check_copy_conditions(
    src: &FileInfo,
    if_match: Option<&ETagCondition>,
    if_none_match: Option<&ETagCondition>,
    if_modified_since: Option<&Timestamp>,
    if_unmodified_since: Option<&Timestamp>,
) -> S3Result<()> {
    let etag = etag_of(src);
    let modified = (src.created_ms / 1000) as i64;
    let failed = || {
        s3(
            S3ErrorCode::PreconditionFailed,
            "At least one of the pre-conditions you specified did not hold",
        )
    };
    if let Some(m) = if_match {
        if !cond_matches(m, &etag) {
            return Err(failed());
        }
    } else if let Some(t) = if_unmodified_since {
        if modified > secs(t) {
            return Err(failed());
        }
    }
    if let Some(m) = if_none_match {
        if cond_matches(m, &etag) {
            return Err(failed());
        }
    } else if let Some(t) = if_modified_since {
        if modified <= secs(t) {
            return Err(failed());
        }
    }
    Ok(())
}
