"""The gateway's judgement of one inbound record, as data.

``Judge.judge`` turns one Kafka record into a :class:`Decision`: what to audit, what to
quarantine, whom to deliver to (minimised, with restrictions), what to tell the sender.
It does no Kafka I/O; the service batches decisions, writes them to the audit trail in
one transaction, then seals and publishes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from gateway.agreement import Agreement
from gateway.allocations import AllocationDirectory
from gateway.restrictions import attach, broken_by, describe
from gateway.store import AuditEntry, GatewayStore, LedgerEntry, QuarantineEntry
from sgx import contract as c
from sgx.contract import Contract
from sgx.envelope import Opened, Opener, Purpose, peek
from sgx.errors import ContractError, EnvelopeError, MalformedEnvelope
from sgx.pseudonym import Pseudonymiser
from sgx.restrictions import TEXT

INBOUND_PURPOSES = frozenset({Purpose.NOTIFICATION, Purpose.ALLOCATIONS, Purpose.SHARE_REQUEST})


@dataclass(frozen=True, slots=True)
class Source:
    """Where an envelope came from; the topic names the agency that may write to it.

    ``item`` is the envelope's place in its Kafka record (records may carry several
    envelopes); ``broken`` says why the record could not be split into envelopes at all.
    """

    topic: str
    partition: int
    offset: int
    item: int
    agency: str
    value: bytes
    broken: str | None = None

    @property
    def where(self) -> str:
        return f"{self.topic}/{self.partition}/{self.offset}/{self.item}"


@dataclass(slots=True)
class Delivery:
    """One minimised view for everyone entitled to exactly it, waiting for audit sequences.

    ``audit_indexes[i]`` is the audit entry (within the decision) of ``record["recipients"][i]``.
    """

    local_authority: str
    key: bytes
    record: dict[str, Any]
    audit_indexes: list[int]


@dataclass(slots=True)
class Decision:
    audit: list[AuditEntry] = field(default_factory=list)
    quarantine: list[QuarantineEntry] = field(default_factory=list)
    ledger: list[LedgerEntry] = field(default_factory=list)
    deliveries: list[Delivery] = field(default_factory=list)
    receipt: tuple[str, dict[str, Any]] | None = None
    share_decision: tuple[str, dict[str, Any]] | None = None
    outcome: str = ""
    type_label: str = "unknown"


def _now() -> datetime:
    return datetime.now(UTC)


class Judge:
    """Verifies, opens, validates and routes inbound records."""

    def __init__(
        self,
        *,
        opener: Opener,
        contract: Contract,
        agreement: Agreement,
        allocations: AllocationDirectory,
        store: GatewayStore,
        pseudonyms: Pseudonymiser,
    ) -> None:
        self._opener = opener
        self._contract = contract
        self._agreement = agreement
        self._allocations = allocations
        self._store = store
        self._pseudonyms = pseudonyms

    async def judge(self, source: Source) -> Decision:
        try:
            if source.broken is not None:
                raise MalformedEnvelope(source.broken)
            opened = self._opener.open(source.value, purposes=INBOUND_PURPOSES)
            if opened.sender.id != source.agency:
                raise _Quarantine(
                    "sender_topic_mismatch", f"{opened.sender.id} wrote to {source.topic}"
                )
            if opened.purpose is Purpose.NOTIFICATION:
                return self._notification(source, opened)
            if opened.purpose is Purpose.ALLOCATIONS:
                return await self._allocation_update(source, opened)
            return await self._share_request(source, opened)
        except EnvelopeError as exc:
            return quarantine(source, exc.reason, str(exc))
        except ContractError as exc:
            return quarantine(source, "invalid_record", str(exc))
        except _Quarantine as exc:
            return quarantine(source, exc.reason, exc.detail)

    # -- notifications -------------------------------------------------------------
    def _notification(self, source: Source, opened: Opened) -> Decision:
        name, record = self._contract.decode(opened.plaintext)
        if name not in c.NOTIFICATION_TYPES:
            raise _Quarantine("invalid_record", f"a NOTIFICATION envelope holds a {name}")
        if record["notification_id"] != opened.message_id:
            raise _Quarantine(
                "invalid_record", "notification_id differs from the envelope's message id"
            )
        if record["author"]["agency_id"] != opened.sender.id:
            raise _Quarantine("author_mismatch", f"author agency {record['author']['agency_id']!r}")
        sender = opened.sender
        if not self._agreement.may_send(sender.kind, name):
            detail = f"a {sender.kind} may not send {c.SHORT_NAMES[name]} under the agreement"
            return self._refusal(opened, name, record, "not_permitted_by_agreement", detail)
        if sender.local_authority is None:
            return self._refusal(
                opened, name, record, "no_local_authority", f"{sender.id} serves no LA"
            )
        return self._route(opened, name, record, sender.local_authority)

    def _route(self, opened: Opened, name: str, record: dict[str, Any], la: str) -> Decision:
        child = record["child"]
        key = (
            self._pseudonyms.child_key(child["nhs_number"], child["upn"]) or opened.message_id.bytes
        )
        restrictions = attach(opened.sender.kind, record["sharing"])
        decision = Decision(outcome="delivered", type_label=c.SHORT_NAMES[name])
        view = _View(opened, name, record, opened.plaintext, la, key, restrictions)
        self._deliver(decision, view, self._recipients(la, child))
        decision.ledger.append(_ledger(opened, name, record, la, key, restrictions))
        decision.receipt = (
            opened.sender.id,
            receipt(opened.message_id, "DELIVERED", "delivered", ""),
        )
        return decision

    def _recipients(self, la: str, child: dict[str, Any]) -> list[tuple[dict[str, Any], str]]:
        found = self._allocations.lookup(la, child["nhs_number"], child["upn"])
        if found is None:
            mash = {"id": f"mash:{la}", "role": "MASH_DUTY", "team": "MASH", "name": "MASH duty"}
            return [(mash, "UNALLOCATED_TO_MASH")]
        worker = {
            "id": found.worker_id,
            "role": "SOCIAL_WORKER",
            "team": found.team,
            "name": found.worker_name,
        }
        supervisor = {
            "id": found.supervisor_id,
            "role": "SUPERVISOR",
            "team": found.team,
            "name": found.supervisor_name,
        }
        return [(worker, "ALLOCATED_WORKER"), (supervisor, "SUPERVISOR")]

    def _deliver(
        self,
        decision: Decision,
        view: _View,
        recipients: list[tuple[dict[str, Any], str]],
        *,
        role: str | None = None,
        sender_kind: str | None = None,
    ) -> None:
        """Audit each recipient's decision; one Delivery per distinct minimised view.

        Recipients whose roles see the same fields share one sealed delivery (and one
        queue envelope each); a view with nothing withheld is the author's own bytes.
        """
        record = view.record
        by_view: dict[tuple[str, ...], Delivery] = {}
        for recipient, reason in recipients:
            minimised, withheld = self._agreement.minimise(
                role or recipient["role"].lower(), view.name, record
            )
            decision.audit.append(
                _audit(
                    view.opened, "delivered", view.name, record, view.key, reason,
                    view.restrictions, withheld, recipient,
                )
            )  # fmt: skip
            addressee = {**recipient, "route_reason": reason, "audit_sequence": 0}
            shared = by_view.get(tuple(withheld))
            if shared is not None:
                shared.record["recipients"].append(addressee)
                shared.audit_indexes.append(len(decision.audit) - 1)
                continue
            encoded = (
                view.plaintext
                if not withheld
                else self._contract.encode(view.name, minimised, check=False)
            )
            delivery = Delivery(
                view.local_authority,
                view.key,
                {
                    "notification_id": record["notification_id"],
                    "recipients": [addressee],
                    "sender_agency": record["author"]["agency_id"],
                    "sender_kind": sender_kind or view.opened.sender.kind,
                    "notification_type": view.name,
                    "urgency": record["urgency"],
                    "authored_at": record["authored_at"],
                    "routed_at": _now(),
                    "restrictions": view.restrictions,
                    "onward_consent": list(record["sharing"]["onward_consent"]),
                    "withheld": withheld,
                    "notification": encoded,
                },
                [len(decision.audit) - 1],
            )
            by_view[tuple(withheld)] = delivery
            decision.deliveries.append(delivery)

    def _refusal(
        self, opened: Opened, name: str, record: dict[str, Any], reason: str, detail: str
    ) -> Decision:
        decision = Decision(outcome="refused", type_label=c.SHORT_NAMES[name])
        key = self._pseudonyms.child_key(record["child"]["nhs_number"], record["child"]["upn"])
        entry = _audit(opened, "refused", name, record, key, reason, [], [], None, detail=detail)
        decision.audit.append(entry)
        decision.receipt = (opened.sender.id, receipt(opened.message_id, "REFUSED", reason, detail))
        return decision

    # -- allocations ---------------------------------------------------------------
    async def _allocation_update(self, source: Source, opened: Opened) -> Decision:
        if opened.sender.kind != "local_authority":
            raise _Quarantine(
                "not_permitted_by_agreement", f"{opened.sender.kind} sent allocations"
            )
        update = self._contract.decode_as(c.ALLOCATION_UPDATE, opened.plaintext)
        if update["la_id"] != opened.sender.id:
            raise _Quarantine(
                "not_permitted_by_agreement",
                f"{opened.sender.id} sent {update['la_id']}'s allocations",
            )
        await self._allocations.apply(update)
        return Decision(outcome="applied", type_label="allocation_update")

    # -- onward shares -------------------------------------------------------------
    async def _share_request(self, source: Source, opened: Opened) -> Decision:
        if opened.sender.kind != "local_authority":
            raise _Quarantine(
                "not_permitted_by_agreement", f"{opened.sender.kind} sent a share request"
            )
        request = self._contract.decode_as(c.SHARE_REQUEST, opened.plaintext)
        ledger = await self._store.ledger_entry(str(request["notification_id"]))
        if ledger is None or ledger.local_authority != opened.sender.id:
            return self._share_answer(
                opened,
                request,
                None,
                [],
                "unknown_notification",
                "the gateway delivered no such notification to this LA",
            )
        category = request["to"]["category"]
        broken = broken_by(ledger.restrictions, ledger.onward_consent, category)
        if broken:
            return self._share_answer(
                opened,
                request,
                ledger,
                broken,
                "restriction",
                "; ".join(f"{code}: {TEXT[code]}" for code in broken),
            )
        return self._share_allowed(opened, request, ledger)

    def _share_allowed(
        self, opened: Opened, request: dict[str, Any], ledger: LedgerEntry
    ) -> Decision:
        decision = self._share_answer(
            opened, request, ledger, [], "allowed", "no restriction forbids it"
        )
        if request["to"]["category"] != "LA_SOCIAL_CARE":
            return decision  # the LA shares through its own channel; the decision is audited
        name, record = self._contract.decode(request["notification"])
        if (
            name not in c.NOTIFICATION_TYPES
            or record["notification_id"] != request["notification_id"]
        ):
            raise _Quarantine("invalid_record", "the shared item is not the notification named")
        key = (
            bytes.fromhex(ledger.child_pseudonym)
            if ledger.child_pseudonym
            else opened.message_id.bytes
        )
        restrictions = describe(ledger.restrictions, ledger.sender_kind)
        to = request["to"]
        recipient = {"id": to["id"], "role": "ONWARD", "team": None, "name": to["name"]}
        view = _View(
            opened, name, record, request["notification"], opened.sender.id, key, restrictions
        )
        self._deliver(
            decision,
            view,
            [(recipient, "ONWARD_SHARE")],
            role="onward",
            sender_kind=ledger.sender_kind,  # the author's kind, not the requesting LA's
        )
        return decision

    def _share_answer(
        self,
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
                notification_type=ledger.notification_type if ledger else None,
                child_pseudonym=ledger.child_pseudonym if ledger else None,
                reason=reason,
                lawful_basis=None,
                consent=None,
                no_consent_reason=None,
                restrictions=tuple(ledger.restrictions) if ledger else (),
                withheld=(),
                detail=f"by {request['requested_by']} for {request['purpose']!r}: {detail}",
                decided_at=_now(),
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
                "decided_at": _now(),
            },
        )
        return decision


@dataclass(frozen=True, slots=True)
class _View:
    """A notification on its way to recipients: its record, its author's bytes, its route."""

    opened: Opened
    name: str
    record: dict[str, Any]
    plaintext: bytes  # the single-object encoding the author sealed (the full view)
    local_authority: str
    key: bytes
    restrictions: list[dict[str, str]]


