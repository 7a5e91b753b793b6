//! Pre-signed chunk URLs and storage receipts.
//!
//! The namenode signs, datanodes (and edges) verify locally with no
//! round trip. A URL carries a token (the claims as base64url JSON) and a
//! signature: `HMAC-SHA256(secret[kid], "blob-presign-v1\n" + token)`.
//! The signature covers the token's exact bytes, so there is no canonical
//! form to get wrong: every claim (operation, chunk, expiry, key id, size,
//! pipeline, upload) is covered, and changing any byte of the token or the
//! signature fails verification. What is *not* covered is the `hop` query
//! parameter, the position of the receiving datanode in the pipeline; a
//! datanode checks that the pipeline entry at `hop` names itself, so a
//! forged hop can only make a node refuse, never write elsewhere.
//!
//! A GET URL may also carry `origins`, the chunk's replicas, so that an
//! edge cache handed the URL can fill a miss from a datanode with no
//! namenode round trip: it forwards the same token, which the datanode
//! verifies as any other GET (and whose origins it ignores). The list is
//! signed like every other claim, so nobody can point an edge elsewhere.
//!
//! Edge admin grants ([`sign_edge_admin`]) are a separate, smaller form for
//! an edge's admin routes (stats): the namenode makes them for admin users,
//! the edge checks them with the same keyring.
//!
//! A receipt is a datanode's signed statement that it holds a chunk of a
//! given size durably. Clients pass receipts to the namenode at commit, which
//! verifies them with the same keyring before recording replicas.

use std::collections::BTreeMap;

use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::auth::ServiceRole;
use crate::{ChunkId, NodeId, UploadId};

type HmacSha256 = Hmac<Sha256>;

const PRESIGN_DOMAIN: &[u8] = b"blob-presign-v1\n";
const RECEIPT_DOMAIN: &[u8] = b"blob-receipt-v2\n";
const EDGE_ADMIN_DOMAIN: &[u8] = b"blob-edge-admin-v1\n";

/// What a URL allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Op {
    /// Read the chunk (whole or a range).
    Get,
    /// Store the chunk (and forward it along the pipeline).
    Put,
}

impl std::fmt::Display for Op {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Op::Get => "get",
            Op::Put => "put",
        })
    }
}

/// One datanode of a write pipeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PipelineNode {
    /// The node's id.
    pub node: NodeId,
    /// The node's base URL, e.g. `http://127.0.0.1:9001`.
    pub url: String,
}

/// What a signed URL grants.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The operation allowed.
    pub op: Op,
    /// The chunk the URL is for.
    pub chunk: ChunkId,
    /// Expiry, Unix seconds.
    pub exp: u64,
    /// The signing key's id (for rotation).
    pub kid: String,
    /// For PUT: the exact size of the chunk. For GET: the chunk's size,
    /// when the signer knows it (an edge answers with it before any byte
    /// arrived from the origin).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// For PUT: every node to hold a replica, in pipeline order (primary first).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pipeline: Vec<PipelineNode>,
    /// For PUT: the upload session the chunk belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upload: Option<UploadId>,
    /// For GET through an edge: the replicas the edge may fill a miss
    /// from, best first. Datanodes ignore it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub origins: Vec<PipelineNode>,
}

