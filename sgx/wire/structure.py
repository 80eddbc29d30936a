"""Avro structure checks with field paths: a checker compiled once per schema.

:func:`compile_structure` turns a fastavro-parsed schema into a checker that says whether a
Python record can be written with that schema, and if not, exactly where and why: it raises
:class:`sgx.errors.ContractError` with a dotted field path
(``police.disclosure.redactions[0].why``) and the problem in plain words. It is compiled
once per schema (a tree of closures), so a check costs a few microseconds. It is
deliberately a little stricter than fastavro's writer: unknown record keys are refused (a
typo would otherwise be dropped silently), datetimes must be timezone-aware (fastavro reads
a naive one as local time), a ``uuid`` string must be in the 8-4-4-4-12 form and a ``date``
must be a ``datetime.date`` (not a datetime) or an int.

It knows nothing of the contract's meaning: the rules beyond structure (an identifier or
the reason for none, the sharing basis, ...) are :mod:`sgx.wire.validation`'s.

Values are only echoed in problems when they are numbers, booleans or enum symbols;
strings are described by length, so an error never repeats a name or an identifier.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, NamedTuple

from sgx.errors import ContractError

Check = Callable[[Any], None]
Accepts = Callable[[Any], bool]

_INT_MIN, _INT_MAX = -(2**31), 2**31 - 1
_LONG_MIN, _LONG_MAX = -(2**63), 2**63 - 1
_UUID_FORM = re.compile(
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
)
_SHOW_MAX = 40


class _Bad(Exception):
    """A structural problem; enclosing records and arrays add their path part on the way out."""

    def __init__(self, problem: str, part: str | None = None) -> None:
        super().__init__(problem)
        self.problem = problem
        self.parts: list[str] = [] if part is None else [part]

    def path(self) -> str:
        out = ""
        for part in reversed(self.parts):
            out += part if part.startswith("[") or not out else f".{part}"
        return out or "$"


def _got(datum: Any) -> str:
    """Describe a wrong value without echoing strings or bytes (they may be personal data)."""
    if datum is None:
        return "got null"
    if isinstance(datum, bool | int | float):
        return f"got {_kind(datum)} {str(datum)[:_SHOW_MAX]}"
    if isinstance(datum, str):
        return f"got a string of {len(datum)} characters"
    if isinstance(datum, bytes | bytearray):
        return f"got {len(datum)} bytes"
    if isinstance(datum, Mapping):
        return "got a mapping"
    if isinstance(datum, list | tuple):
        return "got a list"
    return f"got {type(datum).__name__}"


def _kind(datum: bool | int | float) -> str:
    if isinstance(datum, bool):
        return "boolean"
    return "int" if isinstance(datum, int) else "float"


def _is_integer(datum: Any) -> bool:
    return isinstance(datum, int) and not isinstance(datum, bool)


def _ranged(low: int, high: int, what: str) -> Check:
    def check(datum: Any) -> None:
        if not _is_integer(datum):
            raise _Bad(f"expected {what}, {_got(datum)}")
        if not low <= datum <= high:
            raise _Bad(f"{datum} is out of range for {what}")

    return check


def _typed(types: type | tuple[type, ...], what: str, exclude_bool: bool = False) -> Check:
    def check(datum: Any) -> None:
        if not isinstance(datum, types) or (exclude_bool and isinstance(datum, bool)):
            raise _Bad(f"expected {what}, {_got(datum)}")

    return check


def _check_null(datum: Any) -> None:
    if datum is not None:
        raise _Bad(f"expected null, {_got(datum)}")


def _check_timestamp(datum: Any) -> None:
    if isinstance(datum, dt.datetime):
        if datum.utcoffset() is None:
            raise _Bad("datetime must be timezone-aware (a naive one would be read as local time)")
        return
    if not _is_integer(datum):
        raise _Bad(f"expected a timezone-aware datetime or epoch milliseconds, {_got(datum)}")
    if not _LONG_MIN <= datum <= _LONG_MAX:
        raise _Bad(f"{datum} is out of range for a timestamp")


def _check_date(datum: Any) -> None:
    if isinstance(datum, dt.datetime):
        raise _Bad("expected a date, got a datetime")
    if isinstance(datum, dt.date):
        return
    if not _is_integer(datum):
        raise _Bad(f"expected a date or days since 1970-01-01, {_got(datum)}")
    if not _INT_MIN <= datum <= _INT_MAX:
        raise _Bad(f"{datum} is out of range for a date")


def _check_uuid(datum: Any) -> None:
    if isinstance(datum, uuid.UUID):
        return
    if not isinstance(datum, str):
        raise _Bad(f"expected a UUID, {_got(datum)}")
    if _UUID_FORM.fullmatch(datum) is None:
        raise _Bad("is not a UUID in 8-4-4-4-12 hexadecimal form")


def _is_datetime_or_int(datum: Any) -> bool:
    return isinstance(datum, dt.datetime) or _is_integer(datum)


def _is_date_or_int(datum: Any) -> bool:
    return isinstance(datum, dt.date) or _is_integer(datum)


def _is_uuid_like(datum: Any) -> bool:
    return isinstance(datum, str | uuid.UUID)


def _is_sequence(datum: Any) -> bool:
    return isinstance(datum, list | tuple)


def _is_number(datum: Any) -> bool:
    return isinstance(datum, int | float) and not isinstance(datum, bool)


def _accepts_type(types: type | tuple[type, ...]) -> Accepts:
    return lambda datum: isinstance(datum, types)


class _Node(NamedTuple):
    """A compiled schema: its checker, a shallow type test (to pick a union branch), a
    description for problems, and the exact value types that need no further check."""

    check: Check
    accepts: Accepts
    what: str
    fast: frozenset[type] = frozenset()


_NONE = frozenset({type(None)})
_PRIMITIVES: dict[str, _Node] = {
    "null": _Node(_check_null, lambda d: d is None, "null", _NONE),
    "boolean": _Node(_typed(bool, "boolean"), _accepts_type(bool), "boolean", frozenset({bool})),
    "int": _Node(_ranged(_INT_MIN, _INT_MAX, "int"), _is_integer, "int"),
    "long": _Node(_ranged(_LONG_MIN, _LONG_MAX, "long"), _is_integer, "long"),
    "float": _Node(_typed((int, float), "float", True), _is_number, "float", frozenset({float})),
    "double": _Node(_typed((int, float), "double", True), _is_number, "double", frozenset({float})),
    "string": _Node(_typed(str, "string"), _accepts_type(str), "string", frozenset({str})),
    "bytes": _Node(
        _typed((bytes, bytearray), "bytes"),
        _accepts_type((bytes, bytearray)),
        "bytes",
        frozenset({bytes, bytearray}),
    ),
}

_LOGICAL: dict[tuple[str, str], _Node] = {
    ("long", "timestamp-millis"): _Node(_check_timestamp, _is_datetime_or_int, "timestamp"),
    ("int", "date"): _Node(_check_date, _is_date_or_int, "date", frozenset({dt.date})),
    ("string", "uuid"): _Node(_check_uuid, _is_uuid_like, "uuid", frozenset({uuid.UUID})),
}


def _short(fullname: str) -> str:
    return fullname.rsplit(".", 1)[-1]


class _Compiler:
    """Builds checkers for one parsed schema; named types are compiled once (and may recurse)."""

    def __init__(self, named: Mapping[str, Any]) -> None:
        self._named = named
        self._done: dict[str, _Node] = {}

    def node(self, schema: Any) -> _Node:
        if isinstance(schema, list):
            return self._union(schema)
        if isinstance(schema, str):
            return self._by_name(schema)
        kind = schema["type"]
        logical = _LOGICAL.get((kind, schema.get("logicalType", "")))
        if logical is not None:
            return logical
        builder = self._BUILDERS.get(kind)
        if builder is not None:
            return builder(self, schema)
        return self.node(kind)  # {"type": "string"} and the like

    def _by_name(self, name: str) -> _Node:
        primitive = _PRIMITIVES.get(name)
        if primitive is not None:
            return primitive
        done = self._done.get(name)
        if done is not None:
            return done
        return self.node(self._named[name])

    def _union(self, branches: list[Any]) -> _Node:
        nodes = [self.node(branch) for branch in branches]
        null_ok = any(node.what == "null" for node in nodes)
        typed = [(node.check, node.accepts) for node in nodes if node.what != "null"]
        what = " or ".join([n.what for n in nodes if n.what != "null"] + ["null"] * null_ok)
        fast = frozenset().union(*(node.fast for node in nodes))

        def check(datum: Any) -> None:
            if datum is None:
                if null_ok:
                    return
                raise _Bad(f"expected {what}, got null")
            first: _Bad | None = None
            for branch_check, accepts in typed:
                if accepts(datum):
                    try:
                        branch_check(datum)
                    except _Bad as bad:
                        first = first or bad
                        continue
                    return
            raise first or _Bad(f"expected {what}, {_got(datum)}")

        def accepts(datum: Any) -> bool:
            return (datum is None and null_ok) or any(branch(datum) for _, branch in typed)

        return _Node(check, accepts, what, fast)

    def _enum(self, schema: Mapping[str, Any]) -> _Node:
        symbols = tuple(schema["symbols"])
        allowed = frozenset(symbols)
        what = f"enum {_short(schema['name'])}"

        def check(datum: Any) -> None:
            if not isinstance(datum, str):
                raise _Bad(f"expected {what} symbol, {_got(datum)}")
            if datum not in allowed:
                raise _Bad(f"{datum[:_SHOW_MAX]!r} is not one of {', '.join(symbols)}")

        node = _Node(check, _accepts_type(str), what)
        self._done[schema["name"]] = node
        return node

    def _fixed(self, schema: Mapping[str, Any]) -> _Node:
        size = schema["size"]
        what = f"fixed {_short(schema['name'])} of {size} bytes"

        def check(datum: Any) -> None:
            if not isinstance(datum, bytes):
                raise _Bad(f"expected {size} bytes, {_got(datum)}")
            if len(datum) != size:
                raise _Bad(f"expected {size} bytes, got {len(datum)}")

        node = _Node(check, _accepts_type(bytes), what)
        self._done[schema["name"]] = node
        return node

    def _array(self, schema: Mapping[str, Any]) -> _Node:
        item = self.node(schema["items"]).check

        def check(datum: Any) -> None:
            if not _is_sequence(datum):
                raise _Bad(f"expected an array, {_got(datum)}")
            for index, value in enumerate(datum):
                try:
                    item(value)
                except _Bad as bad:
                    bad.parts.append(f"[{index}]")
                    raise

        return _Node(check, _is_sequence, "array")

    def _map(self, schema: Mapping[str, Any]) -> _Node:
        value_check = self.node(schema["values"]).check

        def check(datum: Any) -> None:
            if not isinstance(datum, Mapping):
                raise _Bad(f"expected a map, {_got(datum)}")
            for key, value in datum.items():
                if not isinstance(key, str):
                    raise _Bad(f"map keys must be strings, {_got(key)}")
                try:
                    value_check(value)
                except _Bad as bad:
                    bad.parts.append(f"[{key!r}]")
                    raise

        return _Node(check, _accepts_type(Mapping), "map")

    def _record(self, schema: Mapping[str, Any]) -> _Node:
        name = schema["name"]
        what = f"record {_short(name)}"
        late: list[Check] = []
        # Placeholder first, so a recursive reference to this record resolves to it.
        self._done[name] = _Node(lambda datum: late[0](datum), _accepts_type(Mapping), what)
        fields = []
        for field in schema["fields"]:
            node = self.node(field["type"])
            fields.append((field["name"], node.check, "default" not in field, node.fast))
        check = _record_check(fields, what)
        late.append(check)
        node = _Node(check, _accepts_type(Mapping), what)
        self._done[name] = node
        return node

    _BUILDERS: ClassVar[Mapping[str, Callable[[_Compiler, Any], _Node]]] = {
        "record": _record,
        "error": _record,
        "enum": _enum,
        "fixed": _fixed,
        "array": _array,
        "map": _map,
    }


_Field = tuple[str, Check, bool, frozenset[type]]


def _record_check(fields: list[_Field], what: str) -> Check:
    known = frozenset(field[0] for field in fields)

    def check(datum: Any) -> None:
        if not isinstance(datum, Mapping):
            raise _Bad(f"expected {what}, {_got(datum)}")
        for name, field_check, required, fast in fields:
            try:
                value = datum[name]
            except KeyError:
                if required:
                    raise _Bad("is required", name) from None
                continue
            if type(value) in fast:
                continue
            try:
                field_check(value)
            except _Bad as bad:
                bad.parts.append(name)
                raise
        if not known.issuperset(datum):
            unknown = sorted(str(key) for key in datum if key not in known)
            raise _Bad(f"is not a field of {what}", unknown[0])

    return check


def compile_structure(parsed: Mapping[str, Any], name: str) -> Callable[[Any], None]:
    """A checker for records of the fastavro-parsed schema ``parsed`` (full name ``name``).

    The checker raises ContractError(path, problem, schema=name) on the first problem.
    """
    compiler = _Compiler(parsed.get("__named_schemas", {}))
    inner = compiler.node(parsed).check

    def check(record: Any) -> None:
        try:
            inner(record)
        except _Bad as bad:
            raise ContractError(bad.path(), bad.problem, schema=name) from None

    return check
