//! Control path: the client's calls to the namenode, one method per route
//! of [`blob_common::proto::namenode`] (and of `proto::multipart` in
//! `objects.rs`), all sent through the shared namenode client
//! [`blob_rpc::Namenode`] (signing, request ids, retries, error answers).
//! Names are validated locally before anything is sent.

use blob_common::names::{validate_bucket, validate_path};
use blob_common::proto::keys::{
    BucketDetails, CreateKey, GrantChange, KeyCreated, KeyDetails, KeyLimits, ListKeys, Quota,
    RotateKey,
};
use blob_common::proto::namenode::{
    BadReplica, BucketInfo, ChunkBatch, ChunkRef, ClusterStatus, CommitUpload, CreateUpload,
    Decommission, DeleteOutcome, FileInfo, FileLocations, FsckQuery, FsckReport, ListBuckets,
    ListFiles, ListFilesQuery, ListNodes, ListVersions, ListVersionsQuery, ManifestPage,
    NodeStatus, PutTarget, RenameRequest, Retarget, UploadPlan, MAX_PAGE,
};
use blob_common::{NodeId, UploadId};
use std::future::Future;
use std::time::Duration;

use reqwest::{Method, Url};

use crate::error::Error;
use crate::Client;

impl Client {
    /// The namenode URL for `/v1/<segments…>` with `query` pairs.
    pub(crate) fn meta_url(&self, segments: &[&str], query: &[(&str, &str)]) -> Url {
        self.inner.nn.url(segments, query)
    }

