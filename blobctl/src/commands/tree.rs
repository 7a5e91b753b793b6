//! What tree commands (`cp -r`, `sync`, `mv` of a directory) share: the
//! local walk, the list of file copies to make, and the runner that makes
//! them `parallel` at a time (each file's chunks in parallel too) behind
//! one aggregate progress bar (files, bytes, rate, ETA; on a terminal
//! only), then reports what went and what failed.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context};
use blob_client::{Client, CopyFile, DownloadOptions, FileInfo, UploadOptions};
use indicatif::ProgressBar;

use super::hashes::Stamp;
use crate::render::tree_bar;

/// What a job does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Op {
    /// A local file to the store.
    Upload,
    /// A store file to the local disk.
    Download,
    /// A store file to another store path, metadata only (the copy shares
    /// the chunks).
    Copy,
    /// A store file to another store path, the source removed: a rename
    /// within a bucket, a copy and a removal across buckets.
    Move,
}

/// One file to copy.
#[derive(Clone, Debug)]
pub(crate) struct Job {
    /// Local path (upload) or store path in the source bucket.
    pub(crate) from: String,
    /// Store path in the destination bucket, or local path (download).
    pub(crate) to: String,
    /// Path relative to the tree's root (for caches and messages).
    pub(crate) rel: String,
    /// Bytes.
    pub(crate) size: u64,
}

/// A batch of jobs of one kind between two places.
#[derive(Clone, Debug)]
pub(crate) struct Plan {
    pub(crate) op: Op,
    /// Bucket read from (download, copy, move).
    pub(crate) src_bucket: String,
    /// Bucket written to (upload, copy, move).
    pub(crate) dst_bucket: String,
    pub(crate) jobs: Vec<Job>,
}

impl Plan {
    /// `from` as the user sees it (`BUCKET/PATH` or the local path).
    pub(crate) fn source_of(&self, j: &Job) -> String {
        match self.op {
            Op::Upload => j.from.clone(),
            _ => format!("{}/{}", self.src_bucket, j.from),
        }
    }

    /// `to` as the user sees it.
    pub(crate) fn destination_of(&self, j: &Job) -> String {
        match self.op {
            Op::Download => j.to.clone(),
            _ => format!("{}/{}", self.dst_bucket, j.to),
        }
    }

    /// The dry run's line for each job, on stdout.
    pub(crate) fn print_dry_run(&self) -> anyhow::Result<()> {
        use std::io::Write;
        let verb = match self.op {
            Op::Upload => "upload",
            Op::Download => "download",
            Op::Copy => "copy",
            Op::Move => "move",
        };
        let mut out = std::io::stdout().lock();
        for j in &self.jobs {
            writeln!(
                out,
                "would {verb} {} to {}",
                self.source_of(j),
                self.destination_of(j)
            )
            .context("writing to stdout")?;
        }
        Ok(())
    }
}

/// How jobs run.
#[derive(Clone, Debug)]
pub(crate) struct RunOptions {
    /// Files at once.
    pub(crate) parallel: usize,
    /// Chunk size, replication and chunks in flight of uploads (the last
    /// also of downloads).
    pub(crate) upload: UploadOptions,
    /// No progress bar.
    pub(crate) quiet: bool,
}

/// What a run did.
#[derive(Debug, Default)]
pub(crate) struct Report {
    /// Jobs run.
    pub(crate) files: usize,
    /// Jobs that succeeded, with the store file each wrote or read.
    pub(crate) done: Vec<(Job, FileInfo)>,
    /// Bytes of the jobs that succeeded.
    pub(crate) bytes: u64,
    /// Bytes sent to datanodes (uploads: chunks the store lacked).
    pub(crate) bytes_sent: u64,
    /// Jobs that failed: the source as the user sees it, and why.
    pub(crate) failed: Vec<(String, anyhow::Error)>,
    /// Wall time.
    pub(crate) secs: f64,
}

