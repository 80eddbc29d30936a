"""Valid sample notifications for tests, benchmarks and the demo.

Each builder returns a fresh dict with every field present (so it equals its own decoded
form) and the types fastavro decodes to: ``uuid.UUID`` ids, UTC ``datetime`` timestamps
(millisecond precision) and ``datetime.date`` dates. The notification id is a new random
UUID on each call unless given.

Keyword overrides replace top-level fields (``sharing={...}``); a double underscore
reaches into nested records (``attendance__sessions_missed=0``,
``child__identifier_absent_reason="NOT_KNOWN"``). ``nhs_number`` and ``upn`` set the
child's identifiers; pass None to leave one out.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sgx.domain.identifiers import make_nhs_number, make_upn

UTC = dt.UTC
NHS_NUMBER = make_nhs_number(1)
UPN = make_upn(1)
AUTHORED_AT = dt.datetime(2025, 3, 10, 9, 30, tzinfo=UTC)

SCHOOL_ID = "school-hillside"
HEALTH_ID = "nhs-royal-free"
POLICE_ID = "met-police"


def _apply(record: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    for key, value in overrides.items():
        *parents, leaf = key.split("__")
        target = record
        for part in parents:
            target = target[part]
        if leaf not in target:
            raise KeyError(f"sample override {key!r}: no field {leaf!r}")
        target[leaf] = value
    return record


def author(agency_id: str, agency_name: str, name: str, role: str) -> dict[str, Any]:
    return {
        "name": name,
        "role": role,
        "agency_id": agency_id,
        "agency_name": agency_name,
        "contact": f"{agency_id}@example.org",
    }


def child(
    nhs_number: str | None, upn: str | None, residence_la: str | None = None
) -> dict[str, Any]:
    """The subject child; ``residence_la`` is the GSS code of the LA the child lives in."""
    return {
        "nhs_number": nhs_number,
        "upn": upn,
        "identifier_absent_reason": None,
        "given_name": "Sam",
        "family_name": "Example",
        "date_of_birth": dt.date(2016, 5, 14),
        "residence_la": residence_la,
    }


def sharing(restrictions: list[str] | None = None) -> dict[str, Any]:
    return {
        "consent": "NOT_SOUGHT",
        "lawful_basis": "PUBLIC_TASK",
        "legal_gateway": "Children Act 2004 s.11",
        "no_consent_reason": "RISK_TO_CHILD",
        "restrictions": restrictions or [],
        "onward_consent": [],
    }


def assessment(facts: str, risk_level: str = "MEDIUM") -> dict[str, Any]:
    return {
        "facts": facts,
        "professional_opinion": "The pattern suggests the child is not being supported at home.",
        "risk_level": risk_level,
        "support_offered": "Pastoral support and a weekly check-in.",
        "agency_limitations": None,
        "child_views": {
            "wishes_and_feelings": "Wants to stay at this school.",
            "what_was_said": "Said mornings at home are hard.",
            "circumstances": "Talking to the class teacher at break.",
            "how_disclosed": "Spontaneously, in conversation.",
        },
        "historical": False,
        "historical_relevance": None,
    }


def _common(agency: dict[str, Any], nhs_number: str | None, upn: str | None) -> dict[str, Any]:
    return {
        "notification_id": uuid.uuid4(),
        "authored_at": AUTHORED_AT,
        "urgency": "PRIORITY",
        "author": agency,
        "child": child(nhs_number, upn),
        "sharing": sharing(),
    }


def attendance_update(
    *, nhs_number: str | None = NHS_NUMBER, upn: str | None = UPN, **overrides: Any
) -> dict[str, Any]:
    """A school's attendance update: 18 of 120 sessions missed (persistent, not severe)."""
    school = author(
        SCHOOL_ID, "Hillside Primary School", "Jo Teacher", "Designated Safeguarding Lead"
    )
    record = _common(school, nhs_number, upn) | {
        "assessment": assessment("Missed 18 of 120 sessions this half term, 6 unexplained."),
        "attendance": {
            "school_urn": "100000",
            "school_name": "Hillside Primary School",
            "period_start": dt.date(2025, 1, 6),
            "period_end": dt.date(2025, 2, 14),
            "sessions_possible": 120,
            "sessions_missed": 18,
            "unexplained_absences": 6,
            "persistent_absence": True,
            "severe_absence": False,
        },
        "sen_status": None,  # since v3; a v3 reader gives None for an earlier writer's
    }
    return _apply(record, overrides)


