//! `cp SRC DST`: a local file or tree to the store, or a store file or
//! directory to the local disk. Trees (`-r`) go `parallel` files at a time
//! (each file's chunks in parallel too), with one progress bar, one
//! summary line, and an exit status that says whether any file failed.
//!
//! Which side is local: SRC is local when it exists on disk or starts with
//! `/`, `./` or `../`; DST is then the store (`BUCKET/PATH`). Otherwise
//! SRC is the store and DST a local path.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context};
use blob_client::{Client, DownloadOptions, UploadOptions};

use crate::args::parse_remote;
use crate::render::{finish, human, note, progress_bar};

/// How `cp` copies.
#[derive(Clone, Debug)]
pub(crate) struct CpOptions {
    /// Whole trees.
    pub(crate) recursive: bool,
    /// Files at once.
    pub(crate) parallel: usize,
    /// Chunk size and replication of uploaded files.
    pub(crate) upload: UploadOptions,
    /// No progress bar or summary.
    pub(crate) quiet: bool,
    /// Only print what would be copied (on stdout), copy nothing.
    pub(crate) dry_run: bool,
}

/// Whether `s` names a local path rather than `BUCKET/PATH`.
fn is_local(s: &str) -> bool {
    s == "-"
        || s.starts_with('/')
        || s.starts_with("./")
        || s.starts_with("../")
        || s == "."
        || s == ".."
        || Path::new(s).exists()
}

/// One file to copy: where from, where to, how big.
struct Job {
    /// Local path (upload) or store path (download).
    from: String,
    /// Store path (upload) or local path (download).
    to: String,
    size: u64,
}

pub(crate) async fn cp(client: &Client, src: &str, dst: &str, o: CpOptions) -> anyhow::Result<()> {
    let upload = is_local(src);
    if !o.recursive && !o.dry_run {
        return if upload {
            if Path::new(src).is_dir() {
                bail!("{src} is a directory: copy it with -r");
            }
            super::transfer::upload(client, src, dst, o.upload.clone(), o.quiet).await
        } else {
            super::transfer::download(client, src, dst, 8, o.quiet).await
        };
    }
    if upload {
        let root = PathBuf::from(src);
        let meta = std::fs::metadata(&root).with_context(|| format!("reading {src}"))?;
        if !o.recursive {
            if meta.is_dir() {
                bail!("{src} is a directory: copy it with -r");
            }
            let (bucket, path) = crate::args::upload_destination(src, dst)?;
            let job = Job {
                from: src.to_string(),
                to: path,
                size: meta.len(),
            };
            return run_jobs(client, &bucket, vec![job], true, &o, src).await;
        }
        if !meta.is_dir() {
            bail!("{src} is not a directory: -r copies directory trees");
        }
        let (bucket, prefix) = parse_remote(dst)?;
        let prefix = prefix.trim_end_matches('/').to_string();
        let walk_root = root.clone();
        let files = tokio::task::spawn_blocking(move || walk(&walk_root))
            .await
            .context("listing the local tree")??;
        let jobs = files
            .into_iter()
            .map(|(rel, size)| Job {
                from: root.join(&rel).display().to_string(),
                to: if prefix.is_empty() {
                    rel
                } else {
                    format!("{prefix}/{rel}")
                },
                size,
            })
            .collect();
        run_jobs(client, &bucket, jobs, true, &o, src).await
    } else {
        let (bucket, dir) = parse_remote(src)?;
        let dir = dir.trim_end_matches('/').to_string();
        if !o.recursive {
            let info = client
                .stat(&bucket, &dir)
                .await
                .with_context(|| format!("stat {src}"))?;
            let job = Job {
                to: crate::args::download_destination(dst, &dir)
                    .display()
                    .to_string(),
                from: dir,
                size: info.size,
            };
            return run_jobs(client, &bucket, vec![job], false, &o, src).await;
        }
        let list = super::objects::list_under(client, &bucket, &dir)
            .await
            .with_context(|| format!("listing {src}"))?;
        if list.is_empty() {
            return Err(crate::NotFound(format!("nothing under {src}")).into());
        }
        let root = PathBuf::from(dst);
        let jobs = list
            .into_iter()
            .map(|f| {
                let rel = if dir.is_empty() {
                    f.path.as_str()
                } else {
                    f.path
                        .strip_prefix(dir.as_str())
                        .map_or(f.path.as_str(), |r| r.trim_start_matches('/'))
                };
                // A file at exactly DIR keeps its name.
                let rel = if rel.is_empty() {
                    crate::args::last_segment(&f.path)
                } else {
                    rel
                };
                Job {
                    to: root.join(rel).display().to_string(),
                    from: f.path.clone(),
                    size: f.size,
                }
            })
            .collect();
        run_jobs(client, &bucket, jobs, false, &o, src).await
    }
}

