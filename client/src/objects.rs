//! Control path for object-store features: metadata-only copies and
//! multipart uploads (the namenode routes of
//! [`blob_common::proto::multipart`]). A part's bytes go through
//! [`Client::upload`] with [`crate::UploadOptions::part`] set.

use blob_common::names::{validate_bucket, validate_path};
use blob_common::proto::multipart::{
    CompleteMultipart, CopyFile, CopyPart, CreateMultipart, ListMultipart, ListMultipartQuery,
    ListParts, ListPartsQuery, MultipartInfo, PartInfo,
};
use blob_common::proto::namenode::{BucketSetting, FileInfo, UpdateMeta};
use blob_common::UploadId;
use reqwest::Method;

use crate::{Client, Error};

impl Client {
    /// A bucket's named setting, `None` when it has none (404
    /// `NoSuchBucket` for a missing bucket).
    pub async fn bucket_setting(&self, bucket: &str, name: &str) -> Result<Option<String>, Error> {
        validate_bucket(bucket)?;
        let answer = self
            .nn(Method::GET, &["bucket-settings", bucket, name])
            .decode::<BucketSetting>()
            .await;
        match answer.map_err(Error::from) {
            Ok(s) => Ok(Some(s.value)),
            Err(e) if e.code() == Some("NoSuchSetting") => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Sets a bucket's named setting, or removes it with `None`.
    pub async fn set_bucket_setting(
        &self,
        bucket: &str,
        name: &str,
        value: Option<String>,
    ) -> Result<(), Error> {
        validate_bucket(bucket)?;
        let path = ["buckets", bucket, "settings", name];
        match value {
            Some(value) => {
                self.nn(Method::PUT, &path)
                    .body(&BucketSetting { value })
                    .ok()
                    .await?
            }
            None => self.nn(Method::DELETE, &path).ok().await?,
        }
        Ok(())
    }

    /// Changes a file's metadata in place (`req.if_version`: only if it is
    /// still that version; 412 otherwise).
    pub async fn update_meta(&self, req: &UpdateMeta) -> Result<FileInfo, Error> {
        validate_bucket(&req.bucket)?;
        validate_path(&req.path)?;
        Ok(self
            .nn(Method::POST, &["file", "meta"])
            .body(req)
            .decode()
            .await?)
    }

    /// Copies a file without copying bytes: the copy shares the source's
    /// chunks. `meta: None` keeps the source's metadata.
    pub async fn copy_file(&self, req: &CopyFile) -> Result<FileInfo, Error> {
        validate_bucket(&req.src_bucket)?;
        validate_path(&req.src_path)?;
        validate_bucket(&req.bucket)?;
        validate_path(&req.path)?;
        Ok(self.nn(Method::POST, &["copy"]).body(req).decode().await?)
    }

    /// Opens a multipart upload.
    pub async fn create_multipart(&self, req: &CreateMultipart) -> Result<MultipartInfo, Error> {
        validate_bucket(&req.bucket)?;
        validate_path(&req.path)?;
        Ok(self
            .nn(Method::POST, &["multipart"])
            .body(req)
            .decode()
            .await?)
    }

    /// Lists this key's open multipart uploads in a bucket.
    pub async fn list_multipart(&self, q: &ListMultipartQuery) -> Result<ListMultipart, Error> {
        validate_bucket(&q.bucket)?;
        let limit = q.limit.map(|l| l.to_string());
        let mut pairs: Vec<(&str, &str)> = vec![("bucket", q.bucket.as_str())];
        if let Some(p) = &q.prefix {
            pairs.push(("prefix", p));
        }
        if let Some(a) = &q.after {
            pairs.push(("after", a));
        }
        if let Some(a) = &q.after_upload {
            pairs.push(("after_upload", a));
        }
        if let Some(l) = &limit {
            pairs.push(("limit", l));
        }
        Ok(self
            .nn(Method::GET, &["multipart"])
            .query(&pairs)
            .decode()
            .await?)
    }

    /// The parts uploaded so far, in number order.
    pub async fn list_parts(
        &self,
        upload: &UploadId,
        q: &ListPartsQuery,
    ) -> Result<ListParts, Error> {
        let id = upload.to_string();
        let after = q.after.map(|a| a.to_string());
        let limit = q.limit.map(|l| l.to_string());
        let mut pairs: Vec<(&str, &str)> = Vec::new();
        if let Some(a) = &after {
            pairs.push(("after", a));
        }
        if let Some(l) = &limit {
            pairs.push(("limit", l));
        }
        Ok(self
            .nn(Method::GET, &["multipart", &id, "parts"])
            .query(&pairs)
            .decode()
            .await?)
    }

    /// Makes a whole file a part of a multipart upload, sharing its chunks.
    pub async fn copy_part(&self, upload: &UploadId, req: &CopyPart) -> Result<PartInfo, Error> {
        let id = upload.to_string();
        Ok(self
            .nn(Method::POST, &["multipart", &id, "copy-part"])
            .body(req)
            .decode()
            .await?)
    }

    /// Completes a multipart upload: the file is the named parts' chunks in
    /// order, made visible atomically.
    pub async fn complete_multipart(
        &self,
        upload: &UploadId,
        req: &CompleteMultipart,
    ) -> Result<FileInfo, Error> {
        let id = upload.to_string();
        Ok(self
            .nn(Method::POST, &["multipart", &id, "complete"])
            .body(req)
            .decode()
            .await?)
    }

    /// Abandons a multipart upload and releases its parts.
    pub async fn abort_multipart(&self, upload: &UploadId) -> Result<(), Error> {
        let id = upload.to_string();
        Ok(self.nn(Method::DELETE, &["multipart", &id]).ok().await?)
    }
}
