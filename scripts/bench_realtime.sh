#!/usr/bin/env bash
# Real-time gateway figures for BENCHMARKS.md (issue 6, "Measure"): idle-socket memory and chat
# fan-out, each against `ws_baseline` (examples/ws_baseline.rs: a minimal tokio-tungstenite
# broadcast server, no auth, no database) run the same way on the same machine.
#
#   scripts/bench_realtime.sh idle N NODES                   e.g. idle 100000 6
#   scripts/bench_realtime.sh fanout ROOMS MEMBERS RATE SECS  e.g. fanout 200 5 20 30
#   scripts/bench_realtime.sh track MATCHES WATCHERS RATE SECS e.g. track 2000 5 10 30
#
# idle: NODES `airbar serve` nodes (ports 3201..) sharing PostgreSQL and Redis; N sockets opened
# by ceil(N/17000) `loadgen idle` processes (a process may hold at most 20 000 files) spread
# over every node and the source addresses 127.0.0.2..9; VmRSS of the nodes before and 10 s
# after the last socket is up gives RSS per socket. The sockets are then held IDLE_HOLD s (> the
# 60 s heartbeat timeout, so pings must be answered) and every close by the server is reported.
# Then ws_baseline with min(N, 17000) sockets. Each node also holds at most ~19 500 sockets, so
# NODES >= ceil(N / 19500).
# fanout: one node; ROOMS rooms (a requested match each), MEMBERS sockets per room all
# subscribed, one of them sending RATE messages/s for SECS s; latency from send to each other
# member's receipt, CPU of the node, PostgreSQL and Redis per 1000 deliveries. Then ws_baseline.
# track (issue 9): one node; MATCHES matches in transit, each with one traveler socket sending
# RATE positions/s for SECS s and WATCHERS sockets (sender/traveler) on `tracking:<match>`;
# positions ingested per second, latency from send to each watcher's `position` frame, frames
# coalesced away, CPU per 1000 positions. Then ws_baseline relaying the same frames.
#
# Environment: CARGO_TARGET_DIR (binaries are taken from there), SKIP_BUILD=1, IDLE_USERS
# (1000), IDLE_HOLD (70), SETTLE (10), BASE_PORT (3201), BASELINE_PORT (3299).
# Note: --pg sums the CPU of every `postgres` process on the machine, so run it on a quiet box.
set -euo pipefail
cd "$(dirname "$0")/.."

MODE=${1:-}
usage() { sed -n '6,8p' "$0" | sed 's/^# */usage: /'; exit 2; }
[[ $MODE == idle || $MODE == fanout || $MODE == track ]] || usage

BIN=${CARGO_TARGET_DIR:-target}/release
BASE_PORT=${BASE_PORT:-3201}
BASELINE_PORT=${BASELINE_PORT:-3299}
SETTLE=${SETTLE:-10}
DB=airbar_bench_rt_$$
BYPASS=bench-rt-bypass-$$
PREFIX="airbar:bench_rt_$$:"
PSQL="psql -qAt -v ON_ERROR_STOP=1 -h 127.0.0.1 -U postgres"
export AIRBAR_ENV=development DATABASE_URL=postgres://postgres@127.0.0.1:5432/$DB
export AIRBAR__REDIS__KEY_PREFIX=$PREFIX AIRBAR__RATE_LIMIT__BYPASS_TOKEN=$BYPASS
export AIRBAR__TELEMETRY__LOG_FILTER=warn AIRBAR__SERVER__SHUTDOWN_GRACE_SECS=5
# The tokens registered at the start must still open sockets at the end of a long ramp.
export AIRBAR__AUTH__ACCESS_TTL_SECS=3600
WORK=$(mktemp -d /tmp/airbar-bench-rt.XXXXXX)

# Up to the hard limit (20 000 here): the nodes and loadgen processes inherit it.
ulimit -n "$(ulimit -Hn)"
FILES=$(ulimit -n)

PIDS=()
cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  $PSQL -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1 || true
  redis-cli --scan --pattern "${PREFIX}*" | xargs -r -n 500 redis-cli del >/dev/null 2>&1 || true
  echo "logs: $WORK"
}
trap cleanup EXIT

stop() { # pid...
  local pid
  for pid in "$@"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "$@"; do wait "$pid" 2>/dev/null || true; done
}

rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }

wait_http() { # port what
  for _ in $(seq 1 300); do
    curl -fs "http://127.0.0.1:$1/api/ready" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "$2 on :$1 is not ready; log:"; tail -20 "$WORK/node-$1.log" || true; exit 1
}

start_node() { # port; sets NODE_PID
  PORT=$1 "$BIN/airbar" serve >"$WORK/node-$1.log" 2>&1 &
  NODE_PID=$!
  PIDS+=("$NODE_PID")
  wait_http "$1" "airbar"
}

start_baseline() { # sets BASELINE_PID
  "$BIN/examples/ws_baseline" --port "$BASELINE_PORT" >"$WORK/baseline.log" 2>&1 &
  BASELINE_PID=$!
  PIDS+=("$BASELINE_PID")
  for _ in $(seq 1 100); do
    (echo >"/dev/tcp/127.0.0.1/$BASELINE_PORT") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "ws_baseline did not start"; cat "$WORK/baseline.log"; exit 1
}

header() {
  echo "== $* ($(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, $(git rev-parse --short HEAD 2>/dev/null || echo '?'), open files $FILES)"
}

if [[ ${SKIP_BUILD:-0} != 1 ]]; then
  nice -n 10 cargo build --release --quiet --bins --examples
fi
LOADGEN=$BIN/examples/loadgen

# ----------------------------------------------------------------------------------------------
# idle

# Starts ceil(n/17000) `loadgen idle` processes against `urls`; sets LG_PIDS and LG_LOGS.
start_idle_loadgens() { # name n urls [extra args...]
  local name=$1 n=$2 urls=$3; shift 3
  local procs=$(( (n + 16999) / 17000 )) i share
  LG_PIDS=(); LG_LOGS=()
  for ((i = 0; i < procs; i++)); do
    share=$(( n / procs + (i < n % procs ? 1 : 0) ))
    "$LOADGEN" idle --label "$name-$i" --urls "$urls" --conns "$share" \
      --sources 127.0.0.2,127.0.0.3,127.0.0.4,127.0.0.5,127.0.0.6,127.0.0.7,127.0.0.8,127.0.0.9 \
      --hold 7200 --concurrency "${IDLE_CONCURRENCY:-200}" "$@" >"$WORK/$name-$i.log" 2>&1 &
    LG_PIDS+=($!); LG_LOGS+=("$WORK/$name-$i.log")
    PIDS+=($!)
  done
}

wait_idle_ready() {
  local i last=$SECONDS
  for i in "${!LG_LOGS[@]}"; do
    until grep -q '^IDLE_READY' "${LG_LOGS[$i]}"; do
      if ! kill -0 "${LG_PIDS[$i]}" 2>/dev/null; then
        echo "loadgen ${LG_LOGS[$i]} ended early:"; tail -5 "${LG_LOGS[$i]}"; exit 1
      fi
      if (( SECONDS - last >= 10 )); then
        last=$SECONDS
        for log in "${LG_LOGS[@]}"; do grep 'progress' "$log" | tail -1 | sed 's/^/  /'; done
      fi
      sleep 1
    done
  done
}

sum_ready() { cat "${LG_LOGS[@]}" | awk -F'[= ]' '/^IDLE_READY/ {e += $3; f += $5} END {print e + 0, f + 0}'; }
sum_done() { cat "${LG_LOGS[@]}" | awk -F'[= ]' '/^IDLE_DONE/ {e += $3; c += $5; f += $7} END {print e + 0, c + 0, f + 0}'; }

end_idle_loadgens() {
  stop "${LG_PIDS[@]}"
  grep -h -E 'failures:|closed by the server:' "${LG_LOGS[@]}" | sed 's/^/  /' || true
}

