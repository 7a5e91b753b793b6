//! Virtual-host-style addressing: `bucket.<domain>` names the bucket when
//! `<domain>` is one of the configured base domains; any other host (an IP
//! address, `localhost:9000`, a load balancer's name) means path style.

use std::borrow::Cow;

use s3s::host::{S3Host, VirtualHost};
use s3s::S3Result;

/// The configured base domains.
pub(crate) struct Hosts {
    domains: Vec<String>,
}

impl Hosts {
    pub(crate) fn new(domains: &[String]) -> Self {
        Self {
            domains: domains.iter().map(|d| d.to_ascii_lowercase()).collect(),
        }
    }

    /// The bucket a `Host` header names, if any.
    /// The bucket a request names: the subdomain of a configured domain in
    /// `Host` (virtual-host style), or else the first path segment.
    pub(crate) fn bucket_of_request(
        &self,
        uri: &http::Uri,
        headers: &http::HeaderMap,
    ) -> Option<String> {
        let host = headers
            .get(http::header::HOST)
            .and_then(|v| v.to_str().ok())
            .or_else(|| uri.authority().map(|a| a.as_str()));
        if let Some(bucket) = host.and_then(|h| self.bucket_of(h)) {
            return Some(bucket);
        }
        let first = uri.path().trim_start_matches('/').split('/').next()?;
        let first = percent_encoding::percent_decode_str(first)
            .decode_utf8()
            .ok()?;
        (!first.is_empty()).then(|| first.into_owned())
    }

    fn bucket_of(&self, host: &str) -> Option<String> {
        let name = host
            .rsplit_once(':')
            .filter(|(_, port)| port.bytes().all(|b| b.is_ascii_digit()))
            .map_or(host, |(h, _)| h)
            .to_ascii_lowercase();
        self.domains.iter().find_map(|d| {
            name.strip_suffix(d.as_str())
                .and_then(|b| b.strip_suffix('.'))
                .filter(|b| !b.is_empty())
                .map(str::to_string)
        })
    }
}

impl S3Host for Hosts {
    fn parse_host_header<'a>(&'a self, host: &'a str) -> S3Result<VirtualHost<'a>> {
        let vh = VirtualHost::new(Cow::Borrowed(host));
        Ok(match self.bucket_of(host) {
            Some(bucket) => vh.with_bucket(bucket),
            None => vh,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_come_from_subdomains_of_configured_domains_only() {
        let h = Hosts::new(&["localhost".to_string(), "s3.example.com".into()]);
        assert_eq!(
            h.bucket_of("photos.localhost:9000").as_deref(),
            Some("photos")
        );
        assert_eq!(h.bucket_of("a.b.s3.example.com").as_deref(), Some("a.b"));
        assert_eq!(h.bucket_of("localhost:9000"), None);
        assert_eq!(h.bucket_of("127.0.0.1:9000"), None);
        assert_eq!(h.bucket_of("other.example.org"), None);
    }
}
