"""Families informed, end to end through the real broker, gateway and consumer: a share
asks whether the family was told (web, API, command line) or is recorded later; each
caller sees the outstanding decisions of the queues they may see; a supervisor records
an exception on a team member's share; every decision is audited; the child's sharing
record keeps the exception and the family-facing summary leaves it out, with nothing of
what the author barred from parents; the gauges count what is outstanding and overdue.

Amira (sw-amara, Assessment Team 1, supervisor tm-jones) has, from the inbox world, a
police notification (the author: not to parents) and a school attendance update; this
module adds a second school update whose author consented to parents seeing it.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import html
from collections.abc import AsyncIterator
from zoneinfo import ZoneInfo

import httpx
import pytest
from prometheus_client import CollectorRegistry, generate_latest

from consumers.inbox.family_monitor import FamilyMonitor
from consumers.queue import QueueSelection
from safeguard.inbox_wiring import inbox_store
from safeguard.parties import LA, SCHOOL
from sgx.domain.calendar import CalendarSettings
from sgx.domain.family import DisclosureKind
from sgx.ops.metrics import FamilyMetrics
from sgx.wire import contract as c
from tests import samples
from tests.integration.inbox_world import CHILDREN, World, about, inbox_world
from tests.integration.test_author_consent import cli
from tests.integration.test_inbox_api import Person, person, token

pytestmark = pytest.mark.broker
AMIRA = CHILDREN["amira"]
CONSENTED = "Amira-fact: the school says the family may see this: 3 late marks."
TEAM = "Assessment Team 1"
# a moment an hour ago, in the LA's local time (a family told in the future is refused)
TOLD_AT = dt.datetime.now(ZoneInfo("Europe/London")) - dt.timedelta(hours=1)
TOLD_DAY = f"{TOLD_AT.day} {TOLD_AT:%B %Y}"


@pytest.fixture(scope="module")
async def world(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[World]:
    async with inbox_world(tmp_path_factory.mktemp("families")) as w:
        record = about(samples.attendance_update(), AMIRA, CONSENTED)
        record["sharing"]["onward_consent"] = ["PARENT_OR_CARER"]
        await w.exchange.publish(SCHOOL, c.ATTENDANCE_UPDATE, record)
        await w.exchange.wait_rows(w.rows + 2)
        yield w


async def amaras(world: World) -> dict[str, int]:
    """Amira's items in sw-amara's queue: police, school, consented (the school's second)."""
    async with await world.exchange.rt.queue_store(LA) as store:
        rows = await store.select(QueueSelection(recipients=frozenset({"sw-amara"})))
    police = [r.item_id for r in rows if r.notification_type == c.POLICE_NOTIFICATION]
    school = [r.item_id for r in rows if r.notification_type == c.ATTENDANCE_UPDATE]
    return {"police": police[0], "school": school[0], "consented": school[1]}


async def share(p: Person, item: int, to_name: str, purpose: str, **family: str) -> int:
    """Share ``item`` within the LA from the item page's form; the new share's id."""
    data = {"csrf_token": await p.csrf(f"/items/{item}"), "category": "LA_SOCIAL_CARE",
            "to_name": to_name, "purpose": purpose} | family  # fmt: skip
    answer = await p.request("POST", f"/items/{item}/share", data=data)
    assert answer.status_code == 303, answer.text
    return int(answer.headers["location"].split("share=")[1].split("#")[0])


def told_form(**changes: str) -> dict[str, str]:
    return {"family_outcome": "told", "family_informed_at": f"{TOLD_AT:%Y-%m-%dT%H:%M}",
            "family_informed_by": "Amara Osei", "family_method": "PHONE",
            "family_member": "Amira's mother (not the father)"} | changes  # fmt: skip


def text_of(page: httpx.Response) -> str:
    return html.unescape(page.text)


async def test_the_web_inbox_asks_records_and_prints_for_the_family(world: World) -> None:
    items = await amaras(world)
    amara, jones, ben = [await person(world, u) for u in ("amara", "jones", "ben")]
    try:
        told = await share(amara, items["consented"], "Early Help team", "to plan Amira's support",
                           **told_form())  # fmt: skip
        later = await share(amara, items["police"], "Youth Offending Service",
                            "secret-purpose: the father's court date")  # fmt: skip
        barred = await share(amara, items["police"], "School nurse team", "to plan health checks",
                             **told_form(family_method="LETTER"))  # fmt: skip

        page = text_of(await amara.request("GET", f"/items/{items['consented']}"))
        assert "told (Amira's mother (not the father)) by phone by Amara Osei" in page
        # the outstanding one: amara's and her supervisor's lists, nobody else's
        for p, sees in ((amara, True), (jones, True), (ben, False)):
            listed = text_of(await p.request("GET", "/family"))
            assert ("Youth Offending Service" in listed) == sees, listed
            assert "Early Help team" not in listed  # decided
        # the supervisor decides the exception on her team member's share
        data = {"csrf_token": await jones.csrf("/family"), "family_outcome": "not_told",
                "family_exception": "PREJUDICE_CRIMINAL_INVESTIGATION",
                "family_reason": "exception-reason: police interview on Thursday",
                "family_decided_by": "Tess Jones, team manager"}  # fmt: skip
        recorded = await jones.request("POST", f"/shares/{later}/family", data=data)
        assert recorded.status_code == 303, recorded.text
        assert "Youth Offending Service" not in text_of(await amara.request("GET", "/family"))
        bad = await amara.request(
            "POST", f"/shares/{later}/family",
            data={"csrf_token": await amara.csrf("/family"), "family_outcome": "not_told"},
        )  # fmt: skip
        assert bad.status_code == 422
        assert "exception: say which exception applies" in text_of(bad)

        # the professional record keeps the exception; the family's summary has no trace
        item_page = text_of(await amara.request("GET", f"/items/{items['police']}"))
        assert (
            "not told: telling the family may prejudice the investigation of a crime (decided by"
            " Tess Jones, team manager on"
        ) in item_page
        assert "exception-reason: police interview on Thursday" in item_page
        record = text_of(await amara.request("GET", f"/items/{items['police']}/child"))
        assert "prejudice the investigation of a crime" in record
        summary = text_of(
            await amara.request("GET", f"/items/{items['police']}/family-summary?print=1")
        )
        assert "Early Help team (our children's social care service)" in summary
        assert "to plan Amira's support" in summary
        assert "School attendance information from Hillside" in summary
        assert "School nurse team" in summary  # told, but of police material barred from
        assert "Information we hold about Amira" in summary  # parents: not even its kind
        assert f"{TOLD_DAY}, by letter" in summary
        for hidden in ("Youth Offending Service", "secret-purpose", "exception-reason",
                       "Tess Jones", "not the father", "Information from the police",
                       "Metropolitan", AMIRA.nhs_number, AMIRA.facts, CONSENTED):  # fmt: skip
            assert hidden not in summary, hidden
        # the supervisor sees only the routing facts of amara's item, as for the record
        routing = text_of(await jones.request("GET", f"/items/{items['police']}/family-summary"))
        assert "sealed for sw-amara" in routing
        assert "Early Help team" not in routing
    finally:
        for p in (amara, jones, ben):
            await p.close()
    async with await inbox_store(world.exchange.rt, LA) as store:
        audited = [
            (r["item_id"], r["reader"]) for r in await store.reads() if r["action"] == "family"
        ]
        found = await store.families.get(DisclosureKind.ONWARD_SHARE, str(later))
        history = await store.families.history(found.disclosure_id)
    assert (items["consented"], "sw-amara") in audited
    assert (items["police"], "tm-jones") in audited
    assert [(h.recorded_by, h.decision.informed) for h in history] == [("tm-jones", False)]
    assert barred != told


async def test_the_api_records_with_the_share_or_after_and_names_bad_fields(
    world: World,
) -> None:
    items = await amaras(world)
    headers = await token(world, "mosaic-family", "deliveries:read", "shares:write",
                          "sharing-record:read", "queue:all")  # fmt: skip
    bens = await token(world, "bens-system", "deliveries:read", "shares:write",
                       "queue:worker:sw-ben")  # fmt: skip
    url = f"/api/v1/deliveries/{items['school']}/shares"
    asked = {"category": "LA_SOCIAL_CARE", "to_name": "Family Support", "purpose": "api-purpose"}
    async with httpx.AsyncClient(base_url=world.url, timeout=30) as http:
        wrong = await http.post(
            url, headers=headers, json=asked | {"family": {"informed": True, "method": "PIGEON"}}
        )
        assert wrong.status_code == 422
        assert wrong.json()["errors"][0]["path"] == "body.family.method"
        no_decider = await http.post(
            url,
            headers=headers,
            json=asked
            | {
                "family": {
                    "informed": False,
                    "exception": "UNDUE_DELAY",
                    "reason": "the conference is today",
                }
            },
        )
        assert no_decider.status_code == 422  # a system must name who decided
        assert no_decider.json()["errors"] == [
            {"path": "body.family.decided_by", "problem": "say who decided"}
        ]
        made = await http.post(url, headers=headers, json=asked)
        assert made.status_code == 201, made.text
        share = made.json()
        assert share["status"] == "allowed"
        assert share["family"] is None
        outstanding = (await http.get("/api/v1/family/outstanding", headers=headers)).json()
        mine = [o for o in outstanding["items"] if o["ref"] == str(share["share_id"])]
        assert len(mine) == 1
        assert (mine[0]["team"], mine[0]["recipient_id"], mine[0]["overdue"]) == (
            TEAM, "sw-amara", False,
        )  # fmt: skip
        others = (await http.get("/api/v1/family/outstanding", headers=bens)).json()
        assert others["items"] == []
        family_url = f"/api/v1/shares/{share['share_id']}/family"
        assert (await http.get(family_url, headers=bens)).status_code == 404
        assert (await http.get(family_url, headers=headers)).json()["status"] == "outstanding"
        decision = {"informed": True, "informed_at": TOLD_AT.isoformat(),
                    "informed_by": "Amara Osei", "method": "EMAIL",
                    "decided_by": "Amara Osei"}  # fmt: skip
        recorded = await http.post(family_url, headers=headers, json=decision)
        assert recorded.status_code == 201, recorded.text
        body = recorded.json()
        assert (body["status"], body["current"]["method"], body["current"]["recorded_by"]) == (
            "informed", "EMAIL", "mosaic-family",
        )  # fmt: skip
        together = await http.post(url, headers=headers, json=asked | {"family": decision})
        assert together.status_code == 201
        assert together.json()["family"]["informed_by"] == "Amara Osei"
        read = (await http.get(f"/api/v1/shares/{share['share_id']}", headers=headers)).json()
        assert read["family"]["decision_id"] == body["current"]["decision_id"]
        summary = await http.get(
            f"/api/v1/deliveries/{items['school']}/family-summary", headers=headers
        )
        assert summary.status_code == 200
        lines = summary.json()["lines"]
        assert [line["why"] for line in lines].count("api-purpose") == 2
        assert all(AMIRA.facts not in str(line) for line in lines)


async def test_the_command_line_asks_when_sharing_and_records_later(world: World) -> None:
    items = await amaras(world)
    ex, item = world.exchange, str(items["school"])
    share = ("queue", "share", item, "--la", LA, "--to", "cms-team", "--purpose", "cli-purpose",
             "--by", "sw-amara")  # fmt: skip
    refused = await cli(ex, *share, "--told", "--exception", "undue_delay")
    assert refused.exit_code == 2, refused.output
    assert "an exception applies only when the family was not told" in refused.output
    plain = await cli(ex, *share)
    assert plain.exit_code == 0, plain.output
    assert "was the family told? record it: safeguard family record" in plain.output
    share_id = plain.output.split("safeguard family record --la la-camden ")[1].split()[0]
    outstanding = await cli(ex, "family", "outstanding", "--la", LA, "--worker", "sw-amara")
    assert f"onward_share {share_id} (item #{item}, sw-amara): to cms-team" in outstanding.output
    recorded = await cli(
        ex, "family", "record", share_id, "--la", LA, "--told",
        "--when", f"{TOLD_AT:%Y-%m-%d %H:%M}", "--told-by", "Amara Osei", "--how", "in_person",
        "--whom", "both parents",
    )  # fmt: skip
    assert recorded.exit_code == 0, recorded.output
    utc = TOLD_AT.replace(second=0, microsecond=0).astimezone(dt.UTC)
    assert f"told (both parents) in person by Amara Osei on {utc:%d %b %Y %H:%M} UTC" in (
        recorded.output
    )
    at_once = await cli(
        ex, *share, "--not-told", "--exception", "risk_to_child", "--reason",
        "the mother's partner reads her post", "--decided-by", "Tess Jones",
    )  # fmt: skip
    assert at_once.exit_code == 0, at_once.output
    assert "not told: telling the family would put the child at risk" in at_once.output
    history = await cli(ex, "family", "history", share_id, "--la", LA)
    assert "recorded by cli:Amara Osei" in history.output, history.output
    summary = await cli(ex, "family", "summary", item, "--la", LA)
    assert summary.exit_code == 0, summary.output
    assert summary.output.count("cli-purpose") == 1  # told of one; the other not at all
    assert "the mother's partner" not in summary.output
    assert "Information about Amira Test we have shared" in summary.output


async def test_the_gauges_count_outstanding_and_overdue_decisions_by_team(world: World) -> None:
    items = await amaras(world)
    amara = await person(world, "amara")
    try:
        await share(amara, items["school"], "Gauge team", "gauge-purpose")
    finally:
        await amara.close()
    served = generate_latest(world.inbox.registry).decode()

    def value(text: str, name: str) -> float | None:
        prefix = f'{name}{{team="{TEAM}"}} '
        found = [
            float(line[len(prefix) :]) for line in text.splitlines() if line.startswith(prefix)
        ]
        return found[0] if found else None

    # the served inbox's monitor refreshes every few seconds (SGX_MONITOR_INTERVAL_S)
    for _ in range(150):
        if (value(served, "sgx_family_decisions_outstanding") or 0) >= 1:
            break
        await asyncio.sleep(0.1)
        served = generate_latest(world.inbox.registry).decode()
    assert (value(served, "sgx_family_decisions_outstanding") or 0) >= 1
    assert value(served, "sgx_family_decisions_overdue") == 0
    registry = CollectorRegistry()
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=7)  # two working days have passed
    async with await inbox_store(world.exchange.rt, LA) as store:
        monitor = FamilyMonitor(
            store.families, FamilyMetrics(registry), calendar=CalendarSettings().calendar(),
            due_days=2, clock=lambda: later,
        )  # fmt: skip
        await monitor.refresh()
    counted = generate_latest(registry).decode()
    outstanding = value(counted, "sgx_family_decisions_outstanding")
    assert outstanding is not None
    assert outstanding >= 1
    assert value(counted, "sgx_family_decisions_overdue") == outstanding
