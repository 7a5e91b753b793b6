//! `admin edge warm` (fill the reader's edge cache with a prefix) and
//! `admin edge stats` (every edge's tiers, hit ratio and origin traffic).

use std::io::Write;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use blob_client::Client;

use crate::args::parse_remote;
use crate::cli::EdgeCommand;
use crate::render::{human, note, percent, render_table};

pub(crate) async fn edge(
    client: &Client,
    command: EdgeCommand,
    quiet: bool,
) -> anyhow::Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    match command {
        EdgeCommand::Warm { target, json } => {
            let (bucket, prefix) = parse_remote(&target)?;
            let started = Instant::now();
            let r = client
                .warm_edge(&bucket, &prefix)
                .await
                .with_context(|| format!("warming the edge with {target}"))?;
            if json {
                writeln!(out, "{}", serde_json::to_string_pretty(&r)?)
                    .context("writing to stdout")?;
            } else {
                note(
                    quiet,
                    format_args!(
                        "edge {} ({}): {} files, {} chunks, {}: {} filled, {} already cached, {} failed in {:.1}s",
                        r.zone,
                        r.edge,
                        r.files,
                        r.chunks,
                        human(r.bytes),
                        r.result.filled,
                        r.result.cached,
                        r.result.failed,
                        started.elapsed().as_secs_f64()
                    ),
                );
                for e in &r.result.errors {
                    eprintln!("  {e}");
                }
            }
            if r.result.failed > 0 {
                return Ok(ExitCode::from(2));
            }
        }
        EdgeCommand::Stats { json } => {
            let edges = client.list_edges().await.context("listing the edges")?;
            let mut all = Vec::new();
            for e in &edges.edges {
                let st = client
                    .edge_stats(&e.url, &edges.stats_query)
                    .await
                    .map_err(|err| err.to_string());
                all.push((e.clone(), st));
            }
            let text = if json {
                let v: Vec<serde_json::Value> = all
                    .iter()
                    .map(|(e, st)| match st {
                        Ok(s) => serde_json::json!({"zone": e.zone, "url": e.url, "stats": s}),
                        Err(err) => serde_json::json!({"zone": e.zone, "url": e.url, "error": err}),
                    })
                    .collect();
                format!("{}\n", serde_json::to_string_pretty(&v)?)
            } else {
                render_edges(&all)
            };
            out.write_all(text.as_bytes())
                .context("writing to stdout")?;
            if all.iter().any(|(_, st)| st.is_err()) {
                return Ok(ExitCode::from(2));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `admin edge stats` as text: one row per edge.
pub(crate) fn render_edges(
    all: &[(
        blob_client::EdgeInfo,
        Result<blob_client::EdgeStats, String>,
    )],
) -> String {
    if all.is_empty() {
        return "no edges configured (blobd namenode --edge ZONE=URL)\n".into();
    }
    let header = [
        "ZONE",
        "URL",
        "POLICY",
        "HIT%",
        "MEM HITS",
        "DISK HITS",
        "MISSES",
        "COALESCED",
        "MEMORY",
        "DISK",
        "ORIGIN",
        "EVICTED",
    ];
    let right = [
        false, false, false, true, true, true, true, true, true, true, true, true,
    ];
    let mut rows = Vec::new();
    let mut errors = String::new();
    for (e, st) in all {
        match st {
            Ok(s) => {
                let hits = s.memory.hits + s.disk.hits;
                rows.push(vec![
                    e.zone.clone(),
                    e.url.clone(),
                    s.policy.clone(),
                    percent(hits, hits + s.misses),
                    s.memory.hits.to_string(),
                    s.disk.hits.to_string(),
                    s.misses.to_string(),
                    s.coalesced.to_string(),
                    format!("{}/{}", human(s.memory.used), human(s.memory.capacity)),
                    format!("{}/{}", human(s.disk.used), human(s.disk.capacity)),
                    human(s.origin_bytes),
                    (s.memory.evictions + s.disk.evictions).to_string(),
                ]);
            }
            Err(err) => {
                rows.push(vec![
                    e.zone.clone(),
                    e.url.clone(),
                    "-".into(),
                    "-".into(),
                    "-".into(),
                    "-".into(),
                    "-".into(),
                    "-".into(),
                    "-".into(),
                    "-".into(),
                    "-".into(),
                    "-".into(),
                ]);
                errors.push_str(&format!("{} ({}): {err}\n", e.zone, e.url));
            }
        }
    }
    let mut out = render_table(&header, &right, &rows);
    out.push_str(&errors);
    out
}
