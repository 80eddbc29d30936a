"""The referral form: a multi-agency referral form (MARF) as a file, mapped to referrals.

Agencies without a feed of their own (a GP practice, a health-visiting service, a
nursery, a charity) refer with a form: their record system exports the completed form,
or a person fills one in. Systems that already speak JSON over HTTP post the ``Referral``
record itself to the push endpoint (``POST /v1/notifications/referral``); this is the
file route for everyone else, as a force's export is for police notifications
(:mod:`producers.police`).

**The form** is JSON: one object, or an array of them (a day's referrals). Unknown keys
are refused (a typo would otherwise be dropped). Timestamps are ISO 8601 with a UTC
offset, dates ``YYYY-MM-DD``::

    referral_id        optional UUID; give a stable one so that a re-export is not a new referral
    referred_at        optional: when the referrer completed the form (default: now)
    urgency            optional: ROUTINE | PRIORITY | IMMEDIATE (default PRIORITY;
                       IMMEDIATE when risk_level is IMMINENT)
    referrer           {"name", "role", "agency_name", "contact"}: contact is how the LA
                       reaches the referrer again (telephone, secure email, hours)
    child              {"nhs_number", "upn", "identifier_absent_reason", "given_name",
                       "family_name", "date_of_birth", "residence_la"} (an identifier or
                       the reason for none; residence_la the ONS GSS code of the LA the
                       child lives in, if known)
    concerns           ["NEGLECT", "DOMESTIC_ABUSE", ...] (ConcernCategory; at least one)
    facts              what is known to have happened: dates, times, what was seen
    how_it_arose       how and why the concern arose: what was seen, heard or said, by whom
    risk_level         NO_CONCERN | LOW | MEDIUM | HIGH | IMMINENT
    professional_opinion, support_offered, agency_limitations      optional
    child_views        optional {"wishes_and_feelings", "what_was_said", "circumstances",
                       "how_disclosed"}
    historical, historical_relevance                               optional
    child_needs, parenting_capacity, family_and_environment        optional: what is known
    household          optional [{"name", "relationship", "date_of_birth", "lives_with_child"}]
    parents_told       true | false: the parents or carers know of this referral
    parents_not_told_reason   required when parents_told is false: RISK_TO_CHILD |
                       PREJUDICE_CRIMINAL_INVESTIGATION | UNDUE_DELAY | COURT_ORDER
    parents_views      optional: what the parents said
    consent            GIVEN | NOT_SOUGHT | REFUSED | WITHDRAWN: the parents' consent to
                       the referral; no_consent_reason is required unless GIVEN
    no_consent_reason, lawful_basis (default PUBLIC_TASK), legal_gateway, restrictions,
    onward_consent     optional, as in every notification's sharing
    others_informed    optional ["School nurse, Hillside Primary", ...]
    discussed_with     optional: the safeguarding lead consulted
    referrer_reference optional: the agency's own reference

``tests/fixtures/referrals/`` holds examples. **Errors** are
:class:`~sgx.errors.ContractError` naming the field in the form (``[2].household[0].name``)
or, for a contract rule, in the record; no value from the form is repeated.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    ValidationError,
)

from producers.feeds import (
    AuthorRestriction,
    ConcernCategory,
    ConsentStatus,
    IdentifierAbsentReason,
    LawfulBasis,
    NoConsentReason,
    RecipientCategory,
    RiskLevel,
    Submit,
    Urgency,
    checked,
    json_objects,
    pydantic_path,
    pydantic_problem,
)
from sgx.errors import ContractError
from sgx.wire import contract as c
from sgx.wire.contract import Contract
from sgx.wire.ids import new_id

FORM = "referral form"
LEGAL_GATEWAY = "Children Act 2004 s.11; Children Act 1989 s.17 and s.47"


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty")
    return value


Text = Annotated[str, AfterValidator(_not_blank)]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ReferrerIn(_In):
    name: Text
    role: Text
    agency_name: Text
    contact: Text
    agency_id: Text | None = None  # if given, must be the agency sending the form


class ChildIn(_In):
    nhs_number: str | None = None
    upn: str | None = None
    identifier_absent_reason: IdentifierAbsentReason | None = None
    given_name: str | None = None
    family_name: str | None = None
    date_of_birth: dt.date | None = None
    residence_la: str | None = None  # ONS GSS code, checked by the contract


class ChildViewsIn(_In):
    wishes_and_feelings: str | None = None
    what_was_said: str | None = None
    circumstances: str | None = None
    how_disclosed: str | None = None


class HouseholdIn(_In):
    name: Text
    relationship: Text
    date_of_birth: dt.date | None = None
    lives_with_child: StrictBool = True


class ReferralFormIn(_In):
    referral_id: uuid.UUID | None = None
    referred_at: AwareDatetime | None = None
    urgency: Urgency | None = None
    referrer: ReferrerIn
    child: ChildIn
    concerns: Annotated[list[ConcernCategory], Field(min_length=1)]
    facts: Text
    how_it_arose: Text
    risk_level: RiskLevel
    professional_opinion: str | None = None
    support_offered: str | None = None
    agency_limitations: str | None = None
    child_views: ChildViewsIn | None = None
    historical: StrictBool = False
    historical_relevance: str | None = None
    child_needs: str | None = None
    parenting_capacity: str | None = None
    family_and_environment: str | None = None
    household: list[HouseholdIn] = []
    parents_told: StrictBool
    parents_not_told_reason: NoConsentReason | None = None
    parents_views: str | None = None
    consent: ConsentStatus
    no_consent_reason: NoConsentReason | None = None
    lawful_basis: LawfulBasis = "PUBLIC_TASK"
    legal_gateway: Text | None = None
    restrictions: list[AuthorRestriction] = []
    onward_consent: list[RecipientCategory] = []
    others_informed: list[Text] = []
    discussed_with: str | None = None
    referrer_reference: str | None = None


# --- mapping -----------------------------------------------------------------------------


def _record(form: ReferralFormIn, agency: str, now: dt.datetime) -> dict[str, Any]:
    referrer = form.referrer
    urgency = form.urgency or ("IMMEDIATE" if form.risk_level == "IMMINENT" else "PRIORITY")
    return {
        "notification_id": form.referral_id or new_id(),
        "authored_at": _millis((form.referred_at or now).astimezone(dt.UTC)),
        "urgency": urgency,
        "author": {
            "name": referrer.name,
            "role": referrer.role,
            "agency_id": agency,
            "agency_name": referrer.agency_name,
            "contact": referrer.contact,
        },
        "child": form.child.model_dump(),
        "sharing": {
            "consent": form.consent,
            "lawful_basis": form.lawful_basis,
            "legal_gateway": form.legal_gateway or LEGAL_GATEWAY,
            "no_consent_reason": form.no_consent_reason,
            "restrictions": list(form.restrictions),
            "onward_consent": list(form.onward_consent),
        },
        "assessment": {
            "facts": form.facts,
            "professional_opinion": form.professional_opinion,
            "risk_level": form.risk_level,
            "support_offered": form.support_offered,
            "agency_limitations": form.agency_limitations,
            "child_views": form.child_views.model_dump() if form.child_views else None,
            "historical": form.historical,
            "historical_relevance": form.historical_relevance,
        },
        "referral": _details(form),
    }


def _details(form: ReferralFormIn) -> dict[str, Any]:
    return {
        "concerns": list(dict.fromkeys(form.concerns)),
        "how_it_arose": form.how_it_arose,
        "child_needs": form.child_needs,
        "parenting_capacity": form.parenting_capacity,
        "family_and_environment": form.family_and_environment,
        "household": [m.model_dump() for m in form.household] or None,
        "parents_told": form.parents_told,
        "parents_not_told_reason": form.parents_not_told_reason,
        "parents_views": form.parents_views,
        "others_informed": list(form.others_informed),
        "discussed_with": form.discussed_with,
        "referrer_reference": form.referrer_reference,
    }


def _millis(at: dt.datetime) -> dt.datetime:
    return at.replace(microsecond=at.microsecond // 1000 * 1000)  # Avro keeps milliseconds


def map_referral_form(
    data: Mapping[str, Any],
    agency: str,
    *,
    contract: Contract | None = None,
    at: str = "",
    now: dt.datetime | None = None,
) -> dict[str, Any]:
    """One form as a checked Referral record written by ``agency`` (ContractError if not).

    ``at`` prefixes error paths (``[3]`` for the fourth form of a file).
    """
    try:
        form = ReferralFormIn.model_validate(data)
    except ValidationError as exc:
        first = exc.errors(include_url=False, include_input=False)[0]
        problem = pydantic_problem(str(first["msg"]))[:200]
        raise ContractError(pydantic_path(first["loc"], at), problem, schema=FORM) from None
    if form.referrer.agency_id not in (None, agency):
        problem = f"is not {agency}, the agency sending this form"
        raise ContractError(pydantic_path(["referrer", "agency_id"], at), problem, schema=FORM)
    record = _record(form, agency, now or dt.datetime.now(dt.UTC))
    return checked(contract, c.REFERRAL, record, at)


def parse_forms(text: str | bytes) -> list[Any]:
    """The forms of a file (a JSON object or an array of them)."""
    return json_objects(text, FORM)


# --- a file of forms into the agency's outbox ----------------------------------------------


@dataclass(frozen=True, slots=True)
class Referred:
    """One form kept in the outbox: its index in the file and the referral's id."""

    index: int
    referral_id: uuid.UUID


