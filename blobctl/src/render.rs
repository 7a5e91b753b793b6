//! How `blobctl` shows things: aligned tables, byte sizes (`1.5 MiB`),
//! percentages, ages (`5m12s`), UTC dates, notes on stderr and progress
//! bars (on stderr, only on a terminal). Stdout is left to data.

use std::io::IsTerminal;
use std::sync::Arc;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use time::format_description::FormatItem;
use time::macros::format_description;
use time::OffsetDateTime;

/// A line for the user on stderr, unless `-q`.
pub(crate) fn note(quiet: bool, msg: std::fmt::Arguments<'_>) {
    if !quiet {
        eprintln!("{msg}");
    }
}

/// `1.0 GiB`, `512 B`.
/// `s` with its control characters escaped (`\n`, `\t`, `\r`, `\x1b`,
/// `\u{9b}`), so that a name cannot move the cursor, recolour or forge
/// lines of the terminal it is printed to. For human output only: `--json`
/// carries names as they are.
pub(crate) fn escape(s: &str) -> String {
    if !s.chars().any(char::is_control) {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x80 && c.is_control() => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c if c.is_control() => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod escape_tests {
    #[test]
    fn control_characters_are_escaped_and_the_rest_kept() {
        assert_eq!(super::escape("a/b c.mp4"), "a/b c.mp4");
        assert_eq!(super::escape("é/ü"), "é/ü");
        assert_eq!(
            super::escape("x\n\x1b[31mred\t\r\u{9b}2J"),
            "x\\n\\x1b[31mred\\t\\r\\u{9b}2J"
        );
    }
}

pub(crate) fn human(n: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

/// `12.5%` of `total`, `-` when there is no total.
pub(crate) fn percent(part: u64, total: u64) -> String {
    if total == 0 {
        return "-".into();
    }
    format!("{:.1}%", part as f64 * 100.0 / total as f64)
}

/// Columns two spaces apart, each as wide as its widest cell; `right`
/// columns are right-aligned. No trailing spaces.
pub(crate) fn render_table(header: &[&str], right: &[bool], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            let w = cell.chars().count();
            match widths.get_mut(i) {
                Some(max) => *max = (*max).max(w),
                None => widths.push(w),
            }
        }
    }
    let mut text = String::new();
    let header: Vec<String> = header.iter().map(|h| h.to_string()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            let w = widths.get(i).copied().unwrap_or(0);
            if right.get(i).copied().unwrap_or(false) {
                line.push_str(&format!("{cell:>w$}"));
            } else {
                line.push_str(&format!("{cell:<w$}"));
            }
        }
        text.push_str(line.trim_end());
        text.push('\n');
    }
    text
}

/// How long ago a heartbeat was: `never`, `850ms`, `12.3s`, `42s`,
/// `5m12s`, `3h05m`, `2d04h`.
pub(crate) fn format_age(ms: Option<u64>) -> String {
    let Some(ms) = ms else {
        return "never".into();
    };
    let secs = ms / 1000;
    match secs {
        _ if ms < 1000 => format!("{ms}ms"),
        0..=9 => format!("{:.1}s", ms as f64 / 1000.0),
        10..=59 => format!("{secs}s"),
        60..=3599 => format!("{}m{:02}s", secs / 60, secs % 60),
        3600..=86_399 => format!("{}h{:02}m", secs / 3600, secs % 3600 / 60),
        _ => format!("{}d{:02}h", secs / 86_400, secs % 86_400 / 3600),
    }
}

/// A progress bar on stderr, only when it is a terminal and not `-q`.
pub(crate) fn progress_bar(quiet: bool, total: Option<u64>) -> Option<ProgressBar> {
    if quiet || !std::io::stderr().is_terminal() {
        return None;
    }
    let (bar, template) = match total {
        Some(t) => (
            ProgressBar::with_draw_target(Some(t), ProgressDrawTarget::stderr()),
            "{wide_bar} {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} ETA {eta}",
        ),
        None => (
            ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr()),
            "{spinner} {binary_bytes} {binary_bytes_per_sec} {elapsed}",
        ),
    };
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style);
    }
    Some(bar)
}

/// One bar for a many-file transfer: files done, bytes, rate and ETA, on
/// stderr, only when it is a terminal and not `-q`.
pub(crate) fn tree_bar(quiet: bool, files: usize, bytes: u64) -> Option<ProgressBar> {
    let bar = progress_bar(quiet, Some(bytes))?;
    if let Ok(style) = ProgressStyle::with_template(
        "{msg} {wide_bar} {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} ETA {eta}",
    ) {
        bar.set_style(style);
    }
    bar.set_message(format!("0/{files} files"));
    Some(bar)
}

pub(crate) fn progress_fn(bar: &ProgressBar) -> blob_client::ProgressFn {
    let bar = bar.clone();
    Arc::new(move |done| bar.set_position(done))
}

pub(crate) fn finish(bar: Option<ProgressBar>) {
    if let Some(b) = bar {
        b.finish_and_clear();
    }
}

/// The listing's date column: `2024-05-01 12:34:56`.
const DATE: &[FormatItem<'static>] =
    format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
/// RFC 3339 in UTC with milliseconds: `2024-05-01T12:34:56.789Z`.
const RFC3339_MS: &[FormatItem<'static>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");

/// `ms` since the epoch in `format` (UTC); the bare number for a time
/// past what the calendar covers (year 9999).
fn format_ms(ms: u64, format: &[FormatItem<'_>]) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(format).ok())
        .unwrap_or_else(|| ms.to_string())
}

/// `2024-05-01 12:34:56` (UTC), the listing's date column.
pub(crate) fn format_date(ms: u64) -> String {
    format_ms(ms, DATE)
}

/// `2024-05-01T12:34:56.789Z`.
pub(crate) fn format_rfc3339(ms: u64) -> String {
    format_ms(ms, RFC3339_MS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_sizes_format() {
        assert_eq!(format_date(0), "1970-01-01 00:00:00");
        assert_eq!(format_date(1_700_000_000_000), "2023-11-14 22:13:20");
        assert_eq!(format_rfc3339(951_782_400_123), "2000-02-29T00:00:00.123Z");
        assert_eq!(format_date(4_107_542_400_000), "2100-03-01 00:00:00");
        assert_eq!(human(512), "512 B");
        assert_eq!(human(1024), "1.0 KiB");
        assert_eq!(human(1 << 30), "1.0 GiB");
        assert_eq!(human(3 * (1 << 20) / 2), "1.5 MiB");
    }

    #[test]
    fn ages_format() {
        assert_eq!(format_age(None), "never");
        assert_eq!(format_age(Some(0)), "0ms");
        assert_eq!(format_age(Some(850)), "850ms");
        assert_eq!(format_age(Some(1_234)), "1.2s");
        assert_eq!(format_age(Some(42_900)), "42s");
        assert_eq!(format_age(Some(312_000)), "5m12s");
        assert_eq!(format_age(Some(3 * 3_600_000 + 5 * 60_000)), "3h05m");
        assert_eq!(format_age(Some(2 * 86_400_000 + 4 * 3_600_000)), "2d04h");
        assert_eq!(percent(1, 4), "25.0%");
        assert_eq!(percent(1, 0), "-");
    }

    #[test]
    fn tables_align() {
        let t = render_table(
            &["A", "NUM", "C"],
            &[false, true, false],
            &[
                vec!["long-name".into(), "1".into(), "x".into()],
                vec!["s".into(), "12345".into(), "".into()],
            ],
        );
        assert_eq!(
            t,
            "A            NUM  C\nlong-name      1  x\ns          12345\n"
        );
    }
}
