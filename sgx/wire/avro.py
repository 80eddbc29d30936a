"""Avro single-object encoding (Avro 1.11 spec) on top of fastavro.

A single-object encoded message is ``C3 01`` + the 8-byte little-endian CRC-64-AVRO
fingerprint of the writer schema's Parsing Canonical Form + the Avro binary body, so any
reader holding the schema can resolve it. fastavro provides the fingerprint and the
binary codec; only the 10-byte framing is ours.

``history/<full name>.v<N>.avsc`` beside the schemas holds each earlier published writer
schema of a type, fully expanded. A message written with one is resolved to the current
schema (Avro schema resolution), so a producer that has not upgraded is still understood.
Encoding always uses the current schema.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import avro.errors
import avro.schema
from avro.compatibility import ReaderWriterCompatibilityChecker, SchemaCompatibilityType
from fastavro import schemaless_reader, schemaless_writer
from fastavro.read import SchemaResolutionError
from fastavro.repository.base import SchemaRepositoryError
from fastavro.schema import expand_schema, fingerprint, load_schema, to_parsing_canonical_form

from sgx.errors import ConfigError, ContractError, UnknownSchema

MAGIC = b"\xc3\x01"
HEADER_LEN = 10
HISTORY_DIR = "history"
_HISTORY_FILE = re.compile(r"(?P<name>.+)\.v[0-9]+\.avsc")


def _parse(path: Path, what: str) -> Any:
    try:
        return load_schema(str(path))
    except (OSError, ValueError, KeyError, SchemaRepositoryError) as exc:
        raise ConfigError(f"cannot load Avro schema {what} from {path}: {exc}") from exc


def fingerprint_of(parsed: Any) -> bytes:
    """The CRC-64-AVRO fingerprint of a parsed schema's Parsing Canonical Form."""
    return bytes.fromhex(fingerprint(to_parsing_canonical_form(parsed), "CRC-64-AVRO"))


class SchemaSet:
    """Avro schemas loaded from ``<full name>.avsc`` files, indexed by name and fingerprint,
    and the earlier writer schemas in ``history/``, indexed by fingerprint."""

    def __init__(self, schema_dir: Path) -> None:
        self._dir = schema_dir
        self._parsed: dict[str, Any] = {}
        self._fingerprints: dict[str, bytes] = {}
        self._by_fingerprint: dict[bytes, str] = {}  # current and historical
        self._history: dict[bytes, Any] = {}  # historical fingerprint -> writer schema

    def load_all(self) -> list[str]:
        """Load every schema in the directory, and its history, so that any fingerprint
        resolves. Returns the names of the current schemas."""
        names = sorted(path.name.removesuffix(".avsc") for path in self._dir.glob("*.avsc"))
        if not names:
            raise ConfigError(f"no Avro schemas (*.avsc) in {self._dir}")
        for name in names:
            self.parsed(name)
        for path in sorted((self._dir / HISTORY_DIR).glob("*.avsc")):
            self._load_history(path)
        return names

    def parsed(self, name: str) -> Any:
        """The fastavro-parsed schema ``name``, loading it on first use."""
        parsed = self._parsed.get(name)
        if parsed is None:
            parsed = self._load(name)
        return parsed

    def _load(self, name: str) -> Any:
        parsed = _parse(self._dir / f"{name}.avsc", name)
        digest = fingerprint_of(parsed)
        self._parsed[name] = parsed
        self._fingerprints[name] = digest
        self._by_fingerprint[digest] = name
        return parsed

    def _load_history(self, path: Path) -> None:
        match = _HISTORY_FILE.fullmatch(path.name)
        if match is None:
            raise ConfigError(f"history schema {path}: name it <full name>.v<N>.avsc")
        name = match["name"]
        if not (self._dir / f"{name}.avsc").is_file():
            raise ConfigError(f"history schema {path}: {name} is no longer a schema")
        writer = _parse(path, f"{name} (history)")
        if not isinstance(writer, dict) or writer.get("name") != name:
            raise ConfigError(f"history schema {path} is not a version of {name}")
        digest = fingerprint_of(writer)
        if digest in self._by_fingerprint:
            other = self._by_fingerprint[digest]
            raise ConfigError(f"history schema {path} has the fingerprint of {other}")
        problem = resolution_problem(writer, self.parsed(name))
        if problem is not None:
            raise ConfigError(f"history schema {path} does not resolve to {name}: {problem}")
        self._by_fingerprint[digest] = name
        self._history[digest] = writer

    def add_writer(self, writer: Any) -> tuple[str, bytes]:
        """Learn a writer schema from elsewhere (a newer release's, from the schema registry):
        it must be a version of a current type that resolves to it. Returns (name, digest);
        ConfigError says why not."""
        name = writer.get("name") if isinstance(writer, dict) else None
        if not isinstance(name, str) or not (self._dir / f"{name}.avsc").is_file():
            raise ConfigError(f"a learned schema must be a version of a current type, not {name}")
        digest = fingerprint_of(writer)
        if digest in self._by_fingerprint:
            return self._by_fingerprint[digest], digest
        problem = resolution_problem(writer, self.parsed(name))
        if problem is not None:
            raise ConfigError(
                f"learned schema {digest.hex()} does not resolve to {name}: {problem}"
            )
        self._by_fingerprint[digest] = name
        self._history[digest] = writer
        return name, digest

    def fingerprint(self, name: str) -> bytes:
        self.parsed(name)
        return self._fingerprints[name]

    def name_of(self, digest: bytes) -> str | None:
        """The current schema that writer fingerprint ``digest`` is (a version of)."""
        return self._by_fingerprint.get(digest)

    def historical(self, digest: bytes) -> Any | None:
        """The earlier writer schema with fingerprint ``digest``, if it is one."""
        return self._history.get(digest)


