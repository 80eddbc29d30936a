"""The contract: structure and rule checks with field paths, wire round trips, golden bytes."""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import random
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastavro import schemaless_writer
from fastavro.schema import load_schema
from fastavro.validation import validate as fastavro_validate

from producers.police import disclosure_request
from safeguard import samples as la_samples
from sgx.domain.identifiers import make_nhs_number, make_upn
from sgx.errors import ConfigError, ContractError
from sgx.wire import contract as c
from sgx.wire.avro import MAGIC, SchemaSet
from sgx.wire.contract import Contract, default_contract
from sgx.wire.validation import NOTIFICATION_RULE_TYPES
from tests import samples

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
GOLDEN = FIXTURES / "attendance_update_v1.bin"
GOLDEN_V2 = FIXTURES / "attendance_update_v2.bin"
GOLDEN_V3 = FIXTURES / "attendance_update_v3.bin"
SCHEMA_DIR = Path(__file__).resolve().parents[2] / "schemas"
HISTORY = SCHEMA_DIR / "history"
# Notification types whose v1 writer schemas (before child.residence_la) are in history.
V1_FINGERPRINTS = {
    c.ATTENDANCE_UPDATE: "7db0bc1ef2e6b129",
    c.HEALTH_UPDATE: "c8e03f931ef8801c",
    c.POLICE_NOTIFICATION: "f8408eaec8e53edd",
    c.DISCLOSURE_REQUEST: "b3702d97eef6def5",
}
UTC = dt.UTC

Builder = Callable[..., dict[str, Any]]
BUILDERS: dict[str, Builder] = {
    c.ATTENDANCE_UPDATE: samples.attendance_update,
    c.HEALTH_UPDATE: samples.health_update,
    c.POLICE_NOTIFICATION: samples.police_notification,
    c.REFERRAL: samples.referral,
}


@pytest.fixture(scope="module")
def contract() -> Contract:
    return default_contract()


def golden_attendance_update() -> dict[str, Any]:
    """The record pinned by tests/fixtures/attendance_update_v1.bin. Never change it."""
    return {
        "notification_id": uuid.UUID("3f2a4c1e-5b6d-4e7f-8a9b-0c1d2e3f4a5b"),
        "authored_at": dt.datetime(2025, 3, 10, 9, 30, 15, 123000, tzinfo=UTC),
        "urgency": "PRIORITY",
        "author": {
            "name": "Jo Teacher",
            "role": "Designated Safeguarding Lead",
            "agency_id": "school-hillside",
            "agency_name": "Hillside Primary School",
            "contact": None,
        },
        "child": {
            "nhs_number": "9434765919",
            "upn": "B801200005001",
            "identifier_absent_reason": None,
            "given_name": "Sam",
            "family_name": "Example",
            "date_of_birth": dt.date(2016, 5, 14),
        },
        "sharing": {
            "consent": "NOT_SOUGHT",
            "lawful_basis": "PUBLIC_TASK",
            "legal_gateway": "Children Act 2004 s.11",
            "no_consent_reason": "RISK_TO_CHILD",
            "restrictions": ["NOT_TO_PARENTS"],
            "onward_consent": ["LA_SOCIAL_CARE"],
        },
        "assessment": {
            "facts": "Missed 18 of 120 sessions, 6 unexplained.",
            "professional_opinion": None,
            "risk_level": "MEDIUM",
            "support_offered": None,
            "agency_limitations": None,
            "child_views": {
                "wishes_and_feelings": "Wants to stay at this school.",
                "what_was_said": None,
                "circumstances": None,
                "how_disclosed": None,
            },
            "historical": False,
            "historical_relevance": None,
        },
        "attendance": {
            "school_urn": "100000",
            "school_name": "Hillside Primary School",
            "period_start": dt.date(2025, 1, 6),
            "period_end": dt.date(2025, 2, 14),
            "sessions_possible": 120,
            "sessions_missed": 18,
            "unexplained_absences": 6,
            "persistent_absence": True,
            "severe_absence": False,
        },
    }


def golden_attendance_update_v2() -> dict[str, Any]:
    """The record pinned by tests/fixtures/attendance_update_v2.bin. Never change it."""
    record = golden_attendance_update()
    record["child"]["residence_la"] = "E09000007"
    return record


def golden_attendance_update_v3() -> dict[str, Any]:
    """The record pinned by tests/fixtures/attendance_update_v3.bin. Never change it."""
    return golden_attendance_update_v2() | {"sen_status": "EHC_PLAN"}


