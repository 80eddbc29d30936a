"""Families informed in the inbox's web pages: the outstanding decisions, recording one
(with a share, or afterwards on the item page), and the family-facing summary to print.

    GET  /family                          what is outstanding in the queues you see
    POST /shares/{share_id}/family        record whether the family was told of a share
    GET  /items/{item_id}/family-summary  the family-facing summary (?print=1 to print)

The form's fields are ``family_outcome`` (``told``, ``not_told``, or ``later`` on the
share form) and, for that outcome only, ``family_informed_at`` (the LA's local time),
``family_informed_by``, ``family_method``, ``family_member``, or ``family_exception``,
``family_reason``; ``family_decided_by`` either way (the signed-in person if left
empty). Bad input is a 422 page naming the field, before anything is shared.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from consumers.inbox import auth
from consumers.inbox.access import Principal
from consumers.inbox.family import Families
from consumers.inbox.family_store import Disclosure
from consumers.inbox.service import NotYourCopy
from consumers.inbox.views import CATEGORY_LABELS
from sgx.domain.family import (
    EXCEPTION_TEXT,
    METHOD_TEXT,
    DisclosureKind,
    FamilyDecision,
    FamilyException,
    InformMethod,
)
from sgx.errors import ContractError

if TYPE_CHECKING:
    from consumers.inbox.web import Web

TOLD_FIELDS = ("informed_at", "informed_by", "method", "member")
NOT_TOLD_FIELDS = ("exception", "reason")
OUTCOMES = ("told", "not_told", "later")


def _when(raw: str, zone: dt.tzinfo) -> str:
    """A datetime-local value (the LA's local time, no zone) as an aware ISO moment."""
    try:
        moment = dt.datetime.fromisoformat(raw)
    except ValueError:
        return raw  # decision_from names the field
    return (moment if moment.tzinfo else moment.replace(tzinfo=zone)).isoformat()


def form_fields(form: Mapping[str, Any], zone: dt.tzinfo) -> dict[str, Any] | None:
    """The decision a form states, as :func:`sgx.domain.family.decision_from` reads it;
    None for "record it later"."""
    outcome = str(form.get("family_outcome") or "later")
    if outcome not in OUTCOMES:
        raise ContractError("family_outcome", "choose told, not told, or record it later")
    if outcome == "later":
        return None
    told = outcome == "told"
    fields: dict[str, Any] = {"informed": told}
    for name in (*(TOLD_FIELDS if told else NOT_TOLD_FIELDS), "decided_by"):
        value = str(form.get(f"family_{name}") or "").strip()
        if value:
            fields["family_member" if name == "member" else name] = value
    if "informed_at" in fields:
        fields["informed_at"] = _when(fields["informed_at"], zone)
    return fields


def decision_words(disclosure: Disclosure | None) -> dict[str, Any]:
    """A share's family-informed state for a page of the professional record."""
    if disclosure is None or disclosure.decision is None:
        waiting = disclosure is not None and bool(disclosure.made)
        return {"state": "outstanding" if waiting else "none", "text": "", "exception": False}
    decision = disclosure.decision.decision
    return {
        "state": "informed" if decision.informed else "not_informed",
        "text": decision.words(),
        "exception": not decision.informed,
        "reason": decision.reason,
        "recorded_by": disclosure.decision.recorded_by,
    }


class FamilyWeb:
    def __init__(self, web: Web, families: Families) -> None:
        self._web = web
        self._families = families

    @property
    def zone(self) -> dt.tzinfo:
        return self._families.calendar.zone

    # -- what the inbox's own pages need -------------------------------------------------
    def form(self, who: Principal) -> dict[str, Any]:
        """What the decision's fields offer (the share form and the item page's forms)."""
        now = dt.datetime.now(self.zone).replace(second=0, microsecond=0, tzinfo=None)
        return {
            "methods": [(m.value, METHOD_TEXT[m]) for m in InformMethod],
            "exceptions": [(e.value, EXCEPTION_TEXT[e]) for e in FamilyException],
            "now": now.isoformat(timespec="minutes"),
            "name": who.name,
        }

    def decision_in(self, form: FormData, who: Principal) -> FamilyDecision | None:
        """The decision the share form states, checked before the share is asked."""
        fields = form_fields(form, self.zone)
        return None if fields is None else self._families.check(who, fields)

    async def with_share(self, who: Principal, share_id: int, decision: FamilyDecision) -> None:
        """Record the decision made with a share, once the share is recorded."""
        found = await self._families.disclosure(who, DisclosureKind.ONWARD_SHARE, str(share_id))
        await self._families.recorded(who, found, decision)

    async def of_shares(self, share_ids: list[int]) -> dict[int, dict[str, Any]]:
        found = await self._families.of_shares(share_ids)
        return {i: decision_words(found.get(i)) for i in share_ids}

    # -- its own pages --------------------------------------------------------------------
    async def outstanding(self, request: Request) -> Response:
        who = await self._web.person(request)
        rows = []
        for o in await self._families.outstanding(who):
            d = o.disclosure
            made = (d.made_at or d.asked_at).astimezone(self.zone)
            rows.append(
                {
                    "kind": "Share" if d.kind is DisclosureKind.ONWARD_SHARE else "Network check",
                    "ref": d.ref, "item_id": d.item_id, "to_name": d.to_name,
                    "category": CATEGORY_LABELS.get(d.to_category, d.to_category),
                    "purpose": d.purpose, "asked_by": d.asked_by,
                    "recipient": o.pending.recipient_id,
                    "made": f"{made:%d %b %Y %H:%M}", "overdue": o.overdue,
                    "due": f"{o.due.astimezone(self.zone):%d %b %Y %H:%M}",
                }
            )  # fmt: skip
        return self._web.page(
            request, "family_outstanding.html", rows=rows, nav="family",
            overdue=sum(r["overdue"] for r in rows), days=self._families.due_days,
        )  # fmt: skip

    async def record(self, request: Request) -> Response:
        who = await self._web.person(request)
        form = await request.form()
        auth.check_csrf(request, form.get(auth.CSRF_FIELD))
        share_id = int(request.path_params["share_id"])
        kind, ref = DisclosureKind.ONWARD_SHARE, str(share_id)
        found = await self._families.disclosure(who, kind, ref)  # 404 before the form is read
        fields = form_fields(form, self.zone)
        if fields is None:
            raise ContractError("family_outcome", "choose told or not told")
        await self._families.record(who, kind, ref, fields)
        return RedirectResponse(f"/items/{found.item_id}?family={share_id}#share-{share_id}", 303)

    async def summary(self, request: Request) -> Response:
        who = await self._web.person(request)
        item_id = int(request.path_params["item_id"])
        try:
            found = await self._families.summary(who, item_id)
        except NotYourCopy as sealed:
            return self._web.routing(request, sealed)
        return self._web.page(
            request, "family_summary.html", summary=found, item_id=item_id, nav="queue",
            printable=request.query_params.get("print") == "1",
            now=f"{dt.datetime.now(self.zone):%d %B %Y}",
        )  # fmt: skip
