"""An agency's producer: validate, encode, seal and publish to its connector's topic.

An agency publishes through its connector (design.md, glossary): a system that publishes
for several agencies on one topic, ``sgx.inbound.<connector>``, or the agency itself on
its own ``sgx.inbound.<agency>`` when no connector carries it. Every envelope is signed
by the agency and sealed for that connector (wire format 2), so the gateway can tell it
arrived where it was meant to. One connector process carries several agencies with one
Publisher each (each with the agency's identity) over one Kafka producer.

A record is validated against its Avro schema and the contract's rules before anything is
sealed; an invalid one is refused with a ContractError naming the field and the problem,
and never reaches the broker. The Kafka key is the child's pseudonym, never an identifier.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaProducer

from sgx.errors import ConfigError, ContractError
from sgx.kafka.wiring import allocations_topic, inbound_topic, kafka_errors, send_batched
from sgx.keys.identity import Identity
from sgx.keys.pseudonym import Pseudonymiser
from sgx.keys.trust import TrustDirectory
from sgx.ops.metrics import ProducerMetrics
from sgx.wire import contract as c
from sgx.wire.contract import Contract
from sgx.wire.envelope import Purpose, Sealer
from sgx.wire.ids import new_id

GATEWAY = "gateway"
_ANSWER_LABELS = {c.CONSENT_ANSWER: "consent_answer", c.INFORMATION_ANSWER: "information_answer"}


@dataclass(frozen=True, slots=True)
class Prepared:
    """A validated notification ready to seal: what an outbox keeps until the broker acks."""

    message_id: uuid.UUID
    name: str  # full schema name
    key: bytes  # Kafka key: the child's pseudonym (or the message id when there is none)
    plaintext: bytes  # single-object Avro encoding, already validated


def connector_for(trust: TrustDirectory, agency: str, connector: str | None = None) -> str:
    """The connector ``agency`` publishes through: ``connector`` if given (it must carry the
    agency), else the one connector the trust directory lists as carrying it, else the
    agency itself. ConfigError, saying what to set, where that cannot be."""
    if connector is not None:
        if not trust.may_carry(connector, agency):
            raise ConfigError(
                f"connector {connector!r} may not carry {agency}: the trust directory does not"
                f" list {agency} among its agencies (it is carried by"
                f" {', '.join(trust.carriers(agency)) or 'no connector: unset SGX_CONNECTOR'})"
            )
        return connector
    carriers = trust.carriers(agency)
    if len(carriers) > 1:
        raise ConfigError(
            f"{agency} is carried by the connectors {', '.join(carriers)}: set SGX_CONNECTOR"
            " to the one this producer publishes through"
        )
    return carriers[0] if carriers else agency


class Publisher:
    """Publishes one agency's sealed records to its connector's inbound topic."""

    def __init__(
        self,
        *,
        identity: Identity,
        trust: TrustDirectory,
        contract: Contract,
        pseudonyms: Pseudonymiser,
        producer: AIOKafkaProducer,
        metrics: ProducerMetrics,
        connector: str | None = None,
    ) -> None:
        """``connector``: the one it publishes through (:func:`connector_for`)."""
        self._contract = contract
        self._pseudonyms = pseudonyms
        self._producer = producer
        self._metrics = metrics
        self.connector = connector_for(trust, identity.party_id, connector)
        self._sealer = Sealer(identity, trust, GATEWAY, connector=self.connector)
        self._topic = inbound_topic(self.connector)
        self._identity_id = identity.party_id
        self.agency = identity.party_id

    async def publish(self, name: str, record: Mapping[str, Any]) -> uuid.UUID:
        """Validate, seal and publish one notification; returns its id once the broker has it."""
        ids = await self.publish_many([(name, record)])
        return ids[0]

    async def publish_many(self, items: Sequence[tuple[str, Mapping[str, Any]]]) -> list[uuid.UUID]:
        """Validate every item first (all or nothing), then publish and await all acks."""
        prepared = [self.prepare(name, record) for name, record in items]
        await self.send(prepared)
        return [p.message_id for p in prepared]

    def prepare(self, name: str, record: Mapping[str, Any]) -> Prepared:
        """Validate and encode one notification, an author's ``ConsentAnswer`` or an
        agency's ``InformationAnswer`` (ContractError names the field); no I/O."""
        if name in (c.CONSENT_ANSWER, c.INFORMATION_ANSWER):
            # An author's answer to a consent request, or an agency's to a MASH's
            # information request: keyed by the request, so every answer to one request is
            # judged in order on one partition.
            plaintext = self._contract.encode(name, record)
            request = uuid.UUID(str(record["request_id"]))
            return Prepared(uuid.UUID(str(record["answer_id"])), name, request.bytes, plaintext)
        if name not in c.NOTIFICATION_TYPES:
            raise ContractError("$", f"{name} is not a notification type", schema=name)
        try:
            plaintext = self._contract.encode(name, record)
        except ContractError:
            self._metrics.notifications.labels(type=c.SHORT_NAMES[name], outcome="invalid").inc()
            raise
        message_id = uuid.UUID(str(record["notification_id"]))
        child = record["child"]
        key = (
            self._pseudonyms.child_key(child.get("nhs_number"), child.get("upn"))
            or message_id.bytes
        )
        return Prepared(message_id, name, key, plaintext)

    async def send(self, items: Sequence[Prepared]) -> None:
        """Seal prepared notifications, publish them and wait until the broker acked all."""
        seal = self._sealer.seal
        sealed = [
            (item.key, seal(Purpose.NOTIFICATION, item.message_id, item.plaintext))
            for item in items
        ]
        async with kafka_errors(f"publish to {self._topic}"):
            await asyncio.gather(*await send_batched(self._producer, self._topic, sealed))
        for item in items:
            label = c.SHORT_NAMES.get(item.name) or _ANSWER_LABELS[item.name]
            self._metrics.notifications.labels(type=label, outcome="published").inc()

    async def publish_allocations(self, update: Mapping[str, Any]) -> uuid.UUID:
        """(Local authorities) publish an allocation update to the LA's allocation topic,
        ``sgx.allocations.<la>``, which every gateway instance reads (one envelope per
        Kafka record, so each update is acknowledged on its own)."""
        return await self._publish_other(
            Purpose.ALLOCATIONS,
            c.ALLOCATION_UPDATE,
            update,
            topic=allocations_topic(self._identity_id),
        )

    async def publish_request(self, record: Mapping[str, Any]) -> uuid.UUID:
        """(Local authorities) publish a 2013 / 2024 Protocol disclosure request.

        Checked like a notification (ContractError names the field) and sealed with
        purpose NOTIFICATION (the gateway routes on the record's schema name) to the
        police force's single point of contact; the message id is the request id and the
        Kafka key the child's pseudonym. Returns the request id once the broker has it.
        """
        plaintext = self._contract.encode(c.DISCLOSURE_REQUEST, record)  # checks the rules
        message_id = uuid.UUID(str(record["request_id"]))
        child = record["child"]
        key = (
            self._pseudonyms.child_key(child.get("nhs_number"), child.get("upn"))
            or message_id.bytes
        )
        value = self._sealer.seal(Purpose.NOTIFICATION, message_id, plaintext)
        async with kafka_errors(f"publish to {self._topic}"):
            await (await self._producer.send(self._topic, value, key=key))
        return message_id

    async def _publish_other(
        self, purpose: Purpose, name: str, record: Mapping[str, Any], *, topic: str | None = None
    ) -> uuid.UUID:
        message_id = new_id()
        value = self._sealer.seal(purpose, message_id, self._contract.encode(name, record))
        topic = topic or self._topic
        async with kafka_errors(f"publish to {topic}"):
            await (await self._producer.send(topic, value, key=message_id.bytes))
        return message_id
