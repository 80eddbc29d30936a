"""Judging a 2013 / 2024 Protocol disclosure request: from any LA to the force's SPOC.

A local authority's ``DisclosureRequest`` goes, whole, to the named police force's single
point of contact (``spoc:<police>``), whichever LAs the force serves, and starts that
request's own 14-day clock (:class:`~gateway.requests.DisclosureRequests`). The
disclosure answering it goes back to the requesting LA only
(:mod:`gateway.notifications`). The audit record is the requesting LA's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gateway.audit_chain import AuditEntry
from gateway.decision import Decision, Delivery, Quarantine, receipt
from gateway.notifications import PARTY_ID
from gateway.requests import DisclosureRequests, deadline
from sgx.keys.pseudonym import Pseudonymiser
from sgx.keys.trust import Party, TrustDirectory, utc_now
from sgx.wire import contract as c
from sgx.wire.envelope import Opened


@dataclass(frozen=True, slots=True)
class _Request:
    """A disclosure request on its way to the police: its Kafka key and child pseudonym."""

    opened: Opened
    request: dict[str, Any]
    key: bytes  # the child's pseudonym, or the request id when the child has no identifier
    pseudonym: bytes | None


class DisclosureRequestJudge:
    """Routes an LA's disclosure request to the police force's single point of contact."""

    def __init__(
        self, *, pseudonyms: Pseudonymiser, trust: TrustDirectory, requests: DisclosureRequests
    ) -> None:
        self._pseudonyms = pseudonyms
        self._trust = trust
        self._requests = requests

    async def judge(self, opened: Opened, request: dict[str, Any]) -> Decision:
        sender = opened.sender
        if request["request_id"] != opened.message_id:
            raise Quarantine("invalid_record", "request_id differs from the envelope's message id")
        if request["requested_by"]["agency_id"] != sender.id:
            raise Quarantine(
                "author_mismatch", f"requesting agency {request['requested_by']['agency_id']!r}"
            )
        child = request["child"]
        pseudonym = self._pseudonyms.child_key(child["nhs_number"], child["upn"])
        route = _Request(opened, request, pseudonym or opened.message_id.bytes, pseudonym)
        police, reason, detail = await self._route(route)
        if police is None:
            return _refusal(route, reason, detail)
        await self._requests.opened(
            request["request_reference"], sender.id, police.id, request["protocol"],
            request["requested_at"], pseudonym.hex() if pseudonym else None,
        )  # fmt: skip
        return _delivery(route, police)

    async def _route(self, route: _Request) -> tuple[Party | None, str, str]:
        """(the police force, "", "") or (None, refusal reason, why)."""
        sender, request = route.opened.sender, route.request
        if sender.kind != "local_authority":
            return None, "not_permitted_by_agreement", f"a {sender.kind} may not request disclosure"
        force = request["police_force"]
        shown = force if PARTY_ID.fullmatch(force) else "(not a party id)"
        named = self._trust.party(force) if self._trust.knows(force) else None  # not a scan
        police = named if named is not None and named.kind == "police" else None
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


def _audit(
    route: _Request, what: str, reason: str, recipient: dict[str, Any] | None, detail: str
) -> AuditEntry:
    request, by = route.request, route.request["requested_by"]
    protocol = request["protocol"].removeprefix("PROTOCOL_")
    sender = route.opened.sender
    return AuditEntry(
        decision=what,
        message_id=str(route.opened.message_id),
        notification_id=str(request["request_id"]),
        sender=sender.id,
        recipient=recipient["id"] if recipient else None,
        recipient_role=recipient["role"] if recipient else None,
        local_authority=sender.id if sender.kind == "local_authority" else None,
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


def _refusal(route: _Request, reason: str, detail: str) -> Decision:
    decision = Decision(outcome="refused", type_label="disclosure_request")
    decision.audit.append(_audit(route, "refused", reason, None, detail))
    message_id = route.opened.message_id
    decision.receipt = (route.opened.sender.id, receipt(message_id, "REFUSED", reason, detail))
    return decision


def _delivery(route: _Request, police: Party) -> Decision:
    """The whole request, sealed for the force, to its single point of contact."""
    request, sender = route.request, route.opened.sender
    recipient = {
        "id": f"spoc:{police.id}",
        "role": "POLICE_SPOC",
        "team": None,
        "name": f"single point of contact, {police.name}",
    }
    decision = Decision(outcome="delivered", type_label="disclosure_request")
    decision.audit.append(_audit(route, "delivered", "DISCLOSURE_REQUEST", recipient, ""))
    record = {
        "notification_id": request["request_id"],
        "recipients": [
            {
                **recipient,
                "route_reason": "DISCLOSURE_REQUEST",
                "audit_sequence": 0,
                "audit_chain": "",
            }
        ],
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
