#!/usr/bin/env bash
# bench/rest.sh — REST throughput and latency of Parley (a benchmark: it
# prints figures; it is not a test and asserts no target).
#
#   bench/rest.sh              build a Release parleyd into build-bench/, start
#                              a private PostgreSQL, Redis and parleyd on their
#                              own loopback ports, create two users, a "list"
#                              room and a "post" room with 60 messages each and
#                              8 more rooms over REST (curl), then run wrk
#                              (2 threads, --latency) for every connection count
#                              and configuration:
#                                list  GET  rooms/<id>/messages/?page_size=50
#                                post  POST messages/  (each one committed with
#                                      fsync=on, synchronous_commit=on: checked)
#                              print a summary and stop everything it started.
#                              Whole run with the defaults: about 80-150 s.
#
# Per run it prints req/s, p50/p90/p99/max latency, errors (non-2xx and
# socket errors), the CPU split (parleyd, our PostgreSQL, wrk, everybody
# else: 100 = one core) and parleyd's busiest threads. After a post run it
# counts the rows in PostgreSQL: the room must have grown by exactly the
# number of 201 answers plus the requests wrk abandoned in flight when its
# clock ran out (sent, never answered, found by their client_id); anything
# else is printed as DB MISMATCH. Tables are ANALYZEd before each run.
# Rows also go to var/bench/results.tsv. Recorded figures: bench/README.md.
#
# Settings (environment):
#   BENCH_CONNS="16 64 128"   wrk connection counts (each is one list and one post run)
#   BENCH_DURATION=10         seconds per wrk run
#   BENCH_WORKERS="2"         persister_workers values (parleyd restarts for each)
#   BENCH_GROUP_COMMIT="64"   group_commit_max values (parleyd restarts for each)
#   BENCH_GATEWAYS=1          gateway_threads
#   BENCH_TESTS="list post"   which runs, in this order for each connection count:
#                               list     GET the 50 newest of a 60-message room
#                               post     POST into one room (starts with 60 messages)
#                               post8    POST round-robin into 8 rooms
#                               listbig  GET the 50 newest of the post room (grown by
#                                        the post runs before it, if any)
#                               healthz  GET /healthz: the gateway alone, no actor or database
#   BENCH_CLIENT_ID=1         each POST carries a unique client_id (idempotency key,
#                             as real clients send); 0 leaves it out
#   BENCH_QUIET_PCT=15 BENCH_QUIET_WAIT=15   before each run, wait up to 15 s until other
#                             processes use < 15% of a core; BENCH_DISTURBED_PCT=25
#                             BENCH_RERUN=1: a run during which others used more than
#                             25% of a core is run again (once); both rows are kept;
#                             after BENCH_BUDGET=120 seconds, no more waits or reruns
#   BENCH_PROFILE=0           1: perf record the whole machine (cpu-clock) during the
#                             first run of each kind, print the top commands and symbols
#   BENCH_PG_PORT=55470  BENCH_REDIS_PORT=56470  BENCH_HTTP_PORT=8470
#   BENCH_ZMQ_PORT=18470 (and +1)   parleyd's inject/events endpoints (below the
#                             ephemeral range 32768-60999, where a client socket may
#                             hold the port in TIME_WAIT and make the bind fail)
#   BENCH_SOURCE=worktree     what to build: the working tree (into build-bench/);
#                             "snapshot": a copy of the working tree taken now, or a
#                             commit (HEAD, a hash: git archive); both copied to
#                             var/bench/src and built in var/bench/build, so edits
#                             others make meanwhile cannot break or change the build
#   BENCH_SKIP_BUILD=1        use the parleyd already built
#   BENCH_PARLEYD=PATH        benchmark this parleyd binary (no build); BENCH_PARLEYD_SRC:
#                             its source tree (for naming threads)
#   BENCH_HOLD=1              after the set-up, keep everything running (for psql,
#                             perf, curl by hand; var/bench/hold.env) until Ctrl-C
#
# The per-user send rate limit is raised to 1 000 000/s (burst 1 000 000)
# for the benchmark: one user posts everything and the default (20/s, burst
# 50) would answer 429 almost at once. Password hashing is made cheap
# (password_ops=1, password_mem_kib=8192) only to make the two logins of the
# set-up fast; no measured request hashes a password.
#
# Everything lives under var/bench/ (ignored by git); the PostgreSQL cluster
# is created afresh on every run and removed at exit.

set -euo pipefail
umask 022

STARTED_AT=$SECONDS
ROOT="$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." && pwd -P)"
cd "$ROOT"

