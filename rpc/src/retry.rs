//! When a namenode call is sent again, and how long to wait before.
//!
//! Only failures that cannot have changed anything are retried for every
//! method: the connection was never made, or the namenode refused the
//! request before doing any work (`503 SlowDown`, its admission limit,
//! which says when to come back in `Retry-After`). A timeout or a broken
//! answer is retried only for reads (`GET`, `HEAD`): a write may have
//! happened, and the caller knows whether repeating it is safe (the
//! upload path re-sends commits itself). Everything else is final.

use std::time::Duration;

use reqwest::Method;

use crate::Error;

/// How many times a call is tried and how the waits between grow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (1 = never retry).
    pub attempts: u32,
    /// Wait before the first retry; doubled for each later one.
    pub base: Duration,
    /// Longest single wait, `Retry-After` included.
    pub max: Duration,
}

impl RetryPolicy {
    /// One attempt: for callers that retry on their own schedule (a
    /// datanode's heartbeat loop).
    pub const NONE: RetryPolicy = RetryPolicy {
        attempts: 1,
        base: Duration::ZERO,
        max: Duration::ZERO,
    };

    /// Waits before retry number `retry` (1 for the first retry): the
    /// server's `Retry-After` when it gave one, else exponential backoff
    /// with jitter (between half and all of `base * 2^(retry-1)`), never
    /// more than `max`.
    pub fn delay(&self, retry: u32, retry_after: Option<Duration>) -> Duration {
        let wait = match retry_after {
            Some(d) => d,
            None => {
                let full = self
                    .base
                    .saturating_mul(1u32 << retry.saturating_sub(1).min(16));
                let half = full / 2;
                half + full.mul_f64(rand::random::<f64>() / 2.0)
            }
        };
        wait.min(self.max)
    }
}

impl Default for RetryPolicy {
    /// Three attempts, 100 ms then 200 ms apart (about), waits capped at
    /// 2 s: enough to ride out a namenode restart's refused connections or
    /// a moment of admission pressure without hiding a real outage.
    fn default() -> Self {
        RetryPolicy {
            attempts: 3,
            base: Duration::from_millis(100),
            max: Duration::from_secs(2),
        }
    }
}

/// Whether a call that failed with `err` may be sent again.
pub(crate) fn is_transient(method: &Method, err: &Error) -> bool {
    match err {
        Error::Transport { source, .. } if crate::tls::is_certificate_error(source) => false,
        Error::Transport { .. } if err.is_unreachable() => true,
        Error::Transport { .. } => is_read(method),
        Error::Api {
            status: 503, code, ..
        } => code == "SlowDown",
        _ => false,
    }
}

fn is_read(method: &Method) -> bool {
    *method == Method::GET || *method == Method::HEAD
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(status: u16, code: &str) -> Error {
        Error::Api {
            status,
            code: code.into(),
            message: String::new(),
            request_id: String::new(),
        }
    }

    #[test]
    fn only_refusals_before_any_work_are_retried() {
        for m in [Method::GET, Method::POST, Method::PUT, Method::DELETE] {
            assert!(is_transient(&m, &api(503, "SlowDown")), "{m}");
            assert!(!is_transient(&m, &api(503, "NotEnoughNodes")), "{m}");
            assert!(!is_transient(&m, &api(500, "InternalError")), "{m}");
            assert!(!is_transient(&m, &api(429, "SlowDown")), "{m}");
            assert!(!is_transient(&m, &api(404, "NoSuchBucket")), "{m}");
            assert!(!is_transient(&m, &api(403, "AccessDenied")), "{m}");
        }
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let p = RetryPolicy {
            attempts: 10,
            base: Duration::from_millis(100),
            max: Duration::from_millis(700),
        };
        for _ in 0..100 {
            let d1 = p.delay(1, None);
            assert!(d1 >= Duration::from_millis(50) && d1 <= Duration::from_millis(100));
            let d3 = p.delay(3, None);
            assert!(d3 >= Duration::from_millis(200) && d3 <= Duration::from_millis(400));
            assert!(p.delay(9, None) <= Duration::from_millis(700));
        }
        assert_eq!(
            p.delay(1, Some(Duration::from_secs(1))),
            Duration::from_millis(700)
        );
        assert_eq!(
            p.delay(1, Some(Duration::from_millis(300))),
            Duration::from_millis(300)
        );
    }
}
