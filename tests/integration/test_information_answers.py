"""An agency's answer to a network check is an item of the MASH queue, and its restrictions
bind onward shares exactly as a notification's; end to end through the real broker,
gateway, consumer and inbox.

From Maya's MASH item a MASH system asks the school and the health trust. The school
answers "no onward sharing"; the trust answers with nothing of its own (the exchange's
default, third-party material, still applies). Both land in the MASH queue as answers,
linked to the item they were asked from. An onward share of the school's answer, even
to a colleague, is refused with the reason; the trust's answer to the police is refused
(the author's consent is needed), and to a colleague it is delivered into her queue,
with its restrictions, minimised for her role by Camden's agreement: the trust's
professional opinion, which the MASH sees, is withheld from her, and the delivery, her
item page and the audit entry say so. Every decision is in the gateway's audit trail.
"""

from __future__ import annotations

import html
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from safeguard.parties import HEALTH, LA, SCHOOL
from sgx.domain.restrictions import TEXT
from sgx.wire import contract as c
from tests.integration.harness import eventually
from tests.integration.inbox_world import CHILDREN, World, inbox_world
from tests.integration.test_author_consent import cli
from tests.integration.test_inbox_api import items_of, person, token

pytestmark = pytest.mark.broker
TOLD = {
    "informed": True, "informed_at": "2026-11-20T10:00:00+00:00", "informed_by": "Mo Duty",
    "method": "PHONE", "family_member": "her mother", "decided_by": "Mo Duty",
}  # fmt: skip


