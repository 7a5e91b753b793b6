//! The command line's shape: every command, flag and help text of
//! `blobctl`, as clap definitions. Parsing only; the commands run in
//! [`crate::commands`].

use std::path::PathBuf;

use blob_client::NodeId;
use clap::{Parser, Subcommand};

use crate::args::{parse_chunk_size, parse_newer, parse_node_id, parse_size};
use crate::commands::filter::{rules_from, FilterRule};
use crate::config::parse_timeout;

const AFTER_HELP: &str = "\
Configuration (first found wins, per setting):
  1. --endpoint, --access-key, --secret-key, --zone, --timeout, --ca-file
  2. BLOBCTL_ENDPOINT, BLOBCTL_ACCESS_KEY, BLOBCTL_SECRET_KEY, BLOBCTL_ZONE,
     BLOBCTL_TIMEOUT, BLOBCTL_CA_FILE
  3. the TOML file named by --config or BLOBCTL_CONFIG
  4. ~/.config/blobctl/config.toml
  The file holds: endpoint = \"http://127.0.0.1:9870\", access_key = \"...\",
  secret_key = \"...\", optionally zone = \"...\", timeout = \"30s\" and
  ca_file = \"ca.pem\" (the client.toml that `blobd dev` writes). The zone
  picks the edge cache reads go through. An https endpoint (and https
  datanodes) are verified against the CA in ca_file, and no other.

Remote paths are written BUCKET/PATH; `-` as a local file is stdin/stdout.
In `ls` paths, `*`, `?` and `[...]` match within one path segment
(quote them from the shell: blobctl ls 'b/videos/2026/*.mp4').
Logs go to stderr at level warn; RUST_LOG overrides. Colour only on a
terminal, and never with NO_COLOR set.

Exit status:
  0  success (a broken pipe on stdout, as in `blobctl cat b/f | head`, too)
  1  not found: no such bucket or file, a missing local file, a prefix or
     pattern that matches nothing; for `admin fsck`, missing chunks too
  2  usage and any other error (unreachable, timed out, refused, ...)
Errors that retrying cannot fix (no such bucket, access denied, too few
datanodes for the replication asked for) fail at once.";

const FSCK_AFTER_HELP: &str = "\
Prints one line per file with trouble
  BUCKET/PATH: M missing, U under-replicated, C corrupt chunks
then a summary ending in one of
  Status: HEALTHY           every chunk has all the replicas asked for
  Status: UNDER-REPLICATED  no chunk is lost, but some have fewer good
                            replicas than asked for (or a corrupt one)
  Status: CORRUPT           some chunk has no live replica: data is missing
--json prints the namenode's report (with the chunk ids) instead.

Exit status:
  0  nothing is missing (HEALTHY or UNDER-REPLICATED)
  1  some chunk is missing (CORRUPT), or no such bucket
  2  any other error (bad arguments, not an admin key, unreachable, ...)";

