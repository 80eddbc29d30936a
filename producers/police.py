"""The police feed: a force system's export mapped to PoliceNotification records, and the
local authority's 2013 / 2024 Protocol disclosure request.

**Export shape.** A police force system exports JSON: one object, or an array of them. Each
object has a ``type``; unknown keys are refused (a typo would otherwise be dropped).
Timestamps are ISO 8601 with a UTC offset, dates ``YYYY-MM-DD``. Common to both types::

    notification_id   optional UUID; give a stable one so that a re-export is not a new item
    police_reference  crime or incident reference
    force             {"id": agency id in the trust directory, "name": ...}
    officer           {"name", "role", "contact" (optional)}
    child             {"nhs_number", "upn", "identifier_absent_reason", "given_name",
                       "family_name", "date_of_birth", "residence_la"} (all optional; an
                       identifier or the reason for none is required; ``residence_la``
                       is the ONS GSS code of the LA the child lives in, if known)
    facts             what happened, factual only
    risk_level        NO_CONCERN | LOW | MEDIUM | HIGH | IMMINENT
    professional_opinion, support_offered, agency_limitations    optional
    offences          optional: details of alleged offences
    urgency           optional: ROUTINE | PRIORITY | IMMEDIATE
    sharing           optional: {"consent", "lawful_basis", "legal_gateway",
                       "no_consent_reason", "restrictions", "onward_consent"}

``"type": "operation_encompass"`` (a domestic abuse incident the child was at or linked to;
the school's key adult must know before the next school day, so urgency defaults to
IMMEDIATE) adds::

    notified_at       when the force sent the notification
    school_id         agency id of the child's school (null if the child is not on a roll)
    incident          {"occurred_at", "location" (optional), "child_present": bool,
                       "voice_of_child" (optional): what the child said or showed}

``"type": "protocol_disclosure"`` (the answer to a local authority's request; urgency
defaults to PRIORITY; ``facts`` defaults to the material summary) adds::

    protocol          "2013" | "2024"
    request_reference the local authority's reference, quoted back
    disclosed_at      when the force disclosed
    material_summary  what is disclosed
    redactions        [{"what": what was withheld, "why": why}]

tests/fixtures/police/ holds one example of each. Police material's confidentiality
restriction (POLICE_CONFIDENTIAL_TO_PROCEEDINGS) is attached by the gateway to everything a
police force sends; the export does not need to ask for it.

**Errors.** Everything raises :class:`~sgx.errors.ContractError` naming the field path in the
export (``[2].incident.child_present``) or, for a contract rule, in the record; no value
from the export is repeated in a message. The parsing is pydantic's (``extra="forbid"``).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    TypeAdapter,
    ValidationError,
)

from producers.feeds import (
    AuthorRestriction,
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
from sgx.wire.contract import Contract, default_contract
from sgx.wire.ids import new_id

EXPORT = "police export"
PROTOCOL_KINDS = {"2013": "PROTOCOL_2013_DISCLOSURE", "2024": "PROTOCOL_2024_DISCLOSURE"}
REQUEST_PROTOCOLS = {"2013": "PROTOCOL_2013", "2024": "PROTOCOL_2024"}
LEGAL_GATEWAYS = {
    "OPERATION_ENCOMPASS": "Children Act 2004 s.11; Operation Encompass",
    "PROTOCOL_2013_DISCLOSURE": (
        "2013 Protocol and Good Practice Model: disclosure into family proceedings"
    ),
    "PROTOCOL_2024_DISCLOSURE": (
        "Disclosure of information between family and criminal agencies and jurisdictions: "
        "2024 Protocol"
    ),
}


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty")
    return value


Text = Annotated[str, AfterValidator(_not_blank)]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ForceIn(_In):
    id: Text
    name: Text


class OfficerIn(_In):
    name: Text
    role: Text
    contact: str | None = None


class ChildIn(_In):
    nhs_number: str | None = None
    upn: str | None = None
    identifier_absent_reason: IdentifierAbsentReason | None = None
    given_name: str | None = None
    family_name: str | None = None
    date_of_birth: dt.date | None = None
    residence_la: str | None = None  # ONS GSS code, checked by the contract


class SharingIn(_In):
    consent: ConsentStatus = "NOT_SOUGHT"
    lawful_basis: LawfulBasis = "PUBLIC_TASK"
    legal_gateway: Text | None = None
    no_consent_reason: NoConsentReason | None = "RISK_TO_CHILD"
    restrictions: list[AuthorRestriction] = []
    onward_consent: list[RecipientCategory] = []


class IncidentIn(_In):
    occurred_at: AwareDatetime
    location: str | None = None
    child_present: StrictBool
    voice_of_child: str | None = None


class RedactionIn(_In):
    what: Text
    why: Text


class _Common(_In):
    notification_id: uuid.UUID | None = None
    police_reference: Text
    force: ForceIn
    officer: OfficerIn
    child: ChildIn
    facts: Text | None = None
    risk_level: RiskLevel
    professional_opinion: str | None = None
    support_offered: str | None = None
    agency_limitations: str | None = None
    offences: str | None = None
    urgency: Urgency | None = None
    sharing: SharingIn = SharingIn()


class EncompassIn(_Common):
    type: Literal["operation_encompass"]
    facts: Text
    notified_at: AwareDatetime
    school_id: Text | None
    incident: IncidentIn


class DisclosureIn(_Common):
    type: Literal["protocol_disclosure"]
    protocol: Literal["2013", "2024"]
    request_reference: Text
    disclosed_at: AwareDatetime
    material_summary: Text
    redactions: list[RedactionIn] = []


ExportItem = Annotated[EncompassIn | DisclosureIn, Field(discriminator="type")]
_ITEM: TypeAdapter[EncompassIn | DisclosureIn] = TypeAdapter(ExportItem)


# --- errors ------------------------------------------------------------------------------


def _from_pydantic(exc: ValidationError, prefix: str) -> ContractError:
    """The first problem pydantic found, as a ContractError naming the export's field."""
    first = exc.errors(include_url=False, include_input=False)[0]
    loc = list(first["loc"])
    if loc and loc[0] in ("operation_encompass", "protocol_disclosure"):
        loc = loc[1:]  # the discriminated union's tag is not a field
    problem = pydantic_problem(str(first["msg"]))
    return ContractError(pydantic_path(loc, prefix), problem[:200], schema=EXPORT)


