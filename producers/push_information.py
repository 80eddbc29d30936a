"""The push endpoint's network-check routes: an agency's system lists the MASH information
requests put to it and answers them.

``GET /v1/information-requests[?open=true|false]`` lists the requests local authorities'
MASHs put to the token's agency, oldest first (``open=true``: those not answered yet),
each with its BRAG rating, its deadline (and whether it has passed), what the MASH asks,
the child as far as this agency can match them, and whether the family was told.
``POST /v1/information-requests/{request_id}/answer`` answers one with

    {"outcome": "HELD" | "NOTHING_HELD" | "CANNOT_MATCH",
     "facts": "...", "professional_opinion": "...",          (only when held; facts required)
     "restrictions": ["NOT_TO_PARENTS", ...],                 (the author's, on onward use)
     "answered_by": "Ms Patel, DSL"}

through :meth:`producers.information_requests.InformationRequests.answer`, the code
``safeguard producer information answer`` uses: the signed answer goes in the agency's
outbox with the answer on the request's row, in one transaction, and its relay sends it.
Both need a token with the ``information`` scope (:mod:`producers.push_tokens`). A
request is found only among those put to the token's agency: another agency's id is 404,
the same as an id never sent (an answer sent some other way to a request not put to its
sender is quarantined by the gateway, ``not_the_agency_asked``).

Statuses as for notifications (:mod:`producers.push`), and: 202 answered, 404 no such
request put to this agency, 409 answered already (the first answer stands), 422 a field
that cannot stand, named by its path (``outcome``, ``facts``, ``restrictions[1]``...), or
an ``open`` that is neither true nor false.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from producers.information_requests import InformationRequest, InformationRequests
from producers.openapi_information import AUTHOR_RESTRICTIONS, INFORMATION_PATH, OUTCOMES
from producers.outbox import Outbox
from producers.push_consent import open_only
from sgx.domain.restrictions import TEXT
from sgx.errors import ContractError, NotFound
from sgx.keys.trust import utc_now
from sgx.wire import contract as c

__all__ = [
    "AUTHOR_RESTRICTIONS",
    "INFORMATION_PATH",
    "OUTCOMES",
    "InformationBoard",
    "InformationRoutes",
    "answer_from_json",
    "request_json",
    "restrictions_of",
]

_TEXTS = ("facts", "professional_opinion", "answered_by")
_FIELDS = ("outcome", *_TEXTS, "restrictions")
_REQUIRED = ("outcome", "answered_by")


@dataclass(frozen=True, slots=True)
class InformationBoard:
    """One agency's information requests (in its outbox database) and its outbox."""

    book: InformationRequests
    outbox: Outbox


def _when(at: datetime | None) -> str | None:
    return None if at is None else at.isoformat().replace("+00:00", "Z")


def _day(on: date | None) -> str | None:
    return None if on is None else on.isoformat()


def request_json(r: InformationRequest, now: datetime) -> dict[str, Any]:
    """An information request as the endpoint lists it."""
    return {
        "request_id": str(r.request_id),
        "local_authority": r.local_authority,
        "rating": r.rating,
        "deadline": _when(r.deadline),
        "overdue": r.overdue(now),
        "asked": r.asked,
        "requested_by": r.requested_by,
        "requested_at": _when(r.requested_at),
        "family_told": r.family_told,
        "family_exception": r.family_exception,
        "child": {
            "nhs_number": r.nhs_number,
            "upn": r.upn,
            "given_name": r.given_name,
            "family_name": r.family_name,
            "date_of_birth": _day(r.date_of_birth),
            "postcode": r.postcode,
        },
        "received_at": _when(r.received_at),
        "outcome": r.outcome,
        "answer_id": None if r.answer_id is None else str(r.answer_id),
        "answered_by": r.answered_by,
        "automatic": r.automatic,
        "answered_at": _when(r.answered_at),
    }


