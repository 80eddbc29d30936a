"""Reading a social worker's queue: the stored envelope is opened only when a person reads it.

The queue keeps each delivery sealed as it arrived (encrypted at rest); listing and showing
open it with the local authority's key and decode the minimised notification.
"""

from __future__ import annotations

import builtins
import datetime as dt
import re
from dataclasses import dataclass
from typing import Any

from consumers.queue import QueueItem, QueueSelection, QueueStore
from sgx.errors import ContractError, UnknownSchema
from sgx.wire import contract as c
from sgx.wire.contract import Contract
from sgx.wire.envelope import Opener, Purpose

_SYMBOL = re.compile(r"[A-Z][A-Z0-9]*(_[A-Z0-9]+)*")  # an Avro enum symbol, not "CAD-2025-1"


@dataclass(frozen=True, slots=True)
class QueueView:
    """One queue item, opened."""

    item: QueueItem
    delivery: dict[str, Any]
    notification: dict[str, Any]

    @property
    def addressee(self) -> dict[str, Any]:
        """This item's recipient among the delivery's addressees (one view may serve several)."""
        for addressee in self.delivery["recipients"]:
            if addressee["id"] == self.item.recipient_id:
                return dict(addressee)
        raise ContractError("recipients", "the delivery does not name this item's recipient")

    @property
    def is_request(self) -> bool:
        """A 2013 / 2024 Protocol disclosure request (to a police single point of contact)."""
        return self.item.notification_type == c.DISCLOSURE_REQUEST

    @property
    def is_answer(self) -> bool:
        """An agency's answer to the MASH's information request (a network check)."""
        return self.item.notification_type == c.INFORMATION_ANSWER

    @property
    def type_label(self) -> str:
        if self.is_answer:
            return "information_answer"
        return c.SHORT_NAMES.get(self.item.notification_type, self.item.notification_type)


class QueueReader:
    def __init__(self, *, store: QueueStore, opener: Opener, contract: Contract) -> None:
        self._store = store
        self._opener = opener
        self._contract = contract

    def _open(self, item: QueueItem) -> QueueView:
        opened = self._opener.open(item.envelope, purposes=(Purpose.DELIVERY,))
        delivery = self._contract.decode_as(c.DELIVERY, opened.plaintext)
        _, notification = self._contract.decode(delivery["notification"], check=False)
        return QueueView(item, delivery, notification)

    async def open(self, item: QueueItem) -> QueueView:
        """Open one queue item; a newer writer schema the consumer learned is learned here too."""
        try:
            return self._open(item)
        except UnknownSchema:
            for digest, schema in await self._store.known_schemas():
                if not self._contract.knows(bytes.fromhex(digest)):
                    self._contract.learn(schema)
            return self._open(item)

    async def list(self, recipient_id: str, *, include_acked: bool = False) -> list[QueueView]:
        items = await self._store.list(recipient_id, include_acked=include_acked)
        return [await self.open(item) for item in items]

    async def show(self, item_id: int) -> QueueView:
        return await self.open(await self._store.get(item_id))

    async def select(
        self,
        selection: QueueSelection,
        *,
        after: int = 0,
        limit: int | None = None,
        include_acked: bool = True,
    ) -> builtins.list[QueueView]:
        """The rows ``selection`` covers after id ``after``, opened (see QueueStore.select)."""
        items = await self._store.select(
            selection, after=after, limit=limit, include_acked=include_acked
        )
        return [await self.open(item) for item in items]


def child_label(notification: dict[str, Any]) -> str:
    child = notification.get("child")
    if child is None:  # an information answer: its request named the child
        return "answer to a network check"
    name = (
        " ".join(p for p in (child.get("given_name"), child.get("family_name")) if p)
        or "(name withheld)"
    )
    ident = child.get("nhs_number") and f"NHS {child['nhs_number']}"
    ident = ident or (child.get("upn") and f"UPN {child['upn']}")
    ident = ident or f"no identifier: {child.get('identifier_absent_reason')}"
    return f"{name}, {ident}"


def _author(view: QueueView) -> dict[str, Any]:
    """Who wrote the item: a notification's author, or the officer who made a request."""
    n = view.notification
    if view.is_answer:
        return {"name": n["answered_by"], "agency_name": view.item.sender_agency}
    return dict(n["requested_by"] if view.is_request else n["author"])


def summary_line(view: QueueView) -> str:
    item, n = view.item, view.notification
    status = "" if item.status == "unread" else f" [{item.status}]"
    return (
        f"#{item.item_id:<4} {item.urgency:<9} {view.type_label:<20} {child_label(n)} "
        f"— from {_author(view)['agency_name']} ({readable(item.route_reason)}){status}"
    )


