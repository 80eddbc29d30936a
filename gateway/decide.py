"""The gateway's judgement of one inbound record, as data.

``Judge.judge`` turns one Kafka record into a :class:`Decision`: what to audit, what to
quarantine, whom to deliver to (minimised, with restrictions), what to tell the sender.
It does no Kafka I/O; the service batches decisions, writes them to the audit trail in
one transaction, then seals and publishes.

A NOTIFICATION envelope carries any record the gateway routes; it dispatches on the
decoded schema name:

* a notification type goes to the sender's local authority (allocated worker and
  supervisor, or MASH). An Operation Encompass police notification naming a school the
  same LA serves also goes to that school's key adult (``key-adult:<school>``, role
  ``key_adult`` in the agreement); a school unknown or served by another LA is not told,
  and the refusal is audited. A 2013 / 2024 Protocol disclosure closes the request it
  answers (:class:`~gateway.requests.DisclosureRequests`).
* a ``DisclosureRequest`` from a local authority goes, whole, to the police force's
  single point of contact (``spoc:<police>``) and starts the 14-day clock.

An ALLOCATIONS envelope updates the allocation directory; every school the LA serves is
then sent the LA's complete open-case list (:mod:`gateway.open_cases`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Any
from uuid import UUID

from gateway.agreement import Agreement
from gateway.allocations import AllocationDirectory
from gateway.open_cases import open_case_list
from gateway.requests import DisclosureRequests, deadline
from gateway.restrictions import attach, broken_by, describe
from gateway.store import AuditEntry, GatewayStore, LedgerEntry
from sgx import contract as c
from sgx.contract import Contract
from sgx.envelope import Opened, Opener, Purpose
from sgx.errors import ContractError, EnvelopeError, UnknownSender
from sgx.kafka import inbound_agency
from sgx.pseudonym import Pseudonymiser
from sgx.quarantine import Quarantined, Source, reason_of
from sgx.restrictions import TEXT
from sgx.trust import Party, TrustDirectory, utc_now

INBOUND_PURPOSES = frozenset({Purpose.NOTIFICATION, Purpose.ALLOCATIONS, Purpose.SHARE_REQUEST})
DISCLOSURE_KINDS = frozenset({"PROTOCOL_2013_DISCLOSURE", "PROTOCOL_2024_DISCLOSURE"})
_PARTY_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")  # what may be echoed from a record's party id


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


@dataclass(slots=True)
class Decision:
    audit: list[AuditEntry] = field(default_factory=list)
    quarantine: list[Quarantined] = field(default_factory=list)
    ledger: list[LedgerEntry] = field(default_factory=list)
    deliveries: list[Delivery] = field(default_factory=list)
    receipt: tuple[str, dict[str, Any]] | None = None
    share_decision: tuple[str, dict[str, Any]] | None = None
    open_case_lists: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # by school
    outcome: str = ""
    type_label: str = "unknown"


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
        trust: TrustDirectory,
        requests: DisclosureRequests,
    ) -> None:
        self._opener = opener
        self._contract = contract
        self._agreement = agreement
        self._allocations = allocations
        self._store = store
        self._pseudonyms = pseudonyms
        self._trust = trust
        self._requests = requests

    async def judge(self, source: Source) -> Decision:
        """The decision on one envelope read from an agency's inbound topic."""
        try:
            opened = self._opener.open(source.envelope(), purposes=INBOUND_PURPOSES)
            if opened.sender.id != inbound_agency(source.topic):
                raise _Quarantine(
                    "sender_topic_mismatch", f"{opened.sender.id} wrote to {source.topic}"
                )
            if opened.purpose is Purpose.NOTIFICATION:
                return await self._routed(opened)
            if opened.purpose is Purpose.ALLOCATIONS:
                return await self._allocation_update(opened)
            return await self._share_request(opened)
        except (EnvelopeError, ContractError) as exc:
            return quarantine(source, reason_of(exc), str(exc))
        except _Quarantine as exc:
            return quarantine(source, exc.reason, exc.detail)

    # -- notifications -------------------------------------------------------------
    async def _routed(self, opened: Opened) -> Decision:
        """A NOTIFICATION envelope: dispatch on the schema of the record it carries."""
        name, record = self._contract.decode(opened.plaintext)
        if name == c.DISCLOSURE_REQUEST:
            return await self._disclosure_request(opened, record)
        if name not in c.NOTIFICATION_TYPES:
            raise _Quarantine("invalid_record", f"a NOTIFICATION envelope holds a {name}")
        return await self._notification(opened, name, record)

    async def _notification(self, opened: Opened, name: str, record: dict[str, Any]) -> Decision:
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
        return await self._route(opened, name, record, sender.local_authority)

    async def _route(self, opened: Opened, name: str, record: dict[str, Any], la: str) -> Decision:
        child = record["child"]
        # One HMAC per identifier: the directory looks the child up by both, and the
        # child's key is the NHS number's pseudonym, else the UPN's (Pseudonymiser.child_key).
        nhs_key, upn_key = self._pseudonyms.identifier_keys(child["nhs_number"], child["upn"])
        key = nhs_key or upn_key or opened.message_id.bytes
        restrictions = attach(opened.sender.kind, record["sharing"])
        decision = Decision(outcome="delivered", type_label=c.SHORT_NAMES[name])
        view = _View(opened, name, record, opened.plaintext, la, key, restrictions)
        self._deliver(decision, view, self._recipients(la, nhs_key, upn_key))
        note = await self._police(decision, view) if name == c.POLICE_NOTIFICATION else ""
        decision.ledger.append(_ledger(opened, name, record, la, key, restrictions))
        decision.receipt = (
            opened.sender.id,
            receipt(opened.message_id, "DELIVERED", "delivered", note),
        )
        return decision

    async def _police(self, decision: Decision, view: _View) -> str:
        """What a police notification needs beyond its LA; a note for the receipt."""
        police = view.record["police"]
        if police["kind"] == "OPERATION_ENCOMPASS" and police["incident"] is not None:
            return self._key_adult(decision, view, police["incident"].get("school_id"))
        if police["kind"] in DISCLOSURE_KINDS and police["disclosure"] is not None:
            return await self._answer(view, police["disclosure"]["request_reference"])
        return ""

    # -- Operation Encompass: the school's key adult ---------------------------------
    def _key_adult(self, decision: Decision, view: _View, school_id: str | None) -> str:
        """Deliver to the key adult of the school the incident names, or audit why not."""
        if not school_id:
            return ""  # the child is on no school's roll: social care only
        shown = school_id if _PARTY_ID.fullmatch(school_id) else "(not a party id)"
        recipient: dict[str, Any] = {
            "id": f"key-adult:{shown}",
            "role": "KEY_ADULT",
            "team": None,
            "name": None,
        }
        school, reason, detail = self._school(school_id, shown, view.party)
        if school is None:
            decision.audit.append(
                _audit(
                    view.opened, "refused", view.name, view.record, view.key, reason,
                    view.restrictions, [], recipient, detail=detail,
                )
            )  # fmt: skip
            return f"the school's key adult was not told: {detail}"
        recipient.update(id=f"key-adult:{school.id}", name=f"Encompass key adult, {school.name}")
        self._deliver(decision, replace(view, party=school.id), [(recipient, reason)])
        return f"also to the key adult of {school.id}"

    def _school(self, school_id: str, shown: str, la: str) -> tuple[Party | None, str, str]:
        """(the school, route reason, "") or (None, refusal reason, why)."""
        try:
            party = self._trust.party(school_id)
        except UnknownSender:
            return None, "encompass_school_unknown", f"school {shown} is not in the trust directory"
        if party.kind != "school":
            return None, "encompass_not_a_school", f"{shown} is a {party.kind}, not a school"
        if party.local_authority != la:
            served = f"{shown} is served by {party.local_authority}, not {la}"
            return None, "encompass_school_other_la", served
        return party, "ENCOMPASS_KEY_ADULT", ""

    # -- 2013 / 2024 Protocol: the answer closes the request ----------------------------
    async def _answer(self, view: _View, reference: str) -> str:
        """Close the request a disclosure answers (same force, same LA); a receipt note."""
        status = await self._requests.status(reference)
        force, disclosure_id = view.opened.sender.id, str(view.record["notification_id"])
        if status is None:
            return "no disclosure request with this reference is on record"
        if status.police_id != force or status.la_id != view.party:
            return "the request with this reference was made by another LA or to another force"
        if status.answered_at is not None and status.disclosure_id != disclosure_id:
            return f"the request was already answered by {status.disclosure_id}"
        await self._requests.answered(reference, disclosure_id, utc_now())
        return "answers the disclosure request"

    def _recipients(
        self, la: str, nhs_key: bytes | None, upn_key: bytes | None
    ) -> list[tuple[dict[str, Any], str]]:
        found = self._allocations.lookup(la, nhs_key, upn_key)
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
                    "routed_at": utc_now(),
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

    # -- 2013 / 2024 Protocol: the LA's request to the police SPOC ----------------------
    async def _disclosure_request(self, opened: Opened, request: dict[str, Any]) -> Decision:
        """Route a local authority's disclosure request to the police force's SPOC."""
        sender = opened.sender
        if request["request_id"] != opened.message_id:
            raise _Quarantine("invalid_record", "request_id differs from the envelope's message id")
        if request["requested_by"]["agency_id"] != sender.id:
            raise _Quarantine(
                "author_mismatch", f"requesting agency {request['requested_by']['agency_id']!r}"
            )
        child = request["child"]
        pseudonym = self._pseudonyms.child_key(child["nhs_number"], child["upn"])
        route = _Request(opened, request, pseudonym or opened.message_id.bytes, pseudonym)
        police, reason, detail = await self._request_route(route)
        if police is None:
            return _request_refusal(route, reason, detail)
        await self._requests.opened(
            request["request_reference"], sender.id, police.id, request["protocol"],
            request["requested_at"], pseudonym.hex() if pseudonym else None,
        )  # fmt: skip
        return _request_delivery(route, police)

    async def _request_route(self, route: _Request) -> tuple[Party | None, str, str]:
        """(the police force, "", "") or (None, refusal reason, why)."""
        sender, request = route.opened.sender, route.request
        if sender.kind != "local_authority":
            return None, "not_permitted_by_agreement", f"a {sender.kind} may not request disclosure"
        force = request["police_force"]
        shown = force if _PARTY_ID.fullmatch(force) else "(not a party id)"
        police = next((p for p in self._trust.parties("police") if p.id == force), None)
        if police is None:
            return None, "unknown_police_force", f"{shown} is not a police force in the directory"
        held = await self._requests.status(request["request_reference"])
        if held is not None and (held.la_id, held.police_id, held.requested_at) != (
            sender.id,
            police.id,
            request["requested_at"],
        ):
            return None, "duplicate_request_reference", "another request has this reference"
        return police, "", ""

    # -- allocations ---------------------------------------------------------------
    async def _allocation_update(self, opened: Opened) -> Decision:
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
        decision = Decision(outcome="applied", type_label="allocation_update")
        la = opened.sender.id
        schools = [p.id for p in self._trust.parties("school") if p.local_authority == la]
        if schools:
            cases = open_case_list(la, await self._allocations.open_case_keys(la), utc_now())
            decision.open_case_lists = [(school, cases) for school in schools]
        return decision

    # -- onward shares -------------------------------------------------------------
    async def _share_request(self, opened: Opened) -> Decision:
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


