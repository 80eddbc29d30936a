"""Referrals an LA received, acknowledged and decided from the command line: the inbox's
own service (:class:`consumers.inbox.service.Inbox` and its
:class:`~consumers.inbox.referrals.ReferralDesk`) over the LA's stores, for an operator.

As for ``safeguard family`` (:mod:`safeguard.families`), the command line has no sign-in:
whoever runs it holds the LA's store and key. It acts as a system named ``cli:<by>``
with the scopes ``deliveries:read`` and ``referrals:respond``, over every queue of the LA
or only those the command selects (a worker's, a team's, the MASH's), so its reads are
audited like the inbox's and its responses recorded in the same table
(``inbox_referral_response``), signed by the LA and sent by the same
:class:`consumers.referral_client.ReferralResponder`.

The broker is needed only to send: the response is recorded first, and if the broker
cannot be reached it is kept and sent again the next time the referral is shown (by this
command line or the inbox), as the inbox does.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

from aiokafka import AIOKafkaProducer
from prometheus_client import CollectorRegistry

from consumers.answer_rows import AnswerRows
from consumers.inbox.access import READ, RESPOND, Principal
from consumers.inbox.referral_store import ResponseRecord
from consumers.inbox.service import Inbox, InboxMetrics
from consumers.inbox.settings import InboxSettings
from consumers.reader import QueueReader, QueueView
from consumers.referral_client import ReferralResponder
from safeguard.inbox_wiring import inbox_store
from safeguard.runtime import Runtime
from sgx.kafka.wiring import start_producer
from sgx.wire.envelope import Opener


def operator(
    la: str,
    by: str,
    *,
    workers: frozenset[str] = frozenset(),
    teams: frozenset[str] = frozenset(),
    mash: bool = False,
) -> Principal:
    """Whoever runs the command, as the inbox's service sees them: every queue of the LA,
    or only the workers', teams' and MASH queues named."""
    queues = {f"queue:worker:{quote(w, safe='')}" for w in workers}
    queues |= {f"queue:team:{quote(t, safe='')}" for t in teams}
    queues |= {"queue:mash"} if mash else set()
    scopes = frozenset({READ, RESPOND, *(queues or {"queue:all"})})
    return Principal(la=la, subject=f"cli:{by}", kind="system", name=by, scopes=scopes)


async def _no_share(view: QueueView, *args: Any) -> dict[str, Any]:
    raise NotImplementedError("onward shares from the command line: safeguard queue share")


class _Sender:
    """Sends the LA's signed responses, starting a Kafka producer at the first send (so
    listing and showing need no broker, and a response is recorded before the broker is
    tried); reads the gateway's receipts from the rows the LA's consumer keeps, without one."""

    def __init__(self, rt: Runtime, la: str, rows: AnswerRows) -> None:
        trust = rt.trust()
        self._rt, self._identity, self._trust = rt, rt.identity(la, trust), trust
        self._rows = rows
        self._producer: AIOKafkaProducer | None = None
        self._sending: ReferralResponder | None = None

    async def send(self, response: dict[str, Any]) -> None:
        if self._sending is None:
            self._producer = await start_producer(self._rt.kafka)  # TransportError: kept
            self._sending = ReferralResponder(
                identity=self._identity, trust=self._trust, contract=self._rt.contract(),
                producer=self._producer, rows=self._rows,
            )  # fmt: skip
        await self._sending.send(response)

    async def receipts(self, response_ids: set[uuid.UUID]) -> dict[uuid.UUID, dict[str, Any]]:
        """The gateway's receipts the LA's consumer kept: a look-up, no broker."""
        return await self._rows.receipts_for(sorted(response_ids))

    async def close(self) -> None:
        if self._producer is not None:
            await self._producer.stop()


@contextlib.asynccontextmanager
async def referral_inbox(rt: Runtime, la: str) -> AsyncIterator[Inbox]:
    """The inbox service of ``la`` (its referral desk at ``.referrals``), over its stores,
    able to send responses, while the block runs."""
    trust = rt.trust()
    identity = rt.identity(la, trust)
    async with await rt.queue_store(la) as queue, await inbox_store(rt, la) as store:
        sender = _Sender(rt, la, queue.answered)
        try:
            reader = QueueReader(
                store=queue, opener=Opener(identity, trust), contract=rt.contract()
            )
            yield Inbox(
                la=la, queue=queue, reader=reader, store=store, ask_share=_no_share,
                metrics=InboxMetrics(CollectorRegistry()), send_response=sender.send,
                find_response_receipts=sender.receipts,
                referral_contact=InboxSettings().referral_contact,
            )  # fmt: skip
        finally:
            await sender.close()


async def respond(
    rt: Runtime,
    la: str,
    item_id: int,
    *,
    by: str,
    stage: str,
    la_contact: str,
    decision: str | None = None,
    reasons: str | None = None,
    next_steps: str | None = None,
    la_reference: str | None = None,
) -> ResponseRecord:
    """Acknowledge or decide the referral of ``item_id`` as ``safeguard referral`` does:
    recorded, signed by the LA and sent (the demo's MASH responds this way)."""
    async with referral_inbox(rt, la) as inbox:
        return await inbox.referrals.respond(
            operator(la, by), item_id, stage=stage, decision=decision, reasons=reasons,
            next_steps=next_steps, la_contact=la_contact, la_reference=la_reference,
            responded_as=by,
        )  # fmt: skip
