"""Network checks from the LA's side: ask partner agencies, hear the gateway and the answers.

The MASH seals each ``InformationRequest`` (one per agency asked; the message id is the
request id) for the gateway and publishes it on the LA's inbound topic with purpose
SHARE_REQUEST, like a share. The gateway answers on the LA's delivery topic, where the
LA's consumer keeps what it hears (:mod:`consumers.information_rows`): first an
``InformationStatus`` (ASKED with the deadline it set and the identifiers it sent, or
REFUSED and why), then, once the agency answers, the agency's ``InformationAnswer`` as an
item of the MASH queue (only ever to the LA that asked). :meth:`NetworkCheckClient.ask`
waits for the status row; nothing here reads a topic.

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

from consumers.information_rows import InformationRows, InformationStatusRow
from sgx.domain.family import FamilyException
from sgx.errors import ContractError
from sgx.kafka.wiring import inbound_topic, kafka_errors
from sgx.keys.identity import Identity
from sgx.keys.trust import TrustDirectory
from sgx.wire import contract as c
from sgx.wire.contract import Contract
from sgx.wire.envelope import Purpose, Sealer

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
        rows: InformationRows,
    ) -> None:
        self._identity = identity
        self._contract = contract
        self._producer = producer
        self._rows = rows
        self._sealer = Sealer(identity, trust, "gateway")

    async def send(self, request: dict[str, Any]) -> None:
        """Publish ``request`` (sealed for the gateway, on the LA's inbound topic)."""
        plaintext = self._contract.encode(c.INFORMATION_REQUEST, request)
        request_id = request["request_id"]
        value = self._sealer.seal(Purpose.SHARE_REQUEST, request_id, plaintext)
        async with kafka_errors("publish an information request"):
            topic = inbound_topic(self._identity.party_id)
            await (await self._producer.send(topic, value, key=request_id.bytes))

    async def ask(
        self, request: dict[str, Any], *, timeout: float = WAIT_S
    ) -> InformationStatusRow:
        """Publish ``request`` and wait for the LA's consumer to keep the gateway's
        InformationStatus on it (TimeoutError: not yet; it lands when it comes)."""
        await self.send(request)
        return await self.status(request["request_id"], timeout=timeout)

    async def status(self, request_id: uuid.UUID, *, timeout: float) -> InformationStatusRow:
        """The gateway's word on ``request_id`` once the consumer has kept it."""
        deadline = time.monotonic() + timeout
        while True:
            found = (await self._rows.status_of([str(request_id)])).get(str(request_id))
            if found is not None:
                return found
            if time.monotonic() >= deadline:
                raise TimeoutError(f"no word from the gateway on request {request_id} yet")
            await asyncio.sleep(0.1)
