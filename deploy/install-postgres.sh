#!/usr/bin/env bash
# Makes sure PostgreSQL's server tools are here for the embedded default:
# when no server answers on 127.0.0.1:5432, DATABASE_URL is unset and no
# initdb is installed, installs Debian's server packages (as root), so that
# Tally can `initdb` a private cluster under its data directory.
set -euo pipefail
if [ -n "${DATABASE_URL:-}" ] || (echo > /dev/tcp/127.0.0.1/5432) 2>/dev/null; then
  exit 0
fi
if command -v initdb >/dev/null || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
  echo "postgres: no PostgreSQL answers on 127.0.0.1:5432 and its server is not installed:" >&2
  echo "postgres: install Debian's 'postgresql' package as root, or set DATABASE_URL" >&2
  exit 1
fi
echo "postgres: installing Debian's PostgreSQL server packages (once)"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# The packages' own cluster is not needed: Tally initialises a private one.
mkdir -p /etc/postgresql-common/createcluster.d
echo "create_main_cluster = false" > /etc/postgresql-common/createcluster.d/tally.conf
apt-get install -y -qq postgresql >/dev/null
echo "postgres: installed $(ls /usr/lib/postgresql)"