impl Report {
    /// Prints the first failures and turns them into the command's error:
    /// exit status 1 when every failure was a missing file, else 2.
    pub(crate) fn into_result(mut self, what: &str) -> anyhow::Result<()> {
        if self.failed.is_empty() {
            return Ok(());
        }
        self.failed.sort_by(|a, b| a.0.cmp(&b.0));
        for (from, e) in self.failed.iter().take(10) {
            eprintln!("blobctl: {from}: {e:#}");
        }
        if self.failed.len() > 10 {
            eprintln!("blobctl: ... and {} more", self.failed.len() - 10);
        }
        let all_missing = self.failed.iter().all(|(_, e)| crate::is_not_found(e));
        let summary = format!(
            "{} of {} files {what} failed",
            self.failed.len(),
            self.files
        );
        if all_missing {
            Err(crate::NotFound(summary).into())
        } else {
            bail!(summary)
        }
    }
}

/// Runs `plan`'s jobs, `o.parallel` at a time, behind one progress bar.
pub(crate) async fn run(client: &Client, plan: &Plan, o: &RunOptions) -> anyhow::Result<Report> {
    let started = Instant::now();
    let total: u64 = plan.jobs.iter().map(|j| j.size).sum();
    let files = plan.jobs.len();
    let bar = tree_bar(o.quiet, files, total);
    let limit = Arc::new(tokio::sync::Semaphore::new(o.parallel.max(1)));
    let mut tasks = tokio::task::JoinSet::new();
    for job in plan.jobs.iter().cloned() {
        let client = client.clone();
        let plan_op = plan.op;
        let src_bucket = plan.src_bucket.clone();
        let dst_bucket = plan.dst_bucket.clone();
        let limit = limit.clone();
        let opts = o.upload.clone();
        let bar = bar.clone();
        tasks.spawn(async move {
            let _permit = limit.acquire_owned().await;
            let counted = Arc::new(AtomicU64::new(0));
            let progress = bar.as_ref().map(|b| {
                let b = b.clone();
                let counted = counted.clone();
                let f: blob_client::ProgressFn = Arc::new(move |done| {
                    let prev = counted.swap(done, Ordering::Relaxed);
                    if done >= prev {
                        b.inc(done - prev);
                    } else {
                        b.dec(prev - done);
                    }
                });
                f
            });
            let r = one(
                &client,
                plan_op,
                &src_bucket,
                &dst_bucket,
                &job,
                opts,
                progress,
            )
            .await;
            if let Some(b) = &bar {
                let counted = counted.load(Ordering::Relaxed);
                match &r {
                    Ok(_) => b.inc(job.size.saturating_sub(counted)),
                    Err(_) => {
                        b.dec(counted);
                        b.dec_length(job.size);
                    }
                }
            }
            (job, r)
        });
    }
    let mut report = Report {
        files,
        ..Report::default()
    };
    while let Some(joined) = tasks.join_next().await {
        let (job, r) = joined.context("a copy task failed")?;
        match r {
            Ok((info, sent)) => {
                report.bytes += job.size;
                report.bytes_sent += sent;
                report.done.push((job, info));
            }
            Err(e) => report.failed.push((plan.source_of(&job), e)),
        }
        if let Some(b) = &bar {
            set_files(b, report.done.len() + report.failed.len(), files);
        }
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    report.secs = started.elapsed().as_secs_f64();
    Ok(report)
}

fn set_files(bar: &ProgressBar, done: usize, of: usize) {
    bar.set_message(format!("{done}/{of} files"));
}

/// Runs one job; returns the store file written or read, and the bytes
/// sent to datanodes.
async fn one(
    client: &Client,
    op: Op,
    src_bucket: &str,
    dst_bucket: &str,
    job: &Job,
    mut opts: UploadOptions,
    progress: Option<blob_client::ProgressFn>,
) -> anyhow::Result<(FileInfo, u64)> {
    match op {
        Op::Upload => {
            let file = tokio::fs::File::open(&job.from)
                .await
                .with_context(|| format!("opening {}", job.from))?;
            opts.progress = progress;
            let outcome = client
                .upload(file, dst_bucket, &job.to, &opts)
                .await
                .with_context(|| format!("uploading to {dst_bucket}/{}", job.to))?;
            Ok((outcome.file, outcome.bytes_sent))
        }
        Op::Download => {
            let dest = PathBuf::from(&job.to);
            if let Some(parent) = dest.parent().filter(|p| !p.as_os_str().is_empty()) {
                tokio::fs::create_dir_all(parent)
                    .await
                    .with_context(|| format!("creating {}", parent.display()))?;
            }
            let dl = DownloadOptions {
                parallel: opts.parallel,
                progress,
            };
            let info = client
                .download_to_path(src_bucket, &job.from, &dest, &dl)
                .await
                .with_context(|| {
                    format!(
                        "downloading {src_bucket}/{} to {}",
                        job.from,
                        dest.display()
                    )
                })?;
            Ok((info, 0))
        }
        Op::Copy => Ok((
            copy_file(client, src_bucket, &job.from, dst_bucket, &job.to).await?,
            0,
        )),
        Op::Move => {
            if src_bucket == dst_bucket {
                let info = client
                    .rename(src_bucket, &job.from, &job.to)
                    .await
                    .with_context(|| {
                        format!(
                            "renaming {src_bucket}/{} to {dst_bucket}/{}",
                            job.from, job.to
                        )
                    })?;
                return Ok((info, 0));
            }
            let info = copy_file(client, src_bucket, &job.from, dst_bucket, &job.to).await?;
            client
                .delete_file(src_bucket, &job.from)
                .await
                .with_context(|| {
                    format!(
                        "removing {src_bucket}/{} after copying it to {dst_bucket}/{}",
                        job.from, job.to
                    )
                })?;
            Ok((info, 0))
        }
    }
}

/// The namenode's metadata-only copy.
async fn copy_file(
    client: &Client,
    src_bucket: &str,
    from: &str,
    dst_bucket: &str,
    to: &str,
) -> anyhow::Result<FileInfo> {
    let req = CopyFile {
        src_bucket: src_bucket.to_string(),
        src_path: from.to_string(),
        bucket: dst_bucket.to_string(),
        path: to.to_string(),
        meta: None,
        src_version: None,
    };
    client
        .copy_file(&req)
        .await
        .with_context(|| format!("copying {src_bucket}/{from} to {dst_bucket}/{to}"))
}

/// A regular file found under a local root.
#[derive(Clone, Debug)]
pub(crate) struct LocalFile {
    /// `a/b/c`, relative to the root.
    pub(crate) rel: String,
    pub(crate) stamp: Stamp,
}

/// Every regular file under `root`, in path order. Symbolic links are
/// followed; other special files are skipped with a warning. Blocking.
pub(crate) fn walk(root: &Path) -> anyhow::Result<Vec<LocalFile>> {
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
            out.push(LocalFile {
                rel: parts.join("/"),
                stamp: Stamp::of(&meta),
            });
        }
    }
    out.sort_by(|a, b| a.rel.cmp(&b.rel));
    Ok(out)
}

