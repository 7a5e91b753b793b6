//! Administration handlers: edges, cluster status, fsck, access key lookup
//! (for the S3 gateway) and the unauthenticated metrics page.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use blob_common::auth;
use blob_common::proto::keys::*;
use blob_common::proto::namenode::*;

use super::{blocking, query, JsonBody};
use crate::error::Error;
use crate::Namenode;

pub(super) async fn list_edges(State(nn): State<Arc<Namenode>>) -> Result<Json<ListEdges>, Error> {
    Ok(Json(nn.list_edges()))
}

pub(super) async fn cluster_status(
    State(nn): State<Arc<Namenode>>,
) -> Result<Json<ClusterStatus>, Error> {
    blocking(move || nn.cluster_status()).await.map(Json)
}

pub(super) async fn fsck(
    State(nn): State<Arc<Namenode>>,
    q: Result<Query<FsckQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<FsckReport>, Error> {
    let q = query(q)?;
    blocking(move || nn.fsck(&q)).await.map(Json)
}

pub(super) async fn access_key_info(
    State(nn): State<Arc<Namenode>>,
    Path(access_key): Path<String>,
) -> Result<Json<AccessKeyInfo>, Error> {
    let key = access_key.clone();
    let (secrets, admin, _) = blocking(move || nn.key_secrets(&key))
        .await?
        .ok_or_else(|| auth::AuthError::UnknownKey(access_key.clone()))?;
    let secret_key = secrets
        .into_iter()
        .next()
        .ok_or_else(|| Error::Corrupt(format!("access key {access_key} has no secret")))?;
    Ok(Json(AccessKeyInfo {
        access_key,
        secret_key,
        admin,
    }))
}

pub(super) async fn create_key(
    State(nn): State<Arc<Namenode>>,
    JsonBody(req): JsonBody<CreateKey>,
) -> Result<Json<KeyCreated>, Error> {
    blocking(move || nn.create_key(&req)).await.map(Json)
}

pub(super) async fn list_keys(State(nn): State<Arc<Namenode>>) -> Result<Json<ListKeys>, Error> {
    blocking(move || nn.list_keys()).await.map(Json)
}

pub(super) async fn key_details(
    State(nn): State<Arc<Namenode>>,
    Path(access_key): Path<String>,
) -> Result<Json<KeyDetails>, Error> {
    blocking(move || nn.key_details(&access_key))
        .await
        .map(Json)
}

pub(super) async fn delete_key(
    State(nn): State<Arc<Namenode>>,
    Path(access_key): Path<String>,
) -> Result<StatusCode, Error> {
    blocking(move || nn.delete_key(&access_key))
        .await
        .map(|_| StatusCode::NO_CONTENT)
}

pub(super) async fn rotate_key(
    State(nn): State<Arc<Namenode>>,
    Path(access_key): Path<String>,
    JsonBody(req): JsonBody<RotateKey>,
) -> Result<axum::response::Response, Error> {
    Ok(
        match blocking(move || nn.rotate_key(&access_key, &req)).await? {
            Ok(created) => Json(created).into_response(),
            Err(details) => Json(details).into_response(),
        },
    )
}

pub(super) async fn key_limits(
    State(nn): State<Arc<Namenode>>,
    Path(access_key): Path<String>,
    JsonBody(req): JsonBody<KeyLimits>,
) -> Result<Json<KeyDetails>, Error> {
    blocking(move || nn.set_key_limits(&access_key, req))
        .await
        .map(Json)
}

pub(super) async fn bucket_details(
    State(nn): State<Arc<Namenode>>,
    Path(bucket): Path<String>,
) -> Result<Json<BucketDetails>, Error> {
    blocking(move || nn.bucket_details(&bucket)).await.map(Json)
}

pub(super) async fn change_grant(
    State(nn): State<Arc<Namenode>>,
    Path(bucket): Path<String>,
    JsonBody(req): JsonBody<GrantChange>,
) -> Result<Json<BucketDetails>, Error> {
    blocking(move || nn.change_grant(&bucket, &req))
        .await
        .map(Json)
}

pub(super) async fn bucket_quota(
    State(nn): State<Arc<Namenode>>,
    Path(bucket): Path<String>,
    JsonBody(req): JsonBody<Quota>,
) -> Result<Json<BucketDetails>, Error> {
    blocking(move || nn.set_quota(&bucket, req)).await.map(Json)
}

pub(super) async fn metrics(State(nn): State<Arc<Namenode>>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        nn.metrics_text(),
    )
}
