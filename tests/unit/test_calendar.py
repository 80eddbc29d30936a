"""The school-day calendar: weekends, holidays, bank holidays, the start time and DST."""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from sgx.domain.calendar import CalendarSettings, SchoolCalendar, parse_days, read_days
from sgx.errors import ConfigError

LONDON = ZoneInfo("Europe/London")
PLAIN = SchoolCalendar(time(8, 30), LONDON)  # weekends only


def london(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=LONDON)


def test_a_friday_evening_incident_is_due_on_monday_morning() -> None:
    friday_evening = london(2025, 3, 7, 19, 0)
    assert PLAIN.next_school_day_start(friday_evening) == london(2025, 3, 10, 8, 30)


def test_a_holiday_monday_moves_the_deadline_to_tuesday() -> None:
    calendar = SchoolCalendar(time(8, 30), LONDON, frozenset({date(2025, 3, 10)}))
    assert calendar.next_school_day_start(london(2025, 3, 7, 19, 0)) == london(2025, 3, 11, 8, 30)
    assert not calendar.is_school_day(date(2025, 3, 10))


def test_before_the_start_of_a_school_day_it_is_due_that_morning() -> None:
    assert PLAIN.next_school_day_start(london(2025, 3, 11, 7, 0)) == london(2025, 3, 11, 8, 30)
    # exactly at the start, and after it: the next school day
    assert PLAIN.next_school_day_start(london(2025, 3, 11, 8, 30)) == london(2025, 3, 12, 8, 30)
    assert PLAIN.next_school_day_start(london(2025, 3, 11, 10, 0)) == london(2025, 3, 12, 8, 30)


def test_the_start_is_local_time_across_the_clock_change() -> None:
    # 28 Mar 2025 is GMT (08:30 = 08:30 UTC); 31 Mar 2025 is BST (08:30 = 07:30 UTC).
    friday = datetime(2025, 3, 28, 10, 0, tzinfo=UTC)
    assert PLAIN.next_school_day_start(friday) == datetime(2025, 3, 31, 7, 30, tzinfo=UTC)
    assert PLAIN.day_start(date(2025, 3, 27)) == datetime(2025, 3, 27, 8, 30, tzinfo=UTC)


def test_english_bank_holidays_close_schools_by_default() -> None:
    calendar = CalendarSettings().calendar()
    # Good Friday 18 Apr and Easter Monday 21 Apr 2025
    assert not calendar.is_school_day(date(2025, 4, 18))
    assert not calendar.is_school_day(date(2025, 4, 21))
    due = calendar.next_school_day_start(london(2025, 4, 17, 18, 0))
    assert due == london(2025, 4, 22, 8, 30)


def test_settings_read_holidays_ranges_start_time_and_zone(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    holidays = tmp_path / "holidays.txt"
    holidays.write_text("# spring half-term\n2025-02-17..2025-02-21\n\n2025-02-24  # INSET\n")
    monkeypatch.setenv("SGX_SCHOOL_DAY_START", "09:00")
    monkeypatch.setenv("SGX_SCHOOL_TIMEZONE", "Europe/London")
    monkeypatch.setenv("SGX_SCHOOL_BANK_HOLIDAYS", "")
    monkeypatch.setenv("SGX_SCHOOL_HOLIDAYS", '["2025-02-25"]')
    monkeypatch.setenv("SGX_SCHOOL_HOLIDAYS_FILE", str(holidays))
    calendar = CalendarSettings().calendar()
    assert calendar.bank_holidays is None
    assert calendar.next_school_day_start(london(2025, 2, 14, 17, 0)) == london(2025, 2, 26, 9, 0)


def test_wrong_holiday_entries_name_where_they_are(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"SGX_SCHOOL_HOLIDAYS\[1\]: '2025-13-01'"):
        parse_days(["2025-01-01", "2025-13-01"], "SGX_SCHOOL_HOLIDAYS")
    with pytest.raises(ConfigError, match="ends before it starts"):
        parse_days(["2025-02-21..2025-02-17"], "SGX_SCHOOL_HOLIDAYS")
    bad = tmp_path / "h.txt"
    bad.write_text("2025-01-01\nnot a date\n")
    with pytest.raises(ConfigError, match=r"h\.txt:2: 'not a date'"):
        read_days(bad)
    with pytest.raises(ConfigError, match="cannot read"):
        read_days(tmp_path / "missing.txt")


def test_an_unknown_zone_and_a_calendar_without_school_days_are_refused() -> None:
    with pytest.raises(ConfigError, match="unknown time zone 'Mars/Olympus'"):
        CalendarSettings(timezone="Mars/Olympus").calendar()
    every_day = frozenset(date.fromordinal(date(2025, 1, 1).toordinal() + n) for n in range(500))
    with pytest.raises(ConfigError, match="no school day within 400 days"):
        SchoolCalendar(time(8, 30), LONDON, every_day).next_school_day_start(london(2025, 1, 1))
    with pytest.raises(ValueError, match="aware"):
        PLAIN.next_school_day_start(datetime(2025, 1, 1))
