"""Judging an LA's request to share a delivered notification onward.

An LA may share onward only what the gateway delivered to it (the share ledger holds one
entry per receiving LA), and only where no restriction on onward use forbids the
recipient category (:func:`sgx.domain.consent.blocking`) unless the author's consent is on
record: in the notification itself, or given later for exactly that category and
purpose when the LA asked (:mod:`gateway.consents`; police material confidential to the
proceedings also needs the court order). A refusal says what would let the share through.
An allowed share to another worker of the same LA (``LA_SOCIAL_CARE``) is delivered
through the exchange, minimised for the ``onward`` role under that LA's agreement (a
notification, or an agency's answer to the MASH's information request); any
other allowed share goes through the LA's own channel. Every answer is audited against
the requesting LA.

A SHARE_REQUEST envelope holds a ``ShareRequest`` or a ``ConsentRequest`` (asking the
author); both are judged here, the latter by :class:`gateway.consents.ConsentJudge`.
"""

from __future__ import annotations

from typing import Any

from gateway.agreement import Agreement
from gateway.consent_book import ConsentBook
from gateway.consents import ConsentJudge
from gateway.decision import Decision, Message, Quarantine, View, deliver, onward_entry
from gateway.information_delivery import deliver_answer
from gateway.partnership import Partnership
from gateway.records import LedgerEntry
from gateway.restrictions import describe
from gateway.store import GatewayStore
from sgx.domain.consent import COURT_ORDER_ONLY, Grant, blocking, purpose_key, still_blocked
from sgx.domain.restrictions import TEXT
from sgx.keys.trust import utc_now
from sgx.wire import contract as c
from sgx.wire.contract import Contract
from sgx.wire.envelope import Opened, Purpose


class ShareJudge:
    def __init__(
        self,
        *,
        contract: Contract,
        partnership: Partnership,
        store: GatewayStore,
        book: ConsentBook,
    ) -> None:
        self._contract = contract
        self._partnership = partnership
        self._store = store
        self._book = book
        self._consents = ConsentJudge(store=store, book=book)

    async def answer(self, opened: Opened, record: dict[str, Any]) -> Decision:
        """An author's answer to a consent request (:mod:`gateway.consents`)."""
        return await self._consents.answer(opened, record)

    async def judge(self, opened: Opened, name: str, record: dict[str, Any]) -> Decision:
        """A SHARE_REQUEST envelope's record (decoded by the caller)."""
        if opened.sender.kind != "local_authority":
            raise Quarantine(
                "not_permitted_by_agreement", f"{opened.sender.kind} sent a share request"
            )
        if name == c.CONSENT_REQUEST:
            return await self._consents.ask(opened, record)
        if name != c.SHARE_REQUEST:
            raise Quarantine("invalid_record", f"a SHARE_REQUEST envelope holds a {name}")
        return await self._share(opened, record)

    async def _share(self, opened: Opened, request: dict[str, Any]) -> Decision:
        la = opened.sender.id
        ledger = await self._store.ledger_entry(str(request["notification_id"]), la)
        if ledger is None:
            why = "the gateway delivered no such notification to this LA"
            return _answer(opened, request, None, [], "unknown_notification", why)
        category = request["to"]["category"]
        broken = blocking(ledger.restrictions, ledger.onward_consent, category)
        if not broken:
            return self._allowed(opened, request, ledger, "no restriction forbids it")
        grants = await self._book.grants(ledger.notification_id, la, category)
        wanted = purpose_key(request["purpose"])
        matching = [g for g in grants if purpose_key(g.purpose) == wanted]
        # of several grants for this purpose, the one that lifts most (a court order's)
        grant = min(matching, key=lambda g: len(still_blocked(broken, g)), default=None)
        remaining = still_blocked(broken, grant)
        if not remaining:
            return self._allowed(opened, request, ledger, consented(grant))
        why = " ".join(f"{code}: {TEXT[code]}" for code in remaining)
        why += way_forward(remaining, category, grant, grants)
        return _answer(opened, request, ledger, remaining, "restriction", why)

    def _allowed(
        self, opened: Opened, request: dict[str, Any], ledger: LedgerEntry, why: str
    ) -> Decision:
        decision = _answer(opened, request, ledger, [], "allowed", why)
        if request["to"]["category"] != "LA_SOCIAL_CARE":
            return decision  # the LA shares through its own channel; the decision is audited
        name, record = self._contract.decode(request["notification"])
        key = (
            bytes.fromhex(ledger.child_pseudonym)
            if ledger.child_pseudonym
            else opened.message_id.bytes
        )
        la = opened.sender.id
        to = request["to"]
        recipient = {"id": to["id"], "role": "ONWARD", "team": None, "name": to["name"]}
        if name == c.INFORMATION_ANSWER and record["answer_id"] == request["notification_id"]:
            _answer_onward(
                decision, opened, request, record, ledger, recipient, key,
                self._partnership.agreement(la), self._contract,
            )  # fmt: skip
            return decision
        if (
            name not in c.NOTIFICATION_TYPES
            or record["notification_id"] != request["notification_id"]
        ):
            raise Quarantine("invalid_record", "the shared item is not the notification named")
        restrictions = describe(ledger.restrictions, ledger.sender_kind)
        view = View.of(opened, name, record, request["notification"], key, restrictions).to(la, la)
        deliver(
            decision,
            view,
            [(recipient, "ONWARD_SHARE")],
            self._partnership.agreement(la),
            self._contract,
            role="onward",
            sender_kind=ledger.sender_kind,  # the author's kind, not the requesting LA's
        )
        return decision


