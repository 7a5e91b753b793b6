//! Who may do what to a bucket: the one place that decides every request
//! from its principal, the bucket it touches and the operation, as Garage
//! does. The route table ([`route_needs`]) says what each user route needs
//! and where its bucket comes from; [`Namenode::authorize`] decides; the
//! authentication layer (`api::auth`) applies both before any handler runs.
//!
//! A bucket's owner (the key that made it) may do everything to it; other
//! keys only what an admin granted them (`read`, `write`, `owner`); admin
//! keys may do everything everywhere. Services (datanodes, edges, the S3
//! gateway) are limited by the role of their routes instead, and the S3
//! gateway acts as the user whose signature it checked.

use axum::http::Method;
use blob_common::auth::ServiceRole;
use blob_common::proto::keys::Permissions;

use crate::db::{BucketRecord, CF_BUCKETS};
use crate::error::Error;
use crate::Namenode;

/// Who signed a request.
#[derive(Debug, Clone)]
pub(crate) enum Principal {
    /// A user's access key.
    User { access_key: String, admin: bool },
    /// A service identity (datanode, edge, S3 gateway).
    Service(ServiceRole),
}

impl Principal {
    /// How the principal is named in logs and claims.
    pub(crate) fn name(&self) -> &str {
        match self {
            Principal::User { access_key, .. } => access_key,
            Principal::Service(role) => role.name(),
        }
    }

    /// The access key of a user.
    pub(crate) fn user(&self) -> Result<&str, Error> {
        match self {
            Principal::User { access_key, .. } => Ok(access_key),
            Principal::Service(role) => Err(Error::Forbidden(format!(
                "{} credentials may not call user routes",
                role.name()
            ))),
        }
    }

    /// Whether this is an admin user.
    pub(crate) fn is_admin(&self) -> bool {
        matches!(self, Principal::User { admin: true, .. })
    }
}

/// What an operation needs of its bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Need {
    /// List, stat, read.
    Read,
    /// Write, overwrite, rename, delete files.
    Write,
    /// Settings, grants, deleting the bucket.
    Owner,
    /// Any permission at all (a bucket's settings, which readers and
    /// writers both consult: CORS, encryption default, versioning).
    Any,
}

impl Need {
    fn verb(self) -> &'static str {
        match self {
            Need::Read => "read",
            Need::Write => "write to",
            Need::Owner => "administer",
            Need::Any => "use",
        }
    }

    fn allowed_by(self, p: &Permissions) -> bool {
        p.owner
            || match self {
                Need::Read => p.read,
                Need::Write => p.write,
                Need::Owner => false,
                Need::Any => p.read || p.write,
            }
    }
}

/// Where a route finds the bucket it touches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    /// The `{bucket}` segment of the path.
    Path,
    /// The `bucket` query parameter.
    Query,
    /// The JSON body's `bucket` field.
    Body,
    /// The JSON body's `src_bucket` field (copies read from there).
    CopiedFrom,
    /// The bucket of the upload session named by `{id}`.
    Upload,
    /// The bucket of the multipart upload named by `{id}`.
    Multipart,
}

