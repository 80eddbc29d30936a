"""The hot paths' statements, issued on the database driver's own connection.

A gateway batch and a consumer batch each write a few statements of tens to hundreds of
rows once per Kafka batch, and at 1,000 notifications/s a batch holds a few dozen
notifications, so what a statement costs *per call* matters as much as per row. Through
SQLAlchemy's async engine a statement over aiosqlite crosses to the driver's thread three
or four times (cursor, execute, fetch, close) and runs SQLAlchemy's execution machinery
(~80 µs of CPU a statement here, ~0.5 ms a batch transaction, against ~0.4 ms for the
whole transaction issued to aiosqlite); aiosqlite's own calls cross once. So these paths
hold one connection of the engine's pool (:class:`Driver`) and issue their statements
to the driver under it (aiosqlite or asyncpg), each statement one driver call:

* **SQLite**: ``BEGIN IMMEDIATE``, each statement one ``executemany`` (its row count is
  what it changed), ``COMMIT``: one crossing to aiosqlite's thread each.
* **PostgreSQL**: ``BEGIN``, each statement one round trip, ``COMMIT``. Many rows travel
  as one array per column (``INSERT ... SELECT * FROM unnest($1::text[], ...)``), so a
  statement of hundreds of rows is one round trip whose status says how many it wrote.

Statements are written once per store in the driver's own parameter style
(:class:`BulkInsert`, and each store's own SQL); what SQLAlchemy still does for the
stores (building tables, every other query) is unchanged. The connection is held for
the store's life (one more aiosqlite thread, one more pooled PostgreSQL session), used
by one batch at a time (a lock), and replaced after an error that may have broken it.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any, Protocol

import asyncpg
from sqlalchemy import Table
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from sgx.store.db import is_sqlite, utc

Row = Sequence[Any]


class Tx(Protocol):
    """One transaction on a driver connection; each call one driver call."""

    @property
    def sqlite(self) -> bool: ...

    async def many(self, sql: str, rows: Sequence[Row]) -> int:
        """Run ``sql`` once per row (SQLite's executemany); rows changed in all."""
        ...

    async def execute(self, sql: str, params: Row = ()) -> int:
        """Run ``sql`` once; the rows it changed."""
        ...

    async def fetch(self, sql: str, params: Row = ()) -> list[Row]:
        """Run ``sql`` once; the rows it returned."""
        ...


def is_duplicate(exc: BaseException) -> bool:
    """Whether ``exc`` is a unique (or other integrity) constraint refusing a row."""
    return isinstance(
        exc,
        IntegrityError | sqlite3.IntegrityError | asyncpg.IntegrityConstraintViolationError,
    )


class _SqliteTx:
    sqlite = True

    def __init__(self, db: Any) -> None:
        self._db = db  # aiosqlite.Connection

    async def many(self, sql: str, rows: Sequence[Row]) -> int:
        cursor = await self._db.executemany(sql, rows)
        return int(cursor.rowcount)

    async def execute(self, sql: str, params: Row = ()) -> int:
        cursor = await self._db.execute(sql, params)
        return int(cursor.rowcount)

    async def fetch(self, sql: str, params: Row = ()) -> list[Row]:
        return list(await self._db.execute_fetchall(sql, params))


class _PostgresTx:
    sqlite = False

    def __init__(self, db: asyncpg.Connection) -> None:
        self._db = db

    async def many(self, sql: str, rows: Sequence[Row]) -> int:
        await self._db.executemany(sql, rows)
        return len(rows)  # asyncpg reports no count; a statement ignoring rows is not many()

    async def execute(self, sql: str, params: Row = ()) -> int:
        return _count(await self._db.execute(sql, *params))

    async def fetch(self, sql: str, params: Row = ()) -> list[Row]:
        return list(await self._db.fetch(sql, *params))


class SqlAlchemyTx:
    """A :class:`Tx` over a SQLAlchemy connection inside its transaction: for a batch that
    also runs SQLAlchemy statements (another table's writes) in the same transaction.
    Each call is a SQLAlchemy statement, dearer than the driver's own."""

    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn
        self.sqlite = is_sqlite(conn.engine)

    async def many(self, sql: str, rows: Sequence[Row]) -> int:
        result = await self._conn.exec_driver_sql(sql, [tuple(row) for row in rows])
        return int(result.rowcount) if self.sqlite else len(rows)

    async def execute(self, sql: str, params: Row = ()) -> int:
        return int((await self._conn.exec_driver_sql(sql, tuple(params))).rowcount)

    async def fetch(self, sql: str, params: Row = ()) -> list[Row]:
        return list((await self._conn.exec_driver_sql(sql, tuple(params))).all())


def _count(status: str) -> int:
    """The row count of a PostgreSQL command status (``INSERT 0 12``, ``UPDATE 3``)."""
    last = status.rsplit(" ", 1)[-1]
    return int(last) if last.isdigit() else 0


class Driver:
    """One connection of ``engine``'s pool, held for a store's hot path, used through its
    driver (see the module docstring). Use :meth:`transaction` and :meth:`read`."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self.sqlite = is_sqlite(engine)
        self._conn: AsyncConnection | None = None
        self._raw: Any = None
        self._lock = asyncio.Lock()

    async def _driver(self) -> Any:
        if self._raw is None:
            conn = await self._engine.connect()
            try:
                self._raw = (await conn.get_raw_connection()).driver_connection
            except BaseException:
                await conn.close()
                raise
            self._conn = conn
        return self._raw

    async def _drop(self) -> None:
        """Forget the connection (it may be broken): the next call takes a new one."""
        conn, self._conn, self._raw = self._conn, None, None
        if conn is not None:
            try:
                await conn.invalidate()
            finally:
                await conn.close()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Tx]:
        """A write transaction (SQLite: the write lock taken at BEGIN), committed when the
        block ends, rolled back if it raises. A connection left in a state not known (a
        failed BEGIN, rollback or commit: broken, or cancelled mid-call) is replaced."""
        async with self._lock:
            db = await self._driver()
            begin, end = self._ends(db)
            await self._or_drop(begin())
            try:
                yield _SqliteTx(db) if self.sqlite else _PostgresTx(db)
            except BaseException:
                await self._or_drop(end(False))
                raise
            await self._or_drop(end(True))

    def _ends(
        self, db: Any
    ) -> tuple[Callable[[], Awaitable[Any]], Callable[[bool], Awaitable[Any]]]:
        """BEGIN, and COMMIT (True) or ROLLBACK (False), on the driver's connection."""
        if self.sqlite:
            return (
                lambda: db.execute("BEGIN IMMEDIATE"),
                lambda commit: db.commit() if commit else db.rollback(),
            )
        transaction = db.transaction()
        return (
            transaction.start,
            lambda commit: transaction.commit() if commit else transaction.rollback(),
        )

    async def _or_drop(self, step: Awaitable[Any]) -> None:
        try:
            await step
        except BaseException:
            await self._drop()
            raise

    async def read(self, sql: str, params: Row = ()) -> list[Row]:
        """The rows one query returns (a statement of its own, no transaction)."""
        async with self._lock:
            db = await self._driver()
            try:
                if self.sqlite:
                    return list(await db.execute_fetchall(sql, params))
                return list(await db.fetch(sql, *params))
            except BaseException:
                await self._drop()
                raise

    async def close(self) -> None:
        async with self._lock:
            conn, self._conn, self._raw = self._conn, None, None
            if conn is not None:
                await conn.close()


def sql_in(sqlite: bool, column: str, count: int) -> tuple[str, bool]:
    """``column`` among a list of values: SQLite ``IN (?, ...)`` with ``count`` marks (the
    values as parameters, one each), PostgreSQL ``= ANY($1::text[])`` (one array
    parameter, the query's only one: its cached plan stays an index look-up)."""
    if sqlite:
        return f"{column} IN ({', '.join('?' * count)})", False
    return f"{column} = ANY($1::text[])", True


class BulkInsert:
    """``INSERT INTO table (columns) VALUES ...`` of many rows as ONE driver call.

    SQLAlchemy's Core executemany spends ~20 µs per row on parameter processing before
    the driver sees it; the hot paths write hundreds of rows per batch, so they hand the
    driver ready tuples instead. Rows are tuples in ``columns`` order holding driver
    values: timestamps through :meth:`timestamp`, string tuples through
    :func:`sgx.store.db.encode_strings`. ``ignoring`` adds ``ON CONFLICT (...) DO
    NOTHING`` on those columns. SQLite runs it as an executemany; PostgreSQL as one
    ``INSERT ... SELECT * FROM unnest(...)`` with an array per column.
    """

    def __init__(
        self,
        engine: AsyncEngine,
        table: Table,
        columns: Sequence[str],
        *,
        ignoring: Sequence[str] = (),
    ) -> None:
        self._sqlite = is_sqlite(engine)
        quote = engine.dialect.identifier_preparer.quote
        target = engine.dialect.identifier_preparer.format_table(table)
        names = ", ".join(quote(name) for name in columns)
        if self._sqlite:
            values = f"VALUES ({', '.join('?' for _ in columns)})"
        else:
            arrays = ", ".join(
                f"${i}::{table.c[name].type.compile(dialect=engine.dialect)}[]"
                for i, name in enumerate(columns, 1)
            )
            values = f"SELECT * FROM unnest({arrays})"
        sql = f"INSERT INTO {target} ({names}) {values}"
        if ignoring:
            sql += f" ON CONFLICT ({', '.join(quote(n) for n in ignoring)}) DO NOTHING"
        self.sql = sql
        self.columns = tuple(columns)

    def timestamp(self, value: datetime) -> Any:
        """A UtcDateTime column's driver value (what :class:`UtcDateTime` would bind)."""
        return utc(value).isoformat(timespec="microseconds") if self._sqlite else utc(value)

    async def run(self, tx: Tx, rows: Sequence[Row]) -> int:
        """Insert ``rows``; the number inserted (rows a conflict ignored are not counted)."""
        if not rows:
            return 0
        if self._sqlite:
            return await tx.many(self.sql, rows)
        return await tx.execute(self.sql, [list(column) for column in zip(*rows, strict=True)])
