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
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("blob_namenode");
        let commits = Counter::default();
        let committed_bytes = Counter::default();
        let bad_replicas = Counter::default();
        let orphan_reports = Counter::default();
        let live_nodes = Gauge::default();
        registry.register("commits", "Files committed", commits.clone());
        registry.register(
            "committed_bytes",
            "Bytes of files committed",
            committed_bytes.clone(),
        );
        registry.register(
            "bad_replicas",
            "Corrupt replicas reported by readers",
            bad_replicas.clone(),
        );
        registry.register(
            "orphan_chunks_reported",
            "Chunks datanodes reported that no metadata knows",
            orphan_reports.clone(),
        );
        registry.register(
            "live_datanodes",
            "Datanodes heartbeating",
            live_nodes.clone(),
        );
        Self {
            registry,
            commits,
            committed_bytes,
            bad_replicas,
            orphan_reports,
            live_nodes,
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
