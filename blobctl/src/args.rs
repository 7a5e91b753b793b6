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

/// `find --newer`: a time ago (`30m`, `2h`, `7d`) or a UTC date
/// (`2026-01-31`, `2026-01-31T12:00:00Z`); the answer is that moment in
/// ms since the epoch.
pub(crate) fn parse_newer(s: &str) -> Result<u64, String> {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    newer_than(s, now_ms)
}

fn newer_than(s: &str, now_ms: u64) -> Result<u64, String> {
    let t = s.trim();
    let bad = || {
        format!(
            "invalid time {s:?}: expected a duration ago (30m, 2h, 7d) or a UTC date \
             (2026-01-31 or 2026-01-31T12:00:00Z)"
        )
    };
    if t.len() >= 10 && t.as_bytes().get(4) == Some(&b'-') {
        // `YYYY-MM-DD`, then optionally `T` (or a space) and
        // `HH:MM[:SS]`, then optionally `Z`: always UTC.
        let parse = |text: &str| -> Option<time::OffsetDateTime> {
            let (day, clock) = match text.get(10..) {
                Some("") => (text, None),
                Some(rest) if rest.starts_with(['T', ' ']) => {
                    (text.get(..10)?, Some(rest.get(1..)?.trim_end_matches('Z')))
                }
                _ => return None,
            };
            let mut parts = day.splitn(3, '-');
            let year: i32 = parts.next()?.parse().ok()?;
            let month: u8 = parts.next()?.parse().ok()?;
            let dom: u8 = parts.next()?.parse().ok()?;
            let month = time::Month::try_from(month).ok()?;
            let date = time::Date::from_calendar_date(year, month, dom).ok()?;
            let clock = match clock {
                None => time::Time::MIDNIGHT,
                Some(c) => {
                    let mut hms = c.split(':');
                    let h: u8 = hms.next()?.parse().ok()?;
                    let m: u8 = hms.next()?.parse().ok()?;
                    let sec: u8 = match hms.next() {
                        Some(x) => x.parse().ok()?,
                        None => 0,
                    };
                    if hms.next().is_some() {
                        return None;
                    }
                    time::Time::from_hms(h, m, sec).ok()?
                }
            };
            Some(date.with_time(clock).assume_utc())
        };
        let at = parse(t).ok_or_else(bad)?;
        let ms = at.unix_timestamp_nanos() / 1_000_000;
        return u64::try_from(ms).map_err(|_| bad());
    }
    let ago = match t.strip_suffix('d') {
        Some(days) => days
            .parse::<f64>()
            .ok()
            .filter(|d| d.is_finite() && *d >= 0.0)
            .map(|d| std::time::Duration::from_secs_f64(d * 86_400.0))
            .ok_or_else(bad)?,
        None => blob_common::parse_duration(t).map_err(|_| bad())?,
    };
    Ok(now_ms.saturating_sub(ago.as_millis() as u64))
}

/// Whether a remote path has glob characters (`*`, `?`, `[`).
pub(crate) fn is_glob(path: &str) -> bool {
    path.contains(['*', '?', '['])
}

/// A glob over remote paths: `*`, `?` and `[...]` match within one path
/// segment (never across `/`).
pub(crate) fn path_glob(pattern: &str) -> anyhow::Result<globset::GlobMatcher> {
    let glob = globset::GlobBuilder::new(pattern)
        .literal_separator(true)
        .backslash_escape(true)
        .build()
        .map_err(|e| anyhow!("invalid pattern {pattern:?}: {}", e.kind()))?;
    Ok(glob.compile_matcher())
}

/// The directory part of a pattern before its first segment with a glob
/// character (`videos/2026/*.mp4` → `videos/2026/`): the prefix to list.
pub(crate) fn glob_base(pattern: &str) -> &str {
    let first = pattern.find(['*', '?', '[']).unwrap_or(pattern.len());
    pattern[..first].rfind('/').map_or("", |i| &pattern[..=i])
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
    fn newer_takes_an_age_or_a_date() {
        let now = 1_800_000_000_000;
        assert_eq!(newer_than("2h", now), Ok(now - 7_200_000));
        assert_eq!(newer_than("30m", now), Ok(now - 1_800_000));
        assert_eq!(newer_than("7d", now), Ok(now - 7 * 86_400_000));
        assert_eq!(newer_than("2023-11-14", now), Ok(1_699_920_000_000));
        assert_eq!(
            newer_than("2023-11-14T22:13:20Z", now),
            Ok(1_700_000_000_000)
        );
        for bad in ["yesterday", "2023-13-01", "2023-11-14T99", "-1d", "5x"] {
            assert!(newer_than(bad, now).is_err(), "{bad}");
        }
    }

    #[test]
    fn globs_stay_within_a_segment() {
        let m = path_glob("videos/2026/*.mp4").unwrap_or_else(|e| panic!("{e}"));
        assert!(m.is_match("videos/2026/a.mp4"));
        assert!(!m.is_match("videos/2026/sub/a.mp4"));
        assert!(!m.is_match("videos/2026/a.mkv"));
        let m = path_glob("v/file?.[ab]").unwrap_or_else(|e| panic!("{e}"));
        assert!(m.is_match("v/file1.a") && m.is_match("v/fileX.b"));
        assert!(!m.is_match("v/file10.a") && !m.is_match("v/file1.c"));
        let m = path_glob("*/x").unwrap_or_else(|e| panic!("{e}"));
        assert!(m.is_match("a/x") && !m.is_match("a/b/x"));
        assert!(path_glob("a/[b").is_err());
        assert!(is_glob("a/*") && is_glob("a?") && is_glob("[a]") && !is_glob("a/b.c"));
        assert_eq!(glob_base("videos/2026/*.mp4"), "videos/2026/");
        assert_eq!(glob_base("videos/20*/x"), "videos/");
        assert_eq!(glob_base("*.mp4"), "");
    }
}
