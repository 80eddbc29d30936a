"""The push endpoint's consent routes: an author's system lists consent requests and answers.

``GET /v1/consent-requests[?open=true|false]`` lists the requests local authorities put to
the token's agency as author (``open=true``: those not answered yet);
``POST /v1/consent-requests/{request_id}/answer`` answers one with
``{"granted": true|false, "answered_by": "...", "reason": ..., "court_order": ...}``
(:class:`producers.consent_requests.ConsentDesk`: the answer is kept in the agency's
outbox, signed and sent like a notification). Statuses as for notifications
(:mod:`producers.push`), and: 202 answered, 404 no such request put to this agency, 409
answered already (the first answer stands), 422 a field that cannot stand (an empty one,
or a police grant that bars parents or other agencies without ``court_order``), or an
``open`` that is neither true nor false.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from producers.consent_requests import ConsentDesk, ConsentRequest
from producers.openapi import CONSENT_PATH
from sgx.errors import ContractError, NotFound
from sgx.wire import contract as c

__all__ = ["CONSENT_PATH", "ConsentRoutes", "answer_from_json", "open_only", "request_json"]

_ANSWER_FIELDS = {"granted": bool, "answered_by": str, "reason": str, "court_order": str}
_REQUIRED = ("granted", "answered_by")


def _when(at: datetime | None) -> str | None:
    return None if at is None else at.isoformat().replace("+00:00", "Z")


def request_json(r: ConsentRequest) -> dict[str, Any]:
    """A consent request as the endpoint lists it."""
    return {
        "request_id": str(r.request_id),
        "notification_id": str(r.notification_id),
        "local_authority": r.local_authority,
        "requested_by": r.requested_by,
        "category": r.category,
        "purpose": r.purpose,
        "blocking": list(r.blocking),
        "requested_at": _when(r.requested_at),
        "answer": r.answer,
        "answered_by": r.answered_by,
        "court_order": r.court_order,
        "answered_at": _when(r.answered_at),
    }


def answer_from_json(data: Any) -> dict[str, Any]:
    """The answer's fields from its JSON body; ContractError names a wrong field (and
    never repeats what was sent)."""
    if not isinstance(data, dict):
        raise ContractError("$", "expected a JSON object", schema=c.CONSENT_ANSWER)
    unknown = sorted(set(data) - set(_ANSWER_FIELDS))
    if unknown:
        raise ContractError(
            "$", f"{len(unknown)} field(s) not in the answer; fields: "
            + ", ".join(_ANSWER_FIELDS), schema=c.CONSENT_ANSWER,
        )  # fmt: skip
    for name in _REQUIRED:
        if name not in data:
            raise ContractError(name, "is required", schema=c.CONSENT_ANSWER)
    for name, kind in _ANSWER_FIELDS.items():
        value = data.get(name)
        if value is not None and not isinstance(value, kind):
            raise ContractError(name, f"must be a {kind.__name__}", schema=c.CONSENT_ANSWER)
        if value == "":
            none = "" if name in _REQUIRED else ": leave it out, or send null, for none"
            raise ContractError(name, f"must not be empty{none}", schema=c.CONSENT_ANSWER)
    return {name: data.get(name) for name in _ANSWER_FIELDS}


def open_only(request: Request) -> bool:
    """The ``open`` query parameter: true or false (false if left out)."""
    sent = request.query_params.get("open", "false").lower()
    if sent not in ("true", "false"):
        raise ContractError("query.open", "must be true or false")
    return sent == "true"


class ConsentRoutes:
    """Handlers for the consent routes; ``authenticate`` gives the token's agency and
    ``read_json`` the checked JSON body (both from the push service)."""

    def __init__(
        self,
        desks: Mapping[str, ConsentDesk],
        authenticate: Callable[[Request], str],
        read_json: Callable[[Request], Any],
    ) -> None:
        self._desks = dict(desks)
        self._authenticate = authenticate
        self._read_json = read_json

    def _desk(self, request: Request) -> ConsentDesk:
        agency = self._authenticate(request)
        desk = self._desks.get(agency)
        if desk is None:
            raise NotFound(f"this endpoint keeps no consent requests for {agency}")
        return desk

    async def list(self, request: Request) -> Response:
        desk = self._desk(request)
        requests = await desk.list(open_only=open_only(request))
        return JSONResponse({"consent_requests": [request_json(r) for r in requests]})

    async def answer(self, request: Request) -> Response:
        desk = self._desk(request)
        try:
            request_id = uuid.UUID(request.path_params["request_id"])
        except ValueError:
            raise NotFound("no such consent request (the id is not a UUID)") from None
        fields = answer_from_json(await self._read_json(request))
        answered = await desk.answer(
            request_id,
            granted=bool(fields["granted"]),
            answered_by=fields["answered_by"],
            reason=fields["reason"],
            court_order=fields["court_order"],
        )
        return JSONResponse(request_json(answered), status_code=202)
