"""The schema registry's topic, ``sgx.schemas``: the gateway publishes the entries
:mod:`sgx.wire.schema_registry` makes, and a reader that meets a writer schema it has not
seen learns it from there (:func:`read_learning`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from typing import TypeVar

from aiokafka import AIOKafkaProducer

from sgx.errors import ConfigError, UnknownSchema
from sgx.kafka.quarantine import Quarantined, Source, read_sources
from sgx.kafka.wiring import kafka_errors, read_topic
from sgx.keys.identity import Identity
from sgx.keys.trust import Clock, TrustDirectory, utc_now
from sgx.settings import KafkaSettings
from sgx.wire.contract import Contract
from sgx.wire.schema_registry import TOPIC, Entry, entry, verify

log = logging.getLogger(__name__)
T = TypeVar("T")


async def publish(
    producer: AIOKafkaProducer, identity: Identity, contract: Contract, names: Iterable[str]
) -> int:
    """Publish the current schemas ``names`` (idempotent: the topic is compacted by key)."""
    sent = 0
    async with kafka_errors("publish schemas to the registry"):
        for name in names:
            key, value = entry(identity, contract, name)
            await producer.send(TOPIC, value, key=key)
            sent += 1
        await producer.flush()
    return sent


async def read_learning(
    found: Sequence[Source],
    read: Callable[[Source], Iterable[T]],
    registry: SchemaRegistry | None,
    clock: Clock = utc_now,
) -> tuple[list[T], list[Quarantined], list[Entry]]:
    """:func:`sgx.kafka.quarantine.read_sources`, learning what it needs: if ``read`` met writer
    schemas this release has not seen (``UnknownSchema``) and the registry holds them, they
    are learned and the envelopes read again. Also returns the entries learned (a consumer
    keeps them for its other readers)."""
    unknown: set[bytes] = set()

    def watched(source: Source) -> Iterable[T]:
        try:
            return read(source)
        except UnknownSchema as exc:
            unknown.add(exc.digest)
            raise

    made, kept = read_sources(found, watched, clock)
    learned = await registry.learn(unknown) if unknown and registry is not None else []
    if learned:
        made, kept = read_sources(found, read, clock)
    return made, kept, learned


class SchemaRegistry:
    """Finds and learns writer schemas a reader has not seen, from ``sgx.schemas``."""

    def __init__(self, settings: KafkaSettings, trust: TrustDirectory, contract: Contract) -> None:
        self._settings = settings
        self._trust = trust
        self._contract = contract

    async def learn(self, digests: Iterable[bytes]) -> list[Entry]:
        """Learn each of ``digests`` the registry holds (verified); the entries learned."""
        wanted = {d for d in digests if not self._contract.knows(d)}
        if not wanted:
            return []
        learned = []
        for record in await read_topic(self._settings, TOPIC):
            if record.key is None or bytes(record.key).decode(errors="replace") not in {
                d.hex() for d in wanted
            }:
                continue
            try:
                found = verify(bytes(record.value or b""), self._trust)
                self._contract.learn(found.schema)
            except ConfigError as exc:
                log.warning("schema registry: refused an entry: %s", exc)
                continue
            if found.digest in wanted:
                wanted.discard(found.digest)
                learned.append(found)
                log.info(
                    "learned writer schema %s of %s from the registry",
                    found.digest.hex(),
                    found.name,
                )
        return learned
