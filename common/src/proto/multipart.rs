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
    /// A version of the source (versioned buckets) instead of its current
    /// one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub src_version: Option<String>,
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
    /// Complete only if the file now at the path meets this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub condition: Option<super::namenode::WriteCondition>,
}

/// Metadata key under which a completed multipart file keeps its parts'
/// sizes, as written by [`encode_part_sizes`].
pub const PART_SIZES: &str = "part-sizes";

/// Part sizes in order as `size*count` runs joined by commas (`8388608*12,
/// 1024`): parts but the last are usually all one size, so this stays
/// short for 10,000 parts.
pub fn encode_part_sizes(sizes: &[u64]) -> String {
    let mut out = String::new();
    let mut i = 0;
    while i < sizes.len() {
        let run = sizes[i..].iter().take_while(|&&s| s == sizes[i]).count();
        if !out.is_empty() {
            out.push(',');
        }
        out.push_str(&sizes[i].to_string());
        if run > 1 {
            out.push('*');
            out.push_str(&run.to_string());
        }
        i += run;
    }
    out
}

/// The part sizes [`encode_part_sizes`] wrote; `None` for anything else
/// (or more than [`MAX_PARTS`] parts).
pub fn decode_part_sizes(s: &str) -> Option<Vec<u64>> {
    let mut out = Vec::new();
    for run in s.split(',') {
        let (size, count): (u64, usize) = match run.split_once('*') {
            Some((size, count)) => (size.parse().ok()?, count.parse().ok()?),
            None => (run.parse().ok()?, 1),
        };
        if count == 0 || out.len() + count > MAX_PARTS as usize {
            return None;
        }
        out.extend(std::iter::repeat_n(size, count));
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn part_sizes_round_trip_in_runs() {
        for sizes in [
            vec![5],
            vec![8 << 20; 12],
            [vec![8 << 20; 9_999], vec![1]].concat(),
            vec![3, 3, 1, 1, 1, 7, 3],
            vec![0],
        ] {
            let s = encode_part_sizes(&sizes);
            assert_eq!(decode_part_sizes(&s), Some(sizes.clone()), "{s}");
        }
        assert_eq!(encode_part_sizes(&[6, 6, 6, 2]), "6*3,2");
        for bad in ["", "x", "5*0", "5*", "*3", "1*10001", "-1"] {
            assert_eq!(decode_part_sizes(bad), None, "{bad:?}");
        }
    }
}