/// What a route needs, when listed.
pub(crate) enum Rule {
    /// Each (permission, where the bucket is) pair must hold; an empty list
    /// needs no bucket (listing buckets, making one, data keys).
    Needs(&'static [(Need, Source)]),
    /// Not a user route: its role alone decides (admin and service routes).
    Unlisted,
}

/// The table: what every user route needs. A user route missing here is
/// refused to every key but admin keys (`api::auth` fails closed).
pub(crate) fn route_needs(method: &Method, route: &str) -> Rule {
    use Need::*;
    use Source::*;
    let m = method.as_str();
    let needs: &'static [(Need, Source)] = match (m, route) {
        ("GET", "/v1/buckets") => &[],
        ("PUT", "/v1/buckets/{bucket}") => &[],
        ("HEAD" | "GET", "/v1/buckets/{bucket}") => &[(Any, Path)],
        ("DELETE", "/v1/buckets/{bucket}") => &[(Owner, Path)],
        ("GET", "/v1/buckets/{bucket}/files") => &[(Read, Path)],
        ("GET", "/v1/buckets/{bucket}/versions") => &[(Read, Path)],
        ("PUT" | "DELETE", "/v1/buckets/{bucket}/settings/{name}") => &[(Owner, Path)],
        ("GET", "/v1/bucket-settings/{bucket}/{name}") => &[(Any, Path)],
        ("GET", "/v1/file") => &[(Read, Query)],
        ("GET", "/v1/file/locations") => &[(Read, Query)],
        ("DELETE", "/v1/file") => &[(Write, Query)],
        ("POST", "/v1/rename") => &[(Write, Body)],
        ("POST", "/v1/file/meta") => &[(Write, Body)],
        ("POST", "/v1/copy") => &[(Write, Body), (Read, CopiedFrom)],
        ("POST", "/v1/uploads") => &[(Write, Body)],
        (
            "DELETE" | "POST",
            "/v1/uploads/{id}"
            | "/v1/uploads/{id}/chunks"
            | "/v1/uploads/{id}/retarget"
            | "/v1/uploads/{id}/manifest"
            | "/v1/uploads/{id}/commit",
        ) => &[(Write, Upload)],
        ("POST", "/v1/multipart") => &[(Write, Body)],
        ("GET", "/v1/multipart") => &[(Write, Query)],
        (
            "DELETE" | "GET" | "POST",
            "/v1/multipart/{id}" | "/v1/multipart/{id}/parts" | "/v1/multipart/{id}/complete",
        ) => &[(Write, Multipart)],
        ("POST", "/v1/multipart/{id}/copy-part") => &[(Write, Multipart), (Read, CopiedFrom)],
        ("POST", "/v1/sse/data-key" | "/v1/sse/unwrap") => &[],
        ("POST", "/v1/chunks/bad") => &[],
        _ => return Rule::Unlisted,
    };
    Rule::Needs(needs)
}

/// A key's permissions on a bucket, from its record.
pub(crate) fn permissions_of(rec: &BucketRecord, access_key: &str) -> Permissions {
    if rec.owner.as_deref() == Some(access_key) {
        return Permissions {
            read: true,
            write: true,
            owner: true,
        };
    }
    rec.grants.get(access_key).copied().unwrap_or_default()
}

impl Namenode {
    /// Whether `who` may do what `need` names to `bucket`: 403
    /// `AccessDenied` if not. A bucket that does not exist passes (the
    /// operation then answers `NoSuchBucket`, as S3 does).
    pub(crate) fn authorize(&self, who: &Principal, bucket: &str, need: Need) -> Result<(), Error> {
        let Principal::User { access_key, admin } = who else {
            return Ok(());
        };
        if *admin {
            return Ok(());
        }
        let Some(rec) = self
            .meta
            .get::<BucketRecord>(CF_BUCKETS, bucket.as_bytes())?
        else {
            return Ok(());
        };
        if need.allowed_by(&permissions_of(&rec, access_key)) {
            Ok(())
        } else {
            Err(Error::Forbidden(format!(
                "access key {access_key} may not {} bucket {bucket}",
                need.verb()
            )))
        }
    }

    /// Whether `who` may see `bucket` in a listing (any permission).
    pub(crate) fn may_see(&self, who: &Principal, rec: &BucketRecord) -> bool {
        match who {
            Principal::User { admin: true, .. } | Principal::Service(_) => true,
            Principal::User { access_key, .. } => !permissions_of(rec, access_key).is_empty(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn needs_are_met_by_exactly_their_permissions() {
        let none = Permissions::default();
        let read = Permissions { read: true, ..none };
        let write = Permissions {
            write: true,
            ..none
        };
        let owner = Permissions {
            owner: true,
            ..none
        };
        let table = [
            (Need::Read, [false, true, false, true]),
            (Need::Write, [false, false, true, true]),
            (Need::Owner, [false, false, false, true]),
            (Need::Any, [false, true, true, true]),
        ];
        for (need, expect) in table {
            let got: Vec<bool> = [none, read, write, owner]
                .iter()
                .map(|p| need.allowed_by(p))
                .collect();
            assert_eq!(got, expect, "{need:?}");
        }
    }

    #[test]
    fn every_user_route_is_listed() {
        for (m, r) in [
            (Method::GET, "/v1/file"),
            (Method::POST, "/v1/copy"),
            (Method::POST, "/v1/uploads/{id}/commit"),
            (Method::POST, "/v1/multipart/{id}/copy-part"),
        ] {
            assert!(matches!(route_needs(&m, r), Rule::Needs(n) if !n.is_empty()));
        }
        assert!(matches!(
            route_needs(&Method::GET, "/v1/admin/status"),
            Rule::Unlisted
        ));
    }
}
