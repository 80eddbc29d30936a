"""The consumer's monitors: its queues per team, its quarantine and its lag, as gauges.

:class:`QueueMonitor` reads the queue database every few seconds and sets, per team:

* ``sgx_queue_depth`` — unread items;
* ``sgx_queue_oldest_unread_age_seconds`` — how long the oldest unread item has waited
  since it was queued (0 when none);
* ``sgx_urgent_unread`` — urgent items (urgency ``IMMEDIATE``: "the same working day")
  unread for longer than ``urgent_after`` (one hour by default, ``SGX_MONITOR_URGENT_AFTER_S``);

and ``sgx_consumer_quarantine_size``. The team label is the recipient's team (``MASH``
for the front door); a recipient without a team (a school's key adult, a police force's
SPOC) is counted under its recipient role. Never a worker id: teams and roles are few,
workers are people. A team that had items keeps its series at 0 once they are read.

The queries read the queue's tables (``queue_item``, ``consumer_quarantine``; see
:mod:`consumers.queue`) with a light table clause: one ``GROUP BY`` over the unread rows.
:func:`consumer_monitors` runs it with the consumer's :class:`~sgx.ops.metrics.LagMonitor`
and registers the readiness checks (broker, queue database).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from aiokafka import AIOKafkaConsumer
from prometheus_client import CollectorRegistry, Gauge
from sqlalchemy import String, case, column, func, select, table

from consumers.queue import QueueStore
from sgx.kafka.quarantine import QuarantineCount
from sgx.keys.trust import Clock, utc_now
from sgx.ops.metrics import (
    LagMetrics,
    LagMonitor,
    MonitorSettings,
    QueueMetrics,
    refreshing,
    set_labelled,
)
from sgx.ops.serving import Readiness, broker_check, database_check
from sgx.store.db import UtcDateTime, store_errors

URGENT = frozenset({"IMMEDIATE"})


@dataclass(frozen=True, slots=True)
class TeamQueue:
    """The unread part of one team's queues."""

    depth: int
    oldest_unread: datetime | None
    urgent_overdue: int

    def oldest_age(self, now: datetime) -> float:
        if self.oldest_unread is None:
            return 0.0
        return max((now - self.oldest_unread).total_seconds(), 0.0)


def _items(schema: str | None) -> Any:
    items = table(
        "queue_item",
        column("team", String),
        column("recipient_role", String),
        column("status", String),
        column("urgency", String),
        column("queued_at", UtcDateTime),
        schema=schema,
    )
    return items


class QueueMonitor:
    """Sets the queue gauges of one receiving party from its queue database."""

    def __init__(
        self,
        store: QueueStore,
        metrics: QueueMetrics,
        *,
        urgent_after: timedelta = timedelta(hours=1),
        urgent: frozenset[str] = URGENT,
        clock: Clock = utc_now,
        queued: Gauge | None = None,
    ) -> None:
        self._engine = store.engine
        self._metrics = metrics
        self._items = _items(store.schema)
        self._quarantine = QuarantineCount(store.engine, store.quarantine_table, clock)
        self._urgent_after = urgent_after
        self._urgent = urgent
        self._clock = clock
        self._queued = queued
        self._teams: set[str] = set()
        self._shown: dict[str, set[tuple[str, ...]]] = {
            "depth": set(),
            "age": set(),
            "urgent": set(),
        }

    async def teams(self, now: datetime) -> dict[str, TeamQueue]:
        """Every team with unread items, as of ``now``."""
        t = self._items
        label = func.coalesce(t.c.team, t.c.recipient_role)
        overdue = t.c.urgency.in_(sorted(self._urgent)) & (t.c.queued_at < now - self._urgent_after)
        query = (
            select(
                label, func.count(), func.min(t.c.queued_at), func.sum(case((overdue, 1), else_=0))
            )
            .where(t.c.status == "unread")
            .group_by(label)
        )
        with store_errors("measure the queues"):
            async with self._engine.connect() as conn:
                rows = (await conn.execute(query)).all()
        return {row[0]: TeamQueue(int(row[1]), row[2], int(row[3] or 0)) for row in rows}

    async def quarantine_size(self) -> int:
        return await self._quarantine.count()

    async def refresh(self) -> None:
        now = self._clock()
        teams = await self.teams(now)
        self._metrics.quarantine_size.set(await self.quarantine_size())
        self._teams |= teams.keys()
        empty = TeamQueue(0, None, 0)
        state = {(team,): teams.get(team, empty) for team in self._teams}
        m, shown = self._metrics, self._shown
        set_labelled(m.depth, {k: q.depth for k, q in state.items()}, shown["depth"])
        set_labelled(
            m.oldest_unread_age, {k: q.oldest_age(now) for k, q in state.items()}, shown["age"]
        )
        set_labelled(
            m.urgent_unread, {k: q.urgent_overdue for k, q in state.items()}, shown["urgent"]
        )
        if self._queued is not None:
            self._queued.set(sum(q.depth for q in teams.values()))


@asynccontextmanager
async def consumer_monitors(
    *,
    store: QueueStore,
    consumer: AIOKafkaConsumer,
    registry: CollectorRegistry,
    readiness: Readiness,
    queued: Gauge | None = None,
    settings: MonitorSettings | None = None,
    clock: Clock = utc_now,
) -> AsyncIterator[QueueMonitor]:
    """Run the queue and lag monitors while the block runs; register the readiness checks."""
    settings = settings or MonitorSettings()
    readiness.add("broker", broker_check(consumer))
    readiness.add("queue database", database_check(store.engine))
    queue = QueueMonitor(
        store,
        QueueMetrics(registry),
        urgent_after=timedelta(seconds=settings.urgent_after_s),
        clock=clock,
        queued=queued,
    )
    lag = LagMonitor(consumer, LagMetrics(registry))
    async with AsyncExitStack() as stack:
        await stack.enter_async_context(refreshing("queue", queue.refresh, settings.interval_s))
        await stack.enter_async_context(
            refreshing("consumer lag", lag.refresh, settings.interval_s)
        )
        yield queue
