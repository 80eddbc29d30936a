"""A police force's Operation Encompass deadline, measured at its own outbox.

Operation Encompass: when the police attend a domestic abuse incident a child was at or
linked to, the child's school (its key adult) and social care must know before the next
school day begins. The one place that knows every such notification, from the moment
the force keeps it until the gateway says it was delivered, is the force's outbox: an
entry with no receipt yet (``PENDING`` or ``SENT``) has not reached the key adult's or
social care's delivery topic. (The gateway answers DELIVERED once the deliveries are on
the broker; from there to the queue row is the consumer's lag, alerted on its own.) An
entry the gateway REFUSED or QUARANTINED has an answer and is counted by the quarantine
and refusal metrics instead.

:class:`EncompassMonitor` reads the force's awaiting police notifications every few
seconds, decodes each one once (its kind and incident time are cached by message id),
and sets:

* ``sgx_encompass_undelivered_before_school_day`` — Encompass notifications awaiting a
  receipt whose deadline, the first school-day start after the incident
  (:meth:`~sgx.domain.calendar.SchoolCalendar.next_school_day_start` of ``incident.occurred_at``),
  is within ``window`` of now or already past;
* ``sgx_encompass_seconds_to_school_day`` — seconds until the next school day begins.

No label: nothing about an incident, a child or a school leaves in a metric.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import datetime, timedelta
from typing import Any

from prometheus_client import CollectorRegistry
from sqlalchemy import LargeBinary, String, column, select, table

from producers.outbox import AWAITING, OutboxStore
from sgx.domain.calendar import SchoolCalendar
from sgx.errors import ContractError
from sgx.keys.trust import Clock, utc_now
from sgx.ops.metrics import EncompassMetrics, MonitorSettings, refreshing
from sgx.ops.serving import Check, Readiness, database_check
from sgx.store.db import store_errors
from sgx.wire import contract as c
from sgx.wire.contract import Contract

ENCOMPASS = "OPERATION_ENCOMPASS"


def _entries(schema: str | None) -> Any:
    return table(
        "outbox_entry",
        column("agency", String),
        column("message_id", String),
        column("schema_name", String),
        column("plaintext", LargeBinary),
        column("status", String),
        schema=schema,
    )


def incident_time(record: dict[str, Any]) -> datetime | None:
    """When the incident of an Encompass notification happened (else None)."""
    police = record.get("police") or {}
    if police.get("kind") != ENCOMPASS:
        return None
    incident = police.get("incident") or {}
    occurred = incident.get("occurred_at")
    return occurred if isinstance(occurred, datetime) else record.get("authored_at")


class EncompassMonitor:
    """Sets the Operation Encompass gauges from one police force's outbox."""

    def __init__(
        self,
        store: OutboxStore,
        agency: str,
        contract: Contract,
        calendar: SchoolCalendar,
        metrics: EncompassMetrics,
        *,
        window: timedelta = timedelta(hours=12),
        clock: Clock = utc_now,
    ) -> None:
        self._engine = store.engine
        self._agency = agency
        self._contract = contract
        self._calendar = calendar
        self._metrics = metrics
        self._window = window
        self._table = _entries(store.schema)
        self._clock = clock
        self._deadlines: dict[str, datetime | None] = {}  # message id → deadline (None: other)

    async def deadlines(self) -> list[datetime]:
        """The deadline of every Encompass notification that has no receipt yet."""
        t = self._table
        known = select(t.c.message_id).where(
            t.c.agency == self._agency,
            t.c.schema_name == c.POLICE_NOTIFICATION,
            t.c.status.in_(AWAITING),
        )
        with store_errors("read awaiting police notifications"):
            async with self._engine.connect() as conn:
                awaiting = set((await conn.execute(known)).scalars())
                new = sorted(awaiting - self._deadlines.keys())
                if new:
                    query = select(t.c.message_id, t.c.plaintext).where(
                        t.c.agency == self._agency, t.c.message_id.in_(new)
                    )
                    for message_id, plaintext in (await conn.execute(query)).all():
                        self._deadlines[message_id] = self._deadline(bytes(plaintext))
        self._deadlines = {m: d for m, d in self._deadlines.items() if m in awaiting}
        return [d for d in self._deadlines.values() if d is not None]

    def _deadline(self, plaintext: bytes) -> datetime | None:
        try:
            record = self._contract.decode_as(c.POLICE_NOTIFICATION, plaintext, check=False)
        except ContractError:
            return None  # the outbox validated it; a record it cannot read is not Encompass
        occurred = incident_time(record)
        return None if occurred is None else self._calendar.next_school_day_start(occurred)

    async def refresh(self) -> None:
        now = self._clock()
        at_risk = [d for d in await self.deadlines() if d - now <= self._window]
        self._metrics.undelivered.set(len(at_risk))
        next_start = self._calendar.next_school_day_start(now)
        self._metrics.seconds_to_school_day.set((next_start - now).total_seconds())


@asynccontextmanager
async def producer_monitors(
    *,
    store: OutboxStore,
    agency: str,
    registry: CollectorRegistry,
    readiness: Readiness,
    contract: Contract,
    calendar: SchoolCalendar | None = None,
    broker: Check | None = None,
    settings: MonitorSettings | None = None,
    clock: Clock = utc_now,
) -> AsyncIterator[EncompassMonitor | None]:
    """Register the producer's readiness checks; with a ``calendar`` (a police force),
    run its Operation Encompass monitor while the block runs.

    The outbox gauges (depth, oldest age) are set by the relay itself after each pass.
    """
    settings = settings or MonitorSettings()
    readiness.add(f"outbox database {agency}", database_check(store.engine))
    if broker is not None:
        readiness.add("broker", broker)
    if calendar is None:
        yield None
        return
    monitor = EncompassMonitor(
        store,
        agency,
        contract,
        calendar,
        EncompassMetrics(registry),
        window=timedelta(seconds=settings.encompass_window_s),
        clock=clock,
    )
    async with AsyncExitStack() as stack:
        await stack.enter_async_context(
            refreshing("encompass", monitor.refresh, settings.interval_s)
        )
        yield monitor
