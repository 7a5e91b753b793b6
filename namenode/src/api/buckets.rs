//! Bucket handlers: list, create, head, delete (a user key).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use blob_common::proto::namenode::*;

use super::auth::{Principal, UserKey};
use super::{blocking, JsonBody};
use crate::error::Error;
use crate::Namenode;

pub(super) async fn list_buckets(
    State(nn): State<Arc<Namenode>>,
    Extension(p): Extension<Principal>,
) -> Result<Json<ListBuckets>, Error> {
    blocking(move || nn.list_buckets(&p)).await.map(Json)
}

pub(super) async fn create_bucket(
    State(nn): State<Arc<Namenode>>,
    UserKey(owner): UserKey,
    Path(bucket): Path<String>,
) -> Result<Json<BucketInfo>, Error> {
    blocking(move || nn.create_bucket(&bucket, Some(&owner)))
        .await
        .map(Json)
}

pub(super) async fn head_bucket(
    State(nn): State<Arc<Namenode>>,
    Path(bucket): Path<String>,
) -> Result<StatusCode, Error> {
    blocking(move || nn.head_bucket(&bucket))
        .await
        .map(|_| StatusCode::OK)
}

pub(super) async fn delete_bucket(
    State(nn): State<Arc<Namenode>>,
    Path(bucket): Path<String>,
) -> Result<StatusCode, Error> {
    blocking(move || {
        nn.delete_bucket(&bucket)?;
        nn.drop_bucket_multiparts(&bucket)
    })
    .await
    .map(|_| StatusCode::NO_CONTENT)
}

pub(super) async fn bucket_setting(
    State(nn): State<Arc<Namenode>>,
    Path((bucket, name)): Path<(String, String)>,
) -> Result<Json<BucketSetting>, Error> {
    blocking(move || nn.bucket_setting(&bucket, &name))
        .await
        .map(Json)
}

pub(super) async fn put_bucket_setting(
    State(nn): State<Arc<Namenode>>,
    Path((bucket, name)): Path<(String, String)>,
    JsonBody(req): JsonBody<BucketSetting>,
) -> Result<StatusCode, Error> {
    blocking(move || nn.set_bucket_setting(&bucket, &name, Some(req.value)))
        .await
        .map(|_| StatusCode::NO_CONTENT)
}

pub(super) async fn delete_bucket_setting(
    State(nn): State<Arc<Namenode>>,
    Path((bucket, name)): Path<(String, String)>,
) -> Result<StatusCode, Error> {
    blocking(move || nn.set_bucket_setting(&bucket, &name, None))
        .await
        .map(|_| StatusCode::NO_CONTENT)
}
