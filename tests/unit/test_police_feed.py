"""The police feed: a force export mapped to PoliceNotification records, and the LA's
2013 / 2024 Protocol disclosure request."""

from __future__ import annotations

import copy
import datetime as dt
import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, get_args

import pytest

from gateway.restrictions import attach
from producers import feeds
from producers.police import (
    check_disclosure_request,
    disclosure_request,
    encompass_school,
    map_police_export,
    map_police_file,
    parse_police_export,
)
from sgx.domain.identifiers import make_nhs_number, make_upn
from sgx.errors import ContractError
from sgx.wire import contract as c
from sgx.wire.contract import Contract, default_contract

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "police"
UTC = dt.UTC
NHS = "9990000824"  # the fixtures' child (make_nhs_number(41))


def export(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / f"{name}.json").read_text())
    return data


def error_of(call: Callable[[], object]) -> ContractError:
    with pytest.raises(ContractError) as info:
        call()
    return info.value


@pytest.fixture(scope="module")
def contract() -> Contract:
    return default_contract()


# --- Operation Encompass -------------------------------------------------------------


def test_encompass_maps_every_field_the_school_and_social_care_need(contract: Contract) -> None:
    record = map_police_export(export("encompass"))

    assert record["notification_id"] == uuid.UUID("6f1c2a52-1d6e-4d0b-9a43-3f9d2f1f7c01")
    assert record["authored_at"] == dt.datetime(2025, 3, 10, 6, 45, tzinfo=UTC)
    assert record["urgency"] == "IMMEDIATE"  # before the next school day
    assert record["author"] == {
        "name": "DC B Officer",
        "role": "Operation Encompass single point of contact",
        "agency_id": "met-police",
        "agency_name": "Metropolitan Police Service",
        "contact": "encompass@met-police.example",
    }
    assert record["child"]["nhs_number"] == NHS
    assert record["child"]["date_of_birth"] == dt.date(2016, 5, 14)
    police = record["police"]
    assert police["kind"] == "OPERATION_ENCOMPASS"
    assert police["police_reference"] == "CAD-2025-0309-1234"
    assert police["incident"] == {
        "occurred_at": dt.datetime(2025, 3, 9, 23, 15, tzinfo=UTC),
        "location": "Family home",
        "child_present": True,
        "voice_of_child": "Hid upstairs; told the officer she was scared.",
        "school_id": "school-hillside",
    }
    assert police["disclosure"] is None
    assert police["offence_details"] == "Common assault (alleged); adult male arrested."
    assert record["assessment"]["facts"].startswith("Officers attended")
    assert record["assessment"]["risk_level"] == "HIGH"
    assert record["sharing"]["legal_gateway"] == "Children Act 2004 s.11; Operation Encompass"
    assert record["sharing"]["no_consent_reason"] == "RISK_TO_CHILD"
    assert encompass_school(record) == "school-hillside"
    # what the mapping produced is exactly what travels
    decoded = contract.decode_as(
        c.POLICE_NOTIFICATION, contract.encode(c.POLICE_NOTIFICATION, record)
    )
    assert decoded == record


def test_encompass_with_the_child_not_present_and_no_words() -> None:
    (record,), errors = map_police_file(FIXTURES / "batch_with_bad_item.json")
    incident = record["police"]["incident"]
    assert incident["child_present"] is False
    assert incident["voice_of_child"] is None
    assert incident["location"] is None
    assert record["assessment"]["risk_level"] == "LOW"
    assert [e.path for e in errors] == ["[1].incident.child_present"]


def test_the_voice_of_the_child_travels_with_the_incident() -> None:
    data = export("encompass")
    data["incident"]["voice_of_child"] = "Said: 'Daddy was shouting at mummy again.'"
    data["incident"]["child_present"] = True
    record = map_police_export(data)
    assert record["police"]["incident"]["voice_of_child"] == (
        "Said: 'Daddy was shouting at mummy again.'"
    )


def test_a_school_id_may_be_null_for_a_child_on_no_school_roll() -> None:
    data = export("encompass")
    data["school_id"] = None
    record = map_police_export(data)
    assert record["police"]["incident"]["school_id"] is None
    assert encompass_school(record) is None


def test_the_export_must_say_which_school_or_null() -> None:
    data = export("encompass")
    del data["school_id"]
    error = error_of(lambda: map_police_export(data))
    assert (error.path, error.problem) == ("school_id", "Field required")


