"""Network checks in the inbox's web pages, for the MASH duty worker.

    GET  /items/{item_id}/network-checks   the item's checks (each agency, its rating and
                                           deadline, the answer, overdue) and the form
    POST /items/{item_id}/network-checks   rate, choose agencies, say what is asked and
                                           whether the family was told; then ask

The form's fields: ``rating``, ``agency`` (repeated; or ``all_agencies``), ``asked`` and
the family-informed fields of :mod:`consumers.inbox.family_web` (``later`` is not offered:
the decision comes before the checks). Bad input is a 422 page naming the field, before
anything is recorded or sent.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from consumers.inbox import auth
from consumers.inbox.family_web import FamilyWeb, form_fields
from consumers.inbox.network_checks import ALL, NetworkCheck, NetworkChecks
from sgx.domain.restrictions import TEXT
from sgx.errors import ContractError

if TYPE_CHECKING:
    from consumers.inbox.web import Web

RATING_WORDS = {
    "RED": "Red: immediate risk of significant harm",
    "AMBER": "Amber: risk of harm, not immediate",
    "GREEN": "Green: needs, no immediate risk",
    "BLUE": "Blue: advice or signposting",
}
STATE_WORDS = {
    "SENT": "sent, no word from the exchange yet",
    "ASKED": "asked, awaiting an answer",
    "REFUSED": "refused by the exchange",
    "ANSWERED": "answered",
}
OUTCOME_WORDS = {
    "HELD": "Information held",
    "NOTHING_HELD": "Nothing held",
    "CANNOT_MATCH": "Cannot match the child",
}


class NetworkChecksWeb:
    def __init__(self, web: Web, family: FamilyWeb, checks: NetworkChecks) -> None:
        self._web = web
        self._family = family
        self._checks = checks

    def _row(self, check: NetworkCheck) -> dict[str, Any]:
        zone = self._family.zone
        answer = check.answer
        return {
            "agency": check.agency, "rating": check.rating, "asked": check.asked,
            "state": STATE_WORDS.get(check.state, check.state), "reason": check.reason,
            "deadline": None if check.deadline is None
            else f"{check.deadline.astimezone(zone):%d %b %Y %H:%M}",
            "overdue": check.overdue,
            "family": None if check.disclosure.decision is None
            else check.disclosure.decision.decision.words(),
            "answer": None if answer is None else {
                "outcome": OUTCOME_WORDS.get(answer["outcome"], answer["outcome"]),
                "facts": answer["facts"], "opinion": answer["professional_opinion"],
                "restrictions": [TEXT[code] for code in check.restrictions],
                "item": check.answer_item,
                "by": answer["answered_by"], "automatic": answer["automatic"],
                "at": f"{answer['answered_at'].astimezone(zone):%d %b %Y %H:%M}",
            },
        }  # fmt: skip

    async def page(self, request: Request) -> Response:
        who = await self._web.person(request)
        item_id = int(request.path_params["item_id"])
        await self._checks.mash_item(who, item_id)
        checks = await self._checks.of_item(who, item_id)
        return self._web.page(
            request, "network_checks.html", item_id=item_id, nav="queue",
            rows=[self._row(c) for c in checks], partners=self._checks.partners(),
            ratings=list(RATING_WORDS.items()), family_form=self._family.form(who),
            overdue=sum(c.overdue for c in checks),
            now=f"{dt.datetime.now(self._family.zone):%d %b %Y %H:%M}",
        )  # fmt: skip

    async def ask(self, request: Request) -> Response:
        who = await self._web.person(request)
        form = await request.form()
        auth.check_csrf(request, form.get(auth.CSRF_FIELD))
        item_id = int(request.path_params["item_id"])
        await self._checks.mash_item(who, item_id)  # 403 / 404 before the form is read
        family = form_fields(form, self._family.zone)
        if family is None:
            raise ContractError("family_outcome", "say whether the family was told, first")
        chosen = [str(a) for a in form.getlist("agency")]
        agencies = ALL if form.get("all_agencies") else chosen
        await self._checks.ask(
            who, item_id, rating=str(form.get("rating") or ""), agencies=agencies,
            asked=str(form.get("asked") or ""), family=family,
        )  # fmt: skip
        return RedirectResponse(f"/items/{item_id}/network-checks", 303)
