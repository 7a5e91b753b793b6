#!/usr/bin/env bash
# Installs what is missing, checks formatting and lints (rustfmt, clippy
# with warnings as errors), builds, and runs the whole test suite: unit
# tests of every crate and the whole-cluster tests (real processes on
# 127.0.0.1 ephemeral ports). Extra arguments go to `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash deploy/install-deps.sh
source deploy/env.sh
# Whole-cluster tests start real processes with short liveness intervals;
# one at a time on a 2-core machine keeps a loaded CPU from making a live
# node look dead. Override with RUST_TEST_THREADS.
export RUST_TEST_THREADS="${RUST_TEST_THREADS:-1}"
# One profile (release) for everything: RocksDB is compiled once.
echo "== cargo fmt --check" >&2
cargo fmt --all --check
echo "== cargo clippy" >&2
cargo clippy --release --workspace --all-targets -- -D warnings
echo "== cargo test" >&2
cargo test --release --workspace "$@"
