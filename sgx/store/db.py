"""The database engine every store shares: SQLite (aiosqlite) by default, PostgreSQL with a DSN.

Stores use SQLAlchemy Core (``Table``/``MetaData``) on an :class:`AsyncEngine`; there is no
ORM and no sync code path.

**SQLite durability.** The journal is WAL (readers never block the writer) and
``synchronous=FULL``: every COMMIT fsyncs the WAL. With ``NORMAL`` a commit survives a
process crash but can be rolled back by a power cut or OS crash, because the WAL is only
synced at checkpoints. Our consumers commit their Kafka offsets right after the database
commit, so a commit the disk later forgets would be a notification lost for good. The
price is one fsync per transaction, and stores write in batches of hundreds of rows, so
it is paid per batch, not per row. ``busy_timeout`` makes a writer wait for the lock
instead of failing at once.

**SQLite transactions.** Python 3.11's ``sqlite3`` defers BEGIN until the first DML
statement (so SELECTs and DDL run outside the transaction). As SQLAlchemy documents, we
switch that off and emit BEGIN ourselves: ``BEGIN`` for reads and ``BEGIN IMMEDIATE`` for
transactions opened with :func:`write_transaction`, which take the write lock up front so
a read-then-write transaction can never fail half-way on a lock upgrade.

**Errors.** :func:`store_errors` translates SQLAlchemy, driver and socket errors into
:class:`~sgx.errors.StoreError` (retriable). Messages carry the driver's own message
only: statements and parameters (which may hold safeguarding content) never go into an
error message (``hide_parameters``). A value the program itself got wrong (a naive
datetime) raises ``ValueError`` instead, because retrying cannot fix it.
"""

from __future__ import annotations

import functools
import json
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
from sqlalchemy import (
    BigInteger,
    Column,
    ColumnElement,
    DateTime,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    any_,
    bindparam,
    event,
    inspect,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, Connection, Dialect, RowMapping, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, SQLAlchemyError, StatementError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.schema import CreateSchema, Table
from sqlalchemy.sql import Select
from sqlalchemy.types import TypeDecorator, TypeEngine

from sgx.errors import ConfigError, StoreError

SQLITE_BUSY_TIMEOUT_MS = 10_000
SQLITE_PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=FULL",
    f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}",
)
_WRITE = "sgx_write_transaction"

Insert = sqlite.Insert | postgresql.Insert


def open_engine(dsn: str | None, sqlite_path: Path) -> AsyncEngine:
    """An engine for ``dsn`` (PostgreSQL), or for the SQLite file ``sqlite_path`` if None."""
    if dsn is None:
        return _sqlite_engine(sqlite_path)
    return _postgres_engine(_postgres_url(dsn))


def _sqlite_engine(path: Path) -> AsyncEngine:
    path.parent.mkdir(parents=True, exist_ok=True)
    engine = create_async_engine(f"sqlite+aiosqlite:///{path}", hide_parameters=True)
    event.listen(engine.sync_engine, "connect", _sqlite_connect)
    event.listen(engine.sync_engine, "begin", _sqlite_begin)
    return engine


def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None  # we emit BEGIN ourselves (see module doc)
    cursor = dbapi_connection.cursor()
    for pragma in SQLITE_PRAGMAS:
        cursor.execute(pragma)
    cursor.close()


def _sqlite_begin(conn: Connection) -> None:
    immediate = conn.get_execution_options().get(_WRITE, False)
    conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def _postgres_url(dsn: str) -> URL:
    try:
        url = make_url(dsn)
    except ArgumentError as exc:
        raise ConfigError("the store DSN is not a database URL") from exc
    if url.drivername == "postgresql":
        url = url.set(drivername="postgresql+asyncpg")
    if url.drivername != "postgresql+asyncpg":
        raise ConfigError(f"store DSN must be postgresql+asyncpg://..., not {url.drivername}")
    return url


# A session left idle inside a transaction for this long is ended by the server, and its
# locks with it: a process paused mid-transaction (SIGSTOP, a VM freeze, a debugger) must
# not hold a row lock others wait for, such as an audit chain its successor claims.
IDLE_IN_TRANSACTION_MS = 10_000


def _postgres_engine(url: URL) -> AsyncEngine:
    settings = {"idle_in_transaction_session_timeout": str(IDLE_IN_TRANSACTION_MS)}
    return create_async_engine(
        url,
        hide_parameters=True,
        pool_size=5,
        max_overflow=5,
        pool_pre_ping=True,  # a connection the server ended is replaced, not used
        connect_args={"server_settings": settings},
    )


