//! `cp SRC DST` in every direction: a local file or tree to the store, a
//! store file or directory to the local disk, or within the store
//! (metadata only: the copy shares the source's chunks); and `mv` of a
//! file or a whole directory, within a bucket or to another.
//!
//! Which side is local: SRC is local when it exists on disk or starts with
//! `/`, `./` or `../`; DST is then the store (`BUCKET/PATH`). Otherwise
//! SRC is the store, and DST is too when it names an existing bucket
//! (`BUCKET/…`) and no local path; else DST is a local path.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use blob_client::Client;
use serde::Serialize;

use super::filter::Filters;
use super::objects::{list_glob, list_under};
use super::tree::{self, join_remote, rel_under, Job, Op, Plan, Report, RunOptions};
use crate::args::{glob_base, is_glob, last_segment, parse_file, parse_remote};
use crate::render::{human, note};

/// How `cp` copies.
#[derive(Clone, Debug)]
pub(crate) struct CpOptions {
    /// Whole trees.
    pub(crate) recursive: bool,
    /// Files at once, upload settings, no progress bar.
    pub(crate) run: RunOptions,
    /// Only print what would be copied (on stdout), copy nothing.
    pub(crate) dry_run: bool,
    /// `--exclude`/`--include`, for trees.
    pub(crate) filters: Filters,
    /// The summary as one JSON document on stdout.
    pub(crate) json: bool,
}

/// Whether `s` names a local path rather than `BUCKET/PATH`.
pub(crate) fn is_local(s: &str) -> bool {
    s == "-"
        || s.starts_with('/')
        || s.starts_with("./")
        || s.starts_with("../")
        || s.starts_with('~')
        || s == "."
        || s == ".."
        || Path::new(s).exists()
}

/// `(bucket, path)` when `dst` (with SRC in the store) is in the store
/// too: not a local path by [`is_local`], with a `/`, and its bucket
/// exists.
pub(crate) async fn store_destination(
    client: &Client,
    dst: &str,
) -> anyhow::Result<Option<(String, String)>> {
    if is_local(dst) || !dst.contains('/') {
        return Ok(None);
    }
    let (bucket, path) = parse_remote(dst)?;
    if blob_common::names::validate_bucket(&bucket).is_err() {
        return Ok(None);
    }
    let exists = client
        .head_bucket(&bucket)
        .await
        .with_context(|| format!("looking up bucket {bucket}"))?;
    Ok(exists.then_some((bucket, path)))
}

pub(crate) async fn cp(client: &Client, src: &str, dst: &str, o: CpOptions) -> anyhow::Result<()> {
    if !o.recursive && !o.filters.is_empty() && !is_glob(src) {
        bail!("--exclude and --include select files of a tree: add -r");
    }
    if is_local(src) {
        return cp_up(client, src, dst, &o).await;
    }
    if let Some((bucket, path)) = store_destination(client, dst).await? {
        return cp_within(client, src, &bucket, &path, &o).await;
    }
    cp_down(client, src, dst, &o).await
}

/// A local file or tree to the store.
async fn cp_up(client: &Client, src: &str, dst: &str, o: &CpOptions) -> anyhow::Result<()> {
    if !o.recursive && !o.dry_run && !o.json {
        if Path::new(src).is_dir() {
            bail!("{src} is a directory: copy it with -r");
        }
        return super::transfer::upload(client, src, dst, o.run.upload.clone(), o.run.quiet).await;
    }
    let root = PathBuf::from(src);
    let meta = std::fs::metadata(&root).with_context(|| format!("reading {src}"))?;
    let (bucket, jobs) = if !o.recursive {
        if meta.is_dir() {
            bail!("{src} is a directory: copy it with -r");
        }
        let (bucket, path) = crate::args::upload_destination(src, dst)?;
        let job = Job {
            from: src.to_string(),
            rel: last_segment(&path).to_string(),
            to: path,
            size: meta.len(),
        };
        (bucket, vec![job])
    } else {
        if !meta.is_dir() {
            bail!("{src} is not a directory: -r copies directory trees");
        }
        let (bucket, prefix) = parse_remote(dst)?;
        let prefix = prefix.trim_end_matches('/').to_string();
        let jobs = tree::walk_async(&root)
            .await?
            .into_iter()
            .filter(|f| o.filters.admits(&f.rel))
            .map(|f| Job {
                from: root.join(&f.rel).display().to_string(),
                to: join_remote(&prefix, &f.rel),
                size: f.stamp.size,
                rel: f.rel,
            })
            .collect();
        (bucket, jobs)
    };
    let plan = Plan {
        op: Op::Upload,
        src_bucket: String::new(),
        dst_bucket: bucket,
        jobs,
    };
    finish(client, plan, o, src).await
}