@dataclass(frozen=True, slots=True)
class _View:
    """A notification on its way to recipients: its record, its author's bytes, its route."""

    opened: Opened
    name: str
    record: dict[str, Any]
    plaintext: bytes  # the single-object encoding the author sealed (the full view)
    party: str  # who receives this view: the LA, or a school for its key adult
    key: bytes
    restrictions: list[dict[str, str]]


@dataclass(frozen=True, slots=True)
class _Request:
    """A disclosure request on its way to the police: its Kafka key and child pseudonym."""

    opened: Opened
    request: dict[str, Any]
    key: bytes  # the child's pseudonym, or the request id when the child has no identifier
    pseudonym: bytes | None


def _request_audit(
    route: _Request, what: str, reason: str, recipient: dict[str, Any] | None, detail: str
) -> AuditEntry:
    request, by = route.request, route.request["requested_by"]
    protocol = request["protocol"].removeprefix("PROTOCOL_")
    return AuditEntry(
        decision=what,
        message_id=str(route.opened.message_id),
        notification_id=str(request["request_id"]),
        sender=route.opened.sender.id,
        recipient=recipient["id"] if recipient else None,
        recipient_role=recipient["role"] if recipient else None,
        notification_type="disclosure_request",
        child_pseudonym=route.key.hex(),
        reason=reason,
        lawful_basis=None,
        consent=None,
        no_consent_reason=None,
        restrictions=(),
        withheld=(),
        detail=detail or f"{protocol} Protocol request; by {by['name']} ({by['role']})",
        decided_at=utc_now(),
    )


