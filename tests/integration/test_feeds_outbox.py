"""The agency feeds' commands go through the producer outbox, end to end on a real broker.

``safeguard producer school ingest``, ``producer health ingest`` and ``producer police
encompass|disclosure`` keep what they read in the agency's outbox, then relay it; the
entries show in ``safeguard producer receipts`` and become DELIVERED once the gateway's
receipts are recorded (here by ``safeguard producer relay`` running as its own process).
With the broker unreachable an ingest keeps everything, says so, and the next one sends it.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner, Result

from safeguard import samples
from safeguard.cli import main as safeguard
from safeguard.parties import HEALTH, LA, POLICE, SCHOOL
from sgx.domain.identifiers import make_nhs_number, make_upn
from sgx.kafka.embedded import free_port
from tests.integration.harness import Exchange, eventually, kafka_env, running_exchange

pytestmark = pytest.mark.broker

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
PUPILS = [(make_nhs_number(11), make_upn(11)), (make_nhs_number(33), make_upn(33))]
# The child of fhir/health_bundle.json and of police/encompass.json and disclosure.json.
CHILD_NHS, CHILD_UPN = "9990000824", "E999000000041"
ALLOCATE = samples.allocation_update(
    [
        (*PUPILS[0], "sw-amara", "Assessment Team 1", "tm-jones"),
        (*PUPILS[1], "sw-ben", "Assessment Team 2", "tm-lee"),
        (CHILD_NHS, CHILD_UPN, "sw-ben", "Assessment Team 2", "tm-lee"),
    ]
)
SCHOOL_ARGS = ["--school", SCHOOL, "--urn", "100001", "--author", "Ruth Okafor"]


async def run_cli(args: list[str], bootstrap: str) -> Result:
    """``safeguard ARGS`` as a person runs it (its own event loop, in a thread)."""
    return await asyncio.to_thread(CliRunner().invoke, safeguard, args, env=kafka_env(bootstrap))


async def receipts(home: Path, agency: str, bootstrap: str) -> list[str]:
    result = await run_cli(
        ["producer", "receipts", "--home", str(home), "--agency", agency], bootstrap
    )
    assert result.exit_code == 0, result.output
    return result.output.splitlines()


def pushed_ids(output: str, marker: str) -> list[str]:
    """The notification ids an ingest printed (the 36-character word of each ``marker`` line)."""
    return [
        word
        for line in output.splitlines()
        if line.startswith(marker)
        for word in line.split()
        if len(word) == 36
    ]


def statuses(lines: list[str]) -> dict[str, str]:
    """``producer receipts`` rows as message id -> status (date and time are two words)."""
    return {line.split()[0]: line.split()[4] for line in lines[1:-1]}


@asynccontextmanager
async def relay_process(home: Path, agency: str, bootstrap: str) -> AsyncIterator[None]:
    """``safeguard producer relay`` as its own process, stopped with SIGTERM on exit.

    It is running (its signal handlers installed) once its /metrics answers; the outbox
    depth it reports is then checked to be 0.
    """
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "safeguard.cli", "producer", "relay",
        "--home", str(home), "--agency", agency,
        env={**os.environ, **kafka_env(bootstrap), "SGX_METRICS_PORT": str(port)},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:

            async def depth_zero() -> bool:
                assert process.returncode is None, "the relay stopped"
                try:
                    text = (await http.get("/metrics")).text
                except httpx.TransportError:
                    return False
                return "\nsgx_producer_outbox_depth 0.0\n" in text

            await eventually(depth_zero, f"the relay of {agency} to report an empty outbox")
        yield
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = await asyncio.wait_for(process.communicate(), 30)
        assert process.returncode == 0, output.decode()


async def wait_delivered(ex: Exchange, home: Path, agency: str, count: int) -> list[str]:
    """Wait until ``producer receipts`` shows ``count`` entries, every one DELIVERED."""
    bootstrap = ex.rt.kafka.bootstrap_servers
    lines: list[str] = []

    async def delivered() -> bool:
        nonlocal lines
        lines = await receipts(home, agency, bootstrap)
        return lines[-1] == f"{count} entries, 0 awaiting"

    await eventually(delivered, f"{count} receipts of {agency}")
    return lines


async def test_school_health_and_police_ingests_go_through_the_outbox(tmp_path: Path) -> None:
    async with running_exchange(tmp_path) as ex:
        bootstrap, home = ex.rt.kafka.bootstrap_servers, str(tmp_path)
        await ex.allocate(ALLOCATE)  # the gateway sends the school the open-case list

        school = await run_cli(
            ["producer", "school", "ingest", str(FIXTURES / "attendance" / "clean.csv"),
             "--home", home, *SCHOOL_ARGS],
            bootstrap,
        )  # fmt: skip
        assert school.exit_code == 0, school.output
        assert "pushed: 2" in school.output
        assert "outbox: 2 notification(s) sent to the exchange" in school.output
        school_ids = pushed_ids(school.output, "  ")
        assert len(school_ids) == 2

        health = await run_cli(
            ["producer", "health", "ingest", str(FIXTURES / "fhir" / "health_bundle.json"),
             "--home", home],
            bootstrap,
        )  # fmt: skip
        assert health.exit_code == 0, health.output
        assert "outbox: 3 notification(s) sent to the exchange" in health.output
        health_ids = pushed_ids(health.output, "pushed  ")

        police_ids, police_lines = [], []
        for command in ("encompass", "disclosure"):
            police = await run_cli(
                ["producer", "police", command, str(FIXTURES / "police" / f"{command}.json"),
                 "--home", home],
                bootstrap,
            )  # fmt: skip
            assert police.exit_code == 0, police.output
            assert "outbox: 1 notification(s) sent to the exchange" in police.output
            police_ids += pushed_ids(police.output, "pushed  ")
            police_lines += [line for line in police.output.splitlines() if "pushed  " in line]
        assert police_lines[0].endswith("(and the key adult at school-hillside)")
        assert " PROTOCOL_2024_DISCLOSURE " in police_lines[1]

        # Each notification reached the allocated worker and supervisor: 7 x 2 queue rows.
        await ex.wait_rows(14)
        queued = {view.item.notification_id for view in await ex.queue("sw-ben")}
        queued |= {view.item.notification_id for view in await ex.queue("sw-amara")}
        assert queued == {*school_ids, *health_ids, *police_ids}
        assert await ex.queue(f"mash:{LA}") == []

        # The outbox holds every one, sent (its receipt may already be recorded: the
        # ingest's receipt listener ran while it waited for the broker); the relay's
        # listener records every answer.
        for agency, ids in ((SCHOOL, school_ids), (HEALTH, health_ids), (POLICE, police_ids)):
            listed = statuses(await receipts(tmp_path, agency, bootstrap))
            assert sorted(listed) == sorted(ids)
            assert set(listed.values()) <= {"SENT", "DELIVERED"}, listed
            async with relay_process(tmp_path, agency, bootstrap):
                lines = await wait_delivered(ex, tmp_path, agency, len(ids))
            assert statuses(lines) == dict.fromkeys(ids, "DELIVERED"), lines
        assert await ex.queue_rows() == 14  # relaying again added no second copy


async def test_an_ingest_without_the_broker_keeps_everything_for_the_next_one(
    tmp_path: Path,
) -> None:
    bundle = str(FIXTURES / "fhir" / "health_bundle.json")
    async with running_exchange(tmp_path) as ex:
        bootstrap, home = ex.rt.kafka.bootstrap_servers, str(tmp_path)
        await ex.allocate(ALLOCATE)

        nowhere = f"127.0.0.1:{free_port()}"  # nothing listens there
        offline = await run_cli(["producer", "health", "ingest", bundle, "--home", home], nowhere)
        assert offline.exit_code == 0, offline.output  # the bundle was good and is kept
        assert "pushed 3 health update(s), 0 error(s)" in offline.output
        assert (
            "warning: outbox: 3 notification(s) kept but not sent yet: the broker cannot be reached"
        ) in offline.output
        kept = pushed_ids(offline.output, "pushed  ")
        lines = await receipts(tmp_path, HEALTH, nowhere)  # the outbox needs no broker
        assert statuses(lines) == dict.fromkeys(kept, "PENDING")
        assert await ex.queue_rows() == 0

        # The next ingest (the same bundle: the same notification ids) sends what was kept.
        online = await run_cli(["producer", "health", "ingest", bundle, "--home", home], bootstrap)
        assert online.exit_code == 0, online.output
        assert "outbox: 3 notification(s) sent to the exchange" in online.output
        assert "warning" not in online.output
        await ex.wait_rows(6)
        assert sorted(v.item.notification_id for v in await ex.queue("sw-ben")) == sorted(kept)
        lines = await receipts(tmp_path, HEALTH, bootstrap)
        assert lines[-1].startswith("3 entries")  # kept once, although ingested twice
