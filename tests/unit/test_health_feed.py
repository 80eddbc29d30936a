"""The health feed: FHIR R4 resources mapped to health updates (no broker here)."""

from __future__ import annotations

import copy
import datetime as dt
import json
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from producers.health import (
    EXT_SHARING,
    BundleError,
    HealthFeedDefaults,
    Mapped,
    ingest_bundle,
    map_bundle,
)
from safeguard.cli_health import health
from sgx.errors import ContractError
from sgx.wire import contract as c
from sgx.wire.contract import default_contract

FHIR = Path(__file__).resolve().parents[1] / "fixtures" / "fhir"
NOW = dt.datetime(2026, 11, 17, 9, 0, tzinfo=dt.UTC)
DEFAULTS = HealthFeedDefaults(
    agency_id="nhs-royal-free",
    agency_name="Royal Free London NHS Foundation Trust",
    contact="safeguarding@nhs-royal-free.example",
)
AMIRA_NHS = "9990000824"


def _bundle(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FHIR / name).read_text())
    return data


def _map(
    bundle: Mapping[str, Any], defaults: HealthFeedDefaults = DEFAULTS
) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """Records by resource label, and the error lines."""
    mapped, errors = map_bundle(bundle, defaults, now=NOW)
    return {m.resource: m.record for m in mapped}, [str(e) for e in errors]


def _resource(bundle: dict[str, Any], label: str) -> dict[str, Any]:
    for entry in bundle["entry"]:
        res = entry.get("resource", {})
        if f"{res.get('resourceType')}/{res.get('id')}" == label:
            found: dict[str, Any] = res
            return found
    raise KeyError(label)


class Recorder:
    """A submit callable that validates like the producer does and remembers what it got."""

    def __init__(self) -> None:
        self.records: list[Mapping[str, Any]] = []
        self.contract = default_contract()

    async def __call__(self, name: str, record: Mapping[str, Any]) -> uuid.UUID:
        assert name == c.HEALTH_UPDATE
        decoded = self.contract.decode_as(name, self.contract.encode(name, record))
        assert decoded["child"] == record["child"]  # every field present, residence_la too
        self.records.append(record)
        return uuid.UUID(str(record["notification_id"]))


# -- each mapping ------------------------------------------------------------------------


def test_emergency_encounter_maps_to_an_unscheduled_care_attendance() -> None:
    records, errors = _map(_bundle("health_bundle.json"))
    assert errors == []
    record = records["Encounter/enc-ae-1"]
    assert record["health"] == {
        "event_kind": "UNSCHEDULED_CARE_ATTENDANCE",
        "occurred_at": dt.datetime(2026, 11, 9, 23, 40, tzinfo=dt.UTC),
        "setting": "Royal Free Hospital emergency department",
        "clinical_detail": "Reason for attendance: Scald to left forearm",
    }
    assert record["child"] == {
        "nhs_number": AMIRA_NHS,
        "upn": None,
        "identifier_absent_reason": None,
        "given_name": "Amira Rose",  # the official name, not the usual one
        "family_name": "Zephyrine",
        "date_of_birth": dt.date(2023, 2, 10),
        "residence_la": None,  # FHIR gives an address, not the LA's GSS code
    }
    assert record["author"] == {
        "name": "Dr Sam Patel",
        "role": "Emergency department consultant",
        "agency_id": "nhs-royal-free",
        "agency_name": "Royal Free London NHS Foundation Trust",
        "contact": "sam.patel@nhs-royal-free.example",
    }
    assessment = record["assessment"]
    assert assessment["professional_opinion"] == (
        "Explanation given does not fit the injury pattern."
    )
    assert assessment["risk_level"] == "HIGH"  # from the risk-level extension
    assert record["urgency"] == "PRIORITY"  # the configured urgency for this kind
    assert record["authored_at"] == dt.datetime(2026, 11, 10, 2, 30, tzinfo=dt.UTC)
    # facts are the structured what/when/where; clinical reason and opinion stay apart
    assert "2026-11-09 23:40 UTC" in assessment["facts"]
    assert "Home, safeguarding referral made" in assessment["facts"]
    assert "Scald" not in assessment["facts"]
    assert "does not fit" not in assessment["facts"]
    default_contract().check(c.HEALTH_UPDATE, record)


