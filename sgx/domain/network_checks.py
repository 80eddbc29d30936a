"""Network checks: a MASH asks partner agencies what they hold, by a deadline from its rating.

For a contact open to no one, the MASH manager rates it (**BRAG**: Red, Amber, Green,
sometimes Blue) and the MASH asks partner agencies what they hold about the child and
household (an **information request**; the whole round is the **network check**). Each
agency answers within the rating's timescale, which the LA's agreement gives in **working
hours** (``[information_requests.hours]``; typically Red 4, Amber 24, Green 72).

A working hour is an hour of a working day (:func:`sgx.domain.working_days.is_working_day`:
a weekday that is not a bank holiday, in the calendar's zone): a request made on a
Saturday starts its clock at the start of Monday, and a Red request made at 22:00 on a
Friday is due at 02:00 on Monday. Nothing here reads the clock.

The rules of the records beyond their Avro schema (:func:`check_request`,
:func:`check_answer`) are applied by the LA, the agency's producer and the gateway; a
failure is a ContractError naming the field.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, time, timedelta
from typing import Any

from sgx.domain.calendar import SEARCH_DAYS, SchoolCalendar
from sgx.domain.identifiers import check_nhs_number, check_upn
from sgx.domain.working_days import is_working_day
from sgx.errors import ConfigError, ContractError

RATINGS = ("RED", "AMBER", "GREEN", "BLUE")
OUTCOMES = ("HELD", "NOTHING_HELD", "CANNOT_MATCH")
# What identifies a child to an asked agency (fields of ChildMatch); the agreement gives
# each agency kind the ones it can match against its own records.
MATCH_FIELDS = ("nhs_number", "upn", "given_name", "family_name", "date_of_birth", "postcode")
ASKED_MAX = 1000  # characters: what the MASH needs to know, not the case notes
NAME_MAX = 200
TEXT_MAX = 10_000
MAX_HOURS = 240  # a longer time to answer a network check is a typo, not an agreement
_DAY = timedelta(days=1)


def working_hours_after(calendar: SchoolCalendar, start: datetime, hours: int) -> datetime:
    """The moment ``hours`` working hours after ``start`` (aware), in UTC."""
    if start.tzinfo is None:
        raise ValueError("working_hours_after needs an aware datetime")
    if hours < 0:
        raise ValueError(f"hours must not be negative: {hours}")
    local = start.astimezone(calendar.zone)
    day, clock = local.date(), local.time().replace(tzinfo=None)
    left = timedelta(hours=hours)
    for _ in range(SEARCH_DAYS + hours // 24 + 1):
        if not is_working_day(calendar, day):
            day, clock = day + _DAY, time(0, 0)
            continue
        into = timedelta(hours=clock.hour, minutes=clock.minute, seconds=clock.second,
                         microseconds=clock.microsecond)  # fmt: skip
        rest_of_day = _DAY - into
        if left < rest_of_day:
            moment = datetime.combine(day, time(0, 0), tzinfo=calendar.zone) + into + left
            return moment.astimezone(UTC)
        left -= rest_of_day
        day, clock = day + _DAY, time(0, 0)
    raise ConfigError(f"the calendar has no working day within {SEARCH_DAYS} days")


def _text(record: Mapping[str, Any], key: str, limit: int, schema: str, *, path: str = "") -> None:
    value = record.get(key)
    if value is None:
        return
    if not str(value).strip():
        raise ContractError(path + key, "must not be blank", schema=schema)
    if len(str(value)) > limit:
        raise ContractError(path + key, f"is longer than {limit} characters", schema=schema)


def check_request(record: Mapping[str, Any], schema: str) -> None:
    """The rules of an InformationRequest beyond its schema."""
    _text(record, "requested_by", NAME_MAX, schema)
    _text(record, "asked", ASKED_MAX, schema)
    _text(record, "agency", NAME_MAX, schema)
    child = record["child"]
    if not any(child.get(name) for name in MATCH_FIELDS):
        raise ContractError("child", "names nothing an agency could match", schema=schema)
    if child.get("nhs_number"):
        check_nhs_number(child["nhs_number"], "child.nhs_number")
    if child.get("upn"):
        check_upn(child["upn"], "child.upn")
    informed = record["family_informed"]
    _text(informed, "decided_by", NAME_MAX, schema, path="family_informed.")
    if informed["told"] and informed.get("exception"):
        raise ContractError(
            "family_informed.exception", "is recorded only when the family was not told",
            schema=schema,
        )  # fmt: skip
    if not informed["told"] and not informed.get("exception"):
        raise ContractError(
            "family_informed.exception",
            "is required when the family was not told (Camden's guidance: tell the parents "
            "before network checks unless that would put the child at risk, interfere with a "
            "criminal investigation or cause undue delay)",
            schema=schema,
        )


def check_answer(record: Mapping[str, Any], schema: str) -> None:
    """The rules of an InformationAnswer beyond its schema."""
    _text(record, "answered_by", NAME_MAX, schema)
    _text(record, "facts", TEXT_MAX, schema)
    _text(record, "professional_opinion", TEXT_MAX, schema)
    held = record["outcome"] == "HELD"
    if held and not record.get("facts"):
        raise ContractError("facts", "are required when information is held", schema=schema)
    if not held and (record.get("facts") or record.get("professional_opinion")):
        raise ContractError(
            "facts", f"an answer {record['outcome']} carries no information", schema=schema
        )
