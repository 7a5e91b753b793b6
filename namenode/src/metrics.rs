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
    pub pauses: Counter,
    pub nodes_dead: Counter,
    pub reports_confirmed: Counter,
    pub reports_refuted: Counter,
    pub reports_refused: Counter,
    pub wal_syncs: Gauge,
    pub suspect_replicas: Gauge,
    pub full_reports: Counter,
    pub incremental_reports: Counter,
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
        let pauses = counter(
            "pauses",
            "Times the namenode found it had not been running (its silence not held against datanodes)",
        );
        let full_reports = counter(
            "full_reports",
            "Full chunk reports received whole (every page)",
        );
        let incremental_reports =
            counter("incremental_reports", "Incremental chunk reports received");
        let nodes_dead = counter("datanodes_declared_dead", "Datanodes declared dead");
        let reports_confirmed = counter(
            "corruption_reports_confirmed",
            "Reader corruption reports the replica's holder confirmed",
        );
        let reports_refuted = counter(
            "corruption_reports_refuted",
            "Reader corruption reports the replica's holder refuted (the replica verified good)",
        );
        let reports_refused = counter(
            "corruption_reports_refused",
            "Reader corruption reports refused by the per-reporter rate limit",
        );
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
        let wal_syncs = gauge("wal_syncs", "Metadata WAL syncs since start (group commit)");
        let suspect_replicas = gauge(
            "suspect_replicas",
            "Replicas under a reader's corruption claim, awaiting their holder's verification",
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
            pauses,
            nodes_dead,
            reports_confirmed,
            reports_refuted,
            reports_refused,
            wal_syncs,
            suspect_replicas,
            full_reports,
            incremental_reports,
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
