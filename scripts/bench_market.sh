#!/usr/bin/env bash
# Marketplace figures for BENCHMARKS.md: seeds 100 000 trips into a throw-away database, shows
# the query plans of the trip searches (the index check), then measures search latency and
# GET /api/trips/{id} against `pgbench -S` on the same machine in the same run.
# Usage: scripts/bench_market.sh [seconds-per-run]   (needs wrk and pgbench)
set -euo pipefail
cd "$(dirname "$0")/.."
DUR=${1:-10}
PORT=3197
DB=airbar_bench_market_$$
PGB=airbar_pgbench_$$
BYPASS=bench-bypass-token
PSQL="psql -qAt -v ON_ERROR_STOP=1 -h 127.0.0.1 -U postgres"
export AIRBAR_ENV=development DATABASE_URL=postgres://postgres@127.0.0.1:5432/$DB PORT
export AIRBAR__TELEMETRY__LOG_FILTER=warn,airbar::startup=info AIRBAR__RATE_LIMIT__BYPASS_TOKEN=$BYPASS

cargo build --release --quiet
"${CARGO_TARGET_DIR:-target}"/release/airbar serve >/tmp/airbar-bench-market.log 2>&1 &
PID=$!
cleanup() {
  kill -TERM $PID 2>/dev/null || true; wait $PID 2>/dev/null || true
  $PSQL -c "DROP DATABASE IF EXISTS $DB" -c "DROP DATABASE IF EXISTS $PGB" >/dev/null
}
trap cleanup EXIT
BASE=http://127.0.0.1:$PORT
for _ in $(seq 1 100); do curl -fs $BASE/api/live >/dev/null && break; sleep 0.1; done

AUTH=$(curl -fs -H "X-RateLimit-Bypass: $BYPASS" -H 'content-type: application/json' \
  -d '{"email":"bench-market@example.com","password":"correct horse battery","display_name":"Bench"}' $BASE/api/auth/register)
