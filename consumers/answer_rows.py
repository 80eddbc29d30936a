"""What the LA's consumer keeps of the gateway's answers on the LA's receipts topic
(queue 0010), so that nothing on the LA's side reads that topic from its beginning.

The gateway answers what the LA sends on ``sgx.receipts.<la>``: a ``ShareDecision`` on
an onward share and ``ConsentOutcome`` records on an author's-consent request (purpose
SHARE_DECISION), and ``ReceiptBatch`` records (purpose RECEIPTS) with a receipt per
message it judged (an LA's response to a referral among them). The LA's consumer reads
that topic beside its delivery topic, in the same group, and writes what it holds with
the batch it came in (one transaction, then the offsets): each answer is kept once however
often Kafka delivers it or the gateway publishes it again.

Tables:

* ``gateway_answer`` — request_id, kind (``share`` | ``consent``), state (a share's
  ALLOWED or REFUSED, a consent outcome's state), decided_at, record (the answer as the
  gateway encoded it: the contract decodes it when read), source_offset; primary key
  (request_id, kind, state): a request's answers are found by their key, and one that
  came again (the same state) is ignored.
* ``gateway_receipt`` — message_id (the message receipted), outcome, reason, detail,
  decided_at, source_offset; the first receipt for a message is kept.

Neither table holds anything of a child: a share decision and a consent outcome name the
notification, the category, the purpose and the restrictions; a receipt its outcome.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import Column, LargeBinary, MetaData, String, Table, Text, select
from sqlalchemy.ext.asyncio import AsyncEngine

from sgx.kafka.quarantine import Source, from_gateway
from sgx.store.db import UtcDateTime, store_errors
from sgx.wire import contract as c
from sgx.wire.contract import Contract
from sgx.wire.envelope import Opener, Purpose

AnswerKind = Literal["share", "consent"]
KINDS: dict[str, AnswerKind] = {c.SHARE_DECISION: "share", c.CONSENT_OUTCOME: "consent"}
ANSWER_COLUMNS = ("request_id", "kind", "state", "decided_at", "record", "source_offset")
RECEIPT_COLUMNS = ("message_id", "outcome", "reason", "detail", "decided_at", "source_offset")
_CHUNK = 500


@dataclass(frozen=True, slots=True)
class GatewayAnswer:
    """The gateway's answer to one request of the LA (a share, a consent request)."""

    request_id: str
    kind: AnswerKind
    state: str
    decided_at: datetime
    record: bytes  # the answer as the gateway encoded it (its writer schema's fingerprint)
    source_offset: str


@dataclass(frozen=True, slots=True)
class GatewayReceipt:
    """The gateway's receipt for one message the LA sent."""

    message_id: str
    outcome: str
    reason: str
    detail: str
    decided_at: datetime
    source_offset: str


Answered = GatewayAnswer | GatewayReceipt


def answer_table(metadata: MetaData) -> Table:
    return Table(
        "gateway_answer",
        metadata,
        Column("request_id", String(64), primary_key=True),
        Column("kind", String(10), primary_key=True),
        Column("state", String(30), primary_key=True),
        Column("decided_at", UtcDateTime, nullable=False),
        Column("record", LargeBinary, nullable=False),
        Column("source_offset", String(300), nullable=False),
    )


def receipt_table(metadata: MetaData) -> Table:
    return Table(
        "gateway_receipt",
        metadata,
        Column("message_id", String(64), primary_key=True),
        Column("outcome", String(30), nullable=False),
        Column("reason", Text, nullable=False),
        Column("detail", Text, nullable=False),
        Column("decided_at", UtcDateTime, nullable=False),
        Column("source_offset", String(300), nullable=False),
    )


class AnswerReader:
    """Turns the envelopes of the LA's receipts topic into rows (no Kafka, no database).
    Each must open with the LA's key and come from the gateway (else it is quarantined,
    as :func:`sgx.kafka.quarantine.read_sources` does with the errors raised here); a
    gateway record of a type kept elsewhere (a consent request put to the LA as an author,
    an open-case list) gives no row."""

    def __init__(self, *, opener: Opener, contract: Contract) -> None:
        self._opener = opener
        self._contract = contract

    def rows(self, source: Source) -> list[Answered]:
        opened = self._opener.open(source.envelope())
        from_gateway(opened, "an answer on the receipts topic")
        if opened.purpose is Purpose.RECEIPTS:
            name, batch = self._contract.decode(opened.plaintext)
            if name != c.RECEIPT_BATCH:
                return []
            return [_receipt_row(r, source.where) for r in batch["receipts"]]
        if opened.purpose is not Purpose.SHARE_DECISION:
            return []
        name, record = self._contract.decode(opened.plaintext)
        kind = KINDS.get(name)
        if kind is None:
            return []
        return [
            GatewayAnswer(
                str(record["request_id"]), kind, state_of(kind, record), record["decided_at"],
                opened.plaintext, source.where,
            )
        ]  # fmt: skip


