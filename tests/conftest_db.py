"""Database backends for store tests: SQLite in a temporary file, and a real PostgreSQL.

PostgreSQL comes from ``SGX_TEST_PG_DSN`` (default: the local server, user ``postgres``,
database ``test``). Every test gets a fresh schema named ``sgx_test_<random>`` that is
dropped afterwards, so parallel and repeated runs never share tables. If PostgreSQL is
unreachable the PostgreSQL tests fail; they never skip.

Test modules parametrize a fixture over :data:`BACKENDS` and enter :func:`backend`.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.schema import DropSchema

from consumers.queue import QueueStore

PG_DSN = os.environ.get("SGX_TEST_PG_DSN", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")

BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
]


@dataclass(frozen=True)
class Backend:
    """Where a store under test keeps its tables."""

    kind: str
    dsn: str | None
    sqlite_path: Path
    schema: str | None

    def table(self, name: str) -> str:
        """The table's name as raw SQL must write it."""
        return f'"{self.schema}"."{name}"' if self.schema else f'"{name}"'

    async def execute(self, sql: str, **params: Any) -> int:
        """Run raw SQL behind the store's back (to tamper with rows); return rowcount."""
        url = self.dsn or f"sqlite+aiosqlite:///{self.sqlite_path}"
        engine = create_async_engine(url)
        try:
            async with engine.begin() as conn:
                return (await conn.execute(text(sql), params)).rowcount
        finally:
            await engine.dispose()


@asynccontextmanager
async def backend(kind: str, tmp_path: Path) -> AsyncIterator[Backend]:
    """A SQLite file under ``tmp_path``, or a fresh PostgreSQL schema dropped afterwards."""
    path = tmp_path / "store.db"
    if kind == "sqlite":
        yield Backend("sqlite", None, path, None)
        return
    schema = f"sgx_test_{uuid.uuid4().hex[:12]}"
    try:
        yield Backend("postgres", PG_DSN, path, schema)
    finally:
        await drop_schema(PG_DSN, schema)


@asynccontextmanager
async def queue_store_on(kind: str, tmp_path: Path, owner: str) -> AsyncIterator[QueueStore]:
    """A fresh queue store of ``owner`` on the ``kind`` of database (a BACKENDS entry)."""
    async with (
        backend(kind, tmp_path) as where,
        await QueueStore.open(
            where.dsn, where.sqlite_path, schema=where.schema, owner=owner
        ) as opened,
    ):
        yield opened


async def drop_schema(dsn: str, schema: str) -> None:
    """Drop ``schema``; a template naming ``{party}`` drops every party's schema of it."""
    engine = create_async_engine(dsn)
    try:
        async with engine.begin() as conn:
            names = [schema]
            if "{party}" in schema:
                prefix = schema[: schema.index("{party}")]
                query = text("SELECT schema_name FROM information_schema.schemata")
                names = [n for n in await conn.scalars(query) if n.startswith(prefix)]
            for name in names:
                await conn.execute(DropSchema(name, cascade=True, if_exists=True))
    finally:
        await engine.dispose()
