"""Network checks in a real headless Chromium (Debian's, driven by Playwright): the MASH
duty worker opens Maya's contact (open to no one), rates it, asks the school and the
police with the family-informed decision (an exception), sees each agency asked with its
deadline, then the school's answer arrive on the item. Screenshots are kept in the
test's temporary directory (``network-checks-asked.png``, ``network-checks-answered.png``).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from playwright.async_api import Browser, async_playwright, expect

from safeguard.parties import LA, POLICE, SCHOOL
from sgx.wire import contract as c
from tests.integration.inbox_world import World, inbox_world
from tests.integration.test_inbox_api import items_of
from tests.integration.test_inbox_browser import (
    CHROMIUM,
    accessibility_problems,
    localhost,
    sign_in,
)

pytestmark = pytest.mark.broker


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as pw:
        launched = await pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield launched
        await launched.close()


@pytest.fixture(scope="module")
async def world(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[World]:
    async with inbox_world(tmp_path_factory.mktemp("netchecks-browser")) as w:
        yield w


async def test_the_mash_duty_worker_rates_asks_and_sees_answers_arrive(
    world: World, browser: Browser, tmp_path: Path
) -> None:
    page = await (await browser.new_context()).new_page()
    await sign_in(page, localhost(world), "mash")
    await page.get_by_role("link", name="Maya Test").first.click()
    await page.get_by_role("link", name="Network checks: rate this contact").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text(
        "Network checks for this contact"
    )
    await expect(page.get_by_text("No agency has been asked yet.")).to_be_visible()

    await page.get_by_label("Rating").select_option("AMBER")
    await page.get_by_label(SCHOOL).check()
    await page.get_by_label(POLICE).check()
    await page.get_by_label("What you need to know").fill("Attendance; incidents at the home")
    await page.get_by_label("Not told: an exception applies").check()
    await page.get_by_label("Which exception").select_option("RISK_TO_CHILD")
    await page.get_by_label("Why it applies").fill("the allegation is against the father")
    await page.get_by_role("button", name="Ask the agencies").click()

    asked = page.get_by_role("region", name="Agencies asked (2)")
    await expect(asked).to_be_visible(timeout=25_000)
    rows = asked.locator("tbody tr")
    await expect(rows).to_have_count(2)
    await expect(rows.filter(has_text=SCHOOL)).to_contain_text("asked, awaiting an answer")
    await expect(rows.filter(has_text=POLICE)).to_contain_text("Amber")
    await expect(rows.first).to_contain_text("Family: not told")
    assert await accessibility_problems(page) == []
    await page.screenshot(path=tmp_path / "network-checks-asked.png", full_page=True)

    (maya,) = await items_of(world, f"mash:{LA}")
    request_id = await _request_to(world, maya, SCHOOL)
    await world.exchange.publish(SCHOOL, c.INFORMATION_ANSWER, {
        "answer_id": uuid.uuid4(), "request_id": request_id, "local_authority": LA,
        "outcome": "HELD", "facts": "Attendance 64% this term",
        "professional_opinion": "Maya seems withdrawn", "restrictions": [],
        "answered_by": "Ms Patel, DSL", "automatic": False, "answered_at": datetime.now(UTC),
    })  # fmt: skip
    school_row = rows.filter(has_text=SCHOOL)
    for _ in range(100):  # the page reads the answers each time it is shown
        await page.reload()
        if "Information held" in (await school_row.inner_text()):
            break
        await asyncio.sleep(0.2)
    await expect(school_row).to_contain_text("Information held")
    await expect(school_row).to_contain_text("Facts: Attendance 64% this term")
    await expect(school_row).to_contain_text("Their professional opinion: Maya seems withdrawn")
    await expect(rows.filter(has_text=POLICE)).to_contain_text("asked, awaiting an answer")
    await page.screenshot(path=tmp_path / "network-checks-answered.png", full_page=True)

    # The answer is an item of the MASH queue: opened from the check, shared onward only
    # as its restrictions allow (to the police: the school's consent is needed).
    await school_row.get_by_role("link", name="Open the answer").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text(
        "Information answer about the child of a network check"
    )
    await expect(page.get_by_text("Attendance 64% this term")).to_be_visible()
    await page.get_by_label("Recipient category").select_option("OTHER_PROFESSIONAL")
    await page.get_by_label("Recipient", exact=True).fill("met-police")
    await page.get_by_label("Purpose").fill("strategy discussion")
    await page.get_by_role("button", name="Ask the exchange").click()
    shared = page.locator(".share").first
    await expect(shared).to_contain_text("Refused", timeout=25_000)
    await expect(shared).to_contain_text("THIRD_PARTY_AUTHOR_CONSENT")
    assert await accessibility_problems(page) == []
    await page.screenshot(path=tmp_path / "network-checks-answer-item.png", full_page=True)

    amara = await (await browser.new_context()).new_page()
    await sign_in(amara, localhost(world), "amara")
    answer = await amara.goto(f"{localhost(world)}/items/{maya}/network-checks")
    assert answer is not None
    assert answer.status == 404


async def _request_to(world: World, item_id: int, agency: str) -> uuid.UUID:
    """The request id of the check asked of ``agency`` from the item (the LA's record)."""
    from safeguard.inbox_wiring import inbox_store

    async with await world.exchange.rt.queue_store(LA) as queue:
        item = await queue.get(item_id)
    async with await inbox_store(world.exchange.rt, LA) as store:
        found = [d for d in await store.families.of([item.notification_id]) if d.to_name == agency]
    (disclosure,) = found
    return uuid.UUID(disclosure.ref)
