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
use blob_common::auth::{self, RequestParts, ServiceRole, CLUSTER_KEY_PREFIX, SERVICE_KEY_PREFIX};
use blob_server::limits::{self, Budget};

use super::{blocking, body_limit};
pub(crate) use crate::access::Principal;
use crate::access::{self, Rule, Source};
use crate::db::{MultipartRecord, UploadRecord, CF_MULTIPART, CF_UPLOADS};
use crate::error::Error;
use crate::Namenode;

/// What the authentication layer needs: the namenode (keys) and the
/// budget of request bytes in memory.
#[derive(Clone)]
pub(super) struct Gate {
    pub(super) nn: Arc<Namenode>,
    pub(super) budget: Budget,
}

/// What a route requires of whoever signed the request. Declared once per
/// route group in the route table ([`super::router`]); handlers never check
/// it again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Role {
    /// A user's access key, admin or not.
    User,
    /// An admin user's access key.
    Admin,
    /// A user, or one of these services.
    UserOr(&'static [ServiceRole]),
    /// An admin user, or one of these services.
    AdminOr(&'static [ServiceRole]),
    /// One of these services only.
    Services(&'static [ServiceRole]),
}

impl Role {
    /// Whether `p` may call a route requiring this role; the refusal is a
    /// 403 `AccessDenied` saying what was missing.
    pub(super) fn check(self, p: &Principal) -> Result<(), Error> {
        let admin_required = || Err(Error::Forbidden("admin key required".into()));
        match (self, p) {
            (Role::User | Role::UserOr(_), Principal::User { .. }) => Ok(()),
            (Role::Admin | Role::AdminOr(_), Principal::User { admin: true, .. }) => Ok(()),
            (Role::Admin | Role::AdminOr(_), Principal::User { .. }) => admin_required(),
            (Role::UserOr(s) | Role::AdminOr(s) | Role::Services(s), Principal::Service(r))
                if s.contains(r) =>
            {
                Ok(())
            }
            (Role::Services(s), Principal::User { .. }) => Err(Error::Forbidden(format!(
                "a route for {} credentials only",
                s.iter().map(|r| r.name()).collect::<Vec<_>>().join(" and ")
            ))),
            (_, Principal::Service(r)) => Err(Error::Forbidden(format!(
                "{} credentials may not call this route",
                r.name()
            ))),
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
    let mut key_limits = Default::default();
    let (secrets, principal) = if let Some(role) = cred.access_key.strip_prefix(SERVICE_KEY_PREFIX)
    {
        let role = ServiceRole::from_name(role)
            .ok_or_else(|| refuse(auth::AuthError::UnknownKey(cred.access_key.clone()).into()))?;
        let secret = nn
            .keyring
            .service_secret(role)
            .ok_or_else(|| refuse(auth::AuthError::UnknownKey(cred.access_key.clone()).into()))?
            .to_vec();
        (vec![secret], Principal::Service(role))
    } else if cred.access_key.starts_with(CLUSTER_KEY_PREFIX) {
        return Err(refuse(Error::Forbidden(
            "the cluster secret signs chunk URLs, not calls to the namenode: a service signs \
             with its own identity (the service.<role>= line of its keyring file)"
                .into(),
        )));
    } else if let Some((expires, user)) = auth::parse_session_key(&cred.access_key) {
        // An S3 gateway acting as a user: the session's secret is derived
        // from its name, and the user must still exist.
        if expires < blob_common::now_secs() {
            return Err(refuse(auth::AuthError::SessionExpired.into()));
        }
        let (nn2, key) = (nn.clone(), user.to_string());
        let (admin, limits) = blocking(move || nn2.key_rights(&key))
            .await
            .map_err(refuse)?
            .ok_or_else(|| refuse(auth::AuthError::UnknownKey(user.to_string()).into()))?;
        key_limits = limits;
        (
            vec![nn.master_keys.session_secret(&cred.access_key).into_bytes()],
            Principal::User {
                access_key: user.to_string(),
                admin,
            },
        )
    } else {
        let nn2 = nn.clone();
        let key = cred.access_key.clone();
        let (secrets, admin, limits) = blocking(move || nn2.key_secrets(&key))
            .await
            .map_err(refuse)?
            .ok_or_else(|| refuse(auth::AuthError::UnknownKey(cred.access_key.clone()).into()))?;
        key_limits = limits;
        (
            secrets.into_iter().map(String::into_bytes).collect(),
            Principal::User {
                access_key: cred.access_key.clone(),
                admin,
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
    // Between a rotation and the old secret's retirement a key has two.
    let now = blob_common::now_secs();
    let mut verified = Err(auth::AuthError::UnknownKey(cred.access_key.clone()));
    for secret in &secrets {
        verified = auth::verify_signature(&cred, secret, &request, now);
        if verified.is_ok() {
            break;
        }
    }
    verified.map_err(|e| refuse(e.into()))?;
    if let Principal::User { access_key, .. } = &principal {
        nn.rate_limits
            .admit_request(access_key, key_limits)
            .map_err(refuse)?;
    }
    let route = parts
        .extensions
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string())
        .unwrap_or_default();
    let limit = body_limit(&route);
    let (body, held) = limits::read_body(
        body,
        limits::declared_length(&parts.headers),
        limit,
        &gate.budget,
    )
    .await
    .map_err(IntoResponse::into_response)?;
    auth::check_body(header(auth::CONTENT_SHA_HEADER), &body).map_err(|e| refuse(e.into()))?;
    let mut parts = parts;
    check_access(&nn, &principal, &mut parts, &route, &body)
        .await
        .map_err(refuse)?;
    let mut req = Request::from_parts(parts, Body::from(body));
    req.extensions_mut().insert(principal);
    let resp = next.run(req).await;
    // The body's bytes (and what the handler parsed from them) are gone
    // once it answered.
    drop(held);
    Ok(resp)
}

/// Applies the access table ([`access::route_needs`]) to a request whose
/// signer and body are known: finds each bucket it touches and asks
/// [`Namenode::authorize`]. Admin keys and services pass (their routes'
/// roles limit them); a user route missing from the table is refused.
async fn check_access(
    nn: &Arc<Namenode>,
    who: &Principal,
    parts: &mut Parts,
    route: &str,
    body: &[u8],
) -> Result<(), Error> {
    if who.is_admin() || !matches!(who, Principal::User { .. }) {
        return Ok(());
    }
    let needs = match access::route_needs(&parts.method, route) {
        Rule::Needs(n) => n,
        Rule::Unlisted => {
            return Err(Error::Forbidden(format!(
                "{} {route} needs an admin key",
                parts.method
            )))
        }
    };
    if needs.is_empty() {
        return Ok(());
    }
    let params = axum::extract::RawPathParams::from_request_parts(parts, &())
        .await
        .map_err(|e| Error::Internal(format!("path parameters: {e}")))?;
    let param = |name: &str| {
        params
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.to_string())
    };
    #[derive(serde::Deserialize, Default)]
    struct Named {
        bucket: Option<String>,
        src_bucket: Option<String>,
    }
    let named: Named = if needs
        .iter()
        .any(|(_, s)| matches!(s, Source::Body | Source::CopiedFrom))
    {
        // A body that is not such JSON is refused by its handler.
        serde_json::from_slice(body).unwrap_or_default()
    } else {
        Named::default()
    };
    let query_bucket = || {
        form_urlencoded::parse(parts.uri.query().unwrap_or("").as_bytes())
            .find(|(k, _)| k == "bucket")
            .map(|(_, v)| v.into_owned())
    };
    let mut checks = Vec::new();
    for (need, source) in needs {
        let bucket = match source {
            Source::Path => param("bucket"),
            Source::Query => query_bucket(),
            Source::Body => named.bucket.clone(),
            Source::CopiedFrom => named.src_bucket.clone(),
            Source::Upload | Source::Multipart => param("id"),
        };
        // Nothing named: the handler refuses the request as malformed.
        if let Some(b) = bucket {
            checks.push((*need, *source, b));
        }
    }
    let nn = nn.clone();
    let who = who.clone();
    blocking(move || {
        for (need, source, named) in checks {
            // An id that names no session: the handler answers NoSuchUpload.
            let bucket = match (source, named.parse::<blob_common::UploadId>()) {
                (Source::Upload, Ok(id)) => nn
                    .meta
                    .get::<UploadRecord>(CF_UPLOADS, id.as_bytes())?
                    .map(|r| r.bucket),
                (Source::Multipart, Ok(id)) => nn
                    .meta
                    .get::<MultipartRecord>(CF_MULTIPART, id.as_bytes())?
                    .map(|r| r.bucket),
                (Source::Upload | Source::Multipart, Err(_)) => None,
                _ => Some(named),
            };
            if let Some(bucket) = bucket {
                nn.authorize(&who, &bucket, need)?;
            }
        }
        Ok(())
    })
    .await
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
    fn each_role_admits_exactly_its_signers() {
        use ServiceRole::*;
        let (plain, admin) = (user(false), user(true));
        let (dn, edge, gw) = (
            Principal::Service(Datanode),
            Principal::Service(Edge),
            Principal::Service(Gateway),
        );
        let roles = [
            Role::User,
            Role::Admin,
            Role::UserOr(&[Edge]),
            Role::AdminOr(&[Edge]),
            Role::Services(&[Datanode]),
            Role::Services(&[Gateway]),
        ];
        // Rows: plain, admin, datanode, edge, gateway.
        let admitted = [
            [true, false, true, false, false, false],
            [true, true, true, true, false, false],
            [false, false, false, false, true, false],
            [false, false, true, true, false, false],
            [false, false, false, false, false, true],
        ];
        for (p, row) in [&plain, &admin, &dn, &edge, &gw].iter().zip(admitted) {
            for (role, want) in roles.iter().zip(row) {
                assert_eq!(refusal(*role, p).is_none(), want, "{p:?} on {role:?}");
            }
        }
        assert_eq!(
            refusal(Role::Admin, &plain).as_deref(),
            Some("admin key required")
        );
        assert_eq!(
            refusal(Role::User, &dn).as_deref(),
            Some("datanode credentials may not call this route")
        );
    }
}