if [[ $MODE == idle ]]; then
  N=${2:?usage: idle N NODES}
  NODES=${3:?usage: idle N NODES}
  PER_NODE=$(( (N + NODES - 1) / NODES ))
  if (( PER_NODE > FILES - 500 )); then
    echo "each node would hold $PER_NODE sockets but may open only $FILES files: use NODES >= $(( (N + FILES - 501) / (FILES - 500) ))"
    exit 2
  fi
  # Several nodes share max_connections (100).
  POOL=$(( 60 / NODES )); (( POOL > 16 )) && POOL=16; (( POOL < 4 )) && POOL=4
  export AIRBAR__DATABASE__POOL_MAX_SIZE=$POOL
  header "idle: $N sockets on $NODES node(s)"

  NODE_PIDS=(); URLS=""
  for ((k = 0; k < NODES; k++)); do
    port=$((BASE_PORT + k))
    start_node "$port"
    NODE_PIDS+=("$NODE_PID")
    URLS+="${URLS:+,}ws://127.0.0.1:$port/api/ws"
  done
  "$LOADGEN" setup-users --base "http://127.0.0.1:$BASE_PORT" --bypass "$BYPASS" \
    --users "${IDLE_USERS:-1000}" --out "$WORK/tokens.txt" | tail -1
  sleep 2
  BEFORE=0
  for pid in "${NODE_PIDS[@]}"; do BEFORE=$((BEFORE + $(rss_kib "$pid"))); done
  NODES_BEFORE=$(for pid in "${NODE_PIDS[@]}"; do printf '%s ' "$(rss_kib "$pid")"; done)

  T0=$SECONDS
  start_idle_loadgens airbar "$N" "$URLS" --tokens "$WORK/tokens.txt" --bypass "$BYPASS"
  wait_idle_ready
  RAMP=$((SECONDS - T0))
  read -r EST FAILED < <(sum_ready)
  sleep "$SETTLE"
  AFTER=0
  for pid in "${NODE_PIDS[@]}"; do AFTER=$((AFTER + $(rss_kib "$pid"))); done
  NODES_AFTER=$(for pid in "${NODE_PIDS[@]}"; do printf '%s ' "$(rss_kib "$pid")"; done)
  LG_RSS=0
  for pid in "${LG_PIDS[@]}"; do LG_RSS=$((LG_RSS + $(rss_kib "$pid"))); done
  AIRBAR_PER=$(awk -v a="$AFTER" -v b="$BEFORE" -v e="$EST" 'BEGIN {printf "%.1f", e ? (a - b) / e : 0}')
  echo "airbar: established $EST, failed $FAILED, ramp ${RAMP} s ($(( RAMP ? EST / RAMP : EST )) conn/s)"
  echo "airbar: node VmRSS KiB before [ $NODES_BEFORE] = $BEFORE, after [ $NODES_AFTER] = $AFTER"
  echo "airbar: RSS per socket $AIRBAR_PER KiB   (client side: $(( EST ? LG_RSS / EST : 0 )) KiB per socket in loadgen)"
  HOLD=${IDLE_HOLD:-70}
  if (( HOLD > 0 )); then
    echo "airbar: holding $HOLD s more (server pings every 20 s, timeout 60 s)..."
    sleep "$HOLD"
  fi
  HELD_RSS=0
  for pid in "${NODE_PIDS[@]}"; do HELD_RSS=$((HELD_RSS + $(rss_kib "$pid"))); done
  end_idle_loadgens
  read -r _ CLOSED _ < <(sum_done)
  echo "airbar: after the hold: closed by the server $CLOSED of $EST; node VmRSS $HELD_RSS KiB"
  stop "${NODE_PIDS[@]}"

  BN=$(( N < 17000 ? N : 17000 ))
  start_baseline
  sleep 1
  BBEFORE=$(rss_kib "$BASELINE_PID")
  start_idle_loadgens baseline "$BN" "ws://127.0.0.1:$BASELINE_PORT/api/ws"
  wait_idle_ready
  read -r BEST BFAILED < <(sum_ready)
  sleep "$SETTLE"
  BAFTER=$(rss_kib "$BASELINE_PID")
  BASE_PER=$(awk -v a="$BAFTER" -v b="$BBEFORE" -v e="$BEST" 'BEGIN {printf "%.1f", e ? (a - b) / e : 0}')
  end_idle_loadgens
  stop "$BASELINE_PID"
  echo "baseline: established $BEST, failed $BFAILED; VmRSS KiB before $BBEFORE, after $BAFTER"
  echo "baseline: RSS per socket $BASE_PER KiB"
  echo
  echo "IDLE_SUMMARY sockets=$EST failed=$FAILED nodes=$NODES airbar_kib_per_socket=$AIRBAR_PER baseline_kib_per_socket=$BASE_PER ratio=$(awk -v a="$AIRBAR_PER" -v b="$BASE_PER" 'BEGIN {printf "%.2f", (b > 0) ? a / b : 0}') closed_by_server=$CLOSED"
  exit 0
