//! Control path: signed JSON calls to the namenode, one method per route of
//! [`blob_common::proto::namenode`].
//!
//! Every call is signed with [`blob_common::auth::sign`] over exactly the
//! path and query that go on the wire, and carries the operation's
//! `x-request-id`. Names are validated locally before anything is sent.

use blob_common::auth;
use blob_common::error::ErrorBody;
use blob_common::http::REQUEST_ID;
use blob_common::names::{validate_bucket, validate_path};
use blob_common::proto::namenode::{
    BadReplica, BucketInfo, ChunkBatch, ChunkRef, ClusterStatus, CommitUpload, CreateUpload,
    Decommission, FileInfo, FileLocations, FsckQuery, FsckReport, ListBuckets, ListFiles,
    ListFilesQuery, ListNodes, ManifestPage, NodeStatus, PutTarget, RenameRequest, Retarget,
    UploadPlan, MAX_PAGE,
};
use blob_common::{NodeId, UploadId};
use reqwest::{Method, StatusCode, Url};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{redact_url, Error};
use crate::Client;

/// Longest error body kept when it is not an [`ErrorBody`].
const MAX_ERROR_TEXT: usize = 512;

impl Client {
    /// The namenode URL for `/v1/<segments…>` with `query` pairs
    /// (percent-encoded; omitted entirely when empty).
    pub(crate) fn meta_url(&self, segments: &[&str], query: &[(&str, &str)]) -> Url {
        let mut url = self.inner.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().push("v1").extend(segments);
        }
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        url
    }

    /// Sends one signed call and returns the response when its status is a
    /// success; an error status becomes [`Error::Api`].
    async fn send_signed(
        &self,
        method: Method,
        url: Url,
        body: Option<Vec<u8>>,
    ) -> Result<reqwest::Response, Error> {
        let request_id = self.request_id();
        let body = body.unwrap_or_default();
        let signed = auth::sign(
            &self.inner.cfg.access_key,
            self.inner.cfg.secret_key.as_bytes(),
            method.as_str(),
            url.path(),
            url.query().unwrap_or(""),
            blob_common::now_secs(),
            &body,
        );
        let mut req = self
            .inner
            .http
            .request(method.clone(), url.clone())
            .timeout(self.inner.cfg.request_timeout)
            .header(reqwest::header::AUTHORIZATION, signed.authorization)
            .header(auth::DATE_HEADER, signed.date)
            .header(auth::CONTENT_SHA_HEADER, signed.content_sha256)
            .header(REQUEST_ID, &request_id);
        if !body.is_empty() {
            req = req
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body);
        }
        tracing::debug!(%method, url = %redact_url(&url), %request_id, "namenode call");
        let resp = req.send().await.map_err(|e| Error::transport(&url, e))?;
        if resp.status().is_success() {
            Ok(resp)
        } else {
            Err(error_from_response(resp, &url, &request_id).await)
        }
    }

    /// A signed call whose answer is JSON.
    pub(crate) async fn call_json<T: DeserializeOwned>(
        &self,
        method: Method,
        url: Url,
        body: Option<&(impl Serialize + ?Sized)>,
    ) -> Result<T, Error> {
        let body = encode(&url, body)?;
        let resp = self.send_signed(method, url.clone(), body).await?;
        let bytes = resp.bytes().await.map_err(|e| Error::transport(&url, e))?;
        serde_json::from_slice(&bytes).map_err(|e| Error::protocol(&url, format!("bad JSON: {e}")))
    }

    /// A signed call whose answer has no body of interest.
    pub(crate) async fn call_empty(
        &self,
        method: Method,
        url: Url,
        body: Option<&(impl Serialize + ?Sized)>,
    ) -> Result<(), Error> {
        let body = encode(&url, body)?;
        self.send_signed(method, url, body).await.map(drop)
    }

    /// Creates a bucket (409 `BucketAlreadyExists` if it exists).
    pub async fn create_bucket(&self, bucket: &str) -> Result<BucketInfo, Error> {
        validate_bucket(bucket)?;
        let url = self.meta_url(&["buckets", bucket], &[]);
        self.call_json(Method::PUT, url, None::<&()>).await
    }

    /// Deletes an empty bucket (409 `BucketNotEmpty`, 404 `NoSuchBucket`).
    pub async fn delete_bucket(&self, bucket: &str) -> Result<(), Error> {
        validate_bucket(bucket)?;
        let url = self.meta_url(&["buckets", bucket], &[]);
        self.call_empty(Method::DELETE, url, None::<&()>).await
    }

    /// Whether a bucket exists.
    pub async fn head_bucket(&self, bucket: &str) -> Result<bool, Error> {
        validate_bucket(bucket)?;
        let url = self.meta_url(&["buckets", bucket], &[]);
        match self.call_empty(Method::HEAD, url, None::<&()>).await {
            Ok(()) => Ok(true),
            Err(e) if e.is_not_found() => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Every bucket, by name.
    pub async fn list_buckets(&self) -> Result<ListBuckets, Error> {
        let url = self.meta_url(&["buckets"], &[]);
        self.call_json(Method::GET, url, None::<&()>).await
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
        let url = self.meta_url(&["buckets", bucket, "files"], &query);
        self.call_json(Method::GET, url, None::<&()>).await
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
        validate_bucket(bucket)?;
        validate_path(path)?;
        let url = self.meta_url(&["file"], &[("bucket", bucket), ("path", path)]);
        self.call_json(Method::GET, url, None::<&()>).await
    }

    /// A file with a pre-signed GET URL per replica of each chunk (the
    /// first one an edge cache's, when the cluster has edges; see
    /// [`crate::ClientConfig::zone`]).
    /// Large files come in pages of [`MAX_PAGE`] chunks; a file replaced
    /// between two pages is read again from the start.
    pub async fn locations(&self, bucket: &str, path: &str) -> Result<FileLocations, Error> {
        validate_bucket(bucket)?;
        validate_path(path)?;
        let limit = MAX_PAGE.to_string();
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
                query.push(("first", &first_s));
                query.push(("limit", &limit));
                let url = self.meta_url(&["file", "locations"], &query);
                let page: FileLocations = self.call_json(Method::GET, url, None::<&()>).await?;
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
        let url = self.meta_url(&["file"], &[("bucket", bucket), ("path", path)]);
        self.call_empty(Method::DELETE, url, None::<&()>).await
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
        let url = self.meta_url(&["rename"], &[]);
        self.call_json(Method::POST, url, Some(&body)).await
    }

    /// Opens an upload session, planning its first batch of chunks.
    pub async fn create_upload(&self, req: &CreateUpload) -> Result<UploadPlan, Error> {
        validate_bucket(&req.bucket)?;
        validate_path(&req.path)?;
        let url = self.meta_url(&["uploads"], &[]);
        self.call_json(Method::POST, url, Some(req)).await
    }

    /// Plans more chunks of a session and/or reports receipts.
    pub async fn send_batch(
        &self,
        upload: &UploadId,
        batch: &ChunkBatch,
    ) -> Result<UploadPlan, Error> {
        let id = upload.to_string();
        let url = self.meta_url(&["uploads", &id, "chunks"], &[]);
        self.call_json(Method::POST, url, Some(batch)).await
    }

    /// A new pipeline for the replicas a chunk still lacks.
    pub async fn retarget(&self, upload: &UploadId, req: &Retarget) -> Result<PutTarget, Error> {
        let id = upload.to_string();
        let url = self.meta_url(&["uploads", &id, "retarget"], &[]);
        self.call_json(Method::POST, url, Some(req)).await
    }

    /// Stages one page of a long chunk list for the session's commit.
    pub async fn send_manifest_page(
        &self,
        upload: &UploadId,
        page: &ManifestPage,
    ) -> Result<(), Error> {
        let id = upload.to_string();
        let url = self.meta_url(&["uploads", &id, "manifest"], &[]);
        self.call_empty(Method::POST, url, Some(page)).await
    }

    /// Commits a session: the file becomes visible atomically.
    pub async fn commit_upload(
        &self,
        upload: &UploadId,
        req: &CommitUpload,
    ) -> Result<FileInfo, Error> {
        let id = upload.to_string();
        let url = self.meta_url(&["uploads", &id, "commit"], &[]);
        self.call_json(Method::POST, url, Some(req)).await
    }

    /// Abandons a session. [`Client::upload`] never does this by itself:
    /// a session left behind lets the same upload resume.
    pub async fn abort_upload(&self, upload: &UploadId) -> Result<(), Error> {
        let id = upload.to_string();
        let url = self.meta_url(&["uploads", &id], &[]);
        self.call_empty(Method::DELETE, url, None::<&()>).await
    }

    /// Reports a replica that served bytes not matching its chunk id.
    pub async fn report_bad_replica(&self, req: &BadReplica) -> Result<(), Error> {
        let url = self.meta_url(&["chunks", "bad"], &[]);
        self.call_empty(Method::POST, url, Some(req)).await
    }

    /// Every datanode the namenode knows, with its state and usage
    /// (admin keys only).
    pub async fn list_nodes(&self) -> Result<ListNodes, Error> {
        let url = self.meta_url(&["admin", "nodes"], &[]);
        self.call_json(Method::GET, url, None::<&()>).await
    }

    /// Nodes plus chunk health counts, from a scan of every chunk
    /// (admin keys only).
    pub async fn cluster_status(&self) -> Result<ClusterStatus, Error> {
        let url = self.meta_url(&["admin", "status"], &[]);
        self.call_json(Method::GET, url, None::<&()>).await
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
        let url = self.meta_url(&["admin", "fsck"], &query);
        self.call_json(Method::GET, url, None::<&()>).await
    }

    /// Starts draining a datanode: it takes no new replicas and its chunks
    /// are copied elsewhere. Returns the node's new status (admin keys only).
    pub async fn decommission(&self, node: NodeId) -> Result<NodeStatus, Error> {
        let url = self.meta_url(&["admin", "decommission"], &[]);
        self.call_json(Method::POST, url, Some(&Decommission { node }))
            .await
    }
}

fn encode(url: &Url, body: Option<&(impl Serialize + ?Sized)>) -> Result<Option<Vec<u8>>, Error> {
    body.map(serde_json::to_vec)
        .transpose()
        .map_err(|e| Error::protocol(url, format!("encoding request: {e}")))
}

/// Turns an error response into [`Error::Api`], reading its
/// [`ErrorBody`] when there is one.
pub(crate) async fn error_from_response(
    resp: reqwest::Response,
    url: &Url,
    request_id: &str,
) -> Error {
    let status = resp.status();
    let header_id = resp
        .headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = resp.bytes().await.unwrap_or_default();
    let fallback_id = header_id.unwrap_or_else(|| request_id.to_string());
    match serde_json::from_slice::<ErrorBody>(&body) {
        Ok(b) => Error::Api {
            status: status.as_u16(),
            code: b.code,
            message: b.message,
            request_id: if b.request_id.is_empty() {
                fallback_id
            } else {
                b.request_id
            },
        },
        Err(_) => {
            let mut message = String::from_utf8_lossy(&body).trim().to_string();
            if message.len() > MAX_ERROR_TEXT {
                let mut cut = MAX_ERROR_TEXT;
                while !message.is_char_boundary(cut) {
                    cut -= 1;
                }
                message.truncate(cut);
            }
            if message.is_empty() {
                message = format!("{} answered without details", redact_url(url));
            }
            Error::Api {
                status: status.as_u16(),
                code: default_code(status).to_string(),
                message,
                request_id: fallback_id,
            }
        }
    }
}

/// A code for an error answer without an [`ErrorBody`] (e.g. a HEAD).
fn default_code(status: StatusCode) -> &'static str {
    match status.as_u16() {
        404 => "NotFound",
        403 => "AccessDenied",
        401 => "Unauthorized",
        409 => "Conflict",
        s if s >= 500 => "ServerError",
        _ => status.canonical_reason().unwrap_or("Error"),
    }
}
