//! Buckets: `mb` makes one, `rb` removes an empty one. (`ls` with no
//! argument lists them; see [`super::objects::ls`].)

use anyhow::Context;
use blob_client::Client;

use crate::render::note;

/// `mb BUCKET`.
pub(crate) async fn mb(client: &Client, bucket: &str, quiet: bool) -> anyhow::Result<()> {
    client
        .create_bucket(bucket)
        .await
        .with_context(|| format!("creating bucket {bucket}"))?;
    note(quiet, format_args!("created bucket {bucket}"));
    Ok(())
}

/// `rb BUCKET`.
pub(crate) async fn rb(client: &Client, bucket: &str, quiet: bool) -> anyhow::Result<()> {
    client
        .delete_bucket(bucket)
        .await
        .with_context(|| format!("removing bucket {bucket}"))?;
    note(quiet, format_args!("removed bucket {bucket}"));
    Ok(())
}
