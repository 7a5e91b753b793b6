//! Looking at and changing files: `ls` (buckets, or one level or all of
//! a prefix, or what a pattern matches), `du`, `find`, `stat`, `rm` (one
//! file or a whole directory).

use std::collections::{BTreeMap, BTreeSet};
use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{bail, Context};
use blob_client::{Client, FileEntry, ListFiles, ListFilesQuery};
use serde::Serialize;

use crate::args::{glob_base, is_glob, last_segment, parse_file, parse_remote, path_glob};
use crate::render::{escape, format_date, format_rfc3339, human, note, render_table};
use crate::NotFound;

/// How `ls` shows its answer.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct LsOptions {
    /// Every file under the prefix, not one level.
    pub(crate) recursive: bool,
    /// Sizes as `1.5 MiB`.
    pub(crate) human: bool,
    /// A table with a header, versions and ETags.
    pub(crate) long: bool,
    /// One JSON document.
    pub(crate) json: bool,
}

pub(crate) async fn ls(client: &Client, target: Option<&str>, o: LsOptions) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    let Some(target) = target else {
        let list = client.list_buckets().await.context("listing buckets")?;
        if o.json {
            writeln!(out, "{}", serde_json::to_string_pretty(&list)?)
                .context("writing to stdout")?;
        } else {
            for b in &list.buckets {
                writeln!(out, "{} {}", format_date(b.created_ms), b.name)
                    .context("writing to stdout")?;
            }
        }
        return Ok(());
    };
    let (bucket, prefix) = parse_remote(target)?;
    let (list, base) = if is_glob(&prefix) {
        let list = list_glob(client, &bucket, &prefix, o.recursive)
            .await
            .with_context(|| format!("listing {target}"))?;
        if list.files.is_empty() && list.common_prefixes.is_empty() {
            return Err(NotFound(format!("nothing matches {target}")).into());
        }
        (list, if o.recursive { "" } else { glob_base(&prefix) })
    } else {
        let query = ListFilesQuery {
            prefix: (!prefix.is_empty()).then(|| prefix.clone()),
            delimiter: (!o.recursive).then(|| "/".to_string()),
            ..ListFilesQuery::default()
        };
        let list = client
            .list_all(&bucket, &query)
            .await
            .with_context(|| format!("listing {target}"))?;
        if !prefix.is_empty() && list.files.is_empty() && list.common_prefixes.is_empty() {
            return Err(NotFound(format!("nothing under {target}")).into());
        }
        // Like `aws s3 ls`: one level shows names relative to the prefix's
        // directory; a recursive listing shows full paths.
        let base = if o.recursive {
            ""
        } else {
            prefix.rfind('/').map_or("", |i| &prefix[..=i])
        };
        (list, base)
    };
    if o.json {
        writeln!(out, "{}", serde_json::to_string_pretty(&list)?).context("writing to stdout")?;
        return Ok(());
    }
    let rel = |p: &str| escape(p.strip_prefix(base).unwrap_or(p));
    let size = |n: u64| if o.human { human(n) } else { n.to_string() };
    if o.long {
        let mut rows: Vec<Vec<String>> = list
            .common_prefixes
            .iter()
            .map(|p| vec!["-".into(), "-".into(), "-".into(), "-".into(), rel(p)])
            .collect();
        rows.extend(list.files.iter().map(|f| {
            vec![
                format_date(f.created_ms),
                size(f.size),
                f.version.to_string(),
                f.etag.clone().unwrap_or_else(|| "-".into()),
                rel(&f.path),
            ]
        }));
        let table = render_table(
            &["MODIFIED", "SIZE", "VERSION", "ETAG", "PATH"],
            &[false, true, false, false, false],
            &rows,
        );
        out.write_all(table.as_bytes())
            .context("writing to stdout")?;
        return Ok(());
    }
    for p in &list.common_prefixes {
        writeln!(out, "{:>32} {}", "PRE", rel(p)).context("writing to stdout")?;
    }
    for f in &list.files {
        writeln!(
            out,
            "{} {:>12} {}",
            format_date(f.created_ms),
            size(f.size),
            rel(&f.path)
        )
        .context("writing to stdout")?;
    }
    Ok(())
}

/// The files (and, one level deep, the directories) matching `pattern`:
/// everything under its literal directory is listed and matched here.
/// Recursive: files under a matching directory too.
pub(crate) async fn list_glob(
    client: &Client,
    bucket: &str,
    pattern: &str,
    recursive: bool,
) -> anyhow::Result<ListFiles> {
    let matcher = path_glob(pattern)?;
    let base = glob_base(pattern);
    let query = ListFilesQuery {
        prefix: (!base.is_empty()).then(|| base.to_string()),
        ..ListFilesQuery::default()
    };
    let all = client.list_all(bucket, &query).await?;
    let mut dirs: BTreeSet<String> = BTreeSet::new();
    let mut files = Vec::new();
    for f in all.files {
        // The directories above the file, below the pattern's base.
        let matched_dir = f
            .path
            .match_indices('/')
            .map(|(i, _)| &f.path[..i])
            .filter(|d| d.len() >= base.len())
            .find(|d| matcher.is_match(d))
            .map(|d| format!("{d}/"));
        if matcher.is_match(&f.path) {
            files.push(f);
        } else if let Some(d) = matched_dir {
            if recursive {
                files.push(f);
            } else {
                dirs.insert(d);
            }
        }
    }
    Ok(ListFiles {
        files,
        common_prefixes: dirs.into_iter().collect(),
        next_start_after: None,
    })
}

