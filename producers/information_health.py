"""A health feed's answer to a MASH information request, from the A&E attendances it holds.

The health feed maps its FHIR export to health updates (:mod:`producers.health`); among
them, each A&E attendance (``UNSCHEDULED_CARE_ATTENDANCE``) names the child by NHS number
and date of birth, when and where. :func:`attendance_answer_from_health` answers a request
without a person where the export names the child the request names (the NHS number, and
the date of birth where both give one) and holds an A&E attendance for them: HELD, with
each attendance's date, time and setting as facts. Nothing clinical goes with it (the
clinical detail stays in the health update, where the agreement withholds it from most
roles), and an automatic answer carries no professional opinion.

Where the export holds no attendance for the child, the feed does NOT answer: an export is
not the trust's whole record, so neither "nothing held" nor "cannot match" would be true of
the trust; the request stays open for a person. The gateway accepts an automatic answer
only where the asking LA's agreement lets health bodies answer automatically
(``information_requests.auto_answer``); otherwise it quarantines it
(``automatic_answer_not_agreed``) and the request stays open at the gateway.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime
from typing import Any

from producers.information_requests import InformationRequest

A_AND_E = "UNSCHEDULED_CARE_ATTENDANCE"


def attendance_answer_from_health(
    request: InformationRequest, updates: Iterable[Mapping[str, Any]]
) -> str | None:
    """The facts to answer ``request`` with (outcome HELD), from the health updates the
    feed mapped from its export; None when the feed cannot say (a person answers)."""
    if not request.nhs_number:
        return None
    seen: list[tuple[datetime, str]] = []
    for record in updates:
        child, health = record["child"], record["health"]
        if child.get("nhs_number") != request.nhs_number or health["event_kind"] != A_AND_E:
            continue
        if not _same_birth(child.get("date_of_birth"), request.date_of_birth):
            continue
        when = health["occurred_at"].astimezone(UTC)
        seen.append((when, health.get("setting") or "a setting not recorded"))
    if not seen:
        return None
    seen = sorted(set(seen))
    listed = "; ".join(f"{when:%d %b %Y %H:%M} UTC at {where}" for when, where in seen)
    return f"A&E attendances in the trust's feed: {len(seen)} ({listed})."


def _same_birth(theirs: date | None, asked: date | None) -> bool:
    return theirs is None or asked is None or theirs == asked
