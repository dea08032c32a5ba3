#!/usr/bin/env bash
# Ledger figures for BENCHMARKS.md: postings/s through services::ledger::post and the invariant
# check over a million transfers, on a throw-away database.
# Usage: scripts/bench_ledger.sh [postings] [connections] [seed_transfers]
set -euo pipefail
cd "$(dirname "$0")/.."
DB=airbar_bench_ledger_$$
URL=postgres://postgres@127.0.0.1:5432/$DB
BIN=${CARGO_TARGET_DIR:-target}/release
trap 'psql -qh 127.0.0.1 -U postgres -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null' EXIT
cargo build --release --quiet --bin airbar --example ledger_bench
AIRBAR_ENV=development DATABASE_URL=$URL AIRBAR__TELEMETRY__LOG_FILTER=warn "$BIN"/airbar migrate
"$BIN"/examples/ledger_bench "$URL" "${1:-20000}" "${2:-8}" "${3:-1000000}"