/// `(bucket, dir)` of a `BUCKET[/DIR]` argument, without a trailing `/`.
fn parse_dir(target: &str) -> anyhow::Result<(String, String)> {
    let (bucket, dir) = parse_remote(target)?;
    if is_glob(&dir) {
        bail!("{target}: expected BUCKET[/DIR]; patterns work in `ls` (and `find --name`)");
    }
    Ok((bucket, dir.trim_end_matches('/').to_string()))
}

/// Every file under `dir` (and a file at exactly `dir`); the whole bucket
/// when `dir` is empty. Unlike `ls`'s prefix, `a/b` never takes in `a/bc`.
pub(crate) async fn list_under(
    client: &Client,
    bucket: &str,
    dir: &str,
) -> anyhow::Result<Vec<FileEntry>> {
    let query = ListFilesQuery {
        prefix: (!dir.is_empty()).then(|| dir.to_string()),
        ..ListFilesQuery::default()
    };
    let list = client.list_all(bucket, &query).await?;
    Ok(list
        .files
        .into_iter()
        .filter(|f| {
            dir.is_empty()
                || f.path == dir
                || f.path.strip_prefix(dir).is_some_and(|r| r.starts_with('/'))
        })
        .collect())
}

/// Bytes and files under one directory.
#[derive(Clone, Debug, Default, Serialize)]
struct Usage {
    path: String,
    bytes: u64,
    files: u64,
}

/// `du [-h] [-s] [--json] BUCKET[/DIR]`: totals per directory (each
/// counting everything below it), then the total.
pub(crate) async fn du(
    client: &Client,
    target: &str,
    summarize: bool,
    human_sizes: bool,
    json: bool,
) -> anyhow::Result<()> {
    let (bucket, dir) = parse_dir(target)?;
    let files = list_under(client, &bucket, &dir)
        .await
        .with_context(|| format!("listing {target}"))?;
    if files.is_empty() && !dir.is_empty() {
        return Err(NotFound(format!("nothing under {target}")).into());
    }
    let root = if dir.is_empty() {
        bucket.clone()
    } else {
        format!("{bucket}/{dir}")
    };
    let mut total = Usage {
        path: root,
        ..Usage::default()
    };
    let mut per_dir: BTreeMap<String, Usage> = BTreeMap::new();
    for f in &files {
        total.bytes += f.size;
        total.files += 1;
        for (i, _) in f.path.match_indices('/') {
            let d = &f.path[..i];
            if d.len() <= dir.len() {
                continue;
            }
            let u = per_dir.entry(d.to_string()).or_insert_with(|| Usage {
                path: format!("{bucket}/{d}/"),
                ..Usage::default()
            });
            u.bytes += f.size;
            u.files += 1;
        }
    }
    let mut out = std::io::stdout().lock();
    if json {
        let mut doc = serde_json::json!({
            "path": total.path,
            "bytes": total.bytes,
            "files": total.files,
        });
        if !summarize {
            doc["directories"] = serde_json::to_value(per_dir.values().collect::<Vec<_>>())?;
        }
        writeln!(out, "{}", serde_json::to_string_pretty(&doc)?).context("writing to stdout")?;
        return Ok(());
    }
    let size = |n: u64| if human_sizes { human(n) } else { n.to_string() };
    let rows: Vec<&Usage> = if summarize {
        vec![&total]
    } else {
        per_dir.values().chain(std::iter::once(&total)).collect()
    };
    for u in rows {
        let files = if u.files == 1 { "file" } else { "files" };
        writeln!(
            out,
            "{:>12}  {:>8} {files:<5}  {}",
            size(u.bytes),
            u.files,
            escape(&u.path)
        )
        .context("writing to stdout")?;
    }
    Ok(())
}

