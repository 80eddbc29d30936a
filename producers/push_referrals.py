"""The push endpoint's referral routes: the referrer's system reads what each LA said.

``GET /v1/referrals/{referral_id}`` gives one referral the token's agency sent: the
gateway's receipt, and every response of an LA that received it (acknowledged, or the
decision, with the LA's reasons and next steps for the referrer and whom to contact), each
as the LA signed it (the signature verified when the receipt listener kept it).
``GET /v1/referral-responses?after=<cursor>&limit=<n>`` pages through the responses kept
since a cursor, for a system polling for news (a range of the store's ids: as cheap in a
year as on the first day). Both need a token with the ``notifications`` scope: the system
that sends referrals reads what became of them. Statuses: 200, 401, 403, 404 (no such
referral sent by this agency), 422 (a query number out of range).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from producers.outbox import OutboxStore
from producers.referral_outcomes import ReferralHeard, ReferralOutcomes
from sgx.errors import ContractError, NotFound
from sgx.wire import contract as c

REFERRALS_PATH = "/v1/referrals"
RESPONSES_PATH = "/v1/referral-responses"
PAGE_LIMIT = 500


@dataclass(frozen=True, slots=True)
class ReferralBoard:
    """One agency's referrals as its outbox holds them, and the LAs' responses."""

    store: OutboxStore
    outcomes: ReferralOutcomes
    agency: str


def _when(at: datetime | None) -> str | None:
    return None if at is None else at.isoformat().replace("+00:00", "Z")


def response_json(h: ReferralHeard) -> dict[str, Any]:
    """An LA's response as the endpoint gives it."""
    return {
        "cursor": h.heard_id,
        "response_id": str(h.response_id),
        "referral_id": str(h.referral_id),
        "local_authority": h.local_authority,
        "stage": h.stage,
        "decision": h.decision,
        "reasons": h.reasons,
        "next_steps": h.next_steps,
        "la_contact": h.la_contact,
        "la_reference": h.la_reference,
        "responded_by": h.responded_by,
        "responded_at": _when(h.responded_at),
        "signer_key_id": h.signer_key_id,
        "received_at": _when(h.received_at),
    }


def _number(request: Request, name: str, default: int, highest: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 18 or int(raw) > highest:
        raise ContractError(f"query.{name}", f"must be a whole number from 0 to {highest}")
    return int(raw)


class ReferralRoutes:
    """Handlers for the referral routes; ``authenticate`` gives the token's agency."""

    def __init__(
        self, boards: Mapping[str, ReferralBoard], authenticate: Callable[[Request], str]
    ) -> None:
        self._boards = dict(boards)
        self._authenticate = authenticate

    def _board(self, request: Request) -> ReferralBoard:
        agency = self._authenticate(request)
        board = self._boards.get(agency)
        if board is None:
            raise NotFound(f"this endpoint keeps no referrals for {agency}")
        return board

    async def referral(self, request: Request) -> Response:
        board = self._board(request)
        try:
            referral_id = uuid.UUID(request.path_params["referral_id"])
        except ValueError:
            raise NotFound("no such referral (the id is not a UUID)") from None
        entry = await board.store.get(board.agency, referral_id)
        if entry.schema_name != c.REFERRAL:
            raise NotFound(f"{referral_id} is not a referral {board.agency} sent")
        heard = await board.outcomes.of(board.agency, [referral_id])
        return JSONResponse(
            {
                "referral_id": str(referral_id),
                "status": entry.status,
                "receipt": entry.receipt_outcome,
                "receipt_detail": entry.receipt_detail,
                "responses": [response_json(h) for h in heard],
            }
        )

    async def responses(self, request: Request) -> Response:
        board = self._board(request)
        after = _number(request, "after", 0, 10**18 - 1)
        limit = max(1, _number(request, "limit", 100, PAGE_LIMIT))
        heard = await board.outcomes.after(board.agency, after, limit)
        cursor = heard[-1].heard_id if heard else after
        return JSONResponse({"responses": [response_json(h) for h in heard], "next_cursor": cursor})
