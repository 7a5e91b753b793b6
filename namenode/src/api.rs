//! HTTP routes of the namenode: request authentication, then thin handlers
//! that run each operation on a blocking thread (RocksDB calls and WAL syncs
//! block).

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{MatchedPath, Path, Query, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use blob_common::auth::{self, RequestParts, CLUSTER_KEY_PREFIX};
use blob_common::limits::{self, Budget};
use blob_common::proto::heartbeat::{ChunkReport, Heartbeat};
use blob_common::proto::multipart::*;
use blob_common::proto::namenode::*;
use blob_common::UploadId;

use crate::error::Error;
use crate::Namenode;

/// Body limit of the routes that carry chunk lists: commits, chunk
/// batches, chunk reports, locate and multipart complete requests. Lists go
/// in pages of at most 10,000 chunks, whose JSON (ids, receipts) stays well
/// under this.
pub(crate) const LIST_BODY_LIMIT: usize = 8 << 20;
/// Body limit of heartbeats.
const HEARTBEAT_BODY_LIMIT: usize = 1 << 20;
/// Body limit of every other route (names, small JSON, or no body at all).
const SMALL_BODY_LIMIT: usize = 64 << 10;

/// The body limit of a route, by its template: sized to what the route
/// needs, so that no route buffers more than that.
fn body_limit(route: &str) -> usize {
    match route {
        "/v1/uploads"
        | "/v1/uploads/{id}/chunks"
        | "/v1/uploads/{id}/manifest"
        | "/v1/uploads/{id}/commit"
        | "/v1/datanodes/report"
        | "/v1/chunks/locations"
        | "/v1/multipart/{id}/complete" => LIST_BODY_LIMIT,
        "/v1/datanodes/heartbeat" => HEARTBEAT_BODY_LIMIT,
        _ => SMALL_BODY_LIMIT,
    }
}

/// What the authentication layer needs: the namenode (keys) and the
/// budget of request bytes in memory.
#[derive(Clone)]
struct Gate {
    nn: Arc<Namenode>,
    budget: Budget,
}

/// Who signed a request.
#[derive(Debug, Clone)]
enum Principal {
    /// A user's access key.
    User { access_key: String, admin: bool },
    /// A datanode, signing with the cluster keyring.
    Cluster,
}

impl Principal {
    fn user(&self) -> Result<&str, Error> {
        match self {
            Principal::User { access_key, .. } => Ok(access_key),
            Principal::Cluster => Err(Error::Forbidden(
                "cluster credentials are for datanode routes".into(),
            )),
        }
    }

    fn admin(&self) -> Result<(), Error> {
        match self {
            Principal::User { admin: true, .. } => Ok(()),
            _ => Err(Error::Forbidden("admin key required".into())),
        }
    }

    /// An admin user, or a service holding the cluster secret (an edge).
    fn admin_or_cluster(&self) -> Result<(), Error> {
        match self {
            Principal::Cluster => Ok(()),
            _ => self.admin(),
        }
    }

    fn cluster(&self) -> Result<(), Error> {
        match self {
            Principal::Cluster => Ok(()),
            _ => Err(Error::Forbidden(
                "datanode routes need cluster credentials".into(),
            )),
        }
    }
}

pub(crate) fn router(nn: Arc<Namenode>) -> Router {
    let signed = Router::new()
        .route("/v1/buckets", get(list_buckets))
        .route(
            "/v1/buckets/{bucket}",
            axum::routing::put(create_bucket)
                .head(head_bucket)
                .delete(delete_bucket),
        )
        .route("/v1/buckets/{bucket}/files", get(list_files))
        .route("/v1/file", get(stat).delete(delete_file))
        .route("/v1/file/locations", get(locations))
        .route("/v1/rename", post(rename))
        .route("/v1/uploads", post(create_upload))
        .route("/v1/uploads/{id}", axum::routing::delete(abort_upload))
        .route("/v1/uploads/{id}/chunks", post(add_chunks))
        .route("/v1/uploads/{id}/retarget", post(retarget))
        .route("/v1/uploads/{id}/manifest", post(stage_manifest))
        .route("/v1/uploads/{id}/commit", post(commit))
        .route("/v1/chunks/bad", post(bad_replica))
        .route("/v1/chunks/locations", post(locate_chunks))
        .route("/v1/admin/edges", get(list_edges))
        .route("/v1/admin/nodes", get(list_nodes))
        .route("/v1/admin/keys/{access_key}", get(access_key_info))
        .route("/v1/copy", post(copy_file))
        .route("/v1/multipart", post(create_multipart).get(list_multipart))
        .route("/v1/multipart/{id}", axum::routing::delete(abort_multipart))
        .route("/v1/multipart/{id}/parts", get(list_parts))
        .route("/v1/multipart/{id}/copy-part", post(copy_part))
        .route("/v1/multipart/{id}/complete", post(complete_multipart))
        .route("/v1/admin/status", get(cluster_status))
        .route("/v1/admin/fsck", get(fsck))
        .route("/v1/admin/decommission", post(decommission))
        .route("/v1/datanodes/heartbeat", post(heartbeat))
        .route("/v1/datanodes/report", post(chunk_report))
        .route_layer(middleware::from_fn_with_state(
            Gate {
                nn: nn.clone(),
                budget: nn.config().limits.budget(),
            },
            authenticate,
        ));
    Router::new()
        .route(
            "/v1/health",
            get(|| async { Json(serde_json::json!({"status": "ok"})) }),
        )
        .route("/metrics", get(metrics))
        .merge(signed)
        .fallback(|| async { Error::BadRequest("no such route".into()) })
        .layer(middleware::from_fn_with_state(nn.clone(), durable_answers))
        .layer(middleware::from_fn(blob_common::http::trace_requests))
        .with_state(nn)
}

/// Authenticates a request before reading a byte of its body: the
/// signature covers the method, path, query, date and the body's declared
/// SHA-256, so it is checked first. Only then is the body read, within the
/// route's limit ([`body_limit`]: 413 past it) and the namenode's budget of
/// bytes in flight (503 with `Retry-After` when full), and checked against
/// the declared hash. Records who signed it.
async fn authenticate(State(gate): State<Gate>, req: Request, next: Next) -> Response {
    match authenticate_inner(gate, req, next).await {
        Ok(r) => r,
        Err(r) => r,
    }
}

async fn authenticate_inner(gate: Gate, req: Request, next: Next) -> Result<Response, Response> {
    let nn = gate.nn;
    let (parts, body) = req.into_parts();
    let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok());
    let refuse = |e: Error| e.into_response();
    let cred = auth::parse_authorization(header(header::AUTHORIZATION.as_str()))
        .map_err(|e| refuse(e.into()))?;
    let (secret, principal) = if let Some(kid) = cred.access_key.strip_prefix(CLUSTER_KEY_PREFIX) {
        let secret = nn
            .keyring
            .secret(kid)
            .ok_or_else(|| refuse(auth::AuthError::UnknownKey(cred.access_key.clone()).into()))?
            .to_vec();
        (secret, Principal::Cluster)
    } else {
        let nn2 = nn.clone();
        let key = cred.access_key.clone();
        let rec = blocking(move || nn2.key_secret(&key))
            .await
            .map_err(refuse)?
            .ok_or_else(|| refuse(auth::AuthError::UnknownKey(cred.access_key.clone()).into()))?;
        (
            rec.secret.into_bytes(),
            Principal::User {
                access_key: cred.access_key.clone(),
                admin: rec.admin,
            },
        )
    };
    let request = RequestParts {
        method: parts.method.as_str(),
        path: parts.uri.path(),
        query: parts.uri.query().unwrap_or(""),
        date: header(auth::DATE_HEADER),
        content_sha256: header(auth::CONTENT_SHA_HEADER),
        body: &[],
    };
    auth::verify_signature(&cred, &secret, &request, blob_common::now_secs())
        .map_err(|e| refuse(e.into()))?;
    let limit = parts
        .extensions
        .get::<MatchedPath>()
        .map_or(SMALL_BODY_LIMIT, |m| body_limit(m.as_str()));
    let (body, held) = limits::read_body(
        body,
        limits::declared_length(&parts.headers),
        limit,
        &gate.budget,
    )
    .await
    .map_err(IntoResponse::into_response)?;
    auth::check_body(header(auth::CONTENT_SHA_HEADER), &body).map_err(|e| refuse(e.into()))?;
    let mut req = Request::from_parts(parts, Body::from(body));
    req.extensions_mut().insert(principal);
    let resp = next.run(req).await;
    // The body's bytes (and what the handler parsed from them) are gone
    // once it answered.
    drop(held);
    Ok(resp)
}

