"""Families informed, for the web pages, the API and the command line alike: record a
decision about a disclosure, read its history, list what is outstanding, and build the
child's family-facing summary, each checked against the caller as the inbox checks
everything (:class:`~consumers.inbox.access.Principal`), and each decision audited.

Who may do what follows the inbox's rules: a disclosure is seen by whoever sees the queue
row it came from (a worker their own, a supervisor their team's, a MASH duty worker the
MASH queue's, a system its scopes), and one they may not see answers 404 in the same words
as one that does not exist. Reading a decision or the outstanding list needs
``deliveries:read``; recording one ``shares:write``; the family-facing summary
``sharing-record:read`` (and, for a person, their own copy of the item, as the child's
sharing record does). A supervisor may record the decision on a team member's share:
deciding an exception is often a manager's call, and the record names who decided.

Every decision recorded is kept with who recorded it (``family_decision``) and is also
a row of the inbox's audit (``inbox_read``, action ``family``) against its item.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from consumers.inbox.access import READ, SHARE, Principal
from consumers.inbox.consent_store import ConsentRecord
from consumers.inbox.family_store import DecisionRecord, Disclosure, Pending
from consumers.inbox.family_summary import PARENTS, FamilySummary, Source, family_summary
from consumers.inbox.service import Inbox
from consumers.inbox.views import child_name
from consumers.reader import QueueView
from sgx.domain.calendar import SchoolCalendar
from sgx.domain.consent import Grant
from sgx.domain.family import DisclosureKind, FamilyDecision, decision_due, decision_from
from sgx.errors import NotFound
from sgx.keys.trust import Clock, utc_now
from sgx.ops.metrics import FamilyMetrics

KIND_WORDS = {DisclosureKind.ONWARD_SHARE: "share", DisclosureKind.NETWORK_CHECK: "network check"}


@dataclass(frozen=True, slots=True)
class Outstanding:
    """A disclosure awaiting its family-informed decision, and when that is overdue."""

    pending: Pending
    due: datetime
    overdue: bool

    @property
    def disclosure(self) -> Disclosure:
        return self.pending.disclosure


def _source(view: QueueView, consents: list[ConsentRecord]) -> Source:
    grants = tuple(
        Grant(c.request_id, c.purpose, c.answered_by or "", c.court_order)
        for c in consents
        if c.state == "GRANTED" and c.category == PARENTS
    )
    return Source(
        notification=view.notification,
        type_label=view.type_label,
        authored_at=view.delivery["authored_at"],
        restrictions=tuple(r["code"] for r in view.delivery["restrictions"]),
        grants=grants,
    )


class Families:
    def __init__(
        self,
        inbox: Inbox,
        *,
        calendar: SchoolCalendar,
        due_days: int,
        metrics: FamilyMetrics,
        clock: Clock = utc_now,
    ) -> None:
        self._inbox = inbox
        self.calendar = calendar
        self.due_days = due_days
        self._metrics = metrics
        self._clock = clock

    def check(self, who: Principal, fields: Mapping[str, Any], where: str = "") -> FamilyDecision:
        """The decision ``fields`` state, checked (ContractError names the field); a person
        who names no decider is the decider, a system must name one."""
        by = who.name if who.kind == "person" else None
        return decision_from(fields, now=self._clock(), decided_by=by, where=where)

    async def disclosure(self, who: Principal, kind: DisclosureKind, ref: str) -> Disclosure:
        """The disclosure, if it came from a queue row the caller may see; NotFound (in the
        same words whether it exists or not) otherwise."""
        who.require(READ)
        missing = f"no {KIND_WORDS[kind]} {ref} of an item you may see"
        try:
            found = await self._inbox.store.families.get(kind, ref)
            await self._inbox.item(who, found.item_id)
        except NotFound:
            raise NotFound(missing) from None
        return found

    async def record(
        self,
        who: Principal,
        kind: DisclosureKind,
        ref: str,
        fields: Mapping[str, Any],
        where: str = "",
    ) -> DecisionRecord:
        """Record the caller's family-informed decision about a disclosure, and audit it."""
        who.require(SHARE)
        found = await self.disclosure(who, kind, ref)
        return await self.recorded(who, found, self.check(who, fields, where))

    async def recorded(
        self, who: Principal, found: Disclosure, decision: FamilyDecision
    ) -> DecisionRecord:
        """Record ``decision`` (checked already) about ``found`` (seen by the caller)."""
        store = self._inbox.store
        made = await store.families.record(
            found.disclosure_id, decision, recorded_by=who.subject, recorder_kind=who.kind
        )
        await store.record_reads(who, "family", [(found.item_id, found.notification_id)])
        self._metrics.decisions.labels("informed" if decision.informed else "exception").inc()
        return made

    async def history(
        self, who: Principal, kind: DisclosureKind, ref: str
    ) -> tuple[Disclosure, list[DecisionRecord]]:
        """The disclosure and every decision recorded about it, oldest first."""
        found = await self.disclosure(who, kind, ref)
        return found, await self._inbox.store.families.history(found.disclosure_id)

    async def of_shares(self, share_ids: list[int]) -> dict[int, Disclosure]:
        """The disclosures these shares are (the caller has seen the shares already)."""
        found = await self._inbox.store.families.current(
            DisclosureKind.ONWARD_SHARE, [str(i) for i in share_ids]
        )
        return {int(ref): disclosure for ref, disclosure in found.items()}

    def due(self, disclosure: Disclosure) -> datetime:
        made = disclosure.made_at or disclosure.asked_at
        return decision_due(self.calendar, made, self.due_days)

    async def outstanding(self, who: Principal) -> list[Outstanding]:
        """Disclosures the caller may see with no decision recorded, oldest first."""
        who.require(READ)
        now = self._clock()
        found = await self._inbox.store.families.outstanding(who.selection())
        return [
            Outstanding(p, due := self.due(p.disclosure), due <= now) for p in found
        ]  # fmt: skip

    async def summary(self, who: Principal, item_id: int) -> FamilySummary:
        """The family-facing summary for the child of ``item_id``, over what the caller's
        sharing record of the child holds (its reads audited as the record's are)."""
        record = await self._inbox.child(who, item_id)
        ids = sorted({v.item.notification_id for v in record.views})
        consents = await self._inbox.store.consents.of(ids)
        sources = {
            v.item.notification_id: _source(
                v, [c for c in consents if c.notification_id == v.item.notification_id]
            )
            for v in record.views
        }
        disclosures = await self._inbox.store.families.of(ids)
        child = child_name(record.views[0].notification)
        return family_summary(child, disclosures, sources, self.calendar.zone)
