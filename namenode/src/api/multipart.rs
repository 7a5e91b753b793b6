//! S3 multipart upload handlers (a user key, which owns the upload).

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use blob_common::proto::multipart::*;
use blob_common::proto::namenode::*;

use super::auth::UserKey;
use super::{blocking, parse_upload, query, JsonBody};
use crate::error::Error;
use crate::Namenode;

pub(super) async fn create_multipart(
    State(nn): State<Arc<Namenode>>,
    UserKey(owner): UserKey,
    JsonBody(req): JsonBody<CreateMultipart>,
) -> Result<Json<MultipartInfo>, Error> {
    blocking(move || nn.create_multipart(&owner, &req))
        .await
        .map(Json)
}

pub(super) async fn list_multipart(
    State(nn): State<Arc<Namenode>>,
    UserKey(owner): UserKey,
    q: Result<Query<ListMultipartQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<ListMultipart>, Error> {
    let q = query(q)?;
    blocking(move || nn.list_multipart(&owner, &q))
        .await
        .map(Json)
}

pub(super) async fn list_parts(
    State(nn): State<Arc<Namenode>>,
    UserKey(owner): UserKey,
    Path(id): Path<String>,
    q: Result<Query<ListPartsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<ListParts>, Error> {
    let id = parse_upload(&id)?;
    let q = query(q)?;
    blocking(move || nn.list_parts(&owner, &id, &q))
        .await
        .map(Json)
}

pub(super) async fn copy_part(
    State(nn): State<Arc<Namenode>>,
    UserKey(owner): UserKey,
    Path(id): Path<String>,
    JsonBody(req): JsonBody<CopyPart>,
) -> Result<Json<PartInfo>, Error> {
    let id = parse_upload(&id)?;
    blocking(move || nn.copy_part(&owner, &id, &req))
        .await
        .map(Json)
}

pub(super) async fn complete_multipart(
    State(nn): State<Arc<Namenode>>,
    UserKey(owner): UserKey,
    Path(id): Path<String>,
    JsonBody(req): JsonBody<CompleteMultipart>,
) -> Result<Json<FileInfo>, Error> {
    let id = parse_upload(&id)?;
    blocking(move || nn.complete_multipart(&owner, &id, &req))
        .await
        .map(Json)
}

pub(super) async fn abort_multipart(
    State(nn): State<Arc<Namenode>>,
    UserKey(owner): UserKey,
    Path(id): Path<String>,
) -> Result<StatusCode, Error> {
    let id = parse_upload(&id)?;
    blocking(move || nn.abort_multipart(&owner, &id))
        .await
        .map(|_| StatusCode::NO_CONTENT)
}
