//! Prometheus metrics of one edge instance (`blob_edge_*`), one registry
//! per instance. [`Metrics::stats`] reads the same counters for
//! `GET /v1/admin/stats`, so the two never disagree.

use std::sync::Arc;

use blob_common::proto::edge::{EdgeStats, TierStats};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};

/// Where bytes were served from: `memory`, `disk`, or `fill` (streamed
/// while arriving from an origin).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TierLabel {
    /// The tier.
    pub tier: &'static str,
}

/// The memory tier's label.
pub const MEMORY: TierLabel = TierLabel { tier: "memory" };
/// The disk tier's label.
pub const DISK: TierLabel = TierLabel { tier: "disk" };
/// Bytes served from a fill in flight.
pub const FILL: TierLabel = TierLabel { tier: "fill" };

/// Handles to every metric of an edge. Cloning shares them.
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    /// Requests served from a tier (`blob_edge_hits_total{tier}`).
    pub hits: Family<TierLabel, Counter>,
    /// Requests that found the chunk in no tier (`blob_edge_misses_total`).
    pub misses: Counter,
    /// Misses that joined a fill already in flight instead of asking the
    /// origin again (`blob_edge_coalesced_total`).
    pub coalesced: Counter,
    /// Body bytes sent, by where they came from
    /// (`blob_edge_served_bytes_total{tier}`).
    pub served_bytes: Family<TierLabel, Counter>,
    /// Bytes read from origin datanodes (`blob_edge_origin_bytes_total`).
    pub origin_bytes: Counter,
    /// Chunks evicted (`blob_edge_evictions_total{tier}`).
    pub evictions: Family<TierLabel, Counter>,
    /// Time from the start of a fill to a verified chunk
    /// (`blob_edge_fill_seconds`).
    pub fill_seconds: Histogram,
    /// Fills started (`blob_edge_fills_total`).
    pub fills: Counter,
    /// Fills that failed on every origin (`blob_edge_fill_failures_total`).
    pub fill_failures: Counter,
    /// Origin replicas that sent bytes not matching the chunk id
    /// (`blob_edge_corrupt_origins_total`).
    pub corrupt_origins: Counter,
    /// `If-None-Match` answered 304 (`blob_edge_not_modified_total`).
    pub not_modified: Counter,
    /// Requests refused (bad or expired signature, bad input)
    /// (`blob_edge_refused_total`).
    pub refused: Counter,
    /// Bytes held per tier (`blob_edge_cached_bytes{tier}`).
    pub cached_bytes: Family<TierLabel, Gauge>,
    /// Chunks held per tier (`blob_edge_cached_chunks{tier}`).
    pub cached_chunks: Family<TierLabel, Gauge>,
    /// Capacity per tier (`blob_edge_capacity_bytes{tier}`).
    pub capacity_bytes: Family<TierLabel, Gauge>,
    /// Fills in flight (`blob_edge_fills_in_flight`).
    pub fills_in_flight: Gauge,
    /// Disk-tier files found corrupt on a read (a block CRC, the SHA-256 or
    /// the footer failed) and dropped (`blob_edge_disk_corrupt_total`).
    pub disk_corrupt: Counter,
    /// Verified fills the disk tier would have taken but did not, because
    /// its writes were too far behind (`blob_edge_disk_skipped_total`).
    pub disk_skipped: Counter,
    /// Bytes of verified chunks waiting for their disk-tier write
    /// (`blob_edge_disk_backlog_bytes`).
    pub disk_backlog: Gauge,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A fresh registry with every edge metric registered.
    pub fn new() -> Self {
        let mut r = Registry::with_prefix("blob_edge");
        let hits = Family::<TierLabel, Counter>::default();
        r.register("hits", "Requests served from a cache tier", hits.clone());
        let misses = Counter::default();
        r.register(
            "misses",
            "Requests that found the chunk in no tier",
            misses.clone(),
        );
        let coalesced = Counter::default();
        r.register(
            "coalesced",
            "Misses that joined a fill already in flight",
            coalesced.clone(),
        );
        let served_bytes = Family::<TierLabel, Counter>::default();
        r.register_with_unit(
            "served",
            "Body bytes sent, by source (memory, disk, fill)",
            Unit::Bytes,
            served_bytes.clone(),
        );
        let origin_bytes = Counter::default();
        r.register_with_unit(
            "origin",
            "Bytes read from origin datanodes",
            Unit::Bytes,
            origin_bytes.clone(),
        );
        let evictions = Family::<TierLabel, Counter>::default();
        r.register("evictions", "Chunks evicted, by tier", evictions.clone());
        let fill_seconds = Histogram::new(exponential_buckets(0.001, 2.0, 16));
        r.register_with_unit(
            "fill",
            "Time to fill a chunk from its origin and verify it",
            Unit::Seconds,
            fill_seconds.clone(),
        );
        let fills = Counter::default();
        r.register("fills", "Fills from an origin started", fills.clone());
        let fill_failures = Counter::default();
        r.register(
            "fill_failures",
            "Fills that failed on every origin",
            fill_failures.clone(),
        );
        let corrupt_origins = Counter::default();
        r.register(
            "corrupt_origins",
            "Origin replicas whose bytes did not match the chunk id",
            corrupt_origins.clone(),
        );
        let not_modified = Counter::default();
        r.register(
            "not_modified",
            "Conditional requests answered 304",
            not_modified.clone(),
        );
        let refused = Counter::default();
        r.register(
            "refused",
            "Requests refused before any work (signature, input)",
            refused.clone(),
        );
        let cached_bytes = Family::<TierLabel, Gauge>::default();
        r.register_with_unit(
            "cached",
            "Bytes held, by tier",
            Unit::Bytes,
            cached_bytes.clone(),
        );
        let cached_chunks = Family::<TierLabel, Gauge>::default();
        r.register(
            "cached_chunks",
            "Chunks held, by tier",
            cached_chunks.clone(),
        );
        let capacity_bytes = Family::<TierLabel, Gauge>::default();
        r.register_with_unit(
            "capacity",
            "Capacity, by tier",
            Unit::Bytes,
            capacity_bytes.clone(),
        );
        let fills_in_flight = Gauge::default();
        r.register(
            "fills_in_flight",
            "Chunks being filled from an origin",
            fills_in_flight.clone(),
        );
        let disk_corrupt = Counter::default();
        r.register(
            "disk_corrupt",
            "Disk-tier files that failed verification on a read and were dropped",
            disk_corrupt.clone(),
        );
        let disk_skipped = Counter::default();
        r.register(
            "disk_skipped",
            "Fills not written to the disk tier because its writes were too far behind",
            disk_skipped.clone(),
        );
        let disk_backlog = Gauge::default();
        r.register_with_unit(
            "disk_backlog",
            "Verified chunk bytes waiting for their disk-tier write",
            Unit::Bytes,
            disk_backlog.clone(),
        );
        Self {
            disk_corrupt,
            disk_skipped,
            disk_backlog,
            registry: Arc::new(r),
            hits,
            misses,
            coalesced,
            served_bytes,
            origin_bytes,
            evictions,
            fill_seconds,
            fills,
            fill_failures,
            corrupt_origins,
            not_modified,
            refused,
            cached_bytes,
            cached_chunks,
            capacity_bytes,
            fills_in_flight,
        }
    }

    /// The registry in Prometheus/OpenMetrics text form.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    fn tier(&self, label: &TierLabel) -> TierStats {
        TierStats {
            capacity: self.capacity_bytes.get_or_create(label).get().max(0) as u64,
            used: self.cached_bytes.get_or_create(label).get().max(0) as u64,
            chunks: self.cached_chunks.get_or_create(label).get().max(0) as u64,
            hits: self.hits.get_or_create(label).get(),
            served_bytes: self.served_bytes.get_or_create(label).get(),
            evictions: self.evictions.get_or_create(label).get(),
        }
    }

    /// The counters as `GET /v1/admin/stats` answers them.
    pub fn stats(&self, zone: &str, policy: &str) -> EdgeStats {
        EdgeStats {
            zone: zone.to_string(),
            policy: policy.to_string(),
            memory: self.tier(&MEMORY),
            disk: self.tier(&DISK),
            misses: self.misses.get(),
            coalesced: self.coalesced.get(),
            fills: self.fills.get(),
            fill_failures: self.fill_failures.get(),
            origin_bytes: self.origin_bytes.get(),
            fill_served_bytes: self.served_bytes.get_or_create(&FILL).get(),
            corrupt_origins: self.corrupt_origins.get(),
            fills_in_flight: self.fills_in_flight.get().max(0) as u64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_and_stats_agree() {
        let m = Metrics::new();
        m.hits.get_or_create(&MEMORY).inc();
        m.misses.inc_by(2);
        m.served_bytes.get_or_create(&DISK).inc_by(7);
        m.fill_seconds.observe(0.01);
        let text = m.encode();
        assert!(
            text.contains("blob_edge_hits_total{tier=\"memory\"} 1"),
            "{text}"
        );
        assert!(text.contains("blob_edge_misses_total 2"), "{text}");
        assert!(
            text.contains("blob_edge_served_bytes_total{tier=\"disk\"} 7"),
            "{text}"
        );
        assert!(text.contains("blob_edge_fill_seconds_bucket"), "{text}");
        let s = m.stats("z", "lru");
        assert_eq!((s.memory.hits, s.misses, s.disk.served_bytes), (1, 2, 7));
    }
}
