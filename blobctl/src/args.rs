//! Parsers for what users type: sizes (`8MiB`), remote paths
//! (`BUCKET/PATH`), where an upload or download lands, node ids.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail};
use blob_client::config::{MAX_CHUNK_SIZE, MIN_CHUNK_SIZE};
use blob_client::NodeId;

use crate::render::human;

/// Parses a size: plain bytes or a number with a unit. `K`, `Ki`, `KiB`
/// (and M, G, T alike) are powers of 1024; `KB`, `MB`, `GB`, `TB` powers
/// of 1000. Units are case-insensitive.
pub(crate) fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    if num.is_empty() {
        return Err(format!("invalid size {s:?}: expected a number, e.g. 8MiB"));
    }
    let n: u64 = num
        .parse()
        .map_err(|_| format!("invalid size {s:?}: number too large"))?;
    let unit = unit.trim().to_ascii_lowercase();
    let mult: u64 = match unit.as_str() {
        "" | "b" => 1,
        "k" | "ki" | "kib" => 1 << 10,
        "m" | "mi" | "mib" => 1 << 20,
        "g" | "gi" | "gib" => 1 << 30,
        "t" | "ti" | "tib" => 1 << 40,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        _ => {
            return Err(format!(
                "invalid size {s:?}: unknown unit {unit:?} (use B, KiB, MiB, GiB, KB, MB, GB)"
            ))
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("invalid size {s:?}: too large"))
}

/// [`parse_size`] within the chunk size bounds.
pub(crate) fn parse_chunk_size(s: &str) -> Result<u64, String> {
    let n = parse_size(s)?;
    if !(MIN_CHUNK_SIZE..=MAX_CHUNK_SIZE).contains(&n) {
        return Err(format!(
            "chunk size {} is out of range: it must be between 64 KiB and 256 MiB",
            human(n)
        ));
    }
    Ok(n)
}

/// Splits `BUCKET[/PATH]`; the path may be empty.
pub(crate) fn parse_remote(s: &str) -> anyhow::Result<(String, String)> {
    let (bucket, path) = s.split_once('/').unwrap_or((s, ""));
    if bucket.is_empty() {
        bail!("expected BUCKET/PATH, got {s:?}: the bucket is missing");
    }
    Ok((bucket.to_string(), path.to_string()))
}

/// Splits `BUCKET/PATH`, both required.
pub(crate) fn parse_file(s: &str) -> anyhow::Result<(String, String)> {
    let (bucket, path) = parse_remote(s)?;
    if path.is_empty() {
        bail!("expected BUCKET/PATH, got {s:?}: the path is missing");
    }
    Ok((bucket, path))
}

/// `mv` arguments: same bucket; a destination ending in `/` keeps the name.
pub(crate) fn parse_move(from: &str, to: &str) -> anyhow::Result<(String, String, String)> {
    let (bucket, from_path) = parse_file(from)?;
    let (to_bucket, mut to_path) = parse_remote(to)?;
    if to_bucket != bucket {
        bail!(
            "mv works inside one bucket ({bucket} vs {to_bucket}): \
             download and upload to copy across buckets"
        );
    }
    if to_path.is_empty() || to_path.ends_with('/') {
        to_path.push_str(last_segment(&from_path));
    }
    Ok((bucket, from_path, to_path))
}

/// The last segment of a remote path (`a/b/c.txt` → `c.txt`).
pub(crate) fn last_segment(path: &str) -> &str {
    let p = path.strip_suffix('/').unwrap_or(path);
    p.rsplit('/').next().unwrap_or(p)
}

/// Where an upload goes: `BUCKET/` or `dir/` keeps the local file's name.
pub(crate) fn upload_destination(local: &str, target: &str) -> anyhow::Result<(String, String)> {
    let (bucket, mut path) = parse_remote(target)?;
    if path.is_empty() || path.ends_with('/') {
        if local == "-" {
            bail!("uploading stdin needs a file name: give BUCKET/PATH, not {target:?}");
        }
        let name = Path::new(local)
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| anyhow!("{local:?} has no usable file name: give BUCKET/PATH"))?;
        path.push_str(name);
    }
    Ok((bucket, path))
}

