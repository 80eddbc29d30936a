"""Sessions the server controls: the signed cookie carries only a random session token;
who is signed in, as what, since when, lives in the LA's store (``inbox_session``), so
every instance agrees and the server can end a session at once.

* A session ends at sign-out, when it has been idle for ``idle`` or open for ``absolute``,
  or when it is revoked: ``safeguard inbox sessions revoke`` (one person, or everyone),
  and whenever a local account is replaced (a role or team change) or disabled.
* A local account's role and team are read from the account at every request, so a
  change takes effect on the next page even before its sessions are ended. A single
  sign-on session keeps what the identity provider said at sign-in, until it ends.
* Only the SHA-256 of the token is stored: a copy of the table opens no session.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Column, ColumnElement, Index, MetaData, String, Table, select, true, update
from sqlalchemy.ext.asyncio import AsyncEngine

from sgx.keys.trust import utc_now
from sgx.store.db import UtcDateTime, read_row, store_errors, write_transaction

TOUCH_EVERY = timedelta(seconds=60)  # how stale last_seen_at may get (one write a minute)


def sessions_table(metadata: MetaData) -> Table:
    return Table(
        "inbox_session",
        metadata,
        Column("token_sha256", String(64), primary_key=True),
        Column("subject", String(200), nullable=False),  # the worker id
        Column("username", String(200)),  # the local account, or None (single sign-on)
        Column("name", String(300), nullable=False),
        Column("role", String(50)),
        Column("team", String(200)),
        Column("via", String(10), nullable=False),
        Column("created_at", UtcDateTime, nullable=False),
        Column("last_seen_at", UtcDateTime, nullable=False),
        Column("ended_at", UtcDateTime),
        Column("ended_why", String(100)),
        Index("ix_inbox_session_subject", "subject"),
        Index("ix_inbox_session_username", "username"),
    )


@dataclass(frozen=True)
class Session:
    subject: str
    username: str | None
    name: str
    role: str | None
    team: str | None
    via: str


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Sessions:
    """Begins, finds, touches and ends the inbox's sessions."""

    def __init__(
        self,
        engine: AsyncEngine,
        metadata: MetaData,
        *,
        idle: timedelta = timedelta(minutes=30),
        absolute: timedelta = timedelta(hours=8),
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self._engine = engine
        self._table = sessions_table(metadata)
        self.idle, self.absolute = idle, absolute
        self._clock = clock

    async def begin(self, session: Session) -> str:
        """A new session; returns its token (for the signed cookie, never stored)."""
        token, now = secrets.token_urlsafe(32), self._clock()
        row = {
            "token_sha256": _digest(token),
            **vars(session),
            "created_at": now,
            "last_seen_at": now,
        }
        with store_errors("begin an inbox session"):
            async with write_transaction(self._engine) as conn:
                await conn.execute(self._table.insert(), [row])
        return token

    async def find(self, token: str) -> Session | None:
        """The live session of ``token``, touched; None if it ended, idled or aged out."""
        t, now = self._table, self._clock()
        row = await read_row(
            self._engine, select(t).where(t.c.token_sha256 == _digest(token)), "read a session"
        )
        if row is None or row["ended_at"] is not None:
            return None
        why = (
            "idle"
            if now - row["last_seen_at"] > self.idle
            else "expired"
            if now - row["created_at"] > self.absolute
            else None
        )
        if why is not None:
            await self._end(t.c.token_sha256 == row["token_sha256"], why)
            return None
        if now - row["last_seen_at"] > TOUCH_EVERY:
            with store_errors("touch a session"):
                async with write_transaction(self._engine) as conn:
                    await conn.execute(
                        update(t)
                        .where(t.c.token_sha256 == row["token_sha256"])
                        .values(last_seen_at=now)
                    )
        names = ("subject", "username", "name", "role", "team", "via")
        return Session(**{name: row[name] for name in names})

    async def end(self, token: str, why: str = "signed out") -> None:
        await self._end(self._table.c.token_sha256 == _digest(token), why)

    async def end_account(self, username: str, why: str) -> int:
        """End every live session of the local account ``username``; how many."""
        return await self._end(self._table.c.username == username, why)

    async def end_worker(self, subject: str, why: str) -> int:
        """End every live session signed in as the worker ``subject``; how many."""
        return await self._end(self._table.c.subject == subject, why)

    async def end_all(self, why: str) -> int:
        return await self._end(true(), why)

    async def _end(self, which: ColumnElement[bool], why: str) -> int:
        t = self._table
        change = (
            update(t)
            .where(which, t.c.ended_at.is_(None))
            .values(ended_at=self._clock(), ended_why=why)
        )
        with store_errors("end inbox sessions"):
            async with write_transaction(self._engine) as conn:
                return int((await conn.execute(change)).rowcount or 0)
