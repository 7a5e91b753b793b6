//! Administration handlers: edges, cluster status, fsck, access key grants
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

/// How long a gateway session lasts: the gateway asks again well before
/// (its key cache is shorter), and a deleted key stops working at once
/// because every session request looks its user up.
const SESSION_SECS: u64 = 3600;

/// What an S3 gateway gets for an access key instead of its secret: the
/// SigV4 signing keys of one credential scope and a session to act as the
/// key with.
pub(super) async fn key_grant(
    State(nn): State<Arc<Namenode>>,
    Path(access_key): Path<String>,
    q: Result<Query<GrantQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<GatewayGrant>, Error> {
    let q = query(q)?;
    let now = blob_common::now_secs();
    if !auth::sigv4_date_is_usable(&q.date, now) {
        return Err(Error::BadRequest(
            "date: a YYYYMMDD credential scope date from a week ago to tomorrow (UTC)".into(),
        ));
    }
    let region_ok = |r: &str| {
        (1..=64).contains(&r.len())
            && r.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    if !region_ok(&q.region) || !matches!(q.service.as_str(), "s3" | "sts") {
        return Err(Error::BadRequest(
            "region: up to 64 letters, digits, - or _; service: s3 or sts".into(),
        ));
    }
    let (key, nn2) = (access_key.clone(), nn.clone());
    let (secrets, admin, _) = blocking(move || nn2.key_secrets(&key))
        .await?
        .ok_or_else(|| auth::AuthError::UnknownKey(access_key.clone()))?;
    let signing_keys = secrets
        .iter()
        .map(|s| hex::encode(auth::sigv4_signing_key(s, &q.date, &q.region, &q.service)))
        .collect();
    let expires = now + SESSION_SECS;
    let session_key = auth::session_access_key(&access_key, expires);
    let session_secret = nn.master_keys.session_secret(&session_key);
    Ok(Json(GatewayGrant {
        access_key,
        admin,
        signing_keys,
        session_key,
        session_secret,
        expires,
    }))
}

/// Checks a Signature Version 2 for an S3 gateway, which cannot: SigV2 is
/// an HMAC-SHA1 under the secret itself. Any of the key's secrets (two
/// during a rotation) may have made it.
pub(super) async fn verify_v2(
    State(nn): State<Arc<Namenode>>,
    Path(access_key): Path<String>,
    JsonBody(req): JsonBody<VerifyV2>,
) -> Result<StatusCode, Error> {
    let key = access_key.clone();
    let (secrets, _, _) = blocking(move || nn.key_secrets(&key))
        .await?
        .ok_or_else(|| auth::AuthError::UnknownKey(access_key.clone()))?;
    if secrets
        .iter()
        .any(|s| auth::sigv2_signature_matches(s, &req.string_to_sign, &req.signature))
    {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(auth::AuthError::BadSignature.into())
    }
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