/// Why a signed URL or receipt was refused. Each maps to a 403 with this text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PresignError {
    /// The token or signature is not well-formed.
    #[error("malformed signed URL: {0}")]
    Malformed(&'static str),
    /// The key id is not in this node's keyring.
    #[error("unknown signing key {0:?}")]
    UnknownKey(String),
    /// The signature does not match the token.
    #[error("signature does not match")]
    BadSignature,
    /// The URL expired.
    #[error("signed URL expired at {exp} (now {now})")]
    Expired {
        /// Expiry, Unix seconds.
        exp: u64,
        /// The verifier's clock, Unix seconds.
        now: u64,
    },
    /// The URL was signed for another operation.
    #[error("signed for {signed}, used for {used}")]
    WrongOp {
        /// What was signed.
        signed: Op,
        /// What the request does.
        used: Op,
    },
    /// The URL was signed for another chunk.
    #[error("signed for chunk {signed}, used for {used}")]
    WrongChunk {
        /// What was signed.
        signed: ChunkId,
        /// What the request names.
        used: ChunkId,
    },
    /// The body's declared size is not the signed size.
    #[error(
        "the URL was signed for a body of {signed} bytes, but the request declares {}",
        match declared {
            Some(n) => format!("{n} bytes"),
            None => "no Content-Length".to_string(),
        }
    )]
    WrongSize {
        /// What was signed.
        signed: u64,
        /// What the request declares (Content-Length), if anything.
        declared: Option<u64>,
    },
    /// The receiving node is not the pipeline entry the request says it is.
    #[error("this node is not hop {0} of the signed pipeline")]
    WrongHop(usize),
}

/// The cluster's signing keys: key id → secret (the first key signs chunk
/// URLs, receipts and edge grants), and the secrets of the service
/// identities ([`ServiceRole`]) that sign calls to the namenode.
///
/// The namenode holds every secret (`cluster.secret`); each service is
/// given only its role's file ([`Keyring::for_role`]): datanodes and edges
/// the URL keys and their own service secret, S3 gateways their service
/// secret alone.
#[derive(Clone)]
pub struct Keyring {
    current: String,
    keys: BTreeMap<String, Vec<u8>>,
    services: BTreeMap<ServiceRole, Vec<u8>>,
}

