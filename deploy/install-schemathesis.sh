#!/usr/bin/env bash
# Installs schemathesis (the OpenAPI conformance fuzzer that
# deploy/schemathesis.sh runs) from PyPI into a virtualenv in the cache
# outside the clone, once per pinned version; later runs reuse it.
# Prints the path of its `st` command on standard output.
set -euo pipefail
version=4.32.5
cache="${TALLY_CACHE_DIR:-$HOME/.cache/tally}"
venv="$cache/schemathesis-$version"
# The stamp is written last, so an interrupted install is redone.
if [ ! -f "$venv/.installed" ]; then
  echo "schemathesis: installing schemathesis $version from PyPI into $venv (once)" >&2
  rm -rf "$venv"
  mkdir -p "$cache"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check "schemathesis==$version" >&2
  touch "$venv/.installed"
fi
echo "$venv/bin/st"