def test_a_record_without_school_id_still_satisfies_the_contract(contract: Contract) -> None:
    record = map_police_export(export("encompass"))
    del record["police"]["incident"]["school_id"]  # an older producer: the field defaults
    decoded = contract.decode_as(
        c.POLICE_NOTIFICATION, contract.encode(c.POLICE_NOTIFICATION, record)
    )
    assert decoded["police"]["incident"]["school_id"] is None
    assert contract.is_nullable(c.POLICE_NOTIFICATION, "police.incident.school_id")


def test_urgency_and_sharing_can_be_given_by_the_force() -> None:
    data = export("encompass")
    data["urgency"] = "PRIORITY"
    data["sharing"] = {
        "consent": "GIVEN",
        "lawful_basis": "PUBLIC_TASK",
        "restrictions": ["NOT_TO_PARENTS"],
    }
    record = map_police_export(data)
    assert record["urgency"] == "PRIORITY"
    assert record["sharing"]["consent"] == "GIVEN"
    assert record["sharing"]["no_consent_reason"] is None
    assert record["sharing"]["restrictions"] == ["NOT_TO_PARENTS"]


# --- protocol disclosure -------------------------------------------------------------


def test_disclosure_maps_with_what_was_redacted_and_why(contract: Contract) -> None:
    record = map_police_export(export("disclosure"))
    police = record["police"]
    assert police["kind"] == "PROTOCOL_2024_DISCLOSURE"
    assert police["incident"] is None
    assert police["disclosure"] == {
        "request_reference": "LA-REQ-2025-0042",
        "material_summary": (
            "Two call-outs to the family home in January 2025, with officers' notes."
        ),
        "redactions": [
            {"what": "Name and address of a third-party witness", "why": "Protect the witness"},
            {
                "what": "Intelligence log entry of 4 January",
                "why": "Would prejudice an ongoing investigation",
            },
        ],
    }
    assert record["urgency"] == "PRIORITY"
    assert record["authored_at"] == dt.datetime(2025, 3, 20, 14, 0, tzinfo=UTC)
    assert record["assessment"]["facts"] == police["disclosure"]["material_summary"]
    assert record["sharing"]["no_consent_reason"] == "PREJUDICE_CRIMINAL_INVESTIGATION"
    assert "2024 Protocol" in record["sharing"]["legal_gateway"]
    assert record["child"]["upn"] is None
    decoded = contract.decode_as(
        c.POLICE_NOTIFICATION, contract.encode(c.POLICE_NOTIFICATION, record)
    )
    assert decoded == record


def test_a_2013_protocol_disclosure_has_its_own_kind() -> None:
    data = export("disclosure")
    data["protocol"] = "2013"
    record = map_police_export(data)
    assert record["police"]["kind"] == "PROTOCOL_2013_DISCLOSURE"
    assert "2013 Protocol" in record["sharing"]["legal_gateway"]


def test_a_disclosure_with_nothing_redacted() -> None:
    data = export("disclosure")
    del data["redactions"]
    assert map_police_export(data)["police"]["disclosure"]["redactions"] == []


@pytest.mark.parametrize(
    ("change", "path", "problem"),
    [
        (lambda d: d["redactions"][1].pop("why"), "redactions[1].why", "Field required"),
        (lambda d: d["redactions"][0].update(why="  "), "redactions[0].why", "must not be empty"),
        (lambda d: d.update(protocol="2019"), "protocol", "Input should be '2013' or '2024'"),
        (lambda d: d.update(request_reference=""), "request_reference", "must not be empty"),
        (lambda d: d.update(disclosed_at="2025-03-20T14:00:00"), "disclosed_at", "timezone"),
        (lambda d: d.update(colour="blue"), "colour", "Extra inputs are not permitted"),
        (lambda d: d["force"].pop("id"), "force.id", "Field required"),
    ],
)
def test_a_bad_disclosure_names_the_export_field(
    change: Callable[[dict[str, Any]], object], path: str, problem: str
) -> None:
    data = export("disclosure")
    change(data)
    error = error_of(lambda: map_police_export(data))
    assert error.path == path
    assert problem in error.problem
    assert error.schema == "police export"


# --- identifiers and contract rules --------------------------------------------------