/// The blob store's command line.
#[derive(Debug, Parser)]
#[command(name = "blobctl", version, about, after_help = AFTER_HELP)]
pub(crate) struct Cli {
    /// Namenode URL, e.g. http://127.0.0.1:9870 [env: BLOBCTL_ENDPOINT]
    #[arg(long, global = true, value_name = "URL")]
    pub(crate) endpoint: Option<String>,
    /// Access key id [env: BLOBCTL_ACCESS_KEY]
    #[arg(long, global = true, value_name = "KEY")]
    pub(crate) access_key: Option<String>,
    /// Secret key; visible to other local users in the process list, so
    /// prefer the environment or the config file [env: BLOBCTL_SECRET_KEY]
    #[arg(long, global = true, value_name = "SECRET")]
    pub(crate) secret_key: Option<String>,
    /// Config file (TOML) [env: BLOBCTL_CONFIG]
    #[arg(long, global = true, value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,
    /// This reader's zone: reads go through its edge cache, if the cluster
    /// has edges [env: BLOBCTL_ZONE]
    #[arg(long, global = true, value_name = "ZONE")]
    pub(crate) zone: Option<String>,
    /// Read from the datanodes only, never through an edge cache
    /// [env: BLOBCTL_NO_EDGE; file: no_edge = true]
    #[arg(long, global = true)]
    pub(crate) no_edge: bool,
    /// Longest wait for an answer to one call to the namenode or a datanode
    /// (e.g. 2s, 500ms, 1m; connecting takes at most 5 s of it); a stopped
    /// server fails the command after this long [default: 30s]
    /// [env: BLOBCTL_TIMEOUT; file: timeout = "30s"]
    #[arg(long, global = true, value_name = "DURATION", value_parser = parse_timeout)]
    pub(crate) timeout: Option<std::time::Duration>,
    /// PEM CA certificate(s) that an https namenode, datanodes and edges
    /// are verified against (no other CA is trusted)
    /// [env: BLOBCTL_CA_FILE; file: ca_file = "ca.pem"]
    #[arg(long, global = true, value_name = "FILE")]
    pub(crate) ca_file: Option<PathBuf>,
    /// Encrypt uploaded files at rest with a data key of their own
    /// (SSE-S3, the only value); SSE-S3 files are read transparently
    #[arg(long, global = true, value_name = "AES256", value_parser = ["AES256"])]
    pub(crate) sse: Option<String>,
    /// Encrypt uploaded files with the 256-bit key in FILE (SSE-C: raw 32
    /// bytes, hex or base64), and read files encrypted with it; the key is
    /// never sent to be stored
    #[arg(long, global = true, value_name = "FILE", conflicts_with = "sse")]
    pub(crate) sse_c_key_file: Option<std::path::PathBuf>,
    /// No progress bar or summary
    #[arg(short, long, global = true)]
    pub(crate) quiet: bool,
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Make a bucket
    Mb {
        /// Bucket name
        bucket: String,
    },
    /// Remove an empty bucket
    Rb {
        /// Bucket name
        bucket: String,
    },
    /// List buckets, or files of BUCKET[/PREFIX] (directories as `PRE dir/`)
    #[command(disable_help_flag = true)]
    Ls {
        /// BUCKET[/PREFIX], or BUCKET/PATTERN with `*`, `?`, `[...]`
        /// matching within one path segment; none lists the buckets
        target: Option<String>,
        /// List every file under the prefix instead of one level
        #[arg(short, long)]
        recursive: bool,
        /// Sizes in KiB, MiB, GiB
        #[arg(short = 'h', long)]
        human_readable: bool,
        /// Long format: a header, and each file's version and ETag
        #[arg(short, long)]
        long: bool,
        /// Print one JSON document
        #[arg(long)]
        json: bool,
        /// Print help
        #[arg(long, action = clap::ArgAction::Help)]
        help: Option<bool>,
    },
    /// Total size and file count under BUCKET[/DIR], per directory
    #[command(disable_help_flag = true)]
    Du {
        /// BUCKET[/DIR]
        target: String,
        /// Only the total
        #[arg(short, long)]
        summarize: bool,
        /// Sizes in KiB, MiB, GiB
        #[arg(short = 'h', long)]
        human_readable: bool,
        /// Print one JSON document
        #[arg(long)]
        json: bool,
        /// Print help
        #[arg(long, action = clap::ArgAction::Help)]
        help: Option<bool>,
    },
    /// Files under BUCKET[/DIR] by name and age, one BUCKET/PATH a line
    Find {
        /// BUCKET[/DIR]
        target: String,
        /// Only files whose name (last path segment) matches this pattern
        /// (`*`, `?`, `[...]`)
        #[arg(long, value_name = "GLOB")]
        name: Option<String>,
        /// Only files committed after this: a duration ago (30m, 2h, 7d)
        /// or a UTC date (2026-01-31 or 2026-01-31T12:00:00Z)
        #[arg(long, value_name = "DURATION|DATE", value_parser = parse_newer)]
        newer: Option<u64>,
        /// Print one JSON document
        #[arg(long)]
        json: bool,
    },
    /// Show a file's size, chunks, replication, version and creation time
    Stat {
        /// BUCKET/PATH
        target: String,
        /// Print JSON, with the chunk list
        #[arg(long)]
        json: bool,
    },
    /// Remove a file, or with -r every file under a directory
    Rm {
        /// BUCKET/PATH, or with -r BUCKET[/DIR]
        target: String,
        /// Remove every file under BUCKET[/DIR] (and a file at exactly
        /// DIR), after a count and, on a terminal, a confirmation
        #[arg(short, long)]
        recursive: bool,
        /// No confirmation
        #[arg(short, long)]
        force: bool,
        /// Files removed at once
        #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u16).range(1..=1024))]
        parallel: u16,
    },
    /// Move a file or a directory, within a bucket or to another (no
    /// bytes move: a rename, or a copy sharing the chunks)
    Mv {
        /// BUCKET/FILE or BUCKET/DIR
        from: String,
        /// BUCKET/TO (ending in `/`, or a bare bucket: keep the source's name)
        to: String,
        /// Files moved at once (directories)
        #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u16).range(1..=1024))]
        parallel: u16,
    },
    /// Upload a local file or stdin
    Upload {
        /// Local file, or `-` for stdin
        local: String,
        /// BUCKET/PATH; `BUCKET/` or a path ending in `/` keeps the local name
        target: String,
        /// Chunk size, 64KiB to 256MiB (e.g. 8MiB, 512KiB, 1M, 65536)
        #[arg(long, default_value = "8MiB", value_parser = parse_chunk_size)]
        chunk_size: u64,
        /// Chunks in flight
        #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=1024))]
        parallel: u16,
        /// Replication factor (default: the cluster's)
        #[arg(long, value_parser = clap::value_parser!(u8).range(1..))]
        replication: Option<u8>,
    },
    /// Download a file to a local path (a directory keeps the name) or stdout
    Download {
        /// BUCKET/PATH
        target: String,
        /// Local file or directory, or `-` for stdout
        local: String,
        /// Chunks fetched at once
        #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=1024))]
        parallel: u16,
    },
    /// Copy a file or, with -r, a directory tree: local to store, store
    /// to local, or within the store (metadata only)
    #[command(after_help = CP_AFTER_HELP)]
    Cp {
        /// A local file or directory, or BUCKET/PATH
        src: String,
        /// BUCKET/PATH when SRC is local; a local path or BUCKET/PATH when
        /// SRC is in the store
        dst: String,
        /// Copy every file under SRC, keeping the tree's shape
        #[arg(short, long)]
        recursive: bool,
        /// Files copied at once
        #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=256))]
        parallel: u16,
        /// Chunk size of uploaded files, 64KiB to 256MiB
        #[arg(long, default_value = "8MiB", value_parser = parse_chunk_size)]
        chunk_size: u64,
        /// Replication factor of uploaded files (default: the cluster's)
        #[arg(long, value_parser = clap::value_parser!(u8).range(1..))]
        replication: Option<u8>,
        /// Print what would be copied (`would upload A to B`), copy nothing
        #[arg(long)]
        dry_run: bool,
        /// Leave out files matching GLOB (relative to SRC; `*` crosses `/`);
        /// with --include, the last matching rule wins
        #[arg(long, value_name = "GLOB", action = clap::ArgAction::Append)]
        exclude: Vec<String>,
        /// Take files matching GLOB back in after an earlier --exclude
        #[arg(long, value_name = "GLOB", action = clap::ArgAction::Append)]
        include: Vec<String>,
        /// Print the summary as one JSON document on stdout
        #[arg(long)]
        json: bool,
        /// --exclude and --include in the order given (filled after parsing)
        #[arg(skip)]
        filters: Vec<FilterRule>,
    },
    /// Make a store directory match a local tree, or a local tree match a
    /// store directory, copying only the files that differ
    #[command(after_help = SYNC_AFTER_HELP)]
    Sync {
        /// A local directory, or BUCKET[/DIR]
        src: String,
        /// BUCKET[/DIR] when SRC is local; a local directory otherwise
        dst: String,
        /// Remove destination files that SRC lacks (within the filters)
        #[arg(long)]
        delete: bool,
        /// Print what would be copied and removed, change nothing
        #[arg(long)]
        dry_run: bool,
        /// Files copied at once
        #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=256))]
        parallel: u16,
        /// Chunk size of uploaded files, 64KiB to 256MiB
        #[arg(long, default_value = "8MiB", value_parser = parse_chunk_size)]
        chunk_size: u64,
        /// Replication factor of uploaded files (default: the cluster's)
        #[arg(long, value_parser = clap::value_parser!(u8).range(1..))]
        replication: Option<u8>,
        /// Leave out files matching GLOB (relative to SRC; `*` crosses `/`);
        /// with --include, the last matching rule wins
        #[arg(long, value_name = "GLOB", action = clap::ArgAction::Append)]
        exclude: Vec<String>,
        /// Take files matching GLOB back in after an earlier --exclude
        #[arg(long, value_name = "GLOB", action = clap::ArgAction::Append)]
        include: Vec<String>,
        /// Print the summary (sent, skipped, deleted, failed) as one JSON
        /// document on stdout
        #[arg(long)]
        json: bool,
        /// --exclude and --include in the order given (filled after parsing)
        #[arg(skip)]
        filters: Vec<FilterRule>,
    },
    /// Write a file to stdout
    Cat {
        /// BUCKET/PATH
        target: String,
    },
    /// Print a shell completion script: e.g. `blobctl completions bash >
    /// ~/.local/share/bash-completion/completions/blobctl`
    Completions {
        /// The shell
        shell: clap_complete::Shell,
    },
    /// Mount a bucket as a directory tree (FUSE) until unmounted
    #[command(after_help = MOUNT_AFTER_HELP)]
    Mount(MountArgs),
    /// Cluster administration (needs an admin key)
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
    },
}