# --- mapping -----------------------------------------------------------------------------


def _author(item: _Common) -> dict[str, Any]:
    return {
        "name": item.officer.name,
        "role": item.officer.role,
        "agency_id": item.force.id,
        "agency_name": item.force.name,
        "contact": item.officer.contact,
    }


def _child(child: ChildIn) -> dict[str, Any]:
    return child.model_dump()


def _sharing(sharing: SharingIn, kind: str) -> dict[str, Any]:
    mapped = sharing.model_dump()
    mapped["legal_gateway"] = sharing.legal_gateway or LEGAL_GATEWAYS[kind]
    if sharing.consent == "GIVEN" and "no_consent_reason" not in sharing.model_fields_set:
        mapped["no_consent_reason"] = None
    return mapped


def _assessment(item: _Common, facts: str) -> dict[str, Any]:
    return {
        "facts": facts,
        "professional_opinion": item.professional_opinion,
        "risk_level": item.risk_level,
        "support_offered": item.support_offered,
        "agency_limitations": item.agency_limitations,
        "child_views": None,
        "historical": False,
        "historical_relevance": None,
    }


def _utc(value: dt.datetime) -> dt.datetime:
    return value.astimezone(dt.UTC)


def _record(
    item: _Common, kind: str, authored_at: dt.datetime, urgency: str, facts: str
) -> dict[str, Any]:
    return {
        "notification_id": item.notification_id or new_id(),
        "authored_at": _utc(authored_at),
        "urgency": item.urgency or urgency,
        "author": _author(item),
        "child": _child(item.child),
        "sharing": _sharing(item.sharing, kind),
        "assessment": _assessment(item, facts),
    }


