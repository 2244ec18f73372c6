#!/usr/bin/env bash
# Installs a pinned Python package from PyPI into a virtualenv of its own
# in the cache outside the clone ($TALLY_CACHE_DIR, default
# ~/.cache/tally), once; later runs reuse it. Needs python3 with venv.
#
#   bash deploy/install-pypi.sh PACKAGE VERSION VENV_NAME
#
# Prints the virtualenv's directory on standard output.
set -euo pipefail
package="$1"
version="$2"
cache="${TALLY_CACHE_DIR:-$HOME/.cache/tally}"
venv="$cache/$3"
# The stamp is written last, so an interrupted install is redone.
if [ ! -f "$venv/.installed" ]; then
  echo "$package: installing $package $version from PyPI into $venv (once)" >&2
  rm -rf "$venv"
  mkdir -p "$cache"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check "$package==$version" >&2
  touch "$venv/.installed"
fi
echo "$venv"