/// Where a download goes: an existing directory or a path ending in `/`
/// keeps the remote file's name.
pub(crate) fn download_destination(local: &str, remote_path: &str) -> PathBuf {
    let p = PathBuf::from(local);
    if local.ends_with('/') || local.ends_with(std::path::MAIN_SEPARATOR) || p.is_dir() {
        p.join(last_segment(remote_path))
    } else {
        p
    }
}

/// Parses a node id as `admin status` shows it (16 hex characters;
/// upper case is accepted too).
pub(crate) fn parse_node_id(s: &str) -> Result<NodeId, String> {
    s.trim().to_ascii_lowercase().parse().map_err(|_| {
        format!(
            "invalid node id {s:?}: expected 16 hex characters, as shown in the NODE column \
             of `blobctl admin status`"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("8MiB"), Ok(8 << 20));
        assert_eq!(parse_size("512KiB"), Ok(512 << 10));
        assert_eq!(parse_size("1M"), Ok(1 << 20));
        assert_eq!(parse_size("1m"), Ok(1 << 20));
        assert_eq!(parse_size("65536"), Ok(65536));
        assert_eq!(parse_size("10B"), Ok(10));
        assert_eq!(parse_size("2 GiB"), Ok(2 << 30));
        assert_eq!(parse_size("1MB"), Ok(1_000_000));
        assert_eq!(parse_size("3kb"), Ok(3_000));
        for bad in [
            "",
            "MiB",
            "8XB",
            "-1",
            "1.5MiB",
            "99999999999999999999",
            "20000000TiB",
        ] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_chunk_size("64KiB"), Ok(64 << 10));
        assert_eq!(parse_chunk_size("256MiB"), Ok(256 << 20));
        let e = parse_chunk_size("1KiB").err().unwrap_or_default();
        assert!(e.contains("between 64 KiB and 256 MiB"), "{e}");
        assert!(parse_chunk_size("257MiB").is_err());
    }

    #[test]
    fn remote_paths_parse() {
        assert_eq!(
            parse_file("b/dir/f.txt").ok(),
            Some(("b".into(), "dir/f.txt".into()))
        );
        assert_eq!(parse_remote("b").ok(), Some(("b".into(), String::new())));
        assert_eq!(parse_remote("b/").ok(), Some(("b".into(), String::new())));
        assert_eq!(parse_remote("b/pre").ok(), Some(("b".into(), "pre".into())));
        let e = parse_file("bucket")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("path is missing"), "{e}");
        let e = parse_file("bucket/")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("path is missing"), "{e}");
        let e = parse_remote("/x")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("bucket is missing"), "{e}");
        assert!(parse_remote("").is_err());
    }

    #[test]
    fn destinations_keep_names_when_asked() {
        assert_eq!(
            upload_destination("/tmp/a/video.mp4", "b/").ok(),
            Some(("b".into(), "video.mp4".into()))
        );
        assert_eq!(
            upload_destination("video.mp4", "b").ok(),
            Some(("b".into(), "video.mp4".into()))
        );
        assert_eq!(
            upload_destination("video.mp4", "b/in/").ok(),
            Some(("b".into(), "in/video.mp4".into()))
        );
        assert_eq!(
            upload_destination("video.mp4", "b/x.mp4").ok(),
            Some(("b".into(), "x.mp4".into()))
        );
        assert!(upload_destination("-", "b/").is_err());
        assert_eq!(
            upload_destination("-", "b/s.bin").ok(),
            Some(("b".into(), "s.bin".into()))
        );

        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let d = dir.path().to_string_lossy().to_string();
        assert_eq!(
            download_destination(&d, "x/y.bin"),
            dir.path().join("y.bin")
        );
        assert_eq!(
            download_destination("out/", "x/y.bin"),
            PathBuf::from("out/y.bin")
        );
        assert_eq!(
            download_destination("out.bin", "x/y.bin"),
            PathBuf::from("out.bin")
        );
    }

    #[test]
    fn mv_stays_in_one_bucket() {
        assert_eq!(
            parse_move("b/a.txt", "b/c.txt").ok(),
            Some(("b".into(), "a.txt".into(), "c.txt".into()))
        );
        assert_eq!(
            parse_move("b/x/a.txt", "b/dir/").ok(),
            Some(("b".into(), "x/a.txt".into(), "dir/a.txt".into()))
        );
        let e = parse_move("b/a", "c/a")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("one bucket"), "{e}");
        assert!(parse_move("b", "b/a").is_err());
    }
}
