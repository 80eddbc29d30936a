#!/usr/bin/env bash
# The PostgreSQL store path is tested for real: make sure a server answers the tests.
# Tests read SGX_TEST_PG_DSN (default postgresql+asyncpg://postgres@127.0.0.1:5432/test).
#
# On a fresh machine this installs Debian's `postgresql` (root, apt-get), then starts a
# test cluster of the project's own: initdb'd under $SGX_PG_DATA (default
# /var/tmp/sgx-postgres), trust authentication on loopback only, fsync off (a test cluster
# holds nothing worth a disk flush), owned by the `postgres` system user. The system's own
# cluster, if any, is left alone. A server that already answers as the DSN says is used
# as it is (your own, or SGX_TEST_PG_DSN pointing elsewhere).
set -euo pipefail
host=127.0.0.1 port=${SGX_PG_PORT:-5432} database=test
data=${SGX_PG_DATA:-/var/tmp/sgx-postgres}

answers() { psql -h "$host" -p "$port" -U postgres -d postgres -Atqc 'select 1' >/dev/null 2>&1; }
have_database() {
  [ "$(psql -h "$host" -p "$port" -U postgres -d postgres -Atqc \
    "select 1 from pg_database where datname = '$database'" 2>/dev/null)" = 1 ]
}
ensure_database() {
  have_database || psql -h "$host" -p "$port" -U postgres -d postgres -qc "create database $database"
}

if [ -n "${SGX_TEST_PG_DSN:-}" ]; then
  echo "SGX_TEST_PG_DSN is set: the tests use that server; nothing to start." >&2
  exit 0
fi
if command -v psql >/dev/null && answers; then ensure_database; exit 0; fi

bindir() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1; }
if [ -z "$(bindir)" ] || ! id postgres >/dev/null 2>&1; then
  if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
    echo "PostgreSQL is not installed: install Debian's postgresql, or set SGX_TEST_PG_DSN." >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends postgresql >/dev/null
fi
bin=$(bindir)
as_postgres() { if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

if [ ! -s "$data/PG_VERSION" ]; then
  mkdir -p "$data"
  [ "$(id -u)" -eq 0 ] && chown postgres:postgres "$data"
  chmod 700 "$data"
  as_postgres "$bin/initdb" -D "$data" -U postgres --auth=trust --encoding=UTF8 \
    --locale=C.UTF-8 >/dev/null
  cat >>"$data/postgresql.conf" <<CONF
# sgx test cluster (scripts/ensure-postgres.sh)
listen_addresses = '$host'
port = $port
unix_socket_directories = '$data'
fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = 300
CONF
fi
if ! as_postgres "$bin/pg_ctl" -D "$data" status >/dev/null 2>&1; then
  as_postgres "$bin/pg_ctl" -D "$data" -l "$data/server.log" -w -t 60 start >/dev/null || {
    echo "PostgreSQL did not start; its log:" >&2
    tail -n 20 "$data/server.log" >&2
    exit 1
  }
fi
for _ in $(seq 1 30); do answers && break; sleep 1; done
answers || { echo "PostgreSQL started but does not answer on $host:$port" >&2; exit 1; }
ensure_database
