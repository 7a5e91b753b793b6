//! The namenode's operations, one file per family. Each is a synchronous
//! function over the metadata store, called from a blocking task: it takes
//! the write lock for the read-modify-write, writes one batch, releases the
//! lock, and only then syncs the WAL when the change must be durable before
//! it is acknowledged.
//!
//! - [`buckets`]: create, look up, list, delete.
//! - [`files`]: stat, list, delete, rename, copy.
//! - [`uploads`]: upload sessions from plan to commit or abort.
//! - [`multipart`]: S3 multipart uploads on top of sessions.
//! - [`replicas`]: read locations, receipts, chunk reports, corrupt replicas.
//! - [`datanodes`]: heartbeats, the node list, decommission.
//! - [`admin`]: access keys, edges, status, fsck, metrics.

mod admin;
mod buckets;
mod datanodes;
mod files;
mod multipart;
mod replicas;
mod uploads;
pub(crate) mod versions;

pub(crate) use datanodes::load_nodes;

use crate::Namenode;

impl Namenode {
    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, ()> {
        // A panic while holding the lock cannot leave a half-written batch
        // (batches are atomic), so a poisoned lock is safe to reuse.
        self.write_lock.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn nodes_read(&self) -> std::sync::RwLockReadGuard<'_, crate::nodes::Nodes> {
        self.nodes.read().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn nodes_write(&self) -> std::sync::RwLockWriteGuard<'_, crate::nodes::Nodes> {
        self.nodes.write().unwrap_or_else(|p| p.into_inner())
    }
}