#[derive(Debug, clap::Args)]
pub(crate) struct MountArgs {
    /// Bucket to mount
    pub(crate) bucket: String,
    /// An existing empty directory (see --nonempty)
    pub(crate) mountpoint: PathBuf,
    /// Detach and run in the background once mounted (logs to --log-file)
    #[arg(short, long)]
    pub(crate) daemon: bool,
    /// Where a daemon writes its log (default: ~/.cache/blobctl/mount-BUCKET.log)
    #[arg(long, value_name = "FILE")]
    pub(crate) log_file: Option<PathBuf>,
    /// How long file and directory answers are cached (e.g. 1s, 500ms, 0)
    #[arg(long, default_value = "1s", value_parser = blob_common::parse_duration)]
    pub(crate) ttl: std::time::Duration,
    /// Memory for whole chunks cached for readers (read-ahead windows come on top)
    #[arg(long, default_value = "128MiB", value_parser = parse_size)]
    pub(crate) cache_size: u64,
    /// Most chunks fetched ahead of a sequential reader
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub(crate) readahead: u16,
    /// Chunk size of files written, 64KiB to 256MiB
    #[arg(long, default_value = "8MiB", value_parser = parse_chunk_size)]
    pub(crate) chunk_size: u64,
    /// Chunks in flight per file written
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub(crate) parallel: u16,
    /// Replication factor of files written (default: the cluster's)
    #[arg(long, value_parser = clap::value_parser!(u8).range(1..))]
    pub(crate) replication: Option<u8>,
    /// Let other users use the mount
    #[arg(long)]
    pub(crate) allow_other: bool,
    /// Refuse every change (EROFS)
    #[arg(long)]
    pub(crate) read_only: bool,
    /// Where files written out of order are staged (default: ~/.cache/blobctl/mount)
    #[arg(long, value_name = "DIR")]
    pub(crate) cache_dir: Option<PathBuf>,
    /// Most bytes staged at once, all files together; 0 turns staging off
    #[arg(long, default_value = "16GiB", value_parser = parse_size)]
    pub(crate) write_cache_size: u64,
    /// Mount over a directory that is not empty (its entries are hidden while mounted)
    #[arg(long)]
    pub(crate) nonempty: bool,
}

