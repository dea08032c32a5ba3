#!/usr/bin/env bash
# Notification figures for BENCHMARKS.md: enqueue cost on the triggering request and emails
# sent per second through the outbox worker, each against its baseline, on a throw-away
# database and the local SMTP stand-in.
# Usage: scripts/bench_notify.sh [messages] [batch]
set -euo pipefail
cd "$(dirname "$0")/.."
DB=airbar_bench_notify_$$
URL=postgres://postgres@127.0.0.1:5432/$DB
BIN=${CARGO_TARGET_DIR:-target}/release
SINK_DIR=$(mktemp -d)
SMTP_PORT=$((20000 + $$ % 10000))
SMS_PORT=$((SMTP_PORT + 1))
python3 -c 'import aiosmtpd' 2>/dev/null || python3 -m pip install --quiet 'aiosmtpd==1.4.6'
python3 scripts/notify_sinks.py --dir "$SINK_DIR" --smtp-port $SMTP_PORT --sms-port $SMS_PORT >/dev/null &
SINKS=$!
cleanup() {
  kill $SINKS 2>/dev/null || true
  rm -rf "$SINK_DIR"
  psql -qh 127.0.0.1 -U postgres -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null
}
trap cleanup EXIT
cargo build --release --quiet --example notify_bench
"$BIN"/examples/notify_bench "$URL" $SMTP_PORT "${1:-5000}" "${2:-64}"
echo "mails received by the stand-in: $(ls "$SINK_DIR" | grep -c '^mail-.*\.json$')"
