#!/usr/bin/env bash
# bench/run-inject.sh — throughput of the ZeroMQ inject (API.md §4): how many
# envelopes per second Parley accepts and durably commits, and beside it the
# same machine's Redis pub/sub (redis-benchmark) as a ceiling for a bus. A
# benchmark: it prints figures and asserts no target.
#
#   bench/run-inject.sh     build a Release parleyd and the tools into
#                           build-bench-inject/, start a private PostgreSQL
#                           (fsync on), Redis and parleyd on their own loopback
#                           ports, then with tools/parley-load:
#                             bus     envelopes the bus refuses before any
#                                     database work (--bus-only): the ROUTER,
#                                     codec and reply path alone
#                             commit  message.send floods (--inject --no-ws):
#                                     each reply ok = committed (fsync), every
#                                     message.new checked on the event socket
#                           for each rooms x window, then redis-benchmark
#                           PUBLISH (one subscriber attached), and prints a
#                           summary; everything it started is stopped at exit.
#
# Settings (environment):
#   BENCH_DURATION=10            seconds of sending per run
#   BENCH_ROOMS="1 64"           rooms the messages spread over
#   BENCH_WINDOWS="256 4096"     commands in flight (parley-load --window)
#   BENCH_USERS=64               sending users
#   BENCH_WORKERS=2              persister_workers
#   BENCH_GROUP_COMMIT=64        group_commit_max
#   BENCH_PG_PORT=55480 BENCH_REDIS_PORT=56480 BENCH_HTTP_PORT=8480
#   BENCH_ZMQ_PORT=58480 (and +1)
#   BENCH_SKIP_BUILD=1           use what build-bench-inject/ holds
#   BENCH_STATEMENTS=0           1: log every statement's duration during the
#                                commit runs and print where PostgreSQL's time
#                                went (slows the runs themselves down)
#
# Everything lives under var/bench-inject/ (ignored by git).

set -euo pipefail
umask 022

ROOT="$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." && pwd -P)"
cd "$ROOT"

DURATION=${BENCH_DURATION:-10}
ROOMS=(${BENCH_ROOMS:-1 64})
WINDOWS=(${BENCH_WINDOWS:-256 4096})
USERS=${BENCH_USERS:-64}
WORKERS=${BENCH_WORKERS:-2}
GROUP_COMMIT=${BENCH_GROUP_COMMIT:-64}
PG_PORT=${BENCH_PG_PORT:-55480}
REDIS_PORT=${BENCH_REDIS_PORT:-56480}
HTTP_PORT=${BENCH_HTTP_PORT:-8480}
ZMQ_PORT=${BENCH_ZMQ_PORT:-58480}
PG_BIN=${PARLEY_PG_BIN:-/usr/lib/postgresql/15/bin}
BUILD_DIR="$ROOT/build-bench-inject"
VAR="$ROOT/var/bench-inject"
BASE="http://127.0.0.1:$HTTP_PORT"
INJECT="tcp://127.0.0.1:$ZMQ_PORT"
EVENTS="tcp://127.0.0.1:$((ZMQ_PORT + 1))"
IS_ROOT=0; [[ "$(id -u)" == 0 ]] && IS_ROOT=1
export PATH="$PATH:/usr/sbin:/sbin"

log () { printf '[bench] %s\n' "$*" >&2; }
die () { printf '[bench] ERROR: %s\n' "$*" >&2; exit 1; }

for tool in jq curl redis-server redis-benchmark "$PG_BIN/postgres" cmake; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool is missing (Debian: jq curl redis-server redis-tools postgresql cmake)"
done
port_in_use () { timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null; }
for p in "$PG_PORT" "$REDIS_PORT" "$HTTP_PORT" "$ZMQ_PORT" $((ZMQ_PORT + 1)); do
    port_in_use "$p" && die "port $p is in use; choose others with BENCH_*_PORT"
done
as_pg () { if (( IS_ROOT )); then (cd / && runuser -u postgres -- "$@"); else "$@"; fi; }

