//! `admin status`, `admin fsck` and `admin decommission` (needing an
//! admin key), and how their answers read as text. `admin edge` is in
//! [`super::edge`].

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use blob_client::{Client, ClusterStatus, FsckQuery, FsckReport, NodeStatus};

use crate::args::parse_remote;
use crate::cli::AdminCommand;
use crate::render::{format_age, human, note, percent, render_table};

pub(crate) async fn admin(
    client: &Client,
    command: AdminCommand,
    quiet: bool,
) -> anyhow::Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    match command {
        AdminCommand::Status { json } => {
            let st = client
                .cluster_status()
                .await
                .context("getting the cluster status")?;
            let text = if json {
                format!("{}\n", serde_json::to_string_pretty(&st)?)
            } else {
                render_status(&st)
            };
            out.write_all(text.as_bytes())
                .context("writing to stdout")?;
        }
        AdminCommand::Fsck { target, json } => {
            let query = match target.as_deref() {
                None | Some("") => FsckQuery::default(),
                Some(t) => {
                    let (bucket, prefix) = parse_remote(t)?;
                    FsckQuery {
                        bucket: Some(bucket),
                        prefix: (!prefix.is_empty()).then_some(prefix),
                    }
                }
            };
            let what = target.as_deref().unwrap_or("every bucket");
            let report = client
                .fsck(&query)
                .await
                .with_context(|| format!("checking {what}"))?;
            let text = if json {
                format!("{}\n", serde_json::to_string_pretty(&report)?)
            } else {
                render_fsck(&report)
            };
            out.write_all(text.as_bytes())
                .context("writing to stdout")?;
            return Ok(fsck_exit_code(&report));
        }
        AdminCommand::Edge { command } => return super::edge::edge(client, command, quiet).await,
        AdminCommand::Key { command } => super::access::key(client, command, quiet).await?,
        AdminCommand::Bucket { command } => super::access::bucket(client, command).await?,
        AdminCommand::Decommission { node, json } => {
            let st = client
                .decommission(node)
                .await
                .with_context(|| format!("decommissioning node {node}"))?;
            if json {
                writeln!(out, "{}", serde_json::to_string_pretty(&st)?)
                    .context("writing to stdout")?;
            } else {
                note(
                    quiet,
                    format_args!(
                        "node {} ({}) is {}: it takes no new replicas and its chunks are \
                         being copied elsewhere; follow with `blobctl admin status`",
                        st.node, st.url, st.state
                    ),
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// States in the order `admin status` counts them.
pub(crate) const NODE_STATES: [&str; 5] =
    ["live", "stale", "dead", "decommissioning", "decommissioned"];

/// `admin status` as text: cluster totals and chunk health, then a table
/// of nodes (like `hdfs dfsadmin -report`).
pub(crate) fn render_status(st: &ClusterStatus) -> String {
    let mut states: Vec<(String, usize)> = NODE_STATES.iter().map(|s| (s.to_string(), 0)).collect();
    for n in &st.nodes {
        match states.iter_mut().find(|(s, _)| *s == n.state) {
            Some((_, count)) => *count += 1,
            None => states.push((n.state.clone(), 1)),
        }
    }
    let by_state: Vec<String> = states
        .iter()
        .filter(|(s, c)| *c > 0 || s == "live" || s == "dead")
        .map(|(s, c)| format!("{c} {s}"))
        .collect();
    let sum = |f: fn(&NodeStatus) -> u64| {
        st.nodes
            .iter()
            .map(f)
            .fold(0u64, |a, b| a.saturating_add(b))
    };
    let (capacity, used, available) = (sum(|n| n.capacity), sum(|n| n.used), sum(|n| n.available));
    let mut text = String::new();
    let mut line = |label: &str, value: String| {
        text.push_str(&format!("{:<18}{value}\n", format!("{label}:")));
    };
    line(
        "Nodes",
        format!("{} ({})", st.nodes.len(), by_state.join(", ")),
    );
    line("Capacity", human(capacity));
    line(
        "Used",
        format!("{} ({})", human(used), percent(used, capacity)),
    );
    line("Available", human(available));
    line("Chunks", st.chunks.to_string());
    line("Under-replicated", st.under_replicated.to_string());
    line("Missing", st.missing.to_string());
    line("Corrupt replicas", st.corrupt.to_string());
    line("Copies in flight", st.copies_in_flight.to_string());
    line("Garbage", st.garbage.to_string());
    if st.nodes.is_empty() {
        return text;
    }
    text.push('\n');
    let header = [
        "NODE",
        "URL",
        "STATE",
        "HEARTBEAT",
        "CAPACITY",
        "USED",
        "AVAILABLE",
        "USE%",
        "CHUNKS",
        "LOAD",
        "READ-ONLY",
    ];
    let right = [
        false, false, false, true, true, true, true, true, true, true, false,
    ];
    let rows: Vec<Vec<String>> = st
        .nodes
        .iter()
        .map(|n| {
            vec![
                n.node.to_string(),
                n.url.clone(),
                n.state.clone(),
                format_age(n.heartbeat_age_ms),
                human(n.capacity),
                human(n.used),
                human(n.available),
                percent(n.used, n.capacity),
                n.chunk_count.to_string(),
                n.load.to_string(),
                if n.read_only { "yes" } else { "no" }.to_string(),
            ]
        })
        .collect();
    text.push_str(&render_table(&header, &right, &rows));
    text
}

/// The fsck verdict: `CORRUPT` when a chunk is missing, `UNDER-REPLICATED`
/// when anything else is wrong, else `HEALTHY`.
pub(crate) fn fsck_status(r: &FsckReport) -> &'static str {
    if fsck_missing(r) {
        "CORRUPT"
    } else if r.healthy() {
        "HEALTHY"
    } else {
        "UNDER-REPLICATED"
    }
}

pub(crate) fn fsck_missing(r: &FsckReport) -> bool {
    r.missing_files > 0 || r.problems.iter().any(|f| !f.missing.is_empty())
}

/// 1 when a chunk is missing, else 0.
pub(crate) fn fsck_exit_code(r: &FsckReport) -> ExitCode {
    if fsck_missing(r) {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

/// `admin fsck` as text, HDFS style: a line per file with trouble, then
/// the summary and the status.
pub(crate) fn render_fsck(r: &FsckReport) -> String {
    let mut text = String::new();
    for f in &r.problems {
        text.push_str(&format!(
            "{}/{}: {} missing, {} under-replicated, {} corrupt chunks\n",
            f.bucket,
            f.path,
            f.missing.len(),
            f.under_replicated.len(),
            f.corrupt.len()
        ));
    }
    if !r.problems.is_empty() {
        text.push('\n');
    }
    for (label, value) in [
        ("Files", r.files),
        ("Chunks", r.chunks),
        ("Missing files", r.missing_files),
        ("Under-replicated files", r.under_replicated_files),
        ("Corrupt files", r.corrupt_files),
    ] {
        text.push_str(&format!("{:<24}{value}\n", format!("{label}:")));
    }
    text.push_str(&format!("Status: {}\n", fsck_status(r)));
    text
}

#[cfg(test)]
mod tests {
    use blob_client::NodeId;

    use super::*;

    fn node(id: u8, state: &str, age: Option<u64>, read_only: bool) -> NodeStatus {
        NodeStatus {
            node: NodeId([id; 8]),
            url: format!("http://10.0.0.{id}:9871"),
            state: state.into(),
            heartbeat_age_ms: age,
            capacity: 100 << 30,
            used: 25 << 30,
            available: 70 << 30,
            chunk_count: 1000 * u64::from(id),
            load: u64::from(id),
            read_only,
        }
    }

    fn fsck_file(
        path: &str,
        missing: usize,
        under: usize,
        corrupt: usize,
    ) -> blob_client::FsckFile {
        let ids = |n: usize, seed: u8| -> Vec<blob_common::ChunkId> {
            (0..n)
                .map(|i| blob_common::ChunkId::of(&[seed, i as u8]))
                .collect()
        };
        blob_client::FsckFile {
            bucket: "b".into(),
            path: path.into(),
            size: 1,
            replication: 3,
            missing: ids(missing, 1),
            under_replicated: ids(under, 2),
            corrupt: ids(corrupt, 3),
        }
    }

    #[test]
    fn status_renders_counts_and_nodes() {
        let st = ClusterStatus {
            nodes: vec![
                node(1, "live", Some(1_200), false),
                node(2, "dead", None, true),
                node(3, "decommissioning", Some(700), false),
            ],
            chunks: 1234,
            under_replicated: 5,
            missing: 1,
            corrupt: 2,
            copies_in_flight: 3,
            garbage: 7,
        };
        let text = render_status(&st);
        for want in [
            "Nodes:            3 (1 live, 1 dead, 1 decommissioning)\n",
            "Capacity:         300.0 GiB\n",
            "Used:             75.0 GiB (25.0%)\n",
            "Available:        210.0 GiB\n",
            "Chunks:           1234\n",
            "Under-replicated: 5\n",
            "Missing:          1\n",
            "Corrupt replicas: 2\n",
            "Copies in flight: 3\n",
            "Garbage:          7\n",
        ] {
            assert!(text.contains(want), "{want:?} not in\n{text}");
        }
        let lines: Vec<&str> = text.lines().collect();
        let header = lines
            .iter()
            .position(|l| l.starts_with("NODE "))
            .unwrap_or_else(|| panic!("no table in\n{text}"));
        assert_eq!(lines.len(), header + 4, "{text}");
        let row: Vec<&str> = lines[header + 2].split_whitespace().collect();
        assert_eq!(
            row,
            [
                "0202020202020202",
                "http://10.0.0.2:9871",
                "dead",
                "never",
                "100.0",
                "GiB",
                "25.0",
                "GiB",
                "70.0",
                "GiB",
                "25.0%",
                "2000",
                "2",
                "yes"
            ]
        );
        assert!(lines[header + 1].contains(" 1.2s "), "{text}");
        assert!(text.lines().all(|l| l == l.trim_end()), "{text}");
        // No nodes: no table.
        let empty = render_status(&ClusterStatus::default());
        assert!(
            empty.contains("Nodes:            0 (0 live, 0 dead)\n"),
            "{empty}"
        );
        assert!(empty.contains("Used:             0 B (-)\n"), "{empty}");
        assert!(!empty.contains("NODE"), "{empty}");
    }

    #[test]
    fn fsck_renders_and_picks_status_and_exit_code() {
        let healthy = FsckReport {
            files: 3,
            chunks: 9,
            ..FsckReport::default()
        };
        assert_eq!(
            render_fsck(&healthy),
            "Files:                  3\nChunks:                 9\nMissing files:          0\n\
             Under-replicated files: 0\nCorrupt files:          0\nStatus: HEALTHY\n"
        );
        assert_eq!(fsck_exit_code(&healthy), ExitCode::SUCCESS);

        let under = FsckReport {
            files: 3,
            chunks: 9,
            under_replicated_files: 1,
            corrupt_files: 1,
            problems: vec![fsck_file("a/x", 0, 1, 0), fsck_file("y", 0, 0, 1)],
            ..FsckReport::default()
        };
        let text = render_fsck(&under);
        assert!(
            text.starts_with(
                "b/a/x: 0 missing, 1 under-replicated, 0 corrupt chunks\n\
                 b/y: 0 missing, 0 under-replicated, 1 corrupt chunks\n\nFiles:"
            ),
            "{text}"
        );
        assert!(text.ends_with("Status: UNDER-REPLICATED\n"), "{text}");
        assert_eq!(fsck_exit_code(&under), ExitCode::SUCCESS);

        let missing = FsckReport {
            files: 3,
            chunks: 9,
            missing_files: 1,
            problems: vec![fsck_file("m", 2, 1, 0)],
            ..FsckReport::default()
        };
        let text = render_fsck(&missing);
        assert!(
            text.starts_with("b/m: 2 missing, 1 under-replicated, 0 corrupt chunks\n"),
            "{text}"
        );
        assert!(text.contains("Missing files:          1\n"), "{text}");
        assert!(text.ends_with("Status: CORRUPT\n"), "{text}");
        assert_eq!(fsck_exit_code(&missing), ExitCode::from(1));
    }
}
