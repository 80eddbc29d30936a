"""Referrals in the inbox: their deadlines, and the LA's acknowledgement and decision.

Working Together 2023: within one working day of a referral the LA acknowledges it to the
referrer and decides the response, and the referrer is told the outcome. The gateway
stamps each referral delivery with the deadlines the receiving LA's agreement sets
(``referral_due``); :func:`referral_state` puts them beside what the LA has done, for the
queue (a referral past a deadline shows overdue) and the item page.

:meth:`ReferralDesk.respond` records a response (``inbox_referral_response``) and sends it,
signed by the LA, to the gateway, which carries it to the referring agency only
(:mod:`consumers.referral_client`, :mod:`gateway.referral_responses`). A person may
respond to a referral they may open (the allocated worker, their supervisor, the MASH
duty worker); a system needs the scope ``referrals:respond``. Each response is audited as
a read of the item. An acknowledgement comes once; decisions may follow one another (the
LA's view changes as it learns more: the referrer is told each, the latest in force).
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from consumers.inbox.access import RESPOND, Principal
from consumers.inbox.referral_store import ResponseRecord
from consumers.inbox.store import InboxStore
from consumers.reader import QueueView
from sgx.errors import AlreadyAsked, ContractError, TransportError
from sgx.wire import contract as c
from sgx.wire.ids import new_id

# a ReferralResponse record -> None once the broker has it (TransportError if not)
SendResponse = Callable[[dict[str, Any]], Awaitable[None]]
# response ids -> the gateway's receipt for each judged so far
FindReceipts = Callable[[set[uuid.UUID]], Awaitable[dict[uuid.UUID, dict[str, Any]]]]

DECISIONS = {
    "NO_FURTHER_ACTION": "No further action",
    "INFORMATION_AND_ADVICE": "Information and advice",
    "EARLY_HELP": "Early help",
    "SECTION_17_ASSESSMENT": "Child in need assessment (s.17)",
    "SECTION_47_ENQUIRIES": "Child protection enquiries (s.47)",
    "IMMEDIATE_PROTECTION": "Immediate protection",
}
STAGES = ("ACKNOWLEDGED", "DECIDED")
FAILED = frozenset({"REFUSED", "QUARANTINED"})  # the referrer was not told


@dataclass(frozen=True, slots=True)
class ReferralState:
    """A referral's deadlines for this LA and what the LA has done about it."""

    acknowledge_by: dt.datetime | None
    decide_by: dt.datetime | None
    responses: tuple[ResponseRecord, ...]

    @property
    def acknowledged(self) -> ResponseRecord | None:
        """The first response that stands (a decision acknowledges too)."""
        return next((r for r in self.responses if r.outcome not in FAILED), None)

    @property
    def decided(self) -> ResponseRecord | None:
        """The decision in force: the latest that stands."""
        standing = [r for r in self.responses if r.stage == "DECIDED" and r.outcome not in FAILED]
        return standing[-1] if standing else None

    def overdue(self, now: dt.datetime) -> str | None:
        """``acknowledgement`` or ``decision`` if that deadline has passed with nothing."""
        if self.decided is not None:
            return None
        if self.acknowledged is None and self.acknowledge_by and now > self.acknowledge_by:
            return "acknowledgement"
        if self.decide_by and now > self.decide_by:
            return "decision"
        return None

    def words(self, now: dt.datetime) -> str:
        """What the queue says of it: overdue, decided, or what is due next."""
        late = self.overdue(now)
        if late == "acknowledgement":
            return f"Not acknowledged: was due {_when(self.acknowledge_by)}"
        if late == "decision":
            return f"No decision: was due {_when(self.decide_by)}"
        if self.decided is not None:
            return f"Decided: {DECISIONS.get(self.decided.decision or '', '?')}"
        if self.acknowledged is None:
            return f"Acknowledge by {_when(self.acknowledge_by)}"
        return f"Acknowledged; decide by {_when(self.decide_by)}"


def _when(at: dt.datetime | None) -> str:
    return f"{at:%d %b %H:%M} UTC" if at else "(no deadline given)"


def referral_state(view: QueueView, responses: list[ResponseRecord]) -> ReferralState:
    due = view.delivery.get("referral_due") or {}
    mine = tuple(r for r in responses if r.notification_id == view.item.notification_id)
    return ReferralState(due.get("acknowledge_by"), due.get("decide_by"), mine)


def is_referral(view: QueueView) -> bool:
    return view.item.notification_type == c.REFERRAL


def _text(value: str | None, field: str, required: bool = False) -> str | None:
    text = (value or "").strip()
    if required and not text:
        raise ContractError(field, "must not be empty")
    return text or None