CONNS=(${BENCH_CONNS:-16 64 128})
DURATION=${BENCH_DURATION:-10}
WORKERS=(${BENCH_WORKERS:-2})
GROUP_COMMITS=(${BENCH_GROUP_COMMIT:-64})
GATEWAYS=${BENCH_GATEWAYS:-1}
TESTS=(${BENCH_TESTS:-list post})
CLIENT_ID=${BENCH_CLIENT_ID:-1}
PROFILE=${BENCH_PROFILE:-0}
PG_PORT=${BENCH_PG_PORT:-55470}
REDIS_PORT=${BENCH_REDIS_PORT:-56470}
HTTP_PORT=${BENCH_HTTP_PORT:-8470}
ZMQ_PORT=${BENCH_ZMQ_PORT:-18470}
PG_BIN=${PARLEY_PG_BIN:-/usr/lib/postgresql/15/bin}
SOURCE=${BENCH_SOURCE:-worktree}
BUILD_DIR="$ROOT/build-bench"
VAR="$ROOT/var/bench"
BASE="http://127.0.0.1:$HTTP_PORT"
WRK_THREADS=2
IS_ROOT=0; [[ "$(id -u)" == 0 ]] && IS_ROOT=1
export PATH="$PATH:/usr/sbin:/sbin"

log () { printf '[bench] %s\n' "$*" >&2; }
die () { printf '[bench] ERROR: %s\n' "$*" >&2; exit 1; }

for tool in wrk curl jq redis-server "$PG_BIN/postgres" cmake; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool is missing (Debian: wrk curl jq redis-server postgresql cmake)"
done

port_in_use () { timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null; }
for p in "$PG_PORT" "$REDIS_PORT" "$HTTP_PORT" "$ZMQ_PORT" $((ZMQ_PORT + 1)); do
    port_in_use "$p" && die "port $p is in use; choose others with BENCH_*_PORT"
done

as_pg () {
    if (( IS_ROOT )); then (cd / && runuser -u postgres -- "$@"); else "$@"; fi
}

# ------------------------------------------------------------ teardown --

