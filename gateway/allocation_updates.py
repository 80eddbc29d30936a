"""Judging an LA's allocation update: its own cases only, then fresh open-case lists.

An ``AllocationUpdate`` allocates, reallocates, transfers in (``transfer_from``) and closes
(``ended``: deallocation) the sending LA's own cases. An update for another LA's cases
(``la_id`` not the sender) is refused whole, audited against both LAs, so the LA whose
cases were named sees the attempt in its own audit (``safeguard audit --la``); nothing is
applied. A closure of a child the LA does not hold changes nothing and is counted in the
audit record. A transfer-in leaves the other LA's case open until that LA closes it: in
between, both receive the child's notifications.

After an update is applied, every school serving the LA is sent its open-case list
(:func:`gateway.open_cases.open_case_list`): the union of the open cases of every LA the
school serves, so a school never learns which LA holds which pupil.
"""

from __future__ import annotations

from typing import Any

from gateway.allocations import AllocationDirectory
from gateway.audit_chain import AuditEntry
from gateway.decision import Decision, Quarantine, receipt
from gateway.open_cases import open_case_list
from sgx import contract as c
from sgx.contract import Contract
from sgx.envelope import Opened
from sgx.trust import TrustDirectory, utc_now


class AllocationJudge:
    def __init__(
        self, *, contract: Contract, allocations: AllocationDirectory, trust: TrustDirectory
    ) -> None:
        self._contract = contract
        self._allocations = allocations
        self._trust = trust

    async def judge(self, opened: Opened) -> Decision:
        sender = opened.sender
        if sender.kind != "local_authority":
            raise Quarantine("not_permitted_by_agreement", f"{sender.kind} sent allocations")
        update = self._contract.decode_as(c.ALLOCATION_UPDATE, opened.plaintext)
        if update["la_id"] != sender.id:
            return self._other_la(opened, str(update["la_id"]))
        la = sender.id
        held = [
            self._allocations.holds(la, child["nhs_number"], child["upn"])
            for child in update["ended"]
        ]
        detail = self._summary(update, held)
        update = {**update, "ended": [e for e, h in zip(update["ended"], held, strict=True) if h]}
        await self._allocations.apply(update)
        decision = Decision(outcome="applied", type_label="allocation_update")
        decision.audit.append(_audit(opened, "applied", "ALLOCATION_UPDATE", la, detail))
        decision.receipt = (sender.id, receipt(opened.message_id, "DELIVERED", "applied", detail))
        now = utc_now()
        unions: dict[tuple[str, ...], list[bytes]] = {}  # schools serving the same LAs share one
        for school in self._trust.serving(la, "school"):
            served = self._trust.served(school.id)
            if served not in unions:
                unions[served] = await self._allocations.open_case_keys(served)
            decision.open_case_lists.append(
                (school.id, open_case_list(school.id, unions[served], now))
            )
        return decision

    def _summary(self, update: dict[str, Any], held: list[bool]) -> str:
        transfers = [a["transfer_from"] for a in update["allocations"] if a["transfer_from"]]
        parts = [f"{len(update['allocations']) - len(transfers)} allocated or changed"]
        for code in sorted(set(transfers)):
            origin = self._trust.authority(code)
            named = f"{origin.id} ({code})" if origin else f"{code}, not an LA of this exchange"
            parts.append(f"{transfers.count(code)} transferred in from {named}")
        parts.append(f"{sum(held)} closed")
        if not all(held):
            parts.append(f"{held.count(False)} closure(s) of a case not open here changed nothing")
        return ", ".join(parts)

    def _other_la(self, opened: Opened, named: str) -> Decision:
        """An update naming another LA's cases: refused whole, audited for both LAs."""
        sender = opened.sender.id
        las = {p.id for p in self._trust.parties("local_authority")}
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
