//! Lifecycle rules of a bucket (S3's expiration), kept by the namenode as
//! the bucket setting [`SETTING`] (JSON, a list of [`Rule`]) and applied by
//! its lifecycle pass: files past their expiration are deleted (their
//! chunks then collected as any unreferenced chunk), multipart uploads
//! left open too long are aborted.
//!
//! Days are counted from a file's commit (or an upload's start) in units of
//! the namenode's `lifecycle_day` (24 h, shorter only in tests); unlike
//! S3, expiry is not rounded up to the next midnight.

use serde::{Deserialize, Serialize};

/// The bucket setting that holds the rules.
pub const SETTING: &str = "lifecycle";
/// The file metadata key of an object's tags (URL-encoded `k=v&k2=v2`).
pub const TAGS_META: &str = "tagging";

/// One rule.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rule {
    /// The rule's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// A disabled rule is kept but applies to nothing.
    pub enabled: bool,
    /// Files and uploads whose path starts with this.
    #[serde(default)]
    pub prefix: String,
    /// Files carrying every one of these tags.
    #[serde(default)]
    pub tags: Vec<(String, String)>,
    /// Files larger than this many bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_greater_than: Option<u64>,
    /// Files smaller than this many bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_less_than: Option<u64>,
    /// Files expire this many days after their commit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiration_days: Option<u32>,
    /// Files expire from this time on (ms since the epoch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiration_date_ms: Option<u64>,
    /// Multipart uploads are aborted this many days after they started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abort_multipart_days: Option<u32>,
    /// Versions (of a versioned bucket) are removed this many days after
    /// a newer version replaced them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub noncurrent_days: Option<u32>,
}

impl Rule {
    /// Whether a file (path, size, tags as kept in its metadata) is past
    /// this rule's expiration at `now_ms`, for files committed at
    /// `created_ms`.
    pub fn expires(
        &self,
        path: &str,
        size: u64,
        tags: Option<&str>,
        created_ms: u64,
        now_ms: u64,
        day_ms: u64,
    ) -> bool {
        if !self.selects(path, size, tags) {
            return false;
        }
        let by_days = self.expiration_days.is_some_and(|d| {
            created_ms.saturating_add(u64::from(d).saturating_mul(day_ms)) <= now_ms
        });
        let by_date = self.expiration_date_ms.is_some_and(|d| d <= now_ms);
        by_days || by_date
    }

    /// Whether a noncurrent version (path, size, tags) that a newer one
    /// replaced at `replaced_ms` is to be removed at `now_ms`.
    pub fn expires_noncurrent(
        &self,
        path: &str,
        size: u64,
        tags: Option<&str>,
        replaced_ms: u64,
        now_ms: u64,
        day_ms: u64,
    ) -> bool {
        self.selects(path, size, tags)
            && self.noncurrent_days.is_some_and(|d| {
                replaced_ms.saturating_add(u64::from(d).saturating_mul(day_ms)) <= now_ms
            })
    }

    /// Whether this rule is enabled and its filter selects a file.
    fn selects(&self, path: &str, size: u64, tags: Option<&str>) -> bool {
        if !self.enabled || !path.starts_with(&self.prefix) {
            return false;
        }
        if self.size_greater_than.is_some_and(|n| size <= n)
            || self.size_less_than.is_some_and(|n| size >= n)
        {
            return false;
        }
        if !self.tags.is_empty() {
            let have = decode_tags(tags.unwrap_or_default()).unwrap_or_default();
            if !self.tags.iter().all(|t| have.contains(t)) {
                return false;
            }
        }
        true
    }

    /// Whether a multipart upload of `path` started at `created_ms` is to
    /// be aborted at `now_ms`.
    pub fn aborts(&self, path: &str, created_ms: u64, now_ms: u64, day_ms: u64) -> bool {
        self.enabled
            && path.starts_with(&self.prefix)
            && self.abort_multipart_days.is_some_and(|d| {
                created_ms.saturating_add(u64::from(d).saturating_mul(day_ms)) <= now_ms
            })
    }
}

/// Tags from their URL-encoded form (`k=v&k2=v2`; `+` is a space);
/// `None` when an escape decodes to invalid UTF-8.
pub fn decode_tags(s: &str) -> Option<Vec<(String, String)>> {
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(&s.replace('+', " "))
            .decode_utf8()
            .ok()
            .map(|c| c.into_owned())
    };
    s.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            Some((decode(k)?, decode(v)?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: u64 = 1000;

    #[test]
    fn rules_select_by_prefix_tags_size_and_age() {
        let rule = Rule {
            enabled: true,
            prefix: "tmp/".into(),
            tags: vec![("kind".into(), "proxy file".into())],
            size_greater_than: Some(10),
            expiration_days: Some(2),
            ..Rule::default()
        };
        let tags = Some("kind=proxy%20file&x=1");
        assert!(rule.expires("tmp/a", 11, tags, 0, 2 * DAY, DAY));
        assert!(
            !rule.expires("tmp/a", 11, tags, 0, 2 * DAY - 1, DAY),
            "too young"
        );
        assert!(!rule.expires("keep/a", 11, tags, 0, 9 * DAY, DAY), "prefix");
        assert!(!rule.expires("tmp/a", 10, tags, 0, 9 * DAY, DAY), "size");
        assert!(
            !rule.expires("tmp/a", 11, Some("kind=master"), 0, 9 * DAY, DAY),
            "tag"
        );
        assert!(
            !rule.expires("tmp/a", 11, None, 0, 9 * DAY, DAY),
            "untagged"
        );
        let off = Rule {
            enabled: false,
            ..rule.clone()
        };
        assert!(!off.expires("tmp/a", 11, tags, 0, 9 * DAY, DAY));
        let dated = Rule {
            expiration_days: None,
            expiration_date_ms: Some(5 * DAY),
            tags: vec![],
            size_greater_than: None,
            ..rule
        };
        assert!(!dated.expires("tmp/a", 1, None, 0, 5 * DAY - 1, DAY));
        assert!(dated.expires("tmp/a", 1, None, 0, 5 * DAY, DAY));
        let aborting = Rule {
            enabled: true,
            abort_multipart_days: Some(1),
            ..Rule::default()
        };
        assert!(aborting.aborts("any", 0, DAY, DAY));
        assert!(!aborting.aborts("any", 1, DAY, DAY));
    }
}
