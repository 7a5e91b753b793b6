//! Prometheus metrics of one datanode instance.
//!
//! Each instance has its own [`Registry`]: `blobd dev` runs several
//! datanodes in one process, so a global registry would mix them up.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};

/// Label of the request counters: the response's status class.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabels {
    /// `2xx`, `4xx`, `5xx`, ...
    pub class: &'static str,
}

impl StatusLabels {
    /// The label for an HTTP status.
    pub fn of(status: u16) -> Self {
        let class = match status / 100 {
            1 => "1xx",
            2 => "2xx",
            3 => "3xx",
            4 => "4xx",
            _ => "5xx",
        };
        Self { class }
    }
}

/// Handles to every metric of a datanode. Cloning shares the same metrics.
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    /// Chunk body bytes received by PUTs (`blob_datanode_received_bytes_total`).
    pub received_bytes: Counter,
    /// Chunk bytes sent by GETs (`blob_datanode_sent_bytes_total`).
    pub sent_bytes: Counter,
    /// Chunks held (`blob_datanode_chunks_stored`).
    pub chunks_stored: Gauge,
    /// Bytes of chunk data held (`blob_datanode_stored_bytes`).
    pub stored_bytes: Gauge<u64, AtomicU64>,
    /// Chunk PUTs by status class (`blob_datanode_put_requests_total`).
    pub put_requests: Family<StatusLabels, Counter>,
    /// Chunk GETs by status class (`blob_datanode_get_requests_total`).
    pub get_requests: Family<StatusLabels, Counter>,
    /// Chunks found corrupt and quarantined (`blob_datanode_corrupt_chunks_total`).
    pub corrupt_chunks: Counter,
    /// Forwards to the next pipeline node that failed
    /// (`blob_datanode_pipeline_failures_total`).
    pub pipeline_failures: Counter,
    /// Chunk reads and writes in progress (`blob_datanode_transfers_in_flight`).
    pub transfers_in_flight: Gauge,
    /// Bytes the scrubber verified (`blob_datanode_scrubbed_bytes_total`).
    pub scrubbed_bytes: Counter,
    /// Corrupt chunks the scrubber found (`blob_datanode_scrub_corrupt_total`).
    pub scrub_corrupt: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    /// A fresh registry with every datanode metric registered.
    pub fn new() -> Self {
        let mut r = Registry::with_prefix("blob_datanode");
        let received_bytes = Counter::default();
        r.register_with_unit(
            "received",
            "Chunk body bytes received by PUTs",
            Unit::Bytes,
            received_bytes.clone(),
        );
        let sent_bytes = Counter::default();
        r.register_with_unit(
            "sent",
            "Chunk bytes sent by GETs",
            Unit::Bytes,
            sent_bytes.clone(),
        );
        let chunks_stored = Gauge::default();
        r.register("chunks_stored", "Chunks held", chunks_stored.clone());
        let stored_bytes = Gauge::<u64, AtomicU64>::default();
        r.register_with_unit(
            "stored",
            "Bytes of chunk data held",
            Unit::Bytes,
            stored_bytes.clone(),
        );
        let put_requests = Family::<StatusLabels, Counter>::default();
        r.register(
            "put_requests",
            "Chunk PUT requests by status class",
            put_requests.clone(),
        );
        let get_requests = Family::<StatusLabels, Counter>::default();
        r.register(
            "get_requests",
            "Chunk GET requests by status class",
            get_requests.clone(),
        );
        let corrupt_chunks = Counter::default();
        r.register(
            "corrupt_chunks",
            "Chunks found corrupt and quarantined",
            corrupt_chunks.clone(),
        );
        let pipeline_failures = Counter::default();
        r.register(
            "pipeline_failures",
            "Forwards to the next pipeline node that failed",
            pipeline_failures.clone(),
        );
        let transfers_in_flight = Gauge::default();
        r.register(
            "transfers_in_flight",
            "Chunk reads and writes in progress",
            transfers_in_flight.clone(),
        );
        let scrubbed_bytes = Counter::default();
        r.register_with_unit(
            "scrubbed",
            "Chunk bytes verified by the scrubber",
            Unit::Bytes,
            scrubbed_bytes.clone(),
        );
        let scrub_corrupt = Counter::default();
        r.register(
            "scrub_corrupt",
            "Corrupt chunks found by the scrubber",
            scrub_corrupt.clone(),
        );
        Self {
            scrubbed_bytes,
            scrub_corrupt,
            registry: Arc::new(r),
            received_bytes,
            sent_bytes,
            chunks_stored,
            stored_bytes,
            put_requests,
            get_requests,
            corrupt_chunks,
            pipeline_failures,
            transfers_in_flight,
        }
    }

    /// The registry in Prometheus/OpenMetrics text form.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// Counts a transfer as in flight until the guard is dropped.
    pub fn transfer(&self) -> TransferGuard {
        self.transfers_in_flight.inc();
        TransferGuard(self.transfers_in_flight.clone())
    }
}

/// Keeps a transfer counted in `transfers_in_flight` while alive.
#[derive(Debug)]
pub struct TransferGuard(Gauge);

impl Drop for TransferGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_are_named_after_the_service() {
        let m = Metrics::new();
        m.received_bytes.inc_by(5);
        m.put_requests.get_or_create(&StatusLabels::of(201)).inc();
        {
            let _g = m.transfer();
            assert_eq!(m.transfers_in_flight.get(), 1);
        }
        assert_eq!(m.transfers_in_flight.get(), 0);
        let text = m.encode();
        assert!(
            text.contains("blob_datanode_received_bytes_total 5"),
            "{text}"
        );
        assert!(
            text.contains("blob_datanode_put_requests_total{class=\"2xx\"} 1"),
            "{text}"
        );
        assert!(text.contains("blob_datanode_chunks_stored 0"), "{text}");
    }
}
