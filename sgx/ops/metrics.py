"""Every Prometheus metric of the exchange, defined here and nowhere else.

Each role builds its metrics from a factory class given a ``CollectorRegistry``; the
global registry is never used, so tests read a private registry and several roles can
run in one process (the demo) without clashing::

    sgx_producer_notifications_total{type,outcome}     ProducerMetrics.notifications
    sgx_producer_outbox_depth                          ProducerMetrics.outbox_depth
    sgx_producer_outbox_oldest_age_seconds             ProducerMetrics.outbox_oldest_age
    sgx_gateway_notifications_total{type,outcome}      GatewayMetrics.notifications
    sgx_gateway_decisions_total{reason}                GatewayMetrics.decisions
    sgx_gateway_quarantined_total{reason}              GatewayMetrics.quarantined
    sgx_gateway_batch_seconds                          GatewayMetrics.batch_seconds
    sgx_gateway_allocations                            GatewayMetrics.allocations
    sgx_consumer_notifications_total{type,outcome}     ConsumerMetrics.notifications
    sgx_consumer_quarantined_total{reason}             ConsumerMetrics.quarantined
    sgx_end_to_end_latency_seconds{type,urgency}       ConsumerMetrics.latency
    sgx_consumer_queued                                ConsumerMetrics.queued
    sgx_consumer_lag{topic,partition}                  LagMetrics.lag
    sgx_queue_depth{team}                              QueueMetrics.depth
    sgx_queue_oldest_unread_age_seconds{team}          QueueMetrics.oldest_unread_age
    sgx_urgent_unread{team}                            QueueMetrics.urgent_unread
    sgx_consumer_quarantine_size                       QueueMetrics.quarantine_size
    sgx_inbox_family_decisions_total{outcome}          FamilyMetrics.decisions
    sgx_family_decisions_outstanding{team}             FamilyMetrics.outstanding
    sgx_family_decisions_overdue{team}                 FamilyMetrics.overdue
    sgx_gateway_quarantine_size                        GatewayStateMetrics.quarantine_size
    sgx_audit_chain_head{chain}                        GatewayStateMetrics.audit_chain_head
    sgx_key_expiry_timestamp_seconds{party,kid}        GatewayStateMetrics.key_expiry
    sgx_disclosure_requests_open{due}                  GatewayStateMetrics.disclosure_requests
    sgx_encompass_undelivered_before_school_day        EncompassMetrics.undelivered
    sgx_encompass_seconds_to_school_day                EncompassMetrics.seconds_to_school_day

The gauges of state (lag, queues, quarantine sizes, deadlines) are refreshed from the
stores every few seconds by each role's monitor (``consumers/monitor.py``,
``gateway/monitor.py``, ``producers/monitor.py``), run with :func:`refreshing`.

Labels take values only from small closed sets: a notification type name, an
outcome, a reason code, an urgency. A label never carries a child identifier, a
pseudonym, a message id, a name or any other personal data: label values are
exported in clear to whoever scrapes ``/metrics`` and each distinct value creates a
new time series.

Serving them (``/metrics``, ``/healthz``, ``/readyz``) is :mod:`sgx.ops.serving`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping

from aiokafka import AIOKafkaConsumer
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
)
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from sgx.errors import ExchangeError
from sgx.kafka.wiring import committed_offsets, kafka_errors

log = logging.getLogger(__name__)

# No ``<name>_created`` series beside each counter and histogram child: nothing here reads
# them, and they doubled what a scrape writes. A series per party (25,000 agencies'
# ``sgx_gateway_child_identifiers_total``) cost 305 ms of CPU a scrape with them, 138 without.
disable_created_metrics()  # type: ignore[no-untyped-call]

# authored → queued: from 5 ms (same-host pipeline) up to an hour (a backlog drained late).
LATENCY_BUCKETS = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
    10.0, 30.0, 60.0, 300.0, 900.0, 1800.0, 3600.0,
)  # fmt: skip
BATCH_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class ProducerMetrics:
    """Metrics of an agency's producer."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.notifications = Counter(
            "sgx_producer_notifications",
            "Notifications handled by the producer, by type and outcome.",
            ["type", "outcome"],
            registry=registry,
        )
        self.outbox_depth = Gauge(
            "sgx_producer_outbox_depth",
            "Outbox entries the broker has not acknowledged yet.",
            registry=registry,
        )
        self.outbox_oldest_age = Gauge(
            "sgx_producer_outbox_oldest_age_seconds",
            "Age of the oldest outbox entry the broker has not acknowledged (0 when none).",
            registry=registry,
        )


