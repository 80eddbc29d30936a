"""Health feed: a FHIR R4 Bundle in, health updates out.

An NHS body's system exports a FHIR Bundle (JSON); :func:`ingest_bundle` reads it entry
by entry with the ``fhir.resources`` models, maps each event resource to one
``HealthUpdate`` and hands it to ``submit(name, record)`` (the producer outbox in
production, :meth:`producers.publisher.Publisher.publish` in tests). A bad entry is
reported with the bundle entry index, the resource and the FHIR path
(``entry[3] Appointment/ap-7: status: value is not a valid enumeration member``); every
good entry is still pushed.

**FHIR release.** ``fhir.resources`` 8 (pydantic 2) ships FHIR R5 and, as a subpackage,
R4B (4.3.0). R4B changed only resources this feed does not read (medication definition,
Evidence, Subscription); Patient, Practitioner(Role), Organization, Location, Consent,
Encounter, Appointment, Observation and Bundle are R4 (4.0.1) element for element, so the
R4B models read R4 exactly. The library leaves required code bindings to the caller
(``enum_values`` in each field's metadata); :func:`_enum_problems` enforces every one of
them, except the open lists the specification marks with ``+`` (Encounter.status,
Observation.status).

**Mapping** (only what the contract needs):

=================================  ===========================  ==========================
resource                           HealthEventKind              occurred_at / setting
=================================  ===========================  ==========================
Encounter, class ``EMER`` (v3      UNSCHEDULED_CARE_ATTENDANCE  period.start / location,
ActCode) or priority ``EM``/``UR``                              else serviceProvider
Appointment, status ``noshow``     WAS_NOT_BROUGHT              start / Location actor,
                                                                else service type
Observation (status preliminary,   HEALTH_VISITOR_OBSERVATION   effective[x] or issued /
final, amended, corrected)                                      the configured setting
=================================  ===========================  ==========================

* **Child**: the event's Patient (``subject``, or the Patient participant of an
  Appointment). NHS number from the identifier with system
  ``https://fhir.nhs.uk/Id/nhs-number``, modulus-11 checked (a bad one is an error on the
  Patient's entry, and every event about that Patient is refused with a pointer to it).
  A Patient without one still goes, with ``identifier_absent_reason`` from the FHIR
  ``data-absent-reason`` extension on that identifier or its value (``temp-unknown`` ->
  UNREASONABLE_DELAY, ``not-applicable`` -> NOT_ISSUED, any other -> NOT_KNOWN), else
  the agency's configured reason. Name (``official`` first) and a full birthDate travel;
  a patient 18 or over at the event is refused (this feed is about children).
* **Facts and opinion are kept apart.** ``assessment.facts`` is written from structured
  elements only (what, when, where, status; a coded element by its display text).
  Clinical content (reasons for attendance or for the appointment, an observation's
  value, body site, method) goes to ``health.clinical_detail``, which the agreement
  withholds from most roles.
  ``professional_opinion`` comes from the exchange's ``professional-opinion`` extension
  and, for an Observation, its ``interpretation`` and ``note`` (the practitioner's reading
  and comment); free text is never copied into the facts.
* **Author**: the first Practitioner or PractitionerRole the event names (Encounter
  participant, Appointment actor, Observation performer; a reference's ``display`` when
  the resource is not in the bundle); role from PractitionerRole.code; agency name from
  an Organization (PractitionerRole.organization, Encounter.serviceProvider, an
  Observation performer). Anything missing comes from :class:`HealthFeedDefaults`;
  ``agency_id`` is always the configured agency.
* **Consent and lawful basis**, in increasing precedence: the agency's configured defaults;
  a ``Consent`` resource in the bundle for the same Patient with scope ``patient-privacy``
  (the latest by dateTime: active + permit -> GIVEN, active + deny or rejected ->
  REFUSED, inactive -> WITHDRAWN; draft/proposed are ignored); the exchange's ``sharing``
  extension on the event resource, whose sub-extensions ``consent``, ``lawfulBasis``,
  ``noConsentReason``, ``restriction``, ``onwardConsent`` (valueCode, contract symbols)
  and ``legalGateway`` (valueString) replace the field they name. Without consent the
  configured no-consent reason applies unless one was given.
* ``risk-level`` and ``urgency`` extensions (valueCode) override the configured risk
  level and the per-kind urgency.

The exchange's extensions live under :data:`EXTENSION_BASE`.

**Ids.** A notification id is a UUID-5 of the agency, the resource type/id and a SHA-256
of the resource's canonical JSON: ingesting the same bundle twice re-submits the same ids
(the outbox, the gateway audit and the queue absorb them), while a changed resource is a
new notification. It reveals nothing to anyone who does not already hold the resource.

Errors carry paths, codes and resource ids only, never a name, NHS number or free text.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import re
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fhir.resources.R4B.appointment import Appointment
from fhir.resources.R4B.bundle import Bundle, BundleEntry
from fhir.resources.R4B.consent import Consent
from fhir.resources.R4B.encounter import Encounter
from fhir.resources.R4B.location import Location
from fhir.resources.R4B.observation import Observation
from fhir.resources.R4B.organization import Organization
from fhir.resources.R4B.patient import Patient
from fhir.resources.R4B.practitioner import Practitioner
from fhir.resources.R4B.practitionerrole import PractitionerRole
from fhir.resources.R4B.resource import Resource
from pydantic import BaseModel, ConfigDict, ValidationError

from producers.feeds import (
    ConsentStatus,
    IdentifierAbsentReason,
    LawfulBasis,
    NoConsentReason,
    RiskLevel,
    Submit,
    Urgency,
    pydantic_path,
    pydantic_problem,
)
from sgx.domain.identifiers import check_nhs_number
from sgx.errors import ContractError
from sgx.wire import contract as c
from sgx.wire.contract import Contract, default_contract

NHS_NUMBER_SYSTEM = "https://fhir.nhs.uk/Id/nhs-number"
DATA_ABSENT_REASON = "http://hl7.org/fhir/StructureDefinition/data-absent-reason"
EXTENSION_BASE = "https://fhir.safeguarding-exchange.example/StructureDefinition/"
EXT_SHARING = EXTENSION_BASE + "sharing"
EXT_OPINION = EXTENSION_BASE + "professional-opinion"
EXT_RISK = EXTENSION_BASE + "risk-level"
EXT_URGENCY = EXTENSION_BASE + "urgency"

UNSCHEDULED = "UNSCHEDULED_CARE_ATTENDANCE"
WAS_NOT_BROUGHT = "WAS_NOT_BROUGHT"
HV_OBSERVATION = "HEALTH_VISITOR_OBSERVATION"

_EVENTS: dict[str, type[Resource]] = {
    "Encounter": Encounter,
    "Appointment": Appointment,
    "Observation": Observation,
}
_CONTEXT: dict[str, type[Resource]] = {
    "Patient": Patient,
    "Practitioner": Practitioner,
    "PractitionerRole": PractitionerRole,
    "Organization": Organization,
    "Location": Location,
    "Consent": Consent,
}
SUPPORTED = {**_EVENTS, **_CONTEXT}

_UNSCHEDULED_CLASSES = frozenset({"EMER"})
_UNSCHEDULED_PRIORITIES = frozenset({"EM", "UR"})
_NOT_HAPPENED = frozenset({"planned", "cancelled", "entered-in-error"})
_SHAREABLE_OBSERVATION = frozenset({"preliminary", "final", "amended", "corrected"})
_ABSENT_REASONS = {"temp-unknown": "UNREASONABLE_DELAY", "not-applicable": "NOT_ISSUED"}
_SHARING_CODES = {
    "consent": "consent",
    "lawfulBasis": "lawful_basis",
    "noConsentReason": "no_consent_reason",
}
_SHARING_LISTS = {"restriction": "restrictions", "onwardConsent": "onward_consent"}
_EARLIEST = dt.datetime.min.replace(tzinfo=dt.UTC)
_ID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, EXTENSION_BASE + "health-feed")
_REFERENCE = re.compile(r"(?:.*/)?([A-Za-z]+)/([A-Za-z0-9\-.]{1,64})(?:/_history/.*)?")


class HealthFeedDefaults(BaseModel):
    """The agency's configured defaults: whatever the bundle does not say.

    Loaded from TOML by the CLI (``--defaults``); every key but the agency's id and name
    is optional.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    agency_id: str
    agency_name: str
    author_name: str = "Safeguarding team"
    author_role: str = "Named Nurse for Safeguarding Children"
    contact: str | None = None
    consent: ConsentStatus = "NOT_SOUGHT"
    lawful_basis: LawfulBasis = "PUBLIC_TASK"
    legal_gateway: str = "Children Act 2004 s.11; Children Act 1989 s.47"
    no_consent_reason: NoConsentReason = "RISK_TO_CHILD"
    restrictions: tuple[str, ...] = ()
    identifier_absent_reason: IdentifierAbsentReason = "NOT_KNOWN"
    risk_level: RiskLevel = "MEDIUM"
    urgency: dict[str, Urgency] = {
        UNSCHEDULED: "PRIORITY",
        WAS_NOT_BROUGHT: "ROUTINE",
        HV_OBSERVATION: "ROUTINE",
    }
    observation_setting: str = "health visiting service"


