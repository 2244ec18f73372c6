#!/usr/bin/env bash
# Checks the running services against their OpenAPI document
# (schemas/openapi.json) with schemathesis: every operation, with every
# role's key and with none, generated valid and invalid requests; any server
# error, undocumented status code or content type, or a body that breaks the
# document's schema fails the run.
#
# Needs DATABASE_URL (a server on which it creates its own database) and
# KAFKA_BROKERS (it uses topics and groups of its own prefix): `deploy/dev.sh
# test` runs it after `cargo test`, on the test run's servers. It starts the
# real `tally up` ($TALLY_BIN, default $CARGO_TARGET_DIR/debug/tally), seeds a
# catalog, one key per role and a little usage through the collector, then
# runs schemathesis on the document as the API serves it, once per key,
# each operation on its own server (the collector, the API, the admin address).
# SCHEMATHESIS_MAX_EXAMPLES (default 15) bounds the requests per operation;
# SCHEMATHESIS_REPORT_DIR keeps the reports (a .log and a JUnit .xml per key).
set -euo pipefail
cd "$(dirname "$0")/.."
: "${DATABASE_URL:?DATABASE_URL names the PostgreSQL server to use}"
: "${KAFKA_BROKERS:?KAFKA_BROKERS names the Kafka brokers to use}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tally/target}"
tally="${TALLY_BIN:-$CARGO_TARGET_DIR/debug/tally}"
st=$(bash deploy/install-schemathesis.sh)
python="$(dirname "$st")/python"
start=$(date +%s)

run_id=$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')
work=$(mktemp -d)
server_url=$DATABASE_URL
database="tally_schemathesis_$run_id"
DATABASE_URL=$("$python" - "$server_url" "$database" <<'PY'
import sys, urllib.parse as u
url = u.urlsplit(sys.argv[1])
print(u.urlunsplit(url._replace(path="/" + sys.argv[2])))
PY
)
export DATABASE_URL
export TALLY_TOPIC_PREFIX="schemathesis-$run_id." TALLY_GROUP_PREFIX="schemathesis-$run_id"
export TALLY_COLLECTOR_ADDR=127.0.0.1:0 TALLY_API_ADDR=127.0.0.1:0 TALLY_ADMIN_ADDR=127.0.0.1:0
export RUST_LOG="${RUST_LOG:-warn}"

up_pid=
finish() {
  if [ -n "$up_pid" ]; then
    kill "$up_pid" 2>/dev/null || true
    wait "$up_pid" 2>/dev/null || true
  fi
  if command -v psql >/dev/null; then
    psql -q "$("$python" - "$server_url" <<'PY'
import sys, urllib.parse as u
print(u.urlunsplit(u.urlsplit(sys.argv[1])._replace(path="/postgres")))
PY
)" -c "DROP DATABASE IF EXISTS \"$database\" WITH (FORCE)" >/dev/null 2>&1 || true
  fi
  rm -rf "$work"
}
trap finish EXIT

# The catalog and one key per role (each command prints its key last).
key() { "$@" | awk '{print $NF}'; }
"$tally" migrate >/dev/null
admin=$(key "$tally" create-key --role admin)
finance=$(key "$tally" create-key --role finance)
provider=$(key "$tally" create-provider --id dbco --name "DB Co" --kind partner --platform-fee-pct 20)
customer=$(key "$tally" create-account --id acme --name "Acme" --currency USD)
"$tally" create-sku --id dbco.storage --provider dbco --name Storage --unit GB >/dev/null
"$tally" set-price --sku dbco.storage --currency USD --unit-price 0.25 \
  --effective-from 2020-01-01T00:00:00Z >/dev/null

"$tally" up >"$work/up.out" 2>"$work/up.err" &
up_pid=$!
for _ in $(seq 1 120); do
  grep -q '^admin ' "$work/up.out" 2>/dev/null && break
  kill -0 "$up_pid" 2>/dev/null || { cat "$work/up.err" >&2; echo "schemathesis: tally up exited" >&2; exit 1; }
  sleep 0.5
done
collector=$(awk '$1 == "collector" {print $2}' "$work/up.out")
api=$(awk '$1 == "api" {print $2}' "$work/up.out")
admin_url=$(awk '$1 == "admin" {print $2}' "$work/up.out")
[ -n "$collector" ] && [ -n "$api" ] && [ -n "$admin_url" ] \
  || { cat "$work/up.err" >&2; echo "schemathesis: tally up did not start" >&2; exit 1; }

# A little usage, so that lists and bills have something in them.
now=$(date -u +%Y-%m-%dT%H:%M:%SZ)
curl -sf -o /dev/null -H "Authorization: Bearer $provider" \
  -H 'content-type: application/cloudevents-batch+json' "$collector/v1/events" --data-binary @- <<JSON
[{"specversion":"1.0","id":"e1","source":"dbco","type":"usage","subject":"acme","time":"$now","data":{"sku":"dbco.storage","quantity":"12.5"}},
 {"specversion":"1.0","id":"e2","source":"dbco","type":"usage","subject":"acme","time":"$now","data":{"sku":"dbco.storage","quantity":3}}]
JSON
for _ in $(seq 1 60); do
  curl -sf -H "Authorization: Bearer $finance" "$api/v1/invoices" | grep -q '"acme"' && break
  sleep 0.5
done

# The document as the API serves it (with the event schemas it refers to
# beside it): the operations without servers of their own are on the API,
# the others on the server their path names (schemathesis.toml).
document="$api/openapi.json"
export TALLY_ST_COLLECTOR=${collector#http://} TALLY_ST_API=${api#http://} TALLY_ST_ADMIN=${admin_url#http://}
report_dir=${SCHEMATHESIS_REPORT_DIR:-$work}
mkdir -p "$report_dir"
failed=()
for role in admin finance provider customer none; do
  case $role in
    admin) key=$admin ;; finance) key=$finance ;; provider) key=$provider ;; customer) key=$customer ;; none) key= ;;
  esac
  auth=()
  [ -n "$key" ] && auth=(-H "Authorization: Bearer $key")
  "$st" --config-file deploy/schemathesis.toml run "$document" "${auth[@]}" \
    --max-examples "${SCHEMATHESIS_MAX_EXAMPLES:-15}" --workers 1 --no-color \
    --report junit --report-junit-path "$report_dir/$role.xml" \
    >"$report_dir/$role.log" 2>&1 || failed+=("$role")
done

if [ ${#failed[@]} -gt 0 ]; then
  for role in "${failed[@]}"; do
    echo "schemathesis: with the $role key:" >&2
    sed 's/^/  /' "$report_dir/$role.log" >&2
  done
  echo "schemathesis: tally up's log:" >&2
  sed 's/^/  /' "$work/up.err" >&2
  exit 1
fi
echo "schemathesis: every operation answers as schemas/openapi.json says, with each role's key and none ($(( $(date +%s) - start ))s)"
