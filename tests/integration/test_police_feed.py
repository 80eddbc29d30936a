"""The police feed end to end through a real Kafka-protocol broker (never a fake): a force
export is mapped, published with the police Publisher and lands in the allocated worker's
queue carrying police material's confidentiality restriction."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from producers.police import map_police_export
from safeguard import samples
from safeguard.parties import LA, POLICE
from sgx.wire import contract as c
from tests.integration.harness import running_exchange

pytestmark = pytest.mark.broker

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "police"
WORKER, SUPERVISOR = "sw-amara", "tm-jones"


def export(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / f"{name}.json").read_text())
    return data


def allocate_fixture_child() -> dict[str, Any]:
    child = export("encompass")["child"]
    return samples.allocation_update(
        [(child["nhs_number"], child["upn"], WORKER, "Assessment Team 1", SUPERVISOR)]
    )


def codes(delivery: dict[str, Any]) -> dict[str, str]:
    return {r["code"]: r["source"] for r in delivery["restrictions"]}


async def test_encompass_and_disclosure_reach_the_allocated_worker_restricted(
    tmp_path: Path,
) -> None:
    encompass = map_police_export(export("encompass"))
    disclosure = map_police_export(export("disclosure"))
    async with running_exchange(tmp_path) as ex:
        await ex.allocate(allocate_fixture_child())
        sent = await ex.publish(POLICE, c.POLICE_NOTIFICATION, encompass)
        answer = await ex.publish(POLICE, c.POLICE_NOTIFICATION, disclosure)
        assert sent == encompass["notification_id"]
        await ex.wait_items(WORKER, 2)

        items = {v.item.notification_id: v for v in await ex.queue(WORKER)}
        assert set(items) == {str(sent), str(answer)}
        incident_item, disclosure_item = items[str(sent)], items[str(answer)]
        assert incident_item.item.route_reason == "ALLOCATED_WORKER"
        for view in (incident_item, disclosure_item):
            assert codes(view.delivery) == {
                "THIRD_PARTY_AUTHOR_CONSENT": "DEFAULT",
                "POLICE_CONFIDENTIAL_TO_PROCEEDINGS": "DEFAULT",
            }
        incident = incident_item.notification["police"]["incident"]
        assert incident["school_id"] == "school-hillside"
        assert incident["child_present"] is True
        assert incident["voice_of_child"] == encompass["police"]["incident"]["voice_of_child"]
        assert incident_item.notification["police"]["police_reference"] == "CAD-2025-0309-1234"
        redactions = disclosure_item.notification["police"]["disclosure"]["redactions"]
        assert [r["why"] for r in redactions] == [
            "Protect the witness",
            "Would prejudice an ongoing investigation",
        ]

        await ex.wait_items(SUPERVISOR, 2)
        for view in await ex.queue(SUPERVISOR):
            assert "POLICE_CONFIDENTIAL_TO_PROCEEDINGS" in codes(view.delivery)
        assert await ex.queue(f"mash:{LA}") == []
