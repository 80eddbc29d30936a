"""Families informed: whether a family was told of a disclosure, or which exception applied.

Camden's guidance (a seed) says families should be informed whenever sensitive information
has been shared with a third party, and that parents are told before network checks are
taken up; the only exceptions are where telling them would put the child at (further)
risk, prejudice the investigation of a crime, cause undue delay in safeguarding the
child, or where a court ordered the disclosure. Golden rule 7 asks that every such
decision be recorded with its reasons.

A **disclosure** is anything the LA passes about a child to someone else that the family
should hear of: an onward share the exchange allowed (``onward_share``, its id the
inbox's share id) or a MASH information request to a partner agency (``network_check``).
Its **family-informed decision** (:class:`FamilyDecision`) is either *informed* (when, by
whom, how, and who in the family) or *not informed* with one of the four exceptions
(:class:`FamilyException`, the same four the contract names as ``NoConsentReason``) and
the reasons; in both cases who decided and when. A decision may be recorded before the
disclosure is made (Camden: tell them beforehand) or afterwards, and a later decision
supersedes an earlier one (an exception that has lapsed, and the family is then told);
the earlier stays on the record.

:func:`decision_from` applies the rules beyond each field's type and names the field a
problem is in (``ContractError``); the web form, the API and the command line all use it.
:func:`decision_due` says when a decision not yet recorded becomes overdue: ``days``
working days after the disclosure (weekdays that are not bank holidays, in the
calendar's zone). Nothing here reads the clock.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, TypeVar

from sgx.domain.calendar import SchoolCalendar
from sgx.domain.working_days import working_days_after
from sgx.errors import ContractError

NAME_MAX = 200
TEXT_MAX = 1000
CLOCK_SKEW = timedelta(minutes=5)  # a moment "now" on another machine may be this far ahead
_E = TypeVar("_E", bound=StrEnum)


class DisclosureKind(StrEnum):
    """What a family-informed decision is about."""

    ONWARD_SHARE = "onward_share"  # an onward share the exchange allowed (an inbox share id)
    NETWORK_CHECK = "network_check"  # a MASH information request to a partner agency


class FamilyException(StrEnum):
    """Why the family was not told: Camden's four exceptions (``NoConsentReason``)."""

    RISK_TO_CHILD = "RISK_TO_CHILD"
    PREJUDICE_CRIMINAL_INVESTIGATION = "PREJUDICE_CRIMINAL_INVESTIGATION"
    UNDUE_DELAY = "UNDUE_DELAY"
    COURT_ORDER = "COURT_ORDER"


class InformMethod(StrEnum):
    """How the family was told."""

    IN_PERSON = "IN_PERSON"
    PHONE = "PHONE"
    VIDEO_CALL = "VIDEO_CALL"
    LETTER = "LETTER"
    EMAIL = "EMAIL"
    TEXT_MESSAGE = "TEXT_MESSAGE"


# The professional record's words for each exception (never shown to the family).
EXCEPTION_TEXT = {
    FamilyException.RISK_TO_CHILD: "telling the family would put the child at risk of "
    "(further) harm",
    FamilyException.PREJUDICE_CRIMINAL_INVESTIGATION: "telling the family may prejudice the "
    "investigation of a crime",
    FamilyException.UNDUE_DELAY: "telling the family first would cause undue delay in "
    "safeguarding the child",
    FamilyException.COURT_ORDER: "the disclosure was ordered by a court",
}
METHOD_TEXT = {
    InformMethod.IN_PERSON: "in person",
    InformMethod.PHONE: "by phone",
    InformMethod.VIDEO_CALL: "by video call",
    InformMethod.LETTER: "by letter",
    InformMethod.EMAIL: "by email",
    InformMethod.TEXT_MESSAGE: "by text message",
}


@dataclass(frozen=True, slots=True)
class FamilyDecision:
    """One family-informed decision about one disclosure."""

    informed: bool
    decided_by: str
    decided_at: datetime
    informed_at: datetime | None = None
    informed_by: str | None = None
    method: InformMethod | None = None
    family_member: str | None = None  # who in the family was told (professional record only)
    exception: FamilyException | None = None
    reason: str | None = None  # why (required for an exception; a note otherwise)

    def words(self) -> str:
        """The decision in a line of the professional record."""
        if self.informed:
            assert self.informed_at is not None
            assert self.method is not None
            whom = f" ({self.family_member})" if self.family_member else ""
            return (
                f"told{whom} {METHOD_TEXT[self.method]} by {self.informed_by} on "
                f"{self.informed_at:%d %b %Y %H:%M} UTC"
            )
        assert self.exception is not None
        return (
            f"not told: {EXCEPTION_TEXT[self.exception]} (decided by {self.decided_by} on "
            f"{self.decided_at:%d %b %Y %H:%M} UTC)"
        )


