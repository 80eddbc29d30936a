"""An agency's information answer as a delivery: into the asking MASH's queue, in the ledger.

An accepted ``InformationAnswer`` goes to the asking LA as any notification does: a
``Delivery`` (purpose DELIVERY, on ``sgx.delivery.<la>``) addressed to its MASH queue
(``mash:<la>``, ``MASH_DUTY``, route ``REQUESTING_LA_MASH``: the LA's own request, answered),
minimised for the recipient's role by the LA's agreement as a notification is
(:meth:`gateway.agreement.Agreement.minimise`, the ``information_answer`` lists: the agency's
bytes unchanged when nothing is withheld, else re-encoded without the withheld fields, which
the delivery and the audit entry name), with the restrictions the exchange attaches to
everything that kind of agency writes (the agency's own, then the defaults:
:func:`gateway.restrictions.attach`). The LA's consumer keeps it as a queue item of its own
kind, linked to the request it answers. The gateway keeps a ledger entry for it (the
answer id, the LA), so an onward share of the answer is judged by its restrictions exactly
as a notification's (:mod:`gateway.shares`); an allowed share within the LA is delivered
by :func:`deliver_answer` too, to the onward recipient.

The gateway's word on a request (``InformationStatus``: ASKED or REFUSED) goes on the same
topic, sealed with purpose SHARE_DECISION, so the LA's consumer keeps it beside the answers
(:func:`status_message`).
"""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Any
from uuid import UUID

from gateway.agreement import Agreement
from gateway.audit_chain import AuditEntry
from gateway.decision import Decision, Delivery, Message
from gateway.records import LedgerEntry
from gateway.restrictions import defaults, describe
from sgx.wire import contract as c
from sgx.wire.contract import Contract
from sgx.wire.envelope import Purpose

TYPE_LABEL = "information_answer"  # the ledger's and the audit's type of an answer
# How soon the MASH should read an answer: as soon as the rating asked it to be given.
URGENCY = {"RED": "IMMEDIATE", "AMBER": "PRIORITY", "GREEN": "ROUTINE", "BLUE": "ROUTINE"}


def restriction_codes(record: dict[str, Any], sender_kind: str) -> tuple[str, ...]:
    """The answer's restrictions on onward use: the agency's own, then the defaults."""
    codes = [r["code"] for r in record["restrictions"]] + list(defaults(sender_kind))
    return tuple(dict.fromkeys(codes))


def status_message(la: str, status: dict[str, Any]) -> Message:
    """The gateway's InformationStatus for ``la``, on its delivery topic."""
    return Message(la, Purpose.SHARE_DECISION, c.INFORMATION_STATUS, status, on_delivery=True)


def deliver_answer(
    decision: Decision,
    *,
    la: str,
    record: dict[str, Any],
    plaintext: bytes,
    recipient: dict[str, Any],
    reason: str,
    sender_agency: str,
    sender_kind: str,
    codes: tuple[str, ...],
    urgency: str,
    key: bytes,
    audit: AuditEntry,
    routed_at: datetime,
    agreement: Agreement,
    contract: Contract,
) -> None:
    """Audit ``audit`` (the decision that delivers it) and deliver the answer to
    ``recipient`` in ``la``, minimised for its role by ``agreement`` (``la``'s): what was
    withheld is named in the delivery and the audit entry."""
    minimised, withheld = agreement.minimise(
        recipient["role"].lower(), c.INFORMATION_ANSWER, record
    )
    if withheld:
        plaintext = contract.encode(c.INFORMATION_ANSWER, minimised, check=False)
    decision.audit.append(dataclasses.replace(audit, withheld=tuple(withheld)))
    addressee = {**recipient, "route_reason": reason, "audit_sequence": 0, "audit_chain": ""}
    decision.deliveries.append(
        Delivery(
            la,
            key,
            {
                "notification_id": UUID(str(record["answer_id"])),
                "recipients": [addressee],
                "sender_agency": sender_agency,
                "sender_kind": sender_kind,
                "notification_type": c.INFORMATION_ANSWER,
                "urgency": urgency,
                "authored_at": record["answered_at"],
                "routed_at": routed_at,
                "restrictions": describe(codes, sender_kind),
                "onward_consent": [],
                "withheld": withheld,
                "notification": plaintext,
                "referral_due": None,
            },
            [len(decision.audit) - 1],
        )
    )


def answer_ledger(
    *,
    record: dict[str, Any],
    la: str,
    sender: str,
    sender_kind: str,
    child_pseudonym: str | None,
    codes: tuple[str, ...],
    at: datetime,
) -> LedgerEntry:
    """What a later onward share of the answer by ``la`` is judged against."""
    return LedgerEntry(
        notification_id=str(record["answer_id"]),
        sender=sender,
        sender_kind=sender_kind,
        notification_type=TYPE_LABEL,
        local_authority=la,
        child_pseudonym=child_pseudonym,
        restrictions=codes,
        onward_consent=(),
        recorded_at=at,
    )
