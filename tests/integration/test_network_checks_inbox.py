"""Network checks from the inbox's API, end to end through the real broker, gateway and
consumer: from Maya's MASH item (open to no one), a MASH system rates the contact, asks a
school and the police with the family-informed decision, sees the deadlines, then the
school's answer arrive on the item; bad requests name their field and send nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from safeguard.inbox_wiring import inbox_store
from safeguard.parties import LA, OTHER_SCHOOL, POLICE, SCHOOL
from sgx.domain.family import DisclosureKind
from sgx.wire import contract as c
from tests.integration.harness import eventually
from tests.integration.inbox_world import World, inbox_world
from tests.integration.test_inbox_api import items_of, token

pytestmark = pytest.mark.broker
EXCEPTION = {
    "informed": False,
    "exception": "RISK_TO_CHILD",
    "reason": "the allegation is against the father",
    "decided_by": "Mo Duty",
}


@pytest.fixture(scope="module")
async def world(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[World]:
    async with inbox_world(tmp_path_factory.mktemp("netchecks")) as w:
        yield w


async def test_the_mash_rates_asks_and_sees_the_answer_on_the_item(world: World) -> None:
    (maya,) = await items_of(world, f"mash:{LA}")
    (amaras, *_) = await items_of(world, "sw-amara")
    headers = await token(world, "mosaic-mash", "deliveries:read", "shares:write", "queue:mash")
    url = f"/api/v1/deliveries/{maya}/network-checks"
    asked: dict[str, Any] = {
        "rating": "AMBER", "agencies": [SCHOOL, POLICE],
        "asked": "Attendance and exclusions; any incidents at the home", "family": EXCEPTION,
    }  # fmt: skip
    async with httpx.AsyncClient(base_url=world.url, timeout=60) as http:
        no_decision = await http.post(url, headers=headers, json={**asked, "family": None})
        assert no_decision.status_code == 422
        assert no_decision.json()["errors"][0]["path"].startswith("body.family")
        no_reason = {**EXCEPTION, "reason": None}
        unexplained = await http.post(url, headers=headers, json={**asked, "family": no_reason})
        assert unexplained.status_code == 422, unexplained.text
        assert unexplained.json()["errors"][0]["path"] == "body.family.reason"
        stranger = await http.post(url, headers=headers, json={**asked, "agencies": [OTHER_SCHOOL]})
        assert stranger.status_code == 422
        assert stranger.json()["errors"][0]["path"] == "body.agencies"
        assert (await http.get(url, headers=headers)).json()["checks"] == []  # nothing sent
        not_mash = f"/api/v1/deliveries/{amaras}/network-checks"
        everything = await token(world, "mosaic-all", "deliveries:read", "shares:write",
                                 "queue:all")  # fmt: skip
        refused = await http.post(not_mash, headers=everything, json=asked)
        assert refused.status_code == 403
        assert "MASH" in refused.json()["errors"][0]["problem"]

        made = await http.post(url, headers=headers, json=asked)
        assert made.status_code == 201, made.text
        checks = {check["agency"]: check for check in made.json()["checks"]}
        assert set(checks) == {SCHOOL, POLICE}
        for check in checks.values():
            assert check["state"] == "ASKED", check
            assert check["rating"] == "AMBER"
            assert check["family_told"] is False
            assert datetime.fromisoformat(check["deadline"]) > datetime.now(UTC)
            assert check["overdue"] is False
        school = checks[SCHOOL]
        answer = {
            "answer_id": uuid.uuid4(), "request_id": uuid.UUID(school["request_id"]),
            "local_authority": LA, "outcome": "HELD",
            "facts": "Attendance 64% this term; one fixed-term exclusion",
            "professional_opinion": "Maya seems withdrawn since half-term",
            "restrictions": [], "answered_by": "Ms Patel, DSL", "automatic": False,
            "answered_at": datetime.now(UTC),
        }  # fmt: skip
        await world.exchange.publish(SCHOOL, c.INFORMATION_ANSWER, answer)

        async def answered() -> bool:
            listed = (await http.get(url, headers=headers)).json()["checks"]
            return any(check["state"] == "ANSWERED" for check in listed)

        await eventually(answered, "the school's answer to show on the MASH item")
        listed = {
            c_["agency"]: c_ for c_ in (await http.get(url, headers=headers)).json()["checks"]
        }
        assert listed[SCHOOL]["answer"]["facts"] == answer["facts"]
        assert listed[SCHOOL]["answer"]["professional_opinion"] == answer["professional_opinion"]
        assert listed[POLICE]["state"] == "ASKED"
        amaras_view = await token(world, "amaras-system", "deliveries:read",
                                  "queue:worker:sw-amara")  # fmt: skip
        assert (await http.get(url, headers=amaras_view)).status_code == 404

    async with await inbox_store(world.exchange.rt, LA) as store:
        disclosures = await store.families.of([listed[SCHOOL]["request_id"]])
        recorded = await store.families.current(
            DisclosureKind.NETWORK_CHECK, [listed[SCHOOL]["request_id"]]
        )
    assert disclosures == []  # keyed by the item's notification, not the request
    (check,) = recorded.values()
    assert check.purpose == asked["asked"]  # the family may read it: no risk rating in it
    assert check.made is True
    assert check.decision is not None
    assert check.decision.decision.exception == "RISK_TO_CHILD"