class _Quarantine(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def receipt(message_id: UUID, outcome: str, reason: str, detail: str) -> dict[str, Any]:
    return {
        "message_id": message_id,
        "outcome": outcome,
        "reason": reason,
        "detail": detail,
        "decided_at": _now(),
    }


def quarantine(source: Source, reason: str, detail: str) -> Decision:
    """Keep the raw record with its reason, audit it, and tell the topic's agency."""
    claims = peek(source.value)
    message_id = claims.message_id if claims else None
    now = _now()
    decision = Decision(outcome="quarantined")
    decision.quarantine.append(
        QuarantineEntry(
            message_id=str(message_id) if message_id else None,
            sender_claimed=claims.sender if claims else None,
            topic=source.topic,
            partition=source.partition,
            offset=source.offset,
            item=source.item,
            reason=reason,
            detail=detail,
            raw=source.value,
            quarantined_at=now,
        )
    )
    ref = str(message_id) if message_id else source.where
    decision.audit.append(
        AuditEntry(
            decision="quarantined",
            message_id=ref,
            notification_id=None,
            sender=source.agency,
            recipient=None,
            recipient_role=None,
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
    if message_id is not None:
        decision.receipt = (source.agency, receipt(message_id, "QUARANTINED", reason, detail))
    return decision


def _audit(
    opened: Opened,
    what: str,
    name: str,
    record: dict[str, Any],
    key: bytes | None,
    reason: str,
    restrictions: list[dict[str, str]],
    withheld: list[str],
    recipient: dict[str, Any] | None,
    *,
    detail: str = "",
) -> AuditEntry:
    sharing = record["sharing"]
    return AuditEntry(
        decision=what,
        message_id=str(opened.message_id),
        notification_id=str(record["notification_id"]),
        sender=record["author"]["agency_id"],
        recipient=recipient["id"] if recipient else None,
        recipient_role=recipient["role"] if recipient else None,
        notification_type=c.SHORT_NAMES[name],
        child_pseudonym=key.hex() if key else None,
        reason=reason,
        lawful_basis=sharing["lawful_basis"],
        consent=sharing["consent"],
        no_consent_reason=sharing["no_consent_reason"],
        restrictions=tuple(r["code"] for r in restrictions),
        withheld=tuple(withheld),
        detail=detail or _basis(sharing, record["author"]),
        decided_at=_now(),
    )


def _ledger(
    opened: Opened,
    name: str,
    record: dict[str, Any],
    la: str,
    key: bytes,
    restrictions: list[dict[str, str]],
) -> LedgerEntry:
    return LedgerEntry(
        notification_id=str(record["notification_id"]),
        sender=opened.sender.id,
        sender_kind=opened.sender.kind,
        notification_type=c.SHORT_NAMES[name],
        local_authority=la,
        child_pseudonym=key.hex(),
        restrictions=tuple(r["code"] for r in restrictions),
        onward_consent=tuple(record["sharing"]["onward_consent"]),
        recorded_at=_now(),
    )


def _basis(sharing: dict[str, Any], author: dict[str, Any]) -> str:
    return f"{sharing['legal_gateway']}; by {author['name']} ({author['role']})"