def _answer_onward(
    decision: Decision,
    opened: Opened,
    request: dict[str, Any],
    record: dict[str, Any],
    ledger: LedgerEntry,
    recipient: dict[str, Any],
    key: bytes,
    agreement: Agreement,
    contract: Contract,
) -> None:
    """An information answer shared within the LA: delivered with the ledger's
    restrictions to the onward recipient, minimised for the ``onward`` role by the LA's
    agreement (:mod:`gateway.information_delivery`)."""
    la, now = opened.sender.id, utc_now()
    entry = onward_entry(
        "delivered", opened,
        {"notification_id": ledger.notification_id, "category": "ONWARD",
         "local_authority": la},
        ledger, sender=ledger.sender, recipient=recipient["id"], reason="ONWARD_SHARE",
        restrictions=ledger.restrictions,
        detail=f"information answer shared by {request['requested_by']} for "
        f"{request['purpose']!r}",
    )  # fmt: skip
    deliver_answer(
        decision, la=la, record=record, plaintext=request["notification"],
        recipient=recipient, reason="ONWARD_SHARE", sender_agency=ledger.sender,
        sender_kind=ledger.sender_kind, codes=ledger.restrictions, urgency="ROUTINE", key=key,
        audit=entry, routed_at=now, agreement=agreement, contract=contract,
    )  # fmt: skip


def consented(grant: Grant | None) -> str:
    """Why a share that needed the author's consent is allowed."""
    assert grant is not None
    said = f"the author's consent (request {grant.request_id}, by {grant.answered_by})"
    return said + (f" under court order {grant.court_order!r}" if grant.court_order else "")


def way_forward(
    remaining: list[str], category: str, grant: Grant | None, grants: list[Grant]
) -> str:
    """What the LA can do about a refused share, in words after the restrictions."""
    if any(code in COURT_ORDER_ONLY for code in remaining):
        return (
            " Police material: it goes further only when the police record the court "
            "order directing disclosure with their consent"
        )
    if grant is None and grants:
        purposes = ", ".join(repr(g.purpose) for g in grants)
        return (
            f" The author consented to sharing it with {category} for {purposes} only: "
            "ask the author again for this purpose"
        )
    return " Ask the author's consent through the exchange"


def _answer(
    opened: Opened,
    request: dict[str, Any],
    ledger: LedgerEntry | None,
    broken: list[str],
    reason: str,
    detail: str,
) -> Decision:
    allowed = reason == "allowed"
    decision = Decision(
        outcome="share_allowed" if allowed else "share_refused", type_label="share_request"
    )
    about = {
        "notification_id": request["notification_id"],
        "category": request["to"]["category"],
        "local_authority": opened.sender.id,
    }
    decision.audit.append(
        onward_entry(
            decision.outcome, opened, about, ledger, sender=opened.sender.id,
            recipient=request["to"]["id"], reason=reason,
            restrictions=ledger.restrictions if ledger else (),
            detail=f"by {request['requested_by']} for {request['purpose']!r}: {detail}",
        )
    )  # fmt: skip
    decision.messages.append(
        Message(
            opened.sender.id,
            Purpose.SHARE_DECISION,
            c.SHARE_DECISION,
            {
                "request_id": request["request_id"],
                "notification_id": request["notification_id"],
                "allowed": allowed,
                "broken": broken,
                "reason": detail,
                "decided_at": utc_now(),
            },
        )
    )
    return decision
