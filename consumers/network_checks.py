"""Network checks from the LA's side: ask partner agencies, hear the gateway and the answers.

The MASH seals each ``InformationRequest`` (one per agency asked; the message id is the
request id) for the gateway and publishes it on the LA's inbound topic with purpose
SHARE_REQUEST, like a share. The gateway answers on the LA's receipts topic, sealed for
the LA with purpose SHARE_DECISION: first an ``InformationStatus`` (ASKED with the deadline
it set and the identifiers it sent, or REFUSED and why), then, once the agency answers,
the agency's ``InformationAnswer`` (only ever to the LA that asked).

Asking requires the family-informed decision: :func:`request_record` refuses to build a
request without one (told, or the exception that applied), and the contract checks it
again before anything is sealed.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Mapping
from datetime import UTC, date, datetime
from typing import Any

from aiokafka import AIOKafkaProducer

from sgx.domain.family import FamilyException
from sgx.errors import ContractError, EnvelopeError
from sgx.kafka.wiring import inbound_topic, kafka_errors, read_topic, receipts_topic
from sgx.keys.identity import Identity
from sgx.keys.trust import TrustDirectory
from sgx.settings import KafkaSettings
from sgx.wire import contract as c
from sgx.wire.contract import Contract
from sgx.wire.envelope import Opener, Purpose, Sealer

WAIT_S = 30.0


def request_record(
    *,
    request_id: uuid.UUID,
    la: str,
    agency: str,
    rating: str,
    child: Mapping[str, str | date | None],
    asked: str,
    requested_by: str,
    told: bool,
    exception: str | None,
    decided_by: str,
) -> dict[str, Any]:
    """An InformationRequest as the LA sends it (the gateway sets the deadline)."""
    if not told and exception not in {e.value for e in FamilyException}:
        raise ContractError(
            "family_informed.exception",
            "the family-informed decision comes before the request: say the family was told, "
            f"or which exception applied ({', '.join(e.value for e in FamilyException)})",
            schema=c.INFORMATION_REQUEST,
        )
    return {
        "request_id": request_id,
        "local_authority": la,
        "agency": agency,
        "rating": rating.upper(),
        "deadline": None,
        "child": dict(child),
        "asked": asked,
        "requested_by": requested_by,
        "requested_at": datetime.now(UTC),
        "family_informed": {
            "told": told,
            "exception": None if told else exception,
            "decided_by": decided_by,
        },
    }


class NetworkCheckClient:
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

    async def ask(self, request: dict[str, Any], *, timeout: float = WAIT_S) -> dict[str, Any]:
        """Publish ``request`` and wait for the gateway's InformationStatus on it."""
        plaintext = self._contract.encode(c.INFORMATION_REQUEST, request)
        request_id = request["request_id"]
        value = self._sealer.seal(Purpose.SHARE_REQUEST, request_id, plaintext)
        async with kafka_errors("publish an information request"):
            topic = inbound_topic(self._identity.party_id)
            await (await self._producer.send(topic, value, key=request_id.bytes))
        deadline = time.monotonic() + timeout
        while True:
            found = (await self.read(c.INFORMATION_STATUS)).get(request_id)
            if found:
                return found[-1]
            if time.monotonic() >= deadline:
                raise TimeoutError(f"no word from the gateway on request {request_id} yet")
            await asyncio.sleep(0.1)

    async def read(self, schema: str) -> dict[uuid.UUID, list[dict[str, Any]]]:
        """Every ``schema`` record the gateway sent the LA (statuses or answers), by request,
        oldest first (one read of the receipts topic to its end)."""
        found: dict[uuid.UUID, list[dict[str, Any]]] = {}
        for record in await read_topic(self._settings, receipts_topic(self._identity.party_id)):
            said = self._said(bytes(record.value or b""), schema)
            if said is not None:
                found.setdefault(said["request_id"], []).append(said)
        for said_of in found.values():
            said_of.sort(key=_when)
        return found

    def _said(self, value: bytes, schema: str) -> dict[str, Any] | None:
        try:
            opened = self._opener.open(value)
        except EnvelopeError:
            return None  # not ours to judge here: the receipts listener keeps what it cannot open
        if opened.purpose is not Purpose.SHARE_DECISION or opened.sender.kind != "gateway":
            return None
        name, record = self._contract.decode(opened.plaintext)
        return record if name == schema else None


def _when(said: dict[str, Any]) -> datetime:
    """When the gateway decided (a status) or the agency answered (an answer)."""
    when = said.get("decided_at") or said["answered_at"]
    assert isinstance(when, datetime)
    return when
