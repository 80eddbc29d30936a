"""The case-management API's bodies, as pydantic models: they check what comes in, shape
what goes out, and generate the OpenAPI 3.1 document (:mod:`consumers.inbox.openapi`)."""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from consumers.inbox.family_models import MODELS as FAMILY_MODELS
from consumers.inbox.family_models import FamilyDecisionIn, FamilyDecisionOut
from consumers.inbox.network_checks_models import MODELS as NETWORK_CHECK_MODELS

Category = Literal["LA_SOCIAL_CARE", "PARENT_OR_CARER", "OTHER_PROFESSIONAL", "CARE_PROCEEDINGS"]


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ErrorItem(_Out):
    path: str = Field(description="where: body.<field>, query.<name> or path.<name>")
    problem: str = Field(description="what is wrong (never the value that was sent)")


class Errors(_Out):
    errors: list[ErrorItem]


class RestrictionOut(_Out):
    code: str
    label: str
    source: str
    text: str


class DeliverySummary(_Out):
    """A queue row as listed: routing facts only, never the child or the notification."""

    item_id: int
    cursor: str = Field(description="pass as ?after= to list what came after this item")
    notification_id: str
    notification_type: str
    urgency: Literal["ROUTINE", "PRIORITY", "IMMEDIATE"]
    status: Literal["unread", "acked"]
    recipient_id: str
    recipient_role: str
    team: str | None
    route_reason: str
    sender_agency: str
    authored_at: dt.datetime
    routed_at: dt.datetime
    queued_at: dt.datetime
    acked_at: dt.datetime | None
    acked_by: str | None
    restrictions: list[str] = Field(description="restriction codes on onward use")
    withheld: list[str] = Field(description="parts withheld from this recipient")


class DeliveryPage(_Out):
    items: list[DeliverySummary]
    next_cursor: str = Field(description="pass as ?after= next time; unchanged if no items")


class Delivery(DeliverySummary):
    """One delivery, opened (the read is audited)."""

    restriction_texts: list[RestrictionOut]
    notification: dict[str, Any] = Field(
        description="the notification as this recipient may see it (Avro mapped to JSON)"
    )


class AckOut(_Out):
    item_id: int
    status: Literal["unread", "acked"]
    acked_at: dt.datetime | None
    acked_by: str | None


class ShareIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    category: Category
    to_name: str = Field(min_length=1, max_length=300, description="who would receive it")
    purpose: str = Field(min_length=1, max_length=2000, description="why the share is needed")
    family: FamilyDecisionIn | None = Field(
        default=None,
        description="whether the family was told, recorded with the request (or later: "
        "POST /shares/{share_id}/family); checked before the share is asked",
    )


class ShareOut(_Out):
    share_id: int
    item_id: int
    to_id: str
    to_category: str
    to_name: str
    purpose: str
    requested_by: str
    requested_at: dt.datetime
    status: Literal["allowed", "refused", "pending"]
    broken: list[str] = Field(description="restriction codes the share would break")
    reason: str | None
    decided_at: dt.datetime | None
    family: FamilyDecisionOut | None = Field(
        default=None,
        description="the family-informed decision in force (its history: GET "
        "/shares/{share_id}/family); null: none recorded",
    )


class ConsentOut(_Out):
    """A consent asked of the author of a refused share, and where it stands."""

    consent_id: int
    share_id: int = Field(description="the refused share it asks about")
    item_id: int
    to_category: str = Field(description="the recipient category the consent would cover")
    purpose: str = Field(description="the purpose the consent would cover (the share's)")
    requested_by: str
    requested_at: dt.datetime
    status: Literal[
        "sending", "asked", "not_needed", "unknown_notification", "granted", "refused"
    ] = Field(
        description="sending: not yet acknowledged by the exchange; asked: put to the author, "
        "awaiting the answer; granted or refused: the author's answer; not_needed or "
        "unknown_notification: the exchange settled it without asking"
    )
    author: str | None = Field(description="the author's agency asked")
    answered_by: str | None
    court_order: str | None = Field(description="the court order a police grant recorded")
    still_blocked: list[str] = Field(
        description="restriction codes a grant does not lift (police material with no court "
        "order): the share stays refused"
    )
    reason: str | None
    decided_at: dt.datetime | None


class ReceivedOut(_Out):
    item_id: int
    notification_id: str
    notification_type: str
    urgency: str
    sender_agency: str
    author: str
    authored_at: dt.datetime
    consent: str
    lawful_basis: str


class SharingRecord(_Out):
    """What the LA received about the child of one item, and what it shared onward."""

    received: list[ReceivedOut]
    shared: list[ShareOut]


Decision = Literal[
    "NO_FURTHER_ACTION",
    "INFORMATION_AND_ADVICE",
    "EARLY_HELP",
    "SECTION_17_ASSESSMENT",
    "SECTION_47_ENQUIRIES",
    "IMMEDIATE_PROTECTION",
]


class ResponseIn(BaseModel):
    """An acknowledgement of a referral, or the decision on it, for the referrer."""

    model_config = ConfigDict(extra="forbid")

    stage: Literal["ACKNOWLEDGED", "DECIDED"]
    decision: Decision | None = Field(default=None, description="required when DECIDED")
    responded_by: str = Field(
        min_length=1, max_length=300, description="who responded, as the referrer may know them"
    )
    la_contact: str = Field(
        min_length=1, max_length=1000, description="whom the referrer contacts about it"
    )
    reasons: str | None = Field(default=None, max_length=4000, description="why, for the referrer")
    next_steps: str | None = Field(
        default=None, max_length=4000, description="what the LA asks of the referrer"
    )
    la_reference: str | None = Field(default=None, max_length=200)


class ResponseOut(_Out):
    response_id: str
    stage: Literal["ACKNOWLEDGED", "DECIDED"]
    decision: str | None
    reasons: str | None
    next_steps: str | None
    la_contact: str
    la_reference: str | None
    responded_by: str = Field(description="what the referrer is told of who responded")
    requested_by: str = Field(description="the worker or client who responded")
    responded_at: dt.datetime
    status: Literal["sending", "sent", "delivered", "refused", "quarantined"] = Field(
        description="sending: kept, not yet on the broker (sent again when read); sent: no "
        "receipt yet; delivered: passed to the referrer; refused or quarantined: not told"
    )
    detail: str | None = Field(description="the exchange's words on it, once receipted")


class ReferralOut(_Out):
    """A referral's deadlines for this LA and what the LA has told the referrer."""

    item_id: int
    referrer: str
    acknowledge_by: dt.datetime | None
    decide_by: dt.datetime | None
    overdue: Literal["acknowledgement", "decision"] | None = Field(
        description="the deadline that has passed with nothing done, if any"
    )
    decision: str | None = Field(description="the decision in force, if any")
    responses: list[ResponseOut]


MODELS: tuple[type[BaseModel], ...] = (
    Errors,
    DeliveryPage,
    Delivery,
    AckOut,
    ShareIn,
    ShareOut,
    ConsentOut,
    SharingRecord,
    *FAMILY_MODELS,
    ResponseIn,
    ReferralOut,
    *NETWORK_CHECK_MODELS,
)
