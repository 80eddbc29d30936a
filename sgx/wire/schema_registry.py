"""The schema registry: where a reader of an older release finds a newer writer schema.

A record written by a newer release carries a fingerprint the older reader has never seen.
Avro can still read it — resolution skips the fields the reader does not know, and full-
transitive compatibility (:mod:`sgx.wire.compatibility`) guarantees it resolves — but only with
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
(:meth:`sgx.wire.contract.Contract.learn`). The fingerprint alone is no proof: CRC-64 is not a
cryptographic hash, and only the gateway's principal may write the topic (ACL), so a
forged entry is refused twice over.

This module makes and checks entries; :mod:`sgx.kafka.schema_topic` publishes them and
learns from the topic.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from fastavro import parse_schema
from fastavro.schema import SchemaParseException

from sgx.errors import ConfigError, ExchangeError
from sgx.keys.identity import Identity
from sgx.keys.trust import TrustDirectory, utc_now
from sgx.wire.avro import fingerprint_of, plain_schema
from sgx.wire.contract import Contract

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
