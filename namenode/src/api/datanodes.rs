//! Datanode handlers: heartbeats (cluster secret), the node list and
//! decommission (admin).

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use blob_common::proto::heartbeat::Heartbeat;
use blob_common::proto::namenode::*;

use super::{blocking, JsonBody};
use crate::error::Error;
use crate::Namenode;

pub(super) async fn heartbeat(
    State(nn): State<Arc<Namenode>>,
    JsonBody(hb): JsonBody<Heartbeat>,
) -> Result<Response, Error> {
    blocking(move || nn.heartbeat(hb))
        .await
        .map(|r| Json(r).into_response())
}

pub(super) async fn list_nodes(State(nn): State<Arc<Namenode>>) -> Result<Json<ListNodes>, Error> {
    Ok(Json(nn.list_nodes()))
}

pub(super) async fn decommission(
    State(nn): State<Arc<Namenode>>,
    JsonBody(req): JsonBody<Decommission>,
) -> Result<Json<NodeStatus>, Error> {
    blocking(move || nn.decommission(&req.node)).await.map(Json)
}
