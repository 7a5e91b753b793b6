//! Logging set-up: `tracing` to stderr, filtered by `RUST_LOG`, in colour
//! only when stderr is a terminal and `NO_COLOR` is not set
//! (<https://no-color.org>): log files, pipes and CI logs stay plain text.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// Installs a stderr subscriber with `default` as the filter unless
/// `RUST_LOG` is set. Safe to call more than once (later calls do nothing).
pub fn init(default: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(colour_on(std::io::stderr().is_terminal()))
        .try_init();
}

/// Whether to write colour codes to a stream that is (or is not) a
/// terminal: only to a terminal, and never when `NO_COLOR` is set to
/// anything but the empty string.
pub fn colour_on(is_terminal: bool) -> bool {
    is_terminal && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}