def serial() -> BigInteger:
    """A 64-bit auto-incrementing key (SQLite's INTEGER PRIMARY KEY is already 64-bit)."""
    return BigInteger().with_variant(Integer, "sqlite")


def is_sqlite(engine: AsyncEngine) -> bool:
    return engine.dialect.name == "sqlite"


def metadata_for(engine: AsyncEngine, schema: str | None) -> MetaData:
    """The MetaData a store builds its tables on; ``schema`` is a PostgreSQL schema."""
    if schema is not None and is_sqlite(engine):
        raise ConfigError("SQLite has no schemas: give each store its own file instead")
    return MetaData(schema=schema)


def ensure_schema(conn: Connection, schema: str | None) -> None:
    """Create the PostgreSQL ``schema`` if it does not exist. Looked up first: a deployed
    party's role owns its schema but may not create one (PostgreSQL checks that right
    before it sees the schema is there), so only a missing schema is created."""
    if schema is not None and not inspect(conn).has_schema(schema):
        conn.execute(CreateSchema(schema, if_not_exists=True))


async def create_tables(engine: AsyncEngine, metadata: MetaData) -> None:
    """Create the schema (if any) and the tables that do not exist yet, in one transaction.

    A table that exists but lacks a column this release writes was made by an older
    release: that is refused with a ConfigError naming the table and columns, before
    anything is written, rather than failing later on the first insert.
    """
    with store_errors("create the store's tables"):
        # A write transaction from the start: on SQLite a read (the inspection) that then
        # writes fails at once, without waiting, if another connection is writing.
        async with write_transaction(engine) as conn:
            await conn.run_sync(ensure_schema, metadata.schema)
            missing = await conn.run_sync(_missing_columns, metadata)
            if missing:
                raise ConfigError(_older_release(engine, missing))
            await conn.run_sync(metadata.create_all)


def _missing_columns(conn: Connection, metadata: MetaData) -> dict[str, list[str]]:
    """For each existing table of ``metadata``, the columns it lacks."""
    inspector = inspect(conn)
    existing = set(inspector.get_table_names(schema=metadata.schema))
    missing: dict[str, list[str]] = {}
    for table in metadata.sorted_tables:
        if table.name not in existing:
            continue
        held = {c["name"] for c in inspector.get_columns(table.name, schema=metadata.schema)}
        lacking = [c.name for c in table.columns if c.name not in held]
        if lacking:
            missing[table.name] = lacking
    return missing


def _older_release(engine: AsyncEngine, missing: dict[str, list[str]]) -> str:
    where = engine.url.database if is_sqlite(engine) else engine.url.render_as_string()
    tables = "; ".join(f"table {t} lacks {', '.join(cols)}" for t, cols in missing.items())
    return (
        f"the database {where} was written by an older release ({tables}): "
        "start this release on a new home or database, or keep running the release "
        "that wrote it (there are no schema migrations yet)"
    )


