"""The family-facing summary of a child's sharing record: what the LA shared, with whom,
why and on what basis, in words a parent can read, for the worker to print and give them.

It lists a disclosure only when it was made and the family was told of it. A disclosure
not made (refused, or awaiting the exchange), one nobody has decided about yet, and one
the family was not told of because an exception applies leave **no trace**: no line, no
count, no date, and the summary never claims to be complete, so the family cannot learn
from it that something else was shared. The exception itself stays on the professional
record (the item page, the decision's history).

Of the information shared it says only what kind it was, who wrote it and when, never
what it says: no facts, opinion, risk, child's views, names of professionals or
identifiers. And where the author has not allowed the information to reach parents or
carers (a restriction that bars ``PARENT_OR_CARER``, not lifted by the author's consent
on the record or a grant the author gave: :func:`family_may_know`; or the exchange allowed
a share of that very item to the parents, which it does only when nothing bars them) it
does not say even that: the line reads "information we hold about <child>", without the
kind, the author or the date. The basis is given in fixed words for the lawful basis
recorded with the information, never the author's own text.

What the worker wrote is printed as written: to whom (the recipient's name) and why (the
purpose). The share form says so; the exchange cannot tell if a purpose repeats something
restricted (docs/design.md, threat model).

Pure: the caller (:mod:`consumers.inbox.family`) opens the items and reads the record.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from consumers.inbox.family_store import Disclosure
from sgx.domain.consent import Grant, blocking, still_blocked
from sgx.domain.family import METHOD_TEXT, DisclosureKind

PARENTS = "PARENT_OR_CARER"
WITH_WHOM = {  # the recipient category, as a family would say it
    "LA_SOCIAL_CARE": "our children's social care service",
    "PARENT_OR_CARER": "a parent or carer",
    "OTHER_PROFESSIONAL": "a professional working with your family",
    "CARE_PROCEEDINGS": "the family court",
}
BASIS = {  # UK GDPR Art. 6 basis recorded with the information, in plain words
    "PUBLIC_TASK": "our legal duty to keep children safe (a public task)",
    "LEGAL_OBLIGATION": "a legal obligation",
    "VITAL_INTERESTS": "to protect someone's life (vital interests)",
    "CONSENT": "consent",
}
DEFAULT_BASIS = BASIS["PUBLIC_TASK"]
KIND_WORDS = {  # a notification type (the contract's short name), as a family would say it
    "attendance_update": "School attendance information",
    "health_update": "Health information",
    "police_notification": "Information from the police",
    "information_answer": "Information we asked for",  # an answer to a network check
}


@dataclass(frozen=True, slots=True)
class Source:
    """An item a disclosure came from, as opened for the worker: what the summary may read
    from is decided here, not by the caller."""

    notification: Mapping[str, Any]
    type_label: str  # the contract's short name (``attendance_update``)
    authored_at: datetime
    restrictions: tuple[str, ...]  # the delivery's restriction codes
    grants: tuple[Grant, ...] = ()  # the author's consents to share it with parents


@dataclass(frozen=True, slots=True)
class FamilyLine:
    shared_on: str
    what: str
    with_whom: str
    why: str
    basis: str
    told: str


@dataclass(frozen=True, slots=True)
class FamilySummary:
    child: str
    lines: tuple[FamilyLine, ...]

    def text(self) -> str:
        """The summary as plain text (the command line's print)."""
        out = [f"Information about {self.child} we have shared, and told you about", ""]
        for line in self.lines:
            out += [
                f"{line.shared_on}: {line.what}",
                f"  with: {line.with_whom}",
                f"  why: {line.why}",
                f"  on what basis: {line.basis}",
                f"  we told you: {line.told}",
                "",
            ]
        if not self.lines:
            out += ["Nothing to list.", ""]
        return "\n".join(out)


def family_may_know(source: Source) -> bool:
    """Whether the author lets this information (its kind, author and date) reach parents:
    no restriction on it bars parents or carers, or the author's consent lifts every one."""
    consents = (source.notification.get("sharing") or {}).get("onward_consent") or ()
    barred = blocking(source.restrictions, consents, PARENTS)
    return not barred or any(not still_blocked(barred, grant) for grant in source.grants)


def _day(moment: datetime, zone: ZoneInfo) -> str:
    local = moment.astimezone(zone)
    return f"{local.day} {local:%B %Y}"


def _what(
    disclosure: Disclosure, source: Source | None, child: str, zone: ZoneInfo, known: bool
) -> str:
    if disclosure.kind is DisclosureKind.NETWORK_CHECK:
        return f"A request for what they know about {child}"
    if source is None or not known:
        return f"Information we hold about {child}"
    kind = KIND_WORDS.get(source.type_label, "Information")
    author = source.notification.get("author") or source.notification.get("requested_by") or {}
    agency = author.get("agency_name") or "another agency"
    return f"{kind} from {agency}, written {_day(source.authored_at, zone)}"


def _basis(source: Source | None) -> str:
    sharing = (source.notification.get("sharing") or {}) if source else {}
    return BASIS.get(str(sharing.get("lawful_basis")), DEFAULT_BASIS)


def _told(disclosure: Disclosure, zone: ZoneInfo) -> str:
    assert disclosure.decision is not None
    decision = disclosure.decision.decision
    assert decision.informed_at is not None
    assert decision.method is not None
    return f"{_day(decision.informed_at, zone)}, {METHOD_TEXT[decision.method]}"


def told_of(disclosures: Iterable[Disclosure]) -> list[Disclosure]:
    """The disclosures the summary lists: made, and the family told."""
    return [
        d for d in disclosures if d.made and d.decision is not None and d.decision.decision.informed
    ]


def family_summary(
    child: str,
    disclosures: Sequence[Disclosure],
    sources: Mapping[str, Source],
    zone: ZoneInfo,
) -> FamilySummary:
    """The summary of ``disclosures`` (``sources``: their items, by notification id)."""
    given = {  # items the exchange let the LA share with the parents themselves (told of)
        d.notification_id
        for d in told_of(disclosures)
        if d.kind is DisclosureKind.ONWARD_SHARE and d.to_category == PARENTS
    }
    lines = []
    for d in sorted(told_of(disclosures), key=lambda d: (d.made_at or d.asked_at, d.disclosure_id)):
        source = sources.get(d.notification_id)
        known = d.notification_id in given or (source is not None and family_may_know(source))
        lines.append(
            FamilyLine(
                shared_on=_day(d.made_at or d.asked_at, zone),
                what=_what(d, source, child, zone, known),
                with_whom=f"{d.to_name} ({WITH_WHOM.get(d.to_category, 'another organisation')})",
                why=d.purpose,
                basis=_basis(source),
                told=_told(d, zone),
            )
        )
    return FamilySummary(child, tuple(lines))
