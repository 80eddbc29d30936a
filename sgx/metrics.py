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

Labels take values only from small closed sets: a notification type name, an
outcome, a reason code, an urgency. A label never carries a child identifier, a
pseudonym, a message id, a name or any other personal data: label values are
exported in clear to whoever scrapes ``/metrics`` and each distinct value creates a
new time series.

:class:`MetricsServer` serves ``/metrics`` (the text exposition of one registry) and
``/healthz`` from the running event loop (starlette on uvicorn).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Iterator

import uvicorn
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from sgx.errors import ConfigError

# authored → queued: from 5 ms (same-host pipeline) up to an hour (a backlog drained late).
LATENCY_BUCKETS = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
    10.0, 30.0, 60.0, 300.0, 900.0, 1800.0, 3600.0,
)  # fmt: skip
START_LIMIT_S = 10.0
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
            "Audited gateway decisions, by reason.",
            ["reason"],
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


class _QuietServer(uvicorn.Server):
    """A uvicorn server that leaves the process's signal handlers to the application."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def metrics_app(registry: CollectorRegistry) -> Starlette:
    """The ASGI app serving ``/metrics`` from ``registry`` and ``/healthz``."""

    async def metrics(_: Request) -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    async def healthz(_: Request) -> Response:
        return PlainTextResponse("ok\n")

    return Starlette(routes=[Route("/metrics", metrics), Route("/healthz", healthz)])


def _bind(host: str, port: int) -> socket.socket:
    try:
        sock = socket.create_server((host, port), reuse_port=False)
    except OSError as exc:
        raise ConfigError(f"cannot serve metrics on {host}:{port}: {exc}") from exc
    sock.setblocking(False)
    return sock


async def _until_started(server: uvicorn.Server, task: asyncio.Task[None]) -> None:
    while not server.started:
        if task.done():
            task.result()  # raises what stopped it
            raise RuntimeError("metrics server stopped while starting")
        await asyncio.sleep(0.01)


class MetricsServer:
    """Serves one registry over HTTP as a task of the running event loop.

    Port 0 binds a free port; :attr:`port` then tells which.
    """

    def __init__(self, registry: CollectorRegistry, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self._requested_port = port
        self._app = metrics_app(registry)
        self._socket: socket.socket | None = None
        self._port: int | None = None
        self._server: _QuietServer | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def port(self) -> int:
        """The bound TCP port (known once started)."""
        if self._port is None:
            raise RuntimeError("MetricsServer is not started")
        return self._port

    async def start(self) -> None:
        """Bind the port and serve; return once the server accepts connections."""
        self._socket = _bind(self.host, self._requested_port)
        self._port = self._socket.getsockname()[1]
        config = uvicorn.Config(
            self._app, host=self.host, port=self.port, log_level="warning", lifespan="off"
        )
        self._server = _QuietServer(config)
        self._task = asyncio.create_task(self._server.serve(sockets=[self._socket]))
        async with asyncio.timeout(START_LIMIT_S):
            await _until_started(self._server, self._task)

    async def stop(self) -> None:
        """Stop serving and wait for the server task to finish."""
        server, task, self._server, self._task = self._server, self._task, None, None
        if server is not None and task is not None:
            server.should_exit = True
            await task
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    async def __aenter__(self) -> MetricsServer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()
