"""Network checks: deadlines in working hours, the agreement's terms, the records' rules."""

from __future__ import annotations

import tomllib
import uuid
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from gateway.agreement import Agreement
from gateway.information_terms import InformationTerms
from sgx.domain.calendar import CalendarSettings
from sgx.domain.identifiers import make_nhs_number
from sgx.domain.network_checks import working_hours_after
from sgx.errors import ConfigError, ContractError
from sgx.settings import REPO_ROOT
from sgx.wire import contract as c
from sgx.wire.contract import default_contract

LONDON = ZoneInfo("Europe/London")
ENGLAND = CalendarSettings().calendar()


def london(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=LONDON)


def test_hours_run_on_working_days_only() -> None:
    # Monday 10:00 + 4 h; Friday 22:00 + 4 h runs 2 h on Friday and 2 h into Monday.
    assert working_hours_after(ENGLAND, london(2025, 3, 10, 10), 4) == london(2025, 3, 10, 14)
    assert working_hours_after(ENGLAND, london(2025, 3, 7, 22), 4) == london(2025, 3, 10, 2)
    # Saturday starts at the start of Monday; 72 h from Monday 09:00 is Thursday 09:00.
    assert working_hours_after(ENGLAND, london(2025, 3, 8, 11), 24) == london(2025, 3, 11)
    assert working_hours_after(ENGLAND, london(2025, 3, 10, 9), 72) == london(2025, 3, 13, 9)
    due = working_hours_after(ENGLAND, london(2025, 12, 24, 16), 24)
    assert due == london(2025, 12, 29, 16)  # Christmas and Boxing Day, then the weekend
    assert due.tzinfo is UTC


def test_a_naive_or_negative_start_is_refused() -> None:
    with pytest.raises(ValueError, match="aware"):
        working_hours_after(ENGLAND, datetime(2025, 3, 10, 10), 4)
    with pytest.raises(ValueError, match="negative"):
        working_hours_after(ENGLAND, london(2025, 3, 10), -1)


def test_the_partnership_s_terms() -> None:
    agreement = Agreement.load(REPO_ROOT / "gateway" / "agreement.toml", default_contract())
    terms = agreement.information
    assert terms.hours == {"RED": 4, "AMBER": 24, "GREEN": 72}
    assert "school" in terms.asked
    assert terms.auto_answer == frozenset({"school"})
    assert "nhs_number" not in terms.match["school"]
    assert "upn" in terms.match["school"]
    assert "upn" not in terms.match["health"]


@pytest.mark.parametrize(
    ("section", "says"),
    [
        ({"hours": {"purple": 4}}, "hours.purple: unknown rating"),
        ({"hours": {"red": 0}}, "from 1 to"),
        ({"asked": ["school"]}, "no identifiers for ['school']"),
        ({"asked": ["local_authority"]}, "not partner agency kinds"),
        ({"match": {"school": ["shoe_size"]}}, "are not identifiers"),
        ({"auto_answer": ["police"]}, "may not be asked"),
        ({"ask": []}, "unknown key(s) ['ask']"),
    ],
)
def test_bad_terms_are_refused_by_name(section: dict[str, Any], says: str) -> None:
    with pytest.raises(ConfigError, match="information_requests") as caught:
        InformationTerms.parse(section, "agreement.toml")
    assert says in str(caught.value)


def request(**fields: Any) -> dict[str, Any]:
    return {
        "request_id": uuid.uuid4(),
        "local_authority": "la-camden",
        "agency": "school-hillside",
        "rating": "AMBER",
        "child": {"given_name": "Amira", "family_name": "Zephyrine",
                  "date_of_birth": date(2016, 4, 1), "nhs_number": make_nhs_number(41)},
        "asked": "Attendance, exclusions and any concerns this term",
        "requested_by": "mash-duty-1",
        "requested_at": datetime.now(UTC),
        "family_informed": {"told": True, "exception": None, "decided_by": "mash-manager"},
        **fields,
    }  # fmt: skip


def answer(**fields: Any) -> dict[str, Any]:
    return {
        "answer_id": uuid.uuid4(), "request_id": uuid.uuid4(), "outcome": "HELD",
        "local_authority": "la-camden",
        "facts": "Attendance 82% this term", "professional_opinion": None,
        "answered_by": "DSL", "answered_at": datetime.now(UTC),
        **fields,
    }  # fmt: skip


def test_a_request_and_an_answer_round_trip() -> None:
    contract = default_contract()
    sent = request()
    name, back = contract.decode(contract.encode(c.INFORMATION_REQUEST, sent))
    assert name == c.INFORMATION_REQUEST
    assert back["child"] == {"upn": None, "postcode": None, **sent["child"]}
    assert back["deadline"] is None  # the gateway sets it
    name, back = contract.decode(contract.encode(c.INFORMATION_ANSWER, answer()))
    assert back["restrictions"] == []
    assert back["automatic"] is False


@pytest.mark.parametrize(
    ("record", "field"),
    [
        (request(family_informed={"told": False, "exception": None, "decided_by": "x"}),
         "family_informed.exception"),
        (request(family_informed={"told": True, "exception": "UNDUE_DELAY", "decided_by": "x"}),
         "family_informed.exception"),
        (request(child={"nhs_number": "1234567890"}), "child.nhs_number"),
        (request(child={}), "child"),
        (request(asked=" "), "asked"),
    ],
)  # fmt: skip
def test_a_bad_request_names_its_field(record: dict[str, Any], field: str) -> None:
    with pytest.raises(ContractError) as caught:
        default_contract().encode(c.INFORMATION_REQUEST, record)
    assert f"'{field}'" in str(caught.value)


@pytest.mark.parametrize(
    ("record", "field"),
    [
        (answer(facts=None), "facts"),
        (answer(outcome="NOTHING_HELD"), "facts"),
        (answer(outcome="CANNOT_MATCH", facts=None, professional_opinion="odd"), "facts"),
    ],
)
def test_a_bad_answer_names_its_field(record: dict[str, Any], field: str) -> None:
    with pytest.raises(ContractError) as caught:
        default_contract().encode(c.INFORMATION_ANSWER, record)
    assert f"'{field}'" in str(caught.value)


def test_an_la_may_agree_its_own_hours(tmp_path: Path) -> None:
    data = tomllib.loads((REPO_ROOT / "gateway" / "agreement.toml").read_text())
    data["information_requests"]["hours"] = {"red": 2, "amber": 24, "green": 72, "blue": 120}
    terms = InformationTerms.parse(data["information_requests"], str(tmp_path))
    assert terms.hours["RED"] == 2
    assert terms.hours["BLUE"] == 120