    /// A namenode call on `/v1/<segments…>` carrying this handle's
    /// request id, bounded as a whole by
    /// [`ClientConfig::request_timeout`](crate::ClientConfig::request_timeout).
    pub(crate) fn nn(&self, method: Method, segments: &[&str]) -> NnCall<'_> {
        let limit = self.inner.cfg.request_timeout;
        NnCall {
            // Each attempt is given a little more than the whole call, so
            // the deadline below is what ends a call to a namenode that
            // does not answer: once, with a clear error, and no retry of
            // an attempt that used up the caller's time.
            call: self
                .inner
                .nn
                .call(method, segments)
                .request_id(self.request_id())
                .timeout(limit + Duration::from_secs(1)),
            limit,
        }
    }

    /// Creates a bucket (409 `BucketAlreadyExists` if it exists).
    pub async fn create_bucket(&self, bucket: &str) -> Result<BucketInfo, Error> {
        validate_bucket(bucket)?;
        Ok(self.nn(Method::PUT, &["buckets", bucket]).decode().await?)
    }

    /// Deletes an empty bucket (409 `BucketNotEmpty`, 404 `NoSuchBucket`).
    pub async fn delete_bucket(&self, bucket: &str) -> Result<(), Error> {
        validate_bucket(bucket)?;
        Ok(self.nn(Method::DELETE, &["buckets", bucket]).ok().await?)
    }

    /// Whether a bucket exists.
    pub async fn head_bucket(&self, bucket: &str) -> Result<bool, Error> {
        validate_bucket(bucket)?;
        match self.nn(Method::HEAD, &["buckets", bucket]).ok().await {
            Ok(()) => Ok(true),
            Err(e) if e.is_not_found() => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Every bucket, by name.
    pub async fn list_buckets(&self) -> Result<ListBuckets, Error> {
        Ok(self.nn(Method::GET, &["buckets"]).decode().await?)
    }

    /// One page of a bucket listing.
    pub async fn list_files(&self, bucket: &str, q: &ListFilesQuery) -> Result<ListFiles, Error> {
        validate_bucket(bucket)?;
        let limit = q.limit.map(|l| l.to_string());
        let mut query: Vec<(&str, &str)> = Vec::new();
        if let Some(p) = &q.prefix {
            query.push(("prefix", p));
        }
        if let Some(d) = &q.delimiter {
            query.push(("delimiter", d));
        }
        if let Some(s) = &q.start_after {
            query.push(("start_after", s));
        }
        if let Some(l) = &limit {
            query.push(("limit", l));
        }
        Ok(self
            .nn(Method::GET, &["buckets", bucket, "files"])
            .query(&query)
            .decode()
            .await?)
    }

    /// A whole listing: follows `next_start_after` until the end and
    /// returns every file and common prefix in one answer.
    pub async fn list_all(&self, bucket: &str, q: &ListFilesQuery) -> Result<ListFiles, Error> {
        let mut q = q.clone();
        let mut all = ListFiles::default();
        loop {
            let page = self.list_files(bucket, &q).await?;
            all.files.extend(page.files);
            all.common_prefixes.extend(page.common_prefixes);
            match page.next_start_after {
                Some(next) if q.start_after.as_deref() != Some(next.as_str()) => {
                    q.start_after = Some(next);
                }
                Some(next) => {
                    let url = self.meta_url(&["buckets", bucket, "files"], &[]);
                    return Err(Error::protocol(
                        &url,
                        format!("listing does not advance past {next:?}"),
                    ));
                }
                None => return Ok(all),
            }
        }
    }

    /// A committed file (404 `NoSuchFile`).
    pub async fn stat(&self, bucket: &str, path: &str) -> Result<FileInfo, Error> {
        self.stat_version(bucket, path, None).await
    }

    /// A version of a file in a versioned bucket (`null` for the null
    /// version; `None`: the current one). 404 `NoSuchVersion` for an
    /// unknown version, 405 `MethodNotAllowed` for a delete marker.
    pub async fn stat_version(
        &self,
        bucket: &str,
        path: &str,
        version: Option<&str>,
    ) -> Result<FileInfo, Error> {
        validate_bucket(bucket)?;
        validate_path(path)?;
        let mut query = vec![("bucket", bucket), ("path", path)];
        if let Some(v) = version {
            query.push(("version", v));
        }
        Ok(self
            .nn(Method::GET, &["file"])
            .query(&query)
            .decode()
            .await?)
    }

    /// Every version of the files under `q.prefix` (versioned buckets),
    /// a page at a time.
    pub async fn list_versions(
        &self,
        bucket: &str,
        q: &ListVersionsQuery,
    ) -> Result<ListVersions, Error> {
        validate_bucket(bucket)?;
        let limit = q.limit.map(|l| l.to_string());
        let mut query: Vec<(&str, &str)> = Vec::new();
        for (k, v) in [
            ("prefix", q.prefix.as_deref()),
            ("key_marker", q.key_marker.as_deref()),
            ("version_marker", q.version_marker.as_deref()),
            ("limit", limit.as_deref()),
        ] {
            if let Some(v) = v {
                query.push((k, v));
            }
        }
        Ok(self
            .nn(Method::GET, &["buckets", bucket, "versions"])
            .query(&query)
            .decode()
            .await?)
    }

    /// Deletes a file, or with `version` that version of it for good. In a
    /// bucket whose versioning was turned on, deleting the file leaves a
    /// delete marker, which the answer names.
    pub async fn delete_path(
        &self,
        bucket: &str,
        path: &str,
        version: Option<&str>,
    ) -> Result<DeleteOutcome, Error> {
        validate_bucket(bucket)?;
        validate_path(path)?;
        let mut query = vec![("bucket", bucket), ("path", path)];
        if let Some(v) = version {
            query.push(("version", v));
        }
        Ok(self
            .nn(Method::DELETE, &["file"])
            .query(&query)
            .decode()
            .await?)
    }

    /// [`Client::locations`] of one version of the file (`null` for the
    /// null version).
    pub async fn locations_of_version(
        &self,
        bucket: &str,
        path: &str,
        version: &str,
    ) -> Result<FileLocations, Error> {
        self.locations_query(bucket, path, None, Some(version))
            .await
    }

    /// A file with a pre-signed GET URL per replica of each chunk (the
    /// first one an edge cache's, when the cluster has edges; see
    /// [`crate::ClientConfig::zone`]).
    /// Large files come in pages of [`MAX_PAGE`] chunks; a file replaced
    /// between two pages is read again from the start.
    pub async fn locations(&self, bucket: &str, path: &str) -> Result<FileLocations, Error> {
        self.locations_unless(bucket, path, None).await
    }

    /// [`Client::locations`], unless `known` is still the file's version:
    /// then the answer is only the file, with
    /// [`FileLocations::unchanged`] set and no chunks, so a caller that
    /// keeps locations (the S3 gateway) checks them in one light round
    /// trip.
    pub async fn locations_unless(
        &self,
        bucket: &str,
        path: &str,
        known: Option<UploadId>,
    ) -> Result<FileLocations, Error> {
        self.locations_query(bucket, path, known, None).await
    }

    async fn locations_query(
        &self,
        bucket: &str,
        path: &str,
        known: Option<UploadId>,
        version: Option<&str>,
    ) -> Result<FileLocations, Error> {
        validate_bucket(bucket)?;
        validate_path(path)?;
        let limit = MAX_PAGE.to_string();
        let known = known.map(|v| v.to_string());
        let mut attempts = 0;
        'file: loop {
            attempts += 1;
            let mut all: Option<FileLocations> = None;
            let mut first = 0u64;
            loop {
                let first_s = first.to_string();
                let mut query = vec![("bucket", bucket), ("path", path)];
                if let Some(zone) = &self.inner.cfg.zone {
                    query.push(("zone", zone));
                }
                if self.inner.cfg.direct {
                    query.push(("direct", "true"));
                }
                if let Some(v) = version {
                    query.push(("version", v));
                }
                query.push(("first", &first_s));
                query.push(("limit", &limit));
                if let (Some(v), 0) = (&known, first) {
                    query.push(("unless_version", v));
                }
                let page: FileLocations = self
                    .nn(Method::GET, &["file", "locations"])
                    .query(&query)
                    .decode()
                    .await?;
                if page.unchanged {
                    return Ok(page);
                }
                let next = page.next;
                match &mut all {
                    None => all = Some(page),
                    Some(a) if a.file.version == page.file.version => a.chunks.extend(page.chunks),
                    Some(_) if attempts < 3 => continue 'file,
                    Some(_) => {
                        return Err(Error::protocol(
                            &self.meta_url(&["file", "locations"], &[]),
                            "the file kept changing while its locations were read",
                        ))
                    }
                }
                match next {
                    Some(n) if n > first => first = n,
                    Some(_) => {
                        return Err(Error::protocol(
                            &self.meta_url(&["file", "locations"], &[]),
                            "locations page does not advance",
                        ))
                    }
                    None => break,
                }
            }
            let Some(mut all) = all else {
                continue;
            };
            if all.file.chunks.is_empty() {
                all.file.chunks = all
                    .chunks
                    .iter()
                    .map(|c| ChunkRef {
                        id: c.id,
                        size: c.size,
                    })
                    .collect();
            }
            all.next = None;
            return Ok(all);
        }
    }

    /// Deletes a file.
    pub async fn delete_file(&self, bucket: &str, path: &str) -> Result<(), Error> {
        validate_bucket(bucket)?;
        validate_path(path)?;
        Ok(self
            .nn(Method::DELETE, &["file"])
            .query(&[("bucket", bucket), ("path", path)])
            .ok()
            .await?)
    }

    /// Renames a file inside a bucket; a file at `to` is replaced.
    pub async fn rename(&self, bucket: &str, from: &str, to: &str) -> Result<FileInfo, Error> {
        validate_bucket(bucket)?;
        validate_path(from)?;
        validate_path(to)?;
        let body = RenameRequest {
            bucket: bucket.to_string(),
            from: from.to_string(),
            to: to.to_string(),
        };
        Ok(self
            .nn(Method::POST, &["rename"])
            .body(&body)
            .decode()
            .await?)
    }

    /// Opens an upload session, planning its first batch of chunks.
    pub async fn create_upload(&self, req: &CreateUpload) -> Result<UploadPlan, Error> {
        validate_bucket(&req.bucket)?;
        validate_path(&req.path)?;
        Ok(self
            .nn(Method::POST, &["uploads"])
            .body(req)
            .decode()
            .await?)
    }

    /// Plans more chunks of a session and/or reports receipts.
    pub async fn send_batch(
        &self,
        upload: &UploadId,
        batch: &ChunkBatch,
    ) -> Result<UploadPlan, Error> {
        let id = upload.to_string();
        Ok(self
            .nn(Method::POST, &["uploads", &id, "chunks"])
            .body(batch)
            .decode()
            .await?)
    }

    /// A new pipeline for the replicas a chunk still lacks.
    pub async fn retarget(&self, upload: &UploadId, req: &Retarget) -> Result<PutTarget, Error> {
        let id = upload.to_string();
        Ok(self
            .nn(Method::POST, &["uploads", &id, "retarget"])
            .body(req)
            .decode()
            .await?)
    }

    /// Stages one page of a long chunk list for the session's commit.
    pub async fn send_manifest_page(
        &self,
        upload: &UploadId,
        page: &ManifestPage,
    ) -> Result<(), Error> {
        let id = upload.to_string();
        Ok(self
            .nn(Method::POST, &["uploads", &id, "manifest"])
            .body(page)
            .ok()
            .await?)
    }

    /// Commits a session: the file becomes visible atomically.
    pub async fn commit_upload(
        &self,
        upload: &UploadId,
        req: &CommitUpload,
    ) -> Result<FileInfo, Error> {
        let id = upload.to_string();
        Ok(self
            .nn(Method::POST, &["uploads", &id, "commit"])
            .body(req)
            .decode()
            .await?)
    }

    /// Abandons a session. [`Client::upload`] never does this by itself:
    /// a session left behind lets the same upload resume.
    pub async fn abort_upload(&self, upload: &UploadId) -> Result<(), Error> {
        let id = upload.to_string();
        Ok(self.nn(Method::DELETE, &["uploads", &id]).ok().await?)
    }

    /// Reports a replica that served bytes not matching its chunk id.
    pub async fn report_bad_replica(&self, req: &BadReplica) -> Result<(), Error> {
        Ok(self
            .nn(Method::POST, &["chunks", "bad"])
            .body(req)
            .ok()
            .await?)
    }

    /// Every datanode the namenode knows, with its state and usage
    /// (admin keys only).
    pub async fn list_nodes(&self) -> Result<ListNodes, Error> {
        Ok(self.nn(Method::GET, &["admin", "nodes"]).decode().await?)
    }

    /// Nodes plus chunk health counts, from a scan of every chunk
    /// (admin keys only).
    pub async fn cluster_status(&self) -> Result<ClusterStatus, Error> {
        Ok(self.nn(Method::GET, &["admin", "status"]).decode().await?)
    }

    /// Checks every file under `q.bucket` (all buckets when `None`) and
    /// `q.prefix`, listing files with missing, under-replicated or corrupt
    /// chunks (admin keys only; 404 `NoSuchBucket`).
    pub async fn fsck(&self, q: &FsckQuery) -> Result<FsckReport, Error> {
        let mut query: Vec<(&str, &str)> = Vec::new();
        if let Some(b) = &q.bucket {
            validate_bucket(b)?;
            query.push(("bucket", b));
        }
        if let Some(p) = &q.prefix {
            query.push(("prefix", p));
        }
        Ok(self
            .nn(Method::GET, &["admin", "fsck"])
            .query(&query)
            .decode()
            .await?)
    }

    /// Starts draining a datanode: it takes no new replicas and its chunks
    /// are copied elsewhere. Returns the node's new status (admin keys only).
    pub async fn decommission(&self, node: NodeId) -> Result<NodeStatus, Error> {
        Ok(self
            .nn(Method::POST, &["admin", "decommission"])
            .body(&Decommission { node })
            .decode()
            .await?)
    }

    /// Makes an access key; the answer is the only place its secret is
    /// shown (admin keys only).
    pub async fn create_key(&self, req: &CreateKey) -> Result<KeyCreated, Error> {
        Ok(self
            .nn(Method::POST, &["admin", "keys"])
            .body(req)
            .decode()
            .await?)
    }

    /// Every access key (admin keys only).
    pub async fn list_keys(&self) -> Result<ListKeys, Error> {
        Ok(self.nn(Method::GET, &["admin", "keys"]).decode().await?)
    }

    /// A key and the buckets it may use (admin keys only; 404
    /// `NoSuchAccessKey`).
    pub async fn key_info(&self, access_key: &str) -> Result<KeyDetails, Error> {
        Ok(self
            .nn(Method::GET, &["admin", "keys", access_key])
            .decode()
            .await?)
    }

    /// Deletes a key: it stops working at once (admin keys only).
    pub async fn delete_key(&self, access_key: &str) -> Result<(), Error> {
        Ok(self
            .nn(Method::DELETE, &["admin", "keys", access_key])
            .ok()
            .await?)
    }

    /// Gives a key a second secret that works beside the first (admin keys
    /// only).
    pub async fn rotate_key(&self, access_key: &str) -> Result<KeyCreated, Error> {
        Ok(self
            .nn(Method::POST, &["admin", "keys", access_key, "rotate"])
            .body(&RotateKey { retire_old: false })
            .decode()
            .await?)
    }

    /// Drops the older of a key's two secrets (admin keys only).
    pub async fn retire_old_secret(&self, access_key: &str) -> Result<KeyDetails, Error> {
        Ok(self
            .nn(Method::POST, &["admin", "keys", access_key, "rotate"])
            .body(&RotateKey { retire_old: true })
            .decode()
            .await?)
    }

    /// Sets a key's rate limits (admin keys only).
    pub async fn set_key_limits(
        &self,
        access_key: &str,
        limits: &KeyLimits,
    ) -> Result<KeyDetails, Error> {
        Ok(self
            .nn(Method::PUT, &["admin", "keys", access_key, "limits"])
            .body(limits)
            .decode()
            .await?)
    }

    /// A bucket's owner, grants, usage and quota (admin keys only).
    pub async fn bucket_info(&self, bucket: &str) -> Result<BucketDetails, Error> {
        validate_bucket(bucket)?;
        Ok(self
            .nn(Method::GET, &["admin", "buckets", bucket])
            .decode()
            .await?)
    }

    /// Adds (`allow`) or removes a key's permissions on a bucket (admin
    /// keys only).
    pub async fn change_grant(
        &self,
        bucket: &str,
        change: &GrantChange,
    ) -> Result<BucketDetails, Error> {
        validate_bucket(bucket)?;
        Ok(self
            .nn(Method::POST, &["admin", "buckets", bucket, "grants"])
            .body(change)
            .decode()
            .await?)
    }

    /// Sets a bucket's quota (admin keys only).
    pub async fn set_quota(&self, bucket: &str, quota: &Quota) -> Result<BucketDetails, Error> {
        validate_bucket(bucket)?;
        Ok(self
            .nn(Method::PUT, &["admin", "buckets", bucket, "quota"])
            .body(quota)
            .decode()
            .await?)
    }
}

