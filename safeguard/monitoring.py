"""Monitors and readiness checks of the producer services: the relay and the push endpoint.

The gateway and the consumer start their monitors in :mod:`safeguard.runtime` (they hand
their own consumer to the lag monitor and the broker check). The producer relay and the
push endpoint keep their Kafka clients inside the outbox wiring, so their readiness asks
the broker through a probe of its own (:func:`sgx.ops.metrics.broker_probe`).

:func:`producer_monitoring` registers, for the agencies a process serves, the checks
``broker`` and ``outbox database <agency>``, and runs the Operation Encompass monitor on
the outbox of each police force among them (the school-day calendar from
``SGX_SCHOOL_*``), its gauges in that agency's registry.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping

from prometheus_client import CollectorRegistry

from producers.monitor import producer_monitors
from producers.outbox import OutboxStore
from safeguard.runtime import Runtime
from sgx.domain.calendar import CalendarSettings
from sgx.ops.serving import Readiness, broker_probe


@contextlib.asynccontextmanager
async def producer_monitoring(
    rt: Runtime,
    registries: Mapping[str, CollectorRegistry],
    stores: Mapping[str, OutboxStore],
) -> AsyncIterator[Readiness]:
    """The readiness of a process serving ``registries``' agencies; their monitors run.

    ``stores`` are the agencies' outbox stores, which the process already holds open for
    its relays (the monitors read them; they are not opened a second time here).
    """
    readiness = Readiness()
    trust = rt.trust()
    police = [agency for agency in registries if trust.party(agency).kind == "police"]
    calendar = CalendarSettings().calendar() if police else None
    async with contextlib.AsyncExitStack() as stack:
        readiness.add("broker", await stack.enter_async_context(broker_probe(rt.kafka)))
        for agency, registry in registries.items():
            monitors = producer_monitors(
                store=stores[agency],
                agency=agency,
                registry=registry,
                readiness=readiness,
                contract=rt.contract(),
                calendar=calendar if agency in police else None,
            )
            await stack.enter_async_context(monitors)
        yield readiness
