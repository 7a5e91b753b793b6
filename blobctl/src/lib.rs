//! `blobctl`, the blob store's command line, on top of the client library
//! ([`blob_client::Client`]).
//!
//! Flow: [`main_with_args`] parses the arguments ([`cli`]), lays flags,
//! environment and config files over each other ([`config`]), runs one
//! command ([`commands`], one module per family: buckets, objects,
//! transfers, copies and moves, sync, admin, edge, mount; tree commands
//! share a walk, `--exclude`/`--include` filters and one job runner) and
//! maps the outcome to an exit status.
//! Data goes to stdout; progress bars, summaries, logs and errors to stderr
//! ([`render`] holds the tables, sizes and dates).
//!
//! Exit status: 0 success (a broken pipe on stdout too), 1 not found (a
//! missing bucket, file or local file, a prefix or pattern matching
//! nothing, and `admin fsck` with missing chunks), 2 usage and any other
//! error.
//!
//! The FUSE mount (`blobctl mount`) comes from `blob-mount` through the
//! default `fuse` feature; built without it, `mount` says so and fails.
//!
//! What it must never do: print a secret key or a pre-signed URL's
//! signature, or write anything but data to stdout.

use std::ffi::OsString;
use std::process::ExitCode;

use crate::cli::Command;

mod args;
mod cli;
mod commands;
mod config;
mod render;

/// Runs `blobctl` with the process's arguments; returns its exit status.
pub fn main() -> ExitCode {
    main_with_args(std::env::args_os())
}

/// Runs `blobctl` with `args` (the first is the program name).
pub fn main_with_args(args: impl IntoIterator<Item = OsString>) -> ExitCode {
    let raw: Vec<OsString> = args.into_iter().collect();
    let cli = match cli::parse(&raw) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    if let Command::Mount(m) = &cli.command {
        if m.daemon {
            return match commands::mount::daemonize(m, &raw) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => exit_for(&e),
            };
        }
    }
    blob_common::telemetry::init("warn");
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("blobctl: starting the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let result = runtime.block_on(commands::run(cli));
    // Do not wait for blocking-pool threads (e.g. a pending stdin read).
    runtime.shutdown_background();
    match result {
        Ok(code) => code,
        Err(e) => exit_for(&e),
    }
}

/// Prints the error (unless it is a broken pipe) and picks the exit status.
fn exit_for(e: &anyhow::Error) -> ExitCode {
    if is_broken_pipe(e) {
        return ExitCode::SUCCESS;
    }
    eprintln!("blobctl: {e:#}");
    if is_not_found(e) {
        ExitCode::from(1)
    } else {
        ExitCode::from(2)
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// Nothing answers to what the user named (a prefix or pattern matching
/// no file): exit status 1, like a missing bucket or file.
#[derive(Debug)]
pub(crate) struct NotFound(pub(crate) String);

impl std::fmt::Display for NotFound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for NotFound {}

pub(crate) fn is_not_found(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<blob_client::Error>()
            .is_some_and(blob_client::Error::is_not_found)
            || c.is::<NotFound>()
            // A missing local file.
            || c.downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::NotFound)
    })
}

#[cfg(test)]
mod tests {
    use anyhow::anyhow;

    use super::*;

    #[test]
    fn exit_codes_follow_the_error() {
        let nf = anyhow::Error::new(blob_client::Error::Api {
            status: 404,
            code: "NoSuchFile".into(),
            message: "m".into(),
            request_id: String::new(),
        })
        .context("stat b/f");
        assert!(is_not_found(&nf));
        assert!(!is_broken_pipe(&nf));
        let pipe = anyhow::Error::new(blob_client::Error::Io {
            context: "writing the output".into(),
            source: std::io::Error::from(std::io::ErrorKind::BrokenPipe),
        })
        .context("downloading b/f");
        assert!(is_broken_pipe(&pipe));
        assert_eq!(exit_for(&pipe), ExitCode::SUCCESS);
        assert_eq!(exit_for(&nf), ExitCode::from(1));
        assert_eq!(exit_for(&anyhow!("other")), ExitCode::from(2));
        let local = anyhow::Error::new(std::io::Error::from(std::io::ErrorKind::NotFound))
            .context("opening x");
        assert_eq!(exit_for(&local), ExitCode::from(1));
        let none = anyhow::Error::new(NotFound("nothing matches b/*.x".into()));
        assert_eq!(exit_for(&none), ExitCode::from(1));
    }
}