PARLEYD_PID="" REDIS_STARTED=0 PG_STARTED=0 PERF_PID=""
PG_BASE="$VAR/pg"
cleanup () {
    set +e
    trap '' INT TERM
    if [[ -n "$PERF_PID" ]] && kill -0 "$PERF_PID" 2>/dev/null; then
        kill -INT "$PERF_PID"; wait "$PERF_PID" 2>/dev/null
    fi
    stop_parleyd
    if (( REDIS_STARTED )); then
        redis-cli -h 127.0.0.1 -p "$REDIS_PORT" shutdown nosave >/dev/null 2>&1
        log "stopped Redis"
    fi
    if (( PG_STARTED )); then
        as_pg "$PG_BIN/pg_ctl" -D "$PG_BASE/data" -m fast -w -t 60 stop >/dev/null 2>&1 \
            || as_pg "$PG_BIN/pg_ctl" -D "$PG_BASE/data" -m immediate -w stop >/dev/null 2>&1
        log "stopped PostgreSQL"
    fi
    rm -rf "$PG_BASE"
}
stop_parleyd () {
    [[ -n "$PARLEYD_PID" ]] || return 0
    kill -TERM "$PARLEYD_PID" 2>/dev/null || true
    local i
    for (( i = 0; i < 100; i++ )); do
        kill -0 "$PARLEYD_PID" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$PARLEYD_PID" 2>/dev/null || true
    wait "$PARLEYD_PID" 2>/dev/null || true
    PARLEYD_PID=""
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------- build --

# sync_tree NEW DIR — make DIR's files those of NEW, copying only the files
# whose content changed (with a fresh mtime, so make rebuilds what depends on
# them even when the original mtime is older than the last build), then
# removes NEW.
sync_tree () {
    local f
    mkdir -p "$2"
    while IFS= read -r -d '' f; do
        if ! cmp -s "$1/$f" "$2/$f"; then
            mkdir -p "$2/$(dirname "$f")"; rm -f "$2/$f"; cp "$1/$f" "$2/$f"
        fi
    done < <(cd "$1" && find . -type f -print0)
    while IFS= read -r -d '' f; do
        [[ -e "$1/$f" || "$f" == ./.commit ]] || rm -f "$2/$f"
    done < <(cd "$2" && find . -type f -print0)
    rm -rf "$1"
}
SRC="$ROOT" SOURCE_DESC="working tree of $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')"
if [[ "${BENCH_SKIP_BUILD:-0}" == 1 || -n "${BENCH_PARLEYD:-}" ]] && [[ "$SOURCE" != worktree ]]; then
    SRC="$VAR/src"
    BUILD_DIR="$VAR/build"
    SOURCE_DESC="$(cat "$SRC/.commit" 2>/dev/null || echo "var/bench/src")"
elif [[ "$SOURCE" == snapshot ]]; then
    # A copy of the working tree as it is now (tracked and untracked files
    # git does not ignore), so edits others make while it runs change nothing.
    SRC="$VAR/src"
    BUILD_DIR="$VAR/build"
    SOURCE_DESC="snapshot of the working tree (HEAD $(git -C "$ROOT" rev-parse --short HEAD), $(date -u +%H:%M:%SZ))"
    rm -rf "$SRC.new"; mkdir -p "$SRC.new"
    (cd "$ROOT" && git ls-files -z -co --exclude-standard | tar --null -T - -cf -) | tar -x -C "$SRC.new"
    sync_tree "$SRC.new" "$SRC"
    echo "$SOURCE_DESC" >"$SRC/.commit"
elif [[ "$SOURCE" != worktree ]]; then
    # A snapshot of a commit (git archive: read-only), so edits in progress
    # in the working tree neither break nor change the measured build.
    COMMIT="$(git -C "$ROOT" rev-parse --verify "$SOURCE^{commit}")" || die "BENCH_SOURCE=$SOURCE is not a commit"
    SRC="$VAR/src"
    BUILD_DIR="$VAR/build"
    SOURCE_DESC="commit ${COMMIT:0:10}"
    if [[ "$(cat "$SRC/.commit" 2>/dev/null)" != "$COMMIT" ]]; then
        rm -rf "$SRC.new"; mkdir -p "$SRC.new"
        git -C "$ROOT" archive "$COMMIT" | tar -x -C "$SRC.new"
        sync_tree "$SRC.new" "$SRC"
        echo "$COMMIT" >"$SRC/.commit"
    fi
fi
if [[ "${BENCH_SKIP_BUILD:-0}" != 1 && -z "${BENCH_PARLEYD:-}" ]]; then
    log "build: Release of the $SOURCE_DESC into ${BUILD_DIR#$ROOT/}"
    mkdir -p "$VAR"
    # -Wno-format-truncation: at -O3 gcc 12 warns in actors/log.c
    # (log_timestamp), which -Werror turns into an error.
    cmake -S "$SRC" -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release \
        -DCMAKE_C_FLAGS="-Wno-format-truncation" >"$VAR/cmake.log" 2>&1 \
        || { cat "$VAR/cmake.log" >&2; die "cmake configure failed"; }
    cmake --build "$BUILD_DIR" -j2 --target parleyd >"$VAR/build.log" 2>&1 \
        || { tail -n 30 "$VAR/build.log" >&2; die "build failed (log: $VAR/build.log)"; }
fi
SRC="${BENCH_PARLEYD_SRC:-$SRC}"   # the source of BENCH_PARLEYD (thread names)
PARLEYD="${BENCH_PARLEYD:-$BUILD_DIR/parleyd}"
[[ -n "${BENCH_PARLEYD:-}" ]] && SOURCE_DESC="$PARLEYD (BENCH_PARLEYD)"
[[ -x "$PARLEYD" ]] || die "$PARLEYD is missing"

# ------------------------------------------------------------- services --

mkdir -p "$VAR"
if (( IS_ROOT )) && ! runuser -u postgres -- test -x "$VAR/." 2>/dev/null; then
    PG_BASE="/var/tmp/parley-bench-$(printf '%s' "$ROOT" | sha256sum | cut -c1-12)"
fi
if [[ -d "$PG_BASE/data" ]] && as_pg "$PG_BIN/pg_ctl" -D "$PG_BASE/data" status >/dev/null 2>&1; then
    log "a PostgreSQL left running by an earlier run in $PG_BASE: stopping it"
    as_pg "$PG_BIN/pg_ctl" -D "$PG_BASE/data" -m immediate -w stop >/dev/null 2>&1 || true
fi
rm -rf "$PG_BASE"
mkdir -p "$PG_BASE/data" "$PG_BASE/sock"
(( IS_ROOT )) && chown -R postgres:postgres "$PG_BASE"
chmod 700 "$PG_BASE/data"
log "postgres: initdb in $PG_BASE"
# --no-sync only skips initdb's final flush; the server runs with fsync=on.
as_pg "$PG_BIN/initdb" -D "$PG_BASE/data" -U postgres -A trust -E UTF8 --no-locale --no-sync \
    >"$VAR/initdb.log" 2>&1 || { cat "$VAR/initdb.log" >&2; die "initdb failed"; }
PG_STARTED=1
as_pg "$PG_BIN/pg_ctl" -D "$PG_BASE/data" -l "$PG_BASE/postgres.log" -w -t 60 \
    -o "-p $PG_PORT -k '$PG_BASE/sock' -c listen_addresses=127.0.0.1 -c fsync=on -c synchronous_commit=on" \
    start >/dev/null || { tail -n 20 "$PG_BASE/postgres.log" >&2; die "PostgreSQL did not start"; }
psql_do () {   # DB SQL
    "$PG_BIN/psql" -X -q -At -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PG_PORT" -U postgres -d "$1" -c "$2"
}
psql_do postgres "CREATE ROLE parley LOGIN SUPERUSER" >/dev/null
psql_do postgres "CREATE DATABASE parley OWNER parley" >/dev/null
PG_SETTINGS="$(psql_do postgres "SELECT string_agg(name || '=' || setting, ' ' ORDER BY name) FROM pg_settings
    WHERE name IN ('fsync','synchronous_commit','wal_sync_method','full_page_writes','shared_buffers','max_connections','commit_delay')")"
[[ " $PG_SETTINGS " == *" fsync=on "* && " $PG_SETTINGS " == *" synchronous_commit=on "* ]] \
    || die "PostgreSQL is not durable: $PG_SETTINGS"
log "postgres: 127.0.0.1:$PG_PORT, $PG_SETTINGS"

mkdir -p "$VAR/redis"
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --daemonize yes --dir "$VAR/redis" \
    --pidfile "$VAR/redis/redis.pid" --logfile "$VAR/redis/redis.log" --save '' --appendonly no \
    </dev/null >/dev/null || die "redis-server did not start"
REDIS_STARTED=1
for (( i = 0; i < 50; i++ )); do
    [[ "$(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null)" == PONG ]] && break
    sleep 0.1
done
log "redis: 127.0.0.1:$REDIS_PORT"

# -------------------------------------------------------------- parleyd --

: >"$VAR/empty.conf"
parleyd_env () {   # CMD... — execs CMD with the benchmark's parleyd settings (call it in a subshell or &)
    exec env PARLEY_HTTP_HOST=127.0.0.1 PARLEY_HTTP_PORT="$HTTP_PORT" \
        PARLEY_PG_DSN="postgresql://parley@127.0.0.1:$PG_PORT/parley" \
        PARLEY_REDIS_URL="redis://127.0.0.1:$REDIS_PORT/0" \
        PARLEY_SMTP_URL="smtp://127.0.0.1:9" \
        PARLEY_INJECT_ENDPOINT="tcp://127.0.0.1:$ZMQ_PORT" \
        PARLEY_EVENTS_ENDPOINT="tcp://127.0.0.1:$((ZMQ_PORT + 1))" \
        PARLEY_VAR_DIR="$VAR/parleyd" PARLEY_LOG_LEVEL=warn \
        PARLEY_PERSISTER_WORKERS="$CUR_WORKERS" PARLEY_GROUP_COMMIT_MAX="$CUR_GC" \
        PARLEY_GATEWAY_THREADS="$GATEWAYS" \
        PARLEY_RATE_LIMIT_PER_SEC=1000000 PARLEY_RATE_LIMIT_BURST=1000000 \
        PARLEY_ACCESS_TOKEN_TTL=3600 PARLEY_PASSWORD_OPS=1 PARLEY_PASSWORD_MEM_KIB=8192 \
        "$@"
}
CUR_WORKERS=2 CUR_GC=64
start_parleyd () {   # WORKERS GROUP_COMMIT
    CUR_WORKERS=$1 CUR_GC=$2
    actor_order
    parleyd_env "$PARLEYD" -c "$VAR/empty.conf" </dev/null >>"$VAR/parleyd.log" 2>&1 &
    PARLEYD_PID=$!
    for (( i = 0; i < 300; i++ )); do
        kill -0 "$PARLEYD_PID" 2>/dev/null || { tail -n 20 "$VAR/parleyd.log" >&2; die "parleyd exited"; }
        [[ "$(curl -s -o /dev/null -w '%{http_code}' "$BASE/readyz")" == 200 ]] && return 0
        sleep 0.1
    done
    die "parleyd is not ready after 30 s (log: $VAR/parleyd.log)"
}

api () {   # METHOD PATH [JSON] — prints the body; fails on a non-2xx answer
    local out code
    out="$(curl -sS -X "$1" "$BASE$2" -H 'Content-Type: application/json' \
        ${TOKEN:+-H "Authorization: Bearer $TOKEN"} ${3:+--data "$3"} -w '\n%{http_code}')"
    code="${out##*$'\n'}"
    [[ "$code" == 2* ]] || die "$1 $2 answered $code: ${out%$'\n'*}"
    printf '%s\n' "${out%$'\n'*}"
}

sql () { psql_do parley "$1"; }

# ------------------------------------------------------------ measuring --

HZ=$(getconf CLK_TCK)
busy_ticks () { awk '/^cpu /{print $2+$3+$4+$7+$8+$9; exit}' /proc/stat; }
stat_ticks () { local s; s="$(cat "$1" 2>/dev/null)" || { echo 0; return; }; s="${s##*) }"; awk '{print $12+$13}' <<<"$s"; }
pids_ticks () { local t=0 p; for p in "$@"; do t=$(( t + $(stat_ticks "/proc/$p/stat") )); done; echo "$t"; }
pg_pids () {
    local pm; pm="$(head -n1 "$PG_BASE/data/postmaster.pid" 2>/dev/null)" || return 0
    echo "$pm"; pgrep -P "$pm" || true
}
now_ms () { date +%s%3N; }

# The name of each parleyd thread: main, libzmq's (named ZMQbg/...), then the
# actors in parleyd's start order (s_start in actors/parleyd.c): persisters,
# presence, bus, room shards, user shards, gateways. Anything else: "tid N".
# The order is read from s_start in the built source's actors/parleyd.c and
# the counts from `parleyd --print-config`.
ACTOR_ORDER=()
actor_order () {   # fills ACTOR_ORDER with "kind count" items
    local cfg line kind count key cores
    cores=$(nproc)
    cfg="$(parleyd_env "$PARLEYD" -c "$VAR/empty.conf" --print-config 2>/dev/null || true)"
    conf () { sed -nE "s/^[[:space:]]*$1[[:space:]]*=[[:space:]]*\"?([^\"]*)\"?[[:space:]]*$/\1/p" <<<"$cfg" | tail -n1; }
    ACTOR_ORDER=()
    while read -r line; do
        kind="$(sed -nE 's/.*&([a-z_]+)_actor.*/\1/p' <<<"$line")"
        [[ "$line" == *gateway_spawn* ]] && kind=gateway
        [[ -n "$kind" ]] || continue
        if [[ "$line" =~ actor_shard_count\ \(config,\ \"([a-z]+)\"\) ]]; then
            key=${BASH_REMATCH[1]}
            case $key in
                persister) count=$(conf persister_workers) ;;
                *) count=$(conf "${key}_shards") ;;
            esac
            [[ -z "$count" || "$count" == 0 ]] && count=$cores
        elif [[ "$line" =~ config-\>([a-z_]+) ]]; then
            count=$(conf "${BASH_REMATCH[1]}")
        else
            count="$(sed -nE 's/.*_actor, *\(?(int\)?)? *([0-9]+).*/\2/p' <<<"$line")"
        fi
        ACTOR_ORDER+=("$kind ${count:-1}")
    done < <(sed -n '/^s_start (/,/^}/p' "$SRC/actors/parleyd.c" | grep -E 's_spawn_all|gateway_spawn')
}
thread_names () {   # prints "tid name" lines
    local names=() t item kind count
    names+=(main)
    for item in "${ACTOR_ORDER[@]}"; do
        read -r kind count <<<"$item"
        [[ "$kind" == gateway ]] && count=$GATEWAYS
        for (( t = 0; t < count; t++ )); do names+=("$kind.$t"); done
    done
    local i=0 comm
    for t in $(ls /proc/"$PARLEYD_PID"/task | sort -n); do
        comm="$(cat /proc/"$PARLEYD_PID"/task/"$t"/comm 2>/dev/null)"
        if [[ "$comm" == ZMQbg* ]]; then echo "$t $comm"; continue; fi
        if (( i < ${#names[@]} )); then echo "$t ${names[$i]}"; else echo "$t tid-$t"; fi
        i=$(( i + 1 ))
    done
}

declare -A PROFILED=()
rm -f "$VAR"/perf-*.data "$VAR"/perf-*.data.old
RESULTS="$VAR/results.tsv"
printf 'test\tworkers\tgroup_commit\tconns\treq_s\tp50_ms\tp90_ms\tp99_ms\tmax_ms\terrors\tcheck\tcpu%%_parleyd\tcpu%%_postgres\tcpu%%_wrk\tcpu%%_other\tload1\tbusiest_threads\n' >"$RESULTS"
SUMMARY=()

kv () { sed -nE "s/.* $1=([^ ]*).*/\\1/p" <<<" $BENCH_LINE"; }
ms () { awk -v u="$1" 'BEGIN{printf "%.2f", u/1000}'; }

# Other engineers' builds and tests share the machine: wait (at most
# BENCH_QUIET_WAIT seconds) until the rest of the machine uses less than
# BENCH_QUIET_PCT per cent of one core, measured over one second.
QUIET_WAIT=${BENCH_QUIET_WAIT:-15}
QUIET_PCT=${BENCH_QUIET_PCT:-15}
RERUN=${BENCH_RERUN:-1}
BUDGET=${BENCH_BUDGET:-120}
DISTURBED_PCT=${BENCH_DISTURBED_PCT:-25}
quiet_wait () {
    local deadline=$(( SECONDS + QUIET_WAIT )) b0 b1 o0 o1 other waited=0
    local -a ours
    while :; do
        mapfile -t ours < <(pg_pids; echo "$PARLEYD_PID")
        b0=$(busy_ticks); o0=$(pids_ticks "${ours[@]}")
        sleep 1
        b1=$(busy_ticks); o1=$(pids_ticks "${ours[@]}")
        other=$(( (b1 - b0) - (o1 - o0) ))
        (( other * 100 / HZ < QUIET_PCT )) && break
        if (( SECONDS >= deadline )); then
            log "the machine is still busy (others use $(( other * 100 / HZ ))% of a core): measuring anyway"
            break
        fi
        (( waited )) || log "waiting for a quiet machine (others use $(( other * 100 / HZ ))% of a core)"
        waited=1
    done
}

# run_wrk TEST CONNS WORKERS GC CHECK_FN WRK_ARGS... — one wrk run with its
# CPU split (per cent of one core: 200 = both cores) and per-thread figures.
run_wrk () {
    local test=$1 conns=$2 workers=$3 gc=$4 check_fn=$5; shift 5
    local attempt
    for (( attempt = 0; attempt <= RERUN; attempt++ )); do
        # Past the time budget, no more waiting or second runs.
        (( SECONDS - STARTED_AT < BUDGET )) && quiet_wait || attempt=$RERUN
        run_wrk_once "$test" "$conns" "$workers" "$gc" "$check_fn" "$@"
        (( LAST_OTHER_PCT <= DISTURBED_PCT )) && break
        (( attempt < RERUN )) && echo "         (disturbed: others used ${LAST_OTHER_PCT}% of a core; running it again)"
    done
    return 0
}
run_wrk_once () {
    local test=$1 conns=$2 workers=$3 gc=$4 check_fn=$5; shift 5
    # every attempt gets its own client_id prefix (a rerun must not replay ids)
    POST_PREFIX="b$(date +%s%N | cut -c8-16)"
    local args=() a
    for a in "$@"; do [[ "$a" == @PREFIX@ ]] && args+=("$POST_PREFIX") || args+=("$a"); done
    set -- "${args[@]}"
    local load pg b0 b1 p0 p1 g0 g1 t0 t1 elapsed tid ticks name
    load="$(cut -d' ' -f1 /proc/loadavg)"
    mapfile -t pg < <(pg_pids)
    declare -A th0=() tname=()
    while read -r tid name; do tname[$tid]=$name; th0[$tid]=$(stat_ticks "/proc/$PARLEYD_PID/task/$tid/stat"); done \
        < <(thread_names "$workers")
    if [[ "$PROFILE" == 1 && -z "${PROFILED[$test]:-}" ]]; then
        PROFILED[$test]=1
        perf record -q -a -g -e cpu-clock -F 499 -o "$VAR/perf-$test.data" -- sleep $(( DURATION - 2 )) \
            >/dev/null 2>&1 &
        PERF_PID=$!
    fi
    "${PRE_HOOK[@]}"
    t0=$(now_ms); b0=$(busy_ticks); p0=$(pids_ticks "$PARLEYD_PID"); g0=$(pids_ticks "${pg[@]}")
    /usr/bin/time -f '%U %S' -o "$VAR/wrk.time" \
        wrk -t "$WRK_THREADS" -c "$conns" -d "${DURATION}s" --timeout 10s --latency "$@" \
        >"$VAR/wrk.out" 2>&1 || true
    t1=$(now_ms); b1=$(busy_ticks); p1=$(pids_ticks "$PARLEYD_PID"); g1=$(pids_ticks "${pg[@]}")
    if [[ -n "$PERF_PID" ]]; then wait "$PERF_PID" 2>/dev/null || true; PERF_PID=""; fi
    elapsed=$(( t1 - t0 ))
    local wrk_ticks other pct_p pct_g pct_w pct_o
    wrk_ticks=$(awk -v hz="$HZ" '{printf "%d", ($1+$2)*hz}' "$VAR/wrk.time")
    other=$(( (b1 - b0) - (p1 - p0) - (g1 - g0) - wrk_ticks )); (( other < 0 )) && other=0
    pct () { awk -v t="$1" -v hz="$HZ" -v ms="$elapsed" 'BEGIN{printf "%.0f", 100*t/hz/(ms/1000)}'; }
    pct_p=$(pct $(( p1 - p0 ))); pct_g=$(pct $(( g1 - g0 ))); pct_w=$(pct "$wrk_ticks"); pct_o=$(pct "$other")
    LAST_OTHER_PCT=$pct_o
    local busiest=""
    busiest="$(for tid in "${!th0[@]}"; do
                   ticks=$(( $(stat_ticks "/proc/$PARLEYD_PID/task/$tid/stat") - ${th0[$tid]} ))
                   echo "$ticks ${tname[$tid]}"
               done | sort -rn | head -n 4 | while read -r ticks name; do
                   printf '%s %s%%, ' "$name" "$(pct "$ticks")"; done || true)"
    busiest="${busiest%, }"
    BENCH_LINE="$(grep '^BENCH ' "$VAR/wrk.out" || true)"
    if [[ -z "$BENCH_LINE" ]]; then cat "$VAR/wrk.out" >&2; die "wrk gave no result"; fi
    local reqs dur rate errors check
    reqs=$(kv requests); dur=$(kv duration_us)
    rate=$(awk -v r="$reqs" -v d="$dur" 'BEGIN{printf "%.0f", r/(d/1e6)}')
    errors=$(( $(kv status_err) + $(kv connect) + $(kv read) + $(kv write) + $(kv timeout) ))
    check="$("$check_fn")"
    local row
    row="$(printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s' \
        "$test" "$workers" "$gc" "$conns" "$rate" "$(ms "$(kv p50_us)")" "$(ms "$(kv p90_us)")" \
        "$(ms "$(kv p99_us)")" "$(ms "$(kv max_us)")" "$errors" "$check" \
        "$pct_p" "$pct_g" "$pct_w" "$pct_o" "$load" "$busiest")"
    printf '%s\n' "$row" >>"$RESULTS"
    printf '  %-5s c=%-4s %7s req/s  p50 %6s ms  p90 %6s ms  p99 %6s ms  max %7s ms  errors %s  %s\n' \
        "$test" "$conns" "$rate" "$(ms "$(kv p50_us)")" "$(ms "$(kv p90_us)")" "$(ms "$(kv p99_us)")" \
        "$(ms "$(kv max_us)")" "$errors" "$check"
    printf '         cpu%% (100 = one core): parleyd %s, postgres %s, wrk %s, others %s; load1 %s\n' \
        "$pct_p" "$pct_g" "$pct_w" "$pct_o" "$load"
    printf '         busiest parleyd threads: %s\n' "$busiest"
    if [[ -f "$VAR/perf-$test.data" && "${PROFILED[$test]:-}" == 1 ]]; then
        PROFILED[$test]=2
        echo "         perf (whole machine, cpu-clock): by command"
        perf report -i "$VAR/perf-$test.data" --stdio --no-children --sort comm 2>/dev/null \
            | grep -E '^ +[0-9]' | head -n 6 | sed 's/^/           /' || true
        echo "         perf: top symbols"
        perf report -i "$VAR/perf-$test.data" --stdio --no-children --sort comm,dso,symbol -g none 2>/dev/null \
            | grep -E '^ +[0-9]' | head -n 25 | sed 's/^/           /' || true
    fi
}
PRE_HOOK=(true)

# ---------------------------------------------------------------- set-up --

SETUP_DONE=0
USER_A="" USER_B="" TOKEN="" ROOM="" POST_ROOM="" ROOMS8=()
setup_data () {
    local suffix; suffix="$(date +%s)$RANDOM"
    TOKEN=""
    USER_A="$(api POST /api/auth/register/ "{\"username\":\"bench_a_$suffix\",\"password\":\"bench-password\"}" | jq -r .id)"
    USER_B="$(api POST /api/auth/register/ "{\"username\":\"bench_b_$suffix\",\"password\":\"bench-password\"}" | jq -r .id)"
    TOKEN="$(api POST /api/auth/login/ "{\"username\":\"bench_a_$suffix\",\"password\":\"bench-password\"}" | jq -r .access)"
    ROOM="$(api POST /api/messaging/rooms/ \
        "{\"name\":\"bench\",\"room_type\":\"group\",\"participants\":[\"$USER_B\"]}" | jq -r .id)"
    local i
    for (( i = 1; i <= 60; i++ )); do
        api POST /api/messaging/messages/ "{\"room\":\"$ROOM\",\"content\":\"seed message $i @bench_b_$suffix\"}" >/dev/null
    done
    POST_ROOM="$(api POST /api/messaging/rooms/ \
        "{\"name\":\"bench posts\",\"room_type\":\"group\",\"participants\":[\"$USER_B\"]}" | jq -r .id)"
    for (( i = 1; i <= 60; i++ )); do
        api POST /api/messaging/messages/ "{\"room\":\"$POST_ROOM\",\"content\":\"seed message $i\"}" >/dev/null
    done
    ROOMS8=()
    for (( i = 1; i <= 8; i++ )); do
        ROOMS8+=("$(api POST /api/messaging/rooms/ \
            "{\"name\":\"bench $i\",\"room_type\":\"group\",\"participants\":[\"$USER_B\"]}" | jq -r .id)")
    done
    local listed
    listed="$(api GET "/api/messaging/rooms/$ROOM/messages/?page_size=50" | jq '.results | length')"
    [[ "$listed" == 50 ]] || die "the list answered $listed messages, not 50"
    log "set-up: users $USER_A $USER_B; list room $ROOM with $(sql "SELECT count(*) FROM messages WHERE room_id = '$ROOM'") messages;" \
        "post room $POST_ROOM with $(sql "SELECT count(*) FROM messages WHERE room_id = '$POST_ROOM'"); 8 more rooms"
    SETUP_DONE=1
}

# ------------------------------------------------------------------ runs --

check_list () {
    local status_err; status_err=$(kv status_err)
    (( status_err == 0 )) && echo "all 2xx" || echo "NON-2xx: $status_err"
}

POST_ROOMS="" POST_PREFIX="" POST_BEFORE=0 POST_CID_BEFORE=0
post_before () {
    analyze
    POST_BEFORE=$(sql "SELECT count(*) FROM messages WHERE room_id = ANY ('{$POST_ROOMS}'::uuid[])")
}
# Every 201 is in the database; rows beyond them are requests wrk abandoned
# in flight at the end of its run (sent, not answered), found by client_id.
check_post () {
    sleep 0.5   # requests abandoned in flight finish committing
    local after grown n201 n200 sent pending late ids
    after=$(sql "SELECT count(*) FROM messages WHERE room_id = ANY ('{$POST_ROOMS}'::uuid[])")
    grown=$(( after - POST_BEFORE ))
    n201=$(kv n201); n200=$(kv n200); sent=$(kv sent)
    pending="$(kv pending)"
    if [[ "$CLIENT_ID" == 1 ]]; then
        late=0
        if [[ -n "$pending" ]]; then
            ids="$(sed -E "s/([^,]+)/$POST_PREFIX-\\1/g" <<<"$pending")"
            late=$(sql "SELECT count(*) FROM messages WHERE sender_id = '$USER_A'
                        AND client_id = ANY (string_to_array('$ids', ','))")
        fi
        if (( grown == n201 + late && n200 == 0 )); then
            echo "db OK: +$grown rows = $n201 x 201 + $late abandoned in flight"
        else
            echo "DB MISMATCH: +$grown rows, $n201 x 201, $n200 x 200, $late abandoned in flight committed"
        fi
    else
        local inflight=$(( sent - $(kv requests) ))
        if (( grown >= n201 && grown <= n201 + inflight )); then
            echo "db OK: +$grown rows = $n201 x 201 + $(( grown - n201 )) of $inflight abandoned in flight"
        else
            echo "DB MISMATCH: +$grown rows, $n201 x 201, $inflight in flight"
        fi
    fi
}

# Fresh tables: statistics first. parleyd's persister connections keep
# prepared statements; a generic plan made while a table held a handful of
# rows (a sequential scan) stays until ANALYZE invalidates it, and would make
# an index lookup cost ~0.2 ms once the table holds thousands of rows.
analyze () { sql "ANALYZE" >/dev/null; }

run_list () {   # CONNS WORKERS GC [ROOM NAME]
    PRE_HOOK=(analyze)
    run_wrk "${5:-list}" "$1" "$2" "$3" check_list -s "$ROOT/bench/list.lua" \
        -H "Authorization: Bearer $TOKEN" "$BASE/api/messaging/rooms/${4:-$ROOM}/messages/?page_size=50"
}
# The gateway alone (answered by the lws thread, no actor, no database): the
# ceiling of the HTTP layer on this machine.
run_healthz () {   # CONNS WORKERS GC
    PRE_HOOK=(true)
    run_wrk healthz "$1" "$2" "$3" check_list -s "$ROOT/bench/list.lua" "$BASE/healthz"
}
run_post () {   # TEST CONNS WORKERS GC ROOMS
    POST_ROOMS=$5
    PRE_HOOK=(post_before)
    run_wrk "$1" "$2" "$3" "$4" check_post -s "$ROOT/bench/post.lua" "$BASE/api/messaging/messages/" \
        -- "$POST_ROOMS" "$TOKEN" @PREFIX@ "$CLIENT_ID"
}

log "parleyd: $SOURCE_DESC"
log "machine: $(nproc) cores, $(lscpu | sed -nE 's/^Model name: *//p'), $(free -g | awk '/^Mem:/{print $2}') GiB; load $(cut -d' ' -f1-3 /proc/loadavg)"
for workers in "${WORKERS[@]}"; do
    for gc in "${GROUP_COMMITS[@]}"; do
        start_parleyd "$workers" "$gc"
        (( SETUP_DONE )) || setup_data
        if [[ "${BENCH_HOLD:-0}" == 1 ]]; then
            printf 'export BENCH_TOKEN=%s BENCH_ROOM=%s BENCH_POST_ROOM=%s BENCH_ROOMS8=%s BENCH_USER=%s PARLEYD_PID=%s\n' \
                "$TOKEN" "$ROOM" "$POST_ROOM" "$(IFS=,; echo "${ROOMS8[*]}")" "$USER_A" "$PARLEYD_PID" | tee "$VAR/hold.env"
            log "BENCH_HOLD=1: services up (psql -h 127.0.0.1 -p $PG_PORT -U parley parley; $BASE); Ctrl-C stops them"
            while :; do sleep 1; done
        fi
        echo "== persister_workers=$workers group_commit_max=$gc gateway_threads=$GATEWAYS" \
             "(wrk: $WRK_THREADS threads, ${DURATION}s, client_id=$CLIENT_ID)"
        for conns in "${CONNS[@]}"; do
            for test in "${TESTS[@]}"; do
                case $test in
                    list)  run_list "$conns" "$workers" "$gc" ;;
                    post)  run_post post "$conns" "$workers" "$gc" "$POST_ROOM" ;;
                    healthz) run_healthz "$conns" "$workers" "$gc" ;;
                    listbig) run_list "$conns" "$workers" "$gc" "$POST_ROOM" listbig ;;
                    post8) run_post post8 "$conns" "$workers" "$gc" "$(IFS=,; echo "${ROOMS8[*]}")" ;;
                    *) die "unknown test '$test' in BENCH_TESTS" ;;
                esac
            done
        done
        stop_parleyd
    done
done
echo "== results (also in ${RESULTS#$ROOT/}; cpu% of one core, 200 = the whole machine)"
column -t -s $'\t' "$RESULTS" | cut -c1-220
log "done in $(( SECONDS - STARTED_AT ))s"
