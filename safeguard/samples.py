"""Sample notifications and allocations for the demo, the tests and the benchmark.

Every builder returns a record that satisfies the contract; keyword overrides replace
top-level fields (use ``child=...`` etc. for nested ones).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

from safeguard.parties import DEMO_PARTIES, GP, HEALTH, LA, POLICE, SCHOOL
from sgx.wire.ids import new_id

AGENCY_NAMES = {party.id: party.name for party in DEMO_PARTIES}


def child(
    nhs_number: str | None,
    upn: str | None = None,
    *,
    given: str = "Amira",
    family: str = "Example",
    born: date | None = date(2016, 3, 14),
    residence: str | None = None,
) -> dict[str, Any]:
    """The subject child; ``residence`` is the GSS code of the LA the child lives in."""
    return {
        "nhs_number": nhs_number,
        "upn": upn,
        "identifier_absent_reason": None if (nhs_number or upn) else "NOT_KNOWN",
        "given_name": given,
        "family_name": family,
        "date_of_birth": born,
        "residence_la": residence,
    }


def _author(agency: str, name: str, role: str) -> dict[str, Any]:
    return {
        "name": name,
        "role": role,
        "agency_id": agency,
        "agency_name": AGENCY_NAMES[agency],
        "contact": f"safeguarding@{agency}.example",
    }


def from_agency(record: dict[str, Any], agency_id: str, agency_name: str) -> dict[str, Any]:
    """``record`` as ``agency_id``'s own system would write it: the same author (name and
    role) at that agency, and a school's own name on its attendance record."""
    record["author"] = {
        **record["author"],
        "agency_id": agency_id,
        "agency_name": agency_name,
        "contact": f"safeguarding@{agency_id}.example",
    }
    if "attendance" in record:
        record["attendance"]["school_name"] = agency_name
    return record


def _sharing(**overrides: Any) -> dict[str, Any]:
    sharing: dict[str, Any] = {
        "consent": "NOT_SOUGHT",
        "lawful_basis": "PUBLIC_TASK",
        "legal_gateway": "Children Act 2004 s.11; Children Act 1989 s.47",
        "no_consent_reason": "RISK_TO_CHILD",
        "restrictions": [],
        "onward_consent": [],
    }
    sharing.update(overrides)
    return sharing


def _assessment(facts: str, **overrides: Any) -> dict[str, Any]:
    assessment: dict[str, Any] = {
        "facts": facts,
        "professional_opinion": None,
        "risk_level": "MEDIUM",
        "support_offered": None,
        "agency_limitations": None,
        "child_views": None,
        "historical": False,
        "historical_relevance": None,
    }
    assessment.update(overrides)
    return assessment


def _common(
    agency: str,
    author: tuple[str, str],
    the_child: dict[str, Any],
    facts: str,
    *,
    authored_at: datetime | None = None,
    urgency: str = "ROUTINE",
) -> dict[str, Any]:
    return {
        "notification_id": new_id(),
        "authored_at": authored_at or datetime.now(UTC),
        "urgency": urgency,
        "author": _author(agency, *author),
        "child": the_child,
        "sharing": _sharing(),
        "assessment": _assessment(facts),
    }