/// Holds every answer until each metadata write it could have seen is
/// durable: nobody learns of a change, its own or another client's, that a
/// crash could still take back. Writes of concurrent requests share one WAL
/// sync (see `Meta::sync`).
async fn durable_answers(State(nn): State<Arc<Namenode>>, req: Request, next: Next) -> Response {
    let resp = next.run(req).await;
    if nn.meta.is_durable() {
        return resp;
    }
    let nn2 = nn.clone();
    match tokio::task::spawn_blocking(move || nn2.meta.sync()).await {
        Ok(Ok(())) => resp,
        Ok(Err(e)) => e.into_response(),
        Err(e) => Error::Internal(format!("metadata sync task failed: {e}")).into_response(),
    }
}

/// Runs a metadata operation on a blocking thread.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, Error> + Send + 'static,
) -> Result<T, Error> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Internal(format!("metadata task failed: {e}")))?
}

/// Parses JSON bodies, answering malformed ones with a 400 in our format.
/// The body is already in memory, read within its route's limit by
/// [`authenticate`]: no other limit applies here.
struct JsonBody<T>(T);

impl<T: serde::de::DeserializeOwned, S: Send + Sync> axum::extract::FromRequest<S> for JsonBody<T> {
    type Rejection = Error;
    async fn from_request(req: Request, _state: &S) -> Result<Self, Self::Rejection> {
        let bytes = axum::body::to_bytes(req.into_body(), usize::MAX)
            .await
            .map_err(|e| Error::BadRequest(format!("reading body: {e}")))?;
        serde_json::from_slice(&bytes)
            .map(JsonBody)
            .map_err(|e| Error::BadRequest(format!("malformed JSON body: {e}")))
    }
}

