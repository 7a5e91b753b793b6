//! Moving bytes: `upload` (a local file or stdin), `download` (to a file,
//! a directory or stdout) and `cat`, with a progress bar on a terminal and
//! a summary on stderr.

use std::io::IsTerminal;
use std::time::Instant;

use anyhow::{bail, Context};
use blob_client::{Client, DownloadOptions, UploadOptions};

use crate::args::{download_destination, parse_file, upload_destination};
use crate::render::{finish, human, note, progress_bar, progress_fn};

pub(crate) async fn upload(
    client: &Client,
    local: &str,
    target: &str,
    mut opts: UploadOptions,
    quiet: bool,
) -> anyhow::Result<()> {
    let (bucket, path) = upload_destination(local, target)?;
    let started = Instant::now();
    let outcome = if local == "-" {
        let bar = progress_bar(quiet, None);
        opts.progress = bar.as_ref().map(progress_fn);
        let r = client
            .upload(tokio::io::stdin(), &bucket, &path, &opts)
            .await;
        finish(bar);
        r
    } else {
        let file = tokio::fs::File::open(local)
            .await
            .with_context(|| format!("opening {local}"))?;
        let meta = file
            .metadata()
            .await
            .with_context(|| format!("reading the metadata of {local}"))?;
        if meta.is_dir() {
            bail!("{local} is a directory");
        }
        let bar = progress_bar(quiet, Some(meta.len()));
        opts.progress = bar.as_ref().map(progress_fn);
        let r = client.upload(file, &bucket, &path, &opts).await;
        finish(bar);
        r
    }
    .with_context(|| format!("uploading {local} to {bucket}/{path}"))?;
    let secs = started.elapsed().as_secs_f64();
    note(
        quiet,
        format_args!(
            "uploaded {} in {secs:.1} s ({}/s), {} chunks sent, {} already stored",
            human(outcome.file.size),
            human((outcome.file.size as f64 / secs.max(0.001)) as u64),
            outcome.chunks_sent,
            outcome.chunks_skipped,
        ),
    );
    Ok(())
}

pub(crate) async fn download(
    client: &Client,
    target: &str,
    local: &str,
    parallel: usize,
    quiet: bool,
) -> anyhow::Result<()> {
    let (bucket, path) = parse_file(target)?;
    let started = Instant::now();
    let mut opts = DownloadOptions {
        parallel,
        progress: None,
    };
    let bar = if quiet || !std::io::stderr().is_terminal() {
        None
    } else {
        // One extra call for the total; only when a bar is shown.
        let size = client.stat(&bucket, &path).await.ok().map(|i| i.size);
        progress_bar(quiet, size)
    };
    opts.progress = bar.as_ref().map(progress_fn);
    let (result, to) = if local == "-" {
        let r = client
            .download(&bucket, &path, tokio::io::stdout(), &opts)
            .await
            .with_context(|| format!("downloading {bucket}/{path}"));
        (r, "stdout".to_string())
    } else {
        let dest = download_destination(local, &path);
        let r = client
            .download_to_path(&bucket, &path, &dest, &opts)
            .await
            .with_context(|| format!("downloading {bucket}/{path} to {}", dest.display()));
        (r, dest.display().to_string())
    };
    finish(bar);
    let info = result?;
    let secs = started.elapsed().as_secs_f64();
    note(
        quiet,
        format_args!(
            "downloaded {} in {secs:.1} s ({}/s) to {to}, {} chunks",
            human(info.size),
            human((info.size as f64 / secs.max(0.001)) as u64),
            info.chunks.len(),
        ),
    );
    Ok(())
}
