#!/usr/bin/env bash
# The benchmark at scale (issue 19): runs `tally bench` over a grid, one
# knob varied at a time from a base, appends each run's report as a JSON
# line to a results file, then writes the growth tables (markdown) and the
# curves (PNG) from it.
#
#   bash deploy/bench-sweep.sh [--grid full|shape|small] [--results FILE] [--out DIR] [-- bench args…]
#
# --grid full (default): base 10,000 accounts, 4 × 5 SKUs, an account using
#   at most 5 SKUs of each provider (`--lines 5`: 20 lines a statement), no
#   history, no contracts, Zipf 1.0, 1,000,000 events; then accounts 1,000,
#   100,000 and 1,000,000; SKUs 1,000 and 10,000 (4 providers × 250,
#   × 2,500; usage spread over all of them, each account on its 20); history
#   1, 3 and 12 months; contracts on 30 % and 100 % of the accounts. (With
#   no `--lines` bound and 10,000 SKUs, the Zipf head's statement outgrows
#   the broker's largest message: rating cannot publish it.)
# --grid shape: the shape of the load, from a base of 10,000 accounts, 4 ×
#   250 SKUs, 5 lines of each provider a statement (20), Zipf 1.0,
#   1,000,000 events: 1, 25 and 100 lines of each provider (4, 100 and 400
#   lines a statement); Zipf 0 (usage even over the accounts) and 1.5; a
#   credit grant on every account (`--grants`).
# --grid small: a check of the tools, not a measurement: base 1,000
#   accounts, 20,000 events; accounts 10,000; SKUs 100; history 1 month;
#   contracts 30 %; 2 lines of each provider; grants.
# --results FILE: the results file (default docs/bench/results.jsonl);
#   lines are appended, so a sweep can be resumed or extended. The first
#   line is the base of the tables and the plot.
# --out DIR: where growth.md and growth.png go (default docs/bench).
# Arguments after -- go to every run (e.g. --private-broker, --grants).
#
# TALLY_BIN: the tally binary (default: a release build, built here).
# BENCH_EVENTS overrides the events per run. The plot needs matplotlib,
# installed once by deploy/install-matplotlib.sh into ~/.cache/tally.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tally/target}"

grid=full
results=docs/bench/results.jsonl
out=docs/bench
while [ $# -gt 0 ]; do
  case "$1" in
    --grid) grid="$2"; shift 2 ;;
    --results) results="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --) shift; break ;;
    *) echo "bench-sweep: unknown argument $1" >&2; exit 2 ;;
  esac
done
extra=("$@")

if [ -z "${TALLY_BIN:-}" ]; then
  cargo build --release -p tally
  TALLY_BIN="$CARGO_TARGET_DIR/release/tally"
fi

# Each run's knobs: the base's, with one changed.
declare -A base
case "$grid" in
  full)
    base=([accounts]=10000 [providers]=4 [skus]=5 [lines]=5 [zipf]=1.0
          [events]="${BENCH_EVENTS:-1000000}")
    variations=(
      "accounts 1000" "accounts 100000" "accounts 1000000"
      "skus 250" "skus 2500"
      "history-months 1" "history-months 3" "history-months 12"
      "contracts 30" "contracts 100"
    )
    ;;
  shape)
    # 250 SKUs a provider, so that `--lines` (SKUs an account uses of
    # each) can grow: 4 providers × lines a statement.
    base=([accounts]=10000 [providers]=4 [skus]=250 [lines]=5 [zipf]=1.0
          [events]="${BENCH_EVENTS:-1000000}")
    variations=("lines 1" "lines 25" "lines 100" "zipf 0" "zipf 1.5" "grants")
    ;;
  small)
    base=([accounts]=1000 [providers]=4 [skus]=5 [zipf]=1.0 [events]="${BENCH_EVENTS:-20000}"
          [kafka-events]=2000 [freshness-rate]=1000 [freshness-seconds]=3 [ceiling-events]=20000
          [batch-size]=500 [concurrency]=4)
    variations=("accounts 10000" "skus 25" "history-months 1" "contracts 30" "lines 2" "grants")
    ;;
  *) echo "bench-sweep: --grid full, shape or small" >&2; exit 2 ;;
esac

mkdir -p "$(dirname "$results")" "$out"
run() {
  local knob="${1:-}" value="${2:-}" args=() k
  for k in "${!base[@]}"; do
    if [ "$k" != "$knob" ]; then
      args+=("--$k" "${base[$k]}")
    fi
  done
  if [ -n "$value" ]; then
    args+=("--$knob" "$value")
  elif [ -n "$knob" ]; then
    args+=("--$knob") # a flag (`grants`)
  fi
  echo "bench-sweep: tally bench ${args[*]} ${extra[*]}" >&2
  # A run that fails after measuring has its line (its exact invoices say
  # so); the sweep goes on either way.
  "$TALLY_BIN" bench "${args[@]}" "${extra[@]}" --results "$results" ||
    echo "bench-sweep: that run failed" >&2
}
# The base first: the tables and the plot measure from the results file's
# first line (a resumed sweep keeps the base it has).
if [ ! -s "$results" ]; then
  run
fi
for v in "${variations[@]}"; do
  # shellcheck disable=SC2086 # a knob and its value
  run $v
done

"$TALLY_BIN" bench-table "$results" > "$out/growth.md"
python="$(bash deploy/install-matplotlib.sh)"
"$python" deploy/bench-plot.py "$results" "$out/growth.png"
echo "bench-sweep: $results, $out/growth.md, $out/growth.png" >&2