def test_noshow_appointment_maps_to_was_not_brought() -> None:
    records, _ = _map(_bundle("health_bundle.json"))
    record = records["Appointment/ap-wnb-1"]
    assert record["health"] == {
        "event_kind": "WAS_NOT_BROUGHT",
        "occurred_at": dt.datetime(2026, 11, 12, 9, 30, tzinfo=dt.UTC),
        "setting": "Kentish Town Health Centre",
        "clinical_detail": "Appointment for: Developmental review",
    }
    assert record["child"]["nhs_number"] == AMIRA_NHS
    assert "Was not brought to a community paediatrics appointment" in record["assessment"]["facts"]
    assert record["assessment"]["professional_opinion"] is None
    # no practitioner named: the agency's configured author
    assert record["author"]["name"] == DEFAULTS.author_name
    assert record["author"]["role"] == DEFAULTS.author_role
    assert record["author"]["contact"] == DEFAULTS.contact
    assert record["authored_at"] == NOW
    assert record["urgency"] == "ROUTINE"


def test_health_visitor_observation_maps_with_fact_and_opinion_apart() -> None:
    records, _ = _map(_bundle("health_bundle.json"))
    record = records["Observation/obs-hv-1"]
    assert record["health"]["event_kind"] == "HEALTH_VISITOR_OBSERVATION"
    assert record["health"]["occurred_at"] == dt.datetime(2026, 11, 16, 14, 0, tzinfo=dt.UTC)
    assert record["health"]["setting"] == DEFAULTS.observation_setting
    assert record["health"]["clinical_detail"] == "Value: Home cold; little food in the kitchen"
    assert record["author"]["name"] == "Hannah Vickers"
    assert record["author"]["role"] == "Health visitor"  # PractitionerRole.code display
    assert record["author"]["contact"] == "020 7000 0001"
    assessment = record["assessment"]
    assert assessment["professional_opinion"] == (
        "Concern about neglect\nMother appeared low in mood and withdrawn."
    )
    assert "Home environment assessment" in assessment["facts"]
    assert "neglect" not in assessment["facts"]
    assert "Home cold" not in assessment["facts"]
    assert record["authored_at"] == dt.datetime(2026, 11, 16, 16, 5, tzinfo=dt.UTC)  # issued
    # the sharing extension on the resource: consent given, an onward consent
    assert record["sharing"]["consent"] == "GIVEN"
    assert record["sharing"]["no_consent_reason"] is None
    assert record["sharing"]["onward_consent"] == ["OTHER_PROFESSIONAL"]


def test_without_extension_or_consent_the_configured_sharing_basis_applies() -> None:
    defaults = DEFAULTS.model_copy(
        update={"legal_gateway": "Children Act 1989 s.47", "no_consent_reason": "UNDUE_DELAY"}
    )
    records, _ = _map(_bundle("health_bundle.json"), defaults)
    assert records["Encounter/enc-ae-1"]["sharing"] == {
        "consent": "NOT_SOUGHT",
        "lawful_basis": "PUBLIC_TASK",
        "legal_gateway": "Children Act 1989 s.47",
        "no_consent_reason": "UNDUE_DELAY",
        "restrictions": [],
        "onward_consent": [],
    }


@pytest.mark.parametrize(
    ("status", "provision", "expected", "reason"),
    [
        ("active", "permit", "GIVEN", None),
        ("active", "deny", "REFUSED", "RISK_TO_CHILD"),
        ("inactive", "permit", "WITHDRAWN", "RISK_TO_CHILD"),
        ("draft", "permit", "NOT_SOUGHT", "RISK_TO_CHILD"),
    ],
)
def test_a_consent_resource_for_the_child_sets_the_consent(
    status: str, provision: str, expected: str, reason: str | None
) -> None:
    bundle = _bundle("health_bundle.json")
    consent = {
        "resourceType": "Consent",
        "id": "cons-1",
        "status": status,
        "scope": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/consentscope",
                    "code": "patient-privacy",
                }
            ]
        },
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
        "patient": {"reference": "Patient/pt-amira"},
        "dateTime": "2026-11-01T10:00:00Z",
        "policyRule": {"text": "Information sharing to safeguard children"},
        "provision": {"type": provision},
    }
    bundle["entry"].append({"resource": consent})
    records, errors = _map(bundle)
    assert errors == []
    sharing = records["Encounter/enc-ae-1"]["sharing"]
    assert (sharing["consent"], sharing["no_consent_reason"]) == (expected, reason)
    # the extension on the observation still wins over the Consent resource
    assert records["Observation/obs-hv-1"]["sharing"]["consent"] == "GIVEN"


