//! What a test reads back from a running cluster: node liveness, cluster
//! status and fsck through the namenode, chunk files on a datanode's disk,
//! and Prometheus metrics.

use std::time::Duration;

use anyhow::Result;
use blob_common::proto::namenode::ListNodes;

use crate::{wait_until, TestCluster};

impl TestCluster {
    /// Datanode liveness as the namenode sees it.
    pub async fn nodes(&self) -> Result<ListNodes> {
        Ok(self.client().list_nodes().await?)
    }

    /// Cluster status (nodes and chunk health).
    pub async fn status(&self) -> Result<blob_common::proto::namenode::ClusterStatus> {
        Ok(self.client().cluster_status().await?)
    }

    /// fsck of everything.
    pub async fn fsck(&self) -> Result<blob_common::proto::namenode::FsckReport> {
        Ok(self.client().fsck(&Default::default()).await?)
    }

    /// Waits until `n` datanodes are live.
    pub async fn wait_live(&self, n: usize, timeout: Duration) -> Result<()> {
        wait_until(&format!("{n} live datanodes"), timeout, || async {
            Ok(self
                .nodes()
                .await
                .ok()
                .is_some_and(|l| l.nodes.iter().filter(|s| s.state == "live").count() >= n))
        })
        .await
    }

    /// Chunk files on datanode `i`'s disk.
    pub fn chunk_files(&self, i: usize) -> usize {
        let dir = self.datanodes[i].data.join("chunks");
        std::fs::read_dir(&dir)
            .map(|d| {
                d.flatten()
                    .map(|sub| {
                        std::fs::read_dir(sub.path())
                            .map(|f| f.count())
                            .unwrap_or(0)
                    })
                    .sum()
            })
            .unwrap_or(0)
    }

    /// A metric's value on one service (sum over its label sets).
    pub async fn metric(&self, url: &str, name: &str) -> Result<f64> {
        let text = reqwest::get(format!("{url}/metrics"))
            .await?
            .error_for_status()?
            .text()
            .await?;
        Ok(metric_value(&text, name))
    }

    /// Sum of a metric over the datanodes that were not killed.
    pub async fn datanode_metric(&self, name: &str) -> Result<f64> {
        let mut sum = 0.0;
        let urls: Vec<String> = self
            .datanodes
            .iter()
            .filter(|d| d.is_started())
            .map(|d| d.url())
            .collect();
        for url in urls {
            sum += self.metric(&url, name).await?;
        }
        Ok(sum)
    }
}

/// Sum of every sample of metric `name` in Prometheus text.
pub fn metric_value(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|r| r.starts_with(' ') || r.starts_with('{'))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}