class BundleError(ContractError):
    """One problem in a FHIR bundle: where (entry index, resource, FHIR path) and what.

    ``index`` is None for the bundle as a whole. A ``mapped`` problem is in the health
    update built from the entry (its path is the contract's), not in the FHIR resource.
    """

    def __init__(
        self,
        path: str,
        problem: str,
        *,
        index: int | None = None,
        resource: str | None = None,
        mapped: bool = False,
    ) -> None:
        super().__init__(path, problem, schema=c.HEALTH_UPDATE if mapped else "")
        self.index = index
        self.resource = resource
        self.mapped = mapped
        where = "bundle" if index is None else f"entry[{index}]"
        if resource:
            where += f" {resource}"
        what = f"health update field {path}" if mapped else path
        self.args = (f"{where}: {what}: {problem}",)


@dataclass(frozen=True, slots=True)
class Pushed:
    """An entry that became a health update, and the notification id submit returned."""

    index: int
    resource: str
    notification_id: uuid.UUID


@dataclass(slots=True)
class HealthIngestReport:
    pushed: list[Pushed] = field(default_factory=list)
    errors: list[BundleError] = field(default_factory=list)

    @property
    def pushed_ids(self) -> list[uuid.UUID]:
        return [p.notification_id for p in self.pushed]