def _disclosure_request() -> dict[str, Any]:
    return disclosure_request(
        request_reference="LA-REQ-2025-0042",
        protocol="2024",
        requested_by=samples.author("la-camden", "London Borough of Camden", "Al Social", "SW"),
        police_force="met-police",
        child=samples.child(make_nhs_number(41), make_upn(41)),
        proceedings={"stage": "CONTEMPLATED", "court": "Family Court at Central London"},
        material_requested="Call-out logs for the family home.",
        reasons="Threshold rests on the incidents of January 2025.",
        requested_at=dt.datetime(2025, 3, 6, 9, 0, tzinfo=UTC),
    )


def _error(call: Callable[[], object]) -> ContractError:
    with pytest.raises(ContractError) as info:
        call()
    return info.value


# --- names ---------------------------------------------------------------------------


def test_every_named_constant_is_a_loaded_record_schema(contract: Contract) -> None:
    for name in (
        *c.NOTIFICATION_TYPES,
        c.DELIVERY,
        c.RECEIPT_BATCH,
        c.ALLOCATION_UPDATE,
        c.SHARE_REQUEST,
        c.SHARE_DECISION,
        c.ENVELOPE,
        c.ENVELOPE_HEADER,
    ):
        assert name in contract.names
        assert len(contract.fingerprint(name)) == 8


def test_short_names_cover_the_notification_types_both_ways() -> None:
    assert set(c.SHORT_NAMES) == c.NOTIFICATION_TYPES == NOTIFICATION_RULE_TYPES
    assert {c.FULL_NAMES[short]: short for short in c.FULL_NAMES} == c.SHORT_NAMES
    assert c.FULL_NAMES["attendance_update"] == c.ATTENDANCE_UPDATE


def test_default_contract_is_loaded_once() -> None:
    assert default_contract() is default_contract()


# --- round trips and golden bytes ----------------------------------------------------


@pytest.mark.parametrize(
    "record",
    [
        samples.attendance_update(),
        samples.health_update(),
        samples.police_notification(),
        samples.police_notification(kind="PROTOCOL_2024_DISCLOSURE"),
        samples.attendance_update(nhs_number=None, upn=make_upn(5, temporary=True)),
        samples.health_update(nhs_number=None, child__identifier_absent_reason="NOT_KNOWN"),
    ],
    ids=["attendance", "health", "encompass", "disclosure", "upn-only", "no-identifier"],
)
def test_each_notification_round_trips(contract: Contract, record: dict[str, Any]) -> None:
    name = next(n for n in c.NOTIFICATION_TYPES if set(record) == set(BUILDERS[n]()))
    data = contract.encode(name, record)
    assert data[:2] == MAGIC
    assert contract.decode(data) == (name, record)
    assert contract.decode_as(name, data) == record


def test_decoded_types_are_uuid_aware_datetime_and_date(contract: Contract) -> None:
    record = samples.attendance_update()
    _, decoded = contract.decode(contract.encode(c.ATTENDANCE_UPDATE, record))
    assert isinstance(decoded["notification_id"], uuid.UUID)
    assert decoded["authored_at"].tzinfo is not None
    assert decoded["authored_at"].utcoffset() == dt.timedelta(0)
    assert type(decoded["attendance"]["period_start"]) is dt.date


def test_encoding_accepts_uuid_strings_epoch_millis_and_day_numbers(contract: Contract) -> None:
    record = samples.attendance_update(
        notification_id="3f2a4c1e-5b6d-4e7f-8a9b-0c1d2e3f4a5b",
        authored_at=1_741_599_000_000,
        attendance__period_start=20_094,
    )
    decoded = contract.decode_as(c.ATTENDANCE_UPDATE, contract.encode(c.ATTENDANCE_UPDATE, record))
    assert decoded["notification_id"] == uuid.UUID("3f2a4c1e-5b6d-4e7f-8a9b-0c1d2e3f4a5b")
    assert decoded["authored_at"] == dt.datetime(2025, 3, 10, 9, 30, tzinfo=UTC)
    assert decoded["attendance"]["period_start"] == dt.date(2025, 1, 6)


def test_missing_fields_with_defaults_are_written_with_the_default(contract: Contract) -> None:
    record = samples.health_update()
    del record["sharing"]["restrictions"], record["author"]["contact"]
    decoded = contract.decode_as(c.HEALTH_UPDATE, contract.encode(c.HEALTH_UPDATE, record))
    assert decoded["sharing"]["restrictions"] == []
    assert decoded["author"]["contact"] is None


def test_golden_attendance_update_v1_bytes_still_decode(contract: Contract) -> None:
    """Wire format version 1 (before child.residence_la): never rewrite it. A producer still
    on it is understood, its records resolved to the current schema through history."""
    golden = GOLDEN.read_bytes()
    assert golden[:10] == b"\xc3\x01" + bytes.fromhex("7db0bc1ef2e6b129")
    assert golden[2:10] != contract.fingerprint(c.ATTENDANCE_UPDATE)
    assert contract.name_of(golden[2:10]) == c.ATTENDANCE_UPDATE
    expected = golden_attendance_update()
    expected["child"]["residence_la"] = None
    expected["sen_status"] = None
    assert contract.decode(golden) == (c.ATTENDANCE_UPDATE, expected)
    assert contract.decode_as(c.ATTENDANCE_UPDATE, golden) == expected


