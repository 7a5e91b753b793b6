//! `sync SRC DST [--delete] [--dry-run]`: makes a store directory match a
//! local tree, or a local tree match a store directory, moving only the
//! files that differ.
//!
//! A file is the same on both sides when it has the same size and the
//! same chunk ids (SHA-256s) at the store file's chunk size: the store
//! side from metadata (no remote byte is read), the local side hashed once
//! and cached by size and modification time ([`super::hashes`]). Files of
//! different sizes differ without hashing. A file that is sent still only
//! sends the chunks the store lacks. `--delete` removes destination files
//! the source does not have (within what `--exclude`/`--include` select).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context};
use blob_client::{Client, FileEntry};
use blob_common::ChunkId;
use serde::Serialize;

use super::copy::{is_local, plural, print_json, store_destination};
use super::filter::Filters;
use super::hashes::{chunk_ids, chunk_ids_cut, HashCache, Stamp};
use super::objects::list_under;
use super::tree::{self, join_remote, rel_under, Job, LocalFile, Op, Plan, RunOptions};
use crate::args::parse_remote;
use crate::render::{human, note};

/// How `sync` runs.
#[derive(Clone, Debug)]
pub(crate) struct SyncOptions {
    /// Remove destination files the source lacks.
    pub(crate) delete: bool,
    /// Print what would change (on stdout), change nothing.
    pub(crate) dry_run: bool,
    /// Files at once, upload settings, no progress bar.
    pub(crate) run: RunOptions,
    /// `--exclude`/`--include`.
    pub(crate) filters: Filters,
    /// The summary as one JSON document on stdout.
    pub(crate) json: bool,
}

/// `sync`'s summary document (`--json`); the counts are files.
#[derive(Debug, Default, Serialize)]
struct SyncSummary {
    /// `upload` (local to store) or `download`.
    direction: &'static str,
    /// Files that differed (or were missing) and were copied.
    sent: usize,
    /// Files found identical, left alone.
    skipped: usize,
    /// Destination files the source lacks, removed (with --delete).
    deleted: usize,
    /// Copies and removals that failed.
    failed: usize,
    /// Bytes of the files copied.
    bytes: u64,
    /// Bytes sent to datanodes (uploads: the chunks the store lacked).
    bytes_sent: u64,
    /// Local files hashed this run (the others came from the hash cache
    /// or differed in size).
    hashed: usize,
    seconds: f64,
    dry_run: bool,
}

/// A file present on both sides with the same size: the same only if
/// the chunk ids match.
struct Candidate {
    rel: String,
    local: PathBuf,
    stamp: Stamp,
    remote: String,
}