def test_an_attendance_that_is_not_unscheduled_care_is_refused() -> None:
    bundle = _bundle("health_bundle.json")
    _resource(bundle, "Encounter/enc-ae-1")["class"]["code"] = "AMB"
    records, errors = _map(bundle)
    assert "Encounter/enc-ae-1" not in records
    assert errors == [
        "entry[7] Encounter/enc-ae-1: class: is AMB: not an unscheduled-care attendance "
        "(class EMER, or priority EM or UR)"
    ]


def test_an_urgent_priority_encounter_is_unscheduled_care() -> None:
    records, errors = _map(_bundle("no_nhs_number_bundle.json"))
    assert errors == []
    record = records["Encounter/enc-untraced"]
    assert record["health"]["event_kind"] == "UNSCHEDULED_CARE_ATTENDANCE"
    assert record["health"]["setting"] == "urgent treatment centre"


def test_an_appointment_that_was_kept_is_not_a_was_not_brought() -> None:
    bundle = _bundle("health_bundle.json")
    _resource(bundle, "Appointment/ap-wnb-1")["status"] = "fulfilled"
    records, errors = _map(bundle)
    assert "Appointment/ap-wnb-1" not in records
    assert errors == [
        "entry[8] Appointment/ap-wnb-1: status: is fulfilled: only a noshow appointment "
        "(was not brought) is shared"
    ]


def test_references_resolve_by_full_url_as_well_as_by_type_and_id() -> None:
    bundle = _bundle("health_bundle.json")
    appointment = _resource(bundle, "Appointment/ap-wnb-1")
    appointment["participant"][0]["actor"]["reference"] = (
        "https://fhir.royalfree.example/Patient/pt-amira"
    )
    appointment["participant"].append(
        {"actor": {"reference": "PractitionerRole/prr-hv"}, "status": "accepted"}
    )
    records, errors = _map(bundle)
    assert errors == []
    record = records["Appointment/ap-wnb-1"]
    assert record["child"]["nhs_number"] == AMIRA_NHS
    assert (record["author"]["name"], record["author"]["role"]) == (
        "Hannah Vickers",
        "Health visitor",
    )


def test_an_adult_patient_is_refused() -> None:
    bundle = _bundle("health_bundle.json")
    _resource(bundle, "Patient/pt-amira")["birthDate"] = "2005-01-01"
    records, errors = _map(bundle)
    assert records == {}
    assert errors[0] == (
        "entry[7] Encounter/enc-ae-1: subject: Patient/pt-amira was 18 or over at the event: "
        "not a child"
    )


# -- the child's identifier ---------------------------------------------------------------


def test_a_bad_nhs_number_check_digit_is_refused_with_a_precise_error() -> None:
    bundle = _bundle("health_bundle.json")
    _resource(bundle, "Patient/pt-amira")["identifier"][1]["value"] = "9990000825"
    records, errors = _map(bundle)
    assert records == {}
    assert errors == [
        "entry[6] Patient/pt-amira: identifier[1].value: check digit is 5 but should be 4",
        "entry[7] Encounter/enc-ae-1: subject: Patient/pt-amira has an error (see entry[6])",
        "entry[8] Appointment/ap-wnb-1: participant[0].actor: Patient/pt-amira has an error "
        "(see entry[6])",
        "entry[9] Observation/obs-hv-1: subject: Patient/pt-amira has an error (see entry[6])",
    ]
    assert not any("9990000825" in e for e in errors)  # the identifier is never echoed


def test_a_bad_nhs_number_error_is_a_contract_error_naming_the_path() -> None:
    bundle = _bundle("health_bundle.json")
    _resource(bundle, "Patient/pt-amira")["identifier"][1]["value"] = "99900008"
    _, errors = map_bundle(bundle, DEFAULTS, now=NOW)
    first = errors[0]
    assert isinstance(first, ContractError)
    assert (first.index, first.resource, first.path) == (
        6,
        "Patient/pt-amira",
        "identifier[1].value",
    )
    assert first.problem == "must be 10 digits (got 8 characters)"