@dataclass(frozen=True, slots=True)
class Mapped:
    """A health update built from bundle entry ``index``, not yet submitted."""

    index: int
    resource: str
    record: dict[str, Any]


@dataclass(frozen=True, slots=True)
class _Entry:
    index: int
    label: str
    resource: Any  # a validated fhir.resources model
    raw: Mapping[str, Any]


# --------------------------------------------------------------------------------------
# Entry points


async def ingest_bundle(
    source: Path | bytes | Mapping[str, Any],
    submit: Submit,
    defaults: HealthFeedDefaults,
    *,
    contract: Contract | None = None,
    now: dt.datetime | None = None,
) -> HealthIngestReport:
    """Map a FHIR Bundle (file, JSON bytes or parsed) and submit every good entry.

    A ContractError from ``submit`` is reported against its entry; any other exchange
    error (the outbox or broker failing) propagates: ids are stable, so re-ingesting the
    whole bundle afterwards duplicates nothing.
    """
    data = await asyncio.to_thread(source.read_bytes) if isinstance(source, Path) else source
    # Validating a large bundle is CPU work: keep it off the event loop.
    mapped, errors = await asyncio.to_thread(map_bundle, data, defaults, contract=contract, now=now)
    report = HealthIngestReport(errors=errors)
    for item in mapped:
        try:
            notification_id = await submit(c.HEALTH_UPDATE, item.record)
        except ContractError as exc:
            report.errors.append(_mapped_error(item.index, item.resource, exc))
            continue
        report.pushed.append(Pushed(item.index, item.resource, notification_id))
    report.errors.sort(key=_error_order)
    return report


def map_bundle(
    data: bytes | str | Mapping[str, Any],
    defaults: HealthFeedDefaults,
    *,
    contract: Contract | None = None,
    now: dt.datetime | None = None,
) -> tuple[list[Mapped], list[BundleError]]:
    """Health updates for every event entry that maps, and an error for every problem."""
    errors: list[BundleError] = []
    try:
        bundle = _load(data)
    except BundleError as exc:
        return [], [exc]
    errors.extend(_bundle_shell_errors(bundle))
    entries = _entries(bundle, errors)
    ctx = _Context(entries, defaults, now or dt.datetime.now(dt.UTC), errors)
    mapped = [m for m in (ctx.map_event(e, contract or default_contract()) for e in entries) if m]
    errors.sort(key=_error_order)
    return mapped, errors


# --------------------------------------------------------------------------------------
# Reading the bundle


def _load(data: bytes | str | Mapping[str, Any]) -> Mapping[str, Any]:
    if isinstance(data, Mapping):
        bundle: Any = data
    else:
        try:
            bundle = json.loads(data)
        except json.JSONDecodeError as exc:
            where = f"line {exc.lineno} column {exc.colno}"
            raise BundleError(where, f"not valid JSON: {exc.msg}") from exc
        except UnicodeDecodeError as exc:
            raise BundleError(f"byte {exc.start}", "not UTF-8 text") from exc
    if not isinstance(bundle, Mapping):
        raise BundleError("$", f"must be a JSON object, got {type(bundle).__name__}")
    if bundle.get("resourceType") != "Bundle":
        raise BundleError("resourceType", "must be Bundle")
    return bundle


def _bundle_shell_errors(bundle: Mapping[str, Any]) -> list[BundleError]:
    """Problems in the Bundle's own elements (its entries are read one by one)."""
    shell = {k: v for k, v in bundle.items() if k != "entry"}
    return [BundleError(p, problem) for p, problem in _validated(Bundle, shell)[1]]


