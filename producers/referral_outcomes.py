"""The referrer's side: what each local authority said of the agency's referrals.

The gateway carries an LA's acknowledgement of a referral, and its decision, to the
referring agency only, on the agency's receipts topic beside the receipt of the referral
itself (a ``SignedReferralResponse``, purpose RECEIPTS). The receipt listener verifies the
LA's signature against the trust directory (:mod:`sgx.wire.referral_signature`: the
gateway carried the LA's words but cannot have changed them) and keeps each response
here, in the outbox's database, in the same transaction as the receipts read with it;
a response whose signature does not verify is kept in the receipt quarantine instead.
The signed bytes and the signature are kept too, so the agency can show later exactly
what the LA said.

:meth:`ReferralOutcomes.of` lists them for ``safeguard producer referral list|show`` and
the push endpoint's ``GET /v1/referrals/{id}`` (:mod:`producers.push_referrals`), each with
the referral's own outbox entry and receipt (:func:`referral_statuses`);
:meth:`ReferralOutcomes.after` pages through them for a system polling for news.

Table: ``outbox_referral_response``, unique on (agency, response_id).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Column,
    Index,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    select,
)
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from producers.outbox import OutboxEntry, OutboxStore
from sgx.store.db import (
    UtcDateTime,
    insert_ignoring_duplicates,
    metadata_for,
    read_rows,
    serial,
)
from sgx.wire import contract as c


@dataclass(frozen=True, slots=True)
class ReferralHeard:
    """One LA response to one of the agency's referrals, as the LA signed it."""

    agency: str
    response_id: uuid.UUID
    referral_id: uuid.UUID
    local_authority: str
    stage: str  # ACKNOWLEDGED or DECIDED
    decision: str | None
    reasons: str | None
    next_steps: str | None
    la_contact: str
    la_reference: str | None
    responded_by: str
    responded_at: datetime
    signer_key_id: str
    signed_response: bytes  # the ReferralResponse exactly as the LA signed it
    signature: bytes
    received_at: datetime
    heard_id: int = 0  # the row's id once kept: a cursor for pollers (0 before)

    @classmethod
    def of(
        cls, agency: str, signed: Mapping[str, Any], response: Mapping[str, Any], at: datetime
    ) -> ReferralHeard:
        """A verified response (:func:`sgx.wire.referral_signature.verify_response`)."""
        return cls(
            agency=agency,
            response_id=uuid.UUID(str(response["response_id"])),
            referral_id=uuid.UUID(str(response["referral_id"])),
            local_authority=response["local_authority"],
            stage=response["stage"],
            decision=response["decision"],
            reasons=response["reasons"],
            next_steps=response["next_steps"],
            la_contact=response["la_contact"],
            la_reference=response["la_reference"],
            responded_by=response["responded_by"],
            responded_at=response["responded_at"],
            signer_key_id=signed["signer_key_id"],
            signed_response=bytes(signed["response"]),
            signature=bytes(signed["signature"]),
            received_at=at,
        )


_COLUMNS = tuple(f.name for f in fields(ReferralHeard) if f.name != "heard_id")
_UUIDS = ("response_id", "referral_id")


def _table(metadata: MetaData) -> Table:
    return Table(
        "outbox_referral_response",
        metadata,
        Column("heard_id", serial(), primary_key=True),
        Column("agency", String(200), nullable=False),
        Column("response_id", String(36), nullable=False),
        Column("referral_id", String(36), nullable=False),
        Column("local_authority", String(200), nullable=False),
        Column("stage", String(20), nullable=False),
        Column("decision", String(40)),
        Column("reasons", Text),
        Column("next_steps", Text),
        Column("la_contact", Text, nullable=False),
        Column("la_reference", String(200)),
        Column("responded_by", Text, nullable=False),
        Column("responded_at", UtcDateTime, nullable=False),
        Column("signer_key_id", String(200), nullable=False),
        Column("signed_response", LargeBinary, nullable=False),
        Column("signature", LargeBinary, nullable=False),
        Column("received_at", UtcDateTime, nullable=False),
        UniqueConstraint("agency", "response_id", name="uq_outbox_referral_response"),
        # a referral's responses, for its status (outbox 0004)
        Index("ix_outbox_referral_response_referral", "agency", "referral_id", "heard_id"),
    )