def test_golden_attendance_update_v2_bytes_still_decode(contract: Contract) -> None:
    """Wire format version 2 (before sen_status): never rewrite it. Its writer schema is
    schemas/history/...AttendanceUpdate.v2.avsc; a v3 reader gives sen_status its default."""
    golden = GOLDEN_V2.read_bytes()
    assert golden[:10] == b"\xc3\x01" + bytes.fromhex("d655a6c2246ab9e8")
    assert golden[2:10] != contract.fingerprint(c.ATTENDANCE_UPDATE)
    expected = golden_attendance_update_v2() | {"sen_status": None}
    assert contract.decode(golden) == (c.ATTENDANCE_UPDATE, expected)


def test_golden_attendance_update_v3_bytes_are_pinned(contract: Contract) -> None:
    """Wire format version 3. If it must change, add attendance_update_v4.bin and the v3
    writer schema to schemas/history/; never rewrite v3."""
    golden = GOLDEN_V3.read_bytes()
    fingerprint = contract.fingerprint(c.ATTENDANCE_UPDATE)
    assert golden[:10] == b"\xc3\x01" + fingerprint
    assert fingerprint.hex() == "bfe210d02da99e90"  # changes only if the schema does
    assert contract.encode(c.ATTENDANCE_UPDATE, golden_attendance_update_v3()) == golden
    assert contract.decode(golden) == (c.ATTENDANCE_UPDATE, golden_attendance_update_v3())


@pytest.mark.parametrize("name", sorted(V1_FINGERPRINTS))
def test_each_v1_writer_schema_is_in_history(contract: Contract, name: str) -> None:
    writer = load_schema(str(HISTORY / f"{name}.v1.avsc"))
    record = (BUILDERS.get(name) or _disclosure_request)()
    del record["child"]["residence_la"]
    buf = io.BytesIO()
    schemaless_writer(buf, writer, record)
    data = MAGIC + bytes.fromhex(V1_FINGERPRINTS[name]) + buf.getvalue()
    assert contract.name_of(data[2:10]) == name
    decoded = contract.decode_as(name, data)
    assert decoded["child"]["residence_la"] is None
    assert contract.decode(data) == (name, decoded)
    record["child"]["residence_la"] = None
    assert decoded == record


def test_a_v1_allocation_update_from_an_la_not_yet_upgraded_still_reads(
    contract: Contract,
) -> None:
    """Allocation gained transfer_from; an LA still writing v1 is read, as no transfer."""
    writer = load_schema(str(HISTORY / f"{c.ALLOCATION_UPDATE}.v1.avsc"))
    update = la_samples.allocation_update([("9990000018", None, "sw-1", "Team", "tm-1")])
    del update["allocations"][0]["transfer_from"]
    buf = io.BytesIO()
    schemaless_writer(buf, writer, update)
    data = MAGIC + bytes.fromhex("eaa642c172b0bd52") + buf.getvalue()
    decoded = contract.decode_as(c.ALLOCATION_UPDATE, data)
    assert decoded["allocations"][0]["transfer_from"] is None
    assert decoded["allocations"][0]["worker"] == {"id": "sw-1", "name": "sw-1"}


def _node_schema(*extra_fields: str) -> str:
    fields = ", ".join(['{"name": "value", "type": "int"}', *extra_fields])
    return f'{{"type": "record", "name": "Node", "namespace": "test", "fields": [{fields}]}}'


LABEL = '{"name": "label", "type": ["null", "string"], "default": null}'


def _schema_dir(tmp_path: Path, current: str, **history: str) -> Path:
    (tmp_path / "test.Node.avsc").write_text(current)
    (tmp_path / "history").mkdir()
    for file_name, text in history.items():
        (tmp_path / "history" / file_name).write_text(text)
    return tmp_path


def test_a_history_schema_resolves_to_the_current_one(tmp_path: Path) -> None:
    old = _node_schema()
    contract = Contract.load(
        _schema_dir(tmp_path, _node_schema(LABEL), **{"test.Node.v1.avsc": old})
    )
    assert contract.names == ("test.Node",)
    buf = io.BytesIO()
    schemaless_writer(
        buf, load_schema(str(tmp_path / "history" / "test.Node.v1.avsc")), {"value": 7}
    )
    digest = SchemaSet(tmp_path / "history").fingerprint("test.Node.v1")
    assert digest != contract.fingerprint("test.Node")
    data = MAGIC + digest + buf.getvalue()
    assert contract.decode(data) == ("test.Node", {"value": 7, "label": None})
    assert contract.decode_as("test.Node", data) == {"value": 7, "label": None}
    # Encoding always uses the current schema.
    assert contract.encode("test.Node", {"value": 7})[2:10] == contract.fingerprint("test.Node")