def _entries(bundle: Mapping[str, Any], errors: list[BundleError]) -> list[_Entry]:
    raw_entries = bundle.get("entry", [])
    if not isinstance(raw_entries, list):
        errors.append(BundleError("entry", "must be an array"))
        return []
    entries: list[_Entry] = []
    for index, raw in enumerate(raw_entries):
        try:
            entries.append(_entry(index, raw))
        except _EntryErrors as exc:
            errors.extend(exc.errors)
    return entries


class _EntryErrors(Exception):
    def __init__(self, errors: list[BundleError]) -> None:
        super().__init__(f"{len(errors)} problem(s)")
        self.errors = errors


def _entry(index: int, raw: Any) -> _Entry:
    def fail(path: str, problem: str, label: str | None = None) -> _EntryErrors:
        return _EntryErrors([BundleError(path, problem, index=index, resource=label)])

    if not isinstance(raw, Mapping):
        raise fail("$", "must be a JSON object")
    resource = raw.get("resource")
    if not isinstance(resource, Mapping):
        raise fail("resource", "is missing: every entry must carry a resource")
    kind, rid = resource.get("resourceType"), resource.get("id")
    label = f"{kind}/{rid}" if isinstance(rid, str) else f"{kind}/(no id)"
    if not isinstance(kind, str):
        raise fail("resourceType", "is missing")
    model = SUPPORTED.get(kind)
    if model is None:
        supported = ", ".join(sorted(SUPPORTED))
        raise fail("resourceType", f"{kind} is not supported here (supported: {supported})", label)
    _, shell_problems = _validated(BundleEntry, {k: v for k, v in raw.items() if k != "resource"})
    validated, problems = _validated(model, resource)
    problems = [*shell_problems, *problems]
    if problems:
        raise _EntryErrors(
            [BundleError(p, why, index=index, resource=label) for p, why in problems]
        )
    return _Entry(index, label, validated, raw)


def _validated(
    model: type[BaseModel], data: Mapping[str, Any]
) -> tuple[Any, list[tuple[str, str]]]:
    """The FHIR model, and (FHIR path, problem) for everything it refuses, codes included."""
    try:
        validated = model.model_validate(data)
    except ValidationError as exc:
        return None, [(_fhir_path(e["loc"]), pydantic_problem(e["msg"])) for e in exc.errors()]
    return validated, list(_enum_problems(validated, ""))


def _fhir_path(loc: Sequence[int | str]) -> str:
    """The FHIR path of a pydantic location (the model's ``resource_type`` is resourceType)."""
    return pydantic_path(["resourceType" if part == "resource_type" else part for part in loc])


def _enum_problems(model: BaseModel, path: str) -> Iterator[tuple[str, str]]:
    """Codes outside their required binding, which ``fhir.resources`` leaves to the caller."""
    for name, info in type(model).model_fields.items():
        value = getattr(model, name)
        if value is None:
            continue
        here = f"{path}.{info.alias or name}" if path else (info.alias or name)
        extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
        allowed = extra.get("enum_values")
        values = value if isinstance(value, list) else [value]
        if isinstance(allowed, list) and "+" not in allowed:
            for i, code in enumerate(values):
                if code not in allowed:
                    at = f"{here}[{i}]" if isinstance(value, list) else here
                    permitted = ", ".join(str(a) for a in allowed)
                    yield at, f"value is not a valid enumeration member (permitted: {permitted})"
        for i, item in enumerate(values):
            if isinstance(item, BaseModel):
                yield from _enum_problems(item, f"{here}[{i}]" if isinstance(value, list) else here)


def _error_order(error: BundleError) -> int:
    return -1 if error.index is None else error.index


def _mapped_error(index: int, label: str, exc: ContractError) -> BundleError:
    return BundleError(exc.path, exc.problem, index=index, resource=label, mapped=True)


# --------------------------------------------------------------------------------------
# Mapping


def _text(concept: Any) -> str | None:
    """The words of a CodeableConcept (text, else the first display, else the first code)."""
    if concept is None:
        return None
    if concept.text:
        return str(concept.text)
    for coding in concept.coding or ():
        if coding.display or coding.code:
            return str(coding.display or coding.code)
    return None


def _texts(*concepts: Any) -> list[str]:
    """The words of CodeableConcepts, each given alone or as a list (None is skipped)."""
    flat = [x for c in concepts for x in (c if isinstance(c, list) else [c])]
    return [t for t in (_text(x) for x in flat) if t]


def _instant(value: Any, path: str) -> dt.datetime:
    """A FHIR dateTime/instant as an aware datetime; a bare date is taken as 00:00 UTC."""
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC)
    if isinstance(value, dt.date):
        return dt.datetime.combine(value, dt.time(), tzinfo=dt.UTC)
    raise ContractError(path, "needs at least a full date (year, month and day)")


def _stamp(value: Any) -> str:
    """How a FHIR date or dateTime reads in the facts: a bare date stays a date."""
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return str(value)