def attendance_update(the_child: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    record = _common(
        SCHOOL,
        ("Ruth Okafor", "Designated Safeguarding Lead"),
        the_child,
        "Absent 14 of 38 sessions since 1 Nov; 9 with no reason given (code O).",
    )
    record["assessment"].update(
        professional_opinion="Absence rose sharply after half term; we are worried about home.",
        risk_level="MEDIUM",
        support_offered="Daily check-in with the learning mentor.",
        agency_limitations="No home visits by school staff.",
    )
    record["attendance"] = {
        "school_urn": "100001",
        "school_name": AGENCY_NAMES[SCHOOL],
        "period_start": date(2026, 11, 2),
        "period_end": date(2026, 11, 20),
        "sessions_possible": 38,
        "sessions_missed": 14,
        "unexplained_absences": 9,
        "persistent_absence": True,
        "severe_absence": False,
    }
    record["sen_status"] = "SEN_SUPPORT"
    record.update(overrides)
    return record


def health_update(the_child: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    record = _common(
        HEALTH,
        ("Dr Sam Patel", "Named Doctor for Safeguarding"),
        the_child,
        "Attended A&E at 23:40 on 19 Nov with a burn to the left forearm.",
        urgency="PRIORITY",
    )
    record["assessment"].update(
        professional_opinion="Explanation given does not fit the injury pattern.",
        risk_level="HIGH",
        child_views={
            "wishes_and_feelings": "Wants to stay with her nan.",
            "what_was_said": "'It was the kettle, mum said to say the kettle.'",
            "circumstances": "Alone with the nurse during dressing.",
            "how_disclosed": "Spontaneously, in conversation.",
        },
    )
    record["health"] = {
        "event_kind": "UNSCHEDULED_CARE_ATTENDANCE",
        "occurred_at": datetime(2026, 11, 19, 23, 40, tzinfo=UTC),
        "setting": "Royal Free Hospital emergency department",
        "clinical_detail": "Partial-thickness scald 4 cm x 2 cm, left volar forearm.",
    }
    record.update(overrides)
    return record


def police_notification(the_child: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    record = _common(
        POLICE,
        ("PC Dana Hughes", "Operation Encompass officer"),
        the_child,
        "Police attended a domestic abuse incident at the child's home at 22:15.",
        urgency="IMMEDIATE",
    )
    record["assessment"].update(risk_level="HIGH")
    record["police"] = {
        "kind": "OPERATION_ENCOMPASS",
        "police_reference": "CAD-4471-20NOV26",
        "incident": {
            "occurred_at": datetime(2026, 11, 20, 22, 15, tzinfo=UTC),
            "location": "the family home",
            "child_present": True,
            "voice_of_child": "Hid upstairs; told the officer she was scared.",
        },
        "disclosure": None,
        "offence_details": "Adult male arrested for assault occasioning ABH.",
    }
    record.update(overrides)
    return record


def referral(the_child: dict[str, Any], agency: str = GP, **overrides: Any) -> dict[str, Any]:
    """A referral to children's social care (from a GP practice unless ``agency``)."""
    record = _common(
        agency,
        ("Dr Priya Nair", "GP partner and practice safeguarding lead"),
        the_child,
        "Missed her 12-month and 2-year immunisations and two booked reviews; weight below"
        " the 2nd centile at today's appointment; untreated nappy rash with broken skin.",
        urgency="PRIORITY",
    )
    record["sharing"] = _sharing(consent="GIVEN", no_consent_reason=None)
    record["assessment"].update(
        professional_opinion="Faltering growth with missed care: her needs are not being met.",
        risk_level="HIGH",
        support_offered="Weekly weight checks with the practice nurse.",
    )
    record["referral"] = {
        "concerns": ["NEGLECT"],
        "how_it_arose": "Seen today with her mother, who attended for her own appointment.",
        "child_needs": "Faltering growth; immunisations overdue.",
        "parenting_capacity": "Mother says she is struggling to cope since her partner returned.",
        "family_and_environment": "Lives with mother and mother's partner in a one-bedroom flat.",
        "household": [
            {
                "name": "Lara Example",
                "relationship": "mother",
                "date_of_birth": None,
                "lives_with_child": True,
            },
        ],
        "parents_told": True,
        "parents_not_told_reason": None,
        "parents_views": "Mother agreed help would be welcome.",
        "others_informed": ["Health visitor, 0-19 team"],
        "discussed_with": "Dr Sam Okafor, named GP for safeguarding",
        "referrer_reference": "HMP-SG-2026-118",
    }
    record.update(overrides)
    return record


WORKER_NAMES = {
    "sw-amara": "Amara Mensah",
    "sw-ben": "Ben Carter",
    "tm-jones": "Priya Jones",
    "tm-lee": "Daniel Lee",
    "sw-ines": "Ines Duarte",
    "tm-okoro": "Grace Okoro",
}


def allocation_update(
    entries: Sequence[tuple[str | None, str | None, str, str, str]],
    ended: Sequence[tuple[str | None, str | None]] = (),
    *,
    la: str = LA,
    transfer_from: str | None = None,
) -> dict[str, Any]:
    """Entries of (nhs_number, upn, worker_id, team, supervisor_id), allocated by ``la``
    (each a transfer-in from the LA with GSS code ``transfer_from``, if given); ``ended``
    are the cases ``la`` closes."""
    return {
        "la_id": la,
        "issued_at": datetime.now(UTC),
        "allocations": [
            {
                "nhs_number": nhs,
                "upn": upn,
                "worker": {"id": worker, "name": WORKER_NAMES.get(worker, worker)},
                "team": team,
                "supervisor": {"id": sup, "name": WORKER_NAMES.get(sup, sup)},
                "allocated_on": date.today() - timedelta(days=30),
                "transfer_from": transfer_from,
            }
            for nhs, upn, worker, team, sup in entries
        ],
        "ended": [{"nhs_number": nhs, "upn": upn} for nhs, upn in ended],
    }
