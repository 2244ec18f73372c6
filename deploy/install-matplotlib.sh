#!/usr/bin/env bash
# Installs matplotlib (which deploy/bench-plot.py draws the sweep's curves
# with) from PyPI into a virtualenv in the cache outside the clone, once
# per pinned version; later runs reuse it. Needs python3 with venv.
# Prints the path of the virtualenv's python on standard output.
set -euo pipefail
version=3.10.7
cache="${TALLY_CACHE_DIR:-$HOME/.cache/tally}"
venv="$cache/venv-matplotlib-$version"
# The stamp is written last, so an interrupted install is redone.
if [ ! -f "$venv/.installed" ]; then
  echo "matplotlib: installing matplotlib $version from PyPI into $venv (once)" >&2
  rm -rf "$venv"
  mkdir -p "$cache"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check "matplotlib==$version" >&2
  touch "$venv/.installed"
fi
echo "$venv/bin/python"
