#!/usr/bin/env bash
# Installs what is missing, builds, and starts a local cluster (a namenode
# and three datanodes) with data under ./.blobstore. Extra arguments go to
# `blobd dev`, e.g. `deploy/dev.sh --datanodes 4 --processes`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash deploy/install-deps.sh
source deploy/env.sh
cargo build --release --bin blobd --bin blobctl
mkdir -p "$HOME/.local/bin"
ln -sf "$CARGO_TARGET_DIR/release/blobctl" "$HOME/.local/bin/blobctl"
ln -sf "$CARGO_TARGET_DIR/release/blobd" "$HOME/.local/bin/blobd"
echo "blobctl and blobd are linked into ~/.local/bin" >&2
exec "$CARGO_TARGET_DIR/release/blobd" dev "$@"