pub(crate) async fn sync(
    client: &Client,
    src: &str,
    dst: &str,
    o: SyncOptions,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let up = is_local(src);
    if up && is_local(dst) {
        bail!("sync copies between the local disk and the store: {dst} is local too");
    }
    let (root, bucket, dir) = if up {
        let (bucket, dir) = parse_remote(dst)?;
        (PathBuf::from(src), bucket, dir)
    } else {
        // Within the store, `cp -r` copies metadata only: nothing to save.
        let bucket_named = !dst.contains('/')
            && !Path::new(dst).exists()
            && blob_common::names::validate_bucket(dst).is_ok()
            && client.head_bucket(dst).await?;
        if bucket_named || store_destination(client, dst).await?.is_some() {
            bail!(
                "{dst} is in the store: sync copies between the local disk and the store \
                 (within the store, `cp -r` copies metadata only; write ./{dst} for a local \
                 directory)"
            );
        }
        let (bucket, dir) = parse_remote(src)?;
        (PathBuf::from(dst), bucket, dir)
    };
    let dir = dir.trim_end_matches('/').to_string();

    // Both sides, as relative paths, within the filters.
    let local: Vec<LocalFile> = if up {
        let meta = std::fs::metadata(&root).with_context(|| format!("reading {src}"))?;
        if !meta.is_dir() {
            bail!("{src} is not a directory: sync works on directory trees");
        }
        tree::walk_async(&root).await?
    } else {
        match std::fs::metadata(&root) {
            Ok(m) if m.is_dir() => tree::walk_async(&root).await?,
            Ok(_) => bail!("{dst} is not a directory: sync works on directory trees"),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e).with_context(|| format!("reading {dst}")),
        }
    };
    let local: BTreeMap<String, LocalFile> = local
        .into_iter()
        .filter(|f| o.filters.admits(&f.rel))
        .map(|f| (f.rel.clone(), f))
        .collect();
    let store_dir = if dir.is_empty() {
        bucket.clone()
    } else {
        format!("{bucket}/{dir}")
    };
    let listed = list_under(client, &bucket, &dir)
        .await
        .with_context(|| format!("listing {store_dir}"))?;
    if !up && listed.is_empty() {
        return Err(crate::NotFound(format!("nothing under {src}")).into());
    }
    let remote: BTreeMap<String, FileEntry> = listed
        .into_iter()
        .filter_map(|f| Some((rel_under(&dir, &f.path)?.to_string(), f)))
        .filter(|(rel, _)| o.filters.admits(rel))
        .collect();

    // What differs: missing or of another size at once, the rest by hash.
    let mut jobs: Vec<Job> = Vec::new();
    let mut candidates: Vec<Candidate> = Vec::new();
    let job_for = |rel: &str, size: u64| {
        let local_path = root.join(rel).display().to_string();
        let remote_path = join_remote(&dir, rel);
        if up {
            Job {
                from: local_path,
                to: remote_path,
                rel: rel.to_string(),
                size,
            }
        } else {
            Job {
                from: remote_path,
                to: local_path,
                rel: rel.to_string(),
                size,
            }
        }
    };
    if up {
        for (rel, f) in &local {
            match remote.get(rel) {
                Some(r) if r.size == f.stamp.size => candidates.push(Candidate {
                    rel: rel.clone(),
                    local: root.join(rel),
                    stamp: f.stamp,
                    remote: r.path.clone(),
                }),
                _ => jobs.push(job_for(rel, f.stamp.size)),
            }
        }
    } else {
        for (rel, r) in &remote {
            match local.get(rel) {
                Some(f) if r.size == f.stamp.size => candidates.push(Candidate {
                    rel: rel.clone(),
                    local: root.join(rel),
                    stamp: f.stamp,
                    remote: r.path.clone(),
                }),
                _ => jobs.push(job_for(rel, r.size)),
            }
        }
    }
    let mut cache = HashCache::open(&root);
    let mut summary = SyncSummary {
        direction: if up { "upload" } else { "download" },
        dry_run: o.dry_run,
        ..SyncSummary::default()
    };
    let compared = compare(client, &bucket, candidates, &mut cache, &o.run).await?;
    summary.hashed = compared.hashed;
    summary.skipped = compared.same;
    jobs.extend(
        compared
            .differ
            .iter()
            .map(|c| job_for(&c.rel, c.stamp.size)),
    );
    jobs.sort_by(|a, b| a.rel.cmp(&b.rel));
    let doomed: Vec<String> = if !o.delete {
        Vec::new()
    } else if up {
        remote
            .iter()
            .filter(|(rel, _)| !local.contains_key(*rel))
            .map(|(_, r)| r.path.clone())
            .collect()
    } else {
        local
            .keys()
            .filter(|rel| !remote.contains_key(*rel))
            .map(|rel| root.join(rel).display().to_string())
            .collect()
    };
    let plan = Plan {
        op: if up { Op::Upload } else { Op::Download },
        src_bucket: if up { String::new() } else { bucket.clone() },
        dst_bucket: if up { bucket.clone() } else { String::new() },
        jobs,
    };

    if o.dry_run {
        if !o.json {
            plan.print_dry_run()?;
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            for d in &doomed {
                let shown = if up {
                    format!("{bucket}/{d}")
                } else {
                    d.clone()
                };
                writeln!(out, "would delete {shown}").context("writing to stdout")?;
            }
        }
        cache.save();
        summary.sent = plan.jobs.len();
        summary.bytes = plan.jobs.iter().map(|j| j.size).sum();
        summary.deleted = doomed.len();
        summary.seconds = started.elapsed().as_secs_f64();
        if o.json {
            return print_json(&summary);
        }
        note(
            o.run.quiet,
            format_args!(
                "dry run: {} file{} ({}) would be sent, {} unchanged, {} would be deleted; \
                 nothing was changed",
                summary.sent,
                plural(summary.sent),
                human(summary.bytes),
                summary.skipped,
                summary.deleted
            ),
        );
        return Ok(());
    }

    let report = tree::run(client, &plan, &o.run).await?;
    // What was copied is known exactly now: keep its chunk ids.
    for (job, info) in &report.done {
        let local_path = if up { &job.from } else { &job.to };
        let Ok(meta) = std::fs::metadata(local_path) else {
            continue;
        };
        let now = Stamp::of(&meta);
        let ids: Vec<ChunkId> = info.chunks.iter().map(|c| c.id).collect();
        let walked = local.get(&job.rel).map(|f| f.stamp);
        if !up {
            // Written and renamed into place by this run.
            cache.put_written(&job.rel, now, info.chunk_size, &ids);
        } else if walked == Some(now) {
            cache.put(&job.rel, now, info.chunk_size, &ids);
        }
    }
    cache.save();
    let deleted = delete(client, &bucket, up, &doomed, o.run.parallel).await;
    summary.sent = report.done.len();
    summary.bytes = report.bytes;
    summary.bytes_sent = report.bytes_sent;
    summary.deleted = doomed.len() - deleted.len();
    summary.failed = report.failed.len() + deleted.len();
    summary.seconds = started.elapsed().as_secs_f64();
    if o.json {
        print_json(&summary)?;
    } else {
        let sent = if up {
            format!(", {} of chunks the store lacked", human(summary.bytes_sent))
        } else {
            String::new()
        };
        note(
            o.run.quiet,
            format_args!(
                "synced {src} to {dst}: {} sent ({}{sent}), {} unchanged, {} deleted, {} failed \
                 in {:.1} s",
                summary.sent,
                human(summary.bytes),
                summary.skipped,
                summary.deleted,
                summary.failed,
                summary.seconds,
            ),
        );
    }
    let mut report = report;
    report.files += doomed.len();
    report.failed.extend(deleted);
    report.into_result(&format!("syncing {src} to {dst}"))
}

