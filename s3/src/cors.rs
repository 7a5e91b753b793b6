//! CORS: a bucket's rules (PutBucketCors), kept by the namenode as a
//! bucket setting, answer browsers' preflight `OPTIONS` requests and add
//! `Access-Control-*` headers to the answers of requests that carry an
//! `Origin`, as S3 does, so that a page on another origin can fetch
//! objects (an HLS playlist and its segments) straight from the gateway.
//!
//! Preflights are not signed, so the gateway reads a bucket's rules with
//! the cluster secret; they are kept for a few seconds ([`RULES_TTL`]), and
//! forgotten at once when this gateway changes them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use blob_common::proto::namenode::BucketSetting;
use http::{HeaderMap, HeaderValue, Method};
use s3s::dto::{CORSConfiguration, CORSRule};
use s3s::{S3ErrorCode, S3Result};
use serde::{Deserialize, Serialize};

use crate::error::s3;

/// The bucket setting that holds the rules (JSON).
pub(crate) const SETTING: &str = "cors";
/// How long a bucket's rules are used before they are read again.
const RULES_TTL: Duration = Duration::from_secs(5);
/// Most rules in one configuration (S3: 100).
const MAX_RULES: usize = 100;
/// Methods a rule may allow (S3's list).
const METHODS: [&str; 5] = ["GET", "PUT", "HEAD", "POST", "DELETE"];

/// One CORS rule, as kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Rule {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    id: Option<String>,
    origins: Vec<String>,
    methods: Vec<String>,
    #[serde(default)]
    headers: Vec<String>,
    #[serde(default)]
    expose: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    max_age: Option<i32>,
}

/// Checks a PutBucketCors configuration as S3 does and turns it into the
/// rules kept.
pub(crate) fn rules_from(cfg: &CORSConfiguration) -> S3Result<Vec<Rule>> {
    let malformed = |msg: String| s3(S3ErrorCode::MalformedXML, msg);
    if cfg.cors_rules.is_empty() || cfg.cors_rules.len() > MAX_RULES {
        return Err(malformed(format!(
            "A CORS configuration holds 1 to {MAX_RULES} rules"
        )));
    }
    let mut rules = Vec::with_capacity(cfg.cors_rules.len());
    for r in &cfg.cors_rules {
        if r.allowed_methods.is_empty() || r.allowed_origins.is_empty() {
            return Err(malformed(
                "Every CORS rule needs an AllowedMethod and an AllowedOrigin".into(),
            ));
        }
        for m in &r.allowed_methods {
            if !METHODS.contains(&m.as_str()) {
                return Err(s3(
                    S3ErrorCode::InvalidRequest,
                    format!(
                        "Found unsupported HTTP method in CORS config. Unsupported method is {m}"
                    ),
                ));
            }
        }
        for o in &r.allowed_origins {
            if o.matches('*').count() > 1 {
                return Err(s3(
                    S3ErrorCode::InvalidRequest,
                    format!("AllowedOrigin \"{o}\" can not have more than one wildcard."),
                ));
            }
        }
        for h in r.allowed_headers.iter().flatten() {
            if h.matches('*').count() > 1 {
                return Err(s3(
                    S3ErrorCode::InvalidRequest,
                    format!("AllowedHeader \"{h}\" can not have more than one wildcard."),
                ));
            }
        }
        rules.push(Rule {
            id: r.id.clone(),
            origins: r.allowed_origins.clone(),
            methods: r.allowed_methods.clone(),
            headers: r.allowed_headers.clone().unwrap_or_default(),
            expose: r.expose_headers.clone().unwrap_or_default(),
            max_age: r.max_age_seconds,
        });
    }
    Ok(rules)
}

/// The kept rules in S3's terms (GetBucketCors).
pub(crate) fn rules_to(rules: &[Rule]) -> Vec<CORSRule> {
    rules
        .iter()
        .map(|r| CORSRule {
            id: r.id.clone(),
            allowed_origins: r.origins.clone(),
            allowed_methods: r.methods.clone(),
            allowed_headers: (!r.headers.is_empty()).then(|| r.headers.clone()),
            expose_headers: (!r.expose.is_empty()).then(|| r.expose.clone()),
            max_age_seconds: r.max_age,
        })
        .collect()
}

/// Whether `value` matches `pattern`, which may hold one `*` standing for
/// any run of characters.
fn wildcard(pattern: &str, value: &str, ignore_case: bool) -> bool {
    let eq = |a: &str, b: &str| {
        if ignore_case {
            a.eq_ignore_ascii_case(b)
        } else {
            a == b
        }
    };
    match pattern.split_once('*') {
        None => eq(pattern, value),
        Some((head, tail)) => {
            value.len() >= head.len() + tail.len()
                && value.is_char_boundary(head.len())
                && value.is_char_boundary(value.len() - tail.len())
                && eq(head, &value[..head.len()])
                && eq(tail, &value[value.len() - tail.len()..])
        }
    }
}