/// Prefix of a service secret's line in a keyring file
/// (`service.datanode=<secret>`).
const SERVICE_LINE: &str = crate::auth::SERVICE_KEY_PREFIX;

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print secrets.
        f.debug_struct("Keyring")
            .field("current", &self.current)
            .field("keys", &self.keys.keys().collect::<Vec<_>>())
            .field("services", &self.services.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Keyring {
    /// A keyring with one key.
    pub fn single(kid: impl Into<String>, secret: impl Into<Vec<u8>>) -> Self {
        let kid = kid.into();
        let mut keys = BTreeMap::new();
        keys.insert(kid.clone(), secret.into());
        Self {
            current: kid,
            keys,
            services: BTreeMap::new(),
        }
    }

    /// A fresh random single-key keyring (kid `k1`) with a secret for
    /// every service role.
    pub fn generate() -> Self {
        let secret: [u8; 32] = rand::random();
        let mut ring = Self::single("k1", hex::encode(secret).into_bytes());
        ring.ensure_services();
        ring
    }

    /// Adds a random secret for each service role the keyring lacks;
    /// true if it added any (the file should then be written again).
    pub fn ensure_services(&mut self) -> bool {
        let mut added = false;
        for role in ServiceRole::ALL {
            self.services.entry(role).or_insert_with(|| {
                added = true;
                hex::encode(rand::random::<[u8; 32]>()).into_bytes()
            });
        }
        added
    }

    /// What a service of `role` is given: its own service secret, and the
    /// URL keys when its work verifies or signs URLs (datanodes, edges).
    pub fn for_role(&self, role: ServiceRole) -> Keyring {
        let (current, keys) = match role {
            ServiceRole::Datanode | ServiceRole::Edge => (self.current.clone(), self.keys.clone()),
            ServiceRole::Gateway => (String::new(), BTreeMap::new()),
        };
        Keyring {
            current,
            keys,
            services: self
                .services
                .get(&role)
                .map(|s| BTreeMap::from([(role, s.clone())]))
                .unwrap_or_default(),
        }
    }

    /// The secret of service `role`, if this keyring holds it.
    pub fn service_secret(&self, role: ServiceRole) -> Option<&[u8]> {
        self.services.get(&role).map(Vec::as_slice)
    }

    /// Parses the secret file format: one `kid=secret` per line (the first
    /// line's key signs), or a single bare secret (kid `k1`). Blank lines and
    /// `#` comments are skipped.
    pub fn parse(text: &str) -> Result<Self, &'static str> {
        let mut ring: Option<Keyring> = None;
        let mut services = BTreeMap::new();
        for line in text.lines().map(str::trim) {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (kid, secret) = line.split_once('=').unwrap_or(("k1", line));
            let (kid, secret) = (kid.trim(), secret.trim());
            if kid.is_empty() || secret.len() < 16 {
                return Err("each key needs an id and a secret of at least 16 characters");
            }
            if let Some(role) = kid.strip_prefix(SERVICE_LINE) {
                let role = ServiceRole::from_name(role)
                    .ok_or("unknown service role (expected datanode, edge or s3)")?;
                services.insert(role, secret.as_bytes().to_vec());
                continue;
            }
            match &mut ring {
                None => ring = Some(Keyring::single(kid, secret.as_bytes().to_vec())),
                Some(r) => {
                    r.keys.insert(kid.to_string(), secret.as_bytes().to_vec());
                }
            }
        }
        let mut ring = match ring {
            Some(r) => r,
            // A gateway's file: its service secret only.
            None if !services.is_empty() => Keyring {
                current: String::new(),
                keys: BTreeMap::new(),
                services: BTreeMap::new(),
            },
            None => return Err("no key found"),
        };
        ring.services = services;
        Ok(ring)
    }

    /// The file format [`Keyring::parse`] reads, current key first.
    pub fn to_file_text(&self) -> String {
        let mut out = String::new();
        if let Some(cur) = self.keys.get(&self.current) {
            out.push_str(&format!(
                "{}={}\n",
                self.current,
                String::from_utf8_lossy(cur)
            ));
        }
        for (kid, secret) in &self.keys {
            if kid != &self.current {
                out.push_str(&format!("{kid}={}\n", String::from_utf8_lossy(secret)));
            }
        }
        for (role, secret) in &self.services {
            out.push_str(&format!(
                "{SERVICE_LINE}{}={}\n",
                role.name(),
                String::from_utf8_lossy(secret)
            ));
        }
        out
    }

    /// The id of the key that signs.
    pub fn current_kid(&self) -> &str {
        &self.current
    }

    /// The secret of key `kid`, if present (for signing control calls as
    /// `cluster.<kid>`, see [`crate::auth`]).
    pub fn secret(&self, kid: &str) -> Option<&[u8]> {
        self.keys.get(kid).map(Vec::as_slice)
    }

    /// The access key and secret a service of `role` signs calls to the
    /// namenode with: its service identity when the keyring holds it, else
    /// the cluster key (which the namenode refuses, naming the missing
    /// service secret).
    pub fn service_credentials(&self, role: ServiceRole) -> (String, &[u8]) {
        match self.services.get(&role) {
            Some(secret) => (role.access_key(), secret),
            None => (
                format!("{}{}", crate::auth::CLUSTER_KEY_PREFIX, self.current),
                self.keys.get(&self.current).map_or(&[][..], Vec::as_slice),
            ),
        }
    }

    fn mac(&self, kid: &str, domain: &[u8], msg: &[u8]) -> Option<HmacSha256> {
        let secret = self.keys.get(kid)?;
        let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC takes keys of any length");
        mac.update(domain);
        mac.update(msg);
        Some(mac)
    }

    /// HMAC-SHA256 of `msg` under the current key, as hex.
    pub fn sign_hex(&self, domain: &[u8], msg: &[u8]) -> String {
        // A keyring without URL keys (an S3 gateway's) signs nothing that
        // verifies.
        self.mac(&self.current, domain, msg)
            .map(|mac| hex::encode(mac.finalize().into_bytes()))
            .unwrap_or_default()
    }

    /// Checks a hex HMAC made by [`Keyring::sign_hex`] under key `kid`, in
    /// constant time.
    pub fn verify_hex(
        &self,
        kid: &str,
        domain: &[u8],
        msg: &[u8],
        sig_hex: &str,
    ) -> Result<(), PresignError> {
        let mac = self
            .mac(kid, domain, msg)
            .ok_or_else(|| PresignError::UnknownKey(kid.to_string()))?;
        let sig =
            hex::decode(sig_hex).map_err(|_| PresignError::Malformed("signature is not hex"))?;
        mac.verify_slice(&sig)
            .map_err(|_| PresignError::BadSignature)
    }
}