const CP_AFTER_HELP: &str = "\
SRC is local when it exists on disk or starts with /, ./ or ../; DST is then
BUCKET/PATH (with -r, the directory the tree goes under). Otherwise SRC is
BUCKET/PATH in the store, and DST is in the store too when it is BUCKET/PATH
with an existing bucket and no such local path (a copy there writes only
metadata: it shares the source's chunks); else DST is a local path (with -r,
a directory, made if missing; write ./DIR to be sure). Chunks the store
already holds are not sent again.

  blobctl cp -r ./photos b/backup/photos     local tree to the store
  blobctl cp -r b/backup/photos ./restored   and back
  blobctl cp -r b/backup/photos c/photos     within the store
  blobctl cp 'b/videos/2026/*.mp4' ./out     what `ls` shows for a pattern
                                             (-r: and under matching dirs)
  blobctl cp -r ./logs b/logs --exclude '*' --include '*.gz'

--exclude/--include (with -r) work as in `aws s3`: every file is in until a
rule matches it, the last matching rule wins, and patterns match the path
below SRC (`*` also matches `/`).

Prints one summary line (--json: one document). Exit status 1 when some file
was not found, 2 when any other copy failed; the others are copied
regardless.";

const SYNC_AFTER_HELP: &str = "\
SRC is local when it exists on disk or starts with /, ./ or ../; DST is then
BUCKET[/DIR]. Otherwise SRC is BUCKET[/DIR] and DST a local directory (made
if missing). Files go under DST as under SRC.