/// The first rule that allows `origin` to use `method` with
/// `request_headers` (S3 uses the first match).
fn find<'a>(
    rules: &'a [Rule],
    origin: &str,
    method: &str,
    request_headers: &[String],
) -> Option<&'a Rule> {
    rules.iter().find(|r| {
        r.origins.iter().any(|o| wildcard(o, origin, false))
            && r.methods.iter().any(|m| m == method)
            && request_headers
                .iter()
                .all(|h| r.headers.iter().any(|p| wildcard(p, h, true)))
    })
}

/// Sets the `Access-Control-*` headers `rule` grants `origin`.
fn grant(rule: &Rule, origin: &str, out: &mut HeaderMap) {
    let any = rule.origins.iter().any(|o| o == "*");
    let mut set = |name: &'static str, value: String| {
        if let Ok(v) = HeaderValue::from_str(&value) {
            out.insert(name, v);
        }
    };
    set(
        "access-control-allow-origin",
        if any { "*".into() } else { origin.into() },
    );
    if !any {
        set("access-control-allow-credentials", "true".into());
    }
    set("access-control-allow-methods", rule.methods.join(", "));
    if !rule.expose.is_empty() {
        set("access-control-expose-headers", rule.expose.join(", "));
    }
    if let Some(age) = rule.max_age {
        set("access-control-max-age", age.to_string());
    }
    out.append(http::header::VARY, HeaderValue::from_static("Origin"));
}

/// A bucket's rules as read at a time.
type Read = (Instant, Arc<Vec<Rule>>);

/// The buckets' rules, read with the cluster secret and kept briefly.
pub(crate) struct Cors {
    namenode: blob_rpc::Namenode,
    cache: Mutex<HashMap<String, Read>>,
}