/// The outcome of comparing same-size files by chunk ids.
struct Compared {
    same: usize,
    differ: Vec<Candidate>,
    hashed: usize,
}

/// A store file's chunk size, chunk ids, and the chunks' sizes when they
/// are not all that chunk size.
type StoreChunks = (u64, Vec<ChunkId>, Option<Vec<u64>>);

/// Splits `cands` into the same and the different: the store file's chunk
/// size and ids from its metadata, the local file's from the cache or
/// hashed (`parallel` files at once, off the runtime). A file either side
/// cannot be read counts as different: copying it then says why.
async fn compare(
    client: &Client,
    bucket: &str,
    cands: Vec<Candidate>,
    cache: &mut HashCache,
    o: &RunOptions,
) -> anyhow::Result<Compared> {
    let limit = Arc::new(tokio::sync::Semaphore::new(o.parallel.max(1) * 4));
    let mut stats = tokio::task::JoinSet::new();
    for (i, c) in cands.iter().enumerate() {
        let client = client.clone();
        let bucket = bucket.to_string();
        let path = c.remote.clone();
        let limit = limit.clone();
        stats.spawn(async move {
            let _permit = limit.acquire_owned().await;
            (i, client.stat(&bucket, &path).await)
        });
    }
    // Each store file's chunk ids, and its chunk size when every chunk
    // but the last has that size (what the local side is cut and cached
    // at); otherwise (parts of an S3 multipart upload) the local file is
    // cut where the store file's chunks end, uncached.
    let mut remote: HashMap<usize, StoreChunks> = HashMap::new();
    while let Some(joined) = stats.join_next().await {
        let (i, r) = joined.context("a stat task failed")?;
        if let Ok(info) = r {
            let uniform = info.chunks.split_last().is_none_or(|(last, rest)| {
                rest.iter().all(|c| c.size == info.chunk_size) && last.size <= info.chunk_size
            });
            let cuts = (!uniform).then(|| info.chunks.iter().map(|c| c.size).collect());
            remote.insert(
                i,
                (
                    info.chunk_size,
                    info.chunks.iter().map(|c| c.id).collect(),
                    cuts,
                ),
            );
        }
    }
    let mut out = Compared {
        same: 0,
        differ: Vec::new(),
        hashed: 0,
    };
    let hash_limit = Arc::new(tokio::sync::Semaphore::new(o.parallel.max(1)));
    let mut hashing = tokio::task::JoinSet::new();
    let mut waiting: HashMap<usize, Candidate> = HashMap::new();
    for (i, c) in cands.into_iter().enumerate() {
        let Some((chunk_size, ids, cuts)) = remote.remove(&i) else {
            out.differ.push(c);
            continue;
        };
        let cached = match &cuts {
            None => cache.get(&c.rel, c.stamp, chunk_size),
            Some(_) => None,
        };
        match cached {
            Some(local) if local == ids => out.same += 1,
            Some(_) => out.differ.push(c),
            None => {
                let path = c.local.clone();
                let limit = hash_limit.clone();
                let uniform = cuts.is_none();
                hashing.spawn(async move {
                    let _permit = limit.acquire_owned().await;
                    let r = tokio::task::spawn_blocking(move || match cuts {
                        None => chunk_ids(&path, chunk_size),
                        Some(cuts) => chunk_ids_cut(&path, &cuts),
                    })
                    .await;
                    (i, uniform.then_some(chunk_size), ids, r)
                });
                waiting.insert(i, c);
            }
        }
    }
    while let Some(joined) = hashing.join_next().await {
        let (i, cache_at, ids, r) = joined.context("a hashing task failed")?;
        let Some(c) = waiting.remove(&i) else {
            continue;
        };
        out.hashed += 1;
        match r {
            Ok(Ok(local)) => {
                // Only trusted if the file did not change while it was read.
                let still = std::fs::metadata(&c.local).map(|m| Stamp::of(&m)).ok();
                if let (Some(chunk_size), true) = (cache_at, still == Some(c.stamp)) {
                    cache.put(&c.rel, c.stamp, chunk_size, &local);
                }
                if local == ids && still == Some(c.stamp) {
                    out.same += 1;
                } else {
                    out.differ.push(c);
                }
            }
            _ => out.differ.push(c),
        }
    }
    Ok(out)
}