def health_update(
    *, nhs_number: str | None = NHS_NUMBER, upn: str | None = None, **overrides: Any
) -> dict[str, Any]:
    """A health body's update: an unscheduled care (A&E) attendance."""
    trust = author(
        HEALTH_ID,
        "Royal Free London NHS Foundation Trust",
        "Dr A Nurse",
        "Named Nurse for Safeguarding Children",
    )
    record = _common(trust, nhs_number, upn) | {
        "assessment": assessment("Attended A&E at 22:40 with a wrist injury; seen and discharged."),
        "health": {
            "event_kind": "UNSCHEDULED_CARE_ATTENDANCE",
            "occurred_at": dt.datetime(2025, 3, 9, 22, 40, tzinfo=UTC),
            "setting": "Royal Free A&E",
            "clinical_detail": "Distal radius fracture; explanation inconsistent with injury.",
        },
    }
    return _apply(record, overrides)


def _incident() -> dict[str, Any]:
    return {
        "occurred_at": dt.datetime(2025, 3, 9, 23, 15, tzinfo=UTC),
        "location": "Family home",
        "child_present": True,
        "voice_of_child": "Was upset and said it happens often.",
        "school_id": None,
    }


def _disclosure() -> dict[str, Any]:
    return {
        "request_reference": "LA-REQ-2025-0042",
        "material_summary": "Two call-outs to the family home in January 2025.",
        "redactions": [{"what": "Name of a third-party witness", "why": "Protect the witness"}],
    }


def police_notification(
    *,
    nhs_number: str | None = NHS_NUMBER,
    upn: str | None = None,
    kind: str = "OPERATION_ENCOMPASS",
    **overrides: Any,
) -> dict[str, Any]:
    """A police notification: an Operation Encompass incident, or a protocol disclosure."""
    force = author(
        POLICE_ID,
        "Metropolitan Police Service",
        "DC B Officer",
        "Operation Encompass single point of contact",
    )
    encompass = kind == "OPERATION_ENCOMPASS"
    record = _common(force, nhs_number, upn) | {
        "urgency": "IMMEDIATE" if encompass else "PRIORITY",
        "assessment": assessment("Officers attended a domestic incident at 23:15.", "HIGH"),
        "police": {
            "kind": kind,
            "police_reference": "CAD-2025-0309-1234",
            "incident": _incident() if encompass else None,
            "disclosure": None if encompass else _disclosure(),
            "offence_details": "Common assault (alleged).",
        },
    }
    record["sharing"]["no_consent_reason"] = "PREJUDICE_CRIMINAL_INVESTIGATION"
    return _apply(record, overrides)


def referral(
    *, nhs_number: str | None = NHS_NUMBER, upn: str | None = None, **overrides: Any
) -> dict[str, Any]:
    """A GP practice's referral to children's social care about a child no LA may hold."""
    gp = author(
        "gp-hillside", "Hillside Medical Practice", "Dr P Nair", "Practice safeguarding lead"
    )
    record = _common(gp, nhs_number, upn) | {
        "assessment": assessment("Weight below the 2nd centile; two reviews missed.", "HIGH"),
        "referral": {
            "concerns": ["NEGLECT"],
            "how_it_arose": "Seen at the practice with her mother.",
            "child_needs": "Faltering growth.",
            "parenting_capacity": None,
            "family_and_environment": None,
            "household": [
                {
                    "name": "Lara Example",
                    "relationship": "mother",
                    "date_of_birth": dt.date(2001, 6, 30),
                    "lives_with_child": True,
                },
            ],
            "parents_told": True,
            "parents_not_told_reason": None,
            "parents_views": None,
            "others_informed": [],
            "discussed_with": None,
            "referrer_reference": "HMP-1",
        },
    }
    return _apply(record, overrides)
