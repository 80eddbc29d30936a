"""Serving a service over HTTP: ``/metrics``, ``/healthz``, ``/readyz``, or any ASGI app.

:class:`MetricsServer` serves ``/metrics`` (the text exposition of one registry),
``/healthz`` (the process is alive: always 200) and ``/readyz`` from the running event
loop (starlette on uvicorn). ``/readyz`` runs the checks a service registered with its
:class:`Readiness` (:func:`broker_check`, :func:`database_check`): 200 with
``{"ready": true, ...}`` when all pass, else 503 with ``{"ready": false, "reason": ...}``
naming the first that failed.

:class:`HttpServer` serves any ASGI app the same way (the inbox's pages and API).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Self

import uvicorn
from aiokafka import AIOKafkaConsumer
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp

from sgx.errors import ConfigError
from sgx.kafka.wiring import kafka_errors, start_consumer
from sgx.settings import KafkaSettings
from sgx.store.db import store_errors

START_LIMIT_S = 10.0

# --- readiness ----------------------------------------------------------------------------

Check = Callable[[], Awaitable[None]]
CHECK_LIMIT_S = 3.0


class Readiness:
    """The checks ``/readyz`` runs: each raises when its dependency cannot be used.

    A service registers one check per dependency (the broker, its database); with no
    check registered the service is ready as soon as it serves.
    """

    def __init__(self, limit: float = CHECK_LIMIT_S) -> None:
        self._checks: dict[str, Check] = {}
        self._limit = limit

    def add(self, name: str, check: Check) -> None:
        """Register ``check`` under ``name`` (replacing one of the same name)."""
        self._checks[name] = check

    async def probe(self) -> dict[str, str]:
        """Every check's result: ``"ok"`` or why it failed (checks run concurrently)."""
        names = list(self._checks)
        results = await asyncio.gather(*(self._run(self._checks[n]) for n in names))
        return dict(zip(names, results, strict=True))

    async def _run(self, check: Check) -> str:
        try:
            async with asyncio.timeout(self._limit):
                await check()
        except TimeoutError:
            return f"no answer within {self._limit:g}s"
        except Exception as exc:  # any failure means not ready; say what it was
            return f"{type(exc).__name__}: {exc}"[:300]
        return "ok"


def broker_check(consumer: AIOKafkaConsumer) -> Check:
    """Ready when the broker answers a metadata request on ``consumer``'s connections."""

    async def check() -> None:
        async with kafka_errors("ask the broker for metadata"):
            await consumer.topics()

    return check


@contextlib.asynccontextmanager
async def broker_probe(settings: KafkaSettings) -> AsyncIterator[Check]:
    """A broker check for a service whose own Kafka clients are out of reach.

    Starts a consumer with no group and no subscription (it only asks for metadata),
    stopped on exit. Raises TransportError if the broker cannot be reached at start.
    """
    consumer = await start_consumer(settings, [], group_id=None)
    try:
        yield broker_check(consumer)
    finally:
        await consumer.stop()


def database_check(engine: AsyncEngine) -> Check:
    """Ready when the database answers ``SELECT 1``."""

    async def check() -> None:
        with store_errors("reach the database"):
            async with engine.connect() as conn:
                await conn.execute(text("SELECT 1"))

    return check


class _QuietServer(uvicorn.Server):
    """A uvicorn server that leaves the process's signal handlers to the application."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def metrics_app(registry: CollectorRegistry, readiness: Readiness | None = None) -> Starlette:
    """The ASGI app serving ``/metrics`` from ``registry``, ``/healthz`` and ``/readyz``."""
    checks = readiness or Readiness()

    async def metrics(_: Request) -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    async def healthz(_: Request) -> Response:
        return PlainTextResponse("ok\n")

    async def readyz(_: Request) -> Response:
        results = await checks.probe()
        failed = [f"{name}: {result}" for name, result in results.items() if result != "ok"]
        if failed:
            body = {"ready": False, "reason": failed[0], "checks": results}
            return JSONResponse(body, status_code=503)
        return JSONResponse({"ready": True, "checks": results})

    routes = [Route("/metrics", metrics), Route("/healthz", healthz), Route("/readyz", readyz)]
    return Starlette(routes=routes)


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


class HttpServer:
    """Serves one ASGI app over HTTP as a task of the running event loop.

    Port 0 binds a free port; :attr:`port` then tells which.
    """

    def __init__(self, app: ASGIApp, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self._requested_port = port
        self._app = app
        self._socket: socket.socket | None = None
        self._port: int | None = None
        self._server: _QuietServer | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def port(self) -> int:
        """The bound TCP port (known once started)."""
        if self._port is None:
            raise RuntimeError(f"{type(self).__name__} is not started")
        return self._port

    @property
    def task(self) -> asyncio.Task[None] | None:
        """The serving task (done if the server stopped by itself)."""
        return self._task

    async def start(self) -> None:
        """Bind the port and serve; return once the server accepts connections."""
        self._socket = _bind(self.host, self._requested_port)
        self._port = self._socket.getsockname()[1]
        config = uvicorn.Config(
            self._app, host=self.host, port=self.port, log_level="warning", lifespan="off",
            access_log=False,
        )  # fmt: skip
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

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()


class MetricsServer(HttpServer):
    """Serves ``/metrics`` from one registry, with ``/healthz`` and ``/readyz``."""

    def __init__(
        self,
        registry: CollectorRegistry,
        host: str = "127.0.0.1",
        port: int = 0,
        readiness: Readiness | None = None,
    ) -> None:
        self.readiness = readiness or Readiness()
        super().__init__(metrics_app(registry, self.readiness), host, port)