/// A signed URL's query string: `t` (token) and `s` (signature), plus the
/// unsigned pipeline position `hop`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PresignQuery {
    /// base64url (no padding) JSON of the [`Claims`].
    #[serde(default)]
    pub t: String,
    /// Hex HMAC-SHA256 of the token.
    #[serde(default)]
    pub s: String,
    /// Position of the receiving node in a PUT pipeline (0 = primary).
    #[serde(default)]
    pub hop: Option<usize>,
}

/// Signs claims, giving the `(token, signature)` pair.
pub fn sign(keyring: &Keyring, claims: &Claims) -> (String, String) {
    let mut claims = claims.clone();
    claims.kid = keyring.current_kid().to_string();
    let json = serde_json::to_vec(&claims).expect("claims always serialize");
    let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json);
    let sig = keyring.sign_hex(PRESIGN_DOMAIN, token.as_bytes());
    (token, sig)
}

/// A full signed URL for a chunk on the node at `base_url`.
pub fn url(base_url: &str, keyring: &Keyring, claims: &Claims) -> String {
    let (t, s) = sign(keyring, claims);
    format!(
        "{}/v1/chunks/{}?t={t}&s={s}",
        base_url.trim_end_matches('/'),
        claims.chunk
    )
}

/// When a signed chunk URL expires (Unix seconds), read from its token
/// without checking the signature: for a holder deciding how long to keep
/// URLs it was given, never for trusting one. `None` when the URL carries
/// no readable token.
pub fn url_expiry(url: &str) -> Option<u64> {
    let query = url.split_once('?')?.1;
    let token = query.split('&').find_map(|kv| kv.strip_prefix("t="))?;
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token.as_bytes())
        .ok()?;
    serde_json::from_slice::<Claims>(&json).ok().map(|c| c.exp)
}

/// Verifies a signed URL for `op` on `chunk` at time `now` (Unix seconds).
pub fn verify(
    keyring: &Keyring,
    q: &PresignQuery,
    op: Op,
    chunk: &ChunkId,
    now: u64,
) -> Result<Claims, PresignError> {
    if q.t.is_empty() || q.s.is_empty() {
        return Err(PresignError::Malformed("missing t or s parameter"));
    }
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(q.t.as_bytes())
        .map_err(|_| PresignError::Malformed("token is not base64url"))?;
    let claims: Claims = serde_json::from_slice(&json)
        .map_err(|_| PresignError::Malformed("token is not claims"))?;
    keyring.verify_hex(&claims.kid, PRESIGN_DOMAIN, q.t.as_bytes(), &q.s)?;
    if claims.exp < now {
        return Err(PresignError::Expired {
            exp: claims.exp,
            now,
        });
    }
    if claims.op != op {
        return Err(PresignError::WrongOp {
            signed: claims.op,
            used: op,
        });
    }
    if &claims.chunk != chunk {
        return Err(PresignError::WrongChunk {
            signed: claims.chunk,
            used: *chunk,
        });
    }
    Ok(claims)
}

/// Query of an edge admin route: a grant the namenode signed for an admin
/// user, `?scope=&exp=&kid=&s=`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct EdgeAdminQuery {
    /// What the grant allows (e.g. `stats`).
    #[serde(default)]
    pub scope: String,
    /// Expiry, Unix seconds.
    #[serde(default)]
    pub exp: u64,
    /// The signing key's id.
    #[serde(default)]
    pub kid: String,
    /// Hex HMAC-SHA256 over scope and expiry, under key `kid`.
    #[serde(default)]
    pub s: String,
}

impl EdgeAdminQuery {
    fn message(scope: &str, exp: u64) -> String {
        format!("{scope}\n{exp}")
    }

