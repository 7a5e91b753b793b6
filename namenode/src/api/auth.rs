//! Who may call what: request authentication (the signature, then the body
//! within its route's limit), the [`Principal`] a request was signed by, and
//! the [`Role`] each route group requires, checked once by [`require`]
//! before any handler runs.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{FromRequestParts, MatchedPath, Request, State};
use axum::http::header;
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use blob_common::auth::{self, RequestParts, CLUSTER_KEY_PREFIX};
use blob_server::limits::{self, Budget};

use super::{blocking, body_limit, SMALL_BODY_LIMIT};
use crate::error::Error;
use crate::Namenode;

/// What the authentication layer needs: the namenode (keys) and the
/// budget of request bytes in memory.
#[derive(Clone)]
pub(super) struct Gate {
    pub(super) nn: Arc<Namenode>,
    pub(super) budget: Budget,
}

/// Who signed a request.
#[derive(Debug, Clone)]
pub(super) enum Principal {
    /// A user's access key.
    User { access_key: String, admin: bool },
    /// A datanode or another cluster service (edge, S3 gateway), signing
    /// with the cluster keyring.
    Cluster,
}

impl Principal {
    /// How the principal is named in logs and rate limits.
    pub(super) fn name(&self) -> &str {
        match self {
            Principal::User { access_key, .. } => access_key,
            Principal::Cluster => "cluster",
        }
    }

    fn user(&self) -> Result<&str, Error> {
        match self {
            Principal::User { access_key, .. } => Ok(access_key),
            Principal::Cluster => Err(Error::Forbidden(
                "cluster credentials are for datanode routes".into(),
            )),
        }
    }
}

/// What a route requires of whoever signed the request. Declared once per
/// route group in the route table ([`super::router`]); handlers never check
/// it again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Role {
    /// Any valid signature: users, and cluster services such as edges.
    AnySigner,
    /// A user's access key, admin or not.
    User,
    /// An admin user's access key.
    Admin,
    /// An admin user, or a service holding the cluster secret (an edge).
    AdminOrCluster,
    /// The cluster secret (datanodes, and the S3 gateway's key lookup).
    Cluster,
}

impl Role {
    /// Whether `p` may call a route requiring this role; the refusal is a
    /// 403 `AccessDenied` saying what was missing.
    pub(super) fn check(self, p: &Principal) -> Result<(), Error> {
        let admin = || match p {
            Principal::User { admin: true, .. } => Ok(()),
            _ => Err(Error::Forbidden("admin key required".into())),
        };
        match (self, p) {
            (Role::AnySigner, _) => Ok(()),
            (Role::User, p) => p.user().map(|_| ()),
            (Role::Admin, _) => admin(),
            (Role::AdminOrCluster, Principal::Cluster) => Ok(()),
            (Role::AdminOrCluster, _) => admin(),
            (Role::Cluster, Principal::Cluster) => Ok(()),
            (Role::Cluster, _) => Err(Error::Forbidden(
                "datanode routes need cluster credentials".into(),
            )),
        }
    }
}

/// Refuses a request whose signer lacks the route group's [`Role`]. Runs
/// after [`authenticate`] and before the handler parses anything.
pub(super) async fn require(State(role): State<Role>, req: Request, next: Next) -> Response {
    let checked = match req.extensions().get::<Principal>() {
        Some(p) => role.check(p),
        None => Err(Error::Internal(
            "role check ran before authentication".into(),
        )),
    };
    match checked {
        Ok(()) => next.run(req).await,
        Err(e) => e.into_response(),
    }
}

/// The access key of a request signed by a user: the owner of the
/// sessions and multipart uploads it touches. Only on [`Role::User`]
/// routes, where [`require`] already refused anyone else.
pub(super) struct UserKey(pub(super) String);

impl<S: Send + Sync> FromRequestParts<S> for UserKey {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let p = parts
            .extensions
            .get::<Principal>()
            .ok_or_else(|| Error::Internal("no principal on a signed route".into()))?;
        p.user().map(|k| UserKey(k.to_string()))
    }
}

/// Authenticates a request before reading a byte of its body: the
/// signature covers the method, path, query, date and the body's declared
/// SHA-256, so it is checked first. Only then is the body read, within the
/// route's limit ([`body_limit`]: 413 past it) and the namenode's budget of
/// bytes in flight (503 with `Retry-After` when full), and checked against
/// the declared hash. Records who signed it.
pub(super) async fn authenticate(State(gate): State<Gate>, req: Request, next: Next) -> Response {
    match authenticate_inner(gate, req, next).await {
        Ok(r) => r,
        Err(r) => r,
    }
}

