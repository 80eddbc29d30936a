"""Metrics live on a private registry and are served over HTTP."""

from __future__ import annotations

import httpx
import pytest
from prometheus_client import REGISTRY, CollectorRegistry

from sgx.ops.metrics import ConsumerMetrics, GatewayMetrics, ProducerMetrics
from sgx.ops.serving import MetricsServer


def test_every_metric_registers_on_a_private_registry() -> None:
    registry = CollectorRegistry()
    producer, gateway, consumer = (
        ProducerMetrics(registry),
        GatewayMetrics(registry),
        ConsumerMetrics(registry),
    )
    producer.notifications.labels(type="AttendanceUpdate", outcome="sent").inc()
    gateway.decisions.labels(reason="delivered", la="la-camden").inc(2)
    gateway.decisions.labels(reason="delivered", la="la-islington").inc()
    gateway.allocations.set(5)
    gateway.batch_seconds.observe(0.01)
    consumer.latency.labels(type="HealthUpdate", urgency="urgent").observe(0.2)
    consumer.queued.set(3)
    sample = registry.get_sample_value
    assert (
        sample("sgx_producer_notifications_total", {"type": "AttendanceUpdate", "outcome": "sent"})
        == 1
    )
    assert sample("sgx_gateway_decisions_total", {"reason": "delivered", "la": "la-camden"}) == 2
    assert sample("sgx_gateway_decisions_total", {"reason": "delivered", "la": "la-islington"}) == 1
    with pytest.raises(ValueError, match="label"):
        gateway.decisions.labels(reason="delivered")  # every decision is counted per LA
    assert sample("sgx_gateway_allocations") == 5
    assert sample("sgx_gateway_batch_seconds_count") == 1
    assert (
        sample(
            "sgx_end_to_end_latency_seconds_count", {"type": "HealthUpdate", "urgency": "urgent"}
        )
        == 1
    )
    assert sample("sgx_consumer_queued") == 3
    assert REGISTRY.get_sample_value("sgx_gateway_allocations") is None


def test_two_roles_can_share_a_process() -> None:
    first, second = CollectorRegistry(), CollectorRegistry()
    GatewayMetrics(first)
    GatewayMetrics(second)
    with pytest.raises(ValueError, match="Duplicated"):
        GatewayMetrics(first)


def test_latency_buckets_span_five_ms_to_an_hour() -> None:
    registry = CollectorRegistry()
    ConsumerMetrics(registry).latency.labels(type="t", urgency="u").observe(1)
    buckets = [
        s.labels["le"]
        for m in registry.collect()
        for s in m.samples
        if s.name == "sgx_end_to_end_latency_seconds_bucket"
    ]
    assert buckets[0] == "0.005"
    assert buckets[-2:] == ["3600.0", "+Inf"]


async def test_metrics_server_serves_the_registry_and_health() -> None:
    registry = CollectorRegistry()
    ConsumerMetrics(registry).notifications.labels(
        type="PoliceNotification", outcome="queued"
    ).inc()
    server = MetricsServer(registry)
    await server.start()
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as client:
            metrics, health = await client.get("/metrics"), await client.get("/healthz")
    finally:
        await server.stop()
    assert metrics.status_code == 200
    assert (
        'sgx_consumer_notifications_total{outcome="queued",type="PoliceNotification"} 1.0'
        in metrics.text
    )
    assert health.status_code == 200
    assert health.text == "ok\n"


async def test_metrics_server_stops_listening() -> None:
    async with MetricsServer(CollectorRegistry()) as server:
        port = server.port
        assert port > 0
    async with httpx.AsyncClient() as client:
        with pytest.raises(httpx.ConnectError):
            await client.get(f"http://127.0.0.1:{port}/healthz")


def test_counters_export_no_created_series() -> None:
    """A counter child is one series (``_total``), not two: per-party counters are written
    at every scrape, and their ``_created`` twins doubled it."""
    registry = CollectorRegistry()
    metrics = GatewayMetrics(registry)
    metrics.identifiers.labels(party="school-a", identifier="nhs_number").inc()
    metrics.batch_seconds.observe(0.01)
    names = {s.name for family in registry.collect() for s in family.samples}
    assert "sgx_gateway_child_identifiers_total" in names
    assert not [name for name in names if name.endswith("_created")]
