"""The case-management API: JSON over HTTP for Mosaic, Liquidlogic or Eclipse.

Deliveries are listed after a cursor (the last item id seen; ids are handed out in commit
order, see :mod:`consumers.queue`), so a poller misses and repeats nothing. Listing gives
routing facts only; fetching one opens it (audited). Errors are ``{"errors": [{"path",
"problem"}]}`` and never echo what was sent.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from consumers.inbox import auth
from consumers.inbox.access import RESPOND, Principal
from consumers.inbox.api_models import (
    AckOut,
    ConsentOut,
    Delivery,
    DeliveryPage,
    DeliverySummary,
    ReceivedOut,
    ReferralOut,
    ResponseIn,
    ResponseOut,
    RestrictionOut,
    ShareIn,
    ShareOut,
    SharingRecord,
)
from consumers.inbox.consent_store import ConsentRecord
from consumers.inbox.family_models import decision_out
from consumers.inbox.family_store import Disclosure
from consumers.inbox.oidc import IdentityProvider
from consumers.inbox.referral_store import ResponseRecord
from consumers.inbox.referrals import ReferralState
from consumers.inbox.service import PAGE_LIMIT, Inbox
from consumers.inbox.store import ShareRecord
from consumers.inbox.views import LARGEST_ID, jsonable, restrictions, whole_number
from consumers.inbox.web import share_status
from consumers.queue import QueueItem
from sgx.domain.family import DisclosureKind
from sgx.errors import ContractError, NotFound
from sgx.wire import contract as c

if TYPE_CHECKING:
    from consumers.inbox.family import Families

PREFIX = "/api/v1"
_In = TypeVar("_In", bound=BaseModel)


def body(model: BaseModel, status: int = 200) -> Response:
    return Response(
        model.model_dump_json(),
        status_code=status,
        media_type="application/json",
        headers={"Cache-Control": "no-store"},
    )


def errors(
    status: int, items: list[tuple[str, str]], headers: Mapping[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(
        {"errors": [{"path": p, "problem": m} for p, m in items]},
        status_code=status,
        headers={**(headers or {}), "Cache-Control": "no-store"},
    )


def _summary(item: QueueItem) -> dict[str, Any]:
    return {
        "item_id": item.item_id,
        "cursor": str(item.item_id),
        "notification_id": item.notification_id,
        "notification_type": item.notification_type,
        "urgency": item.urgency,
        "status": item.status,
        "recipient_id": item.recipient_id,
        "recipient_role": item.recipient_role,
        "team": item.team,
        "route_reason": item.route_reason,
        "sender_agency": item.sender_agency,
        "authored_at": item.authored_at,
        "routed_at": item.routed_at,
        "queued_at": item.queued_at,
        "acked_at": item.acked_at,
        "acked_by": item.acked_by,
        "restrictions": list(item.restrictions),
        "withheld": list(item.withheld),
    }


def _share(share: ShareRecord, family: Disclosure | None = None) -> ShareOut:
    decided = family.decision if family else None
    return ShareOut(
        share_id=share.share_id,
        item_id=share.item_id,
        to_id=share.to_id,
        to_category=share.to_category,
        to_name=share.to_name,
        purpose=share.purpose,
        requested_by=share.requested_by,
        requested_at=share.requested_at,
        status=share_status(share),
        broken=list(share.broken),
        reason=share.reason,
        decided_at=share.decided_at,
        family=decision_out(decided) if decided else None,
    )


def _consent(consent: ConsentRecord) -> ConsentOut:
    return ConsentOut(
        consent_id=consent.consent_id,
        share_id=consent.share_id,
        item_id=consent.item_id,
        to_category=consent.category,
        purpose=consent.purpose,
        requested_by=consent.requested_by,
        requested_at=consent.requested_at,
        status=consent.status,
        author=consent.author,
        answered_by=consent.answered_by,
        court_order=consent.court_order,
        still_blocked=list(consent.still_blocked),
        reason=consent.reason,
        decided_at=consent.decided_at,
    )


def _int_param(request: Request, name: str, default: int, lowest: int, highest: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    value = whole_number(raw)
    if value is None or not lowest <= value <= highest:
        raise ContractError(f"query.{name}", f"must be a whole number from {lowest} to {highest}")
    return value


class Api:
    def __init__(self, inbox: Inbox, idp: IdentityProvider | None) -> None:
        self._inbox = inbox
        self._idp = idp
        self.families: Families | None = None  # families informed (consumers.inbox.family)

    async def _families_of(self, shares: list[ShareRecord]) -> dict[int, Disclosure]:
        if self.families is None:
            return {}
        return await self.families.of_shares([s.share_id for s in shares])

    async def _who(self, request: Request) -> Principal:
        return await auth.system(request, self._inbox.store, self._idp, self._inbox.la)

    async def deliveries(self, request: Request) -> Response:
        """GET /api/v1/deliveries?after=<cursor>&limit=<n>"""
        who = await self._who(request)
        after = _int_param(request, "after", 0, 0, LARGEST_ID)
        limit = _int_param(request, "limit", 100, 1, PAGE_LIMIT)
        items = await self._inbox.items(who, after=after, limit=limit)
        next_cursor = str(items[-1].item_id) if items else str(after)
        page = DeliveryPage(
            items=[DeliverySummary(**_summary(i)) for i in items], next_cursor=next_cursor
        )
        return body(page)

    async def delivery(self, request: Request) -> Response:
        who = await self._who(request)
        view = await self._inbox.open(who, int(request.path_params["item_id"]), "fetched")
        return body(
            Delivery(
                **_summary(view.item),
                restriction_texts=[RestrictionOut(**r) for r in restrictions(view)],
                notification=jsonable(view.notification),
            )
        )

    async def ack(self, request: Request) -> Response:
        who = await self._who(request)
        item = await self._inbox.ack(who, int(request.path_params["item_id"]))
        return body(
            AckOut(
                item_id=item.item_id,
                status=item.status,
                acked_at=item.acked_at,
                acked_by=item.acked_by,
            )
        )

    async def share(self, request: Request) -> Response:
        who = await self._who(request)
        asked = await _body(request, ShareIn)
        if isinstance(asked, Response):
            return asked
        families, told = self.families, None
        if asked.family is not None and families is not None:  # checked before sharing
            fields = asked.family.model_dump(exclude_none=True)
            told = families.check(who, fields, "body.family.")
        share = await self._inbox.share(
            who,
            int(request.path_params["item_id"]),
            category=asked.category,
            to_name=asked.to_name,
            purpose=asked.purpose,
        )
        if told is not None and families is not None:
            found = await families.disclosure(who, DisclosureKind.ONWARD_SHARE, str(share.share_id))
            await families.recorded(who, found, told)
        family = await self._families_of([share])
        return body(_share(share, family.get(share.share_id)), 201)

    async def referral(self, request: Request) -> Response:
        """GET /api/v1/deliveries/{item_id}/referral: deadlines and responses."""
        who = await self._who(request)
        view = await self._inbox.open(who, int(request.path_params["item_id"]), "fetched")
        if view.item.notification_type != c.REFERRAL:
            raise NotFound(f"item {view.item.item_id} is not a referral")
        state = await self._inbox.referrals.state(view)
        return body(_referral(view.item.item_id, view.delivery["sender_agency"], state))

    async def respond(self, request: Request) -> Response:
        """POST /api/v1/deliveries/{item_id}/referral/responses: acknowledge or decide."""
        who = await self._who(request)
        who.require(RESPOND)  # before the body is read: a client without the scope learns nothing
        asked = await _body(request, ResponseIn)
        if isinstance(asked, Response):
            return asked
        made = await self._inbox.referrals.respond(
            who,
            int(request.path_params["item_id"]),
            stage=asked.stage,
            decision=asked.decision,
            reasons=asked.reasons,
            next_steps=asked.next_steps,
            la_contact=asked.la_contact,
            la_reference=asked.la_reference,
            responded_as=asked.responded_by,
        )
        return body(_response(made), 201)

    async def share_decision(self, request: Request) -> Response:
        who = await self._who(request)
        share = await self._inbox.share_record(who, int(request.path_params["share_id"]))
        family = await self._families_of([share])
        return body(_share(share, family.get(share.share_id)))

    async def ask_consent(self, request: Request) -> Response:
        """POST /api/v1/shares/{share_id}/consent: ask the author of a refused share."""
        who = await self._who(request)
        asked = await self._inbox.ask_consent(who, int(request.path_params["share_id"]))
        return body(_consent(asked), 201)

    async def consent(self, request: Request) -> Response:
        who = await self._who(request)
        found = await self._inbox.consent_record(who, int(request.path_params["consent_id"]))
        return body(_consent(found))

    async def sharing_record(self, request: Request) -> Response:
        who = await self._who(request)
        record = await self._inbox.child(who, int(request.path_params["item_id"]))
        received = [
            ReceivedOut(
                item_id=v.item.item_id,
                notification_id=v.item.notification_id,
                notification_type=v.item.notification_type,
                urgency=v.item.urgency,
                sender_agency=v.item.sender_agency,
                author=str(
                    (v.notification.get("author") or v.notification.get("requested_by") or {}).get(
                        "name"
                    )
                ),
                authored_at=v.delivery["authored_at"],
                consent=str(v.notification.get("sharing", {}).get("consent", "NOT_SOUGHT")),
                lawful_basis=str(
                    v.notification.get("sharing", {}).get("lawful_basis", "PUBLIC_TASK")
                ),
            )
            for v in record.views
        ]
        family = await self._families_of(record.shares)
        shared = [_share(s, family.get(s.share_id)) for s in record.shares]
        return body(SharingRecord(received=received, shared=shared))


async def _body(request: Request, model: type[_In]) -> _In | Response:
    """The request's JSON body as ``model``, or the error response (400, 422) saying why."""
    raw = await request.body()
    try:
        sent = json.loads(raw)
    except json.JSONDecodeError as exc:
        return _not_json(f"{exc.msg} at line {exc.lineno} column {exc.colno}")
    except UnicodeDecodeError:
        return _not_json("it is not UTF-8")
    except RecursionError:
        return _not_json("it is nested too deeply")
    try:
        return model.model_validate(sent)
    except ValidationError as exc:
        return errors(422, [(_path(e["loc"]), e["msg"]) for e in exc.errors(include_input=False)])


def _response(r: ResponseRecord) -> ResponseOut:
    return ResponseOut(
        response_id=r.response_id,
        stage="DECIDED" if r.stage == "DECIDED" else "ACKNOWLEDGED",
        decision=r.decision,
        reasons=r.reasons,
        next_steps=r.next_steps,
        la_contact=r.la_contact,
        la_reference=r.la_reference,
        responded_by=r.responded_as,
        requested_by=r.responded_by,
        responded_at=r.responded_at,
        status=r.status,
        detail=r.outcome_detail,
    )


def _referral(item_id: int, referrer: str, state: ReferralState) -> ReferralOut:
    decided = state.decided
    return ReferralOut(
        item_id=item_id,
        referrer=referrer,
        acknowledge_by=state.acknowledge_by,
        decide_by=state.decide_by,
        overdue=state.overdue(dt.datetime.now(dt.UTC)),
        decision=decided.decision if decided else None,
        responses=[_response(r) for r in state.responses],
    )


def _not_json(problem: str) -> Response:
    return errors(400, [("body", f"not valid JSON: {problem}")])


def _path(location: tuple[int | str, ...]) -> str:
    return ".".join(["body", *(str(part) for part in location)])