/// [`walk`] off the async runtime.
pub(crate) async fn walk_async(root: &Path) -> anyhow::Result<Vec<LocalFile>> {
    let root = root.to_path_buf();
    tokio::task::spawn_blocking(move || walk(&root))
        .await
        .context("listing the local tree")?
}

/// `prefix/rel`, or `rel` at the bucket's root.
pub(crate) fn join_remote(prefix: &str, rel: &str) -> String {
    if prefix.is_empty() {
        rel.to_string()
    } else {
        format!("{prefix}/{rel}")
    }
}

/// The path of `path` below the store directory `dir` (which has no
/// trailing `/`; empty for the bucket's root); `None` for a file at
/// exactly `dir`.
pub(crate) fn rel_under<'a>(dir: &str, path: &'a str) -> Option<&'a str> {
    if dir.is_empty() {
        return Some(path);
    }
    path.strip_prefix(dir)?
        .strip_prefix('/')
        .filter(|r| !r.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_paths_join_and_split() {
        assert_eq!(join_remote("", "a/b"), "a/b");
        assert_eq!(join_remote("up", "a/b"), "up/a/b");
        assert_eq!(rel_under("", "a/b"), Some("a/b"));
        assert_eq!(rel_under("up", "up/a/b"), Some("a/b"));
        assert_eq!(rel_under("up", "up"), None);
        assert_eq!(rel_under("up", "upper/x"), None);
    }
}
