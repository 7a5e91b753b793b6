//! Buckets' lifecycle rules: Put/Get/DeleteBucketLifecycleConfiguration.
//! Rules are kept by the namenode as a bucket setting
//! ([`blob_common::proto::lifecycle`]) and applied by its lifecycle pass.
//! Supported: Expiration (Days or Date), NoncurrentVersionExpiration
//! (NoncurrentDays), AbortIncompleteMultipartUpload, filters by prefix,
//! tags and size. Transitions (there are no storage classes) get `501
//! NotImplemented`, and so do NoncurrentVersionTransitions and
//! NewerNoncurrentVersions.

use blob_common::proto::lifecycle::{Rule, SETTING};
use s3s::dto::*;
use s3s::{S3ErrorCode, S3Request, S3Response, S3Result};

use super::args::check_bucket;
use super::attrs::timestamp;
use super::settings;
use super::tagging::{self, Tags};
use crate::error::s3;
use crate::service::Gateway;

/// Most rules in one configuration (S3: 1,000).
const MAX_RULES: usize = 1000;

fn malformed(msg: impl Into<String>) -> s3s::S3Error {
    s3(S3ErrorCode::MalformedXML, msg)
}

fn days(d: Option<i32>, what: &str) -> S3Result<Option<u32>> {
    match d {
        None => Ok(None),
        Some(n) if n > 0 => Ok(Some(n as u32)),
        Some(_) => Err(s3(
            S3ErrorCode::InvalidArgument,
            format!("'{what}' for a rule must be a positive integer"),
        )),
    }
}

fn size(n: Option<i64>) -> Option<u64> {
    n.and_then(|n| u64::try_from(n).ok())
}

/// A rule as kept, from S3's form, checked as S3 checks it.
fn rule_from(r: &LifecycleRule) -> S3Result<Rule> {
    if r.transitions.as_ref().is_some_and(|t| !t.is_empty())
        || r.noncurrent_version_transitions
            .as_ref()
            .is_some_and(|t| !t.is_empty())
        || r.noncurrent_version_expiration
            .as_ref()
            .is_some_and(|n| n.newer_noncurrent_versions.is_some())
    {
        return Err(s3(
            S3ErrorCode::NotImplemented,
            "Transitions and NewerNoncurrentVersions are not supported (one storage class)",
        ));
    }
    let mut rule = Rule {
        id: r.id.clone(),
        enabled: r.status.as_str() == ExpirationStatus::ENABLED,
        ..Rule::default()
    };
    if !rule.enabled && r.status.as_str() != ExpirationStatus::DISABLED {
        return Err(malformed("Status must be Enabled or Disabled"));
    }
    let mut tags = Tags::new();
    match (&r.filter, &r.prefix) {
        (Some(_), Some(_)) => {
            return Err(malformed(
                "A rule has either a Filter or a Prefix, not both",
            ))
        }
        (None, prefix) => rule.prefix = prefix.clone().unwrap_or_default(),
        (Some(f), None) => {
            rule.prefix = f.prefix.clone().unwrap_or_default();
            rule.size_greater_than = size(f.object_size_greater_than);
            rule.size_less_than = size(f.object_size_less_than);
            if let Some(t) = &f.tag {
                tags.push((
                    t.key.clone().unwrap_or_default(),
                    t.value.clone().unwrap_or_default(),
                ));
            }
            if let Some(and) = &f.and {
                if let Some(p) = &and.prefix {
                    rule.prefix = p.clone();
                }
                rule.size_greater_than =
                    size(and.object_size_greater_than).or(rule.size_greater_than);
                rule.size_less_than = size(and.object_size_less_than).or(rule.size_less_than);
                for t in and.tags.iter().flatten() {
                    tags.push((
                        t.key.clone().unwrap_or_default(),
                        t.value.clone().unwrap_or_default(),
                    ));
                }
            }
        }
    }
    tagging::check(&tags)?;
    rule.tags = tags;
    if let Some(e) = &r.expiration {
        if e.expired_object_delete_marker == Some(true) {
            return Err(s3(
                S3ErrorCode::NotImplemented,
                "ExpiredObjectDeleteMarker is not supported",
            ));
        }
        rule.expiration_days = days(e.days, "Days")?;
        rule.expiration_date_ms = e.date.as_ref().map(|d| {
            let t = time::OffsetDateTime::from(d.clone());
            (t.unix_timestamp_nanos() / 1_000_000).max(0) as u64
        });
        if rule.expiration_days.is_some() == rule.expiration_date_ms.is_some() {
            return Err(malformed("An Expiration has either Days or Date"));
        }
    }
    rule.abort_multipart_days = days(
        r.abort_incomplete_multipart_upload
            .as_ref()
            .and_then(|a| a.days_after_initiation),
        "DaysAfterInitiation",
    )?;
    rule.noncurrent_days = days(
        r.noncurrent_version_expiration
            .as_ref()
            .and_then(|n| n.noncurrent_days),
        "NoncurrentDays",
    )?;
    if r.noncurrent_version_expiration.is_some() && rule.noncurrent_days.is_none() {
        return Err(malformed(
            "A NoncurrentVersionExpiration needs NoncurrentDays",
        ));
    }
    if rule.abort_multipart_days.is_some() && !rule.tags.is_empty() {
        return Err(s3(
            S3ErrorCode::InvalidRequest,
            "AbortIncompleteMultipartUpload cannot be specified with Tags.",
        ));
    }
    if rule.expiration_days.is_none()
        && rule.expiration_date_ms.is_none()
        && rule.abort_multipart_days.is_none()
        && rule.noncurrent_days.is_none()
    {
        return Err(malformed(
            "At least one action needs to be specified in a rule",
        ));
    }
    Ok(rule)
}

