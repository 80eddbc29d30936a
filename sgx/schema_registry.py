"""The schema registry: where a reader of an older release finds a newer writer schema.

A record written by a newer release carries a fingerprint the older reader has never seen.
Avro can still read it — resolution skips the fields the reader does not know, and full-
transitive compatibility (:mod:`sgx.compatibility`) guarantees it resolves — but only with
the writer schema in hand. So the gateway, which writes deliveries, receipts and share
decisions for parties that upgrade on their own timetable, publishes each schema it writes
to the compacted topic ``sgx.schemas`` when it starts, as Confluent's Schema Registry
serves schemas by id:

* key: the fingerprint (hex); value: JSON ``{"version": 1, "name", "fingerprint",
  "schema", "signer", "kid", "signature"}`` — ``schema`` is the full writer schema, every
  named type inlined (not just the Parsing Canonical Form, which drops logical types: a
  reader would then get a timestamp as a bare number), ``signature`` (base64) the gateway's
  Ed25519 signature over ``"SGX-SCHEMA1\\0" + fingerprint bytes + schema``.

A reader accepts an entry only if the signature verifies against the trust directory's
gateway key, the fingerprint is the CRC-64-AVRO of the schema's canonical form, and it is a
version of one of its own types that resolves to its current schema
(:meth:`sgx.contract.Contract.learn`). The fingerprint alone is no proof: CRC-64 is not a
cryptographic hash, and only the gateway's principal may write the topic (ACL), so a
forged entry is refused twice over.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from aiokafka import AIOKafkaProducer
from cryptography.exceptions import InvalidSignature
from fastavro import parse_schema
from fastavro.schema import SchemaParseException

from sgx.avro import fingerprint_of, plain_schema
from sgx.contract import Contract
from sgx.errors import ConfigError, ExchangeError, UnknownSchema
from sgx.kafka import kafka_errors, read_topic
from sgx.quarantine import Quarantined, Source, read_sources
from sgx.settings import KafkaSettings
from sgx.trust import Clock, Identity, TrustDirectory, utc_now

log = logging.getLogger(__name__)
T = TypeVar("T")
TOPIC = "sgx.schemas"
DOMAIN = b"SGX-SCHEMA1\x00"
SIGNER = "gateway"


def _signed(digest: bytes, canonical: str) -> bytes:
    return DOMAIN + digest + canonical.encode()


def entry(identity: Identity, contract: Contract, name: str) -> tuple[bytes, bytes]:
    """(key, value) of the registry record for the current schema ``name``."""
    canonical = json.dumps(plain_schema(contract.parsed(name)), sort_keys=True)
    digest = contract.fingerprint(name)
    kid = identity.signing_kid
    value = {
        "version": 1,
        "name": name,
        "fingerprint": digest.hex(),
        "schema": canonical,
        "signer": identity.party_id,
        "kid": kid,
        "signature": base64.b64encode(identity.sign(_signed(digest, canonical), kid=kid)).decode(),
    }
    return digest.hex().encode(), json.dumps(value, sort_keys=True).encode()


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


@dataclass(frozen=True, slots=True)
class Entry:
    name: str
    digest: bytes
    schema: str


def verify(value: bytes, trust: TrustDirectory) -> Entry:
    """The entry in ``value`` if it is the gateway's and self-consistent; ConfigError if not."""
    try:
        data: dict[str, Any] = json.loads(value)
        digest = bytes.fromhex(data["fingerprint"])
        canonical = str(data["schema"])
        signature = base64.b64decode(data["signature"], validate=True)
        signer, kid = str(data["signer"]), str(data["kid"])
    except (ValueError, KeyError, TypeError, binascii.Error) as exc:
        raise ConfigError(f"schema registry entry is malformed: {exc}") from exc
    if signer != SIGNER:
        raise ConfigError(f"schema registry entry signed by {signer}, not the gateway")
    try:
        actual = fingerprint_of(parse_schema(json.loads(canonical), _write_hint=False))
    except (ValueError, KeyError, TypeError, SchemaParseException) as exc:
        raise ConfigError(f"schema registry entry {digest.hex()}: not a schema: {exc}") from exc
    if actual != digest:
        raise ConfigError(f"schema registry entry {digest.hex()}: fingerprint does not match")
    try:
        key = trust.verify_key(signer, kid, utc_now())
        key.verify(signature, _signed(digest, canonical))
    except (InvalidSignature, ExchangeError) as exc:
        raise ConfigError(f"schema registry entry {digest.hex()}: bad signature ({exc})") from exc
    return Entry(str(data.get("name")), digest, canonical)


async def read_learning(
    found: Sequence[Source],
    read: Callable[[Source], Iterable[T]],
    registry: SchemaRegistry | None,
    clock: Clock = utc_now,
) -> tuple[list[T], list[Quarantined], list[Entry]]:
    """:func:`sgx.quarantine.read_sources`, learning what it needs: if ``read`` met writer
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
