#!/bin/sh
# tests/sql/run.sh — applies schema/migrations/*.sql, in order, one
# transaction per file (as parleyd does), to a fresh database and runs the
# SQL checks (check_schema.sql, check_seq_concurrency.sh).
#
# With PGHOST set, uses that server: creates database parley_sqlcheck_<pid>
# there and drops it afterwards. Otherwise starts a throwaway PostgreSQL 15
# cluster (binaries in $PG_BIN, default /usr/lib/postgresql/15/bin) on a Unix
# socket in a temporary directory — as user postgres when run as root — and
# removes it afterwards. Exits non-zero on any failure.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
export PATH="$PG_BIN:$PATH"
cluster=
db=parley_sqlcheck_$$

as_pg () {  # run a server command as the cluster's owner
    if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

cleanup () {
    if [ -n "$cluster" ]; then
        as_pg pg_ctl -D "$cluster/data" -m immediate stop >/dev/null 2>&1 || true
        rm -rf "$cluster"
    elif [ -n "${PGHOST:-}" ]; then
        dropdb --if-exists "$db" 2>/dev/null || true
    fi
}
trap cleanup EXIT INT TERM

if [ -z "${PGHOST:-}" ]; then
    cluster=$(mktemp -d /tmp/parley-sqlcheck.XXXXXX)
    chmod 755 "$cluster"
    [ "$(id -u)" = 0 ] && chown postgres:postgres "$cluster"
    as_pg initdb -D "$cluster/data" -U postgres -A trust >/dev/null
    as_pg pg_ctl -D "$cluster/data" -l "$cluster/log" -w \
        -o "-p 5432 -k $cluster -c listen_addresses=''" start >/dev/null
    export PGHOST="$cluster" PGPORT=5432 PGUSER=postgres
fi
createdb "$db"
export PGDATABASE="$db"

for f in "$top"/schema/migrations/*.sql; do
    psql -X -q -v ON_ERROR_STOP=1 --single-transaction -f "$f" >/dev/null
    echo "applied $(basename "$f")"
done
psql -X -q -v ON_ERROR_STOP=1 -f "$here/check_schema.sql"
"$here/check_seq_concurrency.sh"
echo "tests/sql: all ok"
