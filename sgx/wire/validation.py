"""The contract's record rules: what a notification or disclosure request says beyond Avro.

:func:`check_notification` applies the semantic rules to a structurally valid notification
(an identifier or the reason for none, each identifier and the residence LA well formed,
the sharing basis, a named author, facts, the police and attendance rules);
:func:`check_disclosure_request` does the same for a Protocol disclosure request, and
:data:`RULES` maps each schema name with rules to its check (Contract.check applies them).
Each raises :class:`sgx.errors.ContractError` with a dotted field path
(``sharing.no_consent_reason``) and the problem in plain words, never echoing a name or an
identifier.

The structural checks that come first (types, required and unknown fields, timezone-aware
datetimes) are :mod:`sgx.wire.structure`'s; :func:`compile_structure` is re-exported here for
importers that have not moved to it.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable, Mapping
from typing import Any

from sgx.domain import consent, network_checks
from sgx.domain.identifiers import check_gss_code, check_nhs_number, check_upn
from sgx.domain.restrictions import FORBIDS
from sgx.errors import ContractError

# Re-exported: sgx.wire.contract still imports compile_structure from here.
from sgx.wire.structure import compile_structure as compile_structure

_NS = "org.safeguarding.exchange."
ATTENDANCE_UPDATE = _NS + "AttendanceUpdate"
HEALTH_UPDATE = _NS + "HealthUpdate"
POLICE_NOTIFICATION = _NS + "PoliceNotification"
DISCLOSURE_REQUEST = _NS + "DisclosureRequest"
CONSENT_REQUEST = _NS + "ConsentRequest"
CONSENT_ANSWER = _NS + "ConsentAnswer"
REFERRAL = _NS + "Referral"
REFERRAL_RESPONSE = _NS + "ReferralResponse"
INFORMATION_REQUEST = _NS + "InformationRequest"
INFORMATION_ANSWER = _NS + "InformationAnswer"


def _text(record: Mapping[str, Any], key: str) -> bool:
    """True if ``record[key]`` is a string with something other than whitespace."""
    value = record.get(key)
    return isinstance(value, str) and value != "" and not value.isspace()


def check_child(child: Mapping[str, Any], schema: str) -> None:
    """An NHS number, a UPN or the reason for neither; each identifier valid, and the
    residence LA, when given, an ONS GSS code (at ``child``)."""
    nhs_number, upn = child.get("nhs_number"), child.get("upn")
    if nhs_number is None and upn is None and child.get("identifier_absent_reason") is None:
        raise ContractError(
            "child", "needs nhs_number, upn or identifier_absent_reason", schema=schema
        )
    try:
        if nhs_number is not None:
            check_nhs_number(nhs_number, "child.nhs_number")
        if upn is not None:
            check_upn(upn, "child.upn")
        residence_la = child.get("residence_la")
        if residence_la is not None:
            check_gss_code(residence_la, "child.residence_la")
    except ContractError as exc:
        raise ContractError(exc.path, exc.problem, schema=schema) from None


def _check_sharing(sharing: Mapping[str, Any], schema: str) -> None:
    consent = sharing["consent"]
    if consent != "GIVEN" and sharing.get("no_consent_reason") is None:
        raise ContractError(
            "sharing.no_consent_reason",
            f"is required when consent is {consent}: give the statutory reason for sharing",
            schema=schema,
        )
    for code in sharing.get("restrictions") or ():
        clash = FORBIDS.get(code, frozenset()) & set(sharing.get("onward_consent") or ())
        if clash:
            raise ContractError(
                "sharing.onward_consent",
                f"consents to {', '.join(sorted(clash))} which the author's own {code} forbids",
                schema=schema,
            )
    if sharing["lawful_basis"] == "CONSENT" and consent != "GIVEN":
        raise ContractError(
            "sharing.lawful_basis",
            f"is CONSENT but sharing.consent is {consent}",
            schema=schema,
        )


def check_person(person: Mapping[str, Any], path: str, schema: str) -> None:
    """A person acting for an agency (an Author at ``path``): name, role and agency named."""
    for key in ("name", "role", "agency_id"):
        if not _text(person, key):
            raise ContractError(f"{path}.{key}", "must not be empty", schema=schema)


def _check_assessment(assessment: Mapping[str, Any], schema: str) -> None:
    if not _text(assessment, "facts"):
        raise ContractError("assessment.facts", "must not be empty", schema=schema)
    if assessment.get("historical") and not _text(assessment, "historical_relevance"):
        raise ContractError(
            "assessment.historical_relevance",
            "is required when assessment.historical is true: say why it still matters",
            schema=schema,
        )


def _check_police(record: Mapping[str, Any], schema: str) -> None:
    police = record["police"]
    kind = police["kind"]
    if kind == "OPERATION_ENCOMPASS":
        if police.get("incident") is None:
            raise ContractError("police.incident", f"is required for {kind}", schema=schema)
    elif kind.startswith("PROTOCOL_") and police.get("disclosure") is None:
        raise ContractError("police.disclosure", f"is required for {kind}", schema=schema)


def _days(value: dt.date | int) -> int:
    """A date as days since 1970-01-01 (ints pass through, as Avro writes them)."""
    if isinstance(value, dt.date):
        return value.toordinal() - 719_163
    return value


def _check_attendance(record: Mapping[str, Any], schema: str) -> None:
    figures = record["attendance"]
    possible = figures["sessions_possible"]
    missed = figures["sessions_missed"]
    unexplained = figures["unexplained_absences"]

    def bad(field: str, problem: str) -> ContractError:
        return ContractError(f"attendance.{field}", problem, schema=schema)

    for field, count in (
        ("sessions_possible", possible),
        ("sessions_missed", missed),
        ("unexplained_absences", unexplained),
    ):
        if count < 0:
            raise bad(field, f"must not be negative (is {count})")
    if missed > possible:
        raise bad("sessions_missed", f"is {missed}, more than sessions_possible ({possible})")
    if unexplained > missed:
        raise bad("unexplained_absences", f"is {unexplained}, more than sessions_missed ({missed})")
    if _days(figures["period_start"]) > _days(figures["period_end"]):
        raise bad("period_end", "is before period_start")
    _check_absence_flags(figures, possible, missed, bad)


def _check_absence_flags(
    figures: Mapping[str, Any], possible: int, missed: int, bad: Callable[[str, str], ContractError]
) -> None:
    """Persistent absence: missed >= 10% of possible; severe: >= 50% (none when possible is 0)."""
    for field, share, expected in (
        ("persistent_absence", "10%", possible > 0 and missed * 10 >= possible),
        ("severe_absence", "50%", possible > 0 and missed * 2 >= possible),
    ):
        if figures[field] != expected:
            meets = "meets" if expected else "is below"
            raise bad(
                field,
                f"is {str(figures[field]).lower()} but {missed} of {possible} possible sessions "
                f"missed {meets} the {share} threshold",
            )


def _check_referral(record: Mapping[str, Any], schema: str) -> None:
    """A referral says how to reach the referrer again, what it is about and how it arose,
    and, when the parents were not told of it, why (Camden's and Working Together's
    exceptions: the statutory reasons for sharing without consent)."""
    if not _text(record["author"], "contact"):
        raise ContractError(
            "author.contact",
            "is required in a referral: how the local authority can reach the referrer again",
            schema=schema,
        )
    details = record["referral"]
    if not details["concerns"]:
        raise ContractError("referral.concerns", "must name at least one concern", schema=schema)
    if not _text(details, "how_it_arose"):
        raise ContractError("referral.how_it_arose", "must not be empty", schema=schema)
    told, reason = details["parents_told"], details.get("parents_not_told_reason")
    if not told and reason is None:
        raise ContractError(
            "referral.parents_not_told_reason",
            "is required when parents_told is false: say why the parents were not told",
            schema=schema,
        )
    if told and reason is not None:
        raise ContractError(
            "referral.parents_not_told_reason",
            "is for parents who were not told, but parents_told is true",
            schema=schema,
        )
    for i, member in enumerate(details.get("household") or ()):
        for key in ("name", "relationship"):
            if not _text(member, key):
                path = f"referral.household[{i}].{key}"
                raise ContractError(path, "must not be empty", schema=schema)


_TYPE_RULES: dict[str, Callable[[Mapping[str, Any], str], None]] = {
    ATTENDANCE_UPDATE: _check_attendance,
    HEALTH_UPDATE: lambda record, schema: None,
    POLICE_NOTIFICATION: _check_police,
    REFERRAL: _check_referral,
}

NOTIFICATION_RULE_TYPES = frozenset(_TYPE_RULES)


def check_notification(name: str, record: Mapping[str, Any]) -> None:
    """Apply the contract rules beyond Avro structure to a notification of type ``name``.

    ``record`` must already be structurally valid (decoded, or checked with the schema's
    structure checker). Raises ContractError naming the offending field.
    """
    type_rule = _TYPE_RULES.get(name)
    if type_rule is None:
        raise ContractError("$", f"{name} is not a notification type", schema=name)
    check_child(record["child"], name)
    _check_sharing(record["sharing"], name)
    check_person(record["author"], "author", name)
    _check_assessment(record["assessment"], name)
    type_rule(record, name)


def check_disclosure_request(record: Mapping[str, Any]) -> None:
    """The rules beyond Avro structure for a 2013 / 2024 Protocol disclosure request.

    The request names its child and its officer as a notification does, and what a
    police single point of contact needs to answer it: the reference, the force, the
    material and why, the court (and case number once proceedings are issued).
    """
    schema = DISCLOSURE_REQUEST
    for path in ("request_reference", "police_force", "material_requested", "reasons"):
        if not _text(record, path):
            raise ContractError(path, "must not be empty", schema=schema)
    check_person(record["requested_by"], "requested_by", schema)
    check_child(record["child"], schema)
    proceedings = record["proceedings"]
    if not _text(proceedings, "court"):
        raise ContractError("proceedings.court", "must not be empty", schema=schema)
    if proceedings["stage"] == "ISSUED" and not _text(proceedings, "case_number"):
        raise ContractError(
            "proceedings.case_number", "is required once proceedings are ISSUED", schema=schema
        )
    start, end = record.get("period_start"), record.get("period_end")
    if start is not None and end is not None and _days(start) > _days(end):
        raise ContractError("period_end", "is before period_start", schema=schema)


def check_referral_response(record: Mapping[str, Any]) -> None:
    """A decision names itself and an acknowledgement does not; the LA, the referrer, the
    contact and who responded are named."""
    schema = REFERRAL_RESPONSE
    for path in ("local_authority", "referrer", "la_contact", "responded_by"):
        if not _text(record, path):
            raise ContractError(path, "must not be empty", schema=schema)
    decided, decision = record["stage"] == "DECIDED", record.get("decision")
    if decided and decision is None:
        raise ContractError("decision", "is required when stage is DECIDED", schema=schema)
    if not decided and decision is not None:
        problem = "is for a DECIDED response; an acknowledgement decides nothing yet"
        raise ContractError("decision", problem, schema=schema)


RULES: dict[str, Callable[[Mapping[str, Any]], None]] = {
    **{name: functools.partial(check_notification, name) for name in _TYPE_RULES},
    DISCLOSURE_REQUEST: check_disclosure_request,
    CONSENT_REQUEST: functools.partial(consent.check_request, schema=CONSENT_REQUEST),
    CONSENT_ANSWER: functools.partial(consent.check_answer, schema=CONSENT_ANSWER),
    REFERRAL_RESPONSE: check_referral_response,
    INFORMATION_REQUEST: functools.partial(
        network_checks.check_request, schema=INFORMATION_REQUEST
    ),
    INFORMATION_ANSWER: functools.partial(network_checks.check_answer, schema=INFORMATION_ANSWER),
}
"""The contract rules beyond Avro structure, by schema name (Contract.check applies them)."""
