"""Alembic's entry point for this history: the shared runner in sgx.migrate."""

from sgx.migrate import run_migrations

run_migrations()
