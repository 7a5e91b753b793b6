//! HTTP routes of the namenode: the route table ([`router`]), with the
//! [`Role`] each group of routes requires, then thin handlers, one file per
//! family of operations, that run each operation on a blocking thread
//! (RocksDB calls and WAL syncs block).
//!
//! A signed request goes through [`auth::authenticate`] (signature, then
//! the body within its route's limit), then [`auth::require`] (the group's
//! role), then its handler; every answer waits for the metadata it could
//! have seen to be durable ([`durable_answers`]).

use std::sync::Arc;

use axum::extract::{Query, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use blob_common::UploadId;

use crate::error::Error;
use crate::Namenode;

mod admin;
mod auth;
mod buckets;
mod datanodes;
mod files;
mod multipart;
mod replicas;
mod sse;
mod uploads;

use auth::Role;

/// Body limit of the routes that carry chunk lists: commits, chunk
/// batches, chunk reports, locate and multipart complete requests. Lists go
/// in pages of at most 10,000 chunks, whose JSON (ids, receipts) stays well
/// under this.
pub(crate) const LIST_BODY_LIMIT: usize = 8 << 20;
/// Body limit of heartbeats.
const HEARTBEAT_BODY_LIMIT: usize = 1 << 20;
/// Body limit of every other route (names, small JSON, or no body at all).
pub(super) const SMALL_BODY_LIMIT: usize = 64 << 10;

/// The body limit of a route, by its template: sized to what the route
/// needs, so that no route buffers more than that.
pub(super) fn body_limit(route: &str) -> usize {
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

/// The route table. Each group declares the [`Role`] its routes require;
/// the groups share one authentication layer.
pub(crate) fn router(nn: Arc<Namenode>) -> Router {
    let user = Router::new()
        .route("/v1/buckets", get(buckets::list_buckets))
        .route(
            "/v1/buckets/{bucket}",
            put(buckets::create_bucket)
                .head(buckets::head_bucket)
                .delete(buckets::delete_bucket),
        )
        .route("/v1/buckets/{bucket}/files", get(files::list_files))
        .route("/v1/buckets/{bucket}/versions", get(files::list_versions))
        .route(
            "/v1/buckets/{bucket}/settings/{name}",
            put(buckets::put_bucket_setting).delete(buckets::delete_bucket_setting),
        )
        .route("/v1/file", get(files::stat).delete(files::delete_file))
        .route("/v1/rename", post(files::rename))
        .route("/v1/file/meta", post(files::update_meta))
        .route("/v1/copy", post(files::copy_file))
        .route("/v1/uploads", post(uploads::create_upload))
        .route("/v1/uploads/{id}", delete(uploads::abort_upload))
        .route("/v1/uploads/{id}/chunks", post(uploads::add_chunks))
        .route("/v1/uploads/{id}/retarget", post(uploads::retarget))
        .route("/v1/uploads/{id}/manifest", post(uploads::stage_manifest))
        .route("/v1/uploads/{id}/commit", post(uploads::commit))
        .route(
            "/v1/multipart",
            post(multipart::create_multipart).get(multipart::list_multipart),
        )
        .route("/v1/multipart/{id}", delete(multipart::abort_multipart))
        .route("/v1/multipart/{id}/parts", get(multipart::list_parts))
        .route("/v1/multipart/{id}/copy-part", post(multipart::copy_part))
        .route(
            "/v1/multipart/{id}/complete",
            post(multipart::complete_multipart),
        )
        .route("/v1/sse/data-key", post(sse::data_key))
        .route("/v1/sse/unwrap", post(sse::unwrap));
    // Readers with their key, and edges (warming by file path, reporting
    // bad origin bytes).
    let user_or_edge = Router::new()
        .route("/v1/file/locations", get(replicas::locations))
        .route("/v1/chunks/bad", post(replicas::bad_replica));
    // Bucket settings are read by gateways too (CORS preflights come
    // unsigned, so the gateway asks as itself).
    let user_or_gateway = Router::new().route(
        "/v1/bucket-settings/{bucket}/{name}",
        get(buckets::bucket_setting),
    );
    let admin_or_edge = Router::new().route("/v1/chunks/locations", post(replicas::locate_chunks));
    let admin = Router::new()
        .route("/v1/admin/edges", get(admin::list_edges))
        .route("/v1/admin/nodes", get(datanodes::list_nodes))
        .route("/v1/admin/status", get(admin::cluster_status))
        .route("/v1/admin/fsck", get(admin::fsck))
        .route("/v1/admin/decommission", post(datanodes::decommission))
        .route(
            "/v1/admin/keys",
            post(admin::create_key).get(admin::list_keys),
        )
        .route(
            "/v1/admin/keys/{access_key}",
            get(admin::key_details).delete(admin::delete_key),
        )
        .route(
            "/v1/admin/keys/{access_key}/rotate",
            post(admin::rotate_key),
        )
        .route("/v1/admin/keys/{access_key}/limits", put(admin::key_limits))
        .route("/v1/admin/buckets/{bucket}", get(admin::bucket_details))
        .route(
            "/v1/admin/buckets/{bucket}/grants",
            post(admin::change_grant),
        )
        .route("/v1/admin/buckets/{bucket}/quota", put(admin::bucket_quota));
    let datanode = Router::new()
        .route("/v1/datanodes/heartbeat", post(datanodes::heartbeat))
        .route("/v1/datanodes/report", post(replicas::chunk_report));
    let gateway = Router::new()
        .route("/v1/service/keys/{access_key}", get(admin::key_grant))
        .route("/v1/service/keys/{access_key}/v2", post(admin::verify_v2));
    use blob_common::auth::ServiceRole::{Datanode, Edge, Gateway};
    let signed = Router::new()
        .merge(requiring(Role::User, user))
        .merge(requiring(Role::UserOr(&[Edge]), user_or_edge))
        .merge(requiring(Role::UserOr(&[Gateway]), user_or_gateway))
        .merge(requiring(Role::AdminOr(&[Edge]), admin_or_edge))
        .merge(requiring(Role::Admin, admin))
        .merge(requiring(Role::Services(&[Datanode]), datanode))
        .merge(requiring(Role::Services(&[Gateway]), gateway))
        .route_layer(middleware::from_fn_with_state(
            auth::Gate {
                nn: nn.clone(),
                budget: nn.config().limits.budget(),
            },
            auth::authenticate,
        ));
    Router::new()
        .route(
            "/v1/health",
            get(|| async { Json(serde_json::json!({"status": "ok"})) }),
        )
        .route("/metrics", get(admin::metrics))
        .merge(signed)
        .fallback(|| async { Error::BadRequest("no such route".into()) })
        .layer(middleware::from_fn_with_state(nn.clone(), durable_answers))
        .layer(middleware::from_fn(blob_server::http::trace_requests))
        .with_state(nn)
}

/// Puts every route of `routes` behind a check that the signer has `role`
/// (run after authentication, before the handler parses anything).
fn requiring(role: Role, routes: Router<Arc<Namenode>>) -> Router<Arc<Namenode>> {
    routes.route_layer(middleware::from_fn_with_state(role, auth::require))
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
pub(super) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, Error> + Send + 'static,
) -> Result<T, Error> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Internal(format!("metadata task failed: {e}")))?
}

/// Parses JSON bodies, answering malformed ones with a 400 in our format.
/// The body is already in memory, read within its route's limit by
/// [`auth::authenticate`]: no other limit applies here.
pub(super) struct JsonBody<T>(pub(super) T);

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

pub(super) fn parse_upload(id: &str) -> Result<UploadId, Error> {
    id.parse()
        .map_err(|_| Error::NoSuchUpload(id.chars().take(64).collect()))
}

pub(super) fn query<T>(
    q: Result<Query<T>, axum::extract::rejection::QueryRejection>,
) -> Result<T, Error> {
    q.map(|Query(v)| v)
        .map_err(|e| Error::BadRequest(format!("bad query string: {}", e.body_text())))
}
