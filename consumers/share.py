"""Onward shares: a queue holder asks the gateway, and waits for its decision.

The request is sealed by the local authority for the gateway and published on the LA's
inbound topic; the gateway answers on the LA's receipts topic with a ShareDecision that
names any restriction the share would break. The LA's consumer keeps that answer as a
row (:mod:`consumers.answer_rows`); a wait for it polls the rows, and nothing here reads
the topic. Only the gateway decides: it holds the authoritative record of each
notification's restrictions and the author's consents.

A share refused for want of the author's consent can be asked of the author
(:meth:`ShareClient.ask_consent`): the gateway forwards the request to the author's agency
and answers with ConsentOutcome records on the same topic, first ASKED, then the author's
GRANTED or REFUSED. A later share to that category for that purpose is then allowed.
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaProducer

from consumers.answer_rows import KINDS, AnswerRows
from consumers.reader import QueueView
from sgx.kafka.wiring import inbound_topic, kafka_errors
from sgx.keys.identity import Identity
from sgx.keys.trust import TrustDirectory
from sgx.wire import contract as c
from sgx.wire.contract import Contract
from sgx.wire.envelope import Purpose, Sealer
from sgx.wire.ids import new_id

CATEGORIES = ("LA_SOCIAL_CARE", "PARENT_OR_CARER", "OTHER_PROFESSIONAL", "CARE_PROCEEDINGS")


class ShareClient:
    def __init__(
        self,
        *,
        identity: Identity,
        trust: TrustDirectory,
        contract: Contract,
        producer: AIOKafkaProducer,
        rows: AnswerRows,
    ) -> None:
        """``rows``: the gateway's answers the LA's consumer keeps (in the LA's queue
        database), read by key instead of the LA's receipts topic."""
        self._identity = identity
        self._contract = contract
        self._producer = producer
        self._rows = rows
        self._sealer = Sealer(identity, trust, "gateway")

    async def request(
        self,
        view: QueueView,
        *,
        to_id: str,
        category: str,
        to_name: str,
        purpose: str,
        requested_by: str,
        timeout: float = 30.0,
        request_id: uuid.UUID | None = None,
    ) -> dict[str, Any]:
        """Ask for an onward share of ``view``; returns the gateway's ShareDecision."""
        request_id = request_id or new_id()
        request = {
            "request_id": request_id,
            "notification_id": uuid.UUID(view.item.notification_id),
            "requested_by": requested_by,
            "to": {"id": to_id, "category": category, "name": to_name},
            "purpose": purpose,
            "requested_at": datetime.now(UTC),
            "notification": view.delivery["notification"],
        }
        return await self._ask(c.SHARE_REQUEST, request, c.SHARE_DECISION, timeout)

    async def ask_consent(
        self,
        view: QueueView,
        *,
        category: str,
        purpose: str,
        requested_by: str,
        timeout: float = 30.0,
        request_id: uuid.UUID | None = None,
    ) -> dict[str, Any]:
        """Ask the author of ``view`` (through the gateway) for consent to share it with
        ``category`` for ``purpose``; returns the gateway's first ConsentOutcome (ASKED,
        NOT_NEEDED or UNKNOWN_NOTIFICATION). The author's answer comes later
        (:meth:`consent_outcomes`). Nothing of the record goes with the request."""
        request_id = request_id or new_id()
        request = {
            "request_id": request_id,
            "notification_id": uuid.UUID(view.item.notification_id),
            "local_authority": self._identity.party_id,
            "requested_by": requested_by,
            "category": category,
            "purpose": purpose,
            "requested_at": datetime.now(UTC),
            "blocking": [],
        }
        return await self._ask(c.CONSENT_REQUEST, request, c.CONSENT_OUTCOME, timeout)

    async def _ask(
        self, schema: str, request: dict[str, Any], answer: str, timeout: float
    ) -> dict[str, Any]:
        """Seal ``request`` for the gateway, publish it on the LA's inbound topic, and wait
        for the gateway's first ``answer`` to it."""
        plaintext = self._contract.encode(schema, request)
        value = self._sealer.seal(Purpose.SHARE_REQUEST, request["request_id"], plaintext)
        async with kafka_errors(f"publish a {schema.rsplit('.', 1)[-1]}"):
            await (await self._producer.send(inbound_topic(self._identity.party_id), value))
        return await self._wait(answer, request["request_id"], time.monotonic() + timeout)

    async def answers(self, request_ids: set[uuid.UUID]) -> dict[uuid.UUID, dict[str, Any]]:
        """The gateway's decisions on these share requests that the LA's consumer has kept
        (a request not yet answered is not in the result)."""
        return await self._rows.latest(self._contract, "share", sorted(request_ids))

    async def consent_answers(self, request_ids: set[uuid.UUID]) -> dict[uuid.UUID, dict[str, Any]]:
        """The latest ConsentOutcome kept on each of these consent requests (the author's
        answer once there, else the gateway's first word)."""
        return await self._rows.latest(self._contract, "consent", sorted(request_ids))

    async def consent_outcomes(
        self, request_ids: set[uuid.UUID] | None = None
    ) -> dict[uuid.UUID, list[dict[str, Any]]]:
        """The consent outcomes kept on these requests (None: on every request the LA
        made, for a listing of them all), by request, oldest first (the gateway's ASKED,
        then the author's answer)."""
        chosen = None if request_ids is None else sorted(request_ids)
        return await self._rows.said(self._contract, "consent", chosen)

    async def _wait(self, schema: str, request_id: uuid.UUID, deadline: float) -> dict[str, Any]:
        """Poll the rows the LA's consumer keeps until the answer is there; TimeoutError
        after ``deadline``."""
        left = max(0.0, deadline - time.monotonic())
        return await self._rows.wait(self._contract, KINDS[schema], request_id, left)
