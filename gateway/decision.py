"""A judged record as data: what to audit, quarantine, deliver and answer.

The judges (:mod:`gateway.notifications`, :mod:`gateway.protocol`, :mod:`gateway.shares`,
:mod:`gateway.allocation_updates`) each build a :class:`Decision`; the service writes its
audit records, quarantine and ledger entries in one transaction, then seals and publishes
its deliveries and answers. This module also builds the audit entries and deliveries they
share, so every judge records a decision the same way.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

from gateway.agreement import Agreement
from gateway.allocations import AllocationChange
from gateway.audit_chain import AuditEntry
from gateway.consent_book import ConsentWrite
from gateway.information_book import InformationWrite
from gateway.records import Judged, LedgerEntry
from sgx.kafka.quarantine import Quarantined, Source
from sgx.kafka.wiring import agency_of
from sgx.keys.trust import utc_now
from sgx.wire import contract as c
from sgx.wire.contract import Contract
from sgx.wire.envelope import Opened, Purpose

IDENTIFIER_QUALITY = (
    "nhs_number", "upn_only", "not_known", "unreasonable_delay", "not_issued", "no_reason",
)  # fmt: skip


def identifier_quality(child: dict[str, Any]) -> str:
    """How a notification identifies its child, for the identifier-quality metric: by NHS
    number (the contract checks its check digit, so a present one is valid), by UPN only,
    or by neither with the sender's reason (``identifier_absent_reason``)."""
    if child.get("nhs_number"):
        return "nhs_number"
    if child.get("upn"):
        return "upn_only"
    reason = child.get("identifier_absent_reason")
    return str(reason).lower() if reason else "no_reason"


@dataclass(slots=True)
class Delivery:
    """One minimised view for everyone entitled to exactly it, waiting for audit sequences.

    ``party`` receives it (sealed for it, on its delivery topic): a local authority, a
    school (key adult) or a police force (SPOC). ``audit_indexes[i]`` is the audit entry
    (within the decision) of ``record["recipients"][i]``.
    """

    party: str
    key: bytes
    record: dict[str, Any]
    audit_indexes: list[int]


@dataclass(frozen=True, slots=True)
class Message:
    """A record the gateway sends a party on its receipts topic: a share decision, a
    consent request forwarded to an author, a consent outcome for the asking LA; or, with
    ``on_delivery``, on its delivery topic (an information request's status, which the
    LA's consumer keeps with the answers: :mod:`gateway.information_delivery`)."""

    party: str
    purpose: Purpose
    schema: str
    record: dict[str, Any]
    on_delivery: bool = False


@dataclass(slots=True)
class Decision:
    audit: list[AuditEntry] = field(default_factory=list)
    quarantine: list[Quarantined] = field(default_factory=list)
    ledger: list[LedgerEntry] = field(default_factory=list)
    deliveries: list[Delivery] = field(default_factory=list)
    receipt: tuple[str, dict[str, Any]] | None = None
    messages: list[Message] = field(default_factory=list)  # sealed for their party
    consents: list[ConsentWrite] = field(default_factory=list)  # written with the batch
    information: list[InformationWrite] = field(default_factory=list)  # likewise
    allocation_changes: list[AllocationChange] = field(default_factory=list)  # for the snapshot
    open_cases_of: set[str] = field(default_factory=set)  # LAs whose schools get a fresh list
    outcome: str = ""
    type_label: str = "unknown"
    judged: Judged | None = None  # written with the batch, so a copy read later is a duplicate
    identifier: tuple[str, str] | None = None  # (sender, identifier_quality) of a notification


class Quarantine(Exception):
    """Raised inside a judge: keep the record in quarantine with this reason."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


@dataclass(slots=True)
class _Said:
    """What every audit record of one notification repeats, worked out once."""

    message_id: str
    notification_id: str
    type_label: str
    child_pseudonym: str
    restriction_codes: tuple[str, ...]
    basis: str
    at: datetime  # when it was decided: every record of it, its deliveries and ledger


@dataclass(slots=True)
class View:
    """A notification on its way to recipients: its record, its author's bytes, its route."""

    opened: Opened
    name: str
    record: dict[str, Any]
    plaintext: bytes  # the single-object encoding the author sealed (the full view)
    party: str  # who receives this view: an LA, or a school for its key adult ("" unrouted)
    local_authority: str | None  # the LA whose decision this is (None: a key adult's school)
    key: bytes
    restrictions: list[dict[str, str]]
    said: _Said

    @classmethod
    def of(
        cls,
        opened: Opened,
        name: str,
        record: dict[str, Any],
        plaintext: bytes,
        key: bytes,
        restrictions: list[dict[str, str]],
    ) -> View:
        """A notification not yet routed to any party."""
        said = _Said(
            str(opened.message_id),
            str(record["notification_id"]),
            c.SHORT_NAMES[name],
            key.hex(),
            tuple(r["code"] for r in restrictions),
            basis(record["sharing"], record["author"]),
            utc_now(),
        )
        return cls(opened, name, record, plaintext, "", None, key, restrictions, said)

    def to(self, party: str, local_authority: str | None) -> View:
        """This view routed to ``party``, as ``local_authority``'s decision."""
        return View(
            self.opened, self.name, self.record, self.plaintext, party, local_authority,
            self.key, self.restrictions, self.said,
        )  # fmt: skip