def test_a_bad_nhs_number_is_refused_without_repeating_it() -> None:
    data = export("encompass")
    bad = NHS[:-1] + str((int(NHS[-1]) + 1) % 10)
    data["child"]["nhs_number"] = bad
    error = error_of(lambda: map_police_export(data))
    assert error.path == "child.nhs_number"
    assert "check digit" in error.problem
    assert bad not in str(error)


def test_a_child_without_identifier_needs_the_reason() -> None:
    data = export("encompass")
    data["child"] = {"given_name": "Sam"}
    assert error_of(lambda: map_police_export(data)).path == "child"
    data["child"]["identifier_absent_reason"] = "NOT_KNOWN"
    assert map_police_export(data)["child"]["identifier_absent_reason"] == "NOT_KNOWN"


def test_the_childs_residence_la_is_carried_when_the_export_gives_it() -> None:
    data = export("encompass")
    assert "residence_la" not in data["child"]
    assert map_police_export(data)["child"]["residence_la"] is None
    data["child"]["residence_la"] = "E09000019"
    assert map_police_export(data)["child"]["residence_la"] == "E09000019"
    data["child"]["residence_la"] = "Islington"
    error = error_of(lambda: map_police_export(data, at="[2]"))
    assert error.path == "[2].child.residence_la"
    assert "GSS" in error.problem


def test_an_unknown_export_type_is_refused() -> None:
    data = export("encompass")
    data["type"] = "stop_and_search"
    error = error_of(lambda: map_police_export(data))
    assert error.path == "$"
    assert "operation_encompass" in error.problem


def test_invalid_json_is_reported_by_line() -> None:
    error = error_of(lambda: parse_police_export(b'[\n {"type": "operation_encompass",\n ]'))
    assert error.path == "$"
    assert "line 3" in error.problem


def test_a_file_item_that_is_not_an_object_is_named() -> None:
    assert error_of(lambda: parse_police_export(b'[{"a": 1}, 7]')).path == "[1]"


def test_an_export_item_error_carries_its_index_and_no_value(tmp_path: Path) -> None:
    items = [export("encompass"), export("disclosure"), export("encompass")]
    items[2]["child"]["upn"] = "Z99900000004X"
    file = tmp_path / "export.json"
    file.write_text(json.dumps(items))
    records, errors = map_police_file(file)
    assert [r["police"]["kind"] for r in records] == [
        "OPERATION_ENCOMPASS",
        "PROTOCOL_2024_DISCLOSURE",
    ]
    (error,) = errors
    assert error.path == "[2].child.upn"
    assert "Z99900000004X" not in str(error)


# --- restriction attached on delivery --------------------------------------------------


def test_police_material_gets_the_confidential_to_proceedings_restriction() -> None:
    record = map_police_export(export("disclosure"))
    codes = [r["code"] for r in attach("police", record["sharing"])]
    assert codes == ["THIRD_PARTY_AUTHOR_CONSENT", "POLICE_CONFIDENTIAL_TO_PROCEEDINGS"]
    assert "POLICE_CONFIDENTIAL_TO_PROCEEDINGS" not in [
        r["code"] for r in attach("school", record["sharing"])
    ]


# --- the LA's disclosure request -------------------------------------------------------


def officer() -> dict[str, Any]:
    return {
        "name": "A Social Worker",
        "role": "Team manager",
        "agency_id": "la-camden",
        "agency_name": "London Borough of Camden",
        "contact": None,
    }


def request(**changes: Any) -> dict[str, Any]:
    args: dict[str, Any] = {
        "request_reference": "LA-REQ-2025-0042",
        "protocol": "2024",
        "requested_by": officer(),
        "police_force": "met-police",
        "child": {
            "nhs_number": make_nhs_number(41),
            "upn": make_upn(41),
            "identifier_absent_reason": None,
            "given_name": "Sam",
            "family_name": "Example",
            "date_of_birth": dt.date(2016, 5, 14),
            "residence_la": None,
        },
        "proceedings": {
            "stage": "ISSUED",
            "court": "Family Court at Central London",
            "case_number": "ZW25C00042",
            "hearing_date": dt.date(2025, 4, 2),
        },
        "material_requested": "Call-out logs and officers' notes for the family home.",
        "reasons": "Threshold in care proceedings rests on the incidents of January 2025.",
        "requested_at": dt.datetime(2025, 3, 6, 9, 0, tzinfo=UTC),
    }
    args.update(changes)
    return disclosure_request(**args)


