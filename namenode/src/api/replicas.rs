//! Replica handlers: read locations of a file or of chunks, readers'
//! corruption claims, and datanode chunk reports.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use blob_common::proto::heartbeat::ChunkReport;
use blob_common::proto::namenode::*;

use super::auth::Principal;
use super::{blocking, query, JsonBody};
use crate::error::Error;
use crate::Namenode;

pub(super) async fn locations(
    State(nn): State<Arc<Namenode>>,
    Extension(p): Extension<Principal>,
    q: Result<Query<FileQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<FileLocations>, Error> {
    let q = query(q)?;
    let nn2 = nn.clone();
    let locs = blocking(move || nn2.locations(&q)).await?;
    if let Principal::User { access_key, .. } = &p {
        nn.charge_bytes(access_key, locs.chunks.iter().map(|c| c.size).sum())?;
    }
    Ok(Json(locs))
}

pub(super) async fn locate_chunks(
    State(nn): State<Arc<Namenode>>,
    JsonBody(req): JsonBody<LocateChunks>,
) -> Result<Json<LocatedChunks>, Error> {
    blocking(move || nn.locate_chunks(&req)).await.map(Json)
}

pub(super) async fn bad_replica(
    State(nn): State<Arc<Namenode>>,
    Extension(p): Extension<Principal>,
    JsonBody(req): JsonBody<BadReplica>,
) -> Result<StatusCode, Error> {
    let reporter = p.name().to_string();
    blocking(move || nn.bad_replica(&reporter, &req))
        .await
        .map(|_| StatusCode::NO_CONTENT)
}

pub(super) async fn chunk_report(
    State(nn): State<Arc<Namenode>>,
    JsonBody(report): JsonBody<ChunkReport>,
) -> Result<StatusCode, Error> {
    blocking(move || nn.chunk_report(&report))
        .await
        .map(|_| StatusCode::NO_CONTENT)
}