/// A store file or directory to the local disk.
async fn cp_down(client: &Client, src: &str, dst: &str, o: &CpOptions) -> anyhow::Result<()> {
    let glob = is_glob(src);
    if !o.recursive && !glob && !o.dry_run && !o.json {
        return super::transfer::download(client, src, dst, 8, o.run.quiet).await;
    }
    let (bucket, jobs) = store_jobs(client, src, o, |rel, _| {
        PathBuf::from(dst).join(rel).display().to_string()
    })
    .await?;
    let jobs = if o.recursive || glob {
        jobs
    } else {
        // One file: to DST itself, or into it when it is a directory.
        jobs.into_iter()
            .map(|j| Job {
                to: crate::args::download_destination(dst, &j.from)
                    .display()
                    .to_string(),
                ..j
            })
            .collect()
    };
    let plan = Plan {
        op: Op::Download,
        src_bucket: bucket,
        dst_bucket: String::new(),
        jobs,
    };
    finish(client, plan, o, src).await
}

/// A store file or directory to another store path: metadata only.
async fn cp_within(
    client: &Client,
    src: &str,
    dst_bucket: &str,
    dst_path: &str,
    o: &CpOptions,
) -> anyhow::Result<()> {
    let (bucket, jobs) = if o.recursive || is_glob(src) {
        let prefix = dst_path.trim_end_matches('/').to_string();
        store_jobs(client, src, o, |rel, _| join_remote(&prefix, rel)).await?
    } else {
        store_jobs(client, src, o, |_, from| {
            if dst_path.is_empty() || dst_path.ends_with('/') {
                format!("{dst_path}{}", last_segment(from))
            } else {
                dst_path.to_string()
            }
        })
        .await?
    };
    let plan = Plan {
        op: Op::Copy,
        src_bucket: bucket,
        dst_bucket: dst_bucket.to_string(),
        jobs,
    };
    finish(client, plan, o, src).await
}

/// The store files `src` names (the file itself, or with -r every file
/// under the directory, a file at exactly DIR keeping its name), each with
/// its destination from `to(rel, from)`.
async fn store_jobs(
    client: &Client,
    src: &str,
    o: &CpOptions,
    to: impl Fn(&str, &str) -> String,
) -> anyhow::Result<(String, Vec<Job>)> {
    let (bucket, path) = parse_remote(src)?;
    if is_glob(&path) {
        // What `ls` shows for the pattern (with -r, files under matching
        // directories too), each keeping its path below the pattern's
        // literal directory.
        let list = list_glob(client, &bucket, &path, o.recursive)
            .await
            .with_context(|| format!("listing {src}"))?;
        if list.files.is_empty() {
            return Err(crate::NotFound(format!("nothing matches {src}")).into());
        }
        let base = glob_base(&path);
        let jobs = list
            .files
            .into_iter()
            .filter_map(|f| {
                let rel = f.path.strip_prefix(base).unwrap_or(&f.path).to_string();
                o.filters.admits(&rel).then(|| Job {
                    to: to(&rel, &f.path),
                    from: f.path.clone(),
                    rel,
                    size: f.size,
                })
            })
            .collect();
        return Ok((bucket, jobs));
    }
    if !o.recursive {
        let (bucket, path) = parse_file(src)?;
        let info = client
            .stat(&bucket, &path)
            .await
            .with_context(|| format!("stat {src}"))?;
        let job = Job {
            to: to(last_segment(&path), &path),
            rel: last_segment(&path).to_string(),
            from: path,
            size: info.size,
        };
        return Ok((bucket, vec![job]));
    }
    let (bucket, dir) = parse_remote(src)?;
    let dir = dir.trim_end_matches('/').to_string();
    let list = list_under(client, &bucket, &dir)
        .await
        .with_context(|| format!("listing {src}"))?;
    if list.is_empty() {
        return Err(crate::NotFound(format!("nothing under {src}")).into());
    }
    let jobs = list
        .into_iter()
        .filter_map(|f| {
            let rel = rel_under(&dir, &f.path)
                .unwrap_or_else(|| last_segment(&f.path))
                .to_string();
            o.filters.admits(&rel).then(|| Job {
                to: to(&rel, &f.path),
                from: f.path.clone(),
                rel,
                size: f.size,
            })
        })
        .collect();
    Ok((bucket, jobs))
}

/// `cp`'s summary document (`--json`).
#[derive(Debug, Serialize)]
struct CpSummary {
    /// `upload`, `download` or `copy`.
    op: &'static str,
    files: usize,
    copied: usize,
    failed: usize,
    bytes: u64,
    bytes_sent: u64,
    seconds: f64,
}

