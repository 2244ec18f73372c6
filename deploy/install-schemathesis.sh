#!/usr/bin/env bash
# Installs schemathesis (the OpenAPI conformance fuzzer that
# deploy/schemathesis.sh runs) from PyPI into a virtualenv in the cache
# outside the clone, once per pinned version; later runs reuse it.
# Prints the path of its `st` command on standard output.
set -euo pipefail
version=4.32.5
venv="$(bash "$(dirname "$0")/install-pypi.sh" schemathesis "$version" "schemathesis-$version")"
echo "$venv/bin/st"
