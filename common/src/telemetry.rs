//! Logging set-up: `tracing` to stderr, filtered by `RUST_LOG`, in colour
//! only when stderr is a terminal (log files and CI logs stay plain text).

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// Installs a stderr subscriber with `default` as the filter unless
/// `RUST_LOG` is set. Safe to call more than once (later calls do nothing).
pub fn init(default: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}