def restrictions_of(codes: list[str], path: str = "restrictions") -> list[dict[str, str]]:
    """The Restriction records of the author's ``codes`` (their words from the contract's
    table); ContractError naming ``path[i]`` for a code an author may not set, or a repeat."""
    out: list[dict[str, str]] = []
    for i, code in enumerate(codes):
        if code not in AUTHOR_RESTRICTIONS:
            raise ContractError(
                f"{path}[{i}]", f"must be one of {', '.join(AUTHOR_RESTRICTIONS)}",
                schema=c.INFORMATION_ANSWER,
            )  # fmt: skip
        if code in codes[:i]:
            raise ContractError(
                f"{path}[{i}]", "repeats a restriction", schema=c.INFORMATION_ANSWER
            )
        out.append({"code": code, "source": "AUTHOR", "text": TEXT[code]})
    return out


def _unicode(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def answer_from_json(data: Any) -> dict[str, Any]:
    """The answer's fields from its JSON body (``restrictions`` as Restriction records);
    ContractError names a wrong field and never repeats what was sent."""

    def refuse(path: str, problem: str) -> ContractError:
        return ContractError(path, problem, schema=c.INFORMATION_ANSWER)

    if not isinstance(data, dict):
        raise refuse("$", "expected a JSON object")
    unknown = sorted(set(data) - set(_FIELDS))
    if unknown:
        fields = ", ".join(_FIELDS)
        raise refuse("$", f"{len(unknown)} field(s) not in the answer; fields: {fields}")
    for name in _REQUIRED:
        if data.get(name) is None:
            raise refuse(name, "is required")
    if data["outcome"] not in OUTCOMES:
        raise refuse("outcome", f"must be one of {', '.join(OUTCOMES)}")
    for name in _TEXTS:
        value = data.get(name)
        if value is not None and not isinstance(value, str):
            raise refuse(name, "must be a string")
        if value == "":
            none = "" if name in _REQUIRED else ": leave it out, or send null, for none"
            raise refuse(name, f"must not be empty{none}")
        if value is not None and not value.isprintable() and not _unicode(value):
            raise refuse(name, "is not Unicode text (it holds a lone surrogate)")
    codes = data.get("restrictions")
    codes = [] if codes is None else codes
    if not isinstance(codes, list) or not all(isinstance(code, str) for code in codes):
        raise refuse("restrictions", "must be an array of restriction codes")
    return {
        "outcome": data["outcome"],
        "facts": data.get("facts"),
        "opinion": data.get("professional_opinion"),
        "restrictions": restrictions_of(codes),
        "answered_by": data["answered_by"],
    }


class InformationRoutes:
    """Handlers for the network-check routes; ``authenticate`` gives the token's agency
    (holding the ``information`` scope) and ``read_json`` the checked JSON body."""

    def __init__(
        self,
        boards: Mapping[str, InformationBoard],
        authenticate: Callable[[Request], str],
        read_json: Callable[[Request], Any],
    ) -> None:
        self._boards = dict(boards)
        self._authenticate = authenticate
        self._read_json = read_json

    def _board(self, request: Request) -> tuple[str, InformationBoard]:
        agency = self._authenticate(request)
        board = self._boards.get(agency)
        if board is None:
            raise NotFound(f"this endpoint keeps no information requests for {agency}")
        return agency, board

    async def list(self, request: Request) -> Response:
        agency, board = self._board(request)
        found = await board.book.list(agency, open_only=open_only(request))
        now = utc_now()
        return JSONResponse({"information_requests": [request_json(r, now) for r in found]})

    async def answer(self, request: Request) -> Response:
        agency, board = self._board(request)
        try:
            request_id = uuid.UUID(request.path_params["request_id"])
        except ValueError:
            raise NotFound("no such information request (the id is not a UUID)") from None
        await board.book.get(agency, request_id)  # 404 before the body: nothing learnt
        fields = answer_from_json(await self._read_json(request))
        answered = await board.book.answer(board.outbox, request_id, **fields)
        return JSONResponse(request_json(answered, utc_now()), status_code=202)