# ------------------------------------------------------------ teardown --

PARLEYD_PID="" SUB_PID="" REDIS_STARTED=0 PG_STARTED=0
PG_BASE="$VAR/pg"
cleanup () {
    set +e
    trap '' INT TERM
    [[ -n "$SUB_PID" ]] && kill "$SUB_PID" 2>/dev/null && wait "$SUB_PID" 2>/dev/null
    if [[ -n "$PARLEYD_PID" ]]; then
        kill -TERM "$PARLEYD_PID" 2>/dev/null
        for (( i = 0; i < 100; i++ )); do kill -0 "$PARLEYD_PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$PARLEYD_PID" 2>/dev/null
        wait "$PARLEYD_PID" 2>/dev/null
    fi
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

if [[ "${BENCH_SKIP_BUILD:-0}" != 1 ]]; then
    log "build: Release into ${BUILD_DIR#$ROOT/}"
    mkdir -p "$VAR"
    cmake -S "$ROOT" -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release \
        -DCMAKE_C_FLAGS="-Wno-format-truncation" >"$VAR/cmake.log" 2>&1 \
        || { cat "$VAR/cmake.log" >&2; die "cmake configure failed"; }
    cmake --build "$BUILD_DIR" -j2 --target parleyd parley-load >"$VAR/build.log" 2>&1 \
        || { tail -n 30 "$VAR/build.log" >&2; die "build failed (log: $VAR/build.log)"; }
fi
for b in parleyd parley-load; do [[ -x "$BUILD_DIR/$b" ]] || die "$BUILD_DIR/$b is missing"; done

# ------------------------------------------------------------- services --

mkdir -p "$VAR"
if (( IS_ROOT )) && ! runuser -u postgres -- test -x "$VAR/." 2>/dev/null; then
    PG_BASE="/var/tmp/parley-bench-inject-$(printf '%s' "$ROOT" | sha256sum | cut -c1-12)"
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
    start >/dev/null || { tail -n 20 "$PG_BASE/postgres.log" >&2; die "PostgreSQL did not start"; }
psql_do () { "$PG_BIN/psql" -X -q -At -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PG_PORT" -U postgres -d "$1" -c "$2"; }
psql_do postgres "CREATE ROLE parley LOGIN SUPERUSER" >/dev/null
psql_do postgres "CREATE DATABASE parley OWNER parley" >/dev/null
psql_do postgres "ALTER SYSTEM SET log_line_prefix = '%m [%p] %d '" >/dev/null
psql_do postgres "SELECT pg_reload_conf()" >/dev/null
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
env PARLEY_HTTP_HOST=127.0.0.1 PARLEY_HTTP_PORT="$HTTP_PORT" \
    PARLEY_PG_DSN="postgresql://parley@127.0.0.1:$PG_PORT/parley" \
    PARLEY_REDIS_URL="redis://127.0.0.1:$REDIS_PORT/0" PARLEY_SMTP_URL="smtp://127.0.0.1:9" \
    PARLEY_INJECT_ENDPOINT="$INJECT" PARLEY_EVENTS_ENDPOINT="$EVENTS" \
    PARLEY_VAR_DIR="$VAR/parleyd" PARLEY_LOG_LEVEL=warn \
    PARLEY_PERSISTER_WORKERS="$WORKERS" PARLEY_GROUP_COMMIT_MAX="$GROUP_COMMIT" \
    PARLEY_ACCESS_TOKEN_TTL=3600 PARLEY_PASSWORD_OPS=1 PARLEY_PASSWORD_MEM_KIB=8192 \
    "$BUILD_DIR/parleyd" -c "$VAR/empty.conf" </dev/null >>"$VAR/parleyd.log" 2>&1 &
PARLEYD_PID=$!
for (( i = 0; i < 300; i++ )); do
    kill -0 "$PARLEYD_PID" 2>/dev/null || { tail -n 20 "$VAR/parleyd.log" >&2; die "parleyd exited"; }
    [[ "$(curl -s -o /dev/null -w '%{http_code}' "$BASE/readyz")" == 200 ]] && break
    sleep 0.1
done
log "parleyd: $BASE, inject $INJECT, events $EVENTS ($WORKERS persisters, group commit $GROUP_COMMIT)"

# ------------------------------------------------------------ measuring --

HZ=$(getconf CLK_TCK)
proc_ticks () { local s; s="$(cat "/proc/$1/stat" 2>/dev/null)" || { echo 0; return; }; s="${s##*) }"; awk '{print $12+$13}' <<<"$s"; }
# The cluster's CPU: the postmaster's own and its exited children's
# (cutime, cstime), plus its live children's.
pg_ticks () {
    local pm t p s
    pm="$(head -n1 "$PG_BASE/data/postmaster.pid" 2>/dev/null)" || { echo 0; return; }
    s="$(cat "/proc/$pm/stat")"; s="${s##*) }"
    t=$(awk '{print $12+$13+$14+$15}' <<<"$s")
    for p in $(ps -o pid= --ppid "$pm"); do t=$(( t + $(proc_ticks "$p") )); done
    echo "$t"
}

RESULTS=()
run_load () {   # KIND ROOMS WINDOW
    local kind=$1 rooms=$2 window=$3 out p0 g0 p1 g1 flags=()
    [[ "$kind" == bus ]] && flags=(--bus-only) || flags=(--inject --no-ws)
    p0=$(proc_ticks "$PARLEYD_PID"); g0=$(pg_ticks)
    out="$("$BUILD_DIR/parley-load" --url "$BASE" --inject-endpoint "$INJECT" \
        --events-endpoint "$EVENTS" --prefix bench --clients "$USERS" --rooms "$rooms" \
        --window "$window" --duration "$DURATION" --drain 15 --json "${flags[@]}" \
        2>>"$VAR/load.log" | tail -n 1)"
    p1=$(proc_ticks "$PARLEYD_PID"); g1=$(pg_ticks)
    local secs; secs=$(jq -r .send_seconds <<<"$out")
    local line
    line=$(jq -r --arg kind "$kind" --argjson w "$window" \
        --argjson pcpu "$(( (p1 - p0) ))" --argjson gcpu "$(( (g1 - g0) ))" --argjson hz "$HZ" '
        def r: . * 10 | round / 10;
        [ $kind, .rooms, $w, .sent,
          ((.acked + .errors) / .send_seconds | floor),
          (.acked / .send_seconds | floor),
          (.delivered / .send_seconds | floor), .lost, .duplicated, .out_of_order,
          (.ack_latency.p50_ms | r), (.ack_latency.p99_ms | r), (.ack_latency.max_ms | r),
          (($pcpu / $hz) / .send_seconds * 100 | round),
          (($gcpu / $hz) / .send_seconds * 100 | round) ] | @tsv' <<<"$out")
    RESULTS+=("$line")
    log "$(printf '%s ' $line)"
}

for rooms in "${ROOMS[@]}"; do
    for window in "${WINDOWS[@]}"; do run_load bus "$rooms" "$window"; done
done
if [[ "${BENCH_STATEMENTS:-0}" == 1 ]]; then
    psql_do postgres "ALTER SYSTEM SET log_min_duration_statement = 0" >/dev/null
    psql_do postgres "SELECT pg_reload_conf()" >/dev/null
    LOG_FROM=$(wc -l <"$PG_BASE/postgres.log")
fi
for rooms in "${ROOMS[@]}"; do
    for window in "${WINDOWS[@]}"; do run_load commit "$rooms" "$window"; done
done
STATEMENTS=""
if [[ "${BENCH_STATEMENTS:-0}" == 1 ]]; then
    # execute lines only (bind/parse are logged apart): total ms per statement
    STATEMENTS="$(tail -n +"$LOG_FROM" "$PG_BASE/postgres.log" | grep ' parley LOG:  duration: ' \
        | sed -nE 's/.*duration: ([0-9.]+) ms  (execute [^:]*|statement): (.{0,100}).*/\1\t\3/p' \
        | awk -F'\t' '{t[$2]+=$1; n[$2]++} END {for (k in t) printf "%10.0f ms %8d x %7.3f ms  %s\n", t[k], n[k], t[k]/n[k], k}' \
        | sort -rn | head -n 15 || true)"
    psql_do postgres "ALTER SYSTEM RESET log_min_duration_statement" >/dev/null
    psql_do postgres "SELECT pg_reload_conf()" >/dev/null
fi
MESSAGES=$(psql_do parley "SELECT count(*) FROM messages")

# Redis pub/sub on the same machine: PUBLISH of a message.new-sized payload
# to a channel with one subscriber, one at a time and pipelined.
PAYLOAD="$(head -c 600 /dev/zero | tr '\0' x)"
# a subscriber that keeps up less than Redis publishes: no output limit, so
# Redis buffers rather than drops it (as Parley's PUB would past its HWM)
redis-cli -p "$REDIS_PORT" config set client-output-buffer-limit "pubsub 0 0 0" >/dev/null
redis-cli -p "$REDIS_PORT" subscribe room.bench >/dev/null 2>&1 &
SUB_PID=$!
sleep 0.3
REDIS_LINES=()
for pipeline in 1 64; do
    rps=$(redis-benchmark -p "$REDIS_PORT" -n 300000 -c 50 -P "$pipeline" -q \
          PUBLISH room.bench "$PAYLOAD" 2>/dev/null | tr '\r' '\n' \
          | grep -Eo '[0-9.]+ requests per second' | tail -n1 || true)
    REDIS_LINES+=("PUBLISH 600 B, 50 clients, pipeline $pipeline: ${rps:-?}")
done
kill "$SUB_PID" 2>/dev/null || true
wait "$SUB_PID" 2>/dev/null || true
SUB_PID=""

# --------------------------------------------------------------- report --

echo
echo "== Parley inject benchmark — $(date -u '+%Y-%m-%d %H:%M UTC') =="
echo "machine: $(nproc) CPUs, $(lscpu | sed -n 's/^Model name: *//p' | head -n1)"
echo "parleyd: $WORKERS persisters, group_commit_max $GROUP_COMMIT; PostgreSQL 15 fsync=on; $USERS users; ${DURATION}s per run"
echo
printf '%-6s %5s %6s %8s %9s %9s %9s %5s %4s %4s %8s %8s %8s %6s %6s\n' \
    kind rooms window sent replies/s commits/s events/s lost dup ooo p50ms p99ms maxms cpu% pg%
for line in "${RESULTS[@]}"; do
    IFS=$'\t' read -r k r w s rep ok ev lost dup ooo p50 p99 mx pc gc <<<"$line"
    printf '%-6s %5s %6s %8s %9s %9s %9s %5s %4s %4s %8s %8s %8s %6s %6s\n' \
        "$k" "$r" "$w" "$s" "$rep" "$ok" "$ev" "$lost" "$dup" "$ooo" "$p50" "$p99" "$mx" "$pc" "$gc"
done
echo
echo "bus:    the inject socket + codec + reply, no database (replies/s; every reply an error)"
echo "commit: message.send, replied after COMMIT; events/s = message.new seen on the event socket"
echo "cpu%/pg% = parleyd / PostgreSQL backends CPU over the sending time (100% = one core)"
echo "messages committed in all: $MESSAGES"
echo
if [[ -n "$STATEMENTS" ]]; then
    echo "where PostgreSQL's time went during the commit runs (top statements):"
    echo "$STATEMENTS"
    echo
fi
echo "Redis $(redis-server --version | grep -Eo 'v=[0-9.]+' | cut -c3-) on the same machine (the ceiling of a pub/sub bus):"
for l in "${REDIS_LINES[@]}"; do echo "  $l"; done
