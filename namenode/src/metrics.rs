//! Namenode metrics, one registry per instance, Prometheus text format.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

pub(crate) struct Metrics {
    registry: Registry,
    pub commits: Counter,
    pub committed_bytes: Counter,
    pub bad_replicas: Counter,
    pub orphan_reports: Counter,
    pub live_nodes: Gauge,
    pub copies: Counter,
    pub trimmed: Counter,
    pub garbage_deleted: Counter,
    pub orphans_deleted: Counter,
    pub corrupt_replicas: Counter,
    pub missing_chunks: Gauge,
    pub under_replicated: Gauge,
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("blob_namenode");
        let mut counter = |name: &str, help: &str| {
            let c = Counter::default();
            registry.register(name, help, c.clone());
            c
        };
        let commits = counter("commits", "Files committed");
        let committed_bytes = counter("committed_bytes", "Bytes of files committed");
        let bad_replicas = counter("bad_replicas", "Corrupt replicas reported by readers");
        let orphan_reports = counter(
            "orphan_chunks_reported",
            "Chunks datanodes reported that no metadata knows",
        );
        let copies = counter("replica_copies", "Replica copies ordered by repair");
        let trimmed = counter("replicas_trimmed", "Excess replicas deleted");
        let garbage_deleted = counter("garbage_chunks_deleted", "Unreferenced chunks collected");
        let orphans_deleted = counter(
            "orphan_replicas_deleted",
            "Replicas no metadata knows, deleted",
        );
        let corrupt_replicas =
            counter("corrupt_replicas", "Replicas reported corrupt by datanodes");
        let mut gauge = |name: &str, help: &str| {
            let g = Gauge::default();
            registry.register(name, help, g.clone());
            g
        };
        let live_nodes = gauge("live_datanodes", "Datanodes heartbeating");
        let missing_chunks = gauge("missing_chunks", "Referenced chunks with no live replica");
        let under_replicated = gauge(
            "under_replicated_chunks",
            "Chunks seen below their replication by the last repair pass",
        );
        Self {
            registry,
            commits,
            committed_bytes,
            bad_replicas,
            orphan_reports,
            live_nodes,
            copies,
            trimmed,
            garbage_deleted,
            orphans_deleted,
            corrupt_replicas,
            missing_chunks,
            under_replicated,
        }
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        if encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}