def _text(fields: Mapping[str, Any], name: str, limit: int, where: str) -> str | None:
    value = fields.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ContractError(where + name, "must be text")
    if not value.strip():
        raise ContractError(where + name, "must not be blank")
    if len(value) > limit:
        raise ContractError(where + name, f"is {len(value)} characters; at most {limit}")
    return value.strip()


def _moment(fields: Mapping[str, Any], name: str, now: datetime, where: str) -> datetime | None:
    value = fields.get(name)
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            raise ContractError(where + name, "is not a date and time (ISO 8601)") from None
    if not isinstance(value, datetime):
        raise ContractError(where + name, "must be a date and time")
    if value.tzinfo is None:
        raise ContractError(where + name, "needs a time zone (e.g. 2026-12-07T10:30:00Z)")
    if value > now + CLOCK_SKEW:
        raise ContractError(where + name, "is in the future: record what has happened")
    return value.astimezone(UTC)


def _symbol(kind: type[_E], fields: Mapping[str, Any], name: str, where: str) -> _E | None:
    value = fields.get(name)
    if value is None:
        return None
    try:
        return kind(str(value).upper())
    except ValueError:
        known = ", ".join(member.value for member in kind)
        raise ContractError(where + name, f"must be one of {known}") from None


def _none_of(fields: Mapping[str, Any], names: tuple[str, ...], why: str, where: str) -> None:
    for name in names:
        if fields.get(name) is not None:
            raise ContractError(where + name, why)


def decision_from(
    fields: Mapping[str, Any], *, now: datetime, decided_by: str | None = None, where: str = ""
) -> FamilyDecision:
    """The decision ``fields`` state (absent fields are None), checked; ``decided_by``
    stands in when the fields name no decider (the person recording it), ``now`` for
    ``decided_at``. ``where`` prefixes every field path named in an error."""
    informed = fields.get("informed")
    if not isinstance(informed, bool):
        raise ContractError(where + "informed", "say whether the family was told (true/false)")
    decider = _text(fields, "decided_by", NAME_MAX, where) or decided_by
    if not decider or not decider.strip():
        raise ContractError(where + "decided_by", "say who decided")
    decided_at = _moment(fields, "decided_at", now, where) or now.astimezone(UTC)
    reason = _text(fields, "reason", TEXT_MAX, where)
    if informed:
        _none_of(fields, ("exception",), "an exception applies only when the family was "
                 "not told", where)  # fmt: skip
        informed_at = _moment(fields, "informed_at", now, where)
        informed_by = _text(fields, "informed_by", NAME_MAX, where)
        method = _symbol(InformMethod, fields, "method", where)
        for name, value in (("informed_at", informed_at), ("informed_by", informed_by),
                            ("method", method)):  # fmt: skip
            if value is None:
                raise ContractError(where + name, "say when, by whom and how the family was told")
        return FamilyDecision(
            True, decider.strip(), decided_at, informed_at, informed_by, method,
            _text(fields, "family_member", NAME_MAX, where), None, reason,
        )  # fmt: skip
    _none_of(fields, ("informed_at", "informed_by", "method", "family_member"),
             "is recorded only when the family was told", where)  # fmt: skip
    exception = _symbol(FamilyException, fields, "exception", where)
    if exception is None:
        raise ContractError(where + "exception", "say which exception applies")
    if reason is None:
        raise ContractError(where + "reason", "record why the exception applies")
    return FamilyDecision(False, decider.strip(), decided_at, exception=exception, reason=reason)


# -- when a decision not yet recorded is overdue ------------------------------------------
def decision_due(calendar: SchoolCalendar, disclosed_at: datetime, days: int) -> datetime:
    """When the decision on a disclosure made at ``disclosed_at`` is overdue: the same
    clock time ``days`` working days on (a disclosure outside a working day counts from
    the start of the next one), in UTC (:func:`sgx.domain.working_days.working_days_after`)."""
    return working_days_after(calendar, disclosed_at, days)