@pytest.mark.parametrize(
    ("file_name", "text", "problem"),
    [
        ("test.Gone.v1.avsc", _node_schema(), "test.Gone is no longer a schema"),
        ("test.Node.avsc", _node_schema(), "name it <full name>.v<N>.avsc"),
        ("test.Node.v1.avsc", "{not json", "cannot load Avro schema test.Node (history)"),
        ("test.Node.v1.avsc", _node_schema(LABEL), "has the fingerprint of test.Node"),
        (
            "test.Node.v1.avsc",
            _node_schema().replace('"Node"', '"Other"'),
            "is not a version of test.Node",
        ),
        (
            "test.Node.v1.avsc",
            '{"type": "record", "name": "Node", "namespace": "test", "fields": []}',
            "does not resolve to test.Node: reader field missing default value (value) at"
            " /fields/0",
        ),
        (
            "test.Node.v1.avsc",
            _node_schema('{"name": "label", "type": ["null", "long"], "default": null}'),
            "does not resolve to test.Node: missing union branch (reader union lacking writer"
            " type: LONG) at /fields/1",
        ),
    ],
    ids=[
        "type-gone",
        "unversioned",
        "unparsable",
        "is-current",
        "other-type",
        "no-default",
        "type",
    ],
)
def test_a_bad_history_schema_is_a_config_error_naming_the_file(
    tmp_path: Path, file_name: str, text: str, problem: str
) -> None:
    schema_dir = _schema_dir(tmp_path, _node_schema(LABEL), **{file_name: text})
    with pytest.raises(ConfigError) as raised:
        Contract.load(schema_dir)
    assert str(schema_dir / "history" / file_name) in str(raised.value)
    assert problem in str(raised.value)


def test_history_check_mirrors_enum_and_nested_resolution(tmp_path: Path) -> None:
    enum = '{"type": "enum", "name": "Colour", "symbols": ["RED", "BLUE"]}'
    current = _node_schema(f'{{"name": "colours", "type": {{"type": "array", "items": {enum}}}}}')
    old = current.replace('["RED", "BLUE"]', '["RED", "GREEN"]')
    with pytest.raises(
        ConfigError, match=r"missing enum symbols \(GREEN\) at /fields/1/type/items"
    ):
        Contract.load(_schema_dir(tmp_path, current, **{"test.Node.v1.avsc": old}))


# --- structure -----------------------------------------------------------------------


def _police_disclosure(**overrides: Any) -> dict[str, Any]:
    return samples.police_notification(kind="PROTOCOL_2013_DISCLOSURE", **overrides)


STRUCTURE_CASES: list[tuple[str, dict[str, Any], str, str]] = [
    (
        "wrong type in a union",
        samples.attendance_update(nhs_number=123),  # type: ignore[arg-type]
        "child.nhs_number",
        "expected string or null, got int 123",
    ),
    (
        "wrong type",
        samples.attendance_update(attendance__sessions_missed="18"),
        "attendance.sessions_missed",
        "expected int, got a string of 2 characters",
    ),
    (
        "boolean is not an int",
        samples.attendance_update(attendance__sessions_missed=True),
        "attendance.sessions_missed",
        "expected int, got boolean True",
    ),
    (
        "int out of range",
        samples.attendance_update(attendance__sessions_possible=2**31),
        "attendance.sessions_possible",
        "2147483648 is out of range for int",
    ),
    (
        "bad enum symbol",
        samples.attendance_update(urgency="URGENT"),
        "urgency",
        "'URGENT' is not one of ROUTINE, PRIORITY, IMMEDIATE",
    ),
    (
        "bad enum symbol in an array",
        samples.health_update(sharing__restrictions=["NOT_TO_PARENTS", "NEVER"]),
        "sharing.restrictions[1]",
        "'NEVER' is not one of NO_ONWARD_SHARING, NOT_TO_PARENTS, NOT_TO_OTHER_AGENCIES, "
        "THIRD_PARTY_AUTHOR_CONSENT, POLICE_CONFIDENTIAL_TO_PROCEEDINGS",
    ),
    (
        "nested array item inside a nullable record",
        _police_disclosure(
            police__disclosure__redactions=[{"what": "a", "why": "b"}, {"what": "c", "why": 7}]
        ),
        "police.disclosure.redactions[1].why",
        "expected string, got int 7",
    ),
    (
        "missing field in an array item",
        _police_disclosure(police__disclosure__redactions=[{"why": "b"}]),
        "police.disclosure.redactions[0].what",
        "is required",
    ),
    (
        "record where an array belongs",
        _police_disclosure(police__disclosure__redactions={"what": "a", "why": "b"}),
        "police.disclosure.redactions",
        "expected an array, got a mapping",
    ),
    (
        "list where a record belongs",
        samples.health_update(author=[]),
        "author",
        "expected record Author, got a list",
    ),
    (
        "naive datetime",
        samples.health_update(health__occurred_at=dt.datetime(2025, 3, 9, 22, 40)),
        "health.occurred_at",
        "datetime must be timezone-aware (a naive one would be read as local time)",
    ),
    (
        "datetime where a date belongs",
        samples.attendance_update(attendance__period_end=dt.datetime(2025, 2, 14, tzinfo=UTC)),
        "attendance.period_end",
        "expected a date, got a datetime",
    ),
    (
        "malformed uuid",
        samples.health_update(notification_id="not-a-uuid"),
        "notification_id",
        "is not a UUID in 8-4-4-4-12 hexadecimal form",
    ),
    (
        "null where a value is required",
        samples.police_notification(police__police_reference=None),
        "police.police_reference",
        "expected string, got null",
    ),
    (
        "unknown field",
        samples.attendance_update(child={**samples.child(None, None), "nhs_numbr": "1"}),
        "child.nhs_numbr",
        "is not a field of record Child",
    ),
]


