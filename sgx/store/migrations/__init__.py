"""Versioned schemas of every store (Alembic): one history per kind of database
(sgx.store.migrate).
"""
