//! Faults a test injects into a running cluster: SIGKILL and restart of
//! single services (each restarts on its data; the namenode on its port),
//! and a flipped byte in a stored chunk. Partitions are in `netns`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use blob_common::{ChunkId, NodeId};

use crate::TestCluster;

impl TestCluster {
    /// SIGKILLs datanode `i`.
    pub fn kill_datanode(&mut self, i: usize) {
        tracing::info!("--- kill datanode {i}");
        self.datanodes[i].kill();
    }

    /// Restarts datanode `i` on its port and data.
    pub fn restart_datanode(&mut self, i: usize) -> Result<()> {
        tracing::info!("--- restart datanode {i}");
        self.datanodes[i].kill();
        self.datanodes[i].start()
    }

    /// SIGKILLs the namenode.
    pub fn kill_namenode(&mut self) {
        tracing::info!("--- kill namenode");
        self.namenode.kill();
    }

    /// Restarts the namenode on its port and data, and waits until every
    /// running datanode heartbeats to it again.
    pub async fn restart_namenode(&mut self) -> Result<()> {
        tracing::info!("--- restart namenode");
        self.namenode.kill();
        self.namenode.start()?;
        let running = self
            .datanodes
            .iter_mut()
            .filter_map(|d| d.is_running().then_some(()))
            .count();
        self.wait_live(running, Duration::from_secs(30)).await
    }

    /// SIGKILLs edge `i`.
    pub fn kill_edge(&mut self, i: usize) {
        tracing::info!("--- kill edge {i}");
        self.edges[i].kill();
    }

    /// Restarts edge `i` on its port and data (with any flags added to its
    /// `command` meanwhile).
    pub fn restart_edge(&mut self, i: usize) -> Result<()> {
        tracing::info!("--- restart edge {i}");
        self.edges[i].kill();
        self.edges[i].start()
    }

    /// Datanode `i`'s node id.
    pub fn node_id(&self, i: usize) -> Result<NodeId> {
        Ok(blob_datanode::node_id(&self.datanodes[i].data)?)
    }

    /// Index of the datanode with this id.
    pub fn datanode_index(&self, id: &NodeId) -> Option<usize> {
        (0..self.datanodes.len()).find(|&i| self.node_id(i).ok().as_ref() == Some(id))
    }

    /// Path of a chunk's file on datanode `i`.
    pub fn chunk_file(&self, i: usize, id: &ChunkId) -> PathBuf {
        blob_datanode::chunk_path(&self.datanodes[i].data, id)
    }

    /// Flips one byte of a chunk's stored data on datanode `i`.
    pub fn corrupt_chunk(&self, i: usize, id: &ChunkId, offset: u64) -> Result<()> {
        use std::io::{Read, Seek, SeekFrom, Write};
        let path = self.chunk_file(i, id);
        let mut f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        f.seek(SeekFrom::Start(offset))?;
        let mut b = [0u8; 1];
        f.read_exact(&mut b)?;
        f.seek(SeekFrom::Start(offset))?;
        f.write_all(&[b[0] ^ 0xff])?;
        f.sync_all()?;
        Ok(())
    }
}
