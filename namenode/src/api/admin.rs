//! Administration handlers: edges, cluster status, fsck, access key lookup
//! (for the S3 gateway) and the unauthenticated metrics page.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::IntoResponse;
use axum::Json;
use blob_common::auth;
use blob_common::proto::keys::AccessKeyInfo;
use blob_common::proto::namenode::*;

use super::{blocking, query};
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
    let rec = blocking(move || nn.key_secret(&key))
        .await?
        .ok_or_else(|| auth::AuthError::UnknownKey(access_key.clone()))?;
    Ok(Json(AccessKeyInfo {
        access_key,
        secret_key: rec.secret,
        admin: rec.admin,
    }))
}

pub(super) async fn metrics(State(nn): State<Arc<Namenode>>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        nn.metrics_text(),
    )
}
