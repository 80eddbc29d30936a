"""Services of the exchange as real processes (``python -m safeguard.cli ...``) beside an
in-process :class:`~tests.integration.harness.Exchange`: started, probed over HTTP, and
stopped with SIGTERM, killed with SIGKILL, or paused with SIGSTOP and resumed; and the
steady stream of notifications they are tested under, with its exactly-once check."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from safeguard import samples
from safeguard.parties import LA, SCHOOL
from safeguard.runtime import publisher
from sgx.domain.identifiers import make_nhs_number
from sgx.kafka.embedded import free_port
from sgx.wire import contract as c
from tests.integration.harness import Exchange, eventually

EXIT_LIMIT_S = 30.0


@dataclass
class Service:
    process: asyncio.subprocess.Process
    metrics_port: int

    async def get(self, path: str) -> httpx.Response:
        async with httpx.AsyncClient(timeout=5) as client:
            return await client.get(f"http://127.0.0.1:{self.metrics_port}{path}")

    async def ready(self) -> bool:
        try:
            return (await self.get("/readyz")).status_code == 200
        except httpx.TransportError:
            return False

    async def terminate(self) -> int:
        """SIGTERM, and the exit status once the process has shut down."""
        self.process.send_signal(signal.SIGTERM)
        return await asyncio.wait_for(self.process.wait(), EXIT_LIMIT_S)

    async def kill(self) -> None:
        """SIGKILL: no batch finished, nothing committed or closed."""
        self.process.kill()
        await self.process.wait()

    def pause(self) -> None:
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.process.send_signal(signal.SIGCONT)

    async def metric(self, name: str, **labels: str) -> float:
        """The sum of the samples of ``name`` (with ``labels``) this process exports now."""
        text = (await self.get("/metrics")).text
        return sum(
            sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())
        )


def store_env(ex: Exchange) -> dict[str, str]:
    """The exchange's PostgreSQL store for a child process (none: SQLite in the home)."""
    if ex.rt.dsn is None:
        return {}
    return {"SGX_STORE_DSN": ex.rt.dsn, "SGX_STORE_PG_SCHEMA": ex.rt.store.pg_schema or ""}


@asynccontextmanager
async def service(
    ex: Exchange, *command: str, env: dict[str, str] | None = None
) -> AsyncIterator[Service]:
    port = free_port()
    env = {
        **os.environ,
        **ex.kafka_env(),
        "SGX_METRICS_PORT": str(port),
        "SGX_MONITOR_INTERVAL_S": "0.5",
        **store_env(ex),
        **(env or {}),
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "safeguard.cli", *command, "--home", str(ex.rt.exchange.home),
        env=env,
    )  # fmt: skip
    running = Service(process, port)
    try:
        await eventually(running.ready, f"{' '.join(command)} to be ready", timeout=60)
        yield running
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


# --- a steady stream ------------------------------------------------------------------


def allocated_children(
    first_seed: int, count: int = 20
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """``count`` children and the AllocationUpdate allocating them in LA (four workers)."""
    children = [samples.child(make_nhs_number(first_seed + i)) for i in range(count)]
    update = samples.allocation_update(
        [(ch["nhs_number"], None, f"sw-{i % 4}", "Team", "tm-1") for i, ch in enumerate(children)]
    )
    return children, update


async def publish_until(
    ex: Exchange, children: list[dict[str, Any]], stop: asyncio.Event, pause: float = 0.02
) -> list[str]:
    """Attendance updates about ``children``, 5 at a time, until ``stop``; their ids."""
    sent: list[str] = []
    async with publisher(ex.rt, SCHOOL) as school:
        while not stop.is_set():
            batch = [
                samples.attendance_update(children[(len(sent) + i) % len(children)])
                for i in range(5)
            ]
            await school.publish_many([(c.ATTENDANCE_UPDATE, r) for r in batch])
            sent += [str(r["notification_id"]) for r in batch]
            await asyncio.sleep(pause)
    return sent


async def assert_once_per_recipient(ex: Exchange, sent: list[str]) -> None:
    """Every notification ``sent`` in LA's queue exactly once for each of its two
    recipients (the allocated worker and the supervisor), and nothing else."""
    async with await ex.rt.queue_store(LA) as store:
        per_delivery = await store.rows_per_notification()
    assert set(per_delivery.values()) == {1}
    assert {n for n, _ in per_delivery} == set(sent)
    assert len(per_delivery) == 2 * len(sent)
