"""Onward shares: a queue holder asks the gateway, and waits for its decision.

The request is sealed by the local authority for the gateway and published on the LA's
inbound topic; the gateway answers on the LA's receipts topic with a ShareDecision that
names any restriction the share would break. Only the gateway decides: it holds the
authoritative record of each notification's restrictions and the author's consents.

A share refused for want of the author's consent can be asked of the author
(:meth:`ShareClient.ask_consent`): the gateway forwards the request to the author's agency
and answers with ConsentOutcome records on the same topic, first ASKED, then the author's
GRANTED or REFUSED. A later share to that category for that purpose is then allowed.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaProducer

from consumers.reader import QueueView
from sgx.errors import EnvelopeError
from sgx.kafka.wiring import inbound_topic, kafka_errors, read_topic, receipts_topic
from sgx.keys.identity import Identity
from sgx.keys.trust import TrustDirectory
from sgx.settings import KafkaSettings
from sgx.wire import contract as c
from sgx.wire.contract import Contract
from sgx.wire.envelope import Opener, Purpose, Sealer
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
        settings: KafkaSettings,
    ) -> None:
        self._identity = identity
        self._contract = contract
        self._producer = producer
        self._settings = settings
        self._sealer = Sealer(identity, trust, "gateway")
        self._opener = Opener(identity, trust)

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
        """The gateway's decisions on these share requests that are on the receipts topic
        now (one read to its end; a request not yet answered is not in the result)."""
        return await self._latest(c.SHARE_DECISION, request_ids)

    async def consent_answers(self, request_ids: set[uuid.UUID]) -> dict[uuid.UUID, dict[str, Any]]:
        """The latest ConsentOutcome on each of these consent requests on the receipts
        topic now (the author's answer once there, else the gateway's first word)."""
        return await self._latest(c.CONSENT_OUTCOME, request_ids)

    async def consent_outcomes(self) -> dict[uuid.UUID, list[dict[str, Any]]]:
        """Every consent outcome on the receipts topic now, by request, oldest first (the
        gateway's ASKED, then the author's answer)."""
        return await self._read(c.CONSENT_OUTCOME)

    async def _latest(
        self, schema: str, request_ids: set[uuid.UUID]
    ) -> dict[uuid.UUID, dict[str, Any]]:
        found = await self._read(schema)
        return {rid: said[-1] for rid, said in found.items() if rid in request_ids}

    async def _read(self, schema: str) -> dict[uuid.UUID, list[dict[str, Any]]]:
        found: dict[uuid.UUID, list[dict[str, Any]]] = {}
        for record in await read_topic(self._settings, receipts_topic(self._identity.party_id)):
            answer = self._answer(bytes(record.value or b""), schema, None)
            if answer is not None:
                found.setdefault(answer["request_id"], []).append(answer)
        for said in found.values():
            said.sort(key=_in_order)
        return found

    async def _wait(self, schema: str, request_id: uuid.UUID, deadline: float) -> dict[str, Any]:
        """Read the receipts topic until the answer is there; TimeoutError after
        ``deadline`` (checked between reads: a read is never cut off half-way, which
        would leave its broker connection open)."""
        topic = receipts_topic(self._identity.party_id)
        seen: set[tuple[int, int]] = set()  # records already opened: never decrypt twice
        while True:
            for record in await read_topic(self._settings, topic):
                if (record.partition, record.offset) in seen:
                    continue
                seen.add((record.partition, record.offset))
                answer = self._answer(bytes(record.value or b""), schema, request_id)
                if answer is not None:
                    return answer
            if time.monotonic() >= deadline:
                raise TimeoutError(f"no answer to request {request_id} yet")
            await asyncio.sleep(0.1)

    def _answer(
        self, value: bytes, schema: str, request_id: uuid.UUID | None
    ) -> dict[str, Any] | None:
        """The gateway's answer of type ``schema`` in ``value`` (for ``request_id``, if
        given), else None."""
        try:
            opened = self._opener.open(value)
        except EnvelopeError:
            return None  # not for us to judge here; the gateway's own records are authoritative
        if opened.purpose is not Purpose.SHARE_DECISION or opened.sender.kind != "gateway":
            return None
        name, record = self._contract.decode(opened.plaintext)
        if name != schema:
            return None
        return record if request_id is None or record["request_id"] == request_id else None


def _in_order(answer: dict[str, Any]) -> tuple[bool, datetime]:
    """The order the gateway's answers to one request were given in: a consent request's
    ASKED before the author's answer, else by when decided. The topic cannot say: each
    answer is keyed by its own message id, so two answers may sit on different partitions."""
    return answer.get("state") != "ASKED", answer["decided_at"]
