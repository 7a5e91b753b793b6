//! Whole-cluster tests and benchmarks: real `blobd` processes on 127.0.0.1
//! ephemeral ports, started through `blobd::cluster`, the launcher
//! `blobd dev` uses too.
//!
//! - `cluster`: [`TestCluster`] and its [`Builder`]: what runs, with which
//!   flags and intervals; started, awaited, and torn down (or kept, with
//!   each service's last log lines, when a test fails).
//! - `faults`: SIGKILL and restart of single services, corrupt chunks.
//! - `netns`: a datanode in its own network namespace, and a link to cut.
//! - `observe`: liveness, status, fsck, chunk files and metrics.
//! - `mount`: `blobctl mount` in the foreground.
//! - `proxy`: a recording proxy in front of the namenode, which can also
//!   make replicas serve flipped bytes.
//! - `util`: waiting for conditions, test data, hashes, test logs.
//! - `bench`: what the benchmark programs share.

pub mod bench;
mod cluster;
mod faults;
mod mount;
mod netns;
mod observe;
mod proxy;
mod util;

pub use blobd::cluster::{tail, Service};
pub use cluster::{Builder, EdgeSpec, TestCluster, TEST_MIN_PART_SIZE};
pub use mount::Mount;
pub use observe::metric_value;
pub use proxy::{Call, Garble, NamenodeProxy};
pub use util::{init_logs, random_bytes, sha256_file, sha256_hex, wait_until};