A file is sent when the destination lacks it, or has it with another size or
other content: contents are compared by the SHA-256 of each chunk, the
store's from its metadata (no remote byte is read), the local side's hashed
at the store file's chunk size and kept in ~/.cache/blobctl/sync by size
and modification time, so an unchanged tree is not read again. A file sent
still sends only the chunks the store lacks.

  blobctl sync ./site b/www --delete         the store mirrors ./site
  blobctl sync b/www ./site --dry-run        what would come back

--exclude/--include as for cp. Prints one summary line
(`N sent, N unchanged, N deleted, N failed`; --json: one document). Exit
status 1 when some file was not found, 2 when any other copy or removal
failed.";

const MOUNT_AFTER_HELP: &str = "\
Files are read with read-ahead for sequential readers. A file written front
to back streams into the store; any other writer (a muxer patching its
header, an edit in place, truncate) is staged in --cache-dir and only the
chunks that changed are sent. Either way the file is committed on close or
fsync: other readers see the old version or the new one, never a part. A
write the write cache has no room for fails with ENOSPC, and that open then
commits nothing. A stopped cluster gives EIO after --timeout (the global
flag: the longest a read or metadata call may take, 30 s by default).

Unmount with `fusermount3 -u MOUNTPOINT`, or SIGTERM/Ctrl-C to blobctl.";

/// Parses the command line (`raw[0]` is the program name), keeping the
/// order of `--exclude` and `--include` between them.
pub(crate) fn parse(raw: &[std::ffi::OsString]) -> Result<Cli, clap::Error> {
    use clap::{CommandFactory, FromArgMatches};
    let mut cmd = Cli::command();
    let matches = cmd.try_get_matches_from_mut(raw)?;
    let mut cli = Cli::from_arg_matches(&matches).map_err(|e| e.format(&mut cmd))?;
    if let Some((_, sub)) = matches.subcommand() {
        if let Command::Cp { filters, .. } | Command::Sync { filters, .. } = &mut cli.command {
            *filters = rules_from(sub);
        }
    }
    Ok(cli)
}

