"""Judging an LA's request to share a delivered notification onward.

An LA may share onward only what the gateway delivered to it (the share ledger holds one
entry per receiving LA), and only where no restriction on onward use forbids the
recipient category (:func:`gateway.restrictions.broken_by`) unless the author's consent is
on record. An allowed share to another worker of the same LA (``LA_SOCIAL_CARE``) is
delivered through the exchange, minimised for the ``onward`` role under that LA's
agreement; any other allowed share goes through the LA's own channel. Every answer is
audited against the requesting LA.
"""

from __future__ import annotations

from typing import Any

from gateway.audit_chain import AuditEntry
from gateway.decision import Decision, Quarantine, View, deliver
from gateway.partnership import Partnership
from gateway.restrictions import broken_by, describe
from gateway.store import GatewayStore, LedgerEntry
from sgx import contract as c
from sgx.contract import Contract
from sgx.envelope import Opened
from sgx.restrictions import TEXT
from sgx.trust import utc_now


class ShareJudge:
    def __init__(
        self, *, contract: Contract, partnership: Partnership, store: GatewayStore
    ) -> None:
        self._contract = contract
        self._partnership = partnership
        self._store = store

    async def judge(self, opened: Opened) -> Decision:
        if opened.sender.kind != "local_authority":
            raise Quarantine(
                "not_permitted_by_agreement", f"{opened.sender.kind} sent a share request"
            )
        request = self._contract.decode_as(c.SHARE_REQUEST, opened.plaintext)
        ledger = await self._store.ledger_entry(str(request["notification_id"]), opened.sender.id)
        if ledger is None:
            why = "the gateway delivered no such notification to this LA"
            return _answer(opened, request, None, [], "unknown_notification", why)
        category = request["to"]["category"]
        broken = broken_by(ledger.restrictions, ledger.onward_consent, category)
        if broken:
            why = "; ".join(f"{code}: {TEXT[code]}" for code in broken)
            return _answer(opened, request, ledger, broken, "restriction", why)
        return self._allowed(opened, request, ledger)

    def _allowed(self, opened: Opened, request: dict[str, Any], ledger: LedgerEntry) -> Decision:
        decision = _answer(opened, request, ledger, [], "allowed", "no restriction forbids it")
        if request["to"]["category"] != "LA_SOCIAL_CARE":
            return decision  # the LA shares through its own channel; the decision is audited
        name, record = self._contract.decode(request["notification"])
        if (
            name not in c.NOTIFICATION_TYPES
            or record["notification_id"] != request["notification_id"]
        ):
            raise Quarantine("invalid_record", "the shared item is not the notification named")
        key = (
            bytes.fromhex(ledger.child_pseudonym)
            if ledger.child_pseudonym
            else opened.message_id.bytes
        )
        la = opened.sender.id
        restrictions = describe(ledger.restrictions, ledger.sender_kind)
        to = request["to"]
        recipient = {"id": to["id"], "role": "ONWARD", "team": None, "name": to["name"]}
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
    decision.audit.append(
        AuditEntry(
            decision=decision.outcome,
            message_id=str(opened.message_id),
            notification_id=str(request["notification_id"]),
            sender=opened.sender.id,
            recipient=request["to"]["id"],
            recipient_role=request["to"]["category"],
            local_authority=opened.sender.id,
            notification_type=ledger.notification_type if ledger else None,
            child_pseudonym=ledger.child_pseudonym if ledger else None,
            reason=reason,
            lawful_basis=None,
            consent=None,
            no_consent_reason=None,
            restrictions=tuple(ledger.restrictions) if ledger else (),
            withheld=(),
            detail=f"by {request['requested_by']} for {request['purpose']!r}: {detail}",
            decided_at=utc_now(),
        )
    )
    decision.share_decision = (
        opened.sender.id,
        {
            "request_id": request["request_id"],
            "notification_id": request["notification_id"],
            "allowed": allowed,
            "broken": broken,
            "reason": detail,
            "decided_at": utc_now(),
        },
    )
    return decision
