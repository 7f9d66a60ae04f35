#!/usr/bin/env bash
# bench/ws.sh — the real-time benchmark: parleyd's WebSocket gateway beside
# the idiomatic Node.js `ws` broadcast server (bench/ws-peer/), the same
# scenarios driven by the same load generator (tools/parley-load) in the same
# run. A benchmark: it prints figures and asserts no target.
#
#   bench/ws.sh     build a Release parleyd and parley-load into
#                   build-bench-ws/, install bench/ws-peer's `ws` (npm), start
#                   a private PostgreSQL (fsync on), Redis, parleyd and the ws
#                   peer on their own loopback ports, then for each server:
#     idle     BENCH_IDLE (10 000) connections that only hold (1 000 users,
#              10 connections each, all in one room): server RSS per
#              connection = (VmRSS with them - VmRSS before) / connections
#     fanout   1 000 connections (each its own user) in one room; the first
#              BENCH_SENDERS send flat out (BENCH_WINDOW in flight each):
#              deliveries/s while sending (parleyd: every message acked
#              after its COMMIT, so every delivery is durable)
#     lat100   100 rooms x 10 members, 2 000 messages/s in total: latency
#              send -> delivery (p50/p99)
#     lat1000  the 1 000-member room at 100 messages/s: latency
#   and prints one table; everything it started is stopped at exit.
#
# Settings (environment):
#   BENCH_DURATION=10        seconds of sending per run
#   BENCH_IDLE=10000         idle connections (BENCH_IDLE_USERS=1000 users)
#   BENCH_SENDERS=50 BENCH_WINDOW=4   fan-out senders and their window
#   BENCH_GATEWAYS=2         parleyd gateway_threads (SO_REUSEPORT)
#   BENCH_SCENARIOS="idle fanout lat100 lat1000"
#   BENCH_PEERS="parley ws"  servers to measure
#   BENCH_PG_PORT=25460 BENCH_REDIS_PORT=26460 BENCH_HTTP_PORT=8460
#   BENCH_WS_PORT=8461 BENCH_ZMQ_PORT=28460 (and +1; below the
#                            ephemeral range that 10 000 client sockets sweep)
#   BENCH_SKIP_BUILD=1       use what build-bench-ws/ holds
#   BENCH_PARLEYD=PATH       measure another parleyd binary (e.g. an older build)
#
# Everything lives under var/bench-ws/ (ignored by git). The machine caps
# descriptors at 20 000 per process (hard limit): parleyd raises its soft
# limit to it, and so do this script and parley-load; one process can thus
# hold a little under 20 000 connections.

set -euo pipefail
umask 022

ROOT="$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." && pwd -P)"
cd "$ROOT"

DURATION=${BENCH_DURATION:-10}
IDLE=${BENCH_IDLE:-10000}
IDLE_USERS=${BENCH_IDLE_USERS:-1000}
SENDERS=${BENCH_SENDERS:-50}
WINDOW=${BENCH_WINDOW:-4}
GATEWAYS=${BENCH_GATEWAYS:-2}
SCENARIOS=(${BENCH_SCENARIOS:-idle fanout lat100 lat1000})
PEERS=(${BENCH_PEERS:-parley ws})
PG_PORT=${BENCH_PG_PORT:-25460}
REDIS_PORT=${BENCH_REDIS_PORT:-26460}
HTTP_PORT=${BENCH_HTTP_PORT:-8460}
WS_PORT=${BENCH_WS_PORT:-8461}
ZMQ_PORT=${BENCH_ZMQ_PORT:-28460}
PG_BIN=${PARLEY_PG_BIN:-/usr/lib/postgresql/15/bin}
BUILD_DIR="$ROOT/build-bench-ws"
VAR="$ROOT/var/bench-ws"
BASE="http://127.0.0.1:$HTTP_PORT"
IS_ROOT=0; [[ "$(id -u)" == 0 ]] && IS_ROOT=1
export PATH="$PATH:/usr/sbin:/sbin"

log () { printf '[bench] %s\n' "$*" >&2; }
die () { printf '[bench] ERROR: %s\n' "$*" >&2; exit 1; }

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    (( IS_ROOT )) || die "node and npm are missing (Debian: nodejs npm)"
    log "installing nodejs npm (Debian)"
    apt-get install -y nodejs npm >/dev/null 2>&1 \
        || { apt-get update >/dev/null 2>&1 && apt-get install -y nodejs npm >/dev/null; } \
        || die "cannot install nodejs npm"