@pytest.mark.parametrize(
    ("record", "path", "problem"),
    [case[1:] for case in STRUCTURE_CASES],
    ids=[case[0] for case in STRUCTURE_CASES],
)
def test_structural_problems_name_the_field(
    contract: Contract, record: dict[str, Any], path: str, problem: str
) -> None:
    name = next(n for n in c.NOTIFICATION_TYPES if set(record) == set(BUILDERS[n]()))
    error = _error(lambda: contract.encode(name, record))
    assert (error.path, error.problem, error.schema) == (path, problem, name)


@pytest.mark.parametrize("field", ["attendance", "author", "notification_id"])
def test_a_missing_required_field_is_required(contract: Contract, field: str) -> None:
    record = samples.attendance_update()
    del record[field]
    error = _error(lambda: contract.encode(c.ATTENDANCE_UPDATE, record))
    assert (error.path, error.problem) == (field, "is required")


def test_missing_nested_required_field(contract: Contract) -> None:
    record = samples.attendance_update()
    del record["author"]["role"]
    error = _error(lambda: contract.check(c.ATTENDANCE_UPDATE, record))
    assert (error.path, error.problem) == ("author.role", "is required")


def test_a_record_that_is_not_a_mapping_is_refused_at_the_root(contract: Contract) -> None:
    error = _error(lambda: contract.encode(c.RECEIPT_BATCH, ["receipts"]))  # type: ignore[arg-type]
    assert (error.path, error.problem) == ("$", "expected record ReceiptBatch, got a list")


def test_problems_never_echo_strings(contract: Contract) -> None:
    secret = "Sam Example, 12 Secret Road"
    error = _error(
        lambda: contract.encode(c.HEALTH_UPDATE, samples.health_update(urgency=[secret]))
    )
    assert secret not in str(error)


def test_unknown_schema_name_is_a_contract_error(contract: Contract) -> None:
    error = _error(lambda: contract.encode("org.example.Nope", {}))
    assert (error.path, error.problem) == ("$", "org.example.Nope is not a known record schema")
    error = _error(lambda: contract.fingerprint("org.example.Nope"))
    assert (error.path, error.problem) == ("$", "org.example.Nope is not a known schema")
    wire = contract.encode(c.HEALTH_UPDATE, samples.health_update())
    assert _error(lambda: contract.decode_as("org.example.Nope", wire)).path == "$"


def test_check_false_skips_the_rules_but_not_the_writer(contract: Contract) -> None:
    bad_rule = samples.attendance_update(assessment__facts="")
    assert contract.encode(c.ATTENDANCE_UPDATE, bad_rule, check=False)
    bad_shape = samples.attendance_update(attendance__sessions_missed=None)
    error = _error(lambda: contract.encode(c.ATTENDANCE_UPDATE, bad_shape, check=False))
    assert error.path == "$"


def _leaf_mutations(record: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    wrong: list[Any] = [None, 7, -(2**40), "x", 1.5, True, b"\x00", [], {}, ("x",)]
    out: list[tuple[str, Any]] = []
    for key, value in record.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict):
            out += _leaf_mutations(value, path + "__")
        out += [(path, candidate) for candidate in wrong]
    return out


