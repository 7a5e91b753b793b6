//! Per-key rate limits: a token bucket of requests per second and one of
//! bytes per second, each holding one second's worth (the byte bucket at
//! least 64 MiB, so a chunk batch always fits). Past either, a request is
//! refused with `503 SlowDown` and `Retry-After: 1`, which clients back
//! off from; other keys are not affected.
//!
//! Requests are counted as the namenode sees them (an S3 request is one or
//! two of them); bytes when they are granted: the chunks of an upload
//! batch, the chunks of a page of locations.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};

use blob_common::proto::keys::KeyLimits;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

use crate::error::Error;

/// Bytes of one cell of a byte bucket.
const CELL: u64 = 1024;
/// Smallest burst of a byte bucket.
const MIN_BYTE_BURST: u64 = 64 << 20;

struct KeyBuckets {
    limits: KeyLimits,
    requests: Option<DefaultDirectRateLimiter>,
    bytes: Option<(DefaultDirectRateLimiter, u32)>,
}

/// Every key's buckets, made on first use from the key's limits.
#[derive(Default)]
pub(crate) struct RateLimits {
    keys: Mutex<HashMap<String, Arc<KeyBuckets>>>,
}

fn nonzero(n: u64) -> NonZeroU32 {
    NonZeroU32::new(n.clamp(1, u32::MAX as u64) as u32).unwrap_or(NonZeroU32::MIN)
}

impl KeyBuckets {
    fn new(limits: KeyLimits) -> Self {
        let requests = limits
            .rps
            .map(|r| RateLimiter::direct(Quota::per_second(nonzero(r as u64))));
        let bytes = limits.bandwidth.map(|b| {
            let rate = nonzero(b.div_ceil(CELL));
            let burst = nonzero(b.max(MIN_BYTE_BURST).div_ceil(CELL));
            (
                RateLimiter::direct(Quota::per_second(rate).allow_burst(burst)),
                burst.get(),
            )
        });
        Self {
            limits,
            requests,
            bytes,
        }
    }
}

impl RateLimits {
    fn buckets(&self, key: &str, limits: KeyLimits) -> Option<Arc<KeyBuckets>> {
        // Unlimited keys (most) take no lock: a key whose limits were
        // lifted had its buckets dropped then ([`RateLimits::forget`]).
        if limits == KeyLimits::default() {
            return None;
        }
        let mut keys = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        let b = keys
            .entry(key.to_string())
            .or_insert_with(|| Arc::new(KeyBuckets::new(limits)));
        if b.limits != limits {
            *b = Arc::new(KeyBuckets::new(limits));
        }
        Some(b.clone())
    }

    /// Admits one request of `key`, whose limits are `limits`.
    pub(crate) fn admit_request(&self, key: &str, limits: KeyLimits) -> Result<(), Error> {
        let Some(b) = self.buckets(key, limits) else {
            return Ok(());
        };
        match &b.requests {
            Some(r) if r.check().is_err() => Err(Error::RateLimited(format!(
                "access key {key} is limited to {} requests/s",
                b.limits.rps.unwrap_or_default()
            ))),
            _ => Ok(()),
        }
    }

    /// Admits `bytes` of chunk traffic for `key` (the last admitted
    /// limits apply).
    pub(crate) fn admit_bytes(&self, key: &str, bytes: u64) -> Result<(), Error> {
        let b = {
            let keys = self.keys.lock().unwrap_or_else(|p| p.into_inner());
            keys.get(key).cloned()
        };
        let Some((bucket, burst)) = b.as_ref().and_then(|b| b.bytes.as_ref()) else {
            return Ok(());
        };
        let cells = nonzero(bytes.div_ceil(CELL).min(*burst as u64));
        match bucket.check_n(cells) {
            Ok(Ok(())) => Ok(()),
            _ => Err(Error::RateLimited(format!(
                "access key {key} is limited to {} bytes/s",
                b.as_ref()
                    .and_then(|b| b.limits.bandwidth)
                    .unwrap_or_default()
            ))),
        }
    }

    /// Drops a key's buckets (its limits changed or it was deleted).
    pub(crate) fn forget(&self, key: &str) {
        self.keys
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_limited_key_is_refused_past_its_rate_and_others_are_not() {
        let rl = RateLimits::default();
        let limited = KeyLimits {
            rps: Some(5),
            bandwidth: None,
        };
        let admitted = (0..20)
            .filter(|_| rl.admit_request("slow", limited).is_ok())
            .count();
        assert!((5..=6).contains(&admitted), "{admitted} admitted");
        assert!((0..100).all(|_| rl.admit_request("free", KeyLimits::default()).is_ok()));
        match rl.admit_request("slow", limited) {
            Err(Error::RateLimited(m)) => assert!(m.contains("5 requests/s"), "{m}"),
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn byte_budgets_hold_a_second_and_at_least_a_burst_of_chunks() {
        let rl = RateLimits::default();
        let limits = KeyLimits {
            rps: None,
            bandwidth: Some(1 << 20),
        };
        assert!(rl.admit_request("k", limits).is_ok());
        // The burst is 64 MiB: eight 8 MiB chunks pass, the ninth waits.
        for _ in 0..8 {
            assert!(rl.admit_bytes("k", 8 << 20).is_ok());
        }
        assert!(matches!(
            rl.admit_bytes("k", 8 << 20),
            Err(Error::RateLimited(_))
        ));
        // A batch larger than the burst is charged the burst, not refused forever.
        rl.forget("k");
        assert!(rl.admit_request("k", limits).is_ok());
        assert!(rl.admit_bytes("k", 1 << 40).is_ok());
    }
}
