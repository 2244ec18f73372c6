#!/usr/bin/env bash
# Landed migrations are never edited: each one's SHA-256 is recorded in
# .ci/migrations.sha256 when it lands, and this check fails when a recorded
# file changed or went away, or when a migration is not recorded yet (record
# a new one with: (cd migrations && sha256sum NEW.sql >> ../.ci/migrations.sha256)).
set -euo pipefail
cd "$(dirname "$0")/../migrations"
if ! sha256sum --quiet --strict -c ../.ci/migrations.sha256; then
  echo "migrations: a landed migration changed or is missing; add a new migration instead" >&2
  exit 1
fi
for file in *.sql; do
  if ! grep -q "  $file\$" ../.ci/migrations.sha256; then
    echo "migrations: $file is not recorded in .ci/migrations.sha256" >&2
    exit 1
  fi
done
echo "migrations: $(wc -l < ../.ci/migrations.sha256) landed, none changed"
