#!/usr/bin/env bash
# Installs the local Kafka-compatible broker (Tansu 0.6.0, built from crates.io)
# once, into a cache outside the clone: $TALLY_CACHE_DIR or ~/.cache/tally.
# The first build takes about 15 minutes on 2 cores; later runs return at once.
set -euo pipefail
version=0.6.0
cache="${TALLY_CACHE_DIR:-$HOME/.cache/tally}"
root="$cache/tansu-$version"
if [ -x "$root/bin/tansu" ]; then
  echo "broker: $root/bin/tansu (cached)"
  exit 0
fi
mkdir -p "$cache"
echo "broker: building Tansu $version into $root (once; about 15 minutes)"
cargo install --quiet --root "$root" tansu --version "$version" --locked --features dynostore,libsql
echo "broker: installed $root/bin/tansu"