def test_a_request_has_the_annex_fields_and_round_trips(contract: Contract) -> None:
    record = request(police_references=["CAD-2025-0309-1234"], period=(dt.date(2025, 1, 1), None))
    assert record["protocol"] == "PROTOCOL_2024"
    assert record["urgency"] == "PRIORITY"
    assert record["police_force"] == "met-police"
    assert record["requested_by"]["agency_id"] == "la-camden"
    assert record["proceedings"]["case_number"] == "ZW25C00042"
    assert isinstance(record["request_id"], uuid.UUID)
    decoded = contract.decode_as(
        c.DISCLOSURE_REQUEST, contract.encode(c.DISCLOSURE_REQUEST, record)
    )
    assert decoded == record


def test_contemplated_proceedings_need_no_case_number_or_hearing() -> None:
    record = request(
        protocol="2013",
        proceedings={"stage": "CONTEMPLATED", "court": "Family Court at Central London"},
    )
    assert record["protocol"] == "PROTOCOL_2013"
    assert record["proceedings"]["case_number"] is None
    assert record["proceedings"]["hearing_date"] is None


@pytest.mark.parametrize(
    ("changes", "path"),
    [
        ({"proceedings": {"stage": "ISSUED", "court": "Family Court"}}, "proceedings.case_number"),
        (
            {"proceedings": {"stage": "ISSUED", "court": " ", "case_number": "X1"}},
            "proceedings.court",
        ),
        ({"reasons": ""}, "reasons"),
        ({"material_requested": "\n"}, "material_requested"),
        ({"police_force": ""}, "police_force"),
        ({"request_reference": " "}, "request_reference"),
        ({"protocol": "2019"}, "protocol"),
        ({"urgency": "WHENEVER"}, "urgency"),
        ({"requested_at": dt.datetime(2025, 3, 6, 9, 0)}, "requested_at"),  # naive
        ({"period": (dt.date(2025, 2, 1), dt.date(2025, 1, 1))}, "period_end"),
        ({"requested_by": {**officer(), "name": ""}}, "requested_by.name"),
        ({"child": {"nhs_number": "1234567890"}}, "child.nhs_number"),
        ({"child": {"given_name": "Sam"}}, "child"),
    ],
)
def test_a_bad_request_names_the_field(changes: dict[str, Any], path: str) -> None:
    error = error_of(lambda: request(**changes))
    assert error.path == path
    assert error.schema == c.DISCLOSURE_REQUEST


def test_check_refuses_an_edited_request() -> None:
    record = request()
    edited = copy.deepcopy(record)
    edited["child"]["upn"] = "A123"
    assert error_of(lambda: check_disclosure_request(edited)).path == "child.upn"
    check_disclosure_request(record)


def test_the_gateway_decoding_a_request_applies_the_same_rules() -> None:
    """The request rules are the contract's: a reader decoding a request enforces them."""
    contract = default_contract()
    edited = copy.deepcopy(request())
    edited["proceedings"]["court"] = "  "
    data = contract.encode(c.DISCLOSURE_REQUEST, edited, check=False)
    assert error_of(lambda: contract.decode(data)).path == "proceedings.court"
    assert contract.decode(data, check=False)[1]["proceedings"]["court"] == "  "


# --- the feeds' enums (police export, health defaults) follow the contract ---------------


@pytest.mark.parametrize(
    ("literal", "enum", "left_out"),
    [
        (feeds.Urgency, "Urgency", set()),
        (feeds.RiskLevel, "RiskLevel", set()),
        (feeds.RecipientCategory, "RecipientCategory", set()),
        (feeds.ConsentStatus, "ConsentStatus", set()),
        (feeds.LawfulBasis, "LawfulBasis", set()),
        (feeds.NoConsentReason, "NoConsentReason", set()),
        (feeds.IdentifierAbsentReason, "IdentifierAbsentReason", set()),
        (feeds.ConcernCategory, "ConcernCategory", set()),  # the referral form's
        (
            feeds.AuthorRestriction,
            "RestrictionCode",
            {"THIRD_PARTY_AUTHOR_CONSENT", "POLICE_CONFIDENTIAL_TO_PROCEEDINGS"},  # defaults
        ),
    ],
)
def test_export_symbols_are_the_schema_enums(
    contract: Contract, literal: Any, enum: str, left_out: set[str]
) -> None:
    symbols = set(contract.parsed(f"org.safeguarding.exchange.{enum}")["symbols"])
    assert set(get_args(literal)) == symbols - left_out