Recipient = tuple[dict[str, Any], str]  # (Addressee without its audit sequence, route reason)


def deliver(
    decision: Decision,
    view: View,
    recipients: list[Recipient],
    agreement: Agreement,
    contract: Contract,
    *,
    role: str | None = None,
    sender_kind: str | None = None,
    detail: str = "",
) -> None:
    """Audit each recipient's decision; one Delivery per distinct minimised view.

    ``agreement`` is the receiving LA's: it says what each role may see. Recipients whose
    roles see the same fields share one sealed delivery (and one queue envelope each); a
    view with nothing withheld is the author's own bytes.
    """
    record = view.record
    by_view: dict[tuple[str, ...], Delivery] = {}
    for recipient, reason in recipients:
        minimised, withheld = agreement.minimise(
            role or recipient["role"].lower(), view.name, record
        )
        decision.audit.append(
            audit_entry(view, "delivered", reason, withheld, recipient, detail=detail)
        )
        addressee = {**recipient, "route_reason": reason, "audit_sequence": 0, "audit_chain": ""}
        shared = by_view.get(tuple(withheld))
        if shared is not None:
            shared.record["recipients"].append(addressee)
            shared.audit_indexes.append(len(decision.audit) - 1)
            continue
        encoded = (
            view.plaintext if not withheld else contract.encode(view.name, minimised, check=False)
        )
        delivery = Delivery(
            view.party,
            view.key,
            {
                "notification_id": record["notification_id"],
                "recipients": [addressee],
                "sender_agency": record["author"]["agency_id"],
                "sender_kind": sender_kind or view.opened.sender.kind,
                "notification_type": view.name,
                "urgency": record["urgency"],
                "authored_at": record["authored_at"],
                "routed_at": view.said.at,
                "restrictions": view.restrictions,
                "onward_consent": list(record["sharing"]["onward_consent"]),
                "withheld": withheld,
                "notification": encoded,
            },
            [len(decision.audit) - 1],
        )
        by_view[tuple(withheld)] = delivery
        decision.deliveries.append(delivery)


def audit_entry(
    view: View,
    what: str,
    reason: str,
    withheld: list[str],
    recipient: dict[str, Any] | None,
    *,
    detail: str = "",
    restricted: bool = True,
) -> AuditEntry:
    """The audit record of one decision about a notification (a delivery or a refusal)."""
    sharing, said = view.record["sharing"], view.said
    return AuditEntry(
        decision=what,
        message_id=said.message_id,
        notification_id=said.notification_id,
        sender=view.record["author"]["agency_id"],
        recipient=recipient["id"] if recipient else None,
        recipient_role=recipient["role"] if recipient else None,
        local_authority=view.local_authority,
        notification_type=said.type_label,
        child_pseudonym=said.child_pseudonym,
        reason=reason,
        lawful_basis=sharing["lawful_basis"],
        consent=sharing["consent"],
        no_consent_reason=sharing["no_consent_reason"],
        restrictions=said.restriction_codes if restricted else (),
        withheld=tuple(withheld),
        detail=f"{detail}; {said.basis}" if detail else said.basis,
        decided_at=said.at,
    )


def onward_entry(
    decision: str,
    opened: Opened,
    about: dict[str, Any],
    ledger: LedgerEntry | None,
    *,
    sender: str,
    recipient: str | None,
    reason: str,
    restrictions: list[str] | tuple[str, ...],
    detail: str,
) -> AuditEntry:
    """The audit record of a decision on onward use of an item (a share, a consent request
    or answer): ``about`` names its ``notification_id``, the recipient ``category`` and the
    ``local_authority`` concerned; ``ledger`` is the gateway's entry of the item, if any."""
    return AuditEntry(
        decision=decision,
        message_id=str(opened.message_id),
        notification_id=str(about["notification_id"]),
        sender=sender,
        recipient=recipient,
        recipient_role=about["category"],
        local_authority=about["local_authority"],
        notification_type=ledger.notification_type if ledger else None,
        child_pseudonym=ledger.child_pseudonym if ledger else None,
        reason=reason,
        lawful_basis=None,
        consent=None,
        no_consent_reason=None,
        restrictions=tuple(restrictions),
        withheld=(),
        detail=detail,
        decided_at=utc_now(),
    )


