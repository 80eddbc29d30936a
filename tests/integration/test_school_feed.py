"""The school attendance feed end to end through a real Kafka-protocol broker (never a fake).

The open-case list the school works from is the gateway's own: after it applies the LA's
allocation update it sends every school the LA serves the LA's open-case list (sealed by
the gateway for the school, purpose ALLOCATIONS, on the school's receipts topic). Only
the negative test seals a list itself, as the LA, to show the school ignores it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from gateway.open_cases import open_case_list
from producers.open_cases import OpenCaseListener, OpenCaseStore, pupil_keys
from producers.school import PushedStore, SchoolFeed, SchoolProfile, ingest, watch
from safeguard import samples
from safeguard.cli_school import school
from safeguard.parties import LA, SCHOOL
from safeguard.runtime import Runtime, publisher
from sgx.domain.identifiers import make_nhs_number, make_upn
from sgx.kafka.wiring import receipts_topic, start_consumer, start_producer
from sgx.wire import contract as c
from sgx.wire.envelope import Opener, Purpose, Sealer
from tests.integration.harness import Exchange, eventually, running_exchange

pytestmark = pytest.mark.broker

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "attendance"
# The pupils of tests/fixtures/attendance/*.csv: 11 and 33 are open, 22 is not.
AMIRA = (make_nhs_number(11), make_upn(11))
MAYA = (make_nhs_number(33), make_upn(33))
NOT_OPEN_UPN = make_upn(22)
ALLOCATE = samples.allocation_update(
    [
        (*AMIRA, "sw-amara", "Assessment Team 1", "tm-jones"),
        (*MAYA, "sw-ben", "Assessment Team 2", "tm-lee"),
    ]
)
ALLOCATE_AMIRA = samples.allocation_update([(*AMIRA, "sw-amara", "Assessment Team 1", "tm-jones")])


async def forge_open_case_list(
    rt: Runtime, pupils: Sequence[tuple[str | None, str | None]], *, sender: str
) -> None:
    """Seal and publish an open-case list to the school as ``sender`` (not the gateway)."""
    pseudonyms, trust = rt.pseudonyms(), rt.trust()
    keys = [key for nhs, upn in pupils for key in pupil_keys(pseudonyms, nhs, upn)]
    record = open_case_list(LA, keys, datetime.now(UTC))
    sealer = Sealer(rt.identity(sender, trust), trust, SCHOOL)
    value = sealer.seal(
        Purpose.ALLOCATIONS, uuid.uuid4(), rt.contract().encode(c.OPEN_CASE_LIST, record)
    )
    producer = await start_producer(rt.kafka)
    try:
        await producer.send_and_wait(receipts_topic(SCHOOL), value, key=uuid.uuid4().bytes)
    finally:
        await producer.stop()


def listener(rt: Runtime, store: OpenCaseStore) -> OpenCaseListener:
    trust = rt.trust()
    opener = Opener(rt.identity(SCHOOL, trust), trust)
    return OpenCaseListener(school_id=SCHOOL, opener=opener, contract=rt.contract(), store=store)


@contextlib.asynccontextmanager
async def school_feed(rt: Runtime) -> AsyncIterator[SchoolFeed]:
    profile = SchoolProfile(
        agency_id=SCHOOL,
        school_urn="100001",
        school_name="Hillside Primary School",
        author_name="Ruth Okafor",
    )
    async with (
        await OpenCaseStore.open(None, rt.sqlite("open-cases.db"), owner="school-test") as cases,
        await PushedStore.open(None, rt.sqlite("attendance.db"), owner="school-test") as pushed,
    ):
        yield SchoolFeed(profile, rt.pseudonyms(), cases, pushed)


async def queue_upns(ex: Exchange, worker: str) -> list[str]:
    return [view.notification["child"]["upn"] for view in await ex.queue(worker)]


async def test_attendance_reaches_the_allocated_worker_only_for_open_pupils(
    tmp_path: Path,
) -> None:
    async with running_exchange(tmp_path) as ex, school_feed(ex.rt) as feed:
        await ex.allocate(ALLOCATE)  # the gateway sends the school the LA's open cases
        assert await listener(ex.rt, feed.open_cases).catch_up(ex.rt.kafka) == 1

        async with publisher(ex.rt, SCHOOL) as pub:
            report = await ingest(FIXTURES / "clean.csv", feed=feed, submit=pub.publish)
            assert (len(report.pushed), report.skipped_not_open, report.errors) == (2, 1, [])
            await ex.wait_rows(4)  # each open pupil: allocated worker and supervisor

            [amira] = await ex.queue("sw-amara")
            assert str(amira.item.notification_id) in {str(i) for i in report.pushed}
            assert amira.item.route_reason == "ALLOCATED_WORKER"
            assert amira.notification["child"]["upn"] == AMIRA[1]
            assert amira.notification["attendance"]["sessions_possible"] == 18
            assert amira.notification["attendance"]["sessions_missed"] == 6
            assert amira.notification["attendance"]["unexplained_absences"] == 3
            assert amira.notification["attendance"]["persistent_absence"] is True
            assert await queue_upns(ex, "sw-ben") == [MAYA[1]]
            assert await ex.queue(f"mash:{LA}") == []  # the pupil not open went nowhere

            again = await ingest(FIXTURES / "clean.csv", feed=feed, submit=pub.publish)
            assert (again.pushed, again.unchanged) == ([], 2)

            bad = await ingest(FIXTURES / "bad_rows.csv", feed=feed, submit=pub.publish)
            assert [e.line for e in bad.errors] == [5, 11, 17, 23, 29, 35, 41, 47]
            assert len(bad.pushed) == 2  # the good rows went, with the unreadable count
            await ex.wait_rows(8)

        assert await ex.queue_rows() == 8
        for worker in ("sw-amara", "tm-jones", "sw-ben", "tm-lee"):
            assert NOT_OPEN_UPN not in await queue_upns(ex, worker)
        # The receipts the gateway sent the school are not open-case lists: nothing changes.
        assert await listener(ex.rt, feed.open_cases).catch_up(ex.rt.kafka) == 0


async def test_a_list_not_sealed_by_the_gateway_is_ignored(tmp_path: Path) -> None:
    async with running_exchange(tmp_path, consumer=False) as ex, school_feed(ex.rt) as feed:
        await ex.allocate(ALLOCATE_AMIRA)
        await forge_open_case_list(ex.rt, [AMIRA, (None, NOT_OPEN_UPN)], sender=LA)
        assert await listener(ex.rt, feed.open_cases).catch_up(ex.rt.kafka) == 1
        held = await feed.open_cases.current()
        pseudonyms = ex.rt.pseudonyms()
        assert held.is_open(pupil_keys(pseudonyms, *AMIRA))
        assert not held.is_open(pupil_keys(pseudonyms, None, NOT_OPEN_UPN))


async def test_watched_folder_with_the_listener_running(tmp_path: Path) -> None:
    async with running_exchange(tmp_path) as ex, school_feed(ex.rt) as feed:
        inbox = tmp_path / "inbox"
        inbox.mkdir()
        stop = asyncio.Event()
        consumer = await start_consumer(
            ex.rt.kafka, [receipts_topic(SCHOOL)], group_id="sgx-open-cases-test"
        )
        try:
            async with publisher(ex.rt, SCHOOL) as pub:
                tasks = [
                    asyncio.create_task(listener(ex.rt, feed.open_cases).run(consumer, stop)),
                    asyncio.create_task(watch(inbox, pub.publish, stop, feed=feed, poll_s=0.05)),
                ]
                await ex.allocate(ALLOCATE_AMIRA)  # the listener, running, gets the list

                async def list_held() -> bool:
                    return (await feed.open_cases.current()).issued_at is not None

                await eventually(list_held, "the listener to store the open-case list")
                (inbox / "export.csv").write_text((FIXTURES / "clean.csv").read_text())
                await ex.wait_rows(2)
                report = inbox / "processed" / "export.csv.report.txt"

                async def filed() -> bool:
                    return report.exists()

                await eventually(filed, "the export to be filed with its report")
                stop.set()
                await asyncio.gather(*tasks)
        finally:
            await consumer.stop()
        assert "pushed: 1" in report.read_text()
        assert await queue_upns(ex, "sw-amara") == [AMIRA[1]]
        assert await ex.queue("sw-ben") == []  # not open to social care: not pushed
        assert await ex.queue(f"mash:{LA}") == []


async def test_cli_ingest_prints_the_report_and_exits_1_on_bad_lines(tmp_path: Path) -> None:
    async with running_exchange(tmp_path) as ex:
        await ex.allocate(ALLOCATE)
        env = {
            **ex.kafka_env(),
            "SGX_SCHOOL": SCHOOL,
            "SGX_SCHOOL_URN": "100001",
            "SGX_SCHOOL_AUTHOR": "Ruth Okafor",
        }
        args = ["ingest", str(FIXTURES / "bad_rows.csv"), "--home", str(tmp_path)]
        runner = CliRunner()
        result = await asyncio.to_thread(runner.invoke, school, args, env=env)
        assert result.exit_code == 1, result.output
        assert "pushed: 2" in result.output
        assert "not open to social care: 1" in result.output
        assert "line 17: upn: check letter is A but should be Q" in result.output
        assert "line 47: nhs_number: check digit is 1 but should be 2" in result.output
        await ex.wait_rows(4)

        again = await asyncio.to_thread(runner.invoke, school, [*args, "--no-sync"], env=env)
        assert "pushed: 0" in again.output
        assert "unchanged since the last push: 2" in again.output
        assert os.environ.get("SGX_SCHOOL") is None  # the runner restored the environment
