"""Judging a notification from an agency: checked, routed by the child, minimised per LA.

For each receiving LA (:class:`gateway.routing.Router`) the gateway applies that LA's
agreement (:class:`gateway.partnership.Partnership`): whether the sender's kind may send
this type to it, and which fields each of its roles sees. An LA whose agreement does not
permit the type gets nothing, and the refusal is audited against that LA; the sender's
receipt says how many receiving LAs refused, never which LA holds the child.

An Operation Encompass police notification naming a school also goes to that school's key
adult (``key-adult:<school>``, role ``key_adult``), wherever the school is. A 2013 / 2024
Protocol disclosure that answers a request goes back to the requesting LA only, and closes
the request (:class:`~gateway.requests.DisclosureRequests`). A referral is routed the same
way, and each LA it reaches gets its deadlines (:class:`~gateway.referrals.ReferralClock`).
"""

from __future__ import annotations

import re
from typing import Any

from gateway.decision import Decision, Quarantine, View, audit_entry, deliver, ledger_entry, receipt
from gateway.partnership import Partnership
from gateway.referrals import ReferralClock
from gateway.requests import DisclosureRequests
from gateway.restrictions import attach
from gateway.routing import Route, Router
from sgx.errors import UnknownSender
from sgx.keys.pseudonym import Pseudonymiser
from sgx.keys.trust import Party, TrustDirectory, utc_now
from sgx.wire import contract as c
from sgx.wire.contract import Contract
from sgx.wire.envelope import Opened

DISCLOSURE_KINDS = frozenset({"PROTOCOL_2013_DISCLOSURE", "PROTOCOL_2024_DISCLOSURE"})
PARTY_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")  # what may be echoed from a record's party id


