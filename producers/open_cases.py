"""A school's copy of its open-case list, kept current from the exchange.

The gateway sends each school an ``OpenCaseList`` (child pseudonyms of every child open
to social care in any LA the school serves: one union list, which does not say which LA
holds which child) sealed with purpose ALLOCATIONS on the school's receipts topic (its
connector's, for a school a connector carries: another school's records are skipped).
:class:`OpenCaseListener` opens those envelopes (only from a party of kind ``gateway``),
decodes the list and keeps the newest in :class:`OpenCaseStore` (SQLite by default).
Every other purpose on that topic (receipts) is left for the receipts reader.

The school never learns an identifier from the list: it asks "is this pupil open?" by
computing the pupil's own pseudonyms (:func:`pupil_keys`) and looking them up.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from aiokafka import AIOKafkaConsumer, ConsumerRecord
from sqlalchemy.ext.asyncio import AsyncEngine

from sgx.kafka.commits import commit_offsets
from sgx.kafka.outbound import for_agency
from sgx.kafka.quarantine import Source, from_gateway, read_all
from sgx.kafka.wiring import read_topic, receipts_topic, run_batches
from sgx.keys.pseudonym import Pseudonymiser
from sgx.settings import KafkaSettings
from sgx.store.database import Database
from sgx.store.db import UtcDateTime, store_errors, write_transaction
from sgx.wire import contract as c
from sgx.wire.contract import Contract
from sgx.wire.envelope import Opener, Purpose, peek

log = logging.getLogger(__name__)

BATCH = 100


def pupil_keys(pseudonyms: Pseudonymiser, nhs_number: str | None, upn: str | None) -> set[bytes]:
    """The pseudonyms a list may hold for this pupil: of the NHS number and of the UPN."""
    keys = {pseudonyms.child_key(nhs_number, None), pseudonyms.child_key(None, upn)}
    return {key for key in keys if key is not None}


@dataclass(frozen=True, slots=True)
class OpenCases:
    """The lists held: every open child's pseudonyms, and when the newest list was issued."""

    keys: frozenset[bytes]
    issued_at: datetime | None  # None: no list has reached the school yet

    def is_open(self, keys: Iterable[bytes]) -> bool:
        return not self.keys.isdisjoint(keys)


class OpenCaseStore(Database):
    """The newest open-case list (one per list id: the school's own id)."""

    KIND = "open_cases"

    def __init__(self, engine: AsyncEngine, metadata: sa.MetaData) -> None:
        super().__init__(engine, metadata)
        self._lists = sa.Table(
            "school_open_case_lists",
            metadata,
            sa.Column("la_id", sa.String(64), primary_key=True),
            sa.Column("issued_at", UtcDateTime(), nullable=False),
        )
        self._keys = sa.Table(
            "school_open_cases",
            metadata,
            sa.Column("la_id", sa.String(64), primary_key=True),
            sa.Column("child_key", sa.LargeBinary(16), primary_key=True),
        )

    async def replace(self, la_id: str, issued_at: datetime, keys: Sequence[bytes]) -> bool:
        """Hold this list under ``la_id`` (the list's id: the school the gateway sent it to)
        unless one issued at or after it is held already."""
        lists, table = self._lists, self._keys
        with store_errors("store the open-case list"):
            async with write_transaction(self.engine) as conn:
                held = await conn.scalar(sa.select(lists.c.issued_at).where(lists.c.la_id == la_id))
                if held is not None and held >= issued_at:
                    return False
                await conn.execute(sa.delete(lists).where(lists.c.la_id == la_id))
                await conn.execute(sa.delete(table).where(table.c.la_id == la_id))
                await conn.execute(sa.insert(lists), {"la_id": la_id, "issued_at": issued_at})
                rows = [{"la_id": la_id, "child_key": key} for key in set(keys)]
                if rows:
                    await conn.execute(sa.insert(table), rows)
        return True

    async def current(self) -> OpenCases:
        """Every open child's pseudonyms across the lists held."""
        with store_errors("read the open-case list"):
            async with self.engine.connect() as conn:
                keys = (await conn.scalars(sa.select(self._keys.c.child_key))).all()
                latest = await conn.scalar(sa.select(sa.func.max(self._lists.c.issued_at)))
        return OpenCases(frozenset(bytes(k) for k in keys), latest)


class OpenCaseListener:
    """Applies the gateway's open-case lists found on a school's receipts topic."""

    def __init__(
        self,
        *,
        school_id: str,
        opener: Opener,
        contract: Contract,
        store: OpenCaseStore,
        topic: str | None = None,
    ) -> None:
        """``topic``: where the gateway answers the school (its connector's receipts topic,
        :func:`sgx.kafka.outbound.receipts_topic_of`); by default its own."""
        self._school = school_id
        self._topic = topic or receipts_topic(school_id)
        self._opener = opener
        self._contract = contract
        self._store = store

    async def process(self, records: Iterable[ConsumerRecord]) -> int:
        """Open and store every open-case list among ``records``; returns how many were newer."""
        lists, ignored = read_all(for_agency(records, self._school), self._lists)
        for bad in ignored:
            # Party ids, key ids and field paths only: nothing about a child.
            where = (bad.topic, bad.partition, bad.offset, bad.item)
            log.warning("ignored a record at %s/%d/%d/%d: %s", *where, bad.detail)
        applied = 0
        for found in lists:
            applied += await self._store.replace(
                found["school_id"], found["issued_at"], found["child_keys"]
            )
        return applied

    def _lists(self, source: Source) -> list[dict[str, Any]]:
        """The open-case list an envelope holds; none for receipts and the like."""
        value = source.envelope()
        claims = peek(value)
        if claims is None or claims.purpose is not Purpose.ALLOCATIONS:
            return []  # receipts and the like: not ours to read
        opened = self._opener.open(value, purposes=(Purpose.ALLOCATIONS,))
        from_gateway(opened, "open-case list")
        return [self._contract.decode_as(c.OPEN_CASE_LIST, opened.plaintext)]

    async def catch_up(self, settings: KafkaSettings) -> int:
        """Read the whole receipts topic once (no consumer group) and apply what is newer."""
        return await self.process(await read_topic(settings, self._topic))

    async def run(self, consumer: AIOKafkaConsumer, stop: asyncio.Event) -> None:
        """Apply lists from ``consumer`` until ``stop``; offsets are committed after the store."""

        async def batch(records: list[ConsumerRecord]) -> None:
            await self.process(records)
            await commit_offsets(consumer, None, action="commit open-case offsets")

        await run_batches(consumer, stop, batch, max_records=BATCH, action="read open-case lists")
