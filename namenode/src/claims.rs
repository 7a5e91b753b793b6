//! Corruption reports from readers are claims, not verdicts (as in HDFS).
//!
//! A reader (a client with its key, or an edge) that received bytes which
//! do not hash to a chunk's id says so with `POST /v1/chunks/bad`. The
//! replica becomes *suspect*: the namenode asks its holder to re-verify that
//! one chunk ([`Command::Verify`] in its next heartbeat answer) and changes
//! nothing else. The holder reads the chunk back, checks its CRCs and its
//! SHA-256, and either quarantines it and reports it `corrupt` (the claim is
//! confirmed: the replica leaves the chunk's replica set and repair copies a
//! good one) or reports it `verified` (the claim is refuted). So a reader,
//! mistaken or malicious, can cost the holder a read, never a replica; and
//! a quarantined replica is moved aside, not deleted, so not even a wrong
//! verdict destroys bytes.
//!
//! Reports are rate-limited per reporter (a token bucket per access key;
//! every edge shares the cluster identity), and counted in metrics:
//! received, confirmed, refuted, refused.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use blob_common::proto::heartbeat::Command;
use blob_common::proto::namenode::BadReplica;
use blob_common::{ChunkId, NodeId};

use crate::db::{ChunkRecord, CF_CHUNKS};
use crate::error::Error;
use crate::Namenode;

/// Reports a reporter may send in a burst.
const BURST: f64 = 64.0;
/// Reports per second a reporter earns back.
const PER_SEC: f64 = 8.0;
/// A verification not answered within this time is forgotten (the claim
/// lapses; a new report orders a new one).
const VERIFY_TIMEOUT: Duration = Duration::from_secs(120);

/// Suspect replicas and the per-reporter limits.
#[derive(Debug, Default)]
pub(crate) struct Claims {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Replicas whose holder was asked to verify them, and when.
    suspects: HashMap<(ChunkId, NodeId), Instant>,
    /// Token buckets: tokens left and when they were counted.
    buckets: HashMap<String, (f64, Instant)>,
}

impl Claims {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes one token from `reporter`'s bucket; false when it is empty.
    fn allow(&self, reporter: &str, now: Instant) -> bool {
        let mut st = self.state();
        if st.buckets.len() > 100_000 {
            // Forget full buckets rather than grow without bound.
            st.buckets.retain(|_, (tokens, at)| {
                *tokens + now.saturating_duration_since(*at).as_secs_f64() * PER_SEC < BURST
            });
        }
        let (tokens, at) = st
            .buckets
            .entry(reporter.to_string())
            .or_insert((BURST, now));
        *tokens = (*tokens + now.saturating_duration_since(*at).as_secs_f64() * PER_SEC).min(BURST);
        *at = now;
        if *tokens < 1.0 {
            return false;
        }
        *tokens -= 1.0;
        true
    }

    /// Marks a replica suspect; false if it already was (a verification is
    /// under way).
    fn suspect(&self, chunk: ChunkId, node: NodeId, now: Instant) -> bool {
        let mut st = self.state();
        match st.suspects.get(&(chunk, node)) {
            Some(t) if now.saturating_duration_since(*t) < VERIFY_TIMEOUT => false,
            _ => {
                st.suspects.insert((chunk, node), now);
                true
            }
        }
    }

    /// Ends the suspicion of a replica; true if it was suspect.
    fn settle(&self, chunk: &ChunkId, node: &NodeId) -> bool {
        self.state().suspects.remove(&(*chunk, *node)).is_some()
    }

    /// Whether the replica is suspect now.
    pub(crate) fn is_suspect(&self, chunk: &ChunkId, node: &NodeId) -> bool {
        self.state().suspects.contains_key(&(*chunk, *node))
    }

