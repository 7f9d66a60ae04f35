#!/usr/bin/env bash
# tests/sql/bench_json.sh — how much PostgreSQL CPU the JSON rendering and
# event functions cost (a micro-benchmark: prints figures; the one thing it
# checks is that both schemas render the same).
#
#   tests/sql/bench_json.sh [SCALE_PCT]
#
# Starts a throwaway PostgreSQL 15 cluster (fsync off, synchronous_commit
# off: CPU, not the disk), builds two databases from schema/migrations/:
#   before  every migration up to (not including) 010_fast_json.sql
#   after   every migration
# loads tests/sql/bench_json_data.sql into both and runs each statement
# below with pgbench (one client, prepared statements, as parleyd's
# persister sends them: actors/ops/util.c op_exec), a fixed number of times
# per database (SCALE_PCT scales the counts), alternating before/after.
# Prints the backend's CPU time per run (µs), the ratio, and pgbench's wall
# latency (ms; noisier on a shared machine).
# First it runs tests/sql/bench_json_compare.sql in both databases (every
# message, room, user, ... for every viewer; events, notifications and
# group-commit events of a few writes) and fails unless the outputs are
# identical.
#   list50   GET rooms/<id>/messages/?page_size=50: parley_message_json x 50
#            (a room with replies, reactions, an attachment, a location)
#   list50plain  the same in a room of 60 plain messages (bench/rest.sh's list)
#   post     POST messages/: actors/ops/messages.c S_INSERT_SQL in its own
#            transaction (parley_next_seq, triggers, parley_message_event)
#   pin      message.pinned: UPDATE + parley_message_event + parley_message_json
#            (rolled back)
#   react    reaction.added: INSERT + parley_reaction_event + parley_reaction_json
#            (rolled back)
#   rooms    parley_room_json of 3 rooms (last_message, unread_count)
#   user     parley_user_json (self; ~3 300 messages sent once post has run)
#   misc     parley_presence_json x 10, parley_read_json x 10, parley_ts x 2
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
SCALE_PCT=${1:-100}   # run counts in % of the defaults below
PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
export PATH="$PG_BIN:$PATH"
cluster=$(mktemp -d /tmp/parley-benchjson.XXXXXX)
as_pg () { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
cleanup () {
    as_pg pg_ctl -D "$cluster/data" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$cluster"
}
trap cleanup EXIT INT TERM
chmod 755 "$cluster"
[ "$(id -u)" = 0 ] && chown postgres:postgres "$cluster"
as_pg initdb -D "$cluster/data" -U postgres -A trust >/dev/null
as_pg pg_ctl -D "$cluster/data" -l "$cluster/log" -w \
    -o "-p 5432 -k $cluster -c listen_addresses='' -c fsync=off -c synchronous_commit=off -c autovacuum=off" \
    start >/dev/null
export PGHOST="$cluster" PGPORT=5432 PGUSER=postgres

for db in before after; do
    createdb "$db"
    for f in "$top"/schema/migrations/*.sql; do
        if [ "$db" = before ] && [[ "$(basename "$f")" > "010" ]]; then continue; fi
        psql -X -q -d "$db" -v ON_ERROR_STOP=1 --single-transaction -f "$f" >/dev/null
    done
    psql -X -q -d "$db" -v ON_ERROR_STOP=1 -f "$here/bench_json_data.sql" >/dev/null
    psql -X -q -d "$db" -c "CREATE TABLE bench_cpu (k text, v bigint)"
done

BASE='http://127.0.0.1:8470'

# Same output: both databases hold the same rows (bench_json_data.sql is
# deterministic), so every rendering must be the same, byte for byte.
for db in before after; do
    psql -X -q -d "$db" -f "$here/bench_json_compare.sql" >"$cluster/$db.out"
done
if ! cmp -s "$cluster/before.out" "$cluster/after.out"; then
    diff "$cluster/before.out" "$cluster/after.out" | head -n 20 >&2
    echo "bench_json: the renderings DIFFER before/after (above)" >&2
    exit 1
fi
echo "same output: $(wc -l <"$cluster/after.out") renderings identical before/after" \
     "(tests/sql/bench_json_compare.sql)"

s="$cluster/scripts"; mkdir -p "$s"
cat >"$s/list50.sql" <<'EOF'
SELECT parley_message_json(m, :viewer::uuid, :base) FROM messages m
 WHERE m.room_id = :room::uuid ORDER BY m.seq DESC LIMIT 50 OFFSET 0;
EOF
sed 's/:room::uuid/:proom::uuid/' "$s/list50.sql" >"$s/list50plain.sql"
cat >"$s/post.sql" <<'EOF'
BEGIN;
WITH m AS (INSERT INTO messages (room_id, seq, sender_id, content, message_type,
                                 attachment_id, latitude, longitude, reply_to,
                                 forward_from, mentions, client_id, stream_id)
           VALUES (:proom::uuid, parley_next_seq (:proom::uuid), :viewer::uuid, 'hello there', 'text',
                   NULL::uuid, NULL::float8, NULL::float8, NULL::uuid, NULL::uuid,
                   '{}'::uuid[], gen_random_uuid()::text, NULL)
           RETURNING *),
 r AS (INSERT INTO reads (message_id, user_id, room_id)
       SELECT id, sender_id, room_id FROM m)
SELECT m.seq, parley_message_event (m, 'message.new', :base, m.sender_id),
       (SELECT room_type FROM rooms WHERE id = m.room_id) FROM m;
COMMIT;
EOF
cat >"$s/pin.sql" <<'EOF'
BEGIN;
WITH m AS (UPDATE messages SET is_pinned = NOT is_pinned
            WHERE room_id = :room::uuid AND seq = 32 RETURNING *)
SELECT parley_message_event (m, 'message.pinned', :base, :viewer::uuid),
       parley_message_json (m, :viewer::uuid, :base) FROM m;
ROLLBACK;
EOF
cat >"$s/react.sql" <<'EOF'
BEGIN;
WITH x AS (INSERT INTO reactions (message_id, user_id, emoji)
           SELECT id, :viewer::uuid, '🎉' FROM messages WHERE room_id = :room::uuid AND seq = 32
           RETURNING *)
SELECT parley_reaction_event (x, 'reaction.added', x.user_id), parley_reaction_json (x) FROM x;
ROLLBACK;
EOF
cat >"$s/rooms.sql" <<'EOF'
SELECT parley_room_json(r, :viewer::uuid, :base) FROM rooms r
 WHERE r.id IN (SELECT room_id FROM room_participants WHERE user_id = :viewer::uuid)
 ORDER BY r.last_activity DESC;
EOF
cat >"$s/user.sql" <<'EOF'
SELECT parley_user_json(u, u.id) FROM users u WHERE u.id = :viewer::uuid;
EOF
cat >"$s/misc.sql" <<'EOF'
SELECT parley_presence_json(p, :viewer::uuid) FROM presence p;
SELECT parley_read_json(x) FROM reads x WHERE x.room_id = :room::uuid LIMIT 10;
SELECT parley_ts(now()), parley_ts(clock_timestamp());
EOF

# pgbench runs each script COUNT times; the backend's own CPU time
# (/proc/self/schedstat, read with pg_read_file before the 2nd and after the
# last run) is what is reported, so other load on the machine matters less
# than for wall-clock latency.
run () {  # db test count -> "cpu_us_per_run wall_ms_per_run"
    local db=$1 t=$2 count=$3 viewer room proom wall
    viewer=$(psql -X -At -d "$db" -c "SELECT id FROM users WHERE username = 'bj_1'")
    room=$(psql -X -At -d "$db" -c "SELECT id FROM rooms WHERE name = 'bench-list'")
    proom=$(psql -X -At -d "$db" -c "SELECT id FROM rooms WHERE name = 'bench-post'")
    psql -X -q -d "$db" -c "TRUNCATE bench_cpu"
    { echo '\set n :n + 1'
      echo '\if :n = 2'
      echo "INSERT INTO bench_cpu VALUES ('s', split_part(pg_read_file('/proc/self/schedstat'), ' ', 1)::bigint);"
      echo '\endif'
      cat "$s/$t.sql"
      echo '\if :n = :last'
      echo "INSERT INTO bench_cpu VALUES ('e', split_part(pg_read_file('/proc/self/schedstat'), ' ', 1)::bigint);"
      echo '\endif'
    } >"$s/$t.run.sql"
    wall=$(pgbench -n -M prepared -c 1 -j 1 -t "$count" -f "$s/$t.run.sql" \
               -D n=0 -D last="$count" -D viewer="$viewer" -D base="$BASE" \
               -D room="$room" -D proom="$proom" "$db" 2>&1 \
           | awk '/latency average/ { print $4 }')
    psql -X -At -d "$db" -c "SELECT round((max(v) FILTER (WHERE k = 'e') - max(v) FILTER (WHERE k = 's'))
                                         / 1000.0 / ($count - 1), 1) FROM bench_cpu" \
        | tr '\n' ' '
    echo "$wall"
}

printf '%-12s %6s %10s %10s %8s   %s\n' test runs "before µs" "after µs" after/before \
    "(backend CPU per run; wall ms before/after)"
for spec in list50:1000 list50plain:1000 post:3000 pin:3000 react:5000 rooms:1000 \
            user:2000 misc:5000; do
    t=${spec%%:*} count=$(( ${spec#*:} * SCALE_PCT / 100 ))
    read -r bc bw < <(run before "$t" "$count")
    read -r ac aw < <(run after "$t" "$count")
    printf '%-12s %6d %10s %10s %8.2f   %s / %s\n' "$t" "$count" "$bc" "$ac" \
        "$(echo "$ac / $bc" | bc -l)" "$bw" "$aw"
done
