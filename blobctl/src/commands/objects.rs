//! Looking at and changing files: `ls` (buckets, or one level or all of
//! a prefix), `stat`, `rm`, `mv`.

use std::io::Write;

use anyhow::Context;
use blob_client::{Client, ListFilesQuery};

use crate::args::{parse_file, parse_move, parse_remote};
use crate::render::{format_date, format_rfc3339, human, note};

pub(crate) async fn ls(
    client: &Client,
    target: Option<&str>,
    recursive: bool,
    json: bool,
) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    let Some(target) = target else {
        let list = client.list_buckets().await.context("listing buckets")?;
        if json {
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
    let query = ListFilesQuery {
        prefix: (!prefix.is_empty()).then(|| prefix.clone()),
        delimiter: (!recursive).then(|| "/".to_string()),
        ..ListFilesQuery::default()
    };
    let list = client
        .list_all(&bucket, &query)
        .await
        .with_context(|| format!("listing {target}"))?;
    if json {
        writeln!(out, "{}", serde_json::to_string_pretty(&list)?).context("writing to stdout")?;
        return Ok(());
    }
    // Like `aws s3 ls`: one level shows names relative to the prefix's
    // directory; a recursive listing shows full paths.
    let base = if recursive {
        ""
    } else {
        prefix.rfind('/').map_or("", |i| &prefix[..=i])
    };
    let rel = |p: &str| p.strip_prefix(base).unwrap_or(p).to_string();
    for p in &list.common_prefixes {
        writeln!(out, "{:>32} {}", "PRE", rel(p)).context("writing to stdout")?;
    }
    for f in &list.files {
        writeln!(
            out,
            "{} {:>12} {}",
            format_date(f.created_ms),
            f.size,
            rel(&f.path)
        )
        .context("writing to stdout")?;
    }
    Ok(())
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
        info.path,
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

/// `mv BUCKET/FROM BUCKET/TO`: the namenode's atomic rename.
pub(crate) async fn mv(client: &Client, from: &str, to: &str, quiet: bool) -> anyhow::Result<()> {
    let (bucket, from_path, to_path) = parse_move(from, to)?;
    client
        .rename(&bucket, &from_path, &to_path)
        .await
        .with_context(|| format!("renaming {bucket}/{from_path} to {bucket}/{to_path}"))?;
    note(
        quiet,
        format_args!("renamed {bucket}/{from_path} to {bucket}/{to_path}"),
    );
    Ok(())
}
