"""What the LA's consumer keeps of its MASH's network checks: the gateway's word on each
request and the queue item that answers it (queue 0009).

The gateway sends both on the LA's delivery topic (:mod:`gateway.information_delivery`):
an ``InformationStatus`` (purpose SHARE_DECISION: ASKED with the deadline and the
identifiers sent, or REFUSED and why) and each agency's ``InformationAnswer`` as a
delivery to the MASH queue. The consumer writes them with the batch they came in (one
transaction, then the offsets), so a status and an answer are kept once however often
Kafka delivers them: ``information_status`` by request id, ``information_answer`` by
request id (the gateway takes only the first answer to a request). The answer itself
stays sealed in the queue (``queue_item`` / ``queue_delivery``) and is opened only when
someone reads it; this table only links the request to the item.

Tables:

* ``information_status`` — request_id, agency, rating, state, deadline, identifiers_sent,
  reason, decided_at (the gateway's), source_offset.
* ``information_answer`` — request_id, notification_id (the answer id: the queue item's),
  recipient_id (the MASH queue it was delivered to), source_offset.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Column, MetaData, String, Table, Text, select
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncEngine

from sgx.store.db import UtcDateTime, decode_strings, encode_strings, store_errors

STATUS_COLUMNS = (
    "request_id", "agency", "rating", "state", "deadline", "identifiers_sent", "reason",
    "decided_at", "source_offset",
)  # fmt: skip
ANSWER_COLUMNS = ("request_id", "notification_id", "recipient_id", "source_offset")
_CHUNK = 500


@dataclass(frozen=True, slots=True)
class InformationStatusRow:
    """The gateway's word on one information request, as the LA keeps it."""

    request_id: str
    agency: str
    rating: str
    state: str  # ASKED or REFUSED
    deadline: datetime | None
    identifiers_sent: tuple[str, ...]
    reason: str
    decided_at: datetime
    source_offset: str


@dataclass(frozen=True, slots=True)
class AnswerLink:
    """The queue item (``notification_id`` in ``recipient_id``'s queue) that answers a
    request."""

    request_id: str
    notification_id: str
    recipient_id: str
    source_offset: str


def status_table(metadata: MetaData) -> Table:
    return Table(
        "information_status",
        metadata,
        Column("request_id", String(64), primary_key=True),
        Column("agency", String(200), nullable=False),
        Column("rating", String(10), nullable=False),
        Column("state", String(10), nullable=False),
        Column("deadline", UtcDateTime),
        Column("identifiers_sent", Text, nullable=False),
        Column("reason", Text, nullable=False),
        Column("decided_at", UtcDateTime, nullable=False),
        Column("source_offset", String(300), nullable=False),
    )


def answer_table(metadata: MetaData) -> Table:
    return Table(
        "information_answer",
        metadata,
        Column("request_id", String(64), primary_key=True),
        Column("notification_id", String(64), nullable=False),
        Column("recipient_id", String(200), nullable=False),
        Column("source_offset", String(300), nullable=False),
    )


def status_from(record: dict[str, object], where: str) -> InformationStatusRow:
    """A row of a decoded ``InformationStatus`` read at ``where``."""
    deadline, decided_at = record["deadline"], record["decided_at"]
    assert deadline is None or isinstance(deadline, datetime)
    assert isinstance(decided_at, datetime)
    sent = record["identifiers_sent"]
    assert isinstance(sent, list)
    return InformationStatusRow(
        request_id=str(record["request_id"]), agency=str(record["agency"]),
        rating=str(record["rating"]), state=str(record["state"]), deadline=deadline,
        identifiers_sent=tuple(str(s) for s in sent), reason=str(record["reason"]),
        decided_at=decided_at, source_offset=where,
    )  # fmt: skip


def _status(row: RowMapping) -> InformationStatusRow:
    values = dict(row)
    values["identifiers_sent"] = decode_strings(values["identifiers_sent"])
    return InformationStatusRow(**values)


class InformationRows:
    """Reads the two tables by request id (each a primary-key look-up)."""

    def __init__(self, engine: AsyncEngine, metadata: MetaData) -> None:
        self._engine = engine
        self.statuses = status_table(metadata)
        self.answers = answer_table(metadata)

    @staticmethod
    def status_values(
        row: InformationStatusRow, stamp: Callable[[datetime], Any]
    ) -> tuple[Any, ...]:
        """``row`` as driver values in :data:`STATUS_COLUMNS` order (``stamp``: a
        timestamp's driver value)."""
        return (
            row.request_id, row.agency, row.rating, row.state,
            None if row.deadline is None else stamp(row.deadline),
            encode_strings(row.identifiers_sent), row.reason, stamp(row.decided_at),
            row.source_offset,
        )  # fmt: skip

    async def status_of(self, request_ids: Sequence[str]) -> dict[str, InformationStatusRow]:
        """The gateway's word on each of ``request_ids`` that has one."""
        found: dict[str, InformationStatusRow] = {}
        t = self.statuses
        with store_errors("read information request statuses"):
            async with self._engine.connect() as conn:
                for start in range(0, len(request_ids), _CHUNK):
                    chunk = list(request_ids[start : start + _CHUNK])
                    result = await conn.execute(select(t).where(t.c.request_id.in_(chunk)))
                    for row in result.mappings():
                        found[row["request_id"]] = _status(row)
        return found