def _extensions(resource: Any, url: str) -> list[Any]:
    return [e for e in resource.extension or () if e.url == url]


def _ext_code(resource: Any, url: str) -> str | None:
    found = _extensions(resource, url)
    return str(found[0].valueCode) if found and found[0].valueCode else None


def _age_at(born: dt.date, moment: dt.date) -> int:
    return moment.year - born.year - ((moment.month, moment.day) < (born.month, born.day))


@dataclass(slots=True)
class _Event:
    kind: str
    occurred_at: dt.datetime
    setting: str
    facts: str
    clinical_detail: str | None
    opinion: list[str]
    subject: tuple[str, Any]  # (FHIR path, Reference)
    authors: list[Any]  # References, best first
    authored_at: dt.datetime | None


class _Context:
    """The bundle's resources by reference, and the agency's defaults."""

    def __init__(
        self,
        entries: list[_Entry],
        defaults: HealthFeedDefaults,
        now: dt.datetime,
        errors: list[BundleError],
    ) -> None:
        self.defaults = defaults
        self.now = now
        self.errors = errors
        self.entries = entries
        self.by_ref: dict[str, _Entry] = {}
        for entry in entries:
            self._index(entry)
        self.consents = self._index_consents()
        self.children: dict[str, dict[str, Any] | BundleError] = {}
        for entry in entries:
            if entry.resource.get_resource_type() == "Patient":
                self.children[entry.label] = self._child(entry)

    def _index(self, entry: _Entry) -> None:
        keys = [entry.label] if not entry.label.endswith("(no id)") else []
        full_url = entry.raw.get("fullUrl")
        if isinstance(full_url, str):
            keys.append(full_url)
        for key in keys:
            seen = self.by_ref.get(key)
            if seen is not None:
                self.errors.append(
                    BundleError(
                        "fullUrl" if key == full_url else "id",
                        f"duplicates entry[{seen.index}]; the first is used",
                        index=entry.index,
                        resource=entry.label,
                    )
                )
                continue
            self.by_ref[key] = entry

    def resolve(self, reference: Any) -> _Entry | None:
        ref = reference.reference if reference is not None else None
        if not ref:
            return None
        hit = self.by_ref.get(ref)
        if hit is None and (m := _REFERENCE.fullmatch(ref)):
            hit = self.by_ref.get(f"{m.group(1)}/{m.group(2)}")
        return hit

    def ref_type(self, reference: Any) -> str | None:
        """The type a reference points at: the resolved resource's, else as written."""
        target = self.resolve(reference)
        if target is not None:
            return str(target.resource.get_resource_type())
        if reference is None:
            return None
        if reference.type:
            return str(reference.type)
        m = _REFERENCE.fullmatch(reference.reference or "")
        return m.group(1) if m else None

    # -- the child ----------------------------------------------------------------------

    def _child(self, entry: _Entry) -> dict[str, Any] | BundleError:
        try:
            return self._child_record(entry.resource)
        except ContractError as exc:
            error = BundleError(exc.path, exc.problem, index=entry.index, resource=entry.label)
            self.errors.append(error)
            return error

    def _child_record(self, patient: Patient) -> dict[str, Any]:
        nhs_number, absent = None, None
        for i, ident in enumerate(patient.identifier or ()):
            if ident.system != NHS_NUMBER_SYSTEM:
                continue
            if ident.value is None:
                absent = absent or _absent_reason(ident)
                continue
            check_nhs_number(ident.value, f"identifier[{i}].value")
            nhs_number = ident.value
            break
        given, family = _name(patient)
        born = patient.birthDate if isinstance(patient.birthDate, dt.date) else None
        return {
            "nhs_number": nhs_number,
            "upn": None,
            "identifier_absent_reason": None
            if nhs_number
            else (absent or self.defaults.identifier_absent_reason),
            "given_name": given,
            "family_name": family,
            "date_of_birth": born,
            "residence_la": None,  # a FHIR address carries no GSS code
        }

    def child_for(self, event: _Event) -> dict[str, Any]:
        path, reference = event.subject
        target = self.resolve(reference)
        ref = reference.reference if reference is not None else None
        if target is None:
            problem = f"reference {ref} is not in the bundle" if ref else "names no Patient"
            raise ContractError(path, problem)
        found = self.children.get(target.label)
        if found is None:
            raise ContractError(path, f"{target.label} is not a Patient")
        if isinstance(found, BundleError):
            raise ContractError(path, f"{target.label} has an error (see entry[{target.index}])")
        born = found["date_of_birth"]
        if born is not None and _age_at(born, event.occurred_at.date()) >= 18:
            raise ContractError(path, f"{target.label} was 18 or over at the event: not a child")
        return found

    # -- events -------------------------------------------------------------------------

    def map_event(self, entry: _Entry, contract: Contract) -> Mapped | None:
        kind = entry.resource.get_resource_type()
        if kind not in _EVENTS:
            return None
        try:
            event = _EVENT_READERS[kind](self, entry.resource)
            record = self._record(entry, event)
        except ContractError as exc:
            self.errors.append(
                BundleError(exc.path, exc.problem, index=entry.index, resource=entry.label)
            )
            return None
        try:
            contract.check(c.HEALTH_UPDATE, record)
        except ContractError as exc:
            self.errors.append(_mapped_error(entry.index, entry.label, exc))
            return None
        return Mapped(entry.index, entry.label, record)

    def _record(self, entry: _Entry, event: _Event) -> dict[str, Any]:
        resource, d = entry.resource, self.defaults
        child = self.child_for(event)
        opinion = [*(e.valueString for e in _extensions(resource, EXT_OPINION)), *event.opinion]
        return {
            "notification_id": _notification_id(d.agency_id, entry),
            "authored_at": event.authored_at or self.now,
            "urgency": _ext_code(resource, EXT_URGENCY) or d.urgency.get(event.kind, "ROUTINE"),
            "author": self._author(event.authors),
            "child": child,
            "sharing": self._sharing(resource, event),
            "assessment": {
                "facts": event.facts,
                "professional_opinion": "\n".join(o for o in opinion if o) or None,
                "risk_level": _ext_code(resource, EXT_RISK) or d.risk_level,
                "support_offered": None,
                "agency_limitations": None,
                "child_views": None,
                "historical": False,
                "historical_relevance": None,
            },
            "health": {
                "event_kind": event.kind,
                "occurred_at": event.occurred_at,
                "setting": event.setting,
                "clinical_detail": event.clinical_detail,
            },
        }

    def place(self, reference: Any) -> str | None:
        """A Location's or Organization's name, else the reference's display."""
        target = self.resolve(reference)
        if target is not None and getattr(target.resource, "name", None):
            return str(target.resource.name)
        return str(reference.display) if reference is not None and reference.display else None

    # -- author -------------------------------------------------------------------------

    def _author(self, references: list[Any]) -> dict[str, Any]:
        d = self.defaults
        author: dict[str, Any] = {
            "name": d.author_name,
            "role": d.author_role,
            "agency_id": d.agency_id,
            "agency_name": d.agency_name,
            "contact": d.contact,
        }
        for reference in references:
            if self._fill_author(author, reference):
                break
        return author

    def _fill_author(self, author: dict[str, Any], reference: Any) -> bool:
        """Fill ``author`` from one reference; True once a person was found."""
        target = self.resolve(reference)
        kind = self.ref_type(reference)
        if kind == "Organization":
            author["agency_name"] = self.place(reference) or author["agency_name"]
            return False
        if kind not in ("Practitioner", "PractitionerRole"):
            return False
        if target is None:
            if reference.display:
                author["name"] = str(reference.display)
                return True
            return False
        if kind == "PractitionerRole":
            return self._fill_from_role(author, target.resource)
        return _fill_from_practitioner(author, target.resource)

    def _fill_from_role(self, author: dict[str, Any], role: PractitionerRole) -> bool:
        author["role"] = (_texts(role.code) or [author["role"]])[0]
        author["contact"] = _contact(role.telecom) or author["contact"]
        if role.organization is not None:
            author["agency_name"] = self.place(role.organization) or author["agency_name"]
        if role.practitioner is None:
            return False
        person = self.resolve(role.practitioner)
        if person is not None:
            return _fill_from_practitioner(author, person.resource)
        if role.practitioner.display:
            author["name"] = str(role.practitioner.display)
            return True
        return False

    # -- sharing ------------------------------------------------------------------------

    def _sharing(self, resource: Any, event: _Event) -> dict[str, Any]:
        d = self.defaults
        sharing: dict[str, Any] = {
            "consent": d.consent,
            "lawful_basis": d.lawful_basis,
            "legal_gateway": d.legal_gateway,
            "no_consent_reason": None,
            "restrictions": list(d.restrictions),
            "onward_consent": [],
        }
        consent = self._consent(event.subject[1])
        if consent is not None:
            sharing["consent"] = consent
        for ext in _extensions(resource, EXT_SHARING):
            _apply_sharing_extension(sharing, ext)
        if sharing["consent"] != "GIVEN" and sharing["no_consent_reason"] is None:
            sharing["no_consent_reason"] = d.no_consent_reason
        return sharing

    def _consent(self, subject: Any) -> str | None:
        """The consent status from the latest applicable Consent for the child, if any."""
        target = self.resolve(subject)
        found = self.consents.get(target.label, []) if target is not None else []
        return max(found)[1] if found else None

    def _index_consents(self) -> dict[str, list[tuple[dt.datetime, str]]]:
        """(dateTime, consent status) of each applicable Consent, by its Patient's label."""
        by_patient: dict[str, list[tuple[dt.datetime, str]]] = {}
        for entry in self.entries:
            status = _consent_status(entry.resource)
            patient = self.resolve(entry.resource.patient) if status else None
            if patient is not None and status is not None:
                when = entry.resource.dateTime
                at = when if isinstance(when, dt.datetime) else _EARLIEST
                by_patient.setdefault(patient.label, []).append((at, status))
        return by_patient