/// Removes `doomed` (store paths in `bucket` when `up`, else local
/// files), `parallel` at a time; returns the failures. A file already gone
/// counts as removed.
async fn delete(
    client: &Client,
    bucket: &str,
    up: bool,
    doomed: &[String],
    parallel: usize,
) -> Vec<(String, anyhow::Error)> {
    let limit = Arc::new(tokio::sync::Semaphore::new(parallel.max(1) * 4));
    let mut tasks = tokio::task::JoinSet::new();
    for d in doomed.iter().cloned() {
        let client = client.clone();
        let bucket = bucket.to_string();
        let limit = limit.clone();
        tasks.spawn(async move {
            let _permit = limit.acquire_owned().await;
            let r: anyhow::Result<()> = if up {
                match client.delete_file(&bucket, &d).await {
                    Err(e) if !e.is_not_found() => {
                        Err(e).with_context(|| format!("removing {bucket}/{d}"))
                    }
                    _ => Ok(()),
                }
            } else {
                match tokio::fs::remove_file(&d).await {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                        Err(e).with_context(|| format!("removing {d}"))
                    }
                    _ => Ok(()),
                }
            };
            let shown = if up { format!("{bucket}/{d}") } else { d };
            (shown, r)
        });
    }
    let mut failed = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok((d, Err(e))) => failed.push((d, e)),
            Ok((_, Ok(()))) => {}
            Err(e) => failed.push(("a removal".to_string(), anyhow::Error::new(e))),
        }
    }
    failed
}
