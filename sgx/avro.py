"""Avro single-object encoding (Avro 1.11 spec) on top of fastavro.

A single-object encoded message is ``C3 01`` + the 8-byte little-endian CRC-64-AVRO
fingerprint of the writer schema's Parsing Canonical Form + the Avro binary body, so any
reader holding the schema can resolve it. fastavro provides the fingerprint and the
binary codec; only the 10-byte framing is ours.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fastavro import schemaless_reader, schemaless_writer
from fastavro.schema import fingerprint, load_schema, to_parsing_canonical_form

from sgx.errors import ConfigError, ContractError

MAGIC = b"\xc3\x01"
HEADER_LEN = 10


class SchemaSet:
    """Avro schemas loaded from ``<full name>.avsc`` files, indexed by name and fingerprint."""

    def __init__(self, schema_dir: Path) -> None:
        self._dir = schema_dir
        self._parsed: dict[str, Any] = {}
        self._fingerprints: dict[str, bytes] = {}
        self._by_fingerprint: dict[bytes, str] = {}

    def load_all(self) -> list[str]:
        """Load every schema in the directory so that any fingerprint resolves."""
        names = sorted(path.name.removesuffix(".avsc") for path in self._dir.glob("*.avsc"))
        if not names:
            raise ConfigError(f"no Avro schemas (*.avsc) in {self._dir}")
        for name in names:
            self.parsed(name)
        return names

    def parsed(self, name: str) -> Any:
        """The fastavro-parsed schema ``name``, loading it on first use."""
        parsed = self._parsed.get(name)
        if parsed is None:
            parsed = self._load(name)
        return parsed

    def _load(self, name: str) -> Any:
        path = self._dir / f"{name}.avsc"
        try:
            parsed = load_schema(str(path))
        except (OSError, ValueError, KeyError) as exc:
            raise ConfigError(f"cannot load Avro schema {name} from {path}: {exc}") from exc
        canonical = to_parsing_canonical_form(parsed)
        digest = bytes.fromhex(fingerprint(canonical, "CRC-64-AVRO"))
        self._parsed[name] = parsed
        self._fingerprints[name] = digest
        self._by_fingerprint[digest] = name
        return parsed

    def fingerprint(self, name: str) -> bytes:
        self.parsed(name)
        return self._fingerprints[name]

    def name_of(self, digest: bytes) -> str | None:
        return self._by_fingerprint.get(digest)


def encode(schemas: SchemaSet, name: str, record: Mapping[str, Any]) -> bytes:
    """Single-object encode ``record`` as ``name`` (no validation beyond fastavro's writer)."""
    buf = io.BytesIO()
    buf.write(MAGIC)
    buf.write(schemas.fingerprint(name))
    try:
        schemaless_writer(buf, schemas.parsed(name), record)
    except (TypeError, ValueError, KeyError, AttributeError) as exc:
        raise ContractError("$", f"cannot encode as {name}: {exc}", schema=name) from exc
    return buf.getvalue()


def split(data: bytes) -> tuple[bytes, memoryview]:
    """Split a single-object message into (fingerprint, body); ContractError if not one."""
    if len(data) < HEADER_LEN or data[:2] != MAGIC:
        raise ContractError("$", "not an Avro single-object encoding (bad magic or too short)")
    return bytes(data[2:HEADER_LEN]), memoryview(data)[HEADER_LEN:]


def decode_body(schemas: SchemaSet, name: str, body: bytes | memoryview) -> Any:
    """Decode an Avro binary body written with schema ``name``; ContractError if it is not."""
    stream = io.BytesIO(body)
    try:
        record = schemaless_reader(stream, schemas.parsed(name), None)
    except (
        EOFError,
        ValueError,
        TypeError,
        IndexError,
        KeyError,
        UnicodeDecodeError,
        OverflowError,
    ) as exc:
        raise ContractError("$", f"body is not a valid {name}: {exc}", schema=name) from exc
    if stream.tell() != len(body):
        raise ContractError(
            "$", f"{len(body) - stream.tell()} trailing bytes after {name}", schema=name
        )
    return record


def decode(schemas: SchemaSet, data: bytes) -> tuple[str, Any]:
    """Decode a single-object message, resolving its writer schema by fingerprint."""
    digest, body = split(data)
    name = schemas.name_of(digest)
    if name is None:
        raise ContractError("$", f"unknown writer schema fingerprint {digest.hex()}")
    return name, decode_body(schemas, name, body)
