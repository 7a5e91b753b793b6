//! The namenode's object API for the S3 gateway: metadata-only copies and
//! multipart uploads.
//!
//! Routes (signed like every namenode call, see [`crate::auth`]):
//! - `POST /v1/copy` [`CopyFile`] → [`super::namenode::FileInfo`]: a new file
//!   record sharing the source's chunks (no bytes copied)
//! - `POST /v1/multipart` [`CreateMultipart`] → [`MultipartInfo`];
//!   `GET /v1/multipart?bucket=&prefix=&after=&limit=` → [`ListMultipart`];
//!   `GET /v1/multipart/{id}/parts?after=&limit=` → [`ListParts`];
//!   `POST /v1/multipart/{id}/copy-part` [`CopyPart`] → [`PartInfo`];
//!   `POST /v1/multipart/{id}/complete` [`CompleteMultipart`] → `FileInfo`
//!   (400 `InvalidPart`, `InvalidPartOrder`, `EntityTooSmall`);
//!   `DELETE /v1/multipart/{id}` → 204 (404 `NoSuchUpload`)
//!
//! A part's bytes travel as a normal upload session (`POST /v1/uploads`)
//! whose commit names the part ([`super::namenode::CommitUpload::part`])
//! instead of writing a file; uploading a part number again replaces it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::UploadId;

/// Most parts in one multipart upload (S3's limit).
pub const MAX_PARTS: u32 = 10_000;

/// Body of `POST /v1/copy`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CopyFile {
    /// Source bucket.
    pub src_bucket: String,
    /// Source path.
    pub src_path: String,
    /// Destination bucket.
    pub bucket: String,
    /// Destination path (an existing file there is replaced).
    pub path: String,
    /// Metadata of the copy; `None` keeps the source's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meta: Option<BTreeMap<String, String>>,
}

/// Where a commit puts its chunks when it uploads a part.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartTarget {
    /// The multipart upload.
    pub upload: UploadId,
    /// Part number, 1 to [`MAX_PARTS`].
    pub number: u32,
}

/// Body of `POST /v1/multipart`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CreateMultipart {
    /// Bucket.
    pub bucket: String,
    /// Path the completed object will have.
    pub path: String,
    /// Metadata the completed object will carry.
    #[serde(default)]
    pub meta: BTreeMap<String, String>,
}

/// An open multipart upload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MultipartInfo {
    /// Its id.
    pub upload: UploadId,
    /// Bucket.
    pub bucket: String,
    /// Path of the object it will complete into.
    pub path: String,
    /// Creation time, ms since the epoch.
    pub created_ms: u64,
    /// Metadata the object will carry.
    #[serde(default)]
    pub meta: BTreeMap<String, String>,
}

/// Query of `GET /v1/multipart`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ListMultipartQuery {
    /// Bucket.
    pub bucket: String,
    /// Only paths starting with this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// Only uploads whose `(path, id)` sorts after this path (and, with
    /// `after_upload`, after that id for the same path).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
    /// Upload id to continue after, for the path `after`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after_upload: Option<String>,
    /// At most this many (default and cap 1000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
}

/// Answer to `GET /v1/multipart`: uploads by path, then id.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ListMultipart {
    /// The uploads.
    pub uploads: Vec<MultipartInfo>,
    /// More remain after the last one.
    pub truncated: bool,
}

/// One uploaded part.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartInfo {
    /// Part number.
    pub number: u32,
    /// Hex MD5 of its bytes (its S3 ETag, unquoted).
    pub etag: String,
    /// Bytes.
    pub size: u64,
    /// Upload time, ms since the epoch.
    pub created_ms: u64,
}

/// Query of `GET /v1/multipart/{id}/parts`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ListPartsQuery {
    /// Only parts numbered above this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<u32>,
    /// At most this many (default and cap 1000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
}

/// Answer to `GET /v1/multipart/{id}/parts`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ListParts {
    /// The upload.
    pub upload: MultipartInfo,
    /// Parts in number order.
    pub parts: Vec<PartInfo>,
    /// More remain after the last one.
    pub truncated: bool,
}

/// Body of `POST /v1/multipart/{id}/copy-part`: part `number` becomes the
/// whole source file, sharing its chunks. Refused (400 `NotCopyable`) when
/// the source's MD5 is not known (it was itself a multipart upload).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CopyPart {
    /// Part number.
    pub number: u32,
    /// Source bucket.
    pub src_bucket: String,
    /// Source path.
    pub src_path: String,
}

/// One part named by a complete request.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CompletePart {
    /// Part number.
    pub number: u32,
    /// The ETag the uploader got for it (quotes optional).
    pub etag: String,
}

/// Body of `POST /v1/multipart/{id}/complete`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CompleteMultipart {
    /// Parts in ascending number order.
    pub parts: Vec<CompletePart>,
    /// Smallest size of every part but the last (S3: 5 MiB).
    pub min_part_size: u64,
}
