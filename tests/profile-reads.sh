#!/usr/bin/env bash
# Profiles the read paths on a `blobd dev --processes` cluster (3
# datanodes, RF 3, fsync on, the edge in zone `local`), each on a fresh
# object of SIZE_MIB so that every edge read is a miss:
#   direct   blobctl download to /dev/null, straight from the datanodes
#   edge     blobctl download to /dev/null through the edge (cold)
#   file     blobctl download to a local file, straight from the datanodes
#   s3       aws s3 cp to a local file through the gateway (edge cold)
# For each it writes OUTDIR/PATH.txt: wall time, CPU seconds per process
# (from /proc, per GiB moved) and perf's hottest symbols system-wide.
#
# Usage: tests/profile-reads.sh BLOBD BLOBCTL OUTDIR [SIZE_MIB]
# (BLOBD and BLOBCTL: two builds' binaries give a before and an after.)
set -euo pipefail
BLOBD=$(realpath "$1")
BLOBCTL=$(realpath "$2")
OUT=$3
MIB=${4:-1024}
mkdir -p "$OUT"
OUT=$(realpath "$OUT")
D=$(mktemp -d /tmp/profile-reads.XXXXXX)
"$BLOBD" dev --data "$D" --port 0 --processes >"$OUT/dev.log" 2>&1 &
DEV=$!
trap 'kill $DEV 2>/dev/null; wait $DEV 2>/dev/null; rm -rf "$D"' EXIT
for _ in $(seq 300); do
  [ -f "$D/s3.env" ] && break
  sleep 0.2
done
[ -f "$D/s3.env" ] || { echo "the dev cluster did not start; see $OUT/dev.log" >&2; exit 1; }
EDGE_CFG=$D/client.toml
DIRECT_CFG=$D/direct.toml
{ grep -v '^zone' "$EDGE_CFG"; echo 'no_edge = true'; } >"$DIRECT_CFG"
set -a
# shellcheck disable=SC1091
. "$D/s3.env"
set +a
ctl() { "$BLOBCTL" --config "$DIRECT_CFG" -q "$@"; }
ctl mb prof
input=$D/input.bin

# CPU ticks of every process of the cluster (and of the client, once it
# ends) as "name ticks" lines.
cluster_ticks() {
  for p in $(pgrep -f "$D" || true); do
    [ -r "/proc/$p/stat" ] || continue
    local name
    name=$(tr '\0' ' ' <"/proc/$p/cmdline" | awk '{print $2}')
    awk -v n="$name" '{print n, $14 + $15}' "/proc/$p/stat" 2>/dev/null || true
  done | awk '{t[$1] += $2} END {for (n in t) print n, t[n]}' | sort
}

profile() {
  local name=$1
  shift
  head -c $((MIB << 20)) /dev/urandom >"$input"
  ctl upload "$input" "prof/$name.bin"
  local before after start end hz
  hz=$(getconf CLK_TCK)
  before=$(cluster_ticks)
  start=$(date +%s.%N)
  perf record -q -a -F 199 -o "$OUT/$name.perf" -- "$@" >/dev/null 2>"$OUT/$name.err"
  end=$(date +%s.%N)
  after=$(cluster_ticks)
  {
    echo "path: $name ($MIB MiB)"
    echo "command: $*"
    awk -v a="$start" -v b="$end" -v m="$MIB" 'BEGIN {printf "wall %.2f s, %.1f MiB/s\n", b - a, m / (b - a)}'
    echo "CPU seconds per GiB, by process (services; the client is in perf's table):"
    join <(echo "$before") <(echo "$after") |
      awk -v hz="$hz" -v m="$MIB" '{printf "  %-10s %6.2f\n", $1, ($3 - $2) / hz * 1024 / m}' || true
    echo "perf, share of all samples by command:"
    perf report -q -i "$OUT/$name.perf" --no-children --sort comm --stdio -g none 2>/dev/null |
      grep -v '^$' | head -8 || true
    echo "perf, hottest symbols:"
    perf report -q -i "$OUT/$name.perf" --no-children --sort comm,sym --stdio -g none 2>/dev/null |
      grep -v '^$' | head -25 || true
  } >"$OUT/$name.txt"
  rm -f "$OUT/$name.perf" "$input"
  cat "$OUT/$name.txt"
}

profile direct "$BLOBCTL" --config "$DIRECT_CFG" -q download prof/direct.bin /dev/null
profile edge "$BLOBCTL" --config "$EDGE_CFG" -q download prof/edge.bin /dev/null
profile file "$BLOBCTL" --config "$DIRECT_CFG" -q download prof/file.bin "$D/out.bin"
rm -f "$D/out.bin"
profile s3 aws s3 cp --no-progress s3://prof/s3.bin "$D/out.bin"
rm -f "$D/out.bin"
