# Sourced by the scripts: one build directory outside the clone, so that the
# RocksDB build (about 11 minutes) is paid once per machine, not per clone.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/blobstore/target}"