class TrustMetrics:
    """How a service keeps up with the trust directory (sgx.ops.trust_reload)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.reloads = Counter(
            "sgx_trust_reloads",
            "Trust-directory changes picked up while running, by outcome (ok, failed).",
            ["outcome"],
            registry=registry,
        )
        self.loaded = Gauge(
            "sgx_trust_loaded_timestamp_seconds",
            "When the trust directory in use was loaded (Unix time).",
            registry=registry,
        )


class GatewayMetrics:
    """Metrics of the gateway."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.notifications = Counter(
            "sgx_gateway_notifications",
            "Notifications processed by the gateway, by type and outcome.",
            ["type", "outcome"],
            registry=registry,
        )
        self.decisions = Counter(
            "sgx_gateway_decisions",
            "Audited gateway decisions, by reason and the local authority they concern.",
            ["reason", "la"],
            registry=registry,
        )
        self.quarantined = Counter(
            "sgx_gateway_quarantined",
            "Envelopes or records the gateway quarantined, by reason.",
            ["reason"],
            registry=registry,
        )
        self.batch_seconds = Histogram(
            "sgx_gateway_batch_seconds",
            "Time the gateway takes to process one fetched batch.",
            buckets=BATCH_BUCKETS,
            registry=registry,
        )
        self.allocations = Gauge(
            "sgx_gateway_allocations",
            "Children with a known allocation held by the gateway.",
            registry=registry,
        )
        self.rebalances = Counter(
            "sgx_gateway_rebalances",
            "Consumer-group rebalances this instance took part in, by event.",
            ["event"],
            registry=registry,
        )
        self.group_partitions = Gauge(
            "sgx_gateway_group_partitions",
            "Partitions the gateway group shares out (inbound and allocation topics).",
            registry=registry,
        )
        self.assigned = Gauge(
            "sgx_gateway_assigned_partitions",
            "Inbound and allocation partitions the group assigns this instance now.",
            registry=registry,
        )
        self.fenced = Counter(
            "sgx_gateway_fenced_batches",
            "Batches abandoned because another instance had taken their audit chain over.",
            registry=registry,
        )
        self.allocation_records = Counter(
            "sgx_gateway_allocation_records",
            "Allocation records this instance applied to its directory.",
            registry=registry,
        )
        self.open_case_lists = Counter(
            "sgx_gateway_open_case_lists",
            "Open-case lists sent to schools (one each per round of an LA's schools).",
            registry=registry,
        )
        self.open_cases_waiting = Gauge(
            "sgx_gateway_open_case_las_waiting",
            "LAs whose schools' lists wait for the rest of the LA's backlog of allocation "
            "updates (their allocation partitions are not committed meanwhile).",
            registry=registry,
        )
        self.identifiers = Counter(
            "sgx_gateway_child_identifiers",
            "Notifications by sender and how they identify the child: nhs_number, upn_only, "
            "or the reason none is given.",
            ["party", "identifier"],
            registry=registry,
        )
        self.nhs_number_target = Gauge(
            "sgx_gateway_nhs_number_target_ratio",
            "The share of a sender's notifications that should carry an NHS number "
            "(SGX_NHS_NUMBER_TARGET; CP-IS gates an LA at 0.95): the alert's threshold.",
            registry=registry,
        )