/// A kept rule in S3's form.
fn rule_to(r: &Rule) -> LifecycleRule {
    let tag = |(k, v): &(String, String)| Tag {
        key: Some(k.clone()),
        value: Some(v.clone()),
    };
    let filter = if r.tags.len() > 1
        || (r.tags.len() == 1 && (!r.prefix.is_empty() || r.size_greater_than.is_some()))
        || (r.size_greater_than.is_some() && r.size_less_than.is_some())
    {
        LifecycleRuleFilter {
            and: Some(LifecycleRuleAndOperator {
                prefix: Some(r.prefix.clone()),
                tags: Some(r.tags.iter().map(tag).collect()),
                object_size_greater_than: r.size_greater_than.map(|n| n as i64),
                object_size_less_than: r.size_less_than.map(|n| n as i64),
            }),
            ..Default::default()
        }
    } else {
        LifecycleRuleFilter {
            prefix: Some(r.prefix.clone()),
            tag: r.tags.first().map(tag),
            object_size_greater_than: r.size_greater_than.map(|n| n as i64),
            object_size_less_than: r.size_less_than.map(|n| n as i64),
            ..Default::default()
        }
    };
    LifecycleRule {
        id: r.id.clone(),
        status: ExpirationStatus::from_static(if r.enabled {
            ExpirationStatus::ENABLED
        } else {
            ExpirationStatus::DISABLED
        }),
        filter: Some(filter),
        expiration: (r.expiration_days.is_some() || r.expiration_date_ms.is_some()).then(|| {
            LifecycleExpiration {
                days: r.expiration_days.map(|d| d as i32),
                date: r.expiration_date_ms.map(timestamp),
                ..Default::default()
            }
        }),
        abort_incomplete_multipart_upload: r.abort_multipart_days.map(|d| {
            AbortIncompleteMultipartUpload {
                days_after_initiation: Some(d as i32),
            }
        }),
        noncurrent_version_expiration: r.noncurrent_days.map(|d| NoncurrentVersionExpiration {
            noncurrent_days: Some(d as i32),
            newer_noncurrent_versions: None,
        }),
        noncurrent_version_transitions: None,
        prefix: None,
        transitions: None,
    }
}

/// PutBucketLifecycleConfiguration: replaces the bucket's rules.
pub(crate) async fn put_bucket_lifecycle(
    gw: &Gateway,
    req: S3Request<PutBucketLifecycleConfigurationInput>,
) -> S3Result<S3Response<PutBucketLifecycleConfigurationOutput>> {
    let client = gw.client(&req).await?;
    let i = &req.input;
    check_bucket(&i.bucket)?;
    let Some(cfg) = &i.lifecycle_configuration else {
        return Err(malformed("A lifecycle configuration is required"));
    };
    if cfg.rules.is_empty() || cfg.rules.len() > MAX_RULES {
        return Err(malformed(format!(
            "A configuration holds 1 to {MAX_RULES} rules"
        )));
    }
    let rules = cfg
        .rules
        .iter()
        .map(rule_from)
        .collect::<S3Result<Vec<_>>>()?;
    let mut ids = std::collections::HashSet::new();
    if rules
        .iter()
        .filter_map(|r| r.id.as_ref())
        .any(|id| !ids.insert(id))
    {
        return Err(s3(S3ErrorCode::InvalidArgument, "Rule ID must be unique"));
    }
    settings::write(&client, &i.bucket, SETTING, Some(&rules)).await?;
    Ok(S3Response::new(
        PutBucketLifecycleConfigurationOutput::default(),
    ))
}

/// GetBucketLifecycleConfiguration: 404 `NoSuchLifecycleConfiguration`
/// when the bucket has none.
pub(crate) async fn get_bucket_lifecycle(
    gw: &Gateway,
    req: S3Request<GetBucketLifecycleConfigurationInput>,
) -> S3Result<S3Response<GetBucketLifecycleConfigurationOutput>> {
    let client = gw.client(&req).await?;
    let rules: Vec<Rule> = settings::read(&client, &req.input.bucket, SETTING).await?;
    if rules.is_empty() {
        return Err(s3(
            S3ErrorCode::NoSuchLifecycleConfiguration,
            "The lifecycle configuration does not exist",
        ));
    }
    Ok(S3Response::new(GetBucketLifecycleConfigurationOutput {
        rules: Some(rules.iter().map(rule_to).collect()),
        ..Default::default()
    }))
}

/// DeleteBucketLifecycle (204).
pub(crate) async fn delete_bucket_lifecycle(
    gw: &Gateway,
    req: S3Request<DeleteBucketLifecycleInput>,
) -> S3Result<S3Response<DeleteBucketLifecycleOutput>> {
    let client = gw.client(&req).await?;
    settings::write::<Rule>(&client, &req.input.bucket, SETTING, None).await?;
    Ok(settings::no_content())
}
