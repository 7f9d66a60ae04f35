#!/bin/sh
# tests/sql/check_seq_concurrency.sh — per-room event seqs stay gapless and
# unique when several sessions write one room at once (API.md §3).
#
# Needs a database where schema/migrations/*.sql are applied, named by the
# usual libpq variables (PGHOST, PGPORT, PGUSER, PGDATABASE). Creates two
# users and two rooms, and deletes them again at the end.
#   1. Two sessions: B's parley_next_seq waits for A's transaction and gets
#      A's number + 1 after COMMIT, or A's own number after ROLLBACK.
#   2. pgbench: 8 clients send messages (with receipts), append bare events
#      and roll back taken seqs on two rooms; afterwards each room's events
#      are exactly 1..last_seq and every message sits at its message.new.
# Exits non-zero on any failure.
set -eu

PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
PGBENCH=$(command -v pgbench || echo "$PG_BIN/pgbench")
PSQL="psql -X -q -At -v ON_ERROR_STOP=1"
tmp=$(mktemp -d)
room1= room2= user1= user2=

fail () { echo "check_seq_concurrency FAILED: $*" >&2; exit 1; }

cleanup () {
    if [ -n "$room1" ]; then
        $PSQL -c "DELETE FROM rooms WHERE id IN ('$room1', '$room2');
                  DELETE FROM users WHERE id IN ('$user1', '$user2');" || true
    fi
    rm -rf "$tmp"
}
trap cleanup EXIT INT TERM

now_ms () { date +%s%3N; }

# Wait (up to 10 s) until a session named $1 sits in pg_sleep.
wait_sleeping () {
    i=0
    while [ "$($PSQL -c "SELECT count(*) FROM pg_stat_activity
                          WHERE application_name = '$1' AND query LIKE '%pg_sleep%'
                            AND state = 'active'")" != 1 ]; do
        i=$((i + 1)); [ $i -lt 200 ] || fail "session $1 never started"
        sleep 0.05
    done
}