fi

# ----------------------------------------------------------------------------------------------
# track

if [[ $MODE == track ]]; then
  MATCHES=${2:?usage: track MATCHES WATCHERS RATE SECS}
  WATCHERS=${3:?}; RATE=${4:?}; SECS=${5:?}
  SOCKETS=$(( MATCHES * (WATCHERS + 1) ))
  if (( SOCKETS > FILES - 500 )); then
    echo "$SOCKETS sockets do not fit one process's $FILES files"; exit 2
  fi
  header "track: $MATCHES matches x $WATCHERS watchers, $RATE positions/s per match for $SECS s"
  start_node "$BASE_PORT"
  AIRBAR_PID=$NODE_PID
  "$LOADGEN" setup-tracking --base "http://127.0.0.1:$BASE_PORT" --bypass "$BYPASS" \
    --matches "$MATCHES" --out "$WORK/matches.json" | tail -1
  echo "node VmRSS after the set-up (registrations hash with argon2): $(rss_kib "$AIRBAR_PID") KiB"
  "$LOADGEN" track --label airbar --urls "ws://127.0.0.1:$BASE_PORT/api/ws" --matches "$WORK/matches.json" \
    --watchers "$WATCHERS" --rate "$RATE" --secs "$SECS" --bypass "$BYPASS" \
    --sources 127.0.0.2,127.0.0.3,127.0.0.4,127.0.0.5 \
    --pids "$AIRBAR_PID" --pg --redis | tee "$WORK/track-airbar.log" | grep -v '^TRACK_RESULT'
  AIRBAR_RSS=$(rss_kib "$AIRBAR_PID")
  STORED=$($PSQL -d "$DB" -c "SELECT count(*) FROM positions")
  curl -s "http://127.0.0.1:$BASE_PORT/api/metrics" | grep -E '^airbar_tracking_(positions|coalesced)' | sed 's/^/  metrics: /'
  stop "$AIRBAR_PID"
  grep -E 'ERROR|WARN' "$WORK/node-$BASE_PORT.log" | sed 's/\x1b\[[0-9;]*m//g' | sort | uniq -c | sort -rn | head -10 | sed 's/^/  node log: /' || true
  echo "positions stored in the trail: $STORED"

  echo
  start_baseline
  "$LOADGEN" track --label baseline --baseline --match-count "$MATCHES" \
    --urls "ws://127.0.0.1:$BASELINE_PORT/api/ws" \
    --watchers "$WATCHERS" --rate "$RATE" --secs "$SECS" \
    --sources 127.0.0.2,127.0.0.3,127.0.0.4,127.0.0.5 \
    --pids "$BASELINE_PID" | tee "$WORK/track-baseline.log" | grep -v '^TRACK_RESULT'
  BASELINE_RSS=$(rss_kib "$BASELINE_PID")
  stop "$BASELINE_PID"

  echo
  echo "node VmRSS after: airbar $AIRBAR_RSS KiB, baseline $BASELINE_RSS KiB"
  grep -h '^TRACK_RESULT' "$WORK/track-airbar.log" "$WORK/track-baseline.log"
  python3 - "$WORK/track-airbar.log" "$WORK/track-baseline.log" <<'PY'
import json, sys
def result(path):
    for line in open(path):
        if line.startswith("TRACK_RESULT "):
            return json.loads(line.split(" ", 1)[1])
    sys.exit(f"no TRACK_RESULT in {path}")
a, b = result(sys.argv[1]), result(sys.argv[2])
def ratio(x, y):
    return f"{x / y:.2f}" if y else "n/a"
print("RATIOS (airbar / baseline): "
      f"positions/s {ratio(a['positions_per_sec'], b['positions_per_sec'])}, "
      f"deliveries/s {ratio(a['deliveries_per_sec'], b['deliveries_per_sec'])}, "
      f"p50 {ratio(a['latency_ms']['p50'], b['latency_ms']['p50'])}, "
      f"p99 {ratio(a['latency_ms']['p99'], b['latency_ms']['p99'])}, "
      f"app CPU per 1000 positions {ratio(a['cpu_ms_per_1000_positions']['app'], b['cpu_ms_per_1000_positions']['app'])}")