@pytest.mark.parametrize("name", sorted(c.NOTIFICATION_TYPES))
def test_structure_check_never_passes_what_fastavro_refuses(contract: Contract, name: str) -> None:
    """Cross-check against fastavro: our check is as strict or stricter, never laxer."""
    for path, value in _leaf_mutations(BUILDERS[name]()):
        record = BUILDERS[name](**{path: value})
        try:
            contract._checker(name)(record)
        except ContractError:
            continue
        assert fastavro_validate(record, contract.parsed(name), raise_errors=False), path
        contract.encode(name, record, check=False)


# --- notification rules --------------------------------------------------------------

RULE_CASES: list[tuple[str, Builder, dict[str, Any], str, str]] = [
    (
        "no identifier and no reason",
        samples.health_update,
        {"nhs_number": None, "upn": None},
        "child",
        "needs nhs_number, upn or identifier_absent_reason",
    ),
    (
        "bad NHS number",
        samples.health_update,
        {"nhs_number": "9434765918"},
        "child.nhs_number",
        "check digit is 8 but should be 9",
    ),
    (
        "bad UPN",
        samples.attendance_update,
        {"upn": "A801200005001"},
        "child.upn",
        "check letter is A but should be B",
    ),
    (
        "no consent and no reason",
        samples.attendance_update,
        {"sharing__no_consent_reason": None},
        "sharing.no_consent_reason",
        "is required when consent is NOT_SOUGHT: give the statutory reason for sharing",
    ),
    (
        "consent basis without consent",
        samples.health_update,
        {"sharing__lawful_basis": "CONSENT", "sharing__consent": "REFUSED"},
        "sharing.lawful_basis",
        "is CONSENT but sharing.consent is REFUSED",
    ),
    (
        "empty author name",
        samples.health_update,
        {"author__name": ""},
        "author.name",
        "must not be empty",
    ),
    (
        "blank author role",
        samples.health_update,
        {"author__role": "  "},
        "author.role",
        "must not be empty",
    ),
    (
        "empty agency id",
        samples.police_notification,
        {"author__agency_id": ""},
        "author.agency_id",
        "must not be empty",
    ),
    (
        "empty facts",
        samples.police_notification,
        {"assessment__facts": "\n"},
        "assessment.facts",
        "must not be empty",
    ),
    (
        "historical without relevance",
        samples.health_update,
        {"assessment__historical": True},
        "assessment.historical_relevance",
        "is required when assessment.historical is true: say why it still matters",
    ),
    (
        "encompass without incident",
        samples.police_notification,
        {"police__incident": None},
        "police.incident",
        "is required for OPERATION_ENCOMPASS",
    ),
    (
        "protocol without disclosure",
        samples.police_notification,
        {"kind": "PROTOCOL_2024_DISCLOSURE", "police__disclosure": None},
        "police.disclosure",
        "is required for PROTOCOL_2024_DISCLOSURE",
    ),
    (
        "negative count",
        samples.attendance_update,
        {"attendance__unexplained_absences": -1},
        "attendance.unexplained_absences",
        "must not be negative (is -1)",
    ),
    (
        "missed more than possible",
        samples.attendance_update,
        {"attendance__sessions_missed": 121},
        "attendance.sessions_missed",
        "is 121, more than sessions_possible (120)",
    ),
    (
        "unexplained more than missed",
        samples.attendance_update,
        {"attendance__unexplained_absences": 19},
        "attendance.unexplained_absences",
        "is 19, more than sessions_missed (18)",
    ),
    (
        "period ends before it starts",
        samples.attendance_update,
        {"attendance__period_end": dt.date(2025, 1, 5)},
        "attendance.period_end",
        "is before period_start",
    ),
    (
        "persistent absence not flagged at exactly 10%",
        samples.attendance_update,
        {"attendance__sessions_missed": 12, "attendance__persistent_absence": False},
        "attendance.persistent_absence",
        "is false but 12 of 120 possible sessions missed meets the 10% threshold",
    ),
    (
        "persistent absence flagged below 10%",
        samples.attendance_update,
        {"attendance__sessions_missed": 11, "attendance__unexplained_absences": 0},
        "attendance.persistent_absence",
        "is true but 11 of 120 possible sessions missed is below the 10% threshold",
    ),
    (
        "severe absence not flagged at exactly 50%",
        samples.attendance_update,
        {"attendance__sessions_missed": 60},
        "attendance.severe_absence",
        "is false but 60 of 120 possible sessions missed meets the 50% threshold",
    ),
    (
        "severe absence flagged below 50%",
        samples.attendance_update,
        {"attendance__severe_absence": True},
        "attendance.severe_absence",
        "is true but 18 of 120 possible sessions missed is below the 50% threshold",
    ),
    (
        "no absence flag without possible sessions",
        samples.attendance_update,
        {
            "attendance__sessions_possible": 0,
            "attendance__sessions_missed": 0,
            "attendance__unexplained_absences": 0,
        },
        "attendance.persistent_absence",
        "is true but 0 of 0 possible sessions missed is below the 10% threshold",
    ),
]


