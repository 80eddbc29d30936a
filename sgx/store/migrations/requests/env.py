"""Alembic's entry point for this history: the shared runner in sgx.store.migrate."""

from sgx.store.migrate import run_migrations

run_migrations()
