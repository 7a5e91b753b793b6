//! Request arguments: checks of bucket names, keys, upload ids and part
//! numbers (each failing with S3's code for it), and the URL encoding of
//! keys in answers (`encoding-type=url`, `Location`).

use std::str::FromStr;

use blob_common::names::{validate_bucket, validate_path};
use blob_common::UploadId;
use s3s::{S3ErrorCode, S3Result};

use crate::error::{bad_key, s3};

/// A bucket name the store accepts, or `InvalidBucketName`.
pub(super) fn check_bucket(bucket: &str) -> S3Result<()> {
    validate_bucket(bucket).map_err(|e| s3(S3ErrorCode::InvalidBucketName, e.to_string()))
}

/// A key the store can hold as a path, or S3's error for it.
pub(super) fn check_key(key: &str) -> S3Result<()> {
    validate_path(key).map_err(|e| bad_key(key, &e))
}

/// An upload id; one that cannot be ours is `NoSuchUpload`.
pub(super) fn parse_upload(id: &str) -> S3Result<UploadId> {
    UploadId::from_str(id).map_err(|_| {
        s3(
            S3ErrorCode::NoSuchUpload,
            "The specified upload does not exist.",
        )
    })
}

/// A part number, 1 to 10000.
pub(super) fn part_number(n: i32) -> S3Result<u32> {
    u32::try_from(n)
        .ok()
        .filter(|n| (1..=blob_common::proto::multipart::MAX_PARTS).contains(n))
        .ok_or_else(|| {
            s3(
                S3ErrorCode::InvalidArgument,
                "Part number must be an integer between 1 and 10000, inclusive",
            )
        })
}

/// A key as `encoding-type=url` asks for it.
pub(super) fn url_encode(s: &str) -> String {
    // S3's encoding-type=url: everything but unreserved characters and '/'.
    const SET: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~')
        .remove(b'/');
    percent_encoding::utf8_percent_encode(s, SET).to_string()
}
