"""Reading a Kafka record as envelopes, and keeping what cannot be read (quarantine).

Every reader of sealed traffic (the gateway, the delivery consumer, an agency's receipt
listener, a school's open-case listener) splits each record into its envelopes with
:func:`sources` and opens each on its own (design.md, "Wire format"); :func:`read_all`
does both for a batch. An envelope that cannot be trusted or read, or a whole record that
is no envelope at all, becomes a :class:`Quarantined` entry naming where it was read
(topic, partition, offset and the envelope's ``item`` in the record) and why; the stores
keep it in a table of :func:`sgx.store.db.quarantine_columns` (:func:`quarantine_row`,
:func:`quarantined_from_row`), the open-case listener only logs it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import Table, func, select
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncEngine

from sgx.errors import ContractError, EnvelopeError, MalformedEnvelope, UnknownSchema
from sgx.kafka.wiring import REPLAY_TOPIC
from sgx.keys.trust import Clock, utc_now
from sgx.store.db import store_errors
from sgx.wire.envelope import Opened, peek, unpack

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Source:
    """One envelope of a Kafka record, with where it was read.

    ``item`` is the envelope's place in its record (0 for a record of one envelope);
    ``broken`` says why the record could not be split into envelopes at all, and then
    ``value`` is the whole record. ``origin`` is, for a record read from the replay topic,
    the inbound topic the envelope was first read from (its sender's topic).
    """

    topic: str
    partition: int
    offset: int
    item: int
    value: bytes
    broken: str | None = None
    origin: str | None = None

    @property
    def where(self) -> str:
        return f"{self.topic}/{self.partition}/{self.offset}/{self.item}"

    @property
    def position(self) -> tuple[str, int, int]:
        """(topic, partition, offset) of its record."""
        return self.topic, self.partition, self.offset

    @property
    def written_to(self) -> str:
        """The topic its sender wrote it to: the origin of a replay, else where it was read."""
        return self.origin or self.topic

    def envelope(self) -> bytes:
        """The envelope's bytes; MalformedEnvelope if the record held no envelopes."""
        if self.broken is not None:
            raise MalformedEnvelope(self.broken)
        return self.value


def sources(record: Any) -> list[Source]:
    """The envelopes one Kafka record carries (one Source for a record that is neither)."""
    topic, partition, offset = str(record.topic), int(record.partition), int(record.offset)
    value = bytes(record.value or b"")
    origin = None
    if topic == REPLAY_TOPIC:  # a quarantined envelope sent again: one envelope per record
        origin = bytes(record.key or b"").decode("ascii", errors="replace")
        return [Source(topic, partition, offset, 0, value, origin=origin)]
    try:
        envelopes = unpack(value)
    except MalformedEnvelope as exc:
        return [Source(topic, partition, offset, 0, value, broken=str(exc))]
    return [Source(topic, partition, offset, i, e) for i, e in enumerate(envelopes)]


def read_all(
    records: Iterable[Any],
    read: Callable[[Source], Iterable[T]],
    clock: Clock = utc_now,
) -> tuple[list[T], list[Quarantined]]:
    """What ``read`` makes of every envelope of ``records``, and what it could not read.

    An envelope (or a record that holds none) on which ``read`` raises an EnvelopeError
    or a ContractError is quarantined with the error's reason, at ``clock()``.
    """
    return read_sources((s for record in records for s in sources(record)), read, clock)


def read_sources(
    found: Iterable[Source],
    read: Callable[[Source], Iterable[T]],
    clock: Clock = utc_now,
) -> tuple[list[T], list[Quarantined]]:
    """:func:`read_all` for envelopes already split from their records (a replay's)."""
    made: list[T] = []
    kept: list[Quarantined] = []
    for source in found:
        try:
            made += read(source)
        except (EnvelopeError, ContractError) as exc:
            kept.append(Quarantined.of(source, reason_of(exc), str(exc), clock()))
    return made, kept


class NotFromGateway(EnvelopeError):
    """An envelope that only the gateway may send, sealed by another party."""

    reason = "not_from_gateway"


def from_gateway(opened: Opened, what: str) -> Opened:
    """``opened`` if the gateway sealed it; NotFromGateway otherwise."""
    if opened.sender.kind != "gateway":
        raise NotFromGateway(f"{what} sealed by {opened.sender.id}, not the gateway")
    return opened


def reason_of(exc: EnvelopeError | ContractError) -> str:
    """The quarantine reason of an envelope or record that failed with ``exc``."""
    if isinstance(exc, EnvelopeError | UnknownSchema):
        return exc.reason
    return "invalid_record"


@dataclass(frozen=True, slots=True)
class Quarantined:
    """An envelope (or a record that holds none) that could not be trusted or read.

    ``message_id`` and ``sender_claimed`` are what its header claims, unauthenticated,
    when the header parses; a store keeps those only if its table has the columns.
    """

    topic: str
    partition: int
    offset: int
    item: int
    reason: str
    detail: str
    raw: bytes
    quarantined_at: datetime
    message_id: str | None = None
    sender_claimed: str | None = None

    @classmethod
    def of(cls, source: Source, reason: str, detail: str, at: datetime) -> Quarantined:
        """``source`` kept whole with why, and what its header claims if it parses."""
        claims = peek(source.value)
        return cls(
            topic=source.topic,
            partition=source.partition,
            offset=source.offset,
            item=source.item,
            reason=reason,
            detail=detail,
            raw=source.value,
            quarantined_at=at,
            message_id=str(claims.message_id) if claims else None,
            sender_claimed=claims.sender if claims else None,
        )


_FIELDS = tuple(f.name for f in fields(Quarantined))


def quarantine_row(entry: Quarantined, table: Table) -> dict[str, Any]:
    """The entry's values for the columns ``table`` has (its own ids and columns aside)."""
    return {name: getattr(entry, name) for name in _FIELDS if name in table.c}


def quarantined_from_row(row: RowMapping) -> Quarantined:
    """A stored quarantine row as an entry (columns the entry does not have are left out)."""
    return Quarantined(**{name: row[name] for name in _FIELDS if name in row})


# Rows whose ids are at most this old may still be joined by a row with a lower id whose
# transaction has not committed yet (PostgreSQL hands out ids when a row is inserted, not
# when it commits); stores' transactions are short and a session idle in one is ended
# after sgx.store.db.IDLE_IN_TRANSACTION_MS.
SETTLE = timedelta(seconds=60)


class QuarantineCount:
    """How many rows a quarantine table holds, for a gauge read every few seconds.

    Nothing deletes a quarantine row (a replay appends to its log), so the count only
    grows: each :meth:`count` reads the rows added since it last looked (a range of the
    primary key), never the whole table. The first count reads the table once.
    """

    def __init__(self, engine: AsyncEngine, table: Table, clock: Clock = utc_now) -> None:
        self._engine = engine
        self._id = table.c.quarantine_id
        self._at = table.c.quarantined_at
        self._clock = clock
        self._through: int | None = None  # every row with an id up to this is in _settled
        self._settled = 0

    async def count(self) -> int:
        cutoff = self._clock() - SETTLE
        with store_errors("count the quarantine"):
            async with self._engine.connect() as conn:
                if self._through is None:
                    self._through = int(
                        (await conn.execute(select(func.max(self._id)).where(self._at < cutoff)))
                        .scalar_one_or_none() or 0
                    )  # fmt: skip
                    self._settled = int(
                        (await conn.execute(
                            select(func.count()).where(self._id <= self._through)
                        )).scalar_one()
                    )  # fmt: skip
                query = select(self._id, self._at).where(self._id > self._through)
                recent = (await conn.execute(query.order_by(self._id))).all()
        total = self._settled + len(recent)
        for row_id, at in recent:  # move the settled prefix out of the next read
            if at >= cutoff:
                break
            self._through, self._settled = int(row_id), self._settled + 1
        return total