for r in (a, b):
    print(f"{r['label']}: {r['positions_per_sec']:.0f} positions/s ingested, p99 {r['latency_ms']['p99']} ms, "
          f"received {r['received']} of {r['expected_deliveries']} (coalesced {r['skipped_coalesced']}, "
          f"dup {r['duplicates']}, out of order {r['out_of_order']})")
PY
  exit 0
fi

# ----------------------------------------------------------------------------------------------
# fanout

ROOMS=${2:?usage: fanout ROOMS MEMBERS RATE SECS}
MEMBERS=${3:?}; RATE=${4:?}; SECS=${5:?}
header "fanout: $ROOMS rooms x $MEMBERS sockets, $RATE msg/s per room for $SECS s"
start_node "$BASE_PORT"
AIRBAR_PID=$NODE_PID
"$LOADGEN" setup-rooms --base "http://127.0.0.1:$BASE_PORT" --bypass "$BYPASS" \
  --rooms "$ROOMS" --out "$WORK/rooms.json" | tail -1
"$LOADGEN" fanout --label airbar --urls "ws://127.0.0.1:$BASE_PORT/api/ws" --rooms "$WORK/rooms.json" \
  --members "$MEMBERS" --rate "$RATE" --secs "$SECS" --bypass "$BYPASS" \
  --pids "$AIRBAR_PID" --pg --redis | tee "$WORK/fanout-airbar.log" | grep -v '^FANOUT_RESULT'
AIRBAR_RSS=$(rss_kib "$AIRBAR_PID")
stop "$AIRBAR_PID"
grep -E 'ERROR|WARN' "$WORK/node-$BASE_PORT.log" | sed 's/\x1b\[[0-9;]*m//g' | sort | uniq -c | sort -rn | head -10 | sed 's/^/  node log: /' || true

echo
start_baseline
"$LOADGEN" fanout --label baseline --baseline --room-count "$ROOMS" \
  --urls "ws://127.0.0.1:$BASELINE_PORT/api/ws" \
  --members "$MEMBERS" --rate "$RATE" --secs "$SECS" \
  --pids "$BASELINE_PID" | tee "$WORK/fanout-baseline.log" | grep -v '^FANOUT_RESULT'
BASELINE_RSS=$(rss_kib "$BASELINE_PID")
stop "$BASELINE_PID"

echo
echo "node VmRSS after: airbar $AIRBAR_RSS KiB, baseline $BASELINE_RSS KiB"
grep -h '^FANOUT_RESULT' "$WORK/fanout-airbar.log" "$WORK/fanout-baseline.log"
python3 - "$WORK/fanout-airbar.log" "$WORK/fanout-baseline.log" <<'PY'
import json, sys
def result(path):
    for line in open(path):
        if line.startswith("FANOUT_RESULT "):
            return json.loads(line.split(" ", 1)[1])
    sys.exit(f"no FANOUT_RESULT in {path}")
a, b = result(sys.argv[1]), result(sys.argv[2])
def ratio(x, y):
    return f"{x / y:.2f}" if y else "n/a"
print("RATIOS (airbar / baseline): "
      f"p50 {ratio(a['latency_ms']['p50'], b['latency_ms']['p50'])}, "
      f"p99 {ratio(a['latency_ms']['p99'], b['latency_ms']['p99'])}, "
      f"deliveries/s {ratio(a['deliveries_per_sec'], b['deliveries_per_sec'])}, "
      f"CPU per 1000 deliveries: app {ratio(a['cpu_ms_per_1000_deliveries']['app'], b['cpu_ms_per_1000_deliveries']['app'])}, "
      f"total (app+postgres+redis vs. app) {ratio(a['cpu_ms_per_1000_deliveries']['total'], b['cpu_ms_per_1000_deliveries']['total'])}")
print(f"LOST airbar {a['lost']} (dup {a['duplicates']}, out of order {a['out_of_order']}), "
      f"baseline {b['lost']} (dup {b['duplicates']}, out of order {b['out_of_order']})")
PY
