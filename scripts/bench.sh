#!/usr/bin/env bash
# Load figures for BENCHMARKS.md: builds the release binary, starts it against the local
# PostgreSQL/Redis with a throw-away database, and drives it with wrk over loopback.
# Usage: scripts/bench.sh [seconds-per-run]   (needs wrk: apt-get install wrk)
set -euo pipefail
cd "$(dirname "$0")/.."
DUR=${1:-10}
PORT=3199
DB=airbar_bench_$$
BYPASS=bench-bypass-token
export AIRBAR_ENV=development DATABASE_URL=postgres://postgres@127.0.0.1:5432/$DB PORT
export AIRBAR__TELEMETRY__LOG_FILTER=warn AIRBAR__RATE_LIMIT__BYPASS_TOKEN=$BYPASS
export AIRBAR__RATE_LIMIT__IP_PER_MINUTE=100000000 AIRBAR__RATE_LIMIT__USER_PER_MINUTE=100000000
export AIRBAR__RATE_LIMIT__AUTH_PER_MINUTE=100000000 AIRBAR__AUTH__MAX_SESSIONS_PER_USER=1000000

cargo build --release --quiet
"${CARGO_TARGET_DIR:-target}"/release/airbar serve >/tmp/airbar-bench.log 2>&1 &
PID=$!
trap 'kill -TERM $PID 2>/dev/null; wait $PID 2>/dev/null; psql -qh 127.0.0.1 -U postgres -c "DROP DATABASE IF EXISTS $DB" >/dev/null' EXIT
BASE=http://127.0.0.1:$PORT
for _ in $(seq 1 100); do curl -fs $BASE/api/live >/dev/null && break; sleep 0.1; done

rss() { awk '/VmRSS/ {print $2 " kB"}' /proc/$PID/status; }
run() { # name, extra wrk args...
  local name=$1; shift
  printf '%-44s' "$name"
  wrk -t2 -c32 -d"${DUR}s" --latency "$@" 2>&1 \
    | awk '/Requests\/sec/ {rps=$2} /^ +50%/ {p50=$2} /^ +99%/ {p99=$2} /Non-2xx/ {bad=$NF}
           END {printf "%10s req/s  p50 %8s  p99 %8s  non-2xx %s\n", rps, p50, p99, bad+0}'
}

echo "idle RSS after start: $(rss)"
run "GET /api/live" $BASE/api/live
echo "RSS: $(rss)"
run "GET /api/ready (PostgreSQL + Redis ping)" $BASE/api/ready
echo "RSS: $(rss)"

EMAIL=bench-$$@example.com
AUTH=$(curl -fs -H "X-RateLimit-Bypass: $BYPASS" -H 'content-type: application/json' \
  -d "{\"email\":\"$EMAIL\",\"password\":\"correct horse battery\",\"display_name\":\"Bench\"}" $BASE/api/auth/register)
TOKEN=$(echo "$AUTH" | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')

run "GET /api/users/me (rate limited, Redis GCRA)" -H "Authorization: Bearer $TOKEN" $BASE/api/users/me
run "GET /api/users/me (limiter bypassed)" -H "Authorization: Bearer $TOKEN" -H "X-RateLimit-Bypass: $BYPASS" $BASE/api/users/me
echo "RSS: $(rss)"

cat >/tmp/airbar-login.lua <<LUA
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"email":"$EMAIL","password":"correct horse battery"}'
LUA
run "POST /api/auth/login (argon2id 19 MiB, t=2)" -s /tmp/airbar-login.lua $BASE/api/auth/login
printf '%-44s' "one login, sequential (hashing time bound)"
wrk -t1 -c1 -d"${DUR}s" --latency -s /tmp/airbar-login.lua $BASE/api/auth/login 2>&1 | awk '/^ +50%/ {print "p50 " $2}'
echo "RSS after load: $(rss)"
run "POST /api/auth/login again" -s /tmp/airbar-login.lua $BASE/api/auth/login
echo "RSS after a second login load: $(rss)"