# --- schema resolution check -----------------------------------------------------------


def resolution_problem(writer: Any, reader: Any) -> str | None:
    """Why data written with parsed schema ``writer`` may fail to read as ``reader`` under
    Avro schema resolution, or None: the Apache ``avro`` package's reader/writer
    compatibility checker (fastavro resolves, but has no checker)."""
    checker = ReaderWriterCompatibilityChecker()  # type: ignore[no-untyped-call]
    try:
        result = checker.get_compatibility(_apache(reader), _apache(writer))
    except avro.errors.AvroException as exc:
        return f"not a valid Avro schema: {exc}"
    if result.compatibility is SchemaCompatibilityType.compatible:
        return None
    kinds = ", ".join(sorted(k.name.replace("_", " ") for k in result.incompatibilities))
    where = ", ".join(sorted(loc for loc in result.locations if loc != "/")) or "/"
    # The checker's messages are the names involved, printed as Python sets: ``{'GREEN'}``.
    names = ", ".join(sorted(str(m).strip("{}").replace("'", "") for m in result.messages))
    return f"{kinds} ({names}) at {where}"


def plain_schema(parsed: Any) -> Any:
    """A fastavro-parsed schema as plain JSON data: every named type inlined once (and
    named after), fastavro's bookkeeping keys left out, logical types and defaults kept."""
    return _plain(expand_schema(parsed), set())


def _apache(parsed: Any) -> avro.schema.Schema:
    """A fastavro-parsed schema as the Apache package's, every named type defined once."""
    return avro.schema.parse(json.dumps(plain_schema(parsed)))


def _plain(value: Any, defined: set[str]) -> Any:
    """``value`` without fastavro's bookkeeping keys (``__fastavro_parsed`` and the like),
    and with a named type that ``expand_schema`` inlined again (a record used by two
    fields) written as its name, as Avro requires."""
    if isinstance(value, list):
        return [_plain(v, defined) for v in value]
    if not isinstance(value, dict):
        return value
    if value.get("type") in ("record", "error", "enum", "fixed") and "name" in value:
        if value["name"] in defined:
            return value["name"]
        defined.add(value["name"])
    return {k: _plain(v, defined) for k, v in value.items() if not str(k).startswith("__")}


# --- framing and codec -----------------------------------------------------------------


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


def decode_body(
    schemas: SchemaSet, name: str, body: bytes | memoryview, digest: bytes | None = None
) -> Any:
    """Decode an Avro binary body written with schema ``name``, or with the earlier version
    of it whose fingerprint is ``digest`` (resolved to ``name``); ContractError if it is not."""
    stream = io.BytesIO(body)
    reader = schemas.parsed(name)
    writer = (
        None if digest is None or schemas.name_of(digest) != name else schemas.historical(digest)
    )
    try:
        if writer is None:
            record = schemaless_reader(stream, reader, None)
        else:
            record = schemaless_reader(stream, writer, reader)
    except (
        SchemaResolutionError,
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
    """Decode a single-object message, resolving its writer schema by fingerprint (current
    or historical) to the current schema of its type."""
    digest, body = split(data)
    name = schemas.name_of(digest)
    if name is None:
        raise UnknownSchema(digest)
    return name, decode_body(schemas, name, body, digest)
