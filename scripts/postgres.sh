#!/usr/bin/env bash
# Starts or stops a throwaway PostgreSQL 15 for tests, under tools/postgres.
#   scripts/postgres.sh start   # prints the database URL on stdout
#   scripts/postgres.sh stop
# PostgreSQL refuses to run as root, so the cluster belongs to the postgres user.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
bin=${PG_BIN:-/usr/lib/postgresql/15/bin}
port=${SWITCHBOARD_TEST_PG_PORT:-55432}
dir=${SWITCHBOARD_TEST_PG_DIR:-/tmp/switchboard-pg-$port}
url="postgres://switchboard:switchboard@127.0.0.1:$port/switchboard"

as_postgres() {
  if [ "$(id -u)" = 0 ]; then su postgres -s /bin/bash -c "$*"; else bash -c "$*"; fi
}

case "${1:-}" in
  start)
    if [ ! -x "$bin/initdb" ]; then
      echo "postgres: $bin/initdb not found; install postgresql-15 or set PG_BIN" >&2
      exit 1
    fi
    if [ ! -f "$dir/PG_VERSION" ]; then
      echo "postgres: initdb in $dir" >&2
      mkdir -p "$dir"
      [ "$(id -u)" = 0 ] && chown postgres:postgres "$dir"
      as_postgres "$bin/initdb -D '$dir' -U postgres --auth=trust -E UTF8 >/dev/null"
    fi
    if ! as_postgres "$bin/pg_ctl -D '$dir' status" >/dev/null 2>&1; then
      echo "postgres: starting on 127.0.0.1:$port" >&2
      as_postgres "$bin/pg_ctl -D '$dir' -l '$dir/server.log' -w -o \"-p $port -k /tmp -c listen_addresses=127.0.0.1 -c fsync=off\" start" >/dev/null
    fi
    as_postgres "$bin/psql -h 127.0.0.1 -p $port -U postgres -tAc \"SELECT 1 FROM pg_roles WHERE rolname='switchboard'\"" | grep -q 1 \
      || as_postgres "$bin/psql -h 127.0.0.1 -p $port -U postgres -c \"CREATE ROLE switchboard LOGIN PASSWORD 'switchboard'\"" >/dev/null
    as_postgres "$bin/psql -h 127.0.0.1 -p $port -U postgres -tAc \"SELECT 1 FROM pg_database WHERE datname='switchboard'\"" | grep -q 1 \
      || as_postgres "$bin/psql -h 127.0.0.1 -p $port -U postgres -c \"CREATE DATABASE switchboard OWNER switchboard\"" >/dev/null
    echo "$url"
    ;;
  stop)
    if [ -f "$dir/PG_VERSION" ]; then
      as_postgres "$bin/pg_ctl -D '$dir' -m fast stop" >/dev/null 2>&1 || true
      echo "postgres: stopped" >&2
    fi
    ;;
  *)
    echo "usage: $0 start|stop" >&2
    exit 2
    ;;
esac
