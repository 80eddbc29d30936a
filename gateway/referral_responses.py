"""Judging an LA's response to a referral: carried to the referring agency, and only to it.

The local authority acknowledges a referral and decides its response (Working Together:
no further action, information and advice, early help, a s.17 assessment, s.47 enquiries,
immediate protection) from its inbox or case-management API. The response is the LA's own
word to the referrer, so the LA signs it (``SignedReferralResponse``,
:mod:`sgx.wire.referral_signature`) and sends it in a NOTIFICATION envelope on its inbound
topic. The gateway:

* verifies the LA's signature on the response (a forged or tampered response is
  quarantined with the envelope error's reason) and that the LA sending it is the LA it
  names;
* finds the referral as routed to that LA (:class:`~gateway.referral_book.ReferralBook`):
  a response to a referral the gateway never delivered to that LA is quarantined
  ``unknown_referral``, and one addressed to any agency but the referral's author
  ``not_the_referrer``, so no LA can use a response to reach another agency;
* stamps the LA's clock (the gateway's own time: what the deadlines are judged by), audits
  the response against the LA (``delivered``, reason ``referral_acknowledged`` or
  ``referral_decided``, the decision in the detail) with the referrer as recipient
  (role ``REFERRER``), and forwards the signed
  response unchanged on the referrer's receipts topic (purpose RECEIPTS), beside the
  receipt of its referral; the LA's receipt says it was passed on.

What the referrer receives is minimised by its type: the response carries the referral's
id (the referrer's own), the decision, why in words meant for the referrer, what the LA
asks of it and whom to contact; nothing of the child, the family or the LA's case. A
second acknowledgement is refused (the first stands); a later decision is carried (the LA
may change its decision as it learns more: the latest is in force).
"""

from __future__ import annotations

from typing import Any

from gateway.audit_chain import AuditEntry
from gateway.decision import Decision, Message, Quarantine, receipt
from gateway.notifications import PARTY_ID
from gateway.referral_book import ReferralBook, ReferralState
from sgx.keys.trust import TrustDirectory, utc_now
from sgx.wire import contract as c
from sgx.wire.contract import Contract
from sgx.wire.envelope import Opened, Purpose
from sgx.wire.referral_signature import verify_response

TYPE_LABEL = "referral_response"


class ReferralResponseJudge:
    """Checks an LA's signed response and carries it to the referrer."""

    def __init__(self, *, contract: Contract, trust: TrustDirectory, book: ReferralBook) -> None:
        self._contract = contract
        self._trust = trust
        self._book = book

    async def judge(self, opened: Opened, signed: dict[str, Any]) -> Decision:
        la = opened.sender
        if la.kind != "local_authority":
            raise Quarantine(
                "not_permitted_by_agreement", f"a {la.kind} sent a response to a referral"
            )
        response = verify_response(self._trust, self._contract, signed)
        if response["response_id"] != opened.message_id:
            raise Quarantine("invalid_record", "response_id differs from the envelope's message id")
        if response["local_authority"] != la.id:
            raise Quarantine("invalid_record", f"a referral response from {la.id} names another LA")
        referral_id = str(response["referral_id"])
        state = await self._book.get(referral_id, la.id)
        if state is None:
            raise Quarantine(
                "unknown_referral",
                f"{la.id} answered referral {referral_id}, which the gateway never routed to it",
            )
        if response["referrer"] != state.referrer:
            named = response["referrer"]
            shown = named if PARTY_ID.fullmatch(named) else "(not a party id)"
            raise Quarantine(
                "not_the_referrer",
                f"{la.id} addressed its response to {shown}, but referral {referral_id} came "
                f"from {state.referrer}: a response goes to the referrer only",
            )
        if response["stage"] == "ACKNOWLEDGED" and state.acknowledged_at is not None:
            return _refused(opened, response, state)
        await self._book.responded(referral_id, la.id, utc_now(), response["decision"])
        return _carried(opened, signed, response, state)


def _said(response: dict[str, Any]) -> str:
    if response["stage"] == "ACKNOWLEDGED":
        return f"acknowledged by {response['responded_by']}"
    decision = str(response["decision"]).lower().replace("_", " ")
    return f"decided by {response['responded_by']}: {decision}"


def _audit(
    opened: Opened, response: dict[str, Any], state: ReferralState, what: str, reason: str,
    detail: str,
) -> AuditEntry:  # fmt: skip
    return AuditEntry(
        decision=what,
        message_id=str(opened.message_id),
        notification_id=str(response["referral_id"]),
        sender=opened.sender.id,
        recipient=state.referrer,
        recipient_role="REFERRER",
        local_authority=opened.sender.id,
        notification_type=TYPE_LABEL,
        child_pseudonym=state.child_pseudonym,
        reason=reason,
        lawful_basis=None,
        consent=None,
        no_consent_reason=None,
        restrictions=(),
        withheld=(),
        detail=detail,
        decided_at=utc_now(),
    )


def _carried(
    opened: Opened, signed: dict[str, Any], response: dict[str, Any], state: ReferralState
) -> Decision:
    """The signed response, unchanged, to the referrer; the LA told it was passed on."""
    decided = response["stage"] == "DECIDED"
    reason = "referral_decided" if decided else "referral_acknowledged"
    said = _said(response)
    late = _late(state, decided)
    decision = Decision(outcome="delivered", type_label=TYPE_LABEL)
    detail = f"{said}; signed with {signed['signer_key_id']}; passed to {state.referrer}{late}"
    decision.audit.append(_audit(opened, response, state, "delivered", reason, detail))
    decision.messages.append(
        Message(state.referrer, Purpose.RECEIPTS, c.SIGNED_REFERRAL_RESPONSE, signed)
    )
    note = f"{said}; passed to {state.referrer}, the referrer{late}"
    decision.receipt = (opened.sender.id, receipt(opened.message_id, "DELIVERED", reason, note))
    return decision


def _late(state: ReferralState, decided: bool) -> str:
    """`` (after the deadline ...)`` when this response comes after the one it answers."""
    now = utc_now()
    if decided and state.decided_at is None and now > state.decide_due:
        return f" (after the decision deadline {state.decide_due:%Y-%m-%d %H:%M} UTC)"
    if state.acknowledged_at is None and now > state.acknowledge_due:
        return f" (after the acknowledgement deadline {state.acknowledge_due:%Y-%m-%d %H:%M} UTC)"
    return ""


def _refused(opened: Opened, response: dict[str, Any], state: ReferralState) -> Decision:
    assert state.acknowledged_at is not None
    why = (
        f"referral {response['referral_id']} was acknowledged already "
        f"({state.acknowledged_at:%Y-%m-%d %H:%M} UTC): the first acknowledgement stands"
    )
    decision = Decision(outcome="refused", type_label=TYPE_LABEL)
    decision.audit.append(_audit(opened, response, state, "refused", "already_acknowledged", why))
    decision.receipt = (
        opened.sender.id,
        receipt(opened.message_id, "REFUSED", "already_acknowledged", why),
    )
    return decision
