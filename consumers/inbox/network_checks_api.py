"""Network checks over the case-management API.

POST /api/v1/deliveries/{item_id}/network-checks   rate a MASH item and ask agencies
                                                   (shares:write), with the family-
                                                   informed decision
GET  /api/v1/deliveries/{item_id}/network-checks   what was asked and what came back
                                                   (deliveries:read)
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import Response

from consumers.inbox import auth
from consumers.inbox.access import Principal
from consumers.inbox.api import body, errors
from consumers.inbox.family_api import decision_fields
from consumers.inbox.network_checks import ALL, NetworkCheck, NetworkChecks
from consumers.inbox.network_checks_models import (
    AnswerOut,
    NetworkCheckIn,
    NetworkCheckOut,
    NetworkChecksOut,
)
from consumers.inbox.oidc import IdentityProvider
from consumers.inbox.service import Inbox


def _out(check: NetworkCheck) -> NetworkCheckOut:
    answer: dict[str, Any] | None = check.answer
    decision = check.disclosure.decision
    return NetworkCheckOut(
        request_id=check.request_id, agency=check.agency, rating=check.rating,
        asked=check.asked, asked_by=check.disclosure.asked_by,
        asked_at=check.disclosure.asked_at, state=check.state, deadline=check.deadline,
        overdue=check.overdue, reason=check.reason,
        family_told=None if decision is None else decision.decision.informed,
        answer_item=check.answer_item,
        answer=None if answer is None else AnswerOut(
            outcome=answer["outcome"], facts=answer["facts"],
            professional_opinion=answer["professional_opinion"],
            restrictions=list(check.restrictions),
            answered_by=answer["answered_by"], automatic=answer["automatic"],
            answered_at=answer["answered_at"],
        ),
    )  # fmt: skip


class NetworkChecksApi:
    def __init__(self, inbox: Inbox, checks: NetworkChecks, idp: IdentityProvider | None) -> None:
        self._inbox = inbox
        self._checks = checks
        self._idp = idp

    async def _who(self, request: Request) -> Principal:
        return await auth.system(request, self._inbox.store, self._idp, self._inbox.la)

    async def ask(self, request: Request) -> Response:
        who = await self._who(request)
        item_id = int(request.path_params["item_id"])
        await self._checks.mash_item(who, item_id)  # 403 / 404 before the body is read
        try:
            asked = NetworkCheckIn.model_validate(json.loads(await request.body()))
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
            return errors(400, [("body", "not valid JSON")])
        except ValidationError as exc:
            return errors(
                422,
                [
                    (".".join(["body", *map(str, e["loc"])]), e["msg"])
                    for e in exc.errors(include_input=False)
                ],
            )
        agencies = ALL if asked.agencies == ALL else list(asked.agencies)
        checks = await self._checks.ask(
            who, item_id, rating=asked.rating, agencies=agencies, asked=asked.asked,
            family=decision_fields(asked.family), where="body.",
        )  # fmt: skip
        return body(NetworkChecksOut(item_id=item_id, checks=[_out(c) for c in checks]), 201)

    async def list(self, request: Request) -> Response:
        who = await self._who(request)
        item_id = int(request.path_params["item_id"])
        checks = await self._checks.of_item(who, item_id)
        return body(NetworkChecksOut(item_id=item_id, checks=[_out(c) for c in checks]))