class ConsumerMetrics:
    """Metrics of a local authority's consumer."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.notifications = Counter(
            "sgx_consumer_notifications",
            "Deliveries handled by the consumer, by notification type and outcome.",
            ["type", "outcome"],
            registry=registry,
        )
        self.quarantined = Counter(
            "sgx_consumer_quarantined",
            "Records the consumer quarantined, by reason.",
            ["reason"],
            registry=registry,
        )
        self.latency = Histogram(
            "sgx_end_to_end_latency_seconds",
            "Seconds from a notification's authoring to its row in the recipient queue.",
            ["type", "urgency"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.queued = Gauge(
            "sgx_consumer_queued",
            "Deliveries waiting in the recipient queue.",
            registry=registry,
        )


class LagMetrics:
    """Consumer lag of a role's consumer group (the gateway's or a consumer's)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.lag = Gauge(
            "sgx_consumer_lag",
            "Records behind on a partition: fetch high-watermark minus committed offset.",
            ["topic", "partition"],
            registry=registry,
        )


class QueueMetrics:
    """The state of a receiving party's queues, per team (never per worker)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.depth = Gauge(
            "sgx_queue_depth",
            "Unread items in the queues of a team.",
            ["team"],
            registry=registry,
        )
        self.oldest_unread_age = Gauge(
            "sgx_queue_oldest_unread_age_seconds",
            "Age of the oldest unread item in a team's queues (0 when none).",
            ["team"],
            registry=registry,
        )
        self.urgent_unread = Gauge(
            "sgx_urgent_unread",
            "Urgent items of a team unread for longer than the configured time.",
            ["team"],
            registry=registry,
        )
        self.quarantine_size = Gauge(
            "sgx_consumer_quarantine_size",
            "Records now held in the consumer's quarantine.",
            registry=registry,
        )


class FamilyMetrics:
    """Families informed, in an LA's inbox: the decisions recorded, and the disclosures
    still waiting for one, per team (never per worker)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.decisions = Counter(
            "sgx_inbox_family_decisions",
            "Family-informed decisions recorded: informed, or exception (not told).",
            ["outcome"],
            registry=registry,
        )
        self.outstanding = Gauge(
            "sgx_family_decisions_outstanding",
            "Disclosures made (shares allowed, network checks sent) with no family-informed"
            " decision recorded, by the team of the queue row they came from.",
            ["team"],
            registry=registry,
        )
        self.overdue = Gauge(
            "sgx_family_decisions_overdue",
            "Of those, the ones outstanding longer than the working days allowed"
            " (SGX_INBOX_FAMILY_DECISION_WORKING_DAYS).",
            ["team"],
            registry=registry,
        )


class GatewayStateMetrics:
    """The gateway's stores and trust directory, the disclosure deadlines it tracks and the
    consent requests awaiting their authors."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.quarantine_size = Gauge(
            "sgx_gateway_quarantine_size",
            "Records now held in the gateway's quarantine.",
            registry=registry,
        )
        self.audit_chain_head = Gauge(
            "sgx_audit_chain_head",
            "Sequence number of the newest audit record of each chain (one per partition read).",
            ["chain"],
            registry=registry,
        )
        self.key_expiry = Gauge(
            "sgx_key_expiry_timestamp_seconds",
            "Unix time at which a party's current key of the trust directory expires.",
            ["party", "kid"],
            registry=registry,
        )
        self.disclosure_requests = Gauge(
            "sgx_disclosure_requests_open",
            "Open 2013/2024 Protocol disclosure requests, by time left to their 14-day deadline.",
            ["due"],
            registry=registry,
        )
        self.consents_awaiting = Gauge(
            "sgx_consent_requests_awaiting",
            "Consent requests forwarded to an author (party) and not yet answered.",
            ["party"],
            registry=registry,
        )
        self.consent_oldest_age = Gauge(
            "sgx_consent_request_oldest_age_seconds",
            "Age of the oldest consent request an author (party) has not answered.",
            ["party"],
            registry=registry,
        )
        self.referrals_overdue = Gauge(
            "sgx_referrals_overdue",
            "Referrals an LA has not acknowledged (stage=acknowledgement), or not decided"
            " (stage=decision), by the deadline its agreement sets in working days.",
            ["la", "stage"],
            registry=registry,
        )


class EncompassMetrics:
    """Operation Encompass: notifications the school must have before the next school day."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.undelivered = Gauge(
            "sgx_encompass_undelivered_before_school_day",
            "Operation Encompass notifications with no DELIVERED receipt whose next school "
            "day starts within the alert window (or has started).",
            registry=registry,
        )
        self.seconds_to_school_day = Gauge(
            "sgx_encompass_seconds_to_school_day",
            "Seconds until the next school day begins.",
            registry=registry,
        )