# --- set-up ------------------------------------------------------------------
set -- $($PSQL -F ' ' -c "
    WITH u AS (INSERT INTO users (username, password_hash)
               SELECT 'seqchk_' || gen_random_uuid(), 'x' FROM generate_series(1, 2)
               RETURNING id),
         r AS (INSERT INTO rooms (room_type, name)
               SELECT 'group', 'seqchk' FROM generate_series(1, 2) RETURNING id)
    SELECT (SELECT array_to_string(array_agg(id ORDER BY id), ' ') FROM u),
           (SELECT array_to_string(array_agg(id ORDER BY id), ' ') FROM r)")
user1=$1 user2=$2 room1=$3 room2=$4
$PSQL -c "INSERT INTO room_participants (room_id, user_id)
          SELECT r, u FROM unnest(ARRAY['$room1', '$room2']::uuid[]) r,
                           unnest(ARRAY['$user1', '$user2']::uuid[]) u"

# --- 1. two sessions, one room -------------------------------------------------
two_sessions () {   # $1 = COMMIT or ROLLBACK; prints "A B waited_ms"
    PGAPPNAME=seqchk_a $PSQL -c "BEGIN" -c "SELECT parley_next_seq('$room1')" \
        -c "SELECT pg_sleep(1.5)" -c "$1" > "$tmp/a" &
    apid=$!
    wait_sleeping seqchk_a
    t0=$(now_ms)
    b=$($PSQL -c "BEGIN" -c "SELECT parley_next_seq('$room1')" -c "COMMIT")
    t1=$(now_ms)
    wait $apid || fail "session A failed"
    a=$(head -n 1 "$tmp/a")
    echo "$a $b $((t1 - t0))"
}
set -- $(two_sessions COMMIT)
[ "$2" -eq $(($1 + 1)) ] || fail "after COMMIT: A got $1, B got $2 (want $(($1 + 1)))"
[ "$3" -ge 500 ] || fail "B did not wait for A's transaction ($3 ms)"
set -- $(two_sessions ROLLBACK)
[ "$2" -eq "$1" ] || fail "after ROLLBACK: A got $1, B got $2 (want A's number back)"
[ "$3" -ge 500 ] || fail "B did not wait for A's transaction ($3 ms)"
# Those bare seqs had no events: give this room a fresh start for part 2.
$PSQL -c "UPDATE rooms SET last_seq = 0 WHERE id = '$room1'"
echo "check_seq_concurrency: two sessions ok"

# --- 2. pgbench: many sessions, two rooms --------------------------------------
cat > "$tmp/send.sql" <<'EOF'
\set r random(1, 2)
\set s random(1, 2)
BEGIN;
WITH m AS (
    INSERT INTO messages (room_id, seq, sender_id, content)
    SELECT x.room, parley_next_seq(x.room), x.sender, 'bench ' || :r
      FROM (SELECT (CASE WHEN :r = 1 THEN ':room1' ELSE ':room2' END)::uuid AS room,
                   (CASE WHEN :s = 1 THEN ':user1' ELSE ':user2' END)::uuid AS sender) x
    RETURNING *),
e AS (SELECT parley_message_event(m, 'message.new', NULL, m.sender_id) AS ev FROM m)
INSERT INTO reads (message_id, user_id, room_id)
SELECT m.id, m.sender_id, m.room_id FROM m, e;
COMMIT;
EOF
cat > "$tmp/event.sql" <<'EOF'
\set r random(1, 2)
BEGIN;
SELECT parley_room_event((CASE WHEN :r = 1 THEN ':room1' ELSE ':room2' END)::uuid,
                         'room.member_joined', '{"user": null}', NULL);
COMMIT;
EOF
cat > "$tmp/rollback.sql" <<'EOF'
\set r random(1, 2)
BEGIN;
SELECT parley_next_seq((CASE WHEN :r = 1 THEN ':room1' ELSE ':room2' END)::uuid);
ROLLBACK;
EOF
"$PGBENCH" -n -c 8 -j 8 -t 200 \
    -D room1="$room1" -D room2="$room2" -D user1="$user1" -D user2="$user2" \
    -f "$tmp/send.sql@4" -f "$tmp/event.sql@2" -f "$tmp/rollback.sql@1" \
    > "$tmp/pgbench.out" 2>&1 || { cat "$tmp/pgbench.out" >&2; fail "pgbench failed"; }
if grep -Eq 'aborted|failed transactions: [1-9]' "$tmp/pgbench.out"; then
    cat "$tmp/pgbench.out" >&2; fail "pgbench transactions failed"
fi
grep -E 'number of transactions actually processed' "$tmp/pgbench.out"

$PSQL -c "
DO \$\$
DECLARE
    r record;
BEGIN
    FOR r IN
        SELECT x.id, x.last_seq, x.messages_count,
               (SELECT count(*) FROM room_events e WHERE e.room_id = x.id) AS events,
               (SELECT max(seq) FROM room_events e WHERE e.room_id = x.id) AS max_seq,
               (SELECT count(*) FROM messages m WHERE m.room_id = x.id) AS messages,
               (SELECT count(*) FROM messages m
                  JOIN room_events e ON e.room_id = m.room_id AND e.seq = m.seq
                 WHERE m.room_id = x.id AND e.type = 'message.new'
                   AND e.payload->'message'->>'id' = m.id::text) AS matched,
               (SELECT count(*) FROM reads d WHERE d.room_id = x.id) AS receipts,
               (SELECT max(p.last_read_seq) FROM room_participants p
                 WHERE p.room_id = x.id) AS read_seq,
               (SELECT max(m.seq) FROM messages m WHERE m.room_id = x.id) AS last_msg
          FROM rooms x WHERE x.id IN ('$room1', '$room2')
    LOOP
        IF r.events = 0 OR r.events <> r.last_seq OR r.max_seq <> r.last_seq THEN
            RAISE EXCEPTION 'room %: % events, max seq %, last_seq %: not gapless',
                r.id, r.events, r.max_seq, r.last_seq;
        END IF;
        IF r.messages <> r.matched OR r.messages <> r.messages_count
           OR r.receipts <> r.messages OR r.read_seq <> r.last_msg THEN
            RAISE EXCEPTION 'room %: % messages, % at their message.new, messages_count %, '
                            '% receipts, last_read_seq % (last message %)',
                r.id, r.messages, r.matched, r.messages_count, r.receipts,
                r.read_seq, r.last_msg;
        END IF;
        RAISE NOTICE 'room %: events 1..%, % messages', r.id, r.last_seq, r.messages;
    END LOOP;
END
\$\$;" || fail "event log check"
echo "check_seq_concurrency: ok"