@pytest.mark.parametrize(
    ("build", "overrides", "path", "problem"),
    [case[1:] for case in RULE_CASES],
    ids=[case[0] for case in RULE_CASES],
)
def test_each_rule_names_the_field(
    contract: Contract, build: Builder, overrides: dict[str, Any], path: str, problem: str
) -> None:
    record = build(**overrides)
    name = next(n for n, b in BUILDERS.items() if b is build)
    error = _error(lambda: contract.encode(name, record))
    assert (error.path, error.problem, error.schema) == (path, problem, name)
    # The gateway runs the same rules on what it decodes.
    data = contract.encode(name, record, check=False)
    error = _error(lambda: contract.decode(data))
    assert (error.path, error.problem) == (path, problem)
    assert contract.decode(data, check=False)[1] == contract.decode_as(name, data, check=False)


@pytest.mark.parametrize(
    "overrides",
    [
        {"sharing__consent": "GIVEN", "sharing__no_consent_reason": None},
        {"sharing__consent": "GIVEN", "sharing__lawful_basis": "CONSENT"},
        {"assessment__historical": True, "assessment__historical_relevance": "Pattern recurs."},
        {"nhs_number": None},
        {"upn": None},
        {"nhs_number": None, "upn": None, "child__identifier_absent_reason": "UNREASONABLE_DELAY"},
        {
            "attendance__sessions_missed": 0,
            "attendance__unexplained_absences": 0,
            "attendance__persistent_absence": False,
        },
        {"attendance__sessions_missed": 120, "attendance__severe_absence": True},
        {"attendance__period_end": dt.date(2025, 1, 6)},
    ],
)
def test_records_that_keep_the_rules_pass(contract: Contract, overrides: dict[str, Any]) -> None:
    contract.check(c.ATTENDANCE_UPDATE, samples.attendance_update(**overrides))


# --- decoding ------------------------------------------------------------------------


@pytest.fixture
def wire(contract: Contract) -> bytes:
    return contract.encode(c.POLICE_NOTIFICATION, samples.police_notification())


def test_decode_refuses_an_unknown_fingerprint(contract: Contract, wire: bytes) -> None:
    error = _error(lambda: contract.decode(MAGIC + b"\x00" * 8 + wire[10:]))
    assert (error.path, error.problem) == (
        "$",
        "unknown writer schema fingerprint 0000000000000000",
    )


def test_history_does_not_widen_what_is_accepted(contract: Contract) -> None:
    """v1 bodies under a fingerprint that is neither current nor in history: refused."""
    unknown = MAGIC + b"\x7d" * 8 + GOLDEN.read_bytes()[10:]
    error = _error(lambda: contract.decode(unknown))
    assert error.problem == "unknown writer schema fingerprint 7d7d7d7d7d7d7d7d"
    error = _error(lambda: contract.decode_as(c.ATTENDANCE_UPDATE, unknown))
    assert error.problem.endswith("got unknown schema (fingerprint 7d7d7d7d7d7d7d7d)")
    # A historical fingerprint is still of its own type only.
    error = _error(lambda: contract.decode_as(c.HEALTH_UPDATE, GOLDEN.read_bytes()))
    assert error.problem == f"expected {c.HEALTH_UPDATE}, got {c.ATTENDANCE_UPDATE}"


@pytest.mark.parametrize("data", [b"", b"\xc3", b"\xc3\x01\x00", b"\xc3\x02" + b"\x00" * 20, b"{}"])
def test_decode_refuses_what_is_not_single_object_encoded(contract: Contract, data: bytes) -> None:
    error = _error(lambda: contract.decode(data))
    assert error.path == "$"
    assert "not an Avro single-object encoding" in error.problem