def set_labelled(
    gauge: Gauge, values: Mapping[tuple[str, ...], float], shown: set[tuple[str, ...]]
) -> None:
    """Set a labelled gauge to ``values``; series in ``shown`` but not in ``values`` go.

    ``shown`` is the caller's record of the label values it exported last time.
    """
    for labels in shown - values.keys():
        with contextlib.suppress(KeyError):
            gauge.remove(*labels)
    for labels, value in values.items():
        gauge.labels(*labels).set(value)
    shown.clear()
    shown.update(values.keys())


class LagMonitor:
    """Refreshes ``sgx_consumer_lag`` for the partitions assigned to ``consumer``.

    Lag is the fetch high-watermark (``consumer.highwater``, from the last fetch response;
    the embedded broker's ``end_offsets`` answer is wrong) minus the group's committed
    offset (0 when the group has committed nothing on the partition), every partition's
    read in one request. A partition not yet fetched from has no high-watermark and is
    not shown; a partition that is no longer assigned (a rebalance) is removed.
    """

    def __init__(self, consumer: AIOKafkaConsumer, metrics: LagMetrics) -> None:
        self._consumer = consumer
        self._gauge = metrics.lag
        self._shown: set[tuple[str, ...]] = set()

    async def refresh(self) -> None:
        consumer = self._consumer
        highwaters = {
            tp: highwater
            for tp in consumer.assignment()
            if (highwater := consumer.highwater(tp)) is not None
        }
        async with kafka_errors("read committed offsets"):
            committed = await committed_offsets(consumer, highwaters)
        assigned = consumer.assignment()  # revoked while the offsets were read: gone
        values: dict[tuple[str, ...], float] = {
            (tp.topic, str(tp.partition)): max(highwater - committed.get(tp, 0), 0)
            for tp, highwater in highwaters.items()
            if tp in assigned
        }
        set_labelled(self._gauge, values, self._shown)


# --- refreshing gauges --------------------------------------------------------------------

Refresh = Callable[[], Awaitable[None]]
REFRESH_INTERVAL_S = 5.0


class MonitorSettings(BaseSettings):
    """How the monitors refresh and what they count as late (``SGX_MONITOR_*``)."""

    model_config = SettingsConfigDict(env_prefix="SGX_MONITOR_", extra="forbid")

    interval_s: float = Field(default=REFRESH_INTERVAL_S, gt=0)  # refresh every ... seconds
    urgent_after_s: float = Field(default=3600.0, ge=0)  # urgent items unread longer: counted
    # Operation Encompass: count undelivered notifications once their school day starts
    # within this many seconds (and after it has started).
    encompass_window_s: float = Field(default=12 * 3600.0, ge=0)


async def _refresh_forever(name: str, refresh: Refresh, interval: float) -> None:
    while True:
        limit = max(interval, 5.0)
        try:
            async with asyncio.timeout(limit):
                await refresh()
        except Exception as exc:  # a failed refresh leaves the gauges as they were
            if isinstance(exc, TimeoutError):
                log.warning("monitor %s: no answer within %gs; gauges unchanged", name, limit)
            elif isinstance(exc, ExchangeError):
                log.warning("monitor %s: %s", name, exc)
            else:
                log.exception("monitor %s failed", name)
        await asyncio.sleep(interval)


@contextlib.asynccontextmanager
async def refreshing(
    name: str, refresh: Refresh, interval: float = REFRESH_INTERVAL_S
) -> AsyncIterator[None]:
    """Run ``refresh`` now and every ``interval`` seconds as a task while the block runs.

    A refresh that fails (a store or the broker away) is logged and tried again at the
    next interval; the task is cancelled on exit.
    """
    task = asyncio.create_task(_refresh_forever(name, refresh, interval), name=f"monitor:{name}")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
