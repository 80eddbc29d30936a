"""The network-check API's bodies (:mod:`consumers.inbox.network_checks_api`)."""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from consumers.inbox.family_models import FamilyDecisionIn


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


Rating = Literal["RED", "AMBER", "GREEN", "BLUE"]


class NetworkCheckIn(BaseModel):
    """A MASH item rated, the agencies to ask, what is asked, and the family decision."""

    model_config = ConfigDict(extra="forbid")

    rating: Rating = Field(description="the MASH manager's BRAG rating: sets the deadline")
    agencies: list[str] | Literal["all"] = Field(
        description='the agencies to ask (party ids), or "all": every agency serving the LA'
    )
    asked: str = Field(min_length=1, max_length=1000, description="what the MASH asks")
    family: FamilyDecisionIn = Field(
        description="whether the family was told before the checks, or the exception"
    )


class AnswerOut(_Out):
    outcome: str = Field(description="HELD, NOTHING_HELD or CANNOT_MATCH")
    facts: str | None
    professional_opinion: str | None
    restrictions: list[str] = Field(
        description="restriction codes on onward use, as delivered: the agency's own and "
        "the exchange's defaults for its kind"
    )
    answered_by: str
    automatic: bool
    answered_at: dt.datetime


class NetworkCheckOut(_Out):
    request_id: str
    agency: str
    rating: str
    asked: str
    asked_by: str
    asked_at: dt.datetime
    state: str = Field(description="SENT, ASKED, REFUSED or ANSWERED")
    deadline: dt.datetime | None
    overdue: bool = Field(description="asked, past its deadline, and not answered")
    reason: str | None = Field(description="the gateway's words (why refused, or the deadline)")
    family_told: bool | None
    answer: AnswerOut | None
    answer_item: int | None = Field(
        description="the MASH queue's item holding the answer (GET /deliveries/{id})"
    )


class NetworkChecksOut(_Out):
    item_id: int
    checks: list[NetworkCheckOut]


MODELS: tuple[type[BaseModel], ...] = (NetworkCheckIn, NetworkChecksOut)
