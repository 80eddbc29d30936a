"""Sign-in that withstands guessing: failures counted per account name and per client
address, in the LA's store (so every inbox instance agrees), with an exponential back-off
and a lockout only an administrator lifts (``safeguard inbox user unlock``).

* **Per name tried** (``account:<username>``, whether or not the account exists, so the
  answer never says which names are real): the first :data:`FREE_FAILURES` failures cost
  nothing; after that each attempt must wait ``backoff_s * 2^(failures - FREE_FAILURES)``
  (at most :data:`MAX_WAIT`) from the last failure, and at :data:`LOCK_AFTER` failures the
  name is locked until unlocked.
* **Per client address** (``address:<ip>``): the same back-off after
  :data:`ADDRESS_FREE_FAILURES` failures (an office behind one address signs in often),
  and no lockout (an address is not a person).

An attempt that must wait, or a locked name, is refused before the password is checked
and counts no further failure. A success clears its name's and its address's rows; rows
not locked are forgotten a day after their last failure.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from sqlalchemy import Boolean, Column, Index, Integer, MetaData, String, Table, delete, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from sgx.keys.trust import utc_now
from sgx.store.db import UtcDateTime, dialect_insert, store_errors, write_transaction

FREE_FAILURES = 3
ADDRESS_FREE_FAILURES = 10
LOCK_AFTER = 10
MAX_WAIT = timedelta(minutes=15)
FORGET_AFTER = timedelta(days=1)

Verdict = Literal["ok", "throttled", "locked"]


def failures_table(metadata: MetaData) -> Table:
    return Table(
        "inbox_sign_in_failure",
        metadata,
        Column("subject", String(300), primary_key=True),
        Column("failures", Integer, nullable=False),
        Column("last_failed_at", UtcDateTime, nullable=False),
        Column("locked", Boolean, nullable=False),
        Index("ix_inbox_sign_in_failure_last", "last_failed_at"),
    )


@dataclass(frozen=True)
class Refusal:
    """Why an attempt is refused before its password is checked, and until when."""

    verdict: Verdict
    until: datetime | None


class SignInGuard:
    """Counts failed sign-ins and says whether the next attempt may be judged."""

    def __init__(
        self,
        engine: AsyncEngine,
        metadata: MetaData,
        *,
        backoff_s: float = 1.0,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self._engine = engine
        self._table = failures_table(metadata)
        self.backoff_s = backoff_s  # the first wait after the free failures; it doubles
        self._clock = clock

    @staticmethod
    def _subjects(username: str, address: str | None) -> list[str]:
        return [f"account:{username}"] + ([f"address:{address}"] if address else [])

    async def check(self, username: str, address: str | None) -> Refusal:
        """``ok`` if the attempt may be judged now; else why not and until when."""
        t = self._table
        subjects = self._subjects(username, address)
        query = select(t.c.subject, t.c.failures, t.c.last_failed_at, t.c.locked).where(
            t.c.subject.in_(subjects)
        )
        with store_errors("read sign-in failures"):
            async with self._engine.connect() as conn:
                rows = (await conn.execute(query)).all()
        now, latest = self._clock(), None
        for subject, failures, last, locked in rows:
            if locked:
                return Refusal("locked", None)
            free = FREE_FAILURES if subject.startswith("account:") else ADDRESS_FREE_FAILURES
            if failures >= free:
                wait = timedelta(seconds=self.backoff_s * 2 ** (failures - free))
                until = last + min(wait, MAX_WAIT)
                latest = until if latest is None else max(latest, until)
        if latest is not None and now < latest:
            return Refusal("throttled", latest)
        return Refusal("ok", None)

    async def failed(self, username: str, address: str | None) -> None:
        """Count a failed attempt against the name and the address."""
        now = self._clock()
        with store_errors("count a failed sign-in"):
            async with write_transaction(self._engine) as conn:
                await self._forget_old(conn, now)
                for subject in self._subjects(username, address):
                    await self._count(conn, subject, now)

    async def _count(self, conn: AsyncConnection, subject: str, now: datetime) -> None:
        t = self._table
        current = (
            await conn.execute(select(t.c.failures).where(t.c.subject == subject))
        ).scalar_one_or_none()
        failures = (current or 0) + 1
        locked = subject.startswith("account:") and failures >= LOCK_AFTER
        row = {"subject": subject, "failures": failures, "last_failed_at": now, "locked": locked}
        insert = dialect_insert(self._engine)(t).values(row)
        await conn.execute(
            insert.on_conflict_do_update(
                index_elements=["subject"],
                set_={"failures": failures, "last_failed_at": now, "locked": locked},
            )
        )

    async def _forget_old(self, conn: AsyncConnection, now: datetime) -> None:
        t = self._table
        await conn.execute(
            delete(t).where(t.c.last_failed_at < now - FORGET_AFTER, t.c.locked.is_(False))
        )

    async def succeeded(self, username: str, address: str | None) -> None:
        """A right password: the name's and the address's failures are forgotten."""
        await self._clear(self._subjects(username, address))

    async def unlock(self, username: str) -> bool:
        """Lift a lockout (and the back-off) of ``username``; whether it was locked."""
        t = self._table
        subject = f"account:{username}"
        with store_errors("read sign-in failures"):
            async with self._engine.connect() as conn:
                locked = (
                    await conn.execute(select(t.c.locked).where(t.c.subject == subject))
                ).scalar_one_or_none()
        await self._clear([subject])
        return bool(locked)

    async def _clear(self, subjects: list[str]) -> None:
        t = self._table
        with store_errors("clear sign-in failures"):
            async with write_transaction(self._engine) as conn:
                await conn.execute(delete(t).where(t.c.subject.in_(subjects)))
