"""Record validation: Avro structure with field paths, and the notification contract rules.

Two layers, both raising :class:`sgx.errors.ContractError` with a dotted field path
(``police.disclosure.redactions[0].why``) and the problem in plain words:

* :func:`compile_structure` turns a fastavro-parsed schema into a checker that says
  whether a Python record can be written with that schema, and if not, exactly where and
  why. It is compiled once per schema (a tree of closures), so a check costs a few
  microseconds. It is deliberately a little stricter than fastavro's writer: unknown
  record keys are refused (a typo would otherwise be dropped silently), datetimes must be
  timezone-aware (fastavro reads a naive one as local time), a ``uuid`` string must be in
  the 8-4-4-4-12 form and a ``date`` must be a ``datetime.date`` (not a datetime) or an int.
* :func:`check_notification` applies the semantic rules beyond Avro structure to a
  structurally valid notification (an identifier or the reason for none, the sharing
  basis, a named author, facts, the police and attendance rules).

Values are only echoed in problems when they are numbers, booleans or enum symbols;
strings are described by length, so an error never repeats a name or an identifier.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
import uuid
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, NamedTuple

from sgx.errors import ContractError
from sgx.identifiers import check_nhs_number, check_upn
from sgx.restrictions import FORBIDS

Check = Callable[[Any], None]
Accepts = Callable[[Any], bool]

_NS = "org.safeguarding.exchange."
ATTENDANCE_UPDATE = _NS + "AttendanceUpdate"
HEALTH_UPDATE = _NS + "HealthUpdate"
POLICE_NOTIFICATION = _NS + "PoliceNotification"
DISCLOSURE_REQUEST = _NS + "DisclosureRequest"

_INT_MIN, _INT_MAX = -(2**31), 2**31 - 1
_LONG_MIN, _LONG_MAX = -(2**63), 2**63 - 1
_UUID_FORM = re.compile(
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
)
_SHOW_MAX = 40


# --------------------------------------------------------------------------------------
# Structure


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


# --------------------------------------------------------------------------------------
# Notification rules


def _text(record: Mapping[str, Any], key: str) -> bool:
    """True if ``record[key]`` is a string with something other than whitespace."""
    value = record.get(key)
    return isinstance(value, str) and value != "" and not value.isspace()


def check_child(child: Mapping[str, Any], schema: str) -> None:
    """An NHS number, a UPN or the reason for neither; each identifier valid (at ``child``)."""
    nhs_number, upn = child.get("nhs_number"), child.get("upn")
    if nhs_number is None and upn is None and child.get("identifier_absent_reason") is None:
        raise ContractError(
            "child", "needs nhs_number, upn or identifier_absent_reason", schema=schema
        )
    try:
        if nhs_number is not None:
            check_nhs_number(nhs_number, "child.nhs_number")
        if upn is not None:
            check_upn(upn, "child.upn")
    except ContractError as exc:
        raise ContractError(exc.path, exc.problem, schema=schema) from None


def _check_sharing(sharing: Mapping[str, Any], schema: str) -> None:
    consent = sharing["consent"]
    if consent != "GIVEN" and sharing.get("no_consent_reason") is None:
        raise ContractError(
            "sharing.no_consent_reason",
            f"is required when consent is {consent}: give the statutory reason for sharing",
            schema=schema,
        )
    for code in sharing.get("restrictions") or ():
        clash = FORBIDS.get(code, frozenset()) & set(sharing.get("onward_consent") or ())
        if clash:
            raise ContractError(
                "sharing.onward_consent",
                f"consents to {', '.join(sorted(clash))} which the author's own {code} forbids",
                schema=schema,
            )
    if sharing["lawful_basis"] == "CONSENT" and consent != "GIVEN":
        raise ContractError(
            "sharing.lawful_basis",
            f"is CONSENT but sharing.consent is {consent}",
            schema=schema,
        )


def check_person(person: Mapping[str, Any], path: str, schema: str) -> None:
    """A person acting for an agency (an Author at ``path``): name, role and agency named."""
    for key in ("name", "role", "agency_id"):
        if not _text(person, key):
            raise ContractError(f"{path}.{key}", "must not be empty", schema=schema)


def _check_assessment(assessment: Mapping[str, Any], schema: str) -> None:
    if not _text(assessment, "facts"):
        raise ContractError("assessment.facts", "must not be empty", schema=schema)
    if assessment.get("historical") and not _text(assessment, "historical_relevance"):
        raise ContractError(
            "assessment.historical_relevance",
            "is required when assessment.historical is true: say why it still matters",
            schema=schema,
        )


def _check_police(record: Mapping[str, Any], schema: str) -> None:
    police = record["police"]
    kind = police["kind"]
    if kind == "OPERATION_ENCOMPASS":
        if police.get("incident") is None:
            raise ContractError("police.incident", f"is required for {kind}", schema=schema)
    elif kind.startswith("PROTOCOL_") and police.get("disclosure") is None:
        raise ContractError("police.disclosure", f"is required for {kind}", schema=schema)


def _days(value: dt.date | int) -> int:
    """A date as days since 1970-01-01 (ints pass through, as Avro writes them)."""
    if isinstance(value, dt.date):
        return value.toordinal() - 719_163
    return value


def _check_attendance(record: Mapping[str, Any], schema: str) -> None:
    figures = record["attendance"]
    possible = figures["sessions_possible"]
    missed = figures["sessions_missed"]
    unexplained = figures["unexplained_absences"]

    def bad(field: str, problem: str) -> ContractError:
        return ContractError(f"attendance.{field}", problem, schema=schema)

    for field, count in (
        ("sessions_possible", possible),
        ("sessions_missed", missed),
        ("unexplained_absences", unexplained),
    ):
        if count < 0:
            raise bad(field, f"must not be negative (is {count})")
    if missed > possible:
        raise bad("sessions_missed", f"is {missed}, more than sessions_possible ({possible})")
    if unexplained > missed:
        raise bad("unexplained_absences", f"is {unexplained}, more than sessions_missed ({missed})")
    if _days(figures["period_start"]) > _days(figures["period_end"]):
        raise bad("period_end", "is before period_start")
    _check_absence_flags(figures, possible, missed, bad)


def _check_absence_flags(
    figures: Mapping[str, Any], possible: int, missed: int, bad: Callable[[str, str], ContractError]
) -> None:
    """Persistent absence: missed >= 10% of possible; severe: >= 50% (none when possible is 0)."""
    for field, share, expected in (
        ("persistent_absence", "10%", possible > 0 and missed * 10 >= possible),
        ("severe_absence", "50%", possible > 0 and missed * 2 >= possible),
    ):
        if figures[field] != expected:
            meets = "meets" if expected else "is below"
            raise bad(
                field,
                f"is {str(figures[field]).lower()} but {missed} of {possible} possible sessions "
                f"missed {meets} the {share} threshold",
            )


_TYPE_RULES: dict[str, Callable[[Mapping[str, Any], str], None]] = {
    ATTENDANCE_UPDATE: _check_attendance,
    HEALTH_UPDATE: lambda record, schema: None,
    POLICE_NOTIFICATION: _check_police,
}

NOTIFICATION_RULE_TYPES = frozenset(_TYPE_RULES)


def check_notification(name: str, record: Mapping[str, Any]) -> None:
    """Apply the contract rules beyond Avro structure to a notification of type ``name``.

    ``record`` must already be structurally valid (decoded, or checked with the schema's
    structure checker). Raises ContractError naming the offending field.
    """
    type_rule = _TYPE_RULES.get(name)
    if type_rule is None:
        raise ContractError("$", f"{name} is not a notification type", schema=name)
    check_child(record["child"], name)
    _check_sharing(record["sharing"], name)
    check_person(record["author"], "author", name)
    _check_assessment(record["assessment"], name)
    type_rule(record, name)


def check_disclosure_request(record: Mapping[str, Any]) -> None:
    """The rules beyond Avro structure for a 2013 / 2024 Protocol disclosure request.

    The request names its child and its officer as a notification does, and what a
    police single point of contact needs to answer it: the reference, the force, the
    material and why, the court (and case number once proceedings are issued).
    """
    schema = DISCLOSURE_REQUEST
    for path in ("request_reference", "police_force", "material_requested", "reasons"):
        if not _text(record, path):
            raise ContractError(path, "must not be empty", schema=schema)
    check_person(record["requested_by"], "requested_by", schema)
    check_child(record["child"], schema)
    proceedings = record["proceedings"]
    if not _text(proceedings, "court"):
        raise ContractError("proceedings.court", "must not be empty", schema=schema)
    if proceedings["stage"] == "ISSUED" and not _text(proceedings, "case_number"):
        raise ContractError(
            "proceedings.case_number", "is required once proceedings are ISSUED", schema=schema
        )
    start, end = record.get("period_start"), record.get("period_end")
    if start is not None and end is not None and _days(start) > _days(end):
        raise ContractError("period_end", "is before period_start", schema=schema)


RULES: dict[str, Callable[[Mapping[str, Any]], None]] = {
    **{name: functools.partial(check_notification, name) for name in _TYPE_RULES},
    DISCLOSURE_REQUEST: check_disclosure_request,
}
"""The contract rules beyond Avro structure, by schema name (Contract.check applies them)."""
