#!/usr/bin/env bash
# Installs what building and testing blobstore needs, skipping whatever is
# already present. Safe to run any number of times.
set -euo pipefail

need=()
have_pkg() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }

# RocksDB's Rust bindings are generated with bindgen, which needs libclang;
# RocksDB itself is compiled from source with the C++ compiler.
# iproute2: the partition test puts a datanode in a network namespace.
# fuse3 (fusermount3) mounts `blobctl mount`; ffmpeg drives the mount's
# video-pipeline tests; headless chromium loads a page that fetches from
# the S3 gateway on another origin (CORS).
for pkg in libclang-dev g++ make pkg-config iproute2 fuse3 ffmpeg chromium; do
  have_pkg "$pkg" || need+=("$pkg")
done

if [ ${#need[@]} -gt 0 ]; then
  echo "installing: ${need[*]}" >&2
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "cargo is missing: install the Rust toolchain (https://rustup.rs) and run this again" >&2
  exit 1
fi
# CI checks formatting and lints with the toolchain's own tools.
for component in rustfmt clippy; do
  if ! cargo "${component/rustfmt/fmt}" --version >/dev/null 2>&1; then
    if command -v rustup >/dev/null 2>&1; then
      echo "installing the $component component" >&2
      rustup component add "$component"
    else
      echo "cargo $component is missing and rustup is not there to add it" >&2
      exit 1
    fi
  fi
done

# The S3 tests drive real clients: the AWS CLI, curl, and boto3 (latest,
# in a virtualenv under ~/.cache/blobstore/venv).
s3_need=()
command -v aws >/dev/null 2>&1 || s3_need+=(awscli)
command -v curl >/dev/null 2>&1 || s3_need+=(curl)
python3 -m venv --help >/dev/null 2>&1 || s3_need+=(python3-venv)
if [ ${#s3_need[@]} -gt 0 ]; then
  echo "installing: ${s3_need[*]}" >&2
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${s3_need[@]}" >/dev/null
fi
venv="${HOME}/.cache/blobstore/venv"
if ! "$venv/bin/python" -c 'import boto3' >/dev/null 2>&1; then
  echo "installing boto3 into $venv" >&2
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --upgrade boto3
fi