impl Cors {
    /// Reads rules through `namenode`, a handle holding the cluster
    /// credentials (the one access keys are looked up with).
    pub(crate) fn new(namenode: blob_rpc::Namenode) -> Self {
        Self {
            namenode,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// Drops what is kept of `bucket`'s rules (after a change).
    pub(crate) fn forget(&self, bucket: &str) {
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache.remove(bucket);
    }

    /// `bucket`'s rules; none when it has none, or they cannot be read.
    async fn rules(&self, bucket: &str) -> Arc<Vec<Rule>> {
        {
            let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((at, rules)) = cache.get(bucket) {
                if at.elapsed() < RULES_TTL {
                    return rules.clone();
                }
            }
        }
        let answer = self
            .namenode
            .get(&["bucket-settings", bucket, SETTING])
            .decode::<BucketSetting>()
            .await;
        let rules = match answer {
            Ok(s) => serde_json::from_str(&s.value).unwrap_or_else(|e| {
                tracing::warn!(bucket, error = %e, "unreadable CORS rules");
                Vec::new()
            }),
            Err(e) if e.status() == Some(404) => Vec::new(),
            Err(e) => {
                // Not kept: the next request asks again.
                tracing::warn!(bucket, error = %e, "reading CORS rules");
                return Arc::new(Vec::new());
            }
        };
        let rules = Arc::new(rules);
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() > 10_000 {
            cache.retain(|_, (at, _)| at.elapsed() < RULES_TTL);
        }
        cache.insert(bucket.to_string(), (Instant::now(), rules.clone()));
        rules
    }

    /// The answer to a preflight `OPTIONS` for `bucket`: 200 with the
    /// grant of the first matching rule, 403 when none matches, 400 when
    /// the request is not a CORS preflight.
    pub(crate) async fn preflight(&self, bucket: Option<&str>, headers: &HeaderMap) -> Preflight {
        let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let (Some(origin), Some(method)) = (get("origin"), get("access-control-request-method"))
        else {
            return Preflight::Invalid(
                "Insufficient information. Origin request header and Access-Control-Request-Method are needed.",
            );
        };
        let Some(bucket) = bucket else {
            return Preflight::Invalid("A CORS preflight names a bucket.");
        };
        let requested: Vec<String> = get("access-control-request-headers")
            .unwrap_or_default()
            .split(',')
            .map(|h| h.trim().to_ascii_lowercase())
            .filter(|h| !h.is_empty())
            .collect();
        let rules = self.rules(bucket).await;
        match find(&rules, origin, method.trim(), &requested) {
            None => Preflight::Forbidden,
            Some(rule) => {
                let mut out = HeaderMap::new();
                grant(rule, origin, &mut out);
                if !requested.is_empty() {
                    if let Ok(v) = HeaderValue::from_str(&requested.join(", ")) {
                        out.insert("access-control-allow-headers", v);
                    }
                }
                Preflight::Allowed(out)
            }
        }
    }

    /// Adds the grant of the first rule matching an actual request's
    /// `Origin` and method to its answer's headers.
    pub(crate) async fn decorate(
        &self,
        bucket: &str,
        origin: &str,
        method: &Method,
        out: &mut HeaderMap,
    ) {
        let rules = self.rules(bucket).await;
        if let Some(rule) = find(&rules, origin, method.as_str(), &[]) {
            grant(rule, origin, out);
        }
    }
}

/// What a preflight gets.
pub(crate) enum Preflight {
    /// 200 with these headers.
    Allowed(HeaderMap),
    /// 403 `AccessForbidden`.
    Forbidden,
    /// 400: not a preflight.
    Invalid(&'static str),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(origins: &[&str], methods: &[&str], headers: &[&str]) -> Rule {
        let v = |s: &[&str]| s.iter().map(|x| x.to_string()).collect();
        Rule {
            id: None,
            origins: v(origins),
            methods: v(methods),
            headers: v(headers),
            expose: vec!["ETag".into()],
            max_age: Some(600),
        }
    }

    #[test]
    fn origins_methods_and_headers_must_all_match() {
        let rules = vec![
            rule(
                &["https://player.example.com"],
                &["GET", "HEAD"],
                &["range"],
            ),
            rule(&["http://*.example.org"], &["GET"], &["*"]),
        ];
        let h = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let player = "https://player.example.com";
        assert!(find(&rules, player, "GET", &h(&["range"])).is_some());
        assert!(find(&rules, player, "GET", &h(&["Range"])).is_some());
        assert!(find(&rules, player, "PUT", &[]).is_none());
        assert!(find(&rules, player, "GET", &h(&["x-custom"])).is_none());
        assert!(find(&rules, "https://evil.example.com", "GET", &[]).is_none());
        let sub = find(&rules, "http://a.b.example.org", "GET", &h(&["x-any"]));
        assert_eq!(sub, Some(&rules[1]));
        assert!(find(&rules, "http://example.org", "GET", &[]).is_none());
        assert!(find(&rules, "https://a.example.org", "GET", &[]).is_none());
    }

    #[test]
    fn grants_name_the_origin_unless_any_is_allowed() {
        let mut out = HeaderMap::new();
        grant(
            &rule(&["https://a.test"], &["GET"], &[]),
            "https://a.test",
            &mut out,
        );
        assert_eq!(out["access-control-allow-origin"], "https://a.test");
        assert_eq!(out["access-control-allow-credentials"], "true");
        assert_eq!(out["access-control-expose-headers"], "ETag");
        assert_eq!(out["access-control-max-age"], "600");
        let mut any = HeaderMap::new();
        grant(
            &rule(&["*"], &["GET", "HEAD"], &[]),
            "https://b.test",
            &mut any,
        );
        assert_eq!(any["access-control-allow-origin"], "*");
        assert_eq!(any["access-control-allow-methods"], "GET, HEAD");
        assert!(!any.contains_key("access-control-allow-credentials"));
    }

    #[test]
    fn configurations_are_checked_as_s3_checks_them() {
        let cfg = |methods: &[&str], origins: &[&str]| CORSConfiguration {
            cors_rules: vec![CORSRule {
                allowed_methods: methods.iter().map(|m| m.to_string()).collect(),
                allowed_origins: origins.iter().map(|m| m.to_string()).collect(),
                allowed_headers: None,
                expose_headers: None,
                id: Some("r1".into()),
                max_age_seconds: Some(5),
            }],
        };
        let ok = rules_from(&cfg(&["GET"], &["*"])).expect("valid");
        assert_eq!(rules_to(&ok)[0].id.as_deref(), Some("r1"));
        let code = |c: &CORSConfiguration| rules_from(c).err().map(|e| e.code().clone());
        assert_eq!(
            code(&cfg(&["PATCH"], &["*"])),
            Some(S3ErrorCode::InvalidRequest)
        );
        assert_eq!(
            code(&cfg(&["GET"], &["http://*.*.test"])),
            Some(S3ErrorCode::InvalidRequest)
        );
        assert_eq!(code(&cfg(&[], &["*"])), Some(S3ErrorCode::MalformedXML));
        assert_eq!(
            code(&CORSConfiguration { cors_rules: vec![] }),
            Some(S3ErrorCode::MalformedXML)
        );
    }
}