/// A namenode call being put together ([`blob_rpc::Call`]); sending it
/// with [`NnCall::decode`] or [`NnCall::ok`] fails with
/// [`Error::Timeout`] once `limit` has passed, retries included.
#[must_use = "a call does nothing until it is sent"]
pub(crate) struct NnCall<'a> {
    call: blob_rpc::Call<'a>,
    limit: Duration,
}

impl NnCall<'_> {
    /// Adds query pairs (percent-encoded).
    pub(crate) fn query(mut self, pairs: &[(&str, &str)]) -> Self {
        self.call = self.call.query(pairs);
        self
    }

    /// Sends `body` as JSON.
    pub(crate) fn body(mut self, body: &(impl serde::Serialize + ?Sized)) -> Self {
        self.call = self.call.body(body);
        self
    }

    /// Sends the call and decodes its JSON answer.
    pub(crate) async fn decode<T: serde::de::DeserializeOwned>(self) -> Result<T, NnError> {
        let url = self.call.url().clone();
        bounded(&url, self.limit, self.call.decode()).await
    }

    /// Sends the call; its answer's body is of no interest.
    pub(crate) async fn ok(self) -> Result<(), NnError> {
        let url = self.call.url().clone();
        bounded(&url, self.limit, self.call.ok()).await
    }
}

/// A failed namenode call; `?` turns it into the crate's [`Error`].
#[derive(Debug)]
pub(crate) struct NnError(Error);

impl NnError {
    /// True for a 404.
    pub(crate) fn is_not_found(&self) -> bool {
        self.0.is_not_found()
    }
}

impl From<NnError> for Error {
    fn from(e: NnError) -> Self {
        e.0
    }
}

/// Runs `call`, giving up with [`Error::Timeout`] after `limit`.
async fn bounded<T>(
    url: &Url,
    limit: Duration,
    call: impl Future<Output = Result<T, blob_rpc::Error>>,
) -> Result<T, NnError> {
    match tokio::time::timeout(limit, call).await {
        Ok(r) => r.map_err(|e| NnError(e.into())),
        Err(_) => Err(NnError(Error::timeout(url, limit))),
    }
}

/// Reads an error answer of any service (namenode, datanode, edge) into
/// [`Error::Api`].
pub(crate) async fn error_from_response(
    resp: reqwest::Response,
    url: &Url,
    request_id: &str,
) -> Error {
    blob_rpc::from_response(resp, url, request_id).await.into()
}
