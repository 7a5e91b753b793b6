//! Upload session handlers, from plan to commit or abort (a user key, which
//! owns the session).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use blob_common::proto::namenode::*;

use super::auth::UserKey;
use super::{blocking, parse_upload, JsonBody};
use crate::error::Error;
use crate::Namenode;

pub(super) async fn create_upload(
    State(nn): State<Arc<Namenode>>,
    UserKey(owner): UserKey,
    JsonBody(req): JsonBody<CreateUpload>,
) -> Result<Json<UploadPlan>, Error> {
    nn.charge_bytes(&owner, req.chunks.iter().map(|c| c.size).sum())?;
    blocking(move || nn.create_upload(&owner, &req))
        .await
        .map(Json)
}

pub(super) async fn add_chunks(
    State(nn): State<Arc<Namenode>>,
    UserKey(owner): UserKey,
    Path(id): Path<String>,
    JsonBody(req): JsonBody<ChunkBatch>,
) -> Result<Json<UploadPlan>, Error> {
    let id = parse_upload(&id)?;
    nn.charge_bytes(&owner, req.chunks.iter().map(|c| c.size).sum())?;
    blocking(move || nn.add_chunks(&owner, &id, &req))
        .await
        .map(Json)
}

pub(super) async fn retarget(
    State(nn): State<Arc<Namenode>>,
    UserKey(owner): UserKey,
    Path(id): Path<String>,
    JsonBody(req): JsonBody<Retarget>,
) -> Result<Json<PutTarget>, Error> {
    let id = parse_upload(&id)?;
    blocking(move || nn.retarget(&owner, &id, &req))
        .await
        .map(Json)
}

pub(super) async fn stage_manifest(
    State(nn): State<Arc<Namenode>>,
    UserKey(owner): UserKey,
    Path(id): Path<String>,
    JsonBody(page): JsonBody<ManifestPage>,
) -> Result<StatusCode, Error> {
    let id = parse_upload(&id)?;
    blocking(move || nn.stage_manifest(&owner, &id, &page))
        .await
        .map(|_| StatusCode::NO_CONTENT)
}

pub(super) async fn commit(
    State(nn): State<Arc<Namenode>>,
    UserKey(owner): UserKey,
    Path(id): Path<String>,
    JsonBody(req): JsonBody<CommitUpload>,
) -> Result<Json<FileInfo>, Error> {
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

pub(super) async fn abort_upload(
    State(nn): State<Arc<Namenode>>,
    UserKey(owner): UserKey,
    Path(id): Path<String>,
) -> Result<StatusCode, Error> {
    let id = parse_upload(&id)?;
    blocking(move || nn.abort(&owner, &id))
        .await
        .map(|_| StatusCode::NO_CONTENT)
}