def _request_refusal(route: _Request, reason: str, detail: str) -> Decision:
    decision = Decision(outcome="refused", type_label="disclosure_request")
    decision.audit.append(_request_audit(route, "refused", reason, None, detail))
    message_id = route.opened.message_id
    decision.receipt = (route.opened.sender.id, receipt(message_id, "REFUSED", reason, detail))
    return decision


def _request_delivery(route: _Request, police: Party) -> Decision:
    """The whole request, sealed for the force, to its single point of contact."""
    request, sender = route.request, route.opened.sender
    recipient = {
        "id": f"spoc:{police.id}",
        "role": "POLICE_SPOC",
        "team": None,
        "name": f"single point of contact, {police.name}",
    }
    decision = Decision(outcome="delivered", type_label="disclosure_request")
    decision.audit.append(_request_audit(route, "delivered", "DISCLOSURE_REQUEST", recipient, ""))
    record = {
        "notification_id": request["request_id"],
        "recipients": [{**recipient, "route_reason": "DISCLOSURE_REQUEST", "audit_sequence": 0}],
        "sender_agency": sender.id,
        "sender_kind": sender.kind,
        "notification_type": c.DISCLOSURE_REQUEST,
        "urgency": request["urgency"],
        "authored_at": request["requested_at"],
        "routed_at": utc_now(),
        "restrictions": [],
        "onward_consent": [],
        "withheld": [],
        "notification": route.opened.plaintext,
    }
    decision.deliveries.append(Delivery(police.id, route.key, record, [0]))
    due = deadline(request["requested_at"])
    note = f"to the single point of contact of {police.id}; answer due {due:%Y-%m-%d %H:%M} UTC"
    decision.receipt = (sender.id, receipt(route.opened.message_id, "DELIVERED", "delivered", note))
    return decision


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
        "decided_at": utc_now(),
    }


def quarantine(source: Source, reason: str, detail: str) -> Decision:
    """Keep the raw record with its reason, audit it, and tell the topic's agency."""
    now = utc_now()
    kept = Quarantined.of(source, reason, detail, now)
    agency = inbound_agency(source.topic)
    decision = Decision(outcome="quarantined", quarantine=[kept])
    decision.audit.append(
        AuditEntry(
            decision="quarantined",
            message_id=kept.message_id or source.where,
            notification_id=None,
            sender=agency,
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
    if kept.message_id is not None:
        answer = receipt(UUID(kept.message_id), "QUARANTINED", reason, detail)
        decision.receipt = (agency, answer)
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
        decided_at=utc_now(),
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
        recorded_at=utc_now(),
    )


def _basis(sharing: dict[str, Any], author: dict[str, Any]) -> str:
    return f"{sharing['legal_gateway']}; by {author['name']} ({author['role']})"
