#!/usr/bin/env bash
# The 1,000-file tree of the `sync` test (nested directories, 0 bytes to
# 3 chunks + 1 of 64 KiB, most files small) moved by `blobctl cp -r` up and
# down and re-synced with nothing changed, beside `aws s3 cp --recursive`
# and `aws s3 sync` against the S3 gateway of the same cluster, in the same
# run. Prints seconds, files/s and MiB/s per step. A benchmark, not a test:
# it asserts nothing but that every step exits 0 and that the tree comes
# back with the same SHA-256s.
#
#   cargo build --release -p blobd -p blobctl
#   tests/bench/tree-bench.sh            # FILES=1000 by default
#
# Uses $BLOBD and $BLOBCTL when set, else the release binaries under
# $CARGO_TARGET_DIR (or ./target). Starts its own `blobd dev` (3
# datanodes, RF 3, fsync on) on free ports in a temporary directory and
# stops it at the end. `aws` steps are skipped when the AWS CLI is missing.
set -euo pipefail

FILES=${FILES:-1000}
target=${CARGO_TARGET_DIR:-target}/release
BLOBD=${BLOBD:-$target/blobd}
BLOBCTL=${BLOBCTL:-$target/blobctl}
for b in "$BLOBD" "$BLOBCTL"; do
  [ -x "$b" ] || { echo "missing $b: build with cargo build --release -p blobd -p blobctl" >&2; exit 2; }
done

work=$(mktemp -d)
dev_pid=
cleanup() {
  [ -n "$dev_pid" ] && kill "$dev_pid" 2>/dev/null && wait "$dev_pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

"$BLOBD" dev --data "$work/dev" --port 0 --no-edge >"$work/dev.log" 2>&1 &
dev_pid=$!
for _ in $(seq 1 100); do
  [ -s "$work/dev/s3.env" ] && [ -s "$work/dev/client.toml" ] && break
  sleep 0.2
done
[ -s "$work/dev/client.toml" ] || { echo "blobd dev did not start:" >&2; tail "$work/dev.log" >&2; exit 2; }
export BLOBCTL_CONFIG=$work/dev/client.toml
export XDG_CACHE_HOME=$work/cache   # blobctl's sync hash cache, cold at first
set -a; . "$work/dev/s3.env"; set +a
# Wait until the datanodes have registered.
for _ in $(seq 1 100); do "$BLOBCTL" -q mb bench 2>/dev/null && break; sleep 0.2; done

# The tree: the test's shapes and sizes, written an hour ago as far as
# mtimes go (so the first sync may cache its hashes).
python3 - "$work/tree" "$FILES" <<'EOF'
import os, sys, time
root, n = sys.argv[1], int(sys.argv[2])
chunk = 64 << 10
edges = [0, 1, chunk - 1, chunk, chunk + 1, 2 * chunk, 3 * chunk, 3 * chunk + 1]
past = time.time() - 3600
for i in range(n):
    d = ["", f"d{i % 7}/", f"d{i % 7}/e{i % 5}/", f"d{i % 7}/e{i % 5}/f{i % 3}/"][i % 4]
    if i < len(edges):
        size = edges[i]
    elif i % 97 == 0:
        size = (i * 7919) % (3 * chunk + 2)
    else:
        size = (i * 7919) % 4096
    p = os.path.join(root, d, f"file{i:04}.bin")
    os.makedirs(os.path.dirname(p), exist_ok=True)
    with open(p, "wb") as f:
        f.write(os.urandom(size))
    os.utime(p, (past, past))
EOF
bytes=$(find "$work/tree" -type f -printf '%s\n' | awk '{s += $1} END {print s}')
hashes() { (cd "$1" && find . -type f -print0 | sort -z | xargs -0 sha256sum); }
want=$(hashes "$work/tree")

awk -v f="$FILES" -v b="$bytes" 'BEGIN { printf "tree: %d files, %.1f MiB, 64 KiB chunks; 3 datanodes, RF 3, fsync on\n\n", f, b / 1048576 }'
printf '%-44s %8s %10s %9s\n' step seconds files/s MiB/s
step() {
  local name=$1 moved=$2; shift 2
  local t0 t1
  t0=$(date +%s.%N)
  "$@" >"$work/out" 2>"$work/err" || { echo "$name failed:" >&2; cat "$work/err" >&2; exit 2; }
  t1=$(date +%s.%N)
  awk -v n="$name" -v t0="$t0" -v t1="$t1" -v f="$FILES" -v b="$bytes" -v m="$moved" 'BEGIN {
    s = t1 - t0
    if (m) printf "%-44s %8.2f %10.0f %9.1f\n", n, s, f / s, b / 1048576 / s
    else printf "%-44s %8.2f %10s %9s\n", n, s, "-", "-"
  }'
}

step "blobctl cp -r up" 1 "$BLOBCTL" cp -r "$work/tree" bench/tree --chunk-size 64KiB
step "blobctl cp -r down" 1 "$BLOBCTL" cp -r bench/tree "$work/back"
[ "$(hashes "$work/back")" = "$want" ] || { echo "blobctl: the tree came back different" >&2; exit 2; }
unchanged() { grep -q ': 0 sent' "$work/err" || { echo "the re-sync moved files: $(cat "$work/err")" >&2; exit 2; }; }
step "blobctl sync up, no change (cold cache)" 0 "$BLOBCTL" sync "$work/tree" bench/tree
unchanged
step "blobctl sync up, no change" 0 "$BLOBCTL" sync "$work/tree" bench/tree
unchanged
step "blobctl sync down, no change" 0 "$BLOBCTL" sync bench/tree "$work/back"
unchanged

if command -v aws >/dev/null; then
  aws s3 mb s3://bench-aws >/dev/null
  step "aws s3 cp --recursive up" 1 aws s3 cp --recursive --only-show-errors "$work/tree" s3://bench-aws/tree
  step "aws s3 cp --recursive down" 1 aws s3 cp --recursive --only-show-errors s3://bench-aws/tree "$work/back-aws"
  [ "$(hashes "$work/back-aws")" = "$want" ] || { echo "aws: the tree came back different" >&2; exit 2; }
  step "aws s3 sync up, no change" 0 aws s3 sync --no-progress "$work/tree" s3://bench-aws/tree
  [ ! -s "$work/out" ] || { echo "aws s3 sync moved files" >&2; exit 2; }
else
  echo "(aws CLI not found: its steps skipped)"
fi
