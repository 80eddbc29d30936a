"""The health feed's automatic answer: which attendances answer a request, in what words."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

from producers.information_health import attendance_answer_from_health
from producers.information_requests import InformationRequest

NHS, BORN = "9990000824", date(2023, 2, 10)


def request(nhs_number: str | None = NHS, born: date | None = BORN) -> InformationRequest:
    now = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)
    return InformationRequest(
        agency="nhs-royal-free", request_id=uuid.uuid4(), local_authority="la-camden",
        rating="AMBER", deadline=now + timedelta(days=1), asked="A&E attendances",
        requested_by="mash-duty", requested_at=now, family_told=True, family_exception=None,
        nhs_number=nhs_number, upn=None, given_name="Amira", family_name="Zephyrine",
        date_of_birth=born, postcode=None, received_at=now,
    )  # fmt: skip


def update(when: datetime, kind: str = "UNSCHEDULED_CARE_ATTENDANCE", **child: Any) -> Any:
    return {
        "child": {"nhs_number": NHS, "date_of_birth": BORN, **child},
        "health": {"event_kind": kind, "occurred_at": when, "setting": "Royal Free ED",
                   "clinical_detail": "Scald to left forearm"},
    }  # fmt: skip


def test_attendances_for_the_child_in_order_once_each_in_utc_and_nothing_clinical() -> None:
    bst = timezone(timedelta(hours=1))
    later, earlier = (
        datetime(2026, 10, 3, 9, 15, tzinfo=bst),
        datetime(2026, 9, 1, 22, 0, tzinfo=UTC),
    )
    updates = [update(later), update(earlier), update(later), update(earlier, "WAS_NOT_BROUGHT")]
    assert attendance_answer_from_health(request(), updates) == (
        "A&E attendances in the trust's feed: 2 (01 Sep 2026 22:00 UTC at Royal Free ED; "
        "03 Oct 2026 08:15 UTC at Royal Free ED)."
    )


def test_no_answer_where_the_feed_cannot_say() -> None:
    when = datetime(2026, 10, 3, 9, 15, tzinfo=UTC)
    assert attendance_answer_from_health(request(nhs_number=None), [update(when)]) is None
    assert attendance_answer_from_health(request(), [update(when, nhs_number="9990000840")]) is None
    assert attendance_answer_from_health(request(), [update(when, "WAS_NOT_BROUGHT")]) is None
    assert (
        attendance_answer_from_health(request(), [update(when, date_of_birth=date(2016, 4, 1))])
        is None
    )
    assert attendance_answer_from_health(request(born=None), [update(when)]) is not None