fn parse_upload(id: &str) -> Result<UploadId, Error> {
    id.parse()
        .map_err(|_| Error::NoSuchUpload(id.chars().take(64).collect()))
}

fn query<T>(q: Result<Query<T>, axum::extract::rejection::QueryRejection>) -> Result<T, Error> {
    q.map(|Query(v)| v)
        .map_err(|e| Error::BadRequest(format!("bad query string: {}", e.body_text())))
}

async fn metrics(State(nn): State<Arc<Namenode>>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        nn.metrics_text(),
    )
}

async fn list_buckets(
    State(nn): State<Arc<Namenode>>,
    Extension(p): Extension<Principal>,
) -> Result<Json<ListBuckets>, Error> {
    p.user()?;
    blocking(move || nn.list_buckets()).await.map(Json)
}

async fn create_bucket(
    State(nn): State<Arc<Namenode>>,
    Extension(p): Extension<Principal>,
    Path(bucket): Path<String>,
) -> Result<Json<BucketInfo>, Error> {
    p.user()?;
    blocking(move || nn.create_bucket(&bucket)).await.map(Json)
}

async fn head_bucket(
    State(nn): State<Arc<Namenode>>,
    Extension(p): Extension<Principal>,
    Path(bucket): Path<String>,
) -> Result<StatusCode, Error> {
    p.user()?;
    blocking(move || nn.head_bucket(&bucket))
        .await
        .map(|_| StatusCode::OK)
}

async fn delete_bucket(
    State(nn): State<Arc<Namenode>>,
    Extension(p): Extension<Principal>,
    Path(bucket): Path<String>,
) -> Result<StatusCode, Error> {
    p.user()?;
    blocking(move || {
        nn.delete_bucket(&bucket)?;
        nn.drop_bucket_multiparts(&bucket)
    })
    .await
    .map(|_| StatusCode::NO_CONTENT)
}

