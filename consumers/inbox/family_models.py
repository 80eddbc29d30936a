"""The families-informed bodies of the case-management API (pydantic): what comes in is
checked here for shape and by :func:`sgx.domain.family.decision_from` for its rules; what
goes out is shaped here (and documented in the OpenAPI document)."""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from consumers.inbox.family import Outstanding
from consumers.inbox.family_store import DecisionRecord, Disclosure
from consumers.inbox.family_summary import FamilySummary
from sgx.domain.family import EXCEPTION_TEXT

Method = Literal["IN_PERSON", "PHONE", "VIDEO_CALL", "LETTER", "EMAIL", "TEXT_MESSAGE"]
NotToldBecause = Literal[
    "RISK_TO_CHILD", "PREJUDICE_CRIMINAL_INVESTIGATION", "UNDUE_DELAY", "COURT_ORDER"
]
Kind = Literal["onward_share", "network_check"]


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FamilyDecisionIn(BaseModel):
    """Whether the family was told: when, by whom, how; or the exception, and why."""

    model_config = ConfigDict(extra="forbid")

    informed: bool = Field(description="true: the family was told; false: an exception applies")
    informed_at: dt.datetime | None = Field(default=None, description="when (with a time zone)")
    informed_by: str | None = Field(default=None, max_length=200, description="who told them")
    method: Method | None = Field(default=None, description="how they were told")
    family_member: str | None = Field(
        default=None, max_length=200, description="who in the family was told (kept on the "
        "professional record, never printed for the family)",
    )  # fmt: skip
    exception: NotToldBecause | None = Field(
        default=None, description="why the family was not told (Camden's four exceptions)"
    )
    reason: str | None = Field(
        default=None, max_length=1000, description="why: required with an exception"
    )
    decided_by: str | None = Field(
        default=None, max_length=200, description="who decided (a system must name them)"
    )
    decided_at: dt.datetime | None = Field(default=None, description="when; default: now")


class FamilyDecisionOut(_Out):
    decision_id: int
    informed: bool
    informed_at: dt.datetime | None
    informed_by: str | None
    method: Method | None
    family_member: str | None
    exception: NotToldBecause | None
    exception_text: str | None = Field(description="the exception in words")
    reason: str | None
    decided_by: str
    decided_at: dt.datetime
    recorded_by: str = Field(description="the worker or system that recorded it")
    recorded_at: dt.datetime
    supersedes: int | None = Field(description="the decision this one replaced, if any")


class FamilyRecordOut(_Out):
    """A disclosure, the family-informed decision in force and every one recorded."""

    kind: Kind
    ref: str = Field(description="the share id (or network check id) it is")
    item_id: int
    to_name: str
    to_category: str
    purpose: str
    made: bool | None = Field(
        description="true: made (the share allowed); false: refused, nothing was disclosed; "
        "null: the exchange has not answered yet"
    )
    made_at: dt.datetime | None
    status: Literal["outstanding", "informed", "not_informed", "not_made", "awaiting_answer"]
    due_at: dt.datetime | None = Field(
        description="when an outstanding decision becomes overdue (working days after made)"
    )
    current: FamilyDecisionOut | None
    history: list[FamilyDecisionOut] = Field(description="every decision recorded, oldest first")


class OutstandingItem(_Out):
    kind: Kind
    ref: str
    item_id: int
    recipient_id: str = Field(description="whose queue row the disclosure came from")
    team: str
    to_name: str
    to_category: str
    purpose: str
    asked_by: str
    made_at: dt.datetime | None
    due_at: dt.datetime
    overdue: bool


class OutstandingPage(_Out):
    """Disclosures the caller may see with no family-informed decision, oldest first."""

    items: list[OutstandingItem]


class FamilyLineOut(_Out):
    shared_on: str
    what: str
    with_whom: str
    why: str
    basis: str
    told: str


class FamilySummaryOut(_Out):
    """The family-facing summary: what was shared and the family told of, in plain words."""

    child: str
    lines: list[FamilyLineOut]


MODELS: tuple[type[BaseModel], ...] = (
    FamilyDecisionIn,
    FamilyRecordOut,
    OutstandingPage,
    FamilySummaryOut,
)


def decision_out(record: DecisionRecord) -> FamilyDecisionOut:
    d = record.decision
    return FamilyDecisionOut(
        decision_id=record.decision_id,
        informed=d.informed,
        informed_at=d.informed_at,
        informed_by=d.informed_by,
        method=d.method.value if d.method else None,
        family_member=d.family_member,
        exception=d.exception.value if d.exception else None,
        exception_text=EXCEPTION_TEXT[d.exception] if d.exception else None,
        reason=d.reason,
        decided_by=d.decided_by,
        decided_at=d.decided_at,
        recorded_by=record.recorded_by,
        recorded_at=record.recorded_at,
        supersedes=record.supersedes,
    )


def status(disclosure: Disclosure) -> str:
    if disclosure.made is None:
        return "awaiting_answer" if disclosure.decision is None else _decided(disclosure)
    if disclosure.made is False:
        return "not_made"
    return "outstanding" if disclosure.decision is None else _decided(disclosure)


def _decided(disclosure: Disclosure) -> str:
    assert disclosure.decision is not None
    return "informed" if disclosure.decision.decision.informed else "not_informed"


def record_out(
    disclosure: Disclosure, history: list[DecisionRecord], due: dt.datetime | None
) -> FamilyRecordOut:
    return FamilyRecordOut(
        kind=disclosure.kind.value,
        ref=disclosure.ref,
        item_id=disclosure.item_id,
        to_name=disclosure.to_name,
        to_category=disclosure.to_category,
        purpose=disclosure.purpose,
        made=disclosure.made,
        made_at=disclosure.made_at,
        status=status(disclosure),
        due_at=due if disclosure.outstanding else None,
        current=decision_out(disclosure.decision) if disclosure.decision else None,
        history=[decision_out(h) for h in history],
    )


def outstanding_out(found: list[Outstanding]) -> OutstandingPage:
    return OutstandingPage(
        items=[
            OutstandingItem(
                kind=o.disclosure.kind.value,
                ref=o.disclosure.ref,
                item_id=o.disclosure.item_id,
                recipient_id=o.pending.recipient_id,
                team=o.pending.team,
                to_name=o.disclosure.to_name,
                to_category=o.disclosure.to_category,
                purpose=o.disclosure.purpose,
                asked_by=o.disclosure.asked_by,
                made_at=o.disclosure.made_at,
                due_at=o.due,
                overdue=o.overdue,
            )
            for o in found
        ]
    )


def summary_out(summary: FamilySummary) -> FamilySummaryOut:
    return FamilySummaryOut(
        child=summary.child,
        lines=[
            FamilyLineOut(
                shared_on=line.shared_on, what=line.what, with_whom=line.with_whom,
                why=line.why, basis=line.basis, told=line.told,
            )
            for line in summary.lines
        ],
    )  # fmt: skip
