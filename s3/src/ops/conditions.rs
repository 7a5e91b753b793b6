//! Conditional requests: `If-Match`, `If-None-Match`,
//! `If-Modified-Since` and `If-Unmodified-Since` on reads, and their
//! `x-amz-copy-source-if-*` forms on copies, evaluated against a file's
//! ETag and modification time.

use blob_client::FileInfo;
use s3s::dto::*;
use s3s::{S3Error, S3ErrorCode, S3Result};

use super::attrs::etag_of;
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

/// Evaluates conditional headers as S3 does: 412 for If-Match /
/// If-Unmodified-Since, 304 for If-None-Match / If-Modified-Since.
pub(super) fn check_conditions(
    file: &FileInfo,
    if_match: Option<&ETagCondition>,
    if_none_match: Option<&ETagCondition>,
    if_modified_since: Option<&Timestamp>,
    if_unmodified_since: Option<&Timestamp>,
) -> S3Result<()> {
    let etag = etag_of(file);
    let modified = (file.created_ms / 1000) as i64;
    match if_match {
        Some(c) if !cond_matches(c, &etag) => {
            return Err(s3(
                S3ErrorCode::PreconditionFailed,
                "At least one of the pre-conditions you specified did not hold",
            ))
        }
        Some(_) => {}
        None => {
            if let Some(t) = if_unmodified_since {
                if modified > secs(t) {
                    return Err(s3(
                        S3ErrorCode::PreconditionFailed,
                        "At least one of the pre-conditions you specified did not hold",
                    ));
                }
            }
        }
    }
    match if_none_match {
        Some(c) if cond_matches(c, &etag) => return Err(not_modified()),
        Some(_) => {}
        None => {
            if let Some(t) = if_modified_since {
                if modified <= secs(t) {
                    return Err(not_modified());
                }
            }
        }
    }
    Ok(())
}

/// 304 Not Modified: the object did not change since the client's copy.
pub(super) fn not_modified() -> S3Error {
    let mut e = S3Error::new(S3ErrorCode::NotModified);
    e.set_status_code(http::StatusCode::NOT_MODIFIED);
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