def test_a_child_without_an_nhs_number_still_goes_with_the_reason() -> None:
    records, errors = _map(_bundle("no_nhs_number_bundle.json"))
    assert errors == []
    untraced = records["Encounter/enc-untraced"]["child"]
    assert untraced["nhs_number"] is None
    assert untraced["identifier_absent_reason"] == "UNREASONABLE_DELAY"  # temp-unknown
    nothing = records["Observation/obs-nothing"]["child"]
    assert nothing["nhs_number"] is None
    assert nothing["identifier_absent_reason"] == "NOT_KNOWN"  # the configured default
    for record in records.values():
        default_contract().check(c.HEALTH_UPDATE, record)


def test_the_configured_absent_reason_applies_when_the_bundle_gives_none() -> None:
    defaults = DEFAULTS.model_copy(update={"identifier_absent_reason": "NOT_ISSUED"})
    records, _ = _map(_bundle("no_nhs_number_bundle.json"), defaults)
    assert records["Observation/obs-nothing"]["child"]["identifier_absent_reason"] == "NOT_ISSUED"
    # a date-only effective time reads as a date in the facts
    assert "for 2026-11-16." in records["Observation/obs-nothing"]["assessment"]["facts"]


# -- a malformed bundle -----------------------------------------------------------------

MALFORMED_ERRORS = [
    "entry[2] Appointment/ap-7: status: value is not a valid enumeration member (permitted: "
    "proposed, pending, booked, arrived, fulfilled, cancelled, noshow, entered-in-error, "
    "checked-in, waitlist)",
    "entry[3] Observation/obs-ghost: subject: reference Patient/pt-ghost is not in the bundle",
    "entry[4] MedicationRequest/mr-1: resourceType: MedicationRequest is not supported here "
    "(supported: Appointment, Consent, Encounter, Location, Observation, Organization, "
    "Patient, Practitioner, PractitionerRole)",
    "entry[5] Encounter/enc-baddate: period.start: DateTime value string does not match "
    "spec regex.",
    "entry[6] Patient/pt-bad: identifier[0].value: check digit is 6 but should be 5",
    "entry[7] Appointment/ap-bad: participant[0].actor: Patient/pt-bad has an error (see entry[6])",
    "entry[9]: resource: is missing: every entry must carry a resource",
]


async def test_a_malformed_bundle_gives_precise_errors_and_pushes_the_good_part() -> None:
    submit = Recorder()
    report = await ingest_bundle(FHIR / "malformed_bundle.json", submit, DEFAULTS, now=NOW)
    assert [str(e) for e in report.errors] == MALFORMED_ERRORS
    assert [(p.index, p.resource) for p in report.pushed] == [
        (1, "Encounter/enc-ok"),
        (8, "Appointment/ap-ok"),
    ]
    assert report.pushed_ids == [uuid.UUID(str(r["notification_id"])) for r in submit.records]
    kinds = [r["health"]["event_kind"] for r in submit.records]
    assert kinds == ["UNSCHEDULED_CARE_ATTENDANCE", "WAS_NOT_BROUGHT"]
    # no name, NHS number or free text of the bundle leaves in an error
    for secret in ("Leopold", "Quixotic", "9990000840", "9990000906", "19/11/2026"):
        assert not any(secret in str(e) for e in report.errors)


def test_model_errors_name_the_nested_fhir_path() -> None:
    bundle = _bundle("health_bundle.json")
    enc = _resource(bundle, "Encounter/enc-ae-1")
    enc["participant"][0]["individual"]["reference"] = 7
    enc["hospitalization"]["colour"] = "blue"
    _, errors = _map(bundle)
    assert sorted(errors) == [
        "entry[7] Encounter/enc-ae-1: hospitalization.colour: Extra inputs are not permitted",
        "entry[7] Encounter/enc-ae-1: participant[0].individual.reference: Input should be a "
        "valid string",
    ]


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b'{"resourceType": "Bundle",\n "entry": [}', "bundle: line 2 column 12: not valid JSON"),
        (b"[1, 2]", "bundle: $: must be a JSON object, got list"),
        (b'{"resourceType": "Patient"}', "bundle: resourceType: must be Bundle"),
        (b'{"resourceType": "Bundle", "type": "stack"}', "bundle: type: value is not a valid"),
        (b'{"resourceType": "Bundle", "type": "collection", "entry": {}}', "bundle: entry:"),
    ],
)
async def test_a_bundle_that_cannot_be_read_is_reported(data: bytes, expected: str) -> None:
    submit = Recorder()
    report = await ingest_bundle(data, submit, DEFAULTS)
    assert report.pushed == []
    assert submit.records == []
    assert str(report.errors[0]).startswith(expected)


