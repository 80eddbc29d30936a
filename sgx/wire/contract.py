"""The exchange's data contract: schema names, and records in and out of their wire form.

:class:`Contract` loads every Avro schema in ``schemas/`` and the earlier versions in
``schemas/history/`` (so that any writer fingerprint resolves, an earlier one to the current
schema), checks records against their schema and the notification rules
(:mod:`sgx.wire.validation`), and single-object encodes and decodes them (:mod:`sgx.wire.avro`).
Every failure is a :class:`sgx.errors.ContractError` naming the field.

Decoded records are plain dicts as fastavro reads them: ``uuid`` fields are
:class:`uuid.UUID`, ``timestamp-millis`` fields timezone-aware :class:`datetime.datetime`
in UTC (millisecond precision), ``date`` fields :class:`datetime.date`, enums their symbol
as ``str``, ``fixed`` and ``bytes`` fields ``bytes``. Encoding accepts those types, or
a UUID string, epoch milliseconds and days since the epoch.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from fastavro import parse_schema
from fastavro.schema import SchemaParseException

from sgx.errors import ConfigError, ContractError, UnknownSchema
from sgx.settings import REPO_ROOT
from sgx.wire import avro
from sgx.wire.avro import SchemaSet
from sgx.wire.validation import (
    ATTENDANCE_UPDATE,
    CONSENT_ANSWER,
    CONSENT_REQUEST,
    HEALTH_UPDATE,
    INFORMATION_ANSWER,
    INFORMATION_REQUEST,
    POLICE_NOTIFICATION,
    REFERRAL,
    REFERRAL_RESPONSE,
    RULES,
    compile_structure,
)

__all__ = [
    "ALLOCATION_UPDATE",
    "ATTENDANCE_UPDATE",
    "CONSENT_ANSWER",
    "CONSENT_OUTCOME",
    "CONSENT_REQUEST",
    "DELIVERY",
    "DISCLOSURE_REQUEST",
    "ENVELOPE",
    "ENVELOPE_HEADER",
    "FULL_NAMES",
    "HEALTH_UPDATE",
    "INFORMATION_ANSWER",
    "INFORMATION_REQUEST",
    "INFORMATION_STATUS",
    "NOTIFICATION_TYPES",
    "OPEN_CASE_LIST",
    "POLICE_NOTIFICATION",
    "RECEIPT_BATCH",
    "REFERRAL",
    "REFERRAL_RESPONSE",
    "SHARE_DECISION",
    "SHARE_REQUEST",
    "SHORT_NAMES",
    "SIGNED_REFERRAL_RESPONSE",
    "Contract",
    "default_contract",
]

_NS = "org.safeguarding.exchange."
DELIVERY = _NS + "Delivery"
RECEIPT_BATCH = _NS + "ReceiptBatch"
ALLOCATION_UPDATE = _NS + "AllocationUpdate"
OPEN_CASE_LIST = _NS + "OpenCaseList"
SHARE_REQUEST = _NS + "ShareRequest"
SHARE_DECISION = _NS + "ShareDecision"
DISCLOSURE_REQUEST = _NS + "DisclosureRequest"
CONSENT_OUTCOME = _NS + "ConsentOutcome"  # the gateway's word to the asking LA
SIGNED_REFERRAL_RESPONSE = _NS + "SignedReferralResponse"  # an LA's answer to a referrer
INFORMATION_STATUS = _NS + "InformationStatus"  # ... on an information request
ENVELOPE = _NS + "wire.Envelope"
ENVELOPE_HEADER = _NS + "wire.EnvelopeHeader"

NOTIFICATION_TYPES = frozenset({ATTENDANCE_UPDATE, HEALTH_UPDATE, POLICE_NOTIFICATION, REFERRAL})
SHORT_NAMES: dict[str, str] = {
    ATTENDANCE_UPDATE: "attendance_update",
    HEALTH_UPDATE: "health_update",
    POLICE_NOTIFICATION: "police_notification",
    REFERRAL: "referral",
}
FULL_NAMES: dict[str, str] = {short: full for full, short in SHORT_NAMES.items()}

DEFAULT_SCHEMA_DIR = REPO_ROOT / "schemas"


def _record_schema(schema: Any, named: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The record schema ``schema`` is or names, else None."""
    if isinstance(schema, str):
        schema = named.get(schema)
    if isinstance(schema, Mapping) and schema.get("type") in ("record", "error"):
        return schema
    return None


def _walk_fields(
    record: Mapping[str, Any], named: Mapping[str, Any], prefix: str, seen: frozenset[str]
) -> Iterator[tuple[str, bool]]:
    """(dotted path, nullable) for every field, recursing into records and ["null", record]."""
    for field in record["fields"]:
        path = prefix + field["name"]
        kind = field["type"]
        branches = kind if isinstance(kind, list) else [kind]
        yield path, any(branch == "null" for branch in branches)
        for branch in branches:
            sub = _record_schema(branch, named)
            if sub is not None and sub["name"] not in seen:
                yield from _walk_fields(sub, named, path + ".", seen | {sub["name"]})


