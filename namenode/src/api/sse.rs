//! SSE-S3 data keys: fresh ones for new objects, and the clear key of an
//! object's wrapped one for its readers. The master keys stay here.

use std::sync::Arc;

use axum::extract::State;
use axum::Json;
use blob_common::proto::keys::{DataKeyGrant, UnwrapKey};

use super::JsonBody;
use crate::error::Error;
use crate::Namenode;

pub(super) async fn data_key(State(nn): State<Arc<Namenode>>) -> Result<Json<DataKeyGrant>, Error> {
    nn.grant_data_key().map(Json)
}

pub(super) async fn unwrap(
    State(nn): State<Arc<Namenode>>,
    JsonBody(req): JsonBody<UnwrapKey>,
) -> Result<Json<DataKeyGrant>, Error> {
    nn.unwrap_data_key(&req.wrapped).map(Json)
}