def _fill_from_practitioner(author: dict[str, Any], person: Practitioner) -> bool:
    given, family = _name(person)
    names = [n for n in (given, family) if n]
    if person.name:
        official = _best_name(person.name)
        if official is not None and official.text:
            names = [str(official.text)]
        elif official is not None and official.prefix:
            names = [*official.prefix, *names]
    if not names:
        return False
    author["name"] = " ".join(names)
    author["contact"] = _contact(person.telecom) or author["contact"]
    return True


def _best_name(names: Sequence[Any]) -> Any:
    official = [n for n in names if n.use == "official"]
    return (official or list(names) or [None])[0]


def _name(person: Patient | Practitioner) -> tuple[str | None, str | None]:
    best = _best_name(person.name or ())
    if best is None:
        return None, None
    given = " ".join(best.given or ()) or None
    return given, (str(best.family) if best.family else None)


def _contact(telecom: Sequence[Any] | None) -> str | None:
    for system in ("email", "phone"):
        for point in telecom or ():
            if point.system == system and point.value:
                return str(point.value)
    return None


def _absent_reason(identifier: Any) -> str | None:
    holders = [identifier, identifier.value__ext]
    for holder in holders:
        for ext in getattr(holder, "extension", None) or ():
            if ext.url == DATA_ABSENT_REASON and ext.valueCode:
                return _ABSENT_REASONS.get(str(ext.valueCode), "NOT_KNOWN")
    return None