class Contract:
    """The loaded schemas with their structure checkers and field paths."""

    def __init__(self, schemas: SchemaSet, names: list[str]) -> None:
        self._schemas = schemas
        self._names = tuple(names)
        self._known = frozenset(names)
        self._structure: dict[str, Callable[[Any], None]] = {}
        self._fields: dict[str, dict[str, bool]] = {}
        for name in names:
            parsed = schemas.parsed(name)
            if _record_schema(parsed, {}) is None:
                continue
            named = parsed.get("__named_schemas", {})
            self._structure[name] = compile_structure(parsed, name)
            self._fields[name] = dict(_walk_fields(parsed, named, "", frozenset({name})))

    @classmethod
    def load(cls, schema_dir: Path | None = None) -> Contract:
        """Load every ``<full name>.avsc`` in ``schema_dir`` (default: the repository's)."""
        schemas = SchemaSet(schema_dir or DEFAULT_SCHEMA_DIR)
        return cls(schemas, schemas.load_all())

    @property
    def names(self) -> tuple[str, ...]:
        """Full names of every loaded schema."""
        return self._names

    def _checker(self, name: str) -> Callable[[Any], None]:
        checker = self._structure.get(name)
        if checker is None:
            raise ContractError("$", f"{name} is not a known record schema", schema=name)
        return checker

    def _require(self, name: str) -> None:
        if name not in self._known:
            raise ContractError("$", f"{name} is not a known schema", schema=name)

    def parsed(self, name: str) -> Any:
        """The fastavro-parsed schema ``name``."""
        self._require(name)
        return self._schemas.parsed(name)

    def fingerprint(self, name: str) -> bytes:
        """The 8-byte CRC-64-AVRO fingerprint of ``name``'s Parsing Canonical Form."""
        self._require(name)
        return self._schemas.fingerprint(name)

    def name_of(self, fingerprint: bytes) -> str | None:
        """The schema with this writer fingerprint (its current or an earlier version)."""
        return self._schemas.name_of(fingerprint)

    def knows(self, fingerprint: bytes) -> bool:
        """Whether a message with this writer fingerprint can be decoded here."""
        return self._schemas.name_of(fingerprint) is not None

    def learn(self, schema_json: str) -> str:
        """Learn a newer writer schema (its JSON, e.g. the Parsing Canonical Form from the
        schema registry) of a current type; its records then resolve to the current schema
        as Avro says (fields this release does not know are skipped). Returns the type's
        name; ConfigError if it is not a version of a current type or does not resolve."""
        try:
            writer = parse_schema(json.loads(schema_json), _write_hint=False)
        except (ValueError, KeyError, TypeError, SchemaParseException) as exc:
            raise ConfigError(f"cannot parse a learned schema: {exc}") from exc
        name, _ = self._schemas.add_writer(writer)
        return name

    def check(self, name: str, record: Mapping[str, Any]) -> None:
        """Check ``record`` against schema ``name`` and the contract rules for it, if any
        (notifications and disclosure requests: :data:`sgx.wire.validation.RULES`)."""
        self._checker(name)(record)
        rules = RULES.get(name)
        if rules is not None:
            rules(record)

    def encode(self, name: str, record: Mapping[str, Any], *, check: bool = True) -> bytes:
        """Single-object encode ``record`` as ``name``, checking it first unless told not to."""
        if check:
            self.check(name, record)
        else:
            self._checker(name)  # an unknown name is still a ContractError
        return avro.encode(self._schemas, name, record)

    def decode(self, data: bytes, *, check: bool = True) -> tuple[str, dict[str, Any]]:
        """Decode a single-object message of any loaded record schema: (full name, record)."""
        name, record = avro.decode(self._schemas, data)
        return name, self._decoded(name, record, check)

    def decode_as(self, name: str, data: bytes, *, check: bool = True) -> dict[str, Any]:
        """Decode a single-object message that must have been written with schema ``name``
        (or an earlier version of it, resolved to the current one)."""
        self._require(name)
        digest, body = avro.split(data)
        written_as = self._schemas.name_of(digest)
        if written_as is None:  # a newer release's, perhaps: the registry may know it
            problem = f"expected {name}, got unknown schema (fingerprint {digest.hex()})"
            raise UnknownSchema(digest, schema=name, problem=problem)
        if written_as != name:
            raise ContractError("$", f"expected {name}, got {written_as}", schema=name)
        return self._decoded(name, avro.decode_body(self._schemas, name, body, digest), check)

    def _decoded(self, name: str, record: Any, check: bool) -> dict[str, Any]:
        if not isinstance(record, dict):
            raise ContractError("$", f"{name} is not a record schema", schema=name)
        rules = RULES.get(name) if check else None
        if rules is not None:
            rules(record)
        return record

    def field_paths(self, name: str) -> list[str]:
        """Every dotted field path of record schema ``name``, in schema order.

        Nested records are recursed, also through ``["null", record]`` unions; an array or
        map is a single path (its items are not listed).
        """
        self._checker(name)
        return list(self._fields[name])

    def is_nullable(self, name: str, path: str) -> bool:
        """True if the field at ``path`` may be null; ContractError if there is no such field."""
        self._checker(name)
        nullable = self._fields[name].get(path)
        if nullable is None:
            raise ContractError(path, f"is not a field of {name}", schema=name)
        return nullable


@functools.cache
def default_contract() -> Contract:
    """The contract of the repository's ``schemas/`` directory, loaded once."""
    return Contract.load()
