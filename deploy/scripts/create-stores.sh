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
\gexec
SQL

store() {  # role: a login role owning the schema of its name, and nothing else
  local password
  password=$(<"$PG_SECRETS/$1.password")
  sql -v role="$1" -v password="$password" <<'SQL'
SELECT format('CREATE ROLE %I', :'role')
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'role')
\gexec
ALTER ROLE :"role" WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT NOREPLICATION
 NOBYPASSRLS PASSWORD :'password';
SELECT format('GRANT CONNECT ON DATABASE %I TO %I', current_database(), :'role')
\gexec
CREATE SCHEMA IF NOT EXISTS :"role" AUTHORIZATION :"role";
ALTER SCHEMA :"role" OWNER TO :"role";
REVOKE ALL ON SCHEMA :"role" FROM PUBLIC;
SQL
}

store sgx_gateway  # gateway
store sgx_la_camden  # la-camden
store sgx_la_islington  # la-islington
store sgx_school_hillside  # school-hillside
store sgx_school_canonbury  # school-canonbury
store sgx_school_gospel_oak  # school-gospel-oak
store sgx_school_highbury_fields  # school-highbury-fields
store sgx_nhs_royal_free  # nhs-royal-free
store sgx_met_police  # met-police
store sgx_gp_hillside  # gp-hillside
store sgx_whittington_health  # whittington-health
store sgx_family_action_camden  # family-action-camden