def _encompass(item: EncompassIn) -> dict[str, Any]:
    kind = "OPERATION_ENCOMPASS"
    record = _record(item, kind, item.notified_at, "IMMEDIATE", item.facts)
    incident = item.incident
    record["police"] = {
        "kind": kind,
        "police_reference": item.police_reference,
        "incident": {
            "occurred_at": _utc(incident.occurred_at),
            "location": incident.location,
            "child_present": incident.child_present,
            "voice_of_child": incident.voice_of_child,
            "school_id": item.school_id,
        },
        "disclosure": None,
        "offence_details": item.offences,
    }
    return record


def _disclosure(item: DisclosureIn) -> dict[str, Any]:
    kind = PROTOCOL_KINDS[item.protocol]
    facts = item.facts or item.material_summary
    record = _record(item, kind, item.disclosed_at, "PRIORITY", facts)
    record["police"] = {
        "kind": kind,
        "police_reference": item.police_reference,
        "incident": None,
        "disclosure": {
            "request_reference": item.request_reference,
            "material_summary": item.material_summary,
            "redactions": [r.model_dump() for r in item.redactions],
        },
        "offence_details": item.offences,
    }
    return record


def map_police_export(
    data: Mapping[str, Any], *, contract: Contract | None = None, at: str = ""
) -> dict[str, Any]:
    """One export object as a checked PoliceNotification record (ContractError if not).

    ``at`` prefixes error paths (``[3]`` for the fourth object of a file).
    """
    try:
        item = _ITEM.validate_python(data)
    except ValidationError as exc:
        raise _from_pydantic(exc, at) from None
    record = _encompass(item) if isinstance(item, EncompassIn) else _disclosure(item)
    return checked(contract, c.POLICE_NOTIFICATION, record, at)


def parse_police_export(text: str | bytes) -> list[Any]:
    """The objects of an export (a JSON object or an array of them)."""
    return json_objects(text, EXPORT)


def map_police_file(
    path: Path, *, contract: Contract | None = None
) -> tuple[list[dict[str, Any]], list[ContractError]]:
    """Map every object in an export file: (good records, errors of the bad ones by index).

    A bad object does not stop the good ones; an unreadable file raises ContractError.
    """
    items = parse_police_export(path.read_bytes())
    records: list[dict[str, Any]] = []
    errors: list[ContractError] = []
    for index, item in enumerate(items):
        try:
            records.append(map_police_export(item, contract=contract, at=f"[{index}]"))
        except ContractError as exc:
            errors.append(exc)
    return records, errors


def encompass_school(record: Mapping[str, Any]) -> str | None:
    """The school whose key adult must be told of an Operation Encompass notification."""
    incident = record["police"].get("incident") or {}
    school = incident.get("school_id")
    return school if isinstance(school, str) else None


# --- a force's export into its outbox ----------------------------------------------------

EXPORT_TYPES = {"encompass": "operation_encompass", "disclosure": "protocol_disclosure"}


@dataclass(frozen=True, slots=True)
class PolicePushed:
    """One export object kept in the outbox (index in the file, kind, id, school told)."""

    index: int
    kind: str
    notification_id: uuid.UUID
    school: str | None


@dataclass(slots=True)
class PoliceIngestReport:
    """What one export did: indices, kinds and field paths only, never a value."""

    pushed: list[PolicePushed] = field(default_factory=list)
    errors: list[ContractError] = field(default_factory=list)

    def lines(self) -> Iterator[str]:
        yield f"pushed {len(self.pushed)} police notification(s), {len(self.errors)} error(s)"
        for p in self.pushed:
            school = f"  (and the key adult at {p.school})" if p.school else ""
            yield f"pushed  [{p.index}] {p.kind}  {p.notification_id}{school}"
        yield from (f"error   {error}" for error in self.errors)


