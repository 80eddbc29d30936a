"""PostgreSQL roles and schemas of a production exchange: one store per party, planned
from its parties.

Each party keeps its state in a store of its own (``sgx.store.owner``): a local
authority's queue with its inbox accounts, API clients, sessions, shares and consents; the
gateway's audit trail, allocations and requests; an agency's outbox. On PostgreSQL each
store is a schema in one database, owned by a login role of the same name that has no
right on any other schema and may create none:

    sgx_gateway      the gateway (every instance)
    sgx_<party>      each party of deploy/parties.toml, ``-`` written ``_``
                     (sgx_la_camden: Camden's consumer and Camden's inbox)

so Camden's credentials cannot read Islington's queue or the gateway's audit, and an
agency's push endpoint, holding only its agency's outbox credentials, cannot reach any
LA's store. A service opens its store with ``SGX_STORE_DSN`` (its role's) and
``SGX_STORE_PG_SCHEMA`` (its schema), and the store records its owner when first opened
and refuses any other party's service by name, the second lock.

The plan renders ``deploy/scripts/create-stores.sh`` (committed; a test checks it is up
to date and applies it to a real PostgreSQL): idempotent, run with an administrator's
connection, passwords from ``$PG_SECRETS/<role>.password``. Regenerate after editing the
parties file::

    python -m deploy.store_plan write deploy/parties.toml
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

from deploy.acl_plan import PARTIES_FILE, Party, load_parties
from sgx.settings import StoreSettings

SCRIPT_FILE = Path(__file__).parent / "scripts" / "create-stores.sh"
GATEWAY = "gateway"  # the gateway's store owner (safeguard.runtime.GATEWAY_ID)
SCHEMA_SETTING = "sgx_{party}"  # SGX_STORE_PG_SCHEMA for a process serving several parties


def store_name(owner: str) -> str:
    """The role and schema of ``owner``'s store: the schema the services name it by, with
    ``SGX_STORE_PG_SCHEMA=sgx_{party}`` (one rule, in sgx.settings)."""
    name = StoreSettings(pg_schema=SCHEMA_SETTING).schema_for(owner)
    assert name is not None
    return name


def plan(parties: Iterable[Party]) -> list[tuple[str, str]]:
    """(owner, role and schema) of every store: the gateway's, then each party's."""
    return [(owner, store_name(owner)) for owner in [GATEWAY, *(p.id for p in parties)]]


_HEAD = """\
#!/usr/bin/env bash
# GENERATED from deploy/parties.toml by deploy/store_plan.py: do not edit.
# Creates one PostgreSQL store per party: a login role owning a schema of the same name,
# with no right on any other schema and none to create one (run once per database by an
# administrator, and again after adding a party). Idempotent: roles and schemas are kept,
# passwords (re)set.
#   ADMIN_DSN   libpq connection string of a role that may create roles (default: $PGDATABASE)
#   PG_SECRETS  <role>.password files, one per role             (default /secrets/postgres)
set -euo pipefail
ADMIN_DSN=${ADMIN_DSN:-}
PG_SECRETS=${PG_SECRETS:-/secrets/postgres}
sql() { psql "$ADMIN_DSN" -X -q -v ON_ERROR_STOP=1 "$@"; }

# nobody may create in the public schema or connect unless granted below
sql <<'SQL'
REVOKE ALL ON SCHEMA public FROM PUBLIC;
SELECT format('REVOKE ALL ON DATABASE %I FROM PUBLIC', current_database())
\\gexec
SQL

store() {  # role: a login role owning the schema of its name, and nothing else
  local password
  password=$(<"$PG_SECRETS/$1.password")
  sql -v role="$1" -v password="$password" <<'SQL'
SELECT format('CREATE ROLE %I', :'role')
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'role')
\\gexec
ALTER ROLE :"role" WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT NOREPLICATION
 NOBYPASSRLS PASSWORD :'password';
SELECT format('GRANT CONNECT ON DATABASE %I TO %I', current_database(), :'role')
\\gexec
CREATE SCHEMA IF NOT EXISTS :"role" AUTHORIZATION :"role";
ALTER SCHEMA :"role" OWNER TO :"role";
REVOKE ALL ON SCHEMA :"role" FROM PUBLIC;
SQL
}

"""


def shell_script(stores: Sequence[tuple[str, str]]) -> str:
    lines = [f"store {name}  # {owner}" for owner, name in stores]
    return _HEAD + "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deploy.store_plan", description=__doc__)
    parser.add_argument("action", choices=["write", "check"])
    parser.add_argument("parties", type=Path, nargs="?", default=PARTIES_FILE)
    args = parser.parse_args(argv)
    text = shell_script(plan(load_parties(args.parties)))
    current = SCRIPT_FILE.read_text(encoding="utf-8") if SCRIPT_FILE.exists() else None
    if args.action == "check":
        if current != text:
            print(
                f"{SCRIPT_FILE} is out of date: run python -m deploy.store_plan write",
                file=sys.stderr,
            )
            return 1
        return 0
    if current != text:
        SCRIPT_FILE.write_text(text, encoding="utf-8")
    SCRIPT_FILE.chmod(0o755)
    return 0


if __name__ == "__main__":
    sys.exit(main())
