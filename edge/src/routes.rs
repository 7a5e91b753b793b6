//! The edge's HTTP routes: chunk reads ([`crate::read`]), warm-up
//! ([`crate::warm`]), stats for holders of a namenode-signed grant, health
//! and metrics.

use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Json, Router};
use blob_common::presign::{self, EdgeAdminQuery};
use blob_common::proto::edge::EdgeStats;
use blob_server::ApiError;

use crate::error::Error;
use crate::{read, warm, Edge};

/// The edge's routes, each with its handler.
pub(crate) fn router(edge: Arc<Edge>) -> Router {
    Router::new()
        .route(
            "/v1/chunks/{id}",
            get(read::get_chunk).head(read::head_chunk),
        )
        .route("/v1/warm", post(warm::warm))
        .route("/v1/admin/stats", get(stats))
        .route("/v1/health", get(health))
        .route("/metrics", get(metrics))
        .fallback(|| async { ApiError::new(404, "NoSuchRoute", "no such route") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(405, "MethodNotAllowed", "method not allowed on this route")
        })
        // The one route with a body (warm) reads it itself, within its
        // limit and the budget.
        .layer(DefaultBodyLimit::max(warm::WARM_BODY_LIMIT))
        .layer(axum::middleware::from_fn(blob_server::http::trace_requests))
        .with_state(edge)
}

async fn health(State(edge): State<Arc<Edge>>) -> Json<serde_json::Value> {
    Json(serde_json::json!({ "zone": edge.cfg.zone, "status": "ok" }))
}

async fn metrics(State(edge): State<Arc<Edge>>) -> Response {
    blob_server::http::metrics_response(edge.metrics.encode())
}

/// `GET /v1/admin/stats?scope=stats&exp=&kid=&s=`.
pub(crate) async fn stats(
    State(edge): State<Arc<Edge>>,
    query: Result<Query<EdgeAdminQuery>, QueryRejection>,
) -> Result<Json<EdgeStats>, Error> {
    let check = query
        .map_err(|e| Error::BadRequest(e.body_text()))
        .and_then(|Query(q)| {
            presign::verify_edge_admin(&edge.keyring, &q, "stats", blob_common::now_secs())
                .map_err(Error::from)
        });
    if let Err(e) = check {
        edge.metrics.refused.inc();
        return Err(e);
    }
    Ok(Json(
        edge.metrics.stats(&edge.cfg.zone, edge.cfg.policy.name()),
    ))
}