def _row(heard: ReferralHeard) -> dict[str, Any]:
    row: dict[str, Any] = {name: getattr(heard, name) for name in _COLUMNS}
    for name in _UUIDS:
        row[name] = str(row[name])
    return row


def _heard(row: RowMapping) -> ReferralHeard:
    values = {name: row[name] for name in _COLUMNS}
    for name in _UUIDS:
        values[name] = uuid.UUID(values[name])
    return ReferralHeard(**values, heard_id=int(row["heard_id"]))


class ReferralOutcomes:
    """The responses to one or more agencies' referrals, in their outbox database."""

    def __init__(self, engine: AsyncEngine, *, schema: str | None = None) -> None:
        self._engine = engine
        self._metadata = metadata_for(engine, schema)
        self._table = _table(self._metadata)
        self._add = insert_ignoring_duplicates(engine, self._table, "agency", "response_id")

    @property
    def metadata(self) -> MetaData:
        return self._metadata

    async def persist(self, conn: AsyncConnection, heard: Sequence[ReferralHeard]) -> None:
        """Keep responses in the caller's transaction (a repeat is ignored)."""
        if heard:
            await conn.execute(self._add, [_row(h) for h in heard])

    async def of(
        self, agency: str, referral_ids: Sequence[uuid.UUID] | None = None
    ) -> list[ReferralHeard]:
        """The agency's responses (to these referrals only, if given), oldest first."""
        t = self._table
        query = select(t).where(t.c.agency == agency)
        if referral_ids is not None:
            query = query.where(t.c.referral_id.in_([str(r) for r in referral_ids]))
        rows = await read_rows(
            self._engine, query.order_by(t.c.heard_id), "list referral responses"
        )
        return [_heard(row) for row in rows]

    async def after(self, agency: str, heard_id: int, limit: int) -> list[ReferralHeard]:
        """The agency's responses kept after cursor ``heard_id``, oldest first (a poller's
        page: a range of the primary key, the same cost whatever the history)."""
        t = self._table
        query = (
            select(t)
            .where(t.c.heard_id > heard_id, t.c.agency == agency)
            .order_by(t.c.heard_id)
            .limit(limit)
        )
        return [_heard(row) for row in await read_rows(self._engine, query, "poll responses")]


@dataclass(frozen=True, slots=True)
class ReferralStatus:
    """One referral the agency sent: its outbox entry (and the gateway's receipt; None for
    a referral sent some other way than this outbox), and what each LA that received it
    has said, oldest first."""

    referral_id: uuid.UUID
    entry: OutboxEntry | None
    responses: tuple[ReferralHeard, ...]

    @property
    def by_la(self) -> dict[str, ReferralHeard]:
        """Each LA's latest response: its decision in force, or its acknowledgement."""
        latest: dict[str, ReferralHeard] = {}
        for heard in self.responses:
            if heard.stage == "DECIDED" or heard.local_authority not in latest:
                latest[heard.local_authority] = heard
        return latest


async def referral_statuses(
    store: OutboxStore, outcomes: ReferralOutcomes, agency: str
) -> list[ReferralStatus]:
    """Every referral ``agency`` sent through its outbox, oldest first, with the responses
    to it; then any referral an LA answered that the outbox does not hold."""
    entries = [e for e in await store.entries(agency) if e.schema_name == c.REFERRAL]
    by_referral: dict[uuid.UUID, list[ReferralHeard]] = {}
    for h in await outcomes.of(agency):
        by_referral.setdefault(h.referral_id, []).append(h)
    found = [
        ReferralStatus(e.message_id, e, tuple(by_referral.pop(e.message_id, ()))) for e in entries
    ]
    return found + [ReferralStatus(r, None, tuple(h)) for r, h in by_referral.items()]