def _consent_status(resource: Any) -> str | None:
    if resource.get_resource_type() != "Consent":
        return None
    scopes = {coding.code for coding in resource.scope.coding or ()}
    if "patient-privacy" not in scopes:
        return None
    provision = resource.provision.type if resource.provision is not None else None
    if resource.status == "active":
        return "REFUSED" if provision == "deny" else "GIVEN"
    return {"rejected": "REFUSED", "inactive": "WITHDRAWN"}.get(str(resource.status))


def _apply_sharing_extension(sharing: dict[str, Any], ext: Any) -> None:
    for part in ext.extension or ():
        if part.url in _SHARING_CODES:
            sharing[_SHARING_CODES[part.url]] = part.valueCode
        elif part.url in _SHARING_LISTS:
            sharing[_SHARING_LISTS[part.url]].append(part.valueCode)
        elif part.url == "legalGateway":
            sharing["legal_gateway"] = part.valueString
    if sharing["consent"] == "GIVEN" and not any(
        p.url == "noConsentReason" for p in ext.extension or ()
    ):
        sharing["no_consent_reason"] = None


def _notification_id(agency_id: str, entry: _Entry) -> uuid.UUID:
    canonical = json.dumps(entry.raw.get("resource"), sort_keys=True, separators=(",", ":"))
    digest = hashlib.sha256(canonical.encode()).hexdigest()
    return uuid.uuid5(_ID_NAMESPACE, f"{agency_id}\n{entry.label}\n{digest}")


# -- the three event readers ------------------------------------------------------------


def _encounter(ctx: _Context, enc: Encounter) -> _Event:
    if enc.status in _NOT_HAPPENED:
        raise ContractError(
            "status", f"is {enc.status}: only an attendance that happened is shared"
        )
    priority = {coding.code for coding in (enc.priority.coding or ())} if enc.priority else set()
    if enc.class_fhir.code not in _UNSCHEDULED_CLASSES and not priority & _UNSCHEDULED_PRIORITIES:
        raise ContractError(
            "class",
            f"is {enc.class_fhir.code}: not an unscheduled-care attendance "
            "(class EMER, or priority EM or UR)",
        )
    if enc.period is None or enc.period.start is None:
        raise ContractError("period.start", "is required: when the child attended")
    arrived = _instant(enc.period.start, "period.start")
    setting = (
        next((p for p in (ctx.place(loc.location) for loc in enc.location or ()) if p), None)
        or ctx.place(enc.serviceProvider)
        or (_texts(enc.serviceType) or ["setting not recorded"])[0]
    )
    facts = (
        f"Unscheduled-care attendance (class {enc.class_fhir.code}); setting: {setting}; "
        f"arrived {_stamp(enc.period.start)}"
    )
    if enc.period.end is not None:
        facts += f", left {_stamp(enc.period.end)}"
    disposition = enc.hospitalization and _text(enc.hospitalization.dischargeDisposition)
    facts += (f"; discharge: {disposition}" if disposition else "") + f". Status: {enc.status}."
    reasons = _texts(enc.reasonCode)
    return _Event(
        kind=UNSCHEDULED,
        occurred_at=arrived,
        setting=setting,
        facts=facts,
        clinical_detail=f"Reason for attendance: {'; '.join(reasons)}" if reasons else None,
        opinion=[],
        subject=("subject", enc.subject),
        authors=[
            *(p.individual for p in enc.participant or () if p.individual),
            enc.serviceProvider,
        ],
        authored_at=enc.meta.lastUpdated if enc.meta else None,
    )