    /// The query string form (`scope=..&exp=..&kid=..&s=..`); every value
    /// is URL-safe (a scope is a plain word, the rest digits and hex).
    pub fn to_query(&self) -> String {
        format!(
            "scope={}&exp={}&kid={}&s={}",
            self.scope, self.exp, self.kid, self.s
        )
    }
}

/// Signs a grant for an edge admin route (`scope`, a plain word) valid
/// until `exp` (Unix seconds).
pub fn sign_edge_admin(keyring: &Keyring, scope: &str, exp: u64) -> EdgeAdminQuery {
    EdgeAdminQuery {
        scope: scope.to_string(),
        exp,
        kid: keyring.current_kid().to_string(),
        s: keyring.sign_hex(
            EDGE_ADMIN_DOMAIN,
            EdgeAdminQuery::message(scope, exp).as_bytes(),
        ),
    }
}

/// Verifies an edge admin grant for `scope` at time `now`.
pub fn verify_edge_admin(
    keyring: &Keyring,
    q: &EdgeAdminQuery,
    scope: &str,
    now: u64,
) -> Result<(), PresignError> {
    if q.s.is_empty() || q.kid.is_empty() {
        return Err(PresignError::Malformed("missing kid or s parameter"));
    }
    keyring.verify_hex(
        &q.kid,
        EDGE_ADMIN_DOMAIN,
        EdgeAdminQuery::message(&q.scope, q.exp).as_bytes(),
        &q.s,
    )?;
    if q.exp < now {
        return Err(PresignError::Expired { exp: q.exp, now });
    }
    if q.scope != scope {
        return Err(PresignError::Malformed("grant is for another scope"));
    }
    Ok(())
}

/// A datanode's signed statement that it durably holds a chunk, for one
/// upload session, made at one time: a receipt cannot be replayed into
/// another session (or bucket), and the namenode refuses old ones.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    /// The node holding the replica.
    pub node: NodeId,
    /// The chunk.
    pub chunk: ChunkId,
    /// Its size in bytes.
    pub size: u64,
    /// The upload session whose PUT stored it (from the signed URL).
    #[serde(default)]
    pub upload: Option<UploadId>,
    /// When the datanode issued it, Unix seconds.
    #[serde(default)]
    pub issued: u64,
    /// The signing key's id.
    pub kid: String,
    /// Hex HMAC-SHA256 over node, chunk, size, upload and issue time.
    pub sig: String,
}

impl Receipt {
    fn message(
        node: &NodeId,
        chunk: &ChunkId,
        size: u64,
        upload: Option<&UploadId>,
        issued: u64,
    ) -> String {
        let upload = upload.map(|u| u.to_string()).unwrap_or_default();
        format!("{node}\n{chunk}\n{size}\n{upload}\n{issued}")
    }

    /// Issues a receipt under the keyring's current key.
    pub fn issue(
        keyring: &Keyring,
        node: NodeId,
        chunk: ChunkId,
        size: u64,
        upload: Option<UploadId>,
        issued: u64,
    ) -> Self {
        let sig = keyring.sign_hex(
            RECEIPT_DOMAIN,
            Self::message(&node, &chunk, size, upload.as_ref(), issued).as_bytes(),
        );
        Self {
            node,
            chunk,
            size,
            upload,
            issued,
            kid: keyring.current_kid().to_string(),
            sig,
        }
    }

