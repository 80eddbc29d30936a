#!/usr/bin/env bash
# The PostgreSQL queue/audit path is tested for real: make sure the local server is up.
# Tests read SGX_TEST_PG_DSN (default postgresql+asyncpg://postgres@127.0.0.1:5432/test).
set -euo pipefail
host=127.0.0.1 port=5432
if command -v pg_isready >/dev/null && pg_isready -q -h "$host" -p "$port"; then exit 0; fi
if command -v pg_ctlcluster >/dev/null && [ -d /etc/postgresql ]; then
  for version in $(ls /etc/postgresql); do
    pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  done
  for _ in $(seq 1 30); do pg_isready -q -h "$host" -p "$port" && exit 0; sleep 1; done
fi
echo "PostgreSQL is not reachable on $host:$port; the PostgreSQL tests will fail." >&2
echo "Start it, or point SGX_TEST_PG_DSN at a server you can use." >&2
exit 0