@dataclass(slots=True)
class ReferralReport:
    """What one file did: indices and field paths only, never a value."""

    referred: list[Referred] = field(default_factory=list)
    errors: list[ContractError] = field(default_factory=list)

    def lines(self) -> Iterator[str]:
        yield f"sent {len(self.referred)} referral(s), {len(self.errors)} error(s)"
        yield from (f"sent    [{r.index}] referral  {r.referral_id}" for r in self.referred)
        yield from (f"error   {error}" for error in self.errors)


async def ingest_forms(
    path: Path, agency: str, submit: Submit, contract: Contract
) -> ReferralReport:
    """Map every form of the file and submit the good ones; report each bad one."""
    report = ReferralReport()
    try:
        items = parse_forms(await asyncio.to_thread(path.read_bytes))
    except ContractError as exc:
        report.errors.append(exc)
        return report
    for index, item in enumerate(items):
        at = f"[{index}]"
        try:
            record = map_referral_form(item, agency, contract=contract, at=at)
            referral_id = await submit(c.REFERRAL, record)
        except ContractError as exc:
            path_in_file = exc.path if exc.path.startswith(at) else f"{at}.{exc.path}"
            report.errors.append(ContractError(path_in_file, exc.problem, schema=exc.schema))
            continue
        report.referred.append(Referred(index, referral_id))
    return report
