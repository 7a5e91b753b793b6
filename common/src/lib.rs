//! Shared vocabulary of the blob store: ids, checksums, the pre-signed URL
//! scheme, request signing, wire types and the JSON error body.
//!
//! Every service and the client depend on this crate and on nothing of each
//! other: the namenode and the datanode agree only through [`proto`]. A JSON
//! shape or a canonical string to sign is therefore written exactly once,
//! here. It has no HTTP server or client code (services share theirs in
//! `blob-server`, callers of the namenode use `blob-rpc`), so every crate
//! can depend on it cheaply. It never does I/O beyond what its helpers are
//! asked to do (writing a private file; installing a tracing subscriber,
//! with the `telemetry` feature).
#![warn(missing_docs)]

pub mod aligned;
pub mod auth;
pub mod checksum;
pub mod chunkfile;
pub mod error;
pub mod ids;
pub mod names;
pub mod presign;
pub mod proto;
pub mod seal;
#[cfg(feature = "telemetry")]
pub mod telemetry;

pub use ids::{new_request_id, ChunkId, NodeId, UploadId, REQUEST_ID};

/// Milliseconds since the Unix epoch, the one clock every record uses.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Writes a file only its owner can read (mode 0600), durably: a temp file
/// beside it, fsynced, then renamed into place. For secrets and
/// credentials.
pub fn write_private(path: &std::path::Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(data)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// Seconds since the Unix epoch (pre-signed URL expiry, request dates).
pub fn now_secs() -> u64 {
    now_ms() / 1000
}

/// Parses `500ms`, `6s`, `2m`, `1h`, or plain seconds.
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("invalid duration {s:?}: expected e.g. 500ms, 6s, 2m"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "" | "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("invalid duration unit in {s:?}: use ms, s, m or h")),
    };
    if !secs.is_finite() || secs < 0.0 {
        return Err(format!("invalid duration {s:?}"));
    }
    Ok(std::time::Duration::from_secs_f64(secs))
}
