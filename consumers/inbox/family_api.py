"""Families informed over the case-management API: record and read the decision on a
share, list what is outstanding, read the family-facing summary.

    POST /api/v1/shares/{share_id}/family        record a decision (shares:write)
    GET  /api/v1/shares/{share_id}/family        the decision in force and its history
    GET  /api/v1/family/outstanding              disclosures with no decision (the caller's)
    GET  /api/v1/deliveries/{item_id}/family-summary   the family-facing summary

A network check (a MASH information request) will answer on routes of its own calling the
same handlers with its kind (:meth:`FamilyApi.record`, :meth:`FamilyApi.decision`).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable

from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import Response

from consumers.inbox import auth
from consumers.inbox.access import SHARE, Principal
from consumers.inbox.api import body, errors
from consumers.inbox.family import Families
from consumers.inbox.family_models import (
    FamilyDecisionIn,
    outstanding_out,
    record_out,
    summary_out,
)
from consumers.inbox.oidc import IdentityProvider
from consumers.inbox.service import Inbox
from sgx.domain.family import DisclosureKind

Handler = Callable[[Request], Awaitable[Response]]


def decision_fields(model: FamilyDecisionIn) -> dict[str, object]:
    """A decision's body as the fields :func:`sgx.domain.family.decision_from` reads."""
    return model.model_dump(exclude_none=True)


class FamilyApi:
    def __init__(self, inbox: Inbox, families: Families, idp: IdentityProvider | None) -> None:
        self._inbox = inbox
        self._families = families
        self._idp = idp

    async def _who(self, request: Request) -> Principal:
        return await auth.system(request, self._inbox.store, self._idp, self._inbox.la)

    def record(self, kind: DisclosureKind, param: str) -> Handler:
        """POST .../{param}/family: record a decision about the disclosure ``kind``."""

        async def handler(request: Request) -> Response:
            who = await self._who(request)
            ref = str(request.path_params[param])
            who.require(SHARE)
            await self._families.disclosure(who, kind, ref)  # 404 before the body is read
            try:
                asked = FamilyDecisionIn.model_validate(json.loads(await request.body()))
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
            await self._families.record(who, kind, ref, decision_fields(asked), "body.")
            return await self._record(who, kind, ref, 201)

        return handler

    def decision(self, kind: DisclosureKind, param: str) -> Handler:
        """GET .../{param}/family: the disclosure's decision in force, and its history."""

        async def handler(request: Request) -> Response:
            who = await self._who(request)
            return await self._record(who, kind, str(request.path_params[param]), 200)

        return handler

    async def _record(
        self, who: Principal, kind: DisclosureKind, ref: str, status: int
    ) -> Response:
        found, history = await self._families.history(who, kind, ref)
        return body(record_out(found, history, self._families.due(found)), status)

    async def outstanding(self, request: Request) -> Response:
        who = await self._who(request)
        return body(outstanding_out(await self._families.outstanding(who)))

    async def summary(self, request: Request) -> Response:
        who = await self._who(request)
        found = await self._families.summary(who, int(request.path_params["item_id"]))
        return body(summary_out(found))