fi
for tool in jq curl redis-server "$PG_BIN/postgres" cmake node npm; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool is missing (Debian: jq curl redis-server postgresql cmake nodejs npm)"
done
port_in_use () { timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null; }
for p in "$PG_PORT" "$REDIS_PORT" "$HTTP_PORT" "$WS_PORT" "$ZMQ_PORT" $((ZMQ_PORT + 1)); do
    port_in_use "$p" && die "port $p is in use; choose others with BENCH_*_PORT"
done
as_pg () { if (( IS_ROOT )); then (cd / && runuser -u postgres -- "$@"); else "$@"; fi; }
# the load generator holds up to BENCH_IDLE sockets: the hard limit
ulimit -n "$(ulimit -Hn)"
(( IDLE + 200 < $(ulimit -n) )) || die "BENCH_IDLE=$IDLE needs more descriptors than $(ulimit -n)"

# ------------------------------------------------------------ teardown --

PARLEYD_PID="" PEER_PID="" REDIS_STARTED=0 PG_STARTED=0
PG_BASE="$VAR/pg"
stop_pid () {   # PID: TERM, wait up to 10 s, KILL
    kill -TERM "$1" 2>/dev/null || return 0
    for (( i = 0; i < 100; i++ )); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$1" 2>/dev/null
    wait "$1" 2>/dev/null
}
cleanup () {
    set +e
    trap '' INT TERM
    [[ -n "$PEER_PID" ]] && stop_pid "$PEER_PID"
    [[ -n "$PARLEYD_PID" ]] && stop_pid "$PARLEYD_PID"
    (( REDIS_STARTED )) && redis-cli -p "$REDIS_PORT" shutdown nosave >/dev/null 2>&1
    if (( PG_STARTED )); then
        as_pg "$PG_BIN/pg_ctl" -D "$PG_BASE/data" -m fast -w -t 60 stop >/dev/null 2>&1 \
            || as_pg "$PG_BIN/pg_ctl" -D "$PG_BASE/data" -m immediate -w stop >/dev/null 2>&1
    fi
    rm -rf "$PG_BASE"
    log "stopped everything this run started"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------- build --

mkdir -p "$VAR"
if [[ "${BENCH_SKIP_BUILD:-0}" != 1 ]]; then
    log "build: Release into ${BUILD_DIR#$ROOT/}"
    cmake -S "$ROOT" -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release \
        -DCMAKE_C_FLAGS="-Wno-format-truncation" >"$VAR/cmake.log" 2>&1 \
        || { cat "$VAR/cmake.log" >&2; die "cmake configure failed"; }
    cmake --build "$BUILD_DIR" -j2 --target parleyd parley-load >"$VAR/build.log" 2>&1 \
        || { tail -n 30 "$VAR/build.log" >&2; die "build failed (log: $VAR/build.log)"; }
fi
for b in parleyd parley-load; do [[ -x "$BUILD_DIR/$b" ]] || die "$BUILD_DIR/$b is missing"; done
if [[ ! -f bench/ws-peer/node_modules/ws/package.json ]]; then
    log "npm install (bench/ws-peer: ws@8)"
    npm install --prefix bench/ws-peer --no-audit --no-fund >"$VAR/npm.log" 2>&1 \
        || { tail -n 20 "$VAR/npm.log" >&2; die "npm install failed"; }
fi
WS_VERSION=$(jq -r .version bench/ws-peer/node_modules/ws/package.json)

# ------------------------------------------------------------- services --

if (( IS_ROOT )) && ! runuser -u postgres -- test -x "$VAR/." 2>/dev/null; then
    PG_BASE="/var/tmp/parley-bench-ws-$(printf '%s' "$ROOT" | sha256sum | cut -c1-12)"
fi
if [[ -d "$PG_BASE/data" ]] && as_pg "$PG_BIN/pg_ctl" -D "$PG_BASE/data" status >/dev/null 2>&1; then
    as_pg "$PG_BIN/pg_ctl" -D "$PG_BASE/data" -m immediate -w stop >/dev/null 2>&1 || true
fi
rm -rf "$PG_BASE"
mkdir -p "$PG_BASE/data" "$PG_BASE/sock"
(( IS_ROOT )) && chown -R postgres:postgres "$PG_BASE"
chmod 700 "$PG_BASE/data"
as_pg "$PG_BIN/initdb" -D "$PG_BASE/data" -U postgres -A trust -E UTF8 --no-locale --no-sync \
    >"$VAR/initdb.log" 2>&1 || { cat "$VAR/initdb.log" >&2; die "initdb failed"; }
PG_STARTED=1
as_pg "$PG_BIN/pg_ctl" -D "$PG_BASE/data" -l "$PG_BASE/postgres.log" -w -t 60 \
    -o "-p $PG_PORT -k '$PG_BASE/sock' -c listen_addresses=127.0.0.1 -c fsync=on -c synchronous_commit=on" \
    start >"$VAR/pg_ctl.log" 2>&1 || { cat "$VAR/pg_ctl.log" >&2; tail -n 20 "$PG_BASE/postgres.log" >&2; die "PostgreSQL did not start"; }
psql_do () { "$PG_BIN/psql" -X -q -At -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PG_PORT" -U postgres -d "$1" -c "$2"; }
psql_do postgres "CREATE ROLE parley LOGIN SUPERUSER" >/dev/null
psql_do postgres "CREATE DATABASE parley OWNER parley" >/dev/null
log "postgres: 127.0.0.1:$PG_PORT (fsync=on, synchronous_commit=on)"

mkdir -p "$VAR/redis"
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --daemonize yes --dir "$VAR/redis" \
    --pidfile "$VAR/redis/redis.pid" --logfile "$VAR/redis/redis.log" --save '' --appendonly no \
    </dev/null >/dev/null || die "redis-server did not start"
REDIS_STARTED=1
for (( i = 0; i < 50; i++ )); do
    [[ "$(redis-cli -p "$REDIS_PORT" ping 2>/dev/null)" == PONG ]] && break
    sleep 0.1
done

: >"$VAR/empty.conf"
: >"$VAR/parleyd.log"
# Load-test settings: no send rate limit; cheap password hashing (the set-up
# registers 1 000 users); everything else is parleyd's default.
env PARLEY_HTTP_HOST=127.0.0.1 PARLEY_HTTP_PORT="$HTTP_PORT" \
    PARLEY_PG_DSN="postgresql://parley@127.0.0.1:$PG_PORT/parley" \
    PARLEY_REDIS_URL="redis://127.0.0.1:$REDIS_PORT/0" PARLEY_SMTP_URL="smtp://127.0.0.1:9" \
    PARLEY_INJECT_ENDPOINT="tcp://127.0.0.1:$ZMQ_PORT" \
    PARLEY_EVENTS_ENDPOINT="tcp://127.0.0.1:$((ZMQ_PORT + 1))" \
    PARLEY_VAR_DIR="$VAR/parleyd" PARLEY_LOG_LEVEL=warn PARLEY_GATEWAY_THREADS="$GATEWAYS" \
    PARLEY_RATE_LIMIT_PER_SEC=1000000 PARLEY_RATE_LIMIT_BURST=1000000 \
    PARLEY_ACCESS_TOKEN_TTL=3600 PARLEY_PASSWORD_OPS=1 PARLEY_PASSWORD_MEM_KIB=8192 \
    "${BENCH_PARLEYD:-$BUILD_DIR/parleyd}" -c "$VAR/empty.conf" </dev/null >>"$VAR/parleyd.log" 2>&1 &
PARLEYD_PID=$!
for (( i = 0; i < 300; i++ )); do
    kill -0 "$PARLEYD_PID" 2>/dev/null || { tail -n 20 "$VAR/parleyd.log" >&2; die "parleyd exited"; }
    [[ "$(curl -s -o /dev/null -w '%{http_code}' "$BASE/readyz")" == 200 ]] && break
    sleep 0.1
done
log "parleyd: $BASE ($GATEWAYS gateways)"

PORT="$WS_PORT" node bench/ws-peer/server.js </dev/null >"$VAR/ws-peer.log" 2>&1 &
PEER_PID=$!
for (( i = 0; i < 100; i++ )); do port_in_use "$WS_PORT" && break; sleep 0.1; done
port_in_use "$WS_PORT" || { cat "$VAR/ws-peer.log" >&2; die "the ws peer did not start"; }
log "ws peer: ws://127.0.0.1:$WS_PORT (ws $WS_VERSION, node $(node --version))"

# ------------------------------------------------------------ measuring --

HZ=$(getconf CLK_TCK)
proc_ticks () { local s; s="$(cat "/proc/$1/stat" 2>/dev/null)" || { echo 0; return; }; s="${s##*) }"; awk '{print $12+$13}' <<<"$s"; }
pg_ticks () {   # the cluster: the postmaster, its exited and its live children
    local pm t p s
    pm="$(head -n1 "$PG_BASE/data/postmaster.pid" 2>/dev/null)" || { echo 0; return; }
    s="$(cat "/proc/$pm/stat")"; s="${s##*) }"
    t=$(awk '{print $12+$13+$14+$15}' <<<"$s")
    for p in $(ps -o pid= --ppid "$pm"); do t=$(( t + $(proc_ticks "$p") )); done
    echo "$t"
}
rss_kib () { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
server_pid () { [[ "$1" == ws ]] && echo "$PEER_PID" || echo "$PARLEYD_PID"; }
server_url () { [[ "$1" == ws ]] && echo "http://127.0.0.1:$WS_PORT" || echo "$BASE"; }
peer_flags () { [[ "$1" == ws ]] && echo "--peer ws" || echo "--prefix bench"; }

# Users for parleyd: 1 000 (register + log in over REST), in one room.
: >"$VAR/load.log"
SETUP_T0=$(date +%s.%N)
"$BUILD_DIR/parley-load" --url "$BASE" --prefix bench --clients "$IDLE_USERS" --rooms 1 \
    --setup-only 2>>"$VAR/load.log" || die "user set-up failed (see $VAR/load.log)"
log "set-up: $IDLE_USERS users in $(printf '%.1f' "$(echo "$(date +%s.%N) - $SETUP_T0" | bc)") s"

RESULTS=()   # one line of figures per scenario and server
: >"$VAR/loadavg"   # the 1-minute load average after each run
run_load () {   # PEER SCENARIO parley-load args...
    local peer=$1 scenario=$2 pid out s0 s1 g0 g1
    shift 2
    pid=$(server_pid "$peer")
    s0=$(proc_ticks "$pid"); g0=$(pg_ticks)
    out="$("$BUILD_DIR/parley-load" --url "$(server_url "$peer")" $(peer_flags "$peer") \
        --json "$@" 2>>"$VAR/load.log" | tail -n 1)"
    s1=$(proc_ticks "$pid"); g1=$(pg_ticks)
    printf '%s/%s %s\n' "$scenario" "$peer" "$(cut -d' ' -f1 /proc/loadavg)" >>"$VAR/loadavg"
    jq -r --arg peer "$peer" --arg sc "$scenario" \
        --argjson scpu "$(( s1 - s0 ))" --argjson gcpu "$(( g1 - g0 ))" --argjson hz "$HZ" '
        def r: . * 100 | round / 100;
        [ $sc, $peer, .clients, .rooms, .sent, (.acked_per_s | floor),
          (.delivered_per_s | floor), .lost, .duplicated, .out_of_order, .disconnects,
          (.delivery_latency.p50_ms | r), (.delivery_latency.p99_ms | r),
          (.delivery_latency.max_ms | r),
          (if .send_seconds > 0 then (($scpu / $hz) / .send_seconds * 100 | round) else "-" end),
          (if .send_seconds > 0 and $peer == "parley"
           then (($gcpu / $hz) / .send_seconds * 100 | round) else "-" end) ] | @tsv' <<<"$out"
}

IDLE_LINES=()
run_idle () {   # PEER: RSS per idle connection
    local peer=$1 pid before after load_pid kib
    pid=$(server_pid "$peer")
    sleep 1
    before=$(rss_kib "$pid")
    : >"$VAR/idle-$peer.log"
    "$BUILD_DIR/parley-load" --url "$(server_url "$peer")" $(peer_flags "$peer") \
        --clients "$IDLE" --users "$IDLE_USERS" --rooms 1 --no-send --hold "${BENCH_IDLE_HOLD:-8}" --json \
        >"$VAR/idle-$peer.json" 2>"$VAR/idle-$peer.log" &
    load_pid=$!
    for (( i = 0; i < 1200; i++ )); do
        grep -q holding "$VAR/idle-$peer.log" && break
        kill -0 "$load_pid" 2>/dev/null || break
        sleep 0.1
    done
    sleep 4                     # let the last answers and allocations settle
    after=$(rss_kib "$pid")
    wait "$load_pid" || true
    local ready; ready=$(tail -n 1 "$VAR/idle-$peer.json" | jq -r .ready)
    printf '%s/%s %s\n' idle "$peer" "$(cut -d' ' -f1 /proc/loadavg)" >>"$VAR/loadavg"
    kib=$(echo "scale=2; ($after - $before) / $ready" | bc)
    IDLE_LINES+=("$(printf '%-7s %7s connections ready: RSS %7s KiB -> %7s KiB = %5s KiB per connection' \
        "$peer" "$ready" "$before" "$after" "$kib")")
    log "${IDLE_LINES[-1]}"
}

for scenario in "${SCENARIOS[@]}"; do
    for peer in "${PEERS[@]}"; do
        case "$scenario" in
        idle)    run_idle "$peer" ;;
        fanout)  RESULTS+=("$(run_load "$peer" fanout --clients 1000 --rooms 1 \
                     --senders "$SENDERS" --window "$WINDOW" --duration "$DURATION" --drain 10)") ;;
        lat100)  RESULTS+=("$(run_load "$peer" lat100 --clients 1000 --rooms 100 \
                     --rate 2000 --duration "$DURATION" --drain 5)") ;;
        lat1000) RESULTS+=("$(run_load "$peer" lat1000 --clients 1000 --rooms 1 \
                     --rate 100 --duration "$DURATION" --drain 5)") ;;
        *) die "unknown scenario $scenario" ;;
        esac
        [[ "$scenario" != idle ]] && log "$(printf '%s ' ${RESULTS[-1]})"
    done
