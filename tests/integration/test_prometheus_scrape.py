"""A real Prometheus server scrapes a running gateway and consumer.

Prometheus is the Debian package's ``/usr/bin/prometheus`` (``scripts/ensure-tools.sh``
installs it); without it this test fails, it never skips. The server gets a generated
configuration: a one-second scrape interval, the two services as targets, and the
exchange's alert rules (``deploy/prometheus/rules/``), which it must load.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from safeguard import samples
from safeguard.parties import SCHOOL
from sgx.domain.identifiers import make_nhs_number, make_upn
from sgx.kafka.embedded import free_port
from sgx.settings import REPO_ROOT
from sgx.wire import contract as c
from tests.integration.harness import running_exchange

pytestmark = pytest.mark.broker

RULES = REPO_ROOT / "deploy" / "prometheus" / "rules" / "exchange.rules.yml"
CHILD = samples.child(make_nhs_number(61), make_upn(61), given="Scrapey", family="Targetson")
ALLOCATE = samples.allocation_update(
    [(CHILD["nhs_number"], CHILD["upn"], "sw-amara", "Assessment Team 1", "tm-jones")]
)
WAIT_S = 60.0


def prometheus_binary() -> str:
    found = shutil.which("prometheus") or shutil.which("/usr/bin/prometheus")
    if found is None:
        pytest.fail("prometheus is not installed: run scripts/ensure-tools.sh (Debian prometheus)")
    return found


def write_config(path: Path, targets: dict[str, int]) -> Path:
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(RULES)],
        "scrape_configs": [
            {"job_name": job, "static_configs": [{"targets": [f"127.0.0.1:{port}"]}]}
            for job, port in targets.items()
        ],
    }
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


@asynccontextmanager
async def prometheus(tmp_path: Path, config: Path) -> AsyncIterator[httpx.AsyncClient]:
    port = free_port()
    log = (tmp_path / "prometheus.log").open("wb")
    process = await asyncio.create_subprocess_exec(
        prometheus_binary(),
        f"--config.file={config}",
        f"--storage.tsdb.path={tmp_path / 'tsdb'}",
        f"--web.listen-address=127.0.0.1:{port}",
        stdout=log,
        stderr=log,
    )
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
            yield client
    finally:
        if process.returncode is None:
            process.terminate()
            await asyncio.wait_for(process.wait(), 30)
        log.close()


async def query(client: httpx.AsyncClient, promql: str) -> list[dict[str, Any]]:
    """The instant vector ``promql`` gives now; empty while Prometheus is not up yet."""
    try:
        answer = await client.get("/api/v1/query", params={"query": promql})
    except httpx.TransportError:
        return []
    if answer.status_code != 200:
        return []
    result: list[dict[str, Any]] = answer.json()["data"]["result"]
    return result


async def scraped(client: httpx.AsyncClient, promql: str) -> list[dict[str, Any]]:
    deadline = time.monotonic() + WAIT_S
    while not (result := await query(client, promql)):
        if time.monotonic() > deadline:
            raise AssertionError(f"Prometheus has no {promql} after {WAIT_S:g}s")
        await asyncio.sleep(0.5)
    return result


async def test_a_real_prometheus_scrapes_the_gateway_and_the_consumer(tmp_path: Path) -> None:
    binary = prometheus_binary()
    gateway_port, consumer_port = free_port(), free_port()
    ports = (gateway_port, consumer_port)
    async with running_exchange(tmp_path / "exchange", metrics_ports=ports) as ex:
        await ex.allocate(ALLOCATE)
        await ex.publish(SCHOOL, c.ATTENDANCE_UPDATE, samples.attendance_update(CHILD))
        await ex.wait_rows(2)

        targets = {"sgx-gateway": gateway_port, "sgx-consumer": consumer_port}
        config = write_config(tmp_path / "prometheus.yml", targets)
        async with prometheus(tmp_path, config) as client:
            delivered = await scraped(
                client, 'sgx_gateway_notifications_total{outcome="delivered"} > 0'
            )
            assert delivered[0]["metric"]["job"] == "sgx-gateway"
            assert delivered[0]["metric"]["type"] == "attendance_update"
            assert delivered[0]["value"][1] == "1"

            depth = await scraped(client, 'sgx_queue_depth{team="Assessment Team 1"} > 0')
            assert depth[0]["metric"]["job"] == "sgx-consumer"
            assert depth[0]["value"][1] == "2"  # the worker's and the supervisor's item

            up = await scraped(client, "up == 1")
            assert {r["metric"]["job"] for r in up} == set(targets), f"{binary}: {up}"
            held = await scraped(client, "sgx_gateway_allocations > 0")
            assert held[0]["value"][1] == "2"  # the child by NHS number and by UPN
            owned = await scraped(client, "sgx_gateway_group_partitions > 0")
            assert owned[0]["metric"]["job"] == "sgx-gateway"
            lag = await scraped(client, "sgx_consumer_lag")
            assert {r["metric"]["job"] for r in lag} == set(targets)

            rules = (await client.get("/api/v1/rules")).json()["data"]["groups"]
            # every group of the rules file loaded (read from the file: a group added
            # there, such as sgx-families or sgx-network-checks, is checked too)
            written = {g["name"] for g in yaml.safe_load(RULES.read_text())["groups"]}
            assert {"sgx-availability", "sgx-flow", "sgx-edge"} <= written
            assert {group["name"] for group in rules} == written
            text = (await client.get("/api/v1/label/__name__/values")).text
            assert CHILD["nhs_number"] not in text
