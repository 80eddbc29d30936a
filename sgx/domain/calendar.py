"""The school-day calendar: when the next school day begins.

Operation Encompass asks the police to tell a child's school (its key adult) of a
domestic abuse incident before the next school day begins, so the exchange must know
when that is. A school day is a weekday that is not a holiday; it begins at a configured
local time (08:30 by default) in a configured time zone (``Europe/London``). Holidays
are the bank holidays of one UK nation (England's by default, from the ``holidays``
package) plus configured dates and ranges: terms, half-terms, INSET days.

:meth:`SchoolCalendar.next_school_day_start` is the first school-day start strictly
after a moment: an incident at 07:00 on a school day is due by 08:30 the same day; one
at 10:00, or on a Friday evening, by the start of the next school day (Monday, or
Tuesday if Monday is a holiday).

Settings (``SGX_SCHOOL_*``, :class:`CalendarSettings`)::

    SGX_SCHOOL_DAY_START=08:30              local time a school day begins
    SGX_SCHOOL_TIMEZONE=Europe/London       IANA zone (zoneinfo)
    SGX_SCHOOL_BANK_HOLIDAYS=ENG            ENG | WLS | SCT | NIR, or empty for none
    SGX_SCHOOL_HOLIDAYS='["2025-02-17..2025-02-21", "2025-06-02"]'
    SGX_SCHOOL_HOLIDAYS_FILE=holidays.txt   one date or range a line; ``#`` starts a comment

Nothing here reads the clock: every moment is passed in, so tests move time freely.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from holidays import HolidayBase, country_holidays
from pydantic_settings import BaseSettings, SettingsConfigDict

from sgx.errors import ConfigError

SEARCH_DAYS = 400  # a calendar with no school day within this many days is a mistake
_WEEKEND = frozenset({5, 6})  # Saturday, Sunday (date.weekday())
_DAY = timedelta(days=1)


@dataclass(frozen=True, slots=True)
class SchoolCalendar:
    """Which days are school days, and when each begins."""

    start: time = time(8, 30)
    zone: ZoneInfo = field(default_factory=lambda: ZoneInfo("Europe/London"))
    closed: frozenset[date] = frozenset()
    bank_holidays: HolidayBase | None = field(default=None, compare=False)

    def is_school_day(self, day: date) -> bool:
        """A weekday that is neither a configured holiday nor a bank holiday."""
        if day.weekday() in _WEEKEND or day in self.closed:
            return False
        return self.bank_holidays is None or day not in self.bank_holidays

    def day_start(self, day: date) -> datetime:
        """When ``day`` (a local date) begins as a school day, in UTC."""
        return datetime.combine(day, self.start, tzinfo=self.zone).astimezone(UTC)

    def next_school_day_start(self, after: datetime) -> datetime:
        """The first school-day start strictly after ``after`` (an aware datetime), in UTC."""
        if after.tzinfo is None:
            raise ValueError("next_school_day_start needs an aware datetime")
        day = after.astimezone(self.zone).date()
        for _ in range(SEARCH_DAYS):
            if self.is_school_day(day) and self.day_start(day) > after:
                return self.day_start(day)
            day += _DAY
        raise ConfigError(f"the school calendar has no school day within {SEARCH_DAYS} days")


BankHolidays = Literal["ENG", "WLS", "SCT", "NIR", ""]


class CalendarSettings(BaseSettings):
    """The school-day calendar's settings (``SGX_SCHOOL_*``)."""

    model_config = SettingsConfigDict(env_prefix="SGX_SCHOOL_", extra="forbid")

    day_start: time = time(8, 30)
    timezone: str = "Europe/London"
    bank_holidays: BankHolidays = "ENG"
    holidays: list[str] = []
    holidays_file: Path | None = None

    def calendar(self) -> SchoolCalendar:
        """The calendar these settings describe; ConfigError names a wrong value."""
        closed = set(parse_days(self.holidays, "SGX_SCHOOL_HOLIDAYS"))
        if self.holidays_file is not None:
            closed |= set(read_days(self.holidays_file))
        bank = country_holidays("GB", subdiv=self.bank_holidays) if self.bank_holidays else None
        return SchoolCalendar(self.day_start, _zone(self.timezone), frozenset(closed), bank)


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ConfigError(f"SGX_SCHOOL_TIMEZONE: unknown time zone {name!r}") from exc


def parse_days(entries: Iterable[str], where: str) -> list[date]:
    """Dates from ``YYYY-MM-DD`` or inclusive ``YYYY-MM-DD..YYYY-MM-DD`` entries."""
    days: list[date] = []
    for index, entry in enumerate(entries):
        days += _days(entry.strip(), f"{where}[{index}]")
    return days


def read_days(path: Path) -> list[date]:
    """The dates of a holidays file: one date or range a line, ``#`` comments, blank lines."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ConfigError(f"SGX_SCHOOL_HOLIDAYS_FILE: cannot read {path}: {exc}") from exc
    days: list[date] = []
    for number, line in enumerate(lines, start=1):
        entry = line.split("#", 1)[0].strip()
        if entry:
            days += _days(entry, f"{path}:{number}")
    return days


def _days(entry: str, where: str) -> list[date]:
    first, _, last = entry.partition("..")
    try:
        start = date.fromisoformat(first.strip())
        end = date.fromisoformat(last.strip()) if last else start
    except ValueError as exc:
        raise ConfigError(
            f"{where}: {entry!r} is not YYYY-MM-DD or YYYY-MM-DD..YYYY-MM-DD"
        ) from exc
    if end < start:
        raise ConfigError(f"{where}: {entry!r} ends before it starts")
    return [start + _DAY * n for n in range((end - start).days + 1)]