/// `find BUCKET[/DIR] [--name GLOB] [--newer T] [--json]`; exit status 1
/// when nothing matches.
pub(crate) async fn find(
    client: &Client,
    target: &str,
    name: Option<&str>,
    newer_ms: Option<u64>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let (bucket, dir) = parse_dir(target)?;
    let matcher = name.map(path_glob).transpose()?;
    let files = list_under(client, &bucket, &dir)
        .await
        .with_context(|| format!("listing {target}"))?;
    if files.is_empty() && !dir.is_empty() {
        return Err(NotFound(format!("nothing under {target}")).into());
    }
    let found: Vec<FileEntry> = files
        .into_iter()
        .filter(|f| {
            matcher
                .as_ref()
                .is_none_or(|m| m.is_match(last_segment(&f.path)))
        })
        .filter(|f| newer_ms.is_none_or(|t| f.created_ms > t))
        .collect();
    let mut out = std::io::stdout().lock();
    if json {
        let doc = serde_json::json!({ "bucket": bucket, "files": found });
        writeln!(out, "{}", serde_json::to_string_pretty(&doc)?).context("writing to stdout")?;
    } else {
        for f in &found {
            writeln!(out, "{bucket}/{}", escape(&f.path)).context("writing to stdout")?;
        }
    }
    Ok(if found.is_empty() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

pub(crate) async fn stat(client: &Client, target: &str, json: bool) -> anyhow::Result<()> {
    let (bucket, path) = parse_file(target)?;
    let info = client
        .stat(&bucket, &path)
        .await
        .with_context(|| format!("stat {target}"))?;
    let mut out = std::io::stdout().lock();
    if json {
        writeln!(out, "{}", serde_json::to_string_pretty(&info)?).context("writing to stdout")?;
        return Ok(());
    }
    let text = format!(
        "path:        {}/{}\nsize:        {} ({})\nchunks:      {} (chunk size {})\n\
         replication: {}\nversion:     {}\ncreated:     {}\n",
        info.bucket,
        escape(&info.path),
        info.size,
        human(info.size),
        info.chunks.len(),
        human(info.chunk_size),
        info.replication,
        info.version,
        format_rfc3339(info.created_ms),
    );
    out.write_all(text.as_bytes())
        .context("writing to stdout")?;
    for (k, v) in &info.meta {
        writeln!(out, "meta:        {k}: {v}").context("writing to stdout")?;
    }
    Ok(())
}

/// `rm BUCKET/PATH`.
pub(crate) async fn rm(client: &Client, target: &str, quiet: bool) -> anyhow::Result<()> {
    let (bucket, path) = parse_file(target)?;
    client
        .delete_file(&bucket, &path)
        .await
        .with_context(|| format!("removing {target}"))?;
    note(quiet, format_args!("removed {bucket}/{path}"));
    Ok(())
}

/// `rm -r [-f] BUCKET[/DIR]`: counts the files, asks on a terminal unless
/// `force`, removes `parallel` at a time, and prints how many went.
pub(crate) async fn rm_recursive(
    client: &Client,
    target: &str,
    force: bool,
    parallel: usize,
    quiet: bool,
) -> anyhow::Result<()> {
    let (bucket, dir) = parse_dir(target)?;
    let files = list_under(client, &bucket, &dir)
        .await
        .with_context(|| format!("listing {target}"))?;
    if files.is_empty() {
        return Err(NotFound(format!("nothing under {target}")).into());
    }
    let bytes: u64 = files.iter().map(|f| f.size).sum();
    let what = format!(
        "{} file{} ({}) under {target}",
        files.len(),
        if files.len() == 1 { "" } else { "s" },
        human(bytes)
    );
    if !force && std::io::stdin().is_terminal() && std::io::stderr().is_terminal() {
        let question = format!("remove {what}? [y/N] ");
        let answer = tokio::task::spawn_blocking(move || {
            eprint!("{question}");
            let mut line = String::new();
            std::io::stdin().read_line(&mut line).map(|_| line)
        })
        .await
        .context("asking for confirmation")?
        .context("reading the answer")?;
        if !matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes") {
            note(quiet, format_args!("nothing removed"));
            return Ok(());
        }
    }
    let limit = Arc::new(tokio::sync::Semaphore::new(parallel.max(1)));
    let mut tasks = tokio::task::JoinSet::new();
    for f in files {
        let client = client.clone();
        let bucket = bucket.clone();
        let limit = limit.clone();
        tasks.spawn(async move {
            let _permit = limit.acquire_owned().await;
            let r = client.delete_file(&bucket, &f.path).await;
            (f.path, r)
        });
    }
    let mut removed = 0usize;
    let mut failed: Vec<(String, blob_client::Error)> = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        let (path, r) = joined.context("a removal task failed")?;
        match r {
            // Gone already (removed by someone else meanwhile): as asked.
            Ok(()) => removed += 1,
            Err(e) if e.is_not_found() => removed += 1,
            Err(e) => failed.push((path, e)),
        }
    }
    if failed.is_empty() {
        note(quiet, format_args!("removed {what}"));
        return Ok(());
    }
    failed.sort_by(|a, b| a.0.cmp(&b.0));
    for (path, e) in failed.iter().take(10) {
        eprintln!("blobctl: removing {bucket}/{path}: {e}");
    }
    bail!(
        "{} of {} files under {target} could not be removed ({removed} removed)",
        failed.len(),
        failed.len() + removed
    )
}