def _appointment(ctx: _Context, appt: Appointment) -> _Event:
    if appt.status != "noshow":
        raise ContractError(
            "status", f"is {appt.status}: only a noshow appointment (was not brought) is shared"
        )
    patients = [
        (f"participant[{i}].actor", p.actor)
        for i, p in enumerate(appt.participant)
        if p.actor is not None and ctx.ref_type(p.actor) == "Patient"
    ]
    if not patients:
        raise ContractError("participant", "has no Patient actor: whose appointment was missed")
    if appt.start is None:
        raise ContractError("start", "is required: when the appointment was booked for")
    start = _instant(appt.start, "start")
    actors = [p.actor for p in appt.participant if p.actor is not None]
    services = _texts(appt.serviceType, appt.appointmentType, appt.specialty)
    service = services[0] if services else None
    setting = next(
        (ctx.place(a) for a in actors if ctx.ref_type(a) == "Location" and ctx.place(a)), None
    ) or (f"{service} (location not recorded)" if service else "location not recorded")
    what = f"a {service} appointment" if service else "an appointment"
    facts = f"Was not brought to {what} booked for {_stamp(appt.start)}; setting: {setting}."
    clinical = [*_texts(appt.reasonCode), *([appt.description] if appt.description else [])]
    return _Event(
        kind=WAS_NOT_BROUGHT,
        occurred_at=start,
        setting=setting,
        facts=facts,
        clinical_detail=f"Appointment for: {'; '.join(clinical)}" if clinical else None,
        opinion=[],
        subject=patients[0],
        authors=[a for a in actors if ctx.ref_type(a) in ("Practitioner", "PractitionerRole")],
        authored_at=appt.meta.lastUpdated if appt.meta else None,
    )


def _observation(ctx: _Context, obs: Observation) -> _Event:
    if obs.status not in _SHAREABLE_OBSERVATION:
        allowed = ", ".join(sorted(_SHAREABLE_OBSERVATION))
        raise ContractError("status", f"is {obs.status}: only {allowed} observations are shared")
    when_path, when = _observation_time(obs)
    observed = _instant(when, when_path)
    what = _text(obs.code) or "observation"
    facts = f"Health visitor observation '{what}' for {_stamp(when)}. Status: {obs.status}."
    detail = [
        *([f"Value: {v}"] if (v := _observation_value(obs)) else []),
        *(f"Body site: {s}" for s in _texts(obs.bodySite)),
        *(f"Method: {m}" for m in _texts(obs.method)),
    ]
    opinion = [*_texts(obs.interpretation), *(str(n.text) for n in obs.note or () if n.text)]
    return _Event(
        kind=HV_OBSERVATION,
        occurred_at=observed,
        setting=ctx.defaults.observation_setting,
        facts=facts,
        clinical_detail="; ".join(detail) or None,
        opinion=opinion,
        subject=("subject", obs.subject),
        authors=list(obs.performer or ()),
        authored_at=obs.issued or (obs.meta.lastUpdated if obs.meta else None),
    )


def _observation_time(obs: Observation) -> tuple[str, Any]:
    for path, value in (
        ("effectiveDateTime", obs.effectiveDateTime),
        ("effectiveInstant", obs.effectiveInstant),
        ("effectivePeriod.start", obs.effectivePeriod.start if obs.effectivePeriod else None),
        ("issued", obs.issued),
    ):
        if value is not None:
            return path, value
    raise ContractError("effective[x]", "is required: when the observation was made")


def _observation_value(obs: Observation) -> str | None:
    if obs.valueString:
        return str(obs.valueString)
    if obs.valueCodeableConcept is not None:
        return _text(obs.valueCodeableConcept)
    if obs.valueQuantity is not None and obs.valueQuantity.value is not None:
        unit = obs.valueQuantity.unit or obs.valueQuantity.code or ""
        return f"{obs.valueQuantity.value} {unit}".strip()
    if obs.valueBoolean is not None:
        return "yes" if obs.valueBoolean else "no"
    if obs.valueInteger is not None:
        return str(obs.valueInteger)
    return None


_EVENT_READERS: dict[str, Callable[[_Context, Any], _Event]] = {
    "Encounter": _encounter,
    "Appointment": _appointment,
    "Observation": _observation,
}