@asynccontextmanager
async def write_transaction(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A transaction that will write: it takes SQLite's write lock at BEGIN."""
    async with engine.execution_options(**{_WRITE: True}).begin() as conn:
        yield conn


def dialect_insert(engine: AsyncEngine) -> Callable[[Table], Insert]:
    """The dialect's ``insert`` (SQLite or PostgreSQL): both offer ``on_conflict_do_nothing``."""
    return sqlite.insert if is_sqlite(engine) else postgresql.insert


def insert_ignoring_duplicates(engine: AsyncEngine, table: Table, *unique: str) -> Insert:
    """``INSERT ... ON CONFLICT (unique...) DO NOTHING`` for ``table``."""
    columns = [table.c[name] for name in unique]
    return dialect_insert(engine)(table).on_conflict_do_nothing(index_elements=columns)


def quarantine_columns(constraint: str) -> list[Column[Any] | UniqueConstraint]:
    """The columns every quarantine table shares, unique on where the envelope was read.

    A record is kept with where it was read (topic, partition, offset, and the envelope's
    ``item`` in a batch), why (``reason``, ``detail``), its raw bytes and when; a
    redelivered record is kept once. Each store adds its own id and columns around them.
    """
    return [
        Column("topic", String(300), nullable=False),
        Column("partition", Integer, nullable=False),
        Column("offset", BigInteger, nullable=False),
        Column("item", Integer, nullable=False),
        Column("reason", String(100), nullable=False),
        Column("detail", Text, nullable=False),
        Column("raw", LargeBinary, nullable=False),
        Column("quarantined_at", UtcDateTime, nullable=False),
        UniqueConstraint("topic", "partition", "offset", "item", name=constraint),
    ]


def one_of(
    engine: AsyncEngine, column: ColumnElement[str], values: Sequence[str]
) -> ColumnElement[bool]:
    """``column IN values``; on PostgreSQL ``column = ANY(:array)``.

    One array parameter instead of hundreds keeps PostgreSQL's cached generic plan an
    index lookup: with ``IN ($1, ..., $200)`` it was seen to switch to a sequential scan
    after a few executions on a young table.
    """
    if is_sqlite(engine):
        return column.in_(values)
    return column == any_(bindparam(None, list(values), type_=postgresql.ARRAY(Text)))


# --- errors -----------------------------------------------------------------------------

_STORE_FAILURES = (
    SQLAlchemyError,
    OSError,
    sqlite3.Error,
    asyncpg.PostgresError,  # the driver's own, from sgx.store.driver's statements
    asyncpg.InterfaceError,
)


@contextmanager
def store_errors(action: str) -> Iterator[None]:
    """Translate database and driver errors raised inside the block into StoreError."""
    try:
        yield
    except _STORE_FAILURES as exc:
        raise _translate(action, exc) from exc


async def read_rows(engine: AsyncEngine, query: Select[Any], action: str) -> list[RowMapping]:
    """Every row ``query`` selects, as mappings (errors as StoreError naming ``action``)."""
    with store_errors(action):
        async with engine.connect() as conn:
            return list((await conn.execute(query)).mappings())


async def read_row(engine: AsyncEngine, query: Select[Any], action: str) -> RowMapping | None:
    """The first row ``query`` selects, or None (errors as StoreError naming ``action``)."""
    with store_errors(action):
        async with engine.connect() as conn:
            row: RowMapping | None = (await conn.execute(query)).mappings().first()
            return row


def _translate(action: str, exc: BaseException) -> Exception:
    cause: BaseException = exc
    if isinstance(exc, StatementError) and exc.orig is not None:
        if not isinstance(exc, DBAPIError) and isinstance(exc.orig, ValueError | TypeError):
            return ValueError(str(exc.orig))  # the program's bad value: retrying cannot help
        cause = exc.orig
    first_line = next(iter(str(cause).strip().splitlines()), "")
    return StoreError(f"could not {action}: {type(cause).__name__}: {first_line}")


# --- column values ----------------------------------------------------------------------


def utc(value: datetime) -> datetime:
    """``value`` in UTC; a naive datetime is a programming error (ValueError)."""
    if value.tzinfo is None:
        raise ValueError(f"naive datetime {value.isoformat()}: give it a time zone")
    return value.astimezone(UTC)


class UtcDateTime(TypeDecorator[datetime]):
    """A timestamp stored in UTC and always read back as an aware UTC datetime.

    PostgreSQL keeps it as ``timestamptz``. SQLite keeps ISO-8601 text with microseconds
    and ``+00:00`` (``2024-03-01T09:00:00.123000+00:00``): it sorts in time order, and
    ``isoformat``/``fromisoformat`` are several times cheaper than SQLAlchemy's own
    SQLite datetime format, which matters at hundreds of rows per batch.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(String(32))
        return dialect.type_descriptor(DateTime(timezone=True))

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if dialect.name == "sqlite":
            return utc(value).isoformat(timespec="microseconds")
        return utc(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, str):
            return datetime.fromisoformat(value).astimezone(UTC)
        return utc(value)


_JSON = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


def encode_strings(values: Sequence[str]) -> str:
    """A tuple of strings as the compact JSON array stored in a text column (a tuple's
    text is kept: the same few restriction codes and withheld paths recur in every row)."""
    if not values:
        return "[]"
    if type(values) is tuple:
        return _encoded(values)
    return _JSON.encode(list(values))


@functools.lru_cache(maxsize=4096)
def _encoded(values: tuple[str, ...]) -> str:
    return _JSON.encode(list(values))


def decode_strings(text: str) -> tuple[str, ...]:
    """The tuple of strings stored by :func:`encode_strings`."""
    return tuple(json.loads(text))