    /// Checks the receipt's signature.
    pub fn verify(&self, keyring: &Keyring) -> Result<(), PresignError> {
        keyring.verify_hex(
            &self.kid,
            RECEIPT_DOMAIN,
            Self::message(
                &self.node,
                &self.chunk,
                self.size,
                self.upload.as_ref(),
                self.issued,
            )
            .as_bytes(),
            &self.sig,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_errors_read_as_sentences() {
        let e = PresignError::WrongSize {
            signed: 1_048_576,
            declared: Some(1_048_575),
        };
        assert_eq!(
            e.to_string(),
            "the URL was signed for a body of 1048576 bytes, but the request declares 1048575 bytes"
        );
        let none = PresignError::WrongSize {
            signed: 5,
            declared: None,
        };
        assert!(none.to_string().ends_with("declares no Content-Length"));
    }

    fn claims() -> Claims {
        Claims {
            op: Op::Put,
            chunk: ChunkId::of(b"data"),
            exp: 1_000,
            kid: String::new(),
            size: Some(4),
            pipeline: vec![PipelineNode {
                node: NodeId([1; 8]),
                url: "http://127.0.0.1:1".into(),
            }],
            upload: Some(UploadId([2; 16])),
            origins: vec![PipelineNode {
                node: NodeId([5; 8]),
                url: "http://127.0.0.1:2".into(),
            }],
        }
    }

    fn query(keyring: &Keyring, c: &Claims) -> PresignQuery {
        let (t, s) = sign(keyring, c);
        PresignQuery { t, s, hop: None }
    }

    #[test]
    fn a_signed_url_verifies() {
        let ring = Keyring::generate();
        let c = claims();
        let got = verify(&ring, &query(&ring, &c), Op::Put, &c.chunk, 999);
        let got = got.unwrap_or_else(|e| panic!("verify failed: {e}"));
        assert_eq!(got.size, Some(4));
        assert_eq!(got.kid, "k1");
    }

    #[test]
    fn a_urls_expiry_is_read_from_its_token() {
        let ring = Keyring::generate();
        let u = url("http://127.0.0.1:1", &ring, &claims());
        assert_eq!(url_expiry(&u), Some(1_000));
        assert_eq!(url_expiry("http://127.0.0.1:1/v1/chunks/x?t=%%%&s=0"), None);
        assert_eq!(url_expiry("http://127.0.0.1:1/v1/chunks/x"), None);
    }

    #[test]
    fn every_claim_is_covered_by_the_signature() {
        let ring = Keyring::generate();
        let q = query(&ring, &claims());
        let mut forged = Vec::new();
        let mut c = claims();
        c.exp = 5_000;
        forged.push(c);
        let mut c = claims();
        c.size = Some(5);
        forged.push(c);
        let mut c = claims();
        c.op = Op::Get;
        forged.push(c);
        let mut c = claims();
        c.pipeline[0].url = "http://evil:1".into();
        forged.push(c);
        let mut c = claims();
        c.upload = None;
        forged.push(c);
        let mut c = claims();
        c.origins[0].url = "http://evil:2".into();
        forged.push(c);
        for c in forged {
            // A forger re-encodes the claims but cannot re-sign them.
            let (t, _) = sign(&Keyring::generate(), &c);
            let tampered = PresignQuery {
                t,
                s: q.s.clone(),
                hop: None,
            };
            assert_eq!(
                verify(&ring, &tampered, c.op, &c.chunk, 999).err(),
                Some(PresignError::BadSignature)
            );
        }
        let mut bad_sig = q.clone();
        bad_sig
            .s
            .replace_range(0..2, if &bad_sig.s[0..2] == "00" { "11" } else { "00" });
        assert_eq!(
            verify(&ring, &bad_sig, Op::Put, &claims().chunk, 999).err(),
            Some(PresignError::BadSignature)
        );
    }

    #[test]
    fn expiry_op_chunk_and_key_are_checked() {
        let ring = Keyring::generate();
        let c = claims();
        let q = query(&ring, &c);
        assert!(matches!(
            verify(&ring, &q, Op::Put, &c.chunk, 1_001),
            Err(PresignError::Expired {
                exp: 1_000,
                now: 1_001
            })
        ));
        assert!(matches!(
            verify(&ring, &q, Op::Get, &c.chunk, 10),
            Err(PresignError::WrongOp { .. })
        ));
        assert!(matches!(
            verify(&ring, &q, Op::Put, &ChunkId::of(b"other"), 10),
            Err(PresignError::WrongChunk { .. })
        ));
        let other = Keyring::single("k2", b"0123456789abcdef0123".to_vec());
        assert!(matches!(
            verify(&other, &q, Op::Put, &c.chunk, 10),
            Err(PresignError::UnknownKey(_))
        ));
        assert!(matches!(
            verify(&ring, &PresignQuery::default(), Op::Put, &c.chunk, 10),
            Err(PresignError::Malformed(_))
        ));
    }

    #[test]
    fn edge_admin_grants_verify_and_detect_tampering() {
        let ring = Keyring::generate();
        let q = sign_edge_admin(&ring, "stats", 100);
        assert_eq!(verify_edge_admin(&ring, &q, "stats", 100), Ok(()));
        assert!(matches!(
            verify_edge_admin(&ring, &q, "stats", 101),
            Err(PresignError::Expired { .. })
        ));
        assert!(verify_edge_admin(&ring, &q, "warm", 10).is_err());
        let mut longer = q.clone();
        longer.exp = 1_000;
        assert_eq!(
            verify_edge_admin(&ring, &longer, "stats", 10),
            Err(PresignError::BadSignature)
        );
        let mut other = q.clone();
        other.scope = "warm".into();
        assert_eq!(
            verify_edge_admin(&ring, &other, "warm", 10),
            Err(PresignError::BadSignature)
        );
        assert!(verify_edge_admin(&Keyring::generate(), &q, "stats", 10).is_err());
        assert!(matches!(
            verify_edge_admin(&ring, &EdgeAdminQuery::default(), "stats", 10),
            Err(PresignError::Malformed(_))
        ));
    }

    #[test]
    fn receipts_verify_and_detect_tampering() {
        let ring = Keyring::generate();
        let up = UploadId([5; 16]);
        let r = Receipt::issue(&ring, NodeId([3; 8]), ChunkId::of(b"x"), 1, Some(up), 100);
        assert!(r.verify(&ring).is_ok());
        let mut bad = r.clone();
        bad.size = 2;
        assert_eq!(bad.verify(&ring), Err(PresignError::BadSignature));
        let mut bad = r.clone();
        bad.node = NodeId([4; 8]);
        assert_eq!(bad.verify(&ring), Err(PresignError::BadSignature));
        let mut bad = r.clone();
        bad.upload = Some(UploadId([6; 16]));
        assert_eq!(bad.verify(&ring), Err(PresignError::BadSignature));
        let mut bad = r.clone();
        bad.upload = None;
        assert_eq!(bad.verify(&ring), Err(PresignError::BadSignature));
        let mut bad = r;
        bad.issued = 101;
        assert_eq!(bad.verify(&ring), Err(PresignError::BadSignature));
    }

    #[test]
    fn keyring_file_round_trips() {
        let ring = Keyring::parse("# comment\nk2=0123456789abcdef0123\nk1=abcdefabcdefabcdef12\n");
        let ring = ring.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(ring.current_kid(), "k2");
        let again = Keyring::parse(&ring.to_file_text()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(again.current_kid(), "k2");
        assert!(Keyring::parse("short").is_err());
        let mut full = Keyring::generate();
        assert!(!full.ensure_services());
        let again = Keyring::parse(&full.to_file_text()).unwrap_or_else(|e| panic!("{e}"));
        for role in ServiceRole::ALL {
            assert_eq!(again.service_secret(role), full.service_secret(role));
            let mine = Keyring::parse(&full.for_role(role).to_file_text())
                .unwrap_or_else(|e| panic!("{role:?}: {e}"));
            assert_eq!(mine.service_secret(role), full.service_secret(role));
            for other in ServiceRole::ALL.into_iter().filter(|r| *r != role) {
                assert_eq!(
                    mine.service_secret(other),
                    None,
                    "{role:?} holds {other:?}'s secret"
                );
            }
            assert_eq!(mine.service_credentials(role).0, role.access_key());
        }
        let gw = full.for_role(ServiceRole::Gateway);
        assert_eq!(
            gw.secret(full.current_kid()),
            None,
            "a gateway holds no URL key"
        );
        assert_eq!(gw.sign_hex(b"d", b"m"), "");
        let bare = Keyring::parse("0123456789abcdef0123").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(bare.current_kid(), "k1");
    }
}
