#!/usr/bin/env bash
# Installs what building and testing blobstore needs, skipping whatever is
# already present. Safe to run any number of times.
set -euo pipefail

need=()
have_pkg() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }

# RocksDB's Rust bindings are generated with bindgen, which needs libclang;
# RocksDB itself is compiled from source with the C++ compiler.
for pkg in libclang-dev g++ make pkg-config; do
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
