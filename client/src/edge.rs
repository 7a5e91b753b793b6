//! Edge cache administration: the edges the namenode hands out, their
//! stats, and warming one with the chunks of every file under a prefix.
//!
//! A warm-up sends the edge the pre-signed GET URLs the namenode gave this
//! client for its zone; the edge verifies each one, so warming needs no
//! other credentials and grants nothing a reader did not have.

use blob_common::names::validate_bucket;
use blob_common::proto::edge::{EdgeStats, WarmChunk, WarmRequest, WarmResponse};
use blob_common::proto::namenode::{ListEdges, ListFilesQuery};
use blob_common::ChunkId;
use reqwest::{Method, Url};

use crate::error::Error;
use crate::namenode::error_from_response;
use crate::Client;

/// Chunks sent to an edge per warm request.
const WARM_BATCH: usize = 256;

/// What `warm_edge` did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct EdgeWarmReport {
    /// The edge's base URL.
    pub edge: String,
    /// Its zone.
    pub zone: String,
    /// Files found under the prefix.
    pub files: u64,
    /// Distinct chunks of those files.
    pub chunks: u64,
    /// Bytes of those chunks.
    pub bytes: u64,
    /// The edge's answers, added up.
    pub result: WarmResponse,
}

/// The base URL and the `t`/`s` parameters of a pre-signed chunk URL.
fn split_signed(url: &str) -> Option<(String, String, String)> {
    let parsed = Url::parse(url).ok()?;
    let mut t = None;
    let mut s = None;
    for (k, v) in parsed.query_pairs() {
        match &*k {
            "t" => t = Some(v.into_owned()),
            "s" => s = Some(v.into_owned()),
            _ => {}
        }
    }
    let base = url.split("/v1/chunks/").next()?.to_string();
    Some((base, t?, s?))
}

impl Client {
    /// The edges the namenode points readers at, with a grant to read
    /// their stats (admin keys only).
    pub async fn list_edges(&self) -> Result<ListEdges, Error> {
        Ok(self.nn(Method::GET, &["admin", "edges"]).decode().await?)
    }

    /// One edge's stats, with the grant from [`Client::list_edges`].
    pub async fn edge_stats(&self, edge_url: &str, grant: &str) -> Result<EdgeStats, Error> {
        let url = Url::parse(&format!(
            "{}/v1/admin/stats?{grant}",
            edge_url.trim_end_matches('/')
        ))
        .map_err(|e| Error::Config(format!("edge URL {edge_url:?}: {e}")))?;
        let resp = self
            .inner
            .edge_http
            .get(url.clone())
            .timeout(self.inner.cfg.request_timeout)
            .send()
            .await
            .map_err(|e| Error::transport(&url, e))?;
        if !resp.status().is_success() {
            return Err(error_from_response(resp, &url, &self.request_id()).await);
        }
        let bytes = resp.bytes().await.map_err(|e| Error::transport(&url, e))?;
        serde_json::from_slice(&bytes).map_err(|e| Error::protocol(&url, format!("bad JSON: {e}")))
    }

    /// Fills this client's edge (the one the namenode picks for its zone)
    /// with every chunk of every file under `bucket/prefix`.
    pub async fn warm_edge(&self, bucket: &str, prefix: &str) -> Result<EdgeWarmReport, Error> {
        validate_bucket(bucket)?;
        let client = self.scoped();
        let q = ListFilesQuery {
            prefix: (!prefix.is_empty()).then(|| prefix.to_string()),
            ..Default::default()
        };
        let listing = client.list_all(bucket, &q).await?;
        let mut report = EdgeWarmReport::default();
        let mut seen = std::collections::HashSet::<ChunkId>::new();
        let mut batch: Vec<WarmChunk> = Vec::new();
        for f in &listing.files {
            let locs = match client.locations(bucket, &f.path).await {
                Ok(l) => l,
                // Deleted since the listing.
                Err(e) if e.is_not_found() => continue,
                Err(e) => return Err(e),
            };
            report.files += 1;
            for c in locs.chunks {
                if !seen.insert(c.id) {
                    continue;
                }
                let Some(edge) = c.replicas.iter().find(|r| r.edge.is_some()) else {
                    return Err(Error::Config(
                        "the namenode hands out no edge for this zone: is an edge configured \
                         (blobd namenode --edge ZONE=URL)?"
                            .into(),
                    ));
                };
                let Some((base, t, s)) = split_signed(&edge.url) else {
                    return Err(Error::protocol(
                        &client.meta_url(&["file", "locations"], &[]),
                        "an edge URL without a signature",
                    ));
                };
                if report.edge.is_empty() {
                    report.edge = base;
                    report.zone = edge.edge.clone().unwrap_or_default();
                }
                report.chunks += 1;
                report.bytes += c.size;
                batch.push(WarmChunk { chunk: c.id, t, s });
                if batch.len() == WARM_BATCH {
                    client
                        .send_warm(&report.edge, std::mem::take(&mut batch), &mut report.result)
                        .await?;
                }
            }
        }
        if !batch.is_empty() {
            client
                .send_warm(&report.edge, batch, &mut report.result)
                .await?;
        }
        Ok(report)
    }

    async fn send_warm(
        &self,
        edge: &str,
        chunks: Vec<WarmChunk>,
        total: &mut WarmResponse,
    ) -> Result<(), Error> {
        let url = Url::parse(&format!("{}/v1/warm", edge.trim_end_matches('/')))
            .map_err(|e| Error::Config(format!("edge URL {edge:?}: {e}")))?;
        let body = serde_json::to_vec(&WarmRequest { chunks })
            .map_err(|e| Error::protocol(&url, format!("encoding: {e}")))?;
        let request_id = self.request_id();
        let resp = self
            .inner
            .edge_http
            .post(url.clone())
            .header(blob_common::REQUEST_ID, &request_id)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| Error::transport(&url, e))?;
        if !resp.status().is_success() {
            return Err(error_from_response(resp, &url, &request_id).await);
        }
        let bytes = resp.bytes().await.map_err(|e| Error::transport(&url, e))?;
        let r: WarmResponse = serde_json::from_slice(&bytes)
            .map_err(|e| Error::protocol(&url, format!("bad JSON: {e}")))?;
        total.requested += r.requested;
        total.cached += r.cached;
        total.filled += r.filled;
        total.failed += r.failed;
        for e in r.errors {
            if total.errors.len() < 10 {
                total.errors.push(e);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_urls_split_into_base_token_and_signature() {
        let id = ChunkId::of(b"x");
        let got = split_signed(&format!("http://127.0.0.1:9/v1/chunks/{id}?t=abc-_&s=0f"));
        assert_eq!(
            got,
            Some(("http://127.0.0.1:9".into(), "abc-_".into(), "0f".into()))
        );
        assert_eq!(split_signed("http://x/v1/chunks/y?t=a"), None);
        assert_eq!(split_signed("not a url"), None);
    }
}
