//! The S3 operations, one module per family, each run as the signing user
//! through that user's client. Objects are files: the key is the path, and
//! the S3 attributes (ETag, content headers, `x-amz-meta-*`) live in the
//! file's metadata.
//!
//! Families: [`bucket`], [`get`] (GetObject, HeadObject), [`put`],
//! [`copy`] (CopyObject, UploadPartCopy), [`delete`], [`list`] (object
//! listings), [`multipart`], [`tagging`] and [`versioning`]. Shared by them: [`args`] (checks of names,
//! ids and numbers), [`attrs`] (object attributes in file metadata) and
//! [`conditions`] (conditional headers). [`crate::service`] holds the `S3`
//! impl that calls into these.

mod args;
mod attrs;
pub(crate) mod bucket;
mod conditions;
pub(crate) mod copy;
pub(crate) mod delete;
pub(crate) mod get;
pub(crate) mod lifecycle;
pub(crate) mod list;
pub(crate) mod multipart;
pub(crate) mod put;
mod settings;
pub(crate) mod tagging;
pub(crate) mod versioning;