TOKEN=$(echo "$AUTH" | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
USER_ID=$(echo "$AUTH" | python3 -c 'import json,sys; print(json.load(sys.stdin)["user"]["id"])')

echo "seeding 100000 trips around 12 hubs..."
$PSQL -d $DB <<SQL
INSERT INTO trips (id, traveler_id, origin_label, origin_country, origin_lat, origin_lng,
                   destination_label, destination_country, destination_lat, destination_lng,
                   departure_at, arrival_at, capacity_grams, price_per_kg, currency, accepted_categories)
SELECT gen_random_uuid(), '$USER_ID', 'o', 'GB', o.lat + (random() - 0.5) * 3, o.lng + (random() - 0.5) * 3,
       'd', 'US', d.lat + (random() - 0.5) * 3, d.lng + (random() - 0.5) * 3,
       t.dep, t.dep + interval '9 hours',
       1 + (random() * 20000)::int, 1500, 'EUR', ARRAY['documents', 'clothing']
FROM generate_series(1, 100000) g
CROSS JOIN LATERAL (SELECT * FROM (VALUES (51.47, -0.46), (40.64, -73.78), (49.01, 2.55), (25.25, 55.36),
  (1.36, 103.99), (35.55, 139.78), (33.94, -118.41), (52.31, 4.76), (50.03, 8.57), (41.98, -87.90),
  (-33.94, 151.18), (19.09, 72.87)) h(lat, lng) OFFSET (g % 12) LIMIT 1) o
CROSS JOIN LATERAL (SELECT * FROM (VALUES (40.64, -73.78), (51.47, -0.46), (25.25, 55.36), (1.36, 103.99),
  (49.01, 2.55), (33.94, -118.41)) h(lat, lng) OFFSET ((g / 12) % 6) LIMIT 1) d
CROSS JOIN LATERAL (SELECT now() + (random() * 60 + 1 + g * 0) * interval '1 day' AS dep) t;
ANALYZE trips;
SQL
TRIP_ID=$($PSQL -d $DB -c "SELECT id FROM trips LIMIT 1")

# Restart, so the start-up rebuild of the matchmaker's index loads the seeded trips (timed).
kill -TERM $PID; wait $PID || true
"${CARGO_TARGET_DIR:-target}"/release/airbar serve >/tmp/airbar-bench-market.log 2>&1 &
PID=$!
for _ in $(seq 1 100); do grep -q "matchmaker index rebuilt" /tmp/airbar-bench-market.log && break; sleep 0.1; done

echo; echo "== query plans (what models::trips::search sends, with the values of the runs below)"
BOX="origin_lat BETWEEN 51.0195 AND 51.9205 AND origin_lng BETWEEN -1.1849 AND 0.2649"
DIST="airbar_distance_m(origin_lat, origin_lng, 51.4706, -0.46194) <= 50000"
$PSQL -d $DB -c "EXPLAIN SELECT * FROM trips WHERE status = 'open' AND departure_at > now()
  AND $BOX AND $DIST ORDER BY departure_at, id LIMIT 21" | sed 's/^/  /'
echo "  --"
$PSQL -d $DB -c "EXPLAIN SELECT * FROM trips WHERE status = 'open' AND departure_at > now()
  AND departure_at >= now() + interval '10 days' AND departure_at <= now() + interval '11 days'
  ORDER BY departure_at, id LIMIT 21" | sed 's/^/  /'
echo "  --"
$PSQL -d $DB -c "EXPLAIN SELECT * FROM trips WHERE traveler_id = '$USER_ID' ORDER BY id DESC LIMIT 21" | sed 's/^/  /'

run() {
  local name=$1; shift
  printf '%-52s' "$name"
  wrk -t2 -c16 -d"${DUR}s" --latency -H "Authorization: Bearer $TOKEN" -H "X-RateLimit-Bypass: $BYPASS" "$@" 2>&1 \
    | awk '/Requests\/sec/ {rps=$2} /^ +50%/ {p50=$2} /^ +99%/ {p99=$2} /Non-2xx/ {bad=$NF}
           END {printf "%10s req/s  p50 %8s  p99 %8s  non-2xx %s\n", rps, p50, p99, bad+0}'
}
echo; echo "== HTTP (wrk -t2 -c16, ${DUR}s each; 100 000 trips)"
run "GET /api/trips/{id}" "$BASE/api/trips/$TRIP_ID"
run "GET /api/trips?origin=LHR&destination=JFK" "$BASE/api/trips?origin=LHR&destination=JFK"
run "GET /api/trips?origin=LHR (radius 50 km)" "$BASE/api/trips?origin=LHR"
run "GET /api/trips?origin=DXB&min_available_grams=15000" "$BASE/api/trips?origin=DXB&min_available_grams=15000"

echo; echo "== matchmaker index rebuilt from PostgreSQL at start (100 000 trips), from the service log"
grep "matchmaker index rebuilt" /tmp/airbar-bench-market.log | tail -1 | sed 's/\x1b\[[0-9;]*m//g' | sed -E 's/.*(trips=[0-9]+).*(parcels=[0-9]+).*(ms=[0-9]+).*/  \1 \2 \3/'

SENDER=$(curl -fs -H "X-RateLimit-Bypass: $BYPASS" -H 'content-type: application/json' \
  -d '{"email":"bench-sender@example.com","password":"correct horse battery","display_name":"Sender"}' $BASE/api/auth/register)
STOKEN=$(echo "$SENDER" | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
READY=$(date -u -d '+1 hour' +%Y-%m-%dT%H:%M:%SZ); DUE=$(date -u -d '+70 days' +%Y-%m-%dT%H:%M:%SZ)
PARCEL=$(curl -fs -H "X-RateLimit-Bypass: $BYPASS" -H "Authorization: Bearer $STOKEN" -H 'content-type: application/json' \
  -d "{\"origin\":{\"code\":\"LHR\"},\"destination\":{\"code\":\"JFK\"},\"ready_from\":\"$READY\",\"deliver_by\":\"$DUE\",\"weight_grams\":800,\"category\":\"documents\",\"description\":\"Signed contracts in a folder\",\"declared_value\":{\"amount\":2000,\"currency\":\"EUR\"},\"recipient\":{\"name\":\"R\",\"email\":\"r@example.com\"}}" \
  $BASE/api/parcels | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
printf '%-52s' "GET /api/matches/suggestions?parcel_id= (100k)"
wrk -t2 -c16 -d"${DUR}s" --latency -H "Authorization: Bearer $STOKEN" -H "X-RateLimit-Bypass: $BYPASS" \
  "$BASE/api/matches/suggestions?parcel_id=$PARCEL" 2>&1 \
  | awk '/Requests\/sec/ {rps=$2} /^ +50%/ {p50=$2} /^ +99%/ {p99=$2} /Non-2xx/ {bad=$NF}
         END {printf "%10s req/s  p50 %8s  p99 %8s  non-2xx %s\n", rps, p50, p99, bad+0}'

echo; echo "== baseline: pgbench -S (primary-key SELECT), same machine, same run"
$PSQL -c "CREATE DATABASE $PGB" >/dev/null
pgbench -q -i -s 10 -h 127.0.0.1 -U postgres $PGB >/dev/null 2>&1
pgbench -S -c 16 -j 2 -T "$DUR" -h 127.0.0.1 -U postgres $PGB 2>/dev/null | grep -E "^tps|latency average"