async fn authenticate_inner(gate: Gate, req: Request, next: Next) -> Result<Response, Response> {
    let nn = gate.nn;
    let (parts, body) = req.into_parts();
    let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok());
    let refuse = |e: Error| e.into_response();
    let cred = auth::parse_authorization(header(header::AUTHORIZATION.as_str()))
        .map_err(|e| refuse(e.into()))?;
    let (secret, principal) = if let Some(kid) = cred.access_key.strip_prefix(CLUSTER_KEY_PREFIX) {
        let secret = nn
            .keyring
            .secret(kid)
            .ok_or_else(|| refuse(auth::AuthError::UnknownKey(cred.access_key.clone()).into()))?
            .to_vec();
        (secret, Principal::Cluster)
    } else {
        let nn2 = nn.clone();
        let key = cred.access_key.clone();
        let rec = blocking(move || nn2.key_secret(&key))
            .await
            .map_err(refuse)?
            .ok_or_else(|| refuse(auth::AuthError::UnknownKey(cred.access_key.clone()).into()))?;
        (
            rec.secret.into_bytes(),
            Principal::User {
                access_key: cred.access_key.clone(),
                admin: rec.admin,
            },
        )
    };
    let request = RequestParts {
        method: parts.method.as_str(),
        path: parts.uri.path(),
        query: parts.uri.query().unwrap_or(""),
        date: header(auth::DATE_HEADER),
        content_sha256: header(auth::CONTENT_SHA_HEADER),
        body: &[],
    };
    auth::verify_signature(&cred, &secret, &request, blob_common::now_secs())
        .map_err(|e| refuse(e.into()))?;
    let limit = parts
        .extensions
        .get::<MatchedPath>()
        .map_or(SMALL_BODY_LIMIT, |m| body_limit(m.as_str()));
    let (body, held) = limits::read_body(
        body,
        limits::declared_length(&parts.headers),
        limit,
        &gate.budget,
    )
    .await
    .map_err(IntoResponse::into_response)?;
    auth::check_body(header(auth::CONTENT_SHA_HEADER), &body).map_err(|e| refuse(e.into()))?;
    let mut req = Request::from_parts(parts, Body::from(body));
    req.extensions_mut().insert(principal);
    let resp = next.run(req).await;
    // The body's bytes (and what the handler parsed from them) are gone
    // once it answered.
    drop(held);
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(admin: bool) -> Principal {
        Principal::User {
            access_key: "BKTEST".into(),
            admin,
        }
    }

    fn refusal(role: Role, p: &Principal) -> Option<String> {
        match role.check(p) {
            Ok(()) => None,
            Err(Error::Forbidden(m)) => Some(m),
            Err(e) => panic!("a role refusal must be Forbidden, got {e:?}"),
        }
    }

    #[test]
    fn each_role_admits_exactly_its_signers_with_the_documented_refusals() {
        let (plain, admin, cluster) = (user(false), user(true), Principal::Cluster);
        for p in [&plain, &admin, &cluster] {
            assert_eq!(refusal(Role::AnySigner, p), None);
        }
        assert_eq!(refusal(Role::User, &plain), None);
        assert_eq!(refusal(Role::User, &admin), None);
        assert_eq!(
            refusal(Role::User, &cluster).as_deref(),
            Some("cluster credentials are for datanode routes")
        );
        assert_eq!(
            refusal(Role::Admin, &plain).as_deref(),
            Some("admin key required")
        );
        assert_eq!(refusal(Role::Admin, &admin), None);
        assert_eq!(
            refusal(Role::Admin, &cluster).as_deref(),
            Some("admin key required")
        );
        assert_eq!(
            refusal(Role::AdminOrCluster, &plain).as_deref(),
            Some("admin key required")
        );
        assert_eq!(refusal(Role::AdminOrCluster, &admin), None);
        assert_eq!(refusal(Role::AdminOrCluster, &cluster), None);
        for p in [&plain, &admin] {
            assert_eq!(
                refusal(Role::Cluster, p).as_deref(),
                Some("datanode routes need cluster credentials")
            );
        }
        assert_eq!(refusal(Role::Cluster, &cluster), None);
    }
}
