"""Referrals: the contract's rules, and the referral form (a MARF file) mapped to them,
with errors that name the field and never repeat a value."""

from __future__ import annotations

import copy
import datetime as dt
import json
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from producers.referral_form import ingest_forms, map_referral_form
from sgx.errors import ContractError
from sgx.wire import contract as c
from sgx.wire.contract import default_contract
from tests.samples import referral

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "referrals"
GP = "gp-hillside"


def form() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / "gp-neglect.json").read_text(encoding="utf-8"))
    return data


def test_a_referral_round_trips_and_is_a_notification_type() -> None:
    contract = default_contract()
    record = referral()
    assert c.REFERRAL in c.NOTIFICATION_TYPES
    assert c.SHORT_NAMES[c.REFERRAL] == "referral"
    name, decoded = contract.decode(contract.encode(c.REFERRAL, record))
    assert (name, decoded) == (c.REFERRAL, record)


@pytest.mark.parametrize(
    ("change", "path", "problem"),
    [
        ({"author__contact": None}, "author.contact", "how the local authority can reach"),
        ({"author__contact": "  "}, "author.contact", "is required in a referral"),
        ({"referral__concerns": []}, "referral.concerns", "at least one"),
        ({"referral__how_it_arose": ""}, "referral.how_it_arose", "must not be empty"),
        (
            {"referral__parents_told": False, "referral__parents_not_told_reason": None},
            "referral.parents_not_told_reason",
            "is required when parents_told is false",
        ),
        (
            {"referral__parents_not_told_reason": "UNDUE_DELAY"},
            "referral.parents_not_told_reason",
            "but parents_told is true",
        ),
        (
            {
                "referral__household": [
                    {
                        "name": "A",
                        "relationship": "",
                        "date_of_birth": None,
                        "lives_with_child": True,
                    }
                ]
            },
            "referral.household[0].relationship",
            "must not be empty",
        ),
        ({"assessment__facts": " "}, "assessment.facts", "must not be empty"),
    ],
)
def test_the_contract_names_what_a_referral_lacks(
    change: dict[str, Any], path: str, problem: str
) -> None:
    with pytest.raises(ContractError, match=problem) as refused:
        default_contract().check(c.REFERRAL, referral(**change))
    assert refused.value.path == path


def test_a_form_maps_to_a_referral_by_the_agency_sending_it() -> None:
    record = map_referral_form(form(), GP)
    assert record["notification_id"] == uuid.UUID("0190f3a2-5b7c-7d1e-8a9b-3c4d5e6f7a81")
    assert record["author"]["agency_id"] == GP
    assert record["author"]["contact"].startswith("020 7946 0100")
    assert record["authored_at"] == dt.datetime(2026, 11, 24, 10, 15, tzinfo=dt.UTC)
    assert record["child"]["residence_la"] == "E09000007"
    assert record["referral"]["concerns"] == ["NEGLECT", "PARENTAL_SUBSTANCE_MISUSE"]
    assert [m["relationship"] for m in record["referral"]["household"]] == [
        "mother",
        "mother's partner",
    ]
    assert record["sharing"]["consent"] == "GIVEN"
    assert record["sharing"]["legal_gateway"].startswith("Children Act 2004 s.11")
    # fact and opinion stay apart
    assert record["assessment"]["facts"].startswith("Mia has missed")
    assert record["assessment"]["professional_opinion"].startswith("Faltering growth")
    assert record["urgency"] == "PRIORITY"


def test_imminent_risk_makes_a_form_immediate_unless_it_says_otherwise() -> None:
    assert map_referral_form(form() | {"risk_level": "IMMINENT"}, GP)["urgency"] == "IMMEDIATE"
    routine = form() | {"risk_level": "IMMINENT", "urgency": "ROUTINE"}
    assert map_referral_form(routine, GP)["urgency"] == "ROUTINE"


@pytest.mark.parametrize(
    ("edit", "path"),
    [
        (lambda f: f.pop("parents_told"), "[2].parents_told"),
        (lambda f: f.update(concerns=[]), "[2].concerns"),
        (lambda f: f.update(concerns=["GOSSIP"]), "[2].concerns[0]"),
        (lambda f: f["referrer"].pop("contact"), "[2].referrer.contact"),
        (lambda f: f["household"][1].update(name=""), "[2].household[1].name"),
        (lambda f: f.update(nickname="x"), "[2].nickname"),
        (lambda f: f["child"].update(nhs_number="9434765910"), "[2].child.nhs_number"),
        (lambda f: f.update(parents_told=False), "[2].referral.parents_not_told_reason"),
        (lambda f: f.update(consent="REFUSED"), "[2].sharing.no_consent_reason"),
        (lambda f: f["referrer"].update(agency_id="gp-other"), "[2].referrer.agency_id"),
    ],
)
def test_a_bad_form_is_refused_naming_its_field_and_never_its_value(edit: Any, path: str) -> None:
    data = copy.deepcopy(form())
    edit(data)
    with pytest.raises(ContractError) as refused:
        map_referral_form(data, GP, at="[2]")
    assert refused.value.path == path
    assert "Mia" not in str(refused.value)
    assert "9434765910" not in str(refused.value)


class _Outbox:
    def __init__(self) -> None:
        self.kept: list[tuple[str, dict[str, Any]]] = []

    async def __call__(self, name: str, record: Mapping[str, Any]) -> uuid.UUID:
        self.kept.append((name, dict(record)))
        notification_id: uuid.UUID = record["notification_id"]
        return notification_id


async def test_a_file_sends_its_good_forms_and_reports_each_bad_one() -> None:
    outbox = _Outbox()
    report = await ingest_forms(
        FIXTURES / "two-forms-one-bad.json", "family-action-camden", outbox, default_contract()
    )
    assert [name for name, _ in outbox.kept] == [c.REFERRAL]
    (sent,) = report.referred
    assert sent.index == 0
    lines = list(report.lines())
    assert lines[0] == "sent 1 referral(s), 1 error(s)"
    assert lines[1] == f"sent    [0] referral  {sent.referral_id}"
    assert lines[2].startswith("error   referral form: field '[1].household[0].relationship'")
    record = outbox.kept[0][1]
    assert record["referral"]["parents_told"] is False
    assert record["referral"]["parents_not_told_reason"] == "RISK_TO_CHILD"
    assert record["assessment"]["child_views"]["what_was_said"].startswith("He said")


async def test_a_file_that_is_not_json_is_one_error(tmp_path: Path) -> None:
    broken = tmp_path / "form.json"
    broken.write_text('{"referrer": ', encoding="utf-8")
    report = await ingest_forms(broken, GP, _Outbox(), default_contract())
    assert report.referred == []
    (error,) = report.errors
    assert error.path == "$"
    assert "not valid JSON" in error.problem