    /// Drops verifications that were never answered.
    pub(crate) fn expire(&self, now: Instant) -> usize {
        let mut st = self.state();
        let before = st.suspects.len();
        st.suspects
            .retain(|_, t| now.saturating_duration_since(*t) < VERIFY_TIMEOUT);
        before - st.suspects.len()
    }

    /// Replicas under suspicion now.
    pub(crate) fn suspects(&self) -> usize {
        self.state().suspects.len()
    }
}

impl Namenode {
    /// A reader's claim that `req.node` served bad bytes of `req.chunk`.
    /// Only orders a re-verification by the holder; see the module doc.
    pub(crate) fn bad_replica(&self, reporter: &str, req: &BadReplica) -> Result<(), Error> {
        let now = Instant::now();
        if !self.claims.allow(reporter, now) {
            self.metrics.reports_refused.inc();
            return Err(Error::SlowDown(format!(
                "too many corruption reports from {reporter}: at most {PER_SEC} per second after a burst of {BURST}"
            )));
        }
        self.metrics.bad_replicas.inc();
        let actual = req.actual.map(|a| a.to_string()).unwrap_or_default();
        let held = self
            .meta
            .get::<ChunkRecord>(CF_CHUNKS, req.chunk.as_bytes())?
            .is_some_and(|rec| rec.replicas.contains(&req.node));
        if !held {
            tracing::info!(chunk = %req.chunk.short(), node = %req.node, reporter, "corruption report for a replica the metadata does not place there; ignored");
            return Ok(());
        }
        tracing::warn!(
            chunk = %req.chunk.short(),
            node = %req.node,
            reporter,
            reason = %req.reason,
            actual = %actual,
            "reader claims a replica is corrupt; asking its holder to verify it"
        );
        if self.claims.suspect(req.chunk, req.node, now) {
            self.order_command(
                req.node,
                Command::Verify {
                    chunks: vec![req.chunk],
                },
            );
        }
        Ok(())
    }

    /// The holder's verdicts from a chunk report: `verified` refutes the
    /// claims on those replicas; `corrupt` (quarantined by the holder)
    /// confirms any claim. Returns nothing: the replica map is updated by
    /// the report itself.
    pub(crate) fn settle_claims(&self, node: &NodeId, verified: &[ChunkId], corrupt: &[ChunkId]) {
        for c in verified {
            if self.claims.settle(c, node) {
                self.metrics.reports_refuted.inc();
                tracing::info!(chunk = %c.short(), node = %node, "corruption claim refuted: the replica verified good");
            }
        }
        for c in corrupt {
            if self.claims.settle(c, node) {
                self.metrics.reports_confirmed.inc();
                tracing::warn!(chunk = %c.short(), node = %node, "corruption claim confirmed by the holder");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reporter_is_limited_and_earns_tokens_back() {
        let c = Claims::default();
        let t0 = Instant::now();
        let allowed = (0..200).filter(|_| c.allow("alice", t0)).count();
        assert_eq!(allowed, BURST as usize);
        assert!(c.allow("bob", t0), "another reporter has its own bucket");
        assert!(!c.allow("alice", t0));
        let later = t0 + Duration::from_secs(1);
        let refilled = (0..200).filter(|_| c.allow("alice", later)).count();
        assert_eq!(refilled, PER_SEC as usize);
    }

    #[test]
    fn one_verification_per_suspect_replica_until_settled_or_expired() {
        let c = Claims::default();
        let t0 = Instant::now();
        let (chunk, node) = (ChunkId::of(b"x"), NodeId([1; 8]));
        assert!(c.suspect(chunk, node, t0));
        assert!(!c.suspect(chunk, node, t0 + Duration::from_secs(1)));
        assert!(c.is_suspect(&chunk, &node));
        assert!(c.settle(&chunk, &node));
        assert!(!c.settle(&chunk, &node), "settled once");
        assert!(c.suspect(chunk, node, t0));
        assert_eq!(c.expire(t0 + VERIFY_TIMEOUT), 1);
        assert_eq!(c.suspects(), 0);
    }
}