def test_decode_refuses_a_truncated_body(contract: Contract, wire: bytes) -> None:
    for cut in (11, len(wire) // 2, len(wire) - 1):
        error = _error(lambda: contract.decode(wire[:cut]))  # noqa: B023
        assert error.path == "$"
        assert error.problem.startswith("body is not a valid")


def test_decode_refuses_trailing_bytes(contract: Contract, wire: bytes) -> None:
    error = _error(lambda: contract.decode(wire + b"\x00"))
    assert (error.path, error.problem) == ("$", f"1 trailing bytes after {c.POLICE_NOTIFICATION}")


def test_decode_as_refuses_another_schema(contract: Contract, wire: bytes) -> None:
    error = _error(lambda: contract.decode_as(c.HEALTH_UPDATE, wire))
    assert (error.path, error.schema) == ("$", c.HEALTH_UPDATE)
    assert error.problem == f"expected {c.HEALTH_UPDATE}, got {c.POLICE_NOTIFICATION}"
    unknown = MAGIC + b"\x01" * 8 + wire[10:]
    error = _error(lambda: contract.decode_as(c.POLICE_NOTIFICATION, unknown))
    assert error.problem.endswith("got unknown schema (fingerprint 0101010101010101)")


def test_damaged_bytes_only_ever_raise_contract_errors(contract: Contract) -> None:
    rng = random.Random(3)
    originals = [
        contract.encode(c.ATTENDANCE_UPDATE, samples.attendance_update()),
        contract.encode(
            c.POLICE_NOTIFICATION, samples.police_notification(kind="PROTOCOL_2013_DISCLOSURE")
        ),
    ]
    for _ in range(3000):
        data = bytearray(rng.choice(originals))
        for _ in range(rng.randint(1, 3)):
            data[rng.randrange(10, len(data))] = rng.randrange(256)
        with contextlib.suppress(ContractError):
            contract.decode(bytes(data))


# --- field paths ---------------------------------------------------------------------


def test_field_paths_recurse_into_records_and_nullable_records(contract: Contract) -> None:
    paths = contract.field_paths(c.POLICE_NOTIFICATION)
    assert paths[:4] == ["notification_id", "authored_at", "urgency", "author"]
    for path in (
        "child.nhs_number",
        "assessment.child_views",
        "assessment.child_views.wishes_and_feelings",
        "police.incident.voice_of_child",
        "police.disclosure.redactions",
    ):
        assert path in paths
    assert not [p for p in paths if p.startswith("police.disclosure.redactions.")]
    assert len(paths) == len(set(paths))


def test_is_nullable_follows_the_schema(contract: Contract) -> None:
    name = c.POLICE_NOTIFICATION
    nullable = {p for p in contract.field_paths(name) if contract.is_nullable(name, p)}
    assert {
        "police.incident",
        "police.disclosure",
        "assessment.child_views",
        "child.nhs_number",
        "police.offence_details",
    } <= nullable
    assert not nullable & {
        "child",
        "police",
        "police.kind",
        "assessment.facts",
        "urgency",
        "police.disclosure.material_summary",
        "sharing.restrictions",
    }
    error = _error(lambda: contract.is_nullable(name, "police.nope"))
    assert (error.path, error.problem) == ("police.nope", f"is not a field of {name}")


def test_field_paths_of_arrays_of_records_stop_at_the_array(contract: Contract) -> None:
    assert contract.field_paths(c.ALLOCATION_UPDATE) == [
        "la_id",
        "issued_at",
        "allocations",
        "ended",
    ]


def test_recursive_schemas_compile_check_and_list_paths(tmp_path: Path) -> None:
    (tmp_path / "test.Node.avsc").write_text(
        '{"type": "record", "name": "Node", "namespace": "test", "fields": ['
        '{"name": "value", "type": "int"},'
        '{"name": "next", "type": ["null", "test.Node"], "default": null}]}'
    )
    contract = Contract.load(tmp_path)
    assert contract.field_paths("test.Node") == ["value", "next"]
    chain = {"value": 1, "next": {"value": 2, "next": {"value": "three", "next": None}}}
    error = _error(lambda: contract.encode("test.Node", chain))
    assert (error.path, error.problem) == (
        "next.next.value",
        "expected int, got a string of 5 characters",
    )
    chain["next"]["next"]["value"] = 3  # type: ignore[index]
    assert contract.decode_as("test.Node", contract.encode("test.Node", chain)) == chain


def test_samples_use_valid_distinct_identifiers() -> None:
    record = samples.attendance_update(nhs_number=make_nhs_number(42), upn=make_upn(42))
    assert record["child"]["nhs_number"] == make_nhs_number(42)
    assert (
        samples.attendance_update()["notification_id"]
        != samples.attendance_update()["notification_id"]
    )
    with pytest.raises(KeyError):
        samples.health_update(health__no_such_field=1)


def test_an_author_cannot_consent_to_what_their_own_restriction_forbids() -> None:
    from sgx.wire.contract import ATTENDANCE_UPDATE, default_contract
    from tests import samples as s

    record = s.attendance_update()
    record["sharing"]["restrictions"] = ["NOT_TO_PARENTS"]
    record["sharing"]["onward_consent"] = ["PARENT_OR_CARER", "CARE_PROCEEDINGS"]
    with pytest.raises(ContractError) as raised:
        default_contract().encode(ATTENDANCE_UPDATE, record)
    assert raised.value.path == "sharing.onward_consent"
    assert "PARENT_OR_CARER" in raised.value.problem
    record["sharing"]["onward_consent"] = ["CARE_PROCEEDINGS"]
    default_contract().encode(ATTENDANCE_UPDATE, record)  # no clash: accepted