async def ingest_export(
    path: Path, command: str, agency: str, submit: Submit, contract: Contract
) -> PoliceIngestReport:
    """Map every object of the export and submit the good ones; report each bad one.

    ``command`` is the kind of export pushed (a key of :data:`EXPORT_TYPES`); an object
    of the other kind, or one by another force than ``agency``, is reported, not pushed.
    """
    report = PoliceIngestReport()
    try:
        items = parse_police_export(await asyncio.to_thread(path.read_bytes))
    except ContractError as exc:
        report.errors.append(exc)
        return report
    for index, item in enumerate(items):
        try:
            record = _checked(item, f"[{index}]", command, agency, contract)
            notification_id = await _submit(submit, record, f"[{index}]")
        except ContractError as exc:
            report.errors.append(exc)
            continue
        kind, school = record["police"]["kind"], encompass_school(record)
        report.pushed.append(PolicePushed(index, kind, notification_id, school))
    return report


def _checked(
    item: Mapping[str, Any], at: str, command: str, agency: str, contract: Contract
) -> dict[str, Any]:
    """The object as a checked record, if it is of the command's type and from ``agency``."""
    expected, given = EXPORT_TYPES[command], item.get("type")
    if given in EXPORT_TYPES.values() and given != expected:
        other = next(name for name, kind in EXPORT_TYPES.items() if kind == given)
        problem = f"is {given}: push it with `safeguard producer police {other}`"
        raise ContractError(f"{at}.type", problem, schema=EXPORT)
    record = map_police_export(item, contract=contract, at=at)
    if record["author"]["agency_id"] != agency:
        problem = f"is not {agency}, the force pushing this export"
        raise ContractError(f"{at}.force.id", problem, schema=EXPORT)
    return record


async def _submit(submit: Submit, record: dict[str, Any], at: str) -> uuid.UUID:
    try:
        return await submit(c.POLICE_NOTIFICATION, record)
    except ContractError as exc:
        raise ContractError(f"{at}.{exc.path}", exc.problem, schema=exc.schema) from None


# --- the local authority's disclosure request --------------------------------------------


def disclosure_request(
    *,
    request_reference: str,
    protocol: str,
    requested_by: Mapping[str, Any],
    police_force: str,
    child: Mapping[str, Any],
    proceedings: Mapping[str, Any],
    material_requested: str,
    reasons: str,
    requested_at: dt.datetime,
    urgency: str = "PRIORITY",
    police_references: Sequence[str] = (),
    period: tuple[dt.date | None, dt.date | None] = (None, None),
    request_id: uuid.UUID | None = None,
    contract: Contract | None = None,
) -> dict[str, Any]:
    """A checked DisclosureRequest (2013 Protocol Annex D / 2024 Protocol Annex 1).

    ``protocol`` is ``"2013"`` or ``"2024"`` (or the schema symbol); ``requested_by`` is
    the officer as an Author record whose ``agency_id`` is the local authority;
    ``police_force`` the agency id of the force whose SPOC receives it; ``proceedings``
    has ``stage`` (CONTEMPLATED | ISSUED), ``court``, ``case_number``, ``hearing_date``.
    """
    record = {
        "request_id": request_id or new_id(),
        "request_reference": request_reference,
        "protocol": REQUEST_PROTOCOLS.get(protocol, protocol),
        "requested_at": requested_at,
        "urgency": urgency,
        "requested_by": dict(requested_by),
        "police_force": police_force,
        "child": dict(child),
        "proceedings": {"case_number": None, "hearing_date": None, **proceedings},
        "material_requested": material_requested,
        "reasons": reasons,
        "police_references": list(police_references),
        "period_start": period[0],
        "period_end": period[1],
    }
    check_disclosure_request(record, contract)
    return record


def check_disclosure_request(record: Mapping[str, Any], contract: Contract | None = None) -> None:
    """Check a DisclosureRequest against its schema and the request rules (ContractError).

    The rules live in the contract (:func:`sgx.wire.validation.check_disclosure_request`), so
    the gateway applies the same ones when it decodes a request.
    """
    (contract or default_contract()).check(c.DISCLOSURE_REQUEST, record)
