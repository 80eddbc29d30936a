"""What every store shares: one engine, its tables migrated when it opens, disposed on
close (:class:`Database`)."""

from __future__ import annotations

from pathlib import Path
from types import TracebackType
from typing import ClassVar, Self

from sqlalchemy import MetaData
from sqlalchemy.ext.asyncio import AsyncEngine

from sgx.store import migrate
from sgx.store.db import create_tables, metadata_for, open_engine
from sgx.store.owner import claim


class Database:
    """What every store shares: one engine, its tables created at open, disposed on close.

    A store subclass names its kind of database (``KIND``: the migration history in
    ``sgx/store/migrations/<kind>`` that creates its tables, :mod:`sgx.store.migrate`), builds its
    tables on ``metadata`` in ``__init__`` and may override :meth:`_opened` to read state
    once the tables exist. Use it as ``async with``.
    """

    KIND: ClassVar[str]

    def __init__(self, engine: AsyncEngine, metadata: MetaData) -> None:
        self._engine = engine
        self._metadata = metadata
        self._owner = ""  # set by open()

    @classmethod
    async def open(
        cls, dsn: str | None, sqlite_path: Path, *, owner: str, schema: str | None = None
    ) -> Self:
        """Open ``owner``'s store (PostgreSQL if ``dsn``, else SQLite): an empty database
        gets its tables from the migrations; one at another revision is refused
        (``sgx.store.migrate``), and so is one another party owns (:mod:`sgx.store.owner`)."""
        engine = open_engine(dsn, sqlite_path)
        try:
            store = cls(engine, metadata_for(engine, schema))
            await claim(engine, schema, owner)  # before anything is written there
            store._owner = owner
            await migrate.ensure(engine, cls.KIND, schema)
            # and every column this release writes is there (a hand-altered table is
            # refused by name); at the right revision this creates nothing
            await create_tables(engine, store._metadata)
            await store._opened()
        except BaseException:
            await engine.dispose()
            raise
        return store

    async def _opened(self) -> None:
        """Called once the tables exist; nothing to do by default."""

    @property
    def schema(self) -> str | None:
        """The PostgreSQL schema its tables are in (None: the default, and SQLite)."""
        return self._metadata.schema

    @property
    def owner(self) -> str:
        """The party whose store this is (checked when it opened)."""
        return self._owner

    @property
    def engine(self) -> AsyncEngine:
        """The engine, for other tables kept in the same database (and its transactions)."""
        return self._engine

    async def close(self) -> None:
        await self._engine.dispose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()