/// Every regular file under `root`, as (`a/b/c` relative path, size), in
/// path order. Symbolic links are followed; other special files are
/// skipped with a warning.
fn walk(root: &Path) -> anyhow::Result<Vec<(String, u64)>> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let entries =
            std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))?;
        for entry in entries {
            let entry = entry.with_context(|| format!("reading {}", dir.display()))?;
            let path = entry.path();
            let meta =
                std::fs::metadata(&path).with_context(|| format!("reading {}", path.display()))?;
            if meta.is_dir() {
                stack.push(path);
                continue;
            }
            if !meta.is_file() {
                eprintln!("blobctl: skipping {}: not a regular file", path.display());
                continue;
            }
            let rel = path
                .strip_prefix(root)
                .with_context(|| format!("{} is outside {}", path.display(), root.display()))?;
            let parts: Option<Vec<&str>> =
                rel.components().map(|c| c.as_os_str().to_str()).collect();
            let Some(parts) = parts else {
                bail!(
                    "{}: the name is not UTF-8, so it cannot be a store path",
                    path.display()
                );
            };
            out.push((parts.join("/"), meta.len()));
        }
    }
    out.sort();
    Ok(out)
}

/// Runs the copies, `o.parallel` at a time; one summary line; an error
/// (exit status 1 when every failure was a missing file, else 2) when any
/// failed.
async fn run_jobs(
    client: &Client,
    bucket: &str,
    jobs: Vec<Job>,
    upload: bool,
    o: &CpOptions,
    src: &str,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let total: u64 = jobs.iter().map(|j| j.size).sum();
    let count = jobs.len();
    if o.dry_run {
        let mut out = std::io::stdout().lock();
        for j in &jobs {
            if upload {
                writeln!(out, "would upload {} to {bucket}/{}", j.from, j.to)
            } else {
                writeln!(out, "would download {bucket}/{} to {}", j.from, j.to)
            }
            .context("writing to stdout")?;
        }
        note(
            o.quiet,
            format_args!(
                "dry run: {count} file{} ({}) would be copied, nothing was",
                if count == 1 { "" } else { "s" },
                human(total)
            ),
        );
        return Ok(());
    }
    let bar = progress_bar(o.quiet, Some(total));
    let limit = Arc::new(tokio::sync::Semaphore::new(o.parallel.max(1)));
    let mut tasks = tokio::task::JoinSet::new();
    for job in jobs {
        let client = client.clone();
        let bucket = bucket.to_string();
        let limit = limit.clone();
        let opts = o.upload.clone();
        tasks.spawn(async move {
            let _permit = limit.acquire_owned().await;
            let r = copy_one(&client, &bucket, &job, upload, opts).await;
            (job, r)
        });
    }
    let mut done = 0u64;
    let mut sent = 0u64;
    let mut failed: Vec<(String, anyhow::Error)> = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        let (job, r) = joined.context("a copy task failed")?;
        match r {
            Ok(bytes_sent) => {
                done += job.size;
                sent += bytes_sent;
                if let Some(b) = &bar {
                    b.set_position(done);
                }
            }
            Err(e) => failed.push((job.from, e)),
        }
    }
    finish(bar);
    let secs = started.elapsed().as_secs_f64();
    let ok = count - failed.len();
    let verb = if upload { "uploaded" } else { "downloaded" };
    let extra = if upload {
        format!(", {} sent", human(sent))
    } else {
        String::new()
    };
    note(
        o.quiet,
        format_args!(
            "{verb} {ok} of {count} files ({}) in {secs:.1} s ({}/s){extra}",
            human(done),
            human((done as f64 / secs.max(0.001)) as u64),
        ),
    );
    if failed.is_empty() {
        return Ok(());
    }
    failed.sort_by(|a, b| a.0.cmp(&b.0));
    for (from, e) in failed.iter().take(10) {
        eprintln!("blobctl: {from}: {e:#}");
    }
    if failed.len() > 10 {
        eprintln!("blobctl: ... and {} more", failed.len() - 10);
    }
    let all_missing = failed.iter().all(|(_, e)| crate::is_not_found(e));
    let summary = format!(
        "{} of {count} files from {src} could not be copied",
        failed.len()
    );
    if all_missing {
        Err(crate::NotFound(summary).into())
    } else {
        bail!(summary)
    }
}

/// Copies one file; returns the bytes sent (uploads).
async fn copy_one(
    client: &Client,
    bucket: &str,
    job: &Job,
    upload: bool,
    opts: UploadOptions,
) -> anyhow::Result<u64> {
    if upload {
        let file = tokio::fs::File::open(&job.from)
            .await
            .with_context(|| format!("opening {}", job.from))?;
        let outcome = client
            .upload(file, bucket, &job.to, &opts)
            .await
            .with_context(|| format!("uploading to {bucket}/{}", job.to))?;
        return Ok(outcome.bytes_sent);
    }
    let dest = PathBuf::from(&job.to);
    if let Some(parent) = dest.parent().filter(|p| !p.as_os_str().is_empty()) {
        tokio::fs::create_dir_all(parent)
            .await
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    let dl = DownloadOptions {
        parallel: opts.parallel,
        progress: None,
    };
    client
        .download_to_path(bucket, &job.from, &dest, &dl)
        .await
        .with_context(|| format!("downloading {bucket}/{} to {}", job.from, dest.display()))?;
    Ok(0)
}
