"""The health feed end to end: FHIR bundle -> producer -> real broker -> gateway -> queue."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from producers.health import HealthFeedDefaults, ingest_bundle
from safeguard import samples
from safeguard.cli_health import health
from safeguard.parties import HEALTH, LA
from safeguard.runtime import publisher
from tests.integration.harness import kafka_env, running_exchange

pytestmark = pytest.mark.broker

FHIR = Path(__file__).resolve().parents[1] / "fixtures" / "fhir"
AMIRA_NHS = "9990000824"  # Patient/pt-amira in health_bundle.json
LEO_NHS = "9990000840"  # Patient/pt-a in malformed_bundle.json
DEFAULTS = HealthFeedDefaults(
    agency_id=HEALTH, agency_name="Royal Free London NHS Foundation Trust"
)
KINDS = ["UNSCHEDULED_CARE_ATTENDANCE", "WAS_NOT_BROUGHT", "HEALTH_VISITOR_OBSERVATION"]


async def test_a_bundle_lands_in_the_allocated_worker_and_supervisor_queues(
    tmp_path: Path,
) -> None:
    async with running_exchange(tmp_path) as ex:
        await ex.allocate(
            samples.allocation_update([(AMIRA_NHS, None, "sw-amara", "Team 1", "tm-jones")])
        )
        async with publisher(ex.rt, HEALTH) as pub:
            report = await ingest_bundle(FHIR / "health_bundle.json", pub.publish, DEFAULTS)
        assert report.errors == []
        assert len(report.pushed) == 3
        await ex.wait_rows(6)

        worker, supervisor = await ex.queue("sw-amara"), await ex.queue("tm-jones")
        sent = sorted(str(i) for i in report.pushed_ids)
        assert sorted(v.item.notification_id for v in worker) == sent
        assert sorted(v.item.notification_id for v in supervisor) == sent
        assert await ex.queue(f"mash:{LA}") == []
        by_kind = {v.notification["health"]["event_kind"]: v for v in worker}
        assert sorted(by_kind) == sorted(KINDS)

        attendance = by_kind["UNSCHEDULED_CARE_ATTENDANCE"].notification
        assert attendance["child"]["nhs_number"] == AMIRA_NHS
        assert attendance["author"]["name"] == "Dr Sam Patel"
        assert attendance["health"]["clinical_detail"] == (
            "Reason for attendance: Scald to left forearm"
        )
        assert by_kind["UNSCHEDULED_CARE_ATTENDANCE"].item.urgency == "PRIORITY"
        assert all(v.item.route_reason == "ALLOCATED_WORKER" for v in worker)

        # the supervisor's copy is minimised per gateway/agreement.toml
        for view in supervisor:
            assert view.item.route_reason == "SUPERVISOR"
            assert view.notification["health"]["clinical_detail"] is None
            assert "health.clinical_detail" in view.delivery["withheld"]
            assert view.notification["assessment"]["facts"]  # mandatory: it still travels
        observation = next(
            v.notification
            for v in supervisor
            if v.notification["health"]["event_kind"] == "HEALTH_VISITOR_OBSERVATION"
        )
        assert observation["assessment"]["professional_opinion"] == (
            "Concern about neglect\nMother appeared low in mood and withdrawn."
        )
        assert observation["sharing"]["consent"] == "GIVEN"


async def test_cli_pushes_the_good_part_of_a_malformed_bundle(tmp_path: Path) -> None:
    async with running_exchange(tmp_path) as ex:
        await ex.allocate(
            samples.allocation_update([(LEO_NHS, None, "sw-ben", "Team 2", "tm-lee")])
        )
        result = await asyncio.to_thread(
            _invoke,
            ["ingest", str(FHIR / "malformed_bundle.json"), "--home", str(tmp_path)],
            ex.rt.kafka.bootstrap_servers,
        )
        assert result.exit_code == 1, result.output  # some entries refused, the rest pushed
        lines = result.output.splitlines()
        assert lines[0] == "pushed 2 health update(s), 7 error(s)"
        pushed = [line.split()[-1] for line in lines if line.startswith("pushed  ")]
        assert len(pushed) == 2
        assert any(
            "entry[2] Appointment/ap-7: status: value is not a valid enumeration member" in line
            for line in lines
        )
        assert any(
            "entry[6] Patient/pt-bad: identifier[0].value: check digit" in line for line in lines
        )

        await ex.wait_rows(4)
        worker = await ex.queue("sw-ben")
        assert sorted(v.item.notification_id for v in worker) == sorted(pushed)
        assert sorted(v.notification["health"]["event_kind"] for v in worker) == [
            "UNSCHEDULED_CARE_ATTENDANCE",
            "WAS_NOT_BROUGHT",
        ]
        assert len(await ex.queue("tm-lee")) == 2


async def test_a_child_without_an_nhs_number_reaches_the_front_door_with_the_reason(
    tmp_path: Path,
) -> None:
    async with running_exchange(tmp_path) as ex:
        async with publisher(ex.rt, HEALTH) as pub:
            report = await ingest_bundle(FHIR / "no_nhs_number_bundle.json", pub.publish, DEFAULTS)
        assert report.errors == []
        await ex.wait_rows(2)
        mash = await ex.queue(f"mash:{LA}")
        assert sorted(v.item.notification_id for v in mash) == sorted(
            str(i) for i in report.pushed_ids
        )
        reasons = sorted(v.notification["child"]["identifier_absent_reason"] for v in mash)
        assert reasons == ["NOT_KNOWN", "UNREASONABLE_DELAY"]
        assert all(v.notification["child"]["nhs_number"] is None for v in mash)


def _invoke(args: list[str], bootstrap: str) -> Result:
    """Run ``safeguard health`` as a person would (its own event loop, in a thread)."""
    return CliRunner().invoke(health, args, env=kafka_env(bootstrap))
