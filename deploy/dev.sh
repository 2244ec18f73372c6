#!/usr/bin/env bash
# The Quick start entry point: `bash deploy/dev.sh demo` or `bash deploy/dev.sh test`
# (and `bash deploy/dev.sh bench [tally bench options]` for the benchmark).
# Installs what the project needs (Apache Kafka from Maven Central, once;
# Debian's PostgreSQL server packages when no server is there), then runs the
# demo on the embedded default or the whole test suite. Builds go to a cache
# outside the clone ($CARGO_TARGET_DIR, default ~/.cache/tally/target).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tally/target}"
export TALLY_CACHE_DIR="${TALLY_CACHE_DIR:-$HOME/.cache/tally}"

bash deploy/install-kafka.sh
bash deploy/install-postgres.sh
# Kafka's TLS and SASL in librdkafka are built against OpenSSL's headers;
# the secure-connection test makes its certificates with `openssl`.
if ! pkg-config --exists openssl 2>/dev/null || ! command -v openssl >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "build: installing OpenSSL's headers (Debian: libssl-dev pkg-config openssl)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libssl-dev pkg-config openssl >/dev/null
  else
    echo "build: OpenSSL's headers are missing: install libssl-dev, pkg-config and openssl" >&2
    exit 1
  fi
fi

case "${1:-}" in
  demo)
    shift
    cargo build -p tally
    exec "$CARGO_TARGET_DIR/debug/tally" demo "$@"
    ;;
  test)
    shift
    # The bill-page test drives a real headless Chromium (Debian's package).
    if [ -z "${TALLY_CHROMIUM:-}" ] && ! command -v chromium >/dev/null; then
      if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "tests: installing Chromium (Debian package) for the bill-page test"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
      else
        echo "tests: the bill-page test needs Chromium: install Debian's 'chromium' package or set TALLY_CHROMIUM" >&2
        exit 1
      fi
    fi
    cargo build -p tally --bins
    tally="$CARGO_TARGET_DIR/debug/tally"
    export RUST_LOG="${RUST_LOG:-warn}"
    # One PostgreSQL server, one Kafka node and one three-node cluster (for
    # the failover tests) serve the whole run; each test makes its own
    # database and its own topic and consumer-group prefixes.
    run="${TALLY_DATA_DIR:-.tally}/test-run"
    "$tally" local stop-kafka --dir "$run/kafka" 2>/dev/null || true
    "$tally" local stop-kafka --dir "$run/cluster" 2>/dev/null || true
    rm -rf "$run"
    mkdir -p "$run"
    run=$(cd "$run" && pwd) # absolute: tests run in their package's folder
    # Every test database of this run is named after it and dropped at the end.
    export TALLY_TEST_RUN
    TALLY_TEST_RUN=$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')
    stop_brokers() {
      "$tally" local stop-kafka --dir "$run/kafka" || true
      "$tally" local stop-kafka --dir "$run/cluster" || true
      if [ -n "${DATABASE_URL:-}" ]; then
        "$tally" local drop-test-databases --run "$TALLY_TEST_RUN" || true
      fi
    }
    trap stop_brokers EXIT
    export DATABASE_URL KAFKA_BROKERS
    if [ -z "${DATABASE_URL:-}" ]; then
      postgres=$("$tally" local postgres)
      eval "$postgres"
    fi
    kafka=$("$tally" local kafka --dir "$run/kafka" --port "${TALLY_TEST_KAFKA_PORT:-19092}" \
      --secure-port "${TALLY_TEST_KAFKA_SECURE_PORT:-19094}")
    eval "$kafka"
    "$tally" local kafka --dir "$run/cluster" --nodes 3 --port "${TALLY_TEST_CLUSTER_PORT:-19192}" >/dev/null
    export TALLY_TEST_KAFKA="$run/kafka" TALLY_TEST_CLUSTER="$run/cluster" TALLY_TEST_REPORT="$run/figures.txt"
    echo "tests: Kafka $KAFKA_BROKERS; a three-node cluster in $TALLY_TEST_CLUSTER"
    cargo test --workspace "$@"
    if [ -f "$TALLY_TEST_REPORT" ]; then
      echo "tests: figures of the crash and failover tests"
      sed 's/^/  /' "$TALLY_TEST_REPORT"
    fi
    # The services against their OpenAPI document, with each role's key
    # (schemathesis, installed once into the cache; a database and topics of
    # its own on this run's servers; its reports in $run/schemathesis).
    SCHEMATHESIS_REPORT_DIR="$run/schemathesis" TALLY_BIN="$tally" bash deploy/schemathesis.sh
    # A small benchmark run: it checks that every invoice is exact under
    # load, not speed (figures are recorded in BENCHMARKS.md from full runs).
    "$tally" bench --smoke
    ;;
  bench)
    shift
    cargo build --release -p tally
    exec "$CARGO_TARGET_DIR/release/tally" bench "$@"
    ;;
  *)
    echo "usage: bash deploy/dev.sh demo|test|bench" >&2
    exit 2
    ;;
esac
