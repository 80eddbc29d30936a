"""Working days for referral deadlines: weekends and bank holidays, not school closures."""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from zoneinfo import ZoneInfo

import pytest

from sgx.domain.calendar import CalendarSettings, SchoolCalendar
from sgx.domain.working_days import is_working_day, working_days_after

LONDON = ZoneInfo("Europe/London")
ENGLAND = CalendarSettings().calendar()  # England's bank holidays


def london(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=LONDON)


def test_one_working_day_after_a_tuesday_afternoon_is_wednesday_afternoon() -> None:
    due = working_days_after(ENGLAND, london(2025, 3, 11, 15, 20), 1)
    assert due == london(2025, 3, 12, 15, 20)
    assert due.tzinfo is UTC


def test_a_friday_referral_is_due_on_monday_and_a_thursday_s_after_the_weekend() -> None:
    assert working_days_after(ENGLAND, london(2025, 3, 7, 16, 0), 1) == london(2025, 3, 10, 16, 0)
    assert working_days_after(ENGLAND, london(2025, 3, 6, 9, 0), 2) == london(2025, 3, 10, 9, 0)


def test_a_weekend_referral_is_due_by_the_end_of_the_next_working_day() -> None:
    saturday = london(2025, 3, 8, 10, 0)
    assert working_days_after(ENGLAND, saturday, 1) == london(2025, 3, 11)  # Monday's end
    assert working_days_after(ENGLAND, saturday, 0) == london(2025, 3, 10)  # Monday's start


def test_bank_holidays_are_not_working_days() -> None:
    # Good Friday 18 Apr and Easter Monday 21 Apr 2025
    thursday = london(2025, 4, 17, 11, 0)
    assert working_days_after(ENGLAND, thursday, 1) == london(2025, 4, 22, 11, 0)
    assert not is_working_day(ENGLAND, date(2025, 4, 21))
    easter_saturday = london(2025, 4, 19, 12, 0)
    assert working_days_after(ENGLAND, easter_saturday, 1) == london(2025, 4, 23)


def test_school_closures_are_working_days_for_children_s_social_care() -> None:
    half_term = SchoolCalendar(
        time(8, 30), LONDON, frozenset({date(2025, 2, 17), date(2025, 2, 18)})
    )
    assert not half_term.is_school_day(date(2025, 2, 17))
    assert is_working_day(half_term, date(2025, 2, 17))
    friday = london(2025, 2, 14, 14, 0)
    assert working_days_after(half_term, friday, 1) == london(2025, 2, 17, 14, 0)


def test_the_clock_time_is_local_across_the_clock_change() -> None:
    # Friday 28 Mar 2025 15:00 GMT; Monday 31 Mar is BST: 15:00 local is 14:00 UTC
    due = working_days_after(ENGLAND, datetime(2025, 3, 28, 15, 0, tzinfo=UTC), 1)
    assert due == datetime(2025, 3, 31, 14, 0, tzinfo=UTC)


def test_a_naive_moment_or_negative_days_are_refused() -> None:
    with pytest.raises(ValueError, match="aware"):
        working_days_after(ENGLAND, datetime(2025, 3, 7, 16, 0), 1)
    with pytest.raises(ValueError, match="negative"):
        working_days_after(ENGLAND, london(2025, 3, 7), -1)