#[derive(Debug, Subcommand)]
pub(crate) enum AdminCommand {
    /// Show every datanode (state, heartbeat, space, chunks, load) and the
    /// cluster's chunk health counts
    Status {
        /// Print the namenode's answer as JSON
        #[arg(long)]
        json: bool,
    },
    /// Check that every file's chunks have their replicas; exit status 1
    /// when a chunk is missing
    #[command(after_help = FSCK_AFTER_HELP)]
    Fsck {
        /// BUCKET[/PREFIX]; none checks every bucket
        target: Option<String>,
        /// Print the namenode's report as JSON
        #[arg(long)]
        json: bool,
    },
    /// Edge caches: fill one on demand, or show their hit ratios
    Edge {
        #[command(subcommand)]
        command: EdgeCommand,
    },
    /// Access keys: create, list, inspect, delete, rotate, rate-limit
    Key {
        #[command(subcommand)]
        command: KeyCommand,
    },
    /// Bucket permissions, usage and quotas
    Bucket {
        #[command(subcommand)]
        command: BucketAdminCommand,
    },
    /// Drain a datanode: it takes no new replicas and its chunks are copied
    /// elsewhere; follow with `admin status`
    Decommission {
        /// Node id: 16 hex characters, as shown by `blobctl admin status`
        #[arg(value_parser = parse_node_id)]
        node: NodeId,
        /// Print the node's new status as JSON
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum KeyCommand {
    /// Make a key; prints its access key and secret (the only time the
    /// secret is shown)
    Create {
        /// A name for people
        name: String,
        /// May administer the cluster
        #[arg(long)]
        admin: bool,
        /// Print {"name","access_key","secret_key"}
        #[arg(long)]
        json: bool,
    },
    /// List every key
    List {
        /// Print as JSON
        #[arg(long)]
        json: bool,
    },
    /// Show a key, its limits and the buckets it may use
    Info {
        /// The access key
        #[arg(value_name = "ACCESS_KEY")]
        key: String,
        /// Print as JSON
        #[arg(long)]
        json: bool,
    },
    /// Delete a key: it stops working at once
    Delete {
        /// The access key
        #[arg(value_name = "ACCESS_KEY")]
        key: String,
    },
    /// Give a key a second secret that works beside the old one; with
    /// --retire-old, drop the old one
    Rotate {
        /// The access key
        #[arg(value_name = "ACCESS_KEY")]
        key: String,
        /// Drop the older of its two secrets instead
        #[arg(long)]
        retire_old: bool,
        /// Print as JSON
        #[arg(long)]
        json: bool,
    },
    /// Limit a key's requests and bytes per second (0 or none: unlimited)
    Limit {
        /// The access key
        #[arg(value_name = "ACCESS_KEY")]
        key: String,
        /// Requests per second
        #[arg(long)]
        rps: Option<u32>,
        /// Bytes per second to and from the datanodes, e.g. 100MiB
        #[arg(long, value_parser = parse_rate)]
        bandwidth: Option<u64>,
        /// Print as JSON
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum BucketAdminCommand {
    /// Show a bucket's owner, grants, usage and quota
    Info {
        /// The bucket
        bucket: String,
        /// Print as JSON
        #[arg(long)]
        json: bool,
    },
    /// Let a key read, write or own a bucket (adds to what it had)
    Allow {
        /// The bucket
        bucket: String,
        /// The access key
        #[arg(long)]
        key: String,
        #[command(flatten)]
        permissions: PermissionArgs,
    },
    /// Take permissions away from a key (all of them when none is given)
    Deny {
        /// The bucket
        bucket: String,
        /// The access key
        #[arg(long)]
        key: String,
        #[command(flatten)]
        permissions: PermissionArgs,
    },
    /// Limit what a bucket may hold (0 or none: unlimited)
    Quota {
        /// The bucket
        bucket: String,
        /// Most bytes, e.g. 10GiB
        #[arg(long, value_parser = parse_size)]
        max_bytes: Option<u64>,
        /// Most objects
        #[arg(long)]
        max_objects: Option<u64>,
    },
}

#[derive(Debug, Clone, Copy, clap::Args)]
pub(crate) struct PermissionArgs {
    /// List and read files
    #[arg(long)]
    pub(crate) read: bool,
    /// Write, overwrite, rename and delete files
    #[arg(long)]
    pub(crate) write: bool,
    /// Everything, settings and deleting the bucket included
    #[arg(long)]
    pub(crate) owner: bool,
}

/// A rate in bytes per second: a size, with an optional `/s`.
fn parse_rate(s: &str) -> Result<u64, String> {
    parse_size(s.strip_suffix("/s").unwrap_or(s))
}

#[derive(Debug, Subcommand)]
pub(crate) enum EdgeCommand {
    /// Fill this client's edge (the one the namenode picks for --zone) with
    /// every chunk of every file under BUCKET[/PREFIX]
    Warm {
        /// BUCKET[/PREFIX]
        target: String,
        /// Print the result as JSON
        #[arg(long)]
        json: bool,
    },
    /// Show every edge's tiers, hits, misses and origin traffic
    Stats {
        /// Print the edges' answers as JSON
        #[arg(long)]
        json: bool,
    },
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[test]
    fn edge_commands_parse() {
        assert!(Cli::try_parse_from(["blobctl", "admin", "edge", "stats", "--json"]).is_ok());
        assert!(Cli::try_parse_from(["blobctl", "admin", "edge", "warm", "b/pre"]).is_ok());
        assert!(Cli::try_parse_from(["blobctl", "admin", "edge", "warm"]).is_err());
        assert!(Cli::try_parse_from(["blobctl", "--zone", "z1", "cat", "b/f"]).is_ok());
    }

    #[test]
    fn arguments_parse() {
        let cli = Cli::try_parse_from([
            "blobctl",
            "upload",
            "-",
            "b/x",
            "--chunk-size",
            "1M",
            "--parallel",
            "4",
            "-q",
        ])
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(cli.quiet);
        match cli.command {
            Command::Upload {
                chunk_size,
                parallel,
                ..
            } => {
                assert_eq!(chunk_size, 1 << 20);
                assert_eq!(parallel, 4);
            }
            other => panic!("{other:?}"),
        }
        assert!(
            Cli::try_parse_from(["blobctl", "upload", "a", "b/x", "--chunk-size", "1K"]).is_err()
        );
        assert!(Cli::try_parse_from(["blobctl", "ls", "-r", "--json", "b/p"]).is_ok());
        assert!(Cli::try_parse_from(["blobctl", "ls", "-lh", "b/p"]).is_ok());
        assert!(Cli::try_parse_from(["blobctl", "du", "-sh", "b/p"]).is_ok());
        assert!(Cli::try_parse_from(["blobctl", "rm", "-rf", "b/p"]).is_ok());
        assert!(Cli::try_parse_from(["blobctl", "completions", "zsh"]).is_ok());
        assert!(Cli::try_parse_from(["blobctl", "completions", "tcsh"]).is_err());
        assert!(Cli::try_parse_from(["blobctl", "find", "b", "--name", "*.mp4"]).is_ok());
        assert!(Cli::try_parse_from(["blobctl", "find", "b", "--newer", "2h"]).is_ok());
        assert!(Cli::try_parse_from(["blobctl", "find", "b", "--newer", "yesterday"]).is_err());
        let help = Cli::try_parse_from(["blobctl", "ls", "--help"]).err();
        assert!(help.is_some_and(|e| !e.use_stderr()));
        assert!(Cli::try_parse_from(["blobctl", "--endpoint", "http://x:1", "ls"]).is_ok());
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn a_key_named_on_the_command_line_is_not_the_key_signing() {
        let cli = Cli::try_parse_from(["blobctl", "admin", "key", "rotate", "BKX", "--retire-old"])
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(cli.access_key, None);
        match cli.command {
            Command::Admin {
                command:
                    AdminCommand::Key {
                        command:
                            KeyCommand::Rotate {
                                key, retire_old, ..
                            },
                    },
            } => assert_eq!((key.as_str(), retire_old), ("BKX", true)),
            other => panic!("parsed as {other:?}"),
        }
        assert!(Cli::try_parse_from([
            "blobctl", "admin", "bucket", "allow", "b", "--key", "BKX", "--read"
        ])
        .is_ok());
        assert!(Cli::try_parse_from([
            "blobctl",
            "admin",
            "key",
            "limit",
            "BKX",
            "--bandwidth",
            "10MiB/s"
        ])
        .is_ok());
    }

    #[test]
    fn admin_arguments_parse() {
        let cli = Cli::try_parse_from([
            "blobctl",
            "admin",
            "decommission",
            "0A0B0C0D0E0F1011",
            "--json",
        ])
        .unwrap_or_else(|e| panic!("{e}"));
        match cli.command {
            Command::Admin {
                command: AdminCommand::Decommission { node, json },
            } => {
                assert_eq!(node.to_string(), "0a0b0c0d0e0f1011");
                assert!(json);
            }
            other => panic!("{other:?}"),
        }
        for bad in [
            "xyz",
            "0a0b0c0d0e0f10",
            "0a0b0c0d0e0f1011aa",
            "0a0b0c0d0e0f101g",
        ] {
            let e = match Cli::try_parse_from(["blobctl", "admin", "decommission", bad]) {
                Err(e) => e,
                Ok(c) => panic!("{bad} parsed: {c:?}"),
            };
            assert!(e.use_stderr());
            assert!(e.to_string().contains("16 hex characters"), "{e}");
        }
        let cli = Cli::try_parse_from(["blobctl", "admin", "fsck", "b/pre", "--json"])
            .unwrap_or_else(|e| panic!("{e}"));
        match cli.command {
            Command::Admin {
                command: AdminCommand::Fsck { target, json },
            } => {
                assert_eq!(target.as_deref(), Some("b/pre"));
                assert!(json);
            }
            other => panic!("{other:?}"),
        }
        assert!(Cli::try_parse_from(["blobctl", "admin", "fsck"]).is_ok());
        assert!(Cli::try_parse_from(["blobctl", "admin", "status", "--json"]).is_ok());
        assert!(Cli::try_parse_from(["blobctl", "admin"]).is_err());
    }
}