class NotificationJudge:
    """Routes one notification type record to every LA responsible for its child."""

    def __init__(
        self,
        *,
        contract: Contract,
        partnership: Partnership,
        router: Router,
        pseudonyms: Pseudonymiser,
        trust: TrustDirectory,
        requests: DisclosureRequests,
        referrals: ReferralClock | None = None,
    ) -> None:
        """``referrals`` starts the clocks of the referrals delivered (none: not tracked,
        as in a test of routing alone)."""
        self._contract = contract
        self._partnership = partnership
        self._router = router
        self._pseudonyms = pseudonyms
        self._trust = trust
        self._requests = requests
        self._referrals = referrals

    async def judge(self, opened: Opened, name: str, record: dict[str, Any]) -> Decision:
        if record["notification_id"] != opened.message_id:
            raise Quarantine(
                "invalid_record", "notification_id differs from the envelope's message id"
            )
        if record["author"]["agency_id"] != opened.sender.id:
            raise Quarantine("author_mismatch", f"author agency {record['author']['agency_id']!r}")
        child = record["child"]
        # One HMAC per identifier: the directory looks the child up by both, and the
        # child's key is the NHS number's pseudonym, else the UPN's (Pseudonymiser.child_key).
        nhs_key, upn_key = self._pseudonyms.identifier_keys(child["nhs_number"], child["upn"])
        key = nhs_key or upn_key or opened.message_id.bytes
        restrictions = attach(opened.sender.kind, record["sharing"])
        view = View.of(opened, name, record, opened.plaintext, key, restrictions)
        decision = Decision(outcome="delivered", type_label=c.SHORT_NAMES[name])
        answered, note = await self._answered_request(view)
        routes = (
            [self._router.within(answered, nhs_key, upn_key)]
            if answered is not None
            else self._router.routes(opened.sender.id, nhs_key, upn_key, child.get("residence_la"))
        )
        refusals = [why for route in routes if (why := self._to_la(decision, view, route))]
        if name == c.REFERRAL and self._referrals is not None:
            await self._referrals.routed(view, decision.deliveries)
        if name == c.POLICE_NOTIFICATION:
            note = self._police(decision, view) or note
        return self._settled(decision, view, len(routes), refusals, note)

    def _to_la(self, decision: Decision, view: View, route: Route) -> str:
        """Deliver to one LA under its own agreement, or audit its refusal and say why."""
        la_view = view.to(route.la, route.la)
        agreement = self._partnership.agreement(route.la)
        kind, short = view.opened.sender.kind, c.SHORT_NAMES[view.name]
        if not agreement.may_send(kind, view.name):
            why = f"a {kind} may not send {short} under the receiving LA's agreement"
            decision.audit.append(
                audit_entry(la_view, "refused", "not_permitted_by_agreement", [], None,
                            detail=f"{route.why}; {why}", restricted=False)
            )  # fmt: skip
            return why
        deliver(decision, la_view, route.recipients, agreement, self._contract, detail=route.why)
        decision.ledger.append(ledger_entry(la_view))
        return ""

    def _settled(
        self, decision: Decision, view: View, routes: int, refusals: list[str], note: str
    ) -> Decision:
        """The outcome and the sender's receipt, once every route is judged."""
        message_id, sender = view.opened.message_id, view.opened.sender.id
        if not routes:
            why = (
                "the child is open to no LA of this exchange, no residence LA is stated and"
                f" the agreement names no default LA for {sender}"
            )
            decision.audit.append(
                audit_entry(view, "refused", "no_route", [], None, detail=why, restricted=False)
            )
            refusals = [why]
        if len(refusals) == max(routes, 1):
            decision.outcome = "refused"
            reason = "not_permitted_by_agreement" if routes else "no_route"
            decision.receipt = (sender, receipt(message_id, "REFUSED", reason, refusals[0]))
            return decision
        if refusals:
            refused = f"{len(refusals)} of {routes} receiving LAs' agreements refused it"
            note = f"{note}; {refused}" if note else refused
        decision.receipt = (sender, receipt(message_id, "DELIVERED", "delivered", note))
        return decision

    # -- Operation Encompass: the school's key adult ---------------------------------
    def _police(self, decision: Decision, view: View) -> str:
        """An Operation Encompass incident also goes to the school's key adult."""
        police = view.record["police"]
        if police["kind"] != "OPERATION_ENCOMPASS" or police["incident"] is None:
            return ""
        school_id = police["incident"].get("school_id")
        if not school_id:
            return ""  # the child is on no school's roll: social care only
        return self._key_adult(decision, view, school_id)

    def _key_adult(self, decision: Decision, view: View, school_id: str) -> str:
        """Deliver to the key adult of the school the incident names, or audit why not."""
        shown = school_id if PARTY_ID.fullmatch(school_id) else "(not a party id)"
        recipient: dict[str, Any] = {
            "id": f"key-adult:{shown}",
            "role": "KEY_ADULT",
            "team": None,
            "name": None,
        }
        school, reason, detail = self._school(school_id, shown)
        if school is None:
            decision.audit.append(
                audit_entry(view, "refused", reason, [], recipient, detail=detail)
            )
            return f"the school's key adult was not told: {detail}"
        recipient.update(id=f"key-adult:{school.id}", name=f"Encompass key adult, {school.name}")
        school_view = view.to(school.id, None)
        # A school serves LAs but holds no agreement of its own: the partnership's applies.
        agreement = self._partnership.default
        deliver(decision, school_view, [(recipient, reason)], agreement, self._contract)
        return f"also to the key adult of {school.id}"

    def _school(self, school_id: str, shown: str) -> tuple[Party | None, str, str]:
        """(the school, route reason, "") or (None, refusal reason, why)."""
        try:
            party = self._trust.party(school_id)
        except UnknownSender:
            return None, "encompass_school_unknown", f"school {shown} is not in the trust directory"
        if party.kind != "school":
            return None, "encompass_not_a_school", f"{shown} is a {party.kind}, not a school"
        return party, "ENCOMPASS_KEY_ADULT", ""

    # -- 2013 / 2024 Protocol: the answer goes back to the requesting LA ----------------
    async def _answered_request(self, view: View) -> tuple[str | None, str]:
        """(the requesting LA, receipt note) for a disclosure answering a request on
        record from the same force; (None, note) to route it by the child instead."""
        if view.name != c.POLICE_NOTIFICATION:
            return None, ""
        police = view.record["police"]
        if police["kind"] not in DISCLOSURE_KINDS or police["disclosure"] is None:
            return None, ""
        reference = police["disclosure"]["request_reference"]
        status = await self._requests.status(reference)
        force, disclosure_id = view.opened.sender.id, str(view.record["notification_id"])
        if status is None:
            return None, "no disclosure request with this reference is on record"
        if status.police_id != force:
            return None, "the request with this reference was made to another force"
        if status.answered_at is not None and status.disclosure_id != disclosure_id:
            return status.la_id, f"the request was already answered by {status.disclosure_id}"
        await self._requests.answered(reference, disclosure_id, utc_now())
        return status.la_id, "answers the disclosure request"