def test_a_sharing_extension_that_breaks_the_contract_is_reported_on_its_entry() -> None:
    bundle = _bundle("health_bundle.json")
    enc = _resource(bundle, "Encounter/enc-ae-1")
    enc["extension"].append(
        {"url": EXT_SHARING, "extension": [{"url": "lawfulBasis", "valueCode": "CONSENT"}]}
    )
    records, errors = _map(bundle)
    assert "Encounter/enc-ae-1" not in records
    assert errors == [
        "entry[7] Encounter/enc-ae-1: health update field sharing.lawful_basis: is CONSENT but "
        "sharing.consent is NOT_SOUGHT"
    ]


async def test_a_contract_error_from_submit_is_reported_against_its_entry() -> None:
    async def refuse(name: str, record: Mapping[str, Any]) -> uuid.UUID:
        raise ContractError("author.contact", "is not reachable", schema=name)

    report = await ingest_bundle(FHIR / "health_bundle.json", refuse, DEFAULTS, now=NOW)
    assert report.pushed == []
    assert [e.index for e in report.errors] == [7, 8, 9]
    assert all(isinstance(e, BundleError) and e.mapped for e in report.errors)
    assert str(report.errors[0]) == (
        "entry[7] Encounter/enc-ae-1: health update field author.contact: is not reachable"
    )


def test_ids_are_stable_for_the_same_resource_and_new_for_a_changed_one() -> None:
    bundle = _bundle("health_bundle.json")
    first, _ = map_bundle(bundle, DEFAULTS, now=NOW)
    again, _ = map_bundle(copy.deepcopy(bundle), DEFAULTS, now=NOW + dt.timedelta(days=1))
    assert _ids(first) == _ids(again)
    _resource(bundle, "Observation/obs-hv-1")["status"] = "amended"
    changed, _ = map_bundle(bundle, DEFAULTS, now=NOW)
    assert _ids(changed)[:2] == _ids(first)[:2]
    assert _ids(changed)[2] != _ids(first)[2]
    other_agency = DEFAULTS.model_copy(update={"agency_id": "nhs-whittington"})
    assert set(_ids(map_bundle(bundle, other_agency, now=NOW)[0])).isdisjoint(_ids(changed))


def _ids(mapped: list[Mapped]) -> list[uuid.UUID]:
    return [m.record["notification_id"] for m in mapped]


# -- the command line --------------------------------------------------------------------


def test_cli_reports_an_unreadable_bundle_without_reaching_the_broker(tmp_path: Path) -> None:
    bad = tmp_path / "bundle.json"
    bad.write_text('{"resourceType": "Bundle", "entry": [')
    defaults = tmp_path / "defaults.toml"
    defaults.write_text('agency_name = "Royal Free London NHS Foundation Trust"\n')
    result = CliRunner().invoke(
        health,
        ["ingest", str(bad), "--home", str(tmp_path), "--defaults", str(defaults)],
        env={"SGX_KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1"},  # nothing listens there
    )
    assert result.exit_code == 1, result.output
    assert result.output.splitlines() == [
        "pushed 0 health update(s), 1 error(s)",
        "error   bundle: line 1 column 38: not valid JSON: Expecting value",
    ]


def test_cli_refuses_bad_defaults_with_a_config_error(tmp_path: Path) -> None:
    defaults = tmp_path / "defaults.toml"
    defaults.write_text('agency_name = "Royal Free"\nconsent = "MAYBE"\n')
    result = CliRunner().invoke(
        health,
        ["ingest", str(FHIR / "health_bundle.json"), "--defaults", str(defaults)],
    )
    assert result.exit_code == 2
    assert "consent: Input should be 'GIVEN', 'NOT_SOUGHT', 'REFUSED' or 'WITHDRAWN'" in (
        result.output
    )