async fn list_files(
    State(nn): State<Arc<Namenode>>,
    Extension(p): Extension<Principal>,
    Path(bucket): Path<String>,
    q: Result<Query<ListFilesQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<ListFiles>, Error> {
    p.user()?;
    let q = query(q)?;
    blocking(move || nn.list_files(&bucket, &q)).await.map(Json)
}

async fn stat(
    State(nn): State<Arc<Namenode>>,
    Extension(p): Extension<Principal>,
    q: Result<Query<FileQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<FileInfo>, Error> {
    p.user()?;
    let q = query(q)?;
    blocking(move || nn.stat(&q.bucket, &q.path))
        .await
        .map(Json)
}

async fn locations(
    State(nn): State<Arc<Namenode>>,
    Extension(p): Extension<Principal>,
    q: Result<Query<FileQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<FileLocations>, Error> {
    // Any signer: users, and edges (cluster secret) warming by file path.
    let _ = p;
    let q = query(q)?;
    blocking(move || nn.locations(&q)).await.map(Json)
}

async fn delete_file(
    State(nn): State<Arc<Namenode>>,
    Extension(p): Extension<Principal>,
    q: Result<Query<FileQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<StatusCode, Error> {
    p.user()?;
    let q = query(q)?;
    blocking(move || nn.delete_file(&q.bucket, &q.path))
        .await
        .map(|_| StatusCode::NO_CONTENT)
}

async fn rename(
    State(nn): State<Arc<Namenode>>,
    Extension(p): Extension<Principal>,
    JsonBody(req): JsonBody<RenameRequest>,
) -> Result<Json<FileInfo>, Error> {
    p.user()?;
    blocking(move || nn.rename(&req)).await.map(Json)
}

async fn create_upload(
    State(nn): State<Arc<Namenode>>,
    Extension(p): Extension<Principal>,
    JsonBody(req): JsonBody<CreateUpload>,
) -> Result<Json<UploadPlan>, Error> {
    let owner = p.user()?.to_string();
    blocking(move || nn.create_upload(&owner, &req))
        .await
        .map(Json)
}

async fn add_chunks(
    State(nn): State<Arc<Namenode>>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
    JsonBody(req): JsonBody<ChunkBatch>,
) -> Result<Json<UploadPlan>, Error> {
    let owner = p.user()?.to_string();
    let id = parse_upload(&id)?;
    blocking(move || nn.add_chunks(&owner, &id, &req))
        .await
        .map(Json)
}

async fn retarget(
    State(nn): State<Arc<Namenode>>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
    JsonBody(req): JsonBody<Retarget>,
) -> Result<Json<PutTarget>, Error> {
    let owner = p.user()?.to_string();
    let id = parse_upload(&id)?;
    blocking(move || nn.retarget(&owner, &id, &req))
        .await
        .map(Json)
}

async fn stage_manifest(
    State(nn): State<Arc<Namenode>>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
    JsonBody(page): JsonBody<ManifestPage>,
) -> Result<StatusCode, Error> {
    let owner = p.user()?.to_string();
    let id = parse_upload(&id)?;
    blocking(move || nn.stage_manifest(&owner, &id, &page))
        .await
        .map(|_| StatusCode::NO_CONTENT)
}

async fn commit(
    State(nn): State<Arc<Namenode>>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
    JsonBody(req): JsonBody<CommitUpload>,
) -> Result<Json<FileInfo>, Error> {
    let owner = p.user()?.to_string();
    let id = parse_upload(&id)?;
    if let Some(part) = req.part {
        return blocking(move || nn.commit_part(&owner, &id, &req, part))
            .await
            .map(Json);
    }
    blocking(move || nn.commit(&owner, &id, &req))
        .await
        .map(Json)
}

async fn abort_upload(
    State(nn): State<Arc<Namenode>>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<StatusCode, Error> {
    let owner = p.user()?.to_string();
    let id = parse_upload(&id)?;
    blocking(move || nn.abort(&owner, &id))
        .await
        .map(|_| StatusCode::NO_CONTENT)
}

async fn bad_replica(
    State(nn): State<Arc<Namenode>>,
    Extension(p): Extension<Principal>,
    JsonBody(req): JsonBody<BadReplica>,
) -> Result<StatusCode, Error> {
    // Any signer: readers with their key, edges with the cluster secret.
    let reporter = match &p {
        Principal::User { access_key, .. } => access_key.clone(),
        Principal::Cluster => "cluster".to_string(),
    };
    blocking(move || nn.bad_replica(&reporter, &req))
        .await
        .map(|_| StatusCode::NO_CONTENT)
}

async fn locate_chunks(
    State(nn): State<Arc<Namenode>>,
    Extension(p): Extension<Principal>,
    JsonBody(req): JsonBody<LocateChunks>,
) -> Result<Json<LocatedChunks>, Error> {
    p.admin_or_cluster()?;
    blocking(move || nn.locate_chunks(&req)).await.map(Json)
}

async fn list_edges(
    State(nn): State<Arc<Namenode>>,
    Extension(p): Extension<Principal>,
) -> Result<Json<ListEdges>, Error> {
    p.admin()?;
    Ok(Json(nn.list_edges()))
}

async fn list_nodes(
    State(nn): State<Arc<Namenode>>,
    Extension(p): Extension<Principal>,
) -> Result<Json<ListNodes>, Error> {
    p.admin()?;
    Ok(Json(nn.list_nodes()))
}

async fn heartbeat(
    State(nn): State<Arc<Namenode>>,
    Extension(p): Extension<Principal>,
    JsonBody(hb): JsonBody<Heartbeat>,
) -> Result<Response, Error> {
    p.cluster()?;
    blocking(move || nn.heartbeat(hb))
        .await
        .map(|r| Json(r).into_response())
}

async fn chunk_report(
    State(nn): State<Arc<Namenode>>,
    Extension(p): Extension<Principal>,
    JsonBody(report): JsonBody<ChunkReport>,
) -> Result<StatusCode, Error> {
    p.cluster()?;
    blocking(move || nn.chunk_report(&report))
        .await
        .map(|_| StatusCode::NO_CONTENT)
}

// ---- S3 support: keys, copies, multipart uploads ---------------------------

async fn access_key_info(
    State(nn): State<Arc<Namenode>>,
    Extension(p): Extension<Principal>,
    Path(access_key): Path<String>,
) -> Result<Json<AccessKeyInfo>, Error> {
    p.cluster()?;
    let key = access_key.clone();
    let rec = blocking(move || nn.key_secret(&key))
        .await?
        .ok_or_else(|| auth::AuthError::UnknownKey(access_key.clone()))?;
    Ok(Json(AccessKeyInfo {
        access_key,
        secret_key: rec.secret,
        admin: rec.admin,
    }))
}

async fn copy_file(
    State(nn): State<Arc<Namenode>>,
    Extension(p): Extension<Principal>,
    JsonBody(req): JsonBody<CopyFile>,
) -> Result<Json<FileInfo>, Error> {
    p.user()?;
    blocking(move || nn.copy_file(&req)).await.map(Json)
}

async fn create_multipart(
    State(nn): State<Arc<Namenode>>,
    Extension(p): Extension<Principal>,
    JsonBody(req): JsonBody<CreateMultipart>,
) -> Result<Json<MultipartInfo>, Error> {
    let owner = p.user()?.to_string();
    blocking(move || nn.create_multipart(&owner, &req))
        .await
        .map(Json)
}

async fn list_multipart(
    State(nn): State<Arc<Namenode>>,
    Extension(p): Extension<Principal>,
    q: Result<Query<ListMultipartQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<ListMultipart>, Error> {
    let owner = p.user()?.to_string();
    let q = query(q)?;
    blocking(move || nn.list_multipart(&owner, &q))
        .await
        .map(Json)
}

async fn list_parts(
    State(nn): State<Arc<Namenode>>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
    q: Result<Query<ListPartsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<ListParts>, Error> {
    let owner = p.user()?.to_string();
    let id = parse_upload(&id)?;
    let q = query(q)?;
    blocking(move || nn.list_parts(&owner, &id, &q))
        .await
        .map(Json)
}

async fn copy_part(
    State(nn): State<Arc<Namenode>>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
    JsonBody(req): JsonBody<CopyPart>,
) -> Result<Json<PartInfo>, Error> {
    let owner = p.user()?.to_string();
    let id = parse_upload(&id)?;
    blocking(move || nn.copy_part(&owner, &id, &req))
        .await
        .map(Json)
}

async fn complete_multipart(
    State(nn): State<Arc<Namenode>>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
    JsonBody(req): JsonBody<CompleteMultipart>,
) -> Result<Json<FileInfo>, Error> {
    let owner = p.user()?.to_string();
    let id = parse_upload(&id)?;
    blocking(move || nn.complete_multipart(&owner, &id, &req))
        .await
        .map(Json)
}

async fn abort_multipart(
    State(nn): State<Arc<Namenode>>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<StatusCode, Error> {
    let owner = p.user()?.to_string();
    let id = parse_upload(&id)?;
    blocking(move || nn.abort_multipart(&owner, &id))
        .await
        .map(|_| StatusCode::NO_CONTENT)
}

async fn cluster_status(
    State(nn): State<Arc<Namenode>>,
    Extension(p): Extension<Principal>,
) -> Result<Json<ClusterStatus>, Error> {
    p.admin()?;
    blocking(move || nn.cluster_status()).await.map(Json)
}

async fn fsck(
    State(nn): State<Arc<Namenode>>,
    Extension(p): Extension<Principal>,
    q: Result<Query<FsckQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<FsckReport>, Error> {
    p.admin()?;
    let q = query(q)?;
    blocking(move || nn.fsck(&q)).await.map(Json)
}

async fn decommission(
    State(nn): State<Arc<Namenode>>,
    Extension(p): Extension<Principal>,
    JsonBody(req): JsonBody<Decommission>,
) -> Result<Json<NodeStatus>, Error> {
    p.admin()?;
    blocking(move || nn.decommission(&req.node)).await.map(Json)
}
