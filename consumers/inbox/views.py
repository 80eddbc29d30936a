"""What a reader sees of a queue item: its wait, its order, and its parts in plain words.

Shared by the web page and the API, so both show the same thing. Nothing here reads the
queue or decides access; it shapes what :class:`consumers.reader.QueueView` opened.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from consumers.queue import QueueItem
from consumers.reader import QueueView, compact, readable

# An unread item is overdue once it has waited this long. IMMEDIATE: a child may be at
# risk of significant harm now, so within the hour; PRIORITY: within a working day
# (Working Together 2023: a decision on a referral within one working day).
OVERDUE_AFTER = {"IMMEDIATE": dt.timedelta(hours=1), "PRIORITY": dt.timedelta(hours=24)}
URGENCY_ORDER = {"IMMEDIATE": 0, "PRIORITY": 1, "ROUTINE": 2}

RESTRICTION_LABELS = {
    "NO_ONWARD_SHARING": "No onward sharing",
    "NOT_TO_PARENTS": "Not to parents or carers",
    "NOT_TO_OTHER_AGENCIES": "Not to other agencies",
    "THIRD_PARTY_AUTHOR_CONSENT": "Author's consent needed",
    "POLICE_CONFIDENTIAL_TO_PROCEEDINGS": "Police: confidential to proceedings",
}
CATEGORY_LABELS = {
    "LA_SOCIAL_CARE": "LA social care",
    "PARENT_OR_CARER": "Parent or carer",
    "OTHER_PROFESSIONAL": "Another professional",
    "CARE_PROCEEDINGS": "Care proceedings (court)",
}


def words(symbol: str) -> str:
    """An enum symbol as words: ``RESIDENCE_MASH`` → ``residence mash``."""
    return symbol.lower().replace("_", " ")


def type_words(view: QueueView) -> str:
    """``Police notification``, ``Attendance update``, ``Disclosure request``."""
    return view.type_label.replace("_", " ").capitalize()


def waited(item: QueueItem, now: dt.datetime) -> dt.timedelta:
    return max(dt.timedelta(0), now - item.queued_at)


def overdue(item: QueueItem, now: dt.datetime) -> bool:
    limit = OVERDUE_AFTER.get(item.urgency)
    return item.status == "unread" and limit is not None and waited(item, now) > limit


def duration(span: dt.timedelta) -> str:
    """``2 d 3 h``, ``3 h 20 min``, ``4 min``, ``under a minute``."""
    minutes = int(span.total_seconds() // 60)
    days, rest = divmod(minutes, 24 * 60)
    hours, minutes = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {minutes} min"
    return f"{minutes} min" if minutes else "under a minute"


def queue_order(items: Iterable[QueueItem]) -> list[QueueItem]:
    """Unread first, then by urgency (immediate first), then oldest first."""
    return sorted(
        items,
        key=lambda i: (
            i.status != "unread",
            URGENCY_ORDER.get(i.urgency, 9),
            i.queued_at,
            i.item_id,
        ),
    )


ANSWERED_CHILD = "the child of a network check"  # an answer names no child: its request did


def child_name(notification: dict[str, Any]) -> str:
    child = notification.get("child")
    if child is None:  # an information answer
        return ANSWERED_CHILD
    parts = (child.get("given_name"), child.get("family_name"))
    return " ".join(p for p in parts if p) or "(name withheld)"


def child_key(notification: dict[str, Any]) -> tuple[str, ...]:
    """What identifies the child across items: NHS number, else UPN, else name and birth
    (an information answer, which names no child: the request it answers)."""
    child = notification.get("child")
    if child is None:
        return ("answer", str(notification["request_id"]))
    if child.get("nhs_number"):
        return ("nhs", child["nhs_number"])
    if child.get("upn"):
        return ("upn", child["upn"])
    return ("name", child_name(notification).lower(), str(child.get("date_of_birth")))


@dataclass(frozen=True, slots=True)
class Part:
    label: str
    text: str


@dataclass(frozen=True, slots=True)
class ItemPage:
    """One opened item, in the parts a reader needs, each in words."""

    view: QueueView
    author: dict[str, Any]
    child: list[Part]
    facts: str
    opinion: str | None
    risk: str
    support: str | None
    limitations: str | None
    child_views: list[Part]
    historical: str | None  # the relevance, if the information is historical
    details: list[tuple[str, list[Part]]]
    consent: list[Part]
    restrictions: list[dict[str, str]]
    withheld: list[str]
    request: list[Part]  # a disclosure request's own parts (empty for a notification)
    answer: list[Part] = field(default_factory=list)  # an information answer's own parts

    @property
    def type_label(self) -> str:
        return type_words(self.view)


def restrictions(view: QueueView) -> list[dict[str, str]]:
    return [
        {
            "code": r["code"],
            "label": RESTRICTION_LABELS.get(r["code"], words(r["code"])),
            "source": "set by the author" if r["source"] == "AUTHOR" else "the exchange's default",
            "text": r["text"],
        }
        for r in view.delivery["restrictions"]
    ]


def _parts(record: dict[str, Any] | None) -> list[Part]:
    if not record:
        return []
    return [
        Part(k.replace("_", " "), readable(v)) for k, v in record.items() if v not in (None, [], "")
    ]


def _answer_page(view: QueueView) -> ItemPage:
    """An agency's answer to the MASH's information request (it names no child: the
    request did, and the MASH item it was asked from shows the child)."""
    n = view.notification
    by = {"name": n["answered_by"], "role": "automatic answer" if n["automatic"] else "",
          "agency_name": view.item.sender_agency}  # fmt: skip
    answer = [
        Part("outcome", words(n["outcome"])),
        Part("answered", "automatically, from data the agency holds" if n["automatic"]
             else f"by {n['answered_by']}"),
        Part("request", str(n["request_id"])),
    ]  # fmt: skip
    return ItemPage(
        view, by, [Part("name", ANSWERED_CHILD)], n.get("facts") or words(n["outcome"]),
        n.get("professional_opinion"), "", None, None, [], None, [], [], restrictions(view),
        list(view.delivery["withheld"]), [], answer,
    )  # fmt: skip


def item_page(view: QueueView) -> ItemPage:
    n = view.notification
    if view.is_answer:
        return _answer_page(view)
    child = n["child"]
    child_parts = [Part("name", child_name(n))]
    for key, label in (("nhs_number", "NHS number"), ("upn", "UPN"), ("date_of_birth", "born")):
        if child.get(key):
            child_parts.append(Part(label, readable(child[key])))
    if child.get("identifier_absent_reason"):
        child_parts.append(Part("no identifier", words(child["identifier_absent_reason"])))
    if view.is_request:
        by = n["requested_by"]
        request = [
            Part("protocol", str(n["protocol"])),
            Part("reference", str(n["request_reference"])),
            Part("proceedings", compact(n["proceedings"])),
            Part("material requested", str(n["material_requested"])),
            Part("reasons", str(n["reasons"])),
        ]
        return ItemPage(
            view,
            dict(by),
            child_parts,
            "",
            None,
            "",
            None,
            None,
            [],
            None,
            [],
            [],
            restrictions(view),
            list(view.delivery["withheld"]),
            request,
        )
    a, s = n["assessment"], n["sharing"]
    consent = [
        Part("consent", words(s["consent"])),
        Part("lawful basis", words(s["lawful_basis"])),
        Part("legal gateway", str(s["legal_gateway"])),
    ]
    if s.get("no_consent_reason"):
        consent.append(Part("shared without consent because", words(s["no_consent_reason"])))
    details = [
        (key.capitalize(), _parts(n[key]))
        for key in ("attendance", "health", "police", "referral")
        if key in n
    ]
    return ItemPage(
        view=view,
        author=dict(n["author"]),
        child=child_parts,
        facts=a["facts"],
        opinion=a.get("professional_opinion"),
        risk=words(a["risk_level"]),
        support=a.get("support_offered"),
        limitations=a.get("agency_limitations"),
        child_views=_parts(a.get("child_views")),
        historical=(a.get("historical_relevance") or "not stated") if a.get("historical") else None,
        details=details,
        consent=consent,
        restrictions=restrictions(view),
        withheld=list(view.delivery["withheld"]),
        request=[],
    )


def jsonable(value: Any) -> Any:
    """A decoded Avro value as JSON: uuids and times as strings; bytes are left out."""
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items() if not isinstance(v, bytes)}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    return value


ID_DIGITS = 18  # the longest id or cursor read: within the stores' 64-bit integers
LARGEST_ID = 10**ID_DIGITS - 1


def whole_number(raw: str | None) -> int | None:
    """A query parameter's whole number (ASCII digits only: ``int`` also reads ``²`` and
    ``١٢``, which ``str.isdigit`` lets through), or None if it is absent or not one (or
    longer than :data:`ID_DIGITS`)."""
    if raw is None or not (raw.isascii() and raw.isdigit()) or len(raw) > ID_DIGITS:
        return None
    return int(raw)