/// Runs (or, dry, prints) the plan; one summary line or document.
async fn finish(client: &Client, plan: Plan, o: &CpOptions, src: &str) -> anyhow::Result<()> {
    let count = plan.jobs.len();
    if o.dry_run {
        plan.print_dry_run()?;
        let total: u64 = plan.jobs.iter().map(|j| j.size).sum();
        note(
            o.run.quiet,
            format_args!(
                "dry run: {count} file{} ({}) would be copied, nothing was",
                plural(count),
                human(total)
            ),
        );
        return Ok(());
    }
    let report = tree::run(client, &plan, &o.run).await?;
    let ok = report.done.len();
    let (verb, op) = match plan.op {
        Op::Upload => ("uploaded", "upload"),
        Op::Download => ("downloaded", "download"),
        Op::Copy | Op::Move => ("copied", "copy"),
    };
    if o.json {
        print_json(&CpSummary {
            op,
            files: count,
            copied: ok,
            failed: report.failed.len(),
            bytes: report.bytes,
            bytes_sent: report.bytes_sent,
            seconds: report.secs,
        })?;
    } else {
        let extra = match plan.op {
            Op::Upload => format!(", {} sent", human(report.bytes_sent)),
            Op::Copy | Op::Move => ", no bytes moved (copies share the chunks)".to_string(),
            Op::Download => String::new(),
        };
        note(
            o.run.quiet,
            format_args!(
                "{verb} {ok} of {count} files ({}) in {:.1} s ({}/s){extra}",
                human(report.bytes),
                report.secs,
                rate(&report),
            ),
        );
    }
    report.into_result(&format!("from {src}"))
}

/// Bytes per second of a run, human-readable.
pub(crate) fn rate(r: &Report) -> String {
    human((r.bytes as f64 / r.secs.max(0.001)) as u64)
}

pub(crate) fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// One JSON document on stdout.
pub(crate) fn print_json(v: &impl Serialize) -> anyhow::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", serde_json::to_string_pretty(v)?).context("writing to stdout")
}

/// How `mv` moves.
#[derive(Clone, Debug)]
pub(crate) struct MvOptions {
    /// Files at once (directories).
    pub(crate) parallel: usize,
    pub(crate) quiet: bool,
}

/// `mv BUCKET/FROM BUCKET/TO`: a file, or every file under a directory,
/// to another path in the same bucket (the namenode's atomic rename, per
/// file) or in another bucket (a metadata-only copy, then the source is
/// removed). A destination ending in `/` (or a bare bucket) keeps the
/// source's name.
pub(crate) async fn mv(client: &Client, from: &str, to: &str, o: &MvOptions) -> anyhow::Result<()> {
    let (src_bucket, src_path) = parse_file(from)?;
    let src_path = src_path.trim_end_matches('/').to_string();
    let (dst_bucket, dst) = parse_remote(to)?;
    let keep_name = dst.is_empty() || dst.ends_with('/');
    let dst_path = if keep_name {
        format!("{dst}{}", last_segment(&src_path))
    } else {
        dst
    };
    match client.stat(&src_bucket, &src_path).await {
        Ok(info) => {
            let plan = Plan {
                op: Op::Move,
                src_bucket,
                dst_bucket,
                jobs: vec![Job {
                    from: src_path.clone(),
                    to: dst_path,
                    rel: last_segment(&src_path).to_string(),
                    size: info.size,
                }],
            };
            let run = RunOptions {
                parallel: 1,
                upload: Default::default(),
                quiet: true,
            };
            let mut report = tree::run(client, &plan, &run).await?;
            if let Some((e_from, e)) = report.failed.pop() {
                return Err(e.context(format!("moving {e_from}")));
            }
            let job = &plan.jobs[0];
            let verb = if plan.src_bucket == plan.dst_bucket {
                "renamed"
            } else {
                "moved"
            };
            note(
                o.quiet,
                format_args!(
                    "{verb} {} to {}",
                    plan.source_of(job),
                    plan.destination_of(job)
                ),
            );
            Ok(())
        }
        Err(e) if e.is_not_found() => {
            if src_bucket == dst_bucket
                && (dst_path == src_path || dst_path.starts_with(&format!("{src_path}/")))
            {
                bail!("cannot move {from} into itself ({to})");
            }
            let files = list_under(client, &src_bucket, &src_path)
                .await
                .with_context(|| format!("listing {from}"))?;
            let jobs: Vec<Job> = files
                .into_iter()
                .filter_map(|f| {
                    let rel = rel_under(&src_path, &f.path)?.to_string();
                    Some(Job {
                        to: join_remote(&dst_path, &rel),
                        from: f.path,
                        rel,
                        size: f.size,
                    })
                })
                .collect();
            if jobs.is_empty() {
                return Err(e).with_context(|| format!("moving {from}: no such file or directory"));
            }
            let plan = Plan {
                op: Op::Move,
                src_bucket,
                dst_bucket,
                jobs,
            };
            let run = RunOptions {
                parallel: o.parallel,
                upload: Default::default(),
                quiet: o.quiet,
            };
            let report = tree::run(client, &plan, &run).await?;
            let count = plan.jobs.len();
            note(
                o.quiet,
                format_args!(
                    "moved {} of {count} files ({}) from {from} to {}/{dst_path} in {:.1} s",
                    report.done.len(),
                    human(report.bytes),
                    plan.dst_bucket,
                    report.secs,
                ),
            );
            report.into_result(&format!("from {from}"))
        }
        Err(e) => Err(e).with_context(|| format!("stat {from}")),
    }
}
