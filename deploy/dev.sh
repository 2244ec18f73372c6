#!/usr/bin/env bash
# The Quick start entry point: `bash deploy/dev.sh demo` or `bash deploy/dev.sh test`.
# Installs what the project needs (the broker, once), then runs the demo on the
# embedded default or the whole test suite. Builds go to a cache outside the
# clone ($CARGO_TARGET_DIR, default ~/.cache/tally/target).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tally/target}"
export TALLY_CACHE_DIR="${TALLY_CACHE_DIR:-$HOME/.cache/tally}"

bash deploy/install-broker.sh

case "${1:-}" in
  demo)
    shift
    cargo build -p tally
    exec "$CARGO_TARGET_DIR/debug/tally" demo "$@"
    ;;
  test)
    shift
    cargo build -p tally --bins
    exec cargo test --workspace "$@"
    ;;
  *)
    echo "usage: bash deploy/dev.sh demo|test" >&2
    exit 2
    ;;
esac