def basis(sharing: dict[str, Any], author: dict[str, Any]) -> str:
    return f"{sharing['legal_gateway']}; by {author['name']} ({author['role']})"


def ledger_entry(view: View) -> LedgerEntry:
    """What a later onward share by the receiving LA is judged against."""
    said = view.said
    assert view.local_authority is not None  # only deliveries to an LA are shared onward
    return LedgerEntry(
        notification_id=said.notification_id,
        sender=view.opened.sender.id,
        sender_kind=view.opened.sender.kind,
        notification_type=said.type_label,
        local_authority=view.local_authority,
        child_pseudonym=said.child_pseudonym,
        restrictions=said.restriction_codes,
        onward_consent=tuple(view.record["sharing"]["onward_consent"]),
        recorded_at=said.at,
    )


def receipt(message_id: UUID, outcome: str, reason: str, detail: str) -> dict[str, Any]:
    return {
        "message_id": message_id,
        "outcome": outcome,
        "reason": reason,
        "detail": detail,
        "decided_at": utc_now(),
    }


def replayed(entry: AuditEntry, origin: str) -> AuditEntry:
    """An audit entry of a quarantined envelope judged again: it says so, and from where."""
    detail = f"replay from quarantine (first read on {origin}); {entry.detail}"
    return dataclasses.replace(entry, detail=detail)


_TOPICS_AGENCY = "the topic's agency"


def quarantine(
    source: Source,
    reason: str,
    detail: str,
    la: str | None = None,
    *,
    answer: str | None = _TOPICS_AGENCY,
) -> Decision:
    """Keep the raw record with its reason, audit it, and tell ``answer`` (by default the
    agency whose topic it was read from; None: nobody, as for a record on a connector's
    topic whose signer is not known or not to be believed).

    ``la`` is the local authority the record came from, when the topic is an LA's.
    """
    now = utc_now()
    kept = Quarantined.of(source, reason, detail, now)
    agency = agency_of(source.written_to)  # the writer: an agency, or a connector
    decision = Decision(outcome="quarantined", quarantine=[kept])
    decision.audit.append(
        AuditEntry(
            decision="quarantined",
            message_id=kept.message_id or source.where,
            notification_id=None,
            sender=agency,
            recipient=None,
            recipient_role=None,
            local_authority=la,
            notification_type=None,
            child_pseudonym=None,
            reason=reason,
            lawful_basis=None,
            consent=None,
            no_consent_reason=None,
            restrictions=(),
            withheld=(),
            detail=detail,
            decided_at=now,
        )
    )
    if source.origin is not None:
        # A replay is the operator's act: the sender had its receipt the first time, and
        # the replay log (``safeguard quarantine replay``) reports what came of it now.
        decision.audit[0] = replayed(decision.audit[0], source.origin)
        return decision
    told = agency if answer == _TOPICS_AGENCY else answer
    if kept.message_id is not None and told is not None:
        decision.receipt = (told, receipt(UUID(kept.message_id), "QUARANTINED", reason, detail))
    return decision


def duplicate(source: Source, opened: Opened, prior: Judged, la: str | None) -> Decision:
    """A copy of a message already judged (a resend, or a replay of its bytes): audited as
    a duplicate, answered with the outcome recorded then, and delivered to nobody again.
    Its recipients are those of the first judgement, whose deliveries that judgement
    published (or, after a crash, its replay publishes)."""
    detail = (
        f"read again at {source.where}; first judged at {prior.where} "
        f"({prior.judged_at:%Y-%m-%d %H:%M:%S} UTC, {prior.outcome}): its recipients stand, "
        "nothing is delivered again"
    )
    decision = Decision(outcome="duplicate", type_label=prior.type_label)
    decision.audit.append(
        AuditEntry(
            decision="duplicate",
            message_id=str(opened.message_id),
            notification_id=None,
            sender=opened.sender.id,
            recipient=None,
            recipient_role=None,
            local_authority=la,
            notification_type=prior.type_label,
            child_pseudonym=None,
            reason="already_judged",
            lawful_basis=None,
            consent=None,
            no_consent_reason=None,
            restrictions=(),
            withheld=(),
            detail=detail,
            decided_at=utc_now(),
        )
    )
    answered = "REFUSED" if prior.outcome == "refused" else "DELIVERED"
    decision.receipt = (opened.sender.id, receipt(opened.message_id, answered, "duplicate", detail))
    return decision