def _receipt_row(r: dict[str, Any], where: str) -> GatewayReceipt:
    return GatewayReceipt(
        str(r["message_id"]), str(r["outcome"]), str(r["reason"]), str(r["detail"]),
        r["decided_at"], where,
    )  # fmt: skip


def state_of(kind: AnswerKind, record: dict[str, Any]) -> str:
    """The state an answer is kept under: a share's ALLOWED or REFUSED, a consent
    outcome's own."""
    if kind == "share":
        return "ALLOWED" if record["allowed"] else "REFUSED"
    return str(record["state"])


def in_order(answer: dict[str, Any]) -> tuple[bool, datetime]:
    """The order the gateway's answers to one request were given in: a consent request's
    ASKED before the author's answer, else by when decided (two answers to one request may
    have sat on different partitions)."""
    return answer.get("state") != "ASKED", answer["decided_at"]


class AnswerRows:
    """Reads the two tables by their keys: what a look-up costs does not grow with the
    LA's history."""

    def __init__(self, engine: AsyncEngine, metadata: MetaData) -> None:
        self._engine = engine
        self.answers = answer_table(metadata)
        self.receipts = receipt_table(metadata)

    @staticmethod
    def answer_values(row: GatewayAnswer, stamp: Callable[[datetime], Any]) -> tuple[Any, ...]:
        return (row.request_id, row.kind, row.state, stamp(row.decided_at), row.record,
                row.source_offset)  # fmt: skip

    @staticmethod
    def receipt_values(row: GatewayReceipt, stamp: Callable[[datetime], Any]) -> tuple[Any, ...]:
        return (row.message_id, row.outcome, row.reason, row.detail, stamp(row.decided_at),
                row.source_offset)  # fmt: skip

    async def said(
        self,
        contract: Contract,
        kind: AnswerKind,
        request_ids: Sequence[uuid.UUID] | None = None,
    ) -> dict[uuid.UUID, list[dict[str, Any]]]:
        """The gateway's answers of ``kind`` to each of ``request_ids`` that has one (None:
        to every request, for a listing of them all), oldest first, as the gateway sent them
        (decoded by ``contract``)."""
        t = self.answers
        found: dict[uuid.UUID, list[dict[str, Any]]] = {}
        keys = None if request_ids is None else sorted({str(r) for r in request_ids})
        with store_errors("read the gateway's answers"):
            async with self._engine.connect() as conn:
                for chunk in _chunks(keys):
                    query = select(t.c.record).where(t.c.kind == kind)
                    if chunk is not None:
                        query = query.where(t.c.request_id.in_(chunk))
                    for (record,) in await conn.execute(query):
                        decoded = contract.decode(bytes(record))[1]
                        found.setdefault(decoded["request_id"], []).append(decoded)
        for answers in found.values():
            answers.sort(key=in_order)
        return found

    async def latest(
        self, contract: Contract, kind: AnswerKind, request_ids: Sequence[uuid.UUID]
    ) -> dict[uuid.UUID, dict[str, Any]]:
        """The latest answer of ``kind`` to each of ``request_ids`` that has one."""
        found = await self.said(contract, kind, request_ids)
        return {rid: said[-1] for rid, said in found.items()}

    async def wait(
        self, contract: Contract, kind: AnswerKind, request_id: uuid.UUID, timeout: float
    ) -> dict[str, Any]:
        """The first answer of ``kind`` to ``request_id`` once the LA's consumer has kept it
        (polling the rows); TimeoutError after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            found = (await self.said(contract, kind, [request_id])).get(request_id)
            if found:
                return found[0]
            if time.monotonic() >= deadline:
                raise TimeoutError(f"no answer to request {request_id} yet")
            await asyncio.sleep(0.1)

    async def receipts_for(
        self, message_ids: Sequence[uuid.UUID]
    ) -> dict[uuid.UUID, dict[str, Any]]:
        """The gateway's receipt for each of ``message_ids`` that has one, as a Receipt."""
        t = self.receipts
        found: dict[uuid.UUID, dict[str, Any]] = {}
        with store_errors("read the gateway's receipts"):
            async with self._engine.connect() as conn:
                for chunk in _chunks(sorted({str(m) for m in message_ids})):
                    query = select(t).where(t.c.message_id.in_(chunk or []))
                    for row in (await conn.execute(query)).mappings():
                        message_id = uuid.UUID(row["message_id"])
                        found[message_id] = {
                            "message_id": message_id, "outcome": row["outcome"],
                            "reason": row["reason"], "detail": row["detail"],
                            "decided_at": row["decided_at"],
                        }  # fmt: skip
        return found


def _chunks(keys: list[str] | None) -> list[list[str] | None]:
    if keys is None:
        return [None]
    return [keys[start : start + _CHUNK] for start in range(0, len(keys), _CHUNK)]
