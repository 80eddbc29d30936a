"""The families-informed gauges of an LA's inbox, refreshed from its store every few
seconds (:func:`sgx.ops.metrics.refreshing`, run by ``safeguard.inbox_wiring``).

Per team (the queue row's team, else its recipient role, as the queue gauges label it;
never a worker): ``sgx_family_decisions_outstanding``, the disclosures made with no
decision recorded, and ``sgx_family_decisions_overdue``, those waiting longer than the
working days allowed (:func:`sgx.domain.family.decision_due`). The LA is the scrape
target's label (one inbox serves one LA); every instance of an LA's inbox exports the
same numbers, so the alert takes the largest. A team that had some keeps its series at 0
once they are decided. The reading is one index range over the outstanding rows: live
work, not history.
"""

from __future__ import annotations

from collections import Counter

from consumers.inbox.family_store import FamilyStore
from sgx.domain.calendar import SchoolCalendar
from sgx.domain.family import decision_due
from sgx.keys.trust import Clock, utc_now
from sgx.ops.metrics import FamilyMetrics, set_labelled


class FamilyMonitor:
    def __init__(
        self,
        store: FamilyStore,
        metrics: FamilyMetrics,
        *,
        calendar: SchoolCalendar,
        due_days: int,
        clock: Clock = utc_now,
    ) -> None:
        self._store = store
        self._metrics = metrics
        self._calendar = calendar
        self._due_days = due_days
        self._clock = clock
        self._teams: set[str] = set()
        self._shown: dict[str, set[tuple[str, ...]]] = {"outstanding": set(), "overdue": set()}

    async def refresh(self) -> None:
        now = self._clock()
        waiting: Counter[str] = Counter()
        overdue: Counter[str] = Counter()
        for team, made_at in await self._store.outstanding_by_team():
            waiting[team] += 1
            if decision_due(self._calendar, made_at, self._due_days) <= now:
                overdue[team] += 1
        self._teams |= waiting.keys()
        m, shown = self._metrics, self._shown
        set_labelled(m.outstanding, {(t,): waiting[t] for t in self._teams}, shown["outstanding"])
        set_labelled(m.overdue, {(t,): overdue[t] for t in self._teams}, shown["overdue"])