class ReferralDesk:
    """One LA's acknowledgements and decisions, for the web pages and the API alike."""

    def __init__(
        self,
        *,
        store: InboxStore,
        open_item: Callable[[Principal, int], Awaitable[QueueView]],
        send: SendResponse | None,
        find_receipts: FindReceipts | None,
        la: str,
    ) -> None:
        self._store = store
        self._open = open_item
        self._send = send
        self._find = find_receipts
        self._la = la

    async def respond(
        self,
        who: Principal,
        item_id: int,
        *,
        stage: str,
        decision: str | None,
        la_contact: str,
        responded_as: str,
        reasons: str | None = None,
        next_steps: str | None = None,
        la_reference: str | None = None,
    ) -> ResponseRecord:
        """Record a response to the referral of ``item_id``, then send it (a response the
        broker cannot take now is sent again when the item is next read)."""
        who.require(RESPOND)
        view = await self._open(who, item_id)
        if not is_referral(view):
            raise ContractError("item", "is not a referral: only referrals are acknowledged")
        _check(stage, decision)
        state = await self.state(view)
        if stage == "ACKNOWLEDGED" and state.acknowledged is not None:
            raise AlreadyAsked(
                f"this referral was acknowledged already ({_when(state.acknowledged.responded_at)})"
            )
        record = {
            "response_id": new_id(),
            "referral_id": uuid.UUID(view.item.notification_id),
            "local_authority": self._la,
            "referrer": view.delivery["sender_agency"],
            "stage": stage,
            "decision": decision if stage == "DECIDED" else None,
            "reasons": _text(reasons, "reasons"),
            "next_steps": _text(next_steps, "next_steps"),
            "la_contact": _text(la_contact, "la_contact", required=True),
            "la_reference": _text(la_reference, "la_reference"),
            "responded_by": _text(responded_as, "responded_as", required=True),
            "responded_at": _millis(dt.datetime.now(dt.UTC)),
        }
        row = {
            key: record[key]
            for key in ("referrer", "stage", "decision", "reasons", "next_steps", "la_contact",
                        "la_reference", "responded_at")
        }  # fmt: skip
        made = await self._store.referrals.made(
            {**row, "response_id": str(record["response_id"]), "item_id": item_id,
             "notification_id": view.item.notification_id, "responded_by": who.subject,
             "responded_as": record["responded_by"]}
        )  # fmt: skip
        await self._sent(made.response_id, record)
        return await self._store.referrals.get(made.response_id)

    async def _sent(self, response_id: str, record: dict[str, Any]) -> None:
        if self._send is None:
            return
        try:
            await self._send(record)
        except TransportError:
            return  # kept; sent again when the item is next read
        await self._store.referrals.sent(response_id)

    async def state(self, view: QueueView) -> ReferralState:
        """The referral's deadlines and responses, with any unsent response sent again and
        the gateway's receipts looked up for those sent and not receipted yet."""
        nid = view.item.notification_id
        responses = await self._store.referrals.of([nid])
        for r in responses:
            if r.sent_at is None:
                await self._sent(r.response_id, _record(self._la, nid, r))
        waiting = {uuid.UUID(r.response_id) for r in responses if r.outcome is None}
        if waiting and self._find is not None:
            try:
                receipts = await self._find(waiting)
            except TransportError:
                receipts = {}
            for rid, receipt in receipts.items():
                await self._store.referrals.receipted(
                    str(rid), receipt["outcome"], receipt["detail"]
                )
        return referral_state(view, await self._store.referrals.of([nid]))

    async def states(self, views: list[QueueView]) -> dict[str, ReferralState]:
        """By notification id: each referral's state as recorded (for the queue: one read)."""
        referrals = [v for v in views if is_referral(v)]
        responses = await self._store.referrals.of([v.item.notification_id for v in referrals])
        return {v.item.notification_id: referral_state(v, responses) for v in referrals}


def _check(stage: str, decision: str | None) -> None:
    if stage not in STAGES:
        raise ContractError("stage", f"must be one of {', '.join(STAGES)}")
    if stage == "DECIDED" and decision not in DECISIONS:
        raise ContractError("decision", f"must be one of {', '.join(DECISIONS)}")


def _millis(at: dt.datetime) -> dt.datetime:
    return at.replace(microsecond=at.microsecond // 1000 * 1000)


def _record(la: str, notification_id: str, r: ResponseRecord) -> dict[str, Any]:
    """The ReferralResponse a recorded row stands for (to send it again, the same)."""
    return {
        "response_id": uuid.UUID(r.response_id),
        "referral_id": uuid.UUID(notification_id),
        "local_authority": la,
        "referrer": r.referrer,
        "stage": r.stage,
        "decision": r.decision,
        "reasons": r.reasons,
        "next_steps": r.next_steps,
        "la_contact": r.la_contact,
        "la_reference": r.la_reference,
        "responded_by": r.responded_as,
        "responded_at": r.responded_at,
    }
