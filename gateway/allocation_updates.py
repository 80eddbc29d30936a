"""Judging an LA's allocation update: its own cases only, then fresh open-case lists.

An ``AllocationUpdate`` allocates, reallocates, transfers in (``transfer_from``) and closes
(``ended``: deallocation) the sending LA's own cases. An update for another LA's cases
(``la_id`` not the sender) is refused whole, audited against both LAs, so the LA whose
cases were named sees the attempt in its own audit (``safeguard audit --la``); nothing is
applied. A closure of a child the LA does not hold changes nothing and is counted in the
audit record. A transfer-in leaves the other LA's case open until that LA closes it: in
between, both receive the child's notifications. The identifiers an LA names together are
one child's case: an allocation or closure naming any of them acts on all of them, and an
update that would put two NHS numbers in one case is refused whole
(``conflicting_identifiers``; :mod:`gateway.allocation_cases`).

Updates arrive on the LA's allocation topic. Every gateway instance applies them to its
own directory (:mod:`gateway.allocation_feed`); the instance that owns the topic's
partition in the gateway group judges each here for what happens once: the audit record,
the LA's receipt, the snapshot change written with the audit
(:attr:`~gateway.decision.Decision.allocation_changes`), and the LAs whose schools get a
fresh open-case list once that is committed (:func:`gateway.open_cases.lists_for`): the
union of the open cases of every LA a school serves, so a school never learns which LA
holds which pupil.
"""

from __future__ import annotations

from gateway.allocation_feed import AllocationFeed
from gateway.audit_chain import AuditEntry
from gateway.decision import Decision, Quarantine, receipt
from sgx.kafka.quarantine import Source
from sgx.kafka.wiring import allocations_topic
from sgx.keys.trust import TrustDirectory, utc_now
from sgx.wire import contract as c
from sgx.wire.contract import Contract
from sgx.wire.envelope import Opened

CONFLICT = "conflicting_identifiers"  # an update that would put two NHS numbers in one case


class AllocationJudge:
    def __init__(self, *, contract: Contract, feed: AllocationFeed, trust: TrustDirectory) -> None:
        self._contract = contract
        self._feed = feed
        self._trust = trust

    async def judge(self, source: Source, opened: Opened) -> Decision:
        sender = opened.sender
        if sender.kind != "local_authority":
            raise Quarantine("not_permitted_by_agreement", f"{sender.kind} sent allocations")
        if source.topic != allocations_topic(sender.id):
            raise Quarantine("sender_topic_mismatch", f"{sender.id} wrote to {source.topic}")
        update = self._contract.decode_as(c.ALLOCATION_UPDATE, opened.plaintext)
        if update["la_id"] != sender.id:
            return self._other_la(opened, str(update["la_id"]))
        la = sender.id
        change, detail, refused = self._feed.settle(source, update, str(opened.message_id))
        decision = Decision(type_label="allocation_update")
        decision.allocation_changes.append(change)  # the snapshot's position, even if refused
        if refused:
            decision.outcome = "refused"
            decision.audit.append(_audit(opened, "refused", CONFLICT, la, detail))
            decision.receipt = (sender.id, receipt(opened.message_id, "REFUSED", CONFLICT, detail))
            return decision
        decision.outcome = "applied"
        decision.audit.append(_audit(opened, "applied", "ALLOCATION_UPDATE", la, detail))
        decision.receipt = (sender.id, receipt(opened.message_id, "DELIVERED", "applied", detail))
        decision.open_cases_of.add(la)
        return decision

    def _other_la(self, opened: Opened, named: str) -> Decision:
        """An update naming another LA's cases: refused whole, audited for both LAs."""
        sender = opened.sender.id
        las = set(self._trust.local_authorities())
        shown = named if named in las else "an LA not in the directory"
        why = f"{sender} sent an update for {shown}'s cases: an LA may change only its own"
        decision = Decision(outcome="refused", type_label="allocation_update")
        for la in sorted({sender} | ({named} & las)):
            decision.audit.append(_audit(opened, "refused", "not_own_cases", la, why))
        decision.receipt = (sender, receipt(opened.message_id, "REFUSED", "not_own_cases", why))
        return decision


def _audit(opened: Opened, what: str, reason: str, la: str, detail: str) -> AuditEntry:
    return AuditEntry(
        decision=what,
        message_id=str(opened.message_id),
        notification_id=None,
        sender=opened.sender.id,
        recipient=None,
        recipient_role=None,
        local_authority=la,
        notification_type="allocation_update",
        child_pseudonym=None,
        reason=reason,
        lawful_basis=None,
        consent=None,
        no_consent_reason=None,
        restrictions=(),
        withheld=(),
        detail=detail,
        decided_at=utc_now(),
    )