@pytest.fixture(scope="module")
async def world(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[World]:
    async with inbox_world(tmp_path_factory.mktemp("answers")) as w:
        yield w


OPINION = "Maya-opinion: we are worried about the pattern of attendances"


def answer(
    request_id: str, facts: str, *restricted: str, opinion: str | None = None
) -> dict[str, Any]:
    return {
        "answer_id": uuid.uuid4(), "request_id": uuid.UUID(request_id), "local_authority": LA,
        "outcome": "HELD", "facts": facts, "professional_opinion": opinion,
        "restrictions": [{"code": r, "source": "AUTHOR", "text": TEXT[r]} for r in restricted],
        "answered_by": "Ms Patel, DSL", "automatic": False, "answered_at": datetime.now(UTC),
    }  # fmt: skip


async def test_answers_are_mash_items_and_their_restrictions_bind_onward_shares(
    world: World,
) -> None:
    (maya,) = await items_of(world, f"mash:{LA}")
    headers = await token(
        world, "mash-system", "deliveries:read", "shares:write", "sharing-record:read",
        "queue:mash",
    )  # fmt: skip
    checks_url = f"/api/v1/deliveries/{maya}/network-checks"
    body = {"rating": "RED", "agencies": [SCHOOL, HEALTH], "asked": "What you hold",
            "family": TOLD}  # fmt: skip
    ex = world.exchange
    async with httpx.AsyncClient(base_url=world.url, timeout=60) as http:
        made = await http.post(checks_url, headers=headers, json=body)
        assert made.status_code == 201, made.text
        asked = {check["agency"]: check["request_id"] for check in made.json()["checks"]}
        no_onward = answer(asked[SCHOOL], "Maya-answer: two exclusions", "NO_ONWARD_SHARING")
        plain = answer(asked[HEALTH], "Maya-answer: one A&E attendance", opinion=OPINION)
        await ex.publish(SCHOOL, c.INFORMATION_ANSWER, no_onward)
        await ex.publish(HEALTH, c.INFORMATION_ANSWER, plain)

        async def both() -> bool:
            listed = (await http.get(checks_url, headers=headers)).json()["checks"]
            return all(check["state"] == "ANSWERED" for check in listed)

        await eventually(both, "both answers on Maya's MASH item")
        listed = {
            check["agency"]: check
            for check in (await http.get(checks_url, headers=headers)).json()["checks"]
        }
        assert listed[SCHOOL]["answer"]["restrictions"] == [
            "NO_ONWARD_SHARING", "THIRD_PARTY_AUTHOR_CONSENT",
        ]  # fmt: skip
        assert listed[HEALTH]["answer"]["restrictions"] == ["THIRD_PARTY_AUTHOR_CONSENT"]
        items = {agency: check["answer_item"] for agency, check in listed.items()}
        assert set(await items_of(world, f"mash:{LA}")) == {maya, *items.values()}

        # Each answer is an item of the MASH queue: listed, opened, in Maya's record.
        fetched = (await http.get(f"/api/v1/deliveries/{items[SCHOOL]}", headers=headers)).json()
        assert fetched["notification"]["facts"] == no_onward["facts"]
        assert fetched["notification_type"] == c.INFORMATION_ANSWER
        # The MASH asked: it sees the whole answer, opinion and all, nothing withheld.
        whole = (await http.get(f"/api/v1/deliveries/{items[HEALTH]}", headers=headers)).json()
        assert whole["notification"]["professional_opinion"] == OPINION
        assert whole["withheld"] == []
        assert set(fetched["restrictions"]) == {
            "NO_ONWARD_SHARING", "THIRD_PARTY_AUTHOR_CONSENT",
        }  # fmt: skip
        record = (
            await http.get(f"/api/v1/deliveries/{maya}/sharing-record", headers=headers)
        ).json()
        received = {r["item_id"] for r in record["received"]}
        assert received == {maya, *items.values()}

        async def share(item: int, category: str, to: str) -> dict[str, Any]:
            url = f"/api/v1/deliveries/{item}/shares"
            said = await http.post(
                url, headers=headers,
                json={"category": category, "to_name": to, "purpose": "strategy discussion"},
            )  # fmt: skip
            assert said.status_code == 201, said.text
            return dict(said.json())

        refused = await share(items[SCHOOL], "LA_SOCIAL_CARE", "sw-ben")
        assert refused["status"] == "refused", refused
        assert refused["broken"] == ["NO_ONWARD_SHARING"]
        assert TEXT["NO_ONWARD_SHARING"] in refused["reason"]
        to_police = await share(items[HEALTH], "OTHER_PROFESSIONAL", "met-police")
        assert to_police["status"] == "refused"
        assert to_police["broken"] == ["THIRD_PARTY_AUTHOR_CONSENT"]
        allowed = await share(items[HEALTH], "LA_SOCIAL_CARE", "sw-ben")
        assert allowed["status"] == "allowed", allowed

    async def delivered() -> bool:
        return any(
            v.item.notification_type == c.INFORMATION_ANSWER for v in await ex.queue("sw-ben")
        )

    await eventually(delivered, "the shared answer in sw-ben's queue")
    (onward,) = [v for v in await ex.queue("sw-ben") if v.is_answer]
    assert (onward.item.recipient_role, onward.item.route_reason) == ("ONWARD", "ONWARD_SHARE")
    assert onward.notification["facts"] == plain["facts"]
    assert onward.item.restrictions == ("THIRD_PARTY_AUTHOR_CONSENT",)
    # Camden's agreement lets a colleague see an answer's facts, not the agency's opinion.
    assert onward.notification["professional_opinion"] is None
    assert onward.item.withheld == ("professional_opinion",)
    assert onward.delivery["withheld"] == ["professional_opinion"]
    assert not [
        v for v in await ex.queue("sw-ben") if v.notification.get("facts") == no_onward["facts"]
    ]

    async with ex.gateway_store() as gateway:
        school_audit = await gateway.audit_records(notification_id=str(no_onward["answer_id"]))
        health_audit = await gateway.audit_records(notification_id=str(plain["answer_id"]))
    assert [(a.decision, a.reason) for a in school_audit] == [("share_refused", "restriction")]
    assert sorted((a.decision, a.reason) for a in health_audit) == [
        ("delivered", "ONWARD_SHARE"), ("share_allowed", "allowed"),
        ("share_refused", "restriction"),
    ]  # fmt: skip
    assert all(a.local_authority == LA for a in school_audit + health_audit)
    (to_ben,) = [a for a in health_audit if a.decision == "delivered"]
    assert (to_ben.recipient, to_ben.withheld) == ("sw-ben", ("professional_opinion",))
    async with ex.gateway_store() as gateway:
        to_mash = await gateway.audit_records(notification_id=str(plain["request_id"]))
    (answered,) = [a for a in to_mash if a.decision == "information_answered"]
    assert (answered.recipient, answered.withheld) == (f"mash:{LA}", ())

    # The MASH duty worker's pages show an answer as what it is; an answer cannot itself
    # be network-checked.
    mash = await person(world, "mash")
    try:
        queue = (await mash.request("GET", "/queue")).text
        assert "Information answer" in queue
        page = await mash.request("GET", f"/items/{items[SCHOOL]}")
        assert page.status_code == 200, page.text
        assert "answer to a network check" in page.text
        assert no_onward["facts"] in page.text
        assert "Network checks: rate this contact" not in page.text
        checks_page = (await mash.request("GET", f"/items/{maya}/network-checks")).text
        assert f'href="/items/{items[SCHOOL]}"' in checks_page
        assert "Third-party information: it may be shared" in checks_page
        child = await mash.request("GET", f"/items/{items[SCHOOL]}/child")
        assert child.status_code == 200, child.text
        assert CHILDREN["maya"].given in child.text  # the child of the item it answers
        assert plain["facts"] not in child.text  # the record lists items, not their content
        whole_page = (await mash.request("GET", f"/items/{items[HEALTH]}")).text
        assert OPINION in whole_page
    finally:
        await mash.close()
    # Ben's page shows the facts, says what was withheld from him, and not the opinion.
    ben = await person(world, "ben")
    try:
        page = await ben.request("GET", f"/items/{onward.item.item_id}")
        assert page.status_code == 200, page.text
        assert html.escape(plain["facts"]) in page.text
        assert "<li>professional_opinion</li>" in page.text
        assert OPINION not in page.text
    finally:
        await ben.close()
    async with httpx.AsyncClient(base_url=world.url, timeout=60) as http:
        checked = await http.post(
            f"/api/v1/deliveries/{items[SCHOOL]}/network-checks", headers=headers,
            json=body | {"agencies": [SCHOOL]},
        )  # fmt: skip
        assert checked.status_code == 403
        assert "answer" in checked.json()["errors"][0]["problem"]

    # The command line reads the same rows: each agency asked, answered, with the item.
    listed_cli = await cli(ex, "queue", "checks", "--la", LA, str(maya))
    assert listed_cli.exit_code == 0, listed_cli.output
    assert f"#{maya}: 2 network check(s)" in listed_cli.output
    for agency in (SCHOOL, HEALTH):
        line = next(x for x in listed_cli.output.splitlines() if x.strip().startswith(agency))
        assert f"answered: item #{items[agency]}, held, by Ms Patel, DSL" in line, line
    # ... and Ben's copy, read there, says what the agreement withheld from him.
    shown = await cli(ex, "queue", "show", "--la", LA, str(onward.item.item_id))
    assert shown.exit_code == 0, shown.output
    assert "withheld from you under the agreement: professional_opinion" in shown.output
    assert f"facts: {plain['facts']}" in shown.output
    assert OPINION not in shown.output
