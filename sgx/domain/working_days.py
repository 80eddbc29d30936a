"""Working days: when a referral must be acknowledged and decided.

Working Together 2023 gives a local authority one working day from a referral to
acknowledge it and decide the response; a partnership may agree other times
(``[referrals]`` in the agreement). A **working day** is a weekday that is not a bank
holiday, in the calendar's time zone: the bank holidays and zone of
:class:`sgx.domain.calendar.SchoolCalendar` (``SGX_SCHOOL_BANK_HOLIDAYS``,
``SGX_SCHOOL_TIMEZONE``). A school's own closures (terms, half-terms, INSET days) are not
the local authority's: children's social care works through them.

:func:`working_days_after` counts from the moment a referral arrives: *n* working days
later is the same clock time *n* working days on. A referral arriving outside a working
day (a Saturday, a bank holiday) counts from the start of the next working day, so one
arriving on Saturday morning is due, within one working day, by the end of Monday
(midnight), or of Tuesday after a bank-holiday Monday.

Nothing here reads the clock.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

from sgx.domain.calendar import SEARCH_DAYS, SchoolCalendar
from sgx.errors import ConfigError

_WEEKEND = frozenset({5, 6})
_DAY = timedelta(days=1)


def is_working_day(calendar: SchoolCalendar, day: date) -> bool:
    """A weekday that is not a bank holiday of the calendar's nation."""
    if day.weekday() in _WEEKEND:
        return False
    return calendar.bank_holidays is None or day not in calendar.bank_holidays


def _next_working_day(calendar: SchoolCalendar, day: date) -> date:
    """The first working day strictly after ``day``."""
    for _ in range(SEARCH_DAYS):
        day += _DAY
        if is_working_day(calendar, day):
            return day
    raise ConfigError(f"the calendar has no working day within {SEARCH_DAYS} days")


def working_days_after(calendar: SchoolCalendar, start: datetime, days: int) -> datetime:
    """The moment ``days`` working days after ``start`` (aware), in UTC."""
    if start.tzinfo is None:
        raise ValueError("working_days_after needs an aware datetime")
    if days < 0:
        raise ValueError(f"days must not be negative: {days}")
    local = start.astimezone(calendar.zone)
    day, clock = local.date(), local.time().replace(tzinfo=None)
    if not is_working_day(calendar, day):
        day, clock = _next_working_day(calendar, day), time(0, 0)
    for _ in range(days):
        day = _next_working_day(calendar, day)
    return datetime.combine(day, clock, tzinfo=calendar.zone).astimezone(UTC)
