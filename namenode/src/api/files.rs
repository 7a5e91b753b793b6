//! File handlers: list, stat, delete, rename and metadata-only copy (a
//! user key).

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::Json;
use blob_common::proto::multipart::*;
use blob_common::proto::namenode::*;

use super::{blocking, query, JsonBody};
use crate::error::Error;
use crate::Namenode;

pub(super) async fn list_files(
    State(nn): State<Arc<Namenode>>,
    Path(bucket): Path<String>,
    q: Result<Query<ListFilesQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<ListFiles>, Error> {
    let q = query(q)?;
    blocking(move || nn.list_files(&bucket, &q)).await.map(Json)
}

pub(super) async fn stat(
    State(nn): State<Arc<Namenode>>,
    q: Result<Query<FileQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<FileInfo>, Error> {
    let q = query(q)?;
    blocking(move || nn.stat_version(&q.bucket, &q.path, q.version.as_deref()))
        .await
        .map(Json)
}

pub(super) async fn list_versions(
    State(nn): State<Arc<Namenode>>,
    Path(bucket): Path<String>,
    q: Result<Query<ListVersionsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<ListVersions>, Error> {
    let q = query(q)?;
    blocking(move || nn.list_versions(&bucket, &q))
        .await
        .map(Json)
}

pub(super) async fn delete_file(
    State(nn): State<Arc<Namenode>>,
    q: Result<Query<FileQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<DeleteOutcome>, Error> {
    let q = query(q)?;
    blocking(move || nn.delete_path(&q.bucket, &q.path, q.version.as_deref()))
        .await
        .map(Json)
}

pub(super) async fn rename(
    State(nn): State<Arc<Namenode>>,
    JsonBody(req): JsonBody<RenameRequest>,
) -> Result<Json<FileInfo>, Error> {
    blocking(move || nn.rename(&req)).await.map(Json)
}

pub(super) async fn copy_file(
    State(nn): State<Arc<Namenode>>,
    JsonBody(req): JsonBody<CopyFile>,
) -> Result<Json<FileInfo>, Error> {
    blocking(move || nn.copy_file(&req)).await.map(Json)
}

pub(super) async fn update_meta(
    State(nn): State<Arc<Namenode>>,
    JsonBody(req): JsonBody<UpdateMeta>,
) -> Result<Json<FileInfo>, Error> {
    blocking(move || nn.update_meta(&req)).await.map(Json)
}
