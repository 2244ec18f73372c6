#!/usr/bin/env bash
# Installs matplotlib (which deploy/bench-plot.py draws the sweep's curves
# with; it brings its own fonts) from PyPI into a virtualenv in the cache
# outside the clone, once per pinned version; later runs reuse it.
# Prints the path of the virtualenv's python on standard output.
set -euo pipefail
version=3.10.7
venv="$(bash "$(dirname "$0")/install-pypi.sh" matplotlib "$version" "venv-matplotlib-$version")"
echo "$venv/bin/python"