def detail(view: QueueView) -> str:
    if view.is_request:
        return _request_detail(view)
    if view.is_answer:
        return _answer_detail(view)
    d, n, to = view.delivery, view.notification, view.addressee
    a, s = n["assessment"], n["sharing"]
    lines = [
        summary_line(view),
        f"  author: {n['author']['name']}, {n['author']['role']}, {n['author']['agency_name']}",
        f"  authored {d['authored_at']:%Y-%m-%d %H:%M} UTC; routed to {to['id']} "
        f"({to['role'].lower()}) because {to['route_reason'].lower().replace('_', ' ')}",
        f"  risk: {a['risk_level']}   facts: {a['facts']}",
    ]
    for label, key in (
        ("opinion", "professional_opinion"),
        ("support offered", "support_offered"),
        ("agency limitations", "agency_limitations"),
    ):
        if a.get(key):
            lines.append(f"  {label}: {a[key]}")
    if a.get("historical"):
        lines.append(f"  historical information; relevant because: {a['historical_relevance']}")
    if a.get("child_views"):
        lines.append(f"  child's views: {compact(a['child_views'])}")
    for key in ("attendance", "health", "police", "referral"):
        if key in n:
            lines.append(f"  {key}: {compact(n[key])}")
    if d.get("referral_due"):
        due = d["referral_due"]
        lines.append(
            f"  acknowledge by {due['acknowledge_by']:%Y-%m-%d %H:%M} UTC; decide by "
            f"{due['decide_by']:%Y-%m-%d %H:%M} UTC"
        )
    reason = f" — without consent: {s['no_consent_reason']}" if s.get("no_consent_reason") else ""
    lines.append(
        f"  consent {s['consent']}; lawful basis {s['lawful_basis']} ({s['legal_gateway']}){reason}"
    )
    for r in d["restrictions"]:
        lines.append(f"  RESTRICTION {r['code']} ({r['source'].lower()}): {r['text']}")
    if d["withheld"]:
        lines.append(f"  withheld from you under the agreement: {', '.join(d['withheld'])}")
    return "\n".join(lines)


def compact(value: dict[str, Any]) -> str:
    """A record's fields as a person reads them: ``occurred at 2026-11-20 22:15 UTC; ...``."""
    return "; ".join(
        f"{k.replace('_', ' ')} {readable(v)}" for k, v in value.items() if v not in (None, [], "")
    )


def readable(value: Any) -> str:
    """One value for a person: dates and times spelled out, yes/no, nested fields in ()."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, dt.datetime):
        return f"{value:%Y-%m-%d %H:%M} UTC"
    if isinstance(value, dt.date):
        return f"{value:%Y-%m-%d}"
    if isinstance(value, dict):
        return f"({compact(value)})"
    if isinstance(value, list):
        return ", ".join(readable(v) for v in value)
    if isinstance(value, str) and _SYMBOL.fullmatch(value):
        return value.lower().replace("_", " ")  # an enum symbol
    return str(value)


def _request_detail(view: QueueView) -> str:
    d, r, to = view.delivery, view.notification, view.addressee
    by, proceedings = r["requested_by"], r["proceedings"]
    lines = [
        summary_line(view),
        f"  {r['protocol']} request {r['request_reference']} by {by['name']}, {by['role']}, "
        f"{by['agency_name']}",
        f"  requested {r['requested_at']:%Y-%m-%d %H:%M} UTC; routed to {to['id']} "
        f"({to['role'].lower()}); an answer is due within 14 days",
        f"  proceedings: {compact(proceedings)}",
        f"  material requested: {r['material_requested']}",
        f"  reasons: {r['reasons']}",
    ]
    if r["police_references"]:
        lines.append(f"  police references: {', '.join(r['police_references'])}")
    for restriction in d["restrictions"]:
        lines.append(
            f"  RESTRICTION {restriction['code']} ({restriction['source'].lower()}): "
            f"{restriction['text']}"
        )
    return "\n".join(lines)


def _answer_detail(view: QueueView) -> str:
    d, n = view.delivery, view.notification
    how = "automatically" if n["automatic"] else f"by {n['answered_by']}"
    lines = [
        summary_line(view),
        f"  {readable(n['outcome'])}, answered {how} at {n['answered_at']:%Y-%m-%d %H:%M} UTC",
        f"  to information request {n['request_id']} (safeguard queue checks on its MASH item)",
    ]
    if n.get("facts"):
        lines.append(f"  facts: {n['facts']}")
    if n.get("professional_opinion"):
        lines.append(f"  opinion: {n['professional_opinion']}")
    for r in d["restrictions"]:
        lines.append(f"  RESTRICTION {r['code']} ({r['source'].lower()}): {r['text']}")
    if d["withheld"]:
        lines.append(f"  withheld from you under the agreement: {', '.join(d['withheld'])}")
    return "\n".join(lines)