done
MESSAGES=$(psql_do parley "SELECT count(*) FROM messages")

# --------------------------------------------------------------- report --

echo
echo "== Parley real-time benchmark — $(date -u '+%Y-%m-%d %H:%M UTC') =="
echo "machine: $(nproc) CPUs, $(lscpu | sed -n 's/^Model name: *//p' | head -n1)," \
     "$(free -g | awk '/^Mem:/ {print $2}') GiB; fd limit $(ulimit -n) per process"
echo "parleyd: Release, $GATEWAYS gateways, PostgreSQL 15 fsync=on synchronous_commit=on"
echo "ws peer: node $(node --version), ws $WS_VERSION (bench/ws-peer/server.js)"
echo "load average (1 min) after each run: $(paste -sd, "$VAR/loadavg" | sed 's/,/, /g')"
echo
if (( ${#IDLE_LINES[@]} )); then
    echo "idle connections (server RSS per connection):"
    for l in "${IDLE_LINES[@]}"; do echo "  $l"; done
    echo
fi
if (( ${#RESULTS[@]} )); then
    printf '%-8s %-6s %5s %5s %7s %7s %10s %5s %4s %4s %5s %7s %7s %7s %5s %5s\n' \
        scenario server conns rooms sent msgs/s deliv/s lost dup ooo disc p50ms p99ms maxms cpu% pg%
    for line in "${RESULTS[@]}"; do
        IFS=$'\t' read -r sc pe cl ro se ms dl lo du oo di p50 p99 mx sc2 pg <<<"$line"
        printf '%-8s %-6s %5s %5s %7s %7s %10s %5s %4s %4s %5s %7s %7s %7s %5s %5s\n' \
            "$sc" "$pe" "$cl" "$ro" "$se" "$ms" "$dl" "$lo" "$du" "$oo" "$di" "$p50" "$p99" "$mx" "$sc2" "$pg"
    done
    echo
    echo "msgs/s: acks that arrived while sending (parley: after COMMIT; ws: the sender's own copy)"
    echo "deliv/s: message.new received by all clients while sending; latency: send -> delivery"
    echo "cpu%: the server process, pg%: PostgreSQL, over the sending time (100% = one core)"
    echo "messages committed by parleyd in all: $MESSAGES"
fi
