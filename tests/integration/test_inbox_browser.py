"""The inbox in a real headless Chromium (Debian's, driven by Playwright; no downloaded
browser): sign in as the allocated worker with a local account and through an OpenID
provider the test starts, see an item with its restrictions and what was withheld,
acknowledge it, ask for a share to the parents and see it refused with the restriction
named, fail to reach the item as another worker, and find the share on the child's
sharing record. Screenshots of the queue and the item page are kept in the test's
temporary directory (``inbox-queue.png``, ``inbox-item.png``, ...)."""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from axe_playwright_python.async_playwright import Axe
from joserfc import jwt
from joserfc.jwk import RSAKey
from playwright.async_api import Browser, Page, async_playwright, expect

from producers.consent_requests import ConsentRequests
from safeguard import samples
from safeguard.inbox_wiring import inbox_store
from safeguard.outbox_wiring import running_outbox
from safeguard.parties import GP, HEALTH, LA, LA_GSS
from sgx.domain.identifiers import make_nhs_number
from sgx.wire import contract as c
from tests.integration.inbox_world import CHILDREN, PASSWORD, World, inbox_world
from tests.integration.oidc_provider import OpenIDProvider
from tests.integration.test_author_consent import asked_of
from tests.integration.test_inbox_api import mentions

pytestmark = pytest.mark.broker
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# axe-core's rules for WCAG 2.0, 2.1 and 2.2 at levels A and AA
WCAG_AA = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa"]


async def accessibility_problems(page: Page) -> list[str]:
    """axe-core's WCAG A/AA violations on the page: rule id, impact and the first element."""
    results = await Axe().run(page, options={"runOnly": {"type": "tag", "values": WCAG_AA}})
    return [
        f"{v['id']} ({v['impact']}): {v['help']} at {v['nodes'][0]['target']}"
        for v in results.response["violations"]
    ]


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    if not shutil.which(CHROMIUM):
        pytest.fail(f"Debian's chromium is not installed at {CHROMIUM} (scripts/ensure-tools.sh)")
    async with async_playwright() as pw:
        launched = await pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield launched
        await launched.close()


@pytest.fixture(scope="module")
async def provider() -> AsyncIterator[OpenIDProvider]:
    people = {
        "sw-amara": {
            "name": "Amara Osei",
            "sgx_role": "social_worker",
            "sgx_team": "Assessment Team 1",
            "sgx_la": "la-camden",
        },
        "outsider": {"name": "Ola Other", "sgx_role": "social_worker", "sgx_la": "la-islington"},
        "no-role": {"name": "Nora Norole", "sgx_la": "la-camden"},
    }
    async with OpenIDProvider("sgx-inbox", "inbox-secret", people) as running:
        yield running


@pytest.fixture(scope="module")
async def world(
    tmp_path_factory: pytest.TempPathFactory, provider: OpenIDProvider
) -> AsyncIterator[World]:
    async with inbox_world(
        tmp_path_factory.mktemp("inbox-browser"),
        oidc_issuer=provider.issuer,
        oidc_client_id="sgx-inbox",
        oidc_client_secret="inbox-secret",
        oidc_display_name="Camden sign-in",
        api_audience="sgx-inbox-api",
        api_clients={"mosaic": ["deliveries:read", "queue:team:Assessment%20Team%201"]},
    ) as w:
        yield w


def localhost(world: World) -> str:
    """The inbox's URL as localhost: browsers keep Secure cookies over http only there."""
    return world.url.replace("127.0.0.1", "localhost")


async def sign_in(page: Page, base: str, username: str) -> None:
    await page.goto(f"{base}/login")
    await page.get_by_label("Username").fill(username)
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("heading", name="Your queue")).to_be_visible()


async def test_the_allocated_worker_reads_acknowledges_and_is_refused_a_share(
    world: World, browser: Browser, tmp_path: Path
) -> None:
    base = localhost(world)
    page = await (await browser.new_context()).new_page()
    await sign_in(page, base, "amara")
    rows = page.locator("table.queue tbody tr")
    await expect(rows).to_have_count(2)
    await expect(rows.first).to_contain_text("immediate")  # urgency first
    await expect(rows.first).to_contain_text("Police notification")
    await page.screenshot(path=tmp_path / "inbox-queue.png", full_page=True)

    await rows.first.get_by_role("link", name="Amira Test").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text(
        "Police notification about Amira Test"
    )
    restrictions = page.get_by_role("region", name="Restrictions on onward use")
    await expect(restrictions).to_contain_text("Not to parents or carers")
    await expect(restrictions).to_contain_text("Police: confidential to proceedings")
    await expect(restrictions).to_contain_text("Nothing was withheld.")
    await expect(page.get_by_role("region", name="Facts")).to_contain_text(
        "officers attended flat 3"
    )
    await expect(page.get_by_role("region", name="Professional opinion")).to_be_visible()
    await expect(page.get_by_role("region", name="Who wrote it")).to_contain_text(
        "Metropolitan Police Service"
    )
    await page.screenshot(path=tmp_path / "inbox-item.png", full_page=True)
    item_url = page.url

    await page.get_by_role("button", name="Acknowledge").click()
    await expect(page.locator("p.meta")).to_contain_text("acknowledged by sw-amara")

    await page.get_by_label("Recipient category").select_option("PARENT_OR_CARER")
    await page.get_by_label("Recipient", exact=True).fill("the parents")
    await page.get_by_label("Purpose").fill("tell the family what was shared")
    await page.get_by_role("button", name="Ask the exchange").click()
    status = page.get_by_role("status")
    await expect(status).to_contain_text("Refused", timeout=25_000)
    await expect(status).to_contain_text("Not to parents or carers")
    await page.screenshot(path=tmp_path / "inbox-share-refused.png", full_page=True)

    await page.get_by_role("link", name="Everything received and shared about this child").click()
    shared = page.get_by_role("region", name="Shared onward (1)")
    await expect(shared).to_contain_text("the parents (Parent or carer)")
    await expect(shared).to_contain_text("refused")
    await expect(page.get_by_role("region", name="Received (2)")).to_be_visible()
    await page.get_by_role("link", name="Printable view").click()
    await expect(page.get_by_role("banner")).to_be_hidden()
    await page.screenshot(path=tmp_path / "inbox-sharing-record.png", full_page=True)

    other = await (await browser.new_context()).new_page()
    await sign_in(other, base, "ben")
    answer = await other.goto(item_url)
    assert answer is not None
    assert answer.status == 404
    body = await other.content()
    assert "Amira" not in body
    assert "flat 3" not in body


async def test_the_worker_asks_the_authors_consent_and_then_shares(
    world: World, browser: Browser, tmp_path: Path
) -> None:
    """Leo's health update (the Royal Free's): a share to his mother is refused for want
    of the author's consent; ben asks for it from the item page; the trust grants it;
    the page shows the grant, and the same share, asked again, is allowed."""
    page = await (await browser.new_context()).new_page()
    await sign_in(page, localhost(world), "ben")
    await page.get_by_role("link", name="Leo Test").first.click()
    await page.get_by_label("Recipient category").select_option("PARENT_OR_CARER")
    await page.get_by_label("Recipient", exact=True).fill("Leo's mother")
    await page.get_by_label("Purpose").fill("child in need review")
    await page.get_by_role("button", name="Ask the exchange").click()
    await expect(page.get_by_role("status")).to_contain_text("Refused", timeout=25_000)

    await page.get_by_role("button", name="Ask the author's consent").click()
    status = page.get_by_role("status")
    await expect(status).to_contain_text(f"Asked {HEALTH} for consent", timeout=25_000)
    await expect(status).to_contain_text("THIRD_PARTY_AUTHOR_CONSENT")
    consents = page.get_by_role("region", name="The author's consent")
    await expect(consents).to_contain_text("Parent or carer for “child in need review”")
    await expect(page.get_by_role("button", name="Ask the author's consent")).to_have_count(0)

    async with running_outbox(world.exchange.rt, HEALTH) as trust:
        (request,) = await asked_of(trust, HEALTH)
        assert (request.category, request.purpose) == ("PARENT_OR_CARER", "child in need review")
        await ConsentRequests(trust.store.engine).answer(
            trust, request.request_id, granted=True, answered_by="Dr Rao (named nurse)"
        )
        reshare = page.get_by_role(
            "button", name="Ask for this share again, with the author's consent"
        )
        for _ in range(100):  # the page looks the answer up each time it is shown
            await page.reload()
            if await reshare.count():
                break
            await asyncio.sleep(0.2)
    await expect(page.get_by_role("status")).to_contain_text(f"{HEALTH} granted consent")
    await expect(consents).to_contain_text("Granted")
    await expect(consents).to_contain_text("Granted by Dr Rao (named nurse)")
    assert await accessibility_problems(page) == []
    await page.screenshot(path=tmp_path / "inbox-consent-granted.png", full_page=True)

    await reshare.click()
    status = page.get_by_role("status")
    await expect(status).to_contain_text("Allowed", timeout=25_000)
    await expect(status).to_contain_text(str(request.request_id))
    await page.screenshot(path=tmp_path / "inbox-consent-share-allowed.png", full_page=True)


async def test_the_supervisor_sees_what_was_withheld(world: World, browser: Browser) -> None:
    page = await (await browser.new_context()).new_page()
    await sign_in(page, localhost(world), "jones")
    await (
        page.get_by_role("row")
        .filter(has_text="Police notification")
        .filter(has_text="tm-jones")
        .get_by_role("link")
        .click()
    )
    withheld = page.get_by_role("region", name="Restrictions on onward use")
    await expect(withheld).to_contain_text("assessment.child_views.what_was_said")
    await expect(withheld).not_to_contain_text("Nothing was withheld.")


async def test_the_supervisor_sees_a_workers_row_by_its_routing_facts_until_revoked(
    world: World, browser: Browser, tmp_path: Path
) -> None:
    """The supervisor's queue lists the team's rows; a worker's row opens as its routing
    facts only (whose it is, a link to the supervisor's own copy), never the child; once
    the supervisor's sessions are revoked the next page is the sign-in page."""
    page = await (await browser.new_context()).new_page()
    await sign_in(page, localhost(world), "jones")
    rows = page.get_by_role("row").filter(has_text="sw-amara")
    await expect(rows.first).to_be_visible()
    await page.screenshot(path=tmp_path / "inbox-supervisor-queue.png", full_page=True)
    await rows.first.get_by_role("link").first.click()
    await expect(page.get_by_text("sealed for sw-amara").first).to_be_visible()
    assert mentions(await page.content(), CHILDREN["amira"]) == [], "nothing of the child"
    await page.screenshot(path=tmp_path / "inbox-supervisor-routing-facts.png", full_page=True)

    async with await inbox_store(world.exchange.rt, LA) as store:
        assert await store.sessions.end_worker("tm-jones", "revoked") >= 1
    await page.reload()
    await expect(page.get_by_role("button", name="Sign in")).to_be_visible()
    assert page.url.endswith("/login") or "/login" in page.url
    await page.context.close()


async def test_sign_in_through_the_openid_provider(
    world: World, browser: Browser, provider: OpenIDProvider
) -> None:
    page = await (await browser.new_context()).new_page()
    await page.goto(f"{localhost(world)}/login")
    await page.get_by_role("link", name="Sign in with Camden sign-in").click()
    await page.get_by_role("button", name="Sign in as sw-amara").click()
    await expect(page.get_by_role("heading", name="Your queue")).to_be_visible()
    await expect(page.get_by_role("banner")).to_contain_text("Amara Osei (Social worker")
    await page.get_by_role("link", name="Show acknowledged items too").click()
    await expect(page.locator("table.queue tbody tr")).to_have_count(2)
    assert provider.checks["pkce"] >= 1
    assert provider.checks["authorize"] >= 1


async def test_openid_sign_in_refuses_a_wrong_nonce_another_la_and_grants_no_role_nothing(
    world: World, browser: Browser, provider: OpenIDProvider
) -> None:
    async def attempt(person: str) -> Page:
        page = await (await browser.new_context()).new_page()
        await page.goto(f"{localhost(world)}/login")
        await page.get_by_role("link", name="Sign in with Camden sign-in").click()
        await page.get_by_role("button", name=f"Sign in as {person}").click()
        return page

    provider.wrong_nonce = True
    try:
        page = await attempt("sw-amara")
        await expect(page.get_by_role("alert")).to_contain_text(
            "sign-in with the identity provider failed"
        )
    finally:
        provider.wrong_nonce = False
    page = await attempt("outsider")
    await expect(page.get_by_role("alert")).to_contain_text("another local authority")
    page = await attempt("no-role")
    await expect(page.get_by_role("heading", name="Your queue")).to_be_visible()
    await expect(page.get_by_text("Nothing in your queue.")).to_be_visible()


async def test_every_page_passes_axe_cores_wcag_aa_checks_and_works_by_keyboard(
    world: World, browser: Browser
) -> None:
    page = await (await browser.new_context()).new_page()
    base = localhost(world)
    await page.goto(f"{base}/login")
    assert await accessibility_problems(page) == []
    await page.keyboard.press("Tab")  # the skip link comes first, and shows when focused
    await expect(page.get_by_role("link", name="Skip to content")).to_be_focused()
    await page.keyboard.press("Tab")
    await page.keyboard.press("Tab")  # past the single sign-on link, to the username
    await expect(page.get_by_label("Username")).to_be_focused()
    await page.keyboard.type("jones")
    await page.keyboard.press("Tab")
    await page.keyboard.type(PASSWORD)
    await page.keyboard.press("Enter")
    await expect(page.get_by_role("heading", name="Your queue")).to_be_visible()
    assert await accessibility_problems(page) == []
    await page.goto(f"{base}/queue?show=all")
    await page.locator("table.queue a").first.click()
    assert await accessibility_problems(page) == []
    await page.get_by_role("link", name="Everything received and shared about this child").click()
    assert await accessibility_problems(page) == []
    await page.goto(f"{base}/items/999999")
    assert await accessibility_problems(page) == []
    # the checker itself finds what it should: an unlabelled field, a page with no language
    await page.set_content("<html><body><main><input></main></body></html>")
    found = " ".join(await accessibility_problems(page))
    assert "label (critical)" in found
    assert "html-has-lang" in found


async def test_the_mash_duty_worker_acknowledges_a_referral_and_records_the_decision(
    world: World, browser: Browser, tmp_path: Path
) -> None:
    """A GP refers a child open to no LA, living in Camden: the MASH queue shows when to
    acknowledge it; the duty worker acknowledges it and records the decision, which the
    gateway passes to the GP only; the page passes axe-core's checks."""
    ex = world.exchange
    child = samples.child(make_nhs_number(7505), None, given="Rosa", family="Test")
    child["residence_la"] = LA_GSS
    referral_id = await ex.publish(GP, c.REFERRAL, samples.referral(child))
    await ex.wait_items(f"mash:{LA}", 2)
    page = await (await browser.new_context()).new_page()
    base = localhost(world)
    await sign_in(page, base, "mash")
    row = page.locator("table.queue tbody tr", has_text="Rosa Test")
    await expect(row).to_contain_text("Acknowledge by")
    await row.get_by_role("link", name="Rosa Test").click()
    await expect(page.get_by_role("heading", name="Respond to the referrer")).to_be_visible()
    assert await accessibility_problems(page) == []
    contact = "Camden MASH, 020 7974 3317"
    await page.locator("#ack_contact").fill(contact)  # no SGX_INBOX_REFERRAL_CONTACT here
    await page.get_by_role("button", name="Acknowledge to the referrer").click()
    told = page.locator("li.response")
    await expect(told).to_have_count(1)
    await page.get_by_label("Decision").select_option("EARLY_HELP")
    await page.get_by_label("Reasons, for the referrer").fill("Early help will support Rosa.")
    await page.locator("#decision_contact").fill(contact)
    await page.get_by_role("button", name="Tell the referrer the decision").click()
    await expect(told).to_have_count(2)
    for _ in range(100):  # the gateway's receipts, shown when the page is read again
        if await page.locator("li.response-delivered").count() == 2:
            break
        await asyncio.sleep(0.2)
        await page.reload()
    await expect(page.locator("li.response-delivered")).to_have_count(2)
    await expect(page.locator("#referral")).to_contain_text("Decided: Early help")
    await expect(page.locator("#referral")).not_to_contain_text("Acknowledge to the referrer")
    await page.screenshot(path=tmp_path / "inbox-referral.png", full_page=True)
    assert await accessibility_problems(page) == []
    await page.goto(f"{base}/queue")
    decided = page.locator("table.queue tbody tr", has_text="Rosa Test")
    await expect(decided).to_contain_text("Decided: Early help")
    assert str(referral_id)  # the GP's own id: what it hears back under (test_referral_outcomes)


async def test_a_systems_client_credentials_token_from_the_provider_holds_its_scopes(
    world: World, provider: OpenIDProvider
) -> None:
    provider.machines["mosaic"] = (
        "mosaic-secret",
        "deliveries:read queue:team:Assessment%20Team%201",
    )
    async with httpx.AsyncClient() as http:
        granted = await http.post(
            f"{provider.issuer}/token",
            data={"grant_type": "client_credentials"},
            auth=("mosaic", "mosaic-secret"),
        )
        assert granted.status_code == 200
        access = granted.json()["access_token"]
        listed = await http.get(
            f"{world.url}/api/v1/deliveries", headers={"authorization": f"Bearer {access}"}
        )
        assert listed.status_code == 200
        recipients = {i["recipient_id"] for i in listed.json()["items"]}
        assert recipients == {"sw-amara", "sw-ben", "tm-jones"}
        stranger = RSAKey.generate_key(2048, auto_kid=True)
        now = int(time.time())
        forged = jwt.encode(
            {"alg": "RS256", "kid": stranger.kid},
            {
                "iss": provider.issuer,
                "aud": provider.audience,
                "client_id": "mosaic",
                "scope": "deliveries:read queue:all",
                "iat": now,
                "exp": now + 300,
            },
            stranger,
        )
        id_token = provider._sign(  # what a person's sign-in gets: no access token
            {"iss": provider.issuer, "aud": provider.audience, "client_id": "mosaic",
             "scope": "deliveries:read queue:all", "iat": now, "exp": now + 300}
        )  # fmt: skip
        for bad in (
            provider.machine_token("mosaic", "deliveries:read queue:all", exp=now - 10),
            provider.machine_token("mosaic", "deliveries:read queue:all", nbf=now + 600),
            provider.machine_token("mosaic", "deliveries:read queue:all", aud="another-api"),
            provider.machine_token("mosaic", "deliveries:read queue:all", iss="https://evil"),
            forged,
            id_token,
        ):
            answer = await http.get(
                f"{world.url}/api/v1/deliveries", headers={"authorization": f"Bearer {bad}"}
            )
            assert answer.status_code == 401, answer.text
        stranger_client = provider.machine_token("intruder", "deliveries:read queue:all")
        answer = await http.get(
            f"{world.url}/api/v1/deliveries",
            headers={"authorization": f"Bearer {stranger_client}"},
        )
        assert answer.status_code == 403, "a client this LA does not admit"
        greedy = provider.machine_token(
            "mosaic", "deliveries:read queue:all queue:team:Assessment%20Team%201"
        )
        answer = await http.get(
            f"{world.url}/api/v1/deliveries", headers={"authorization": f"Bearer {greedy}"}
        )
        assert answer.status_code == 200
        assert {i["recipient_id"] for i in answer.json()["items"]} == recipients, (
            "queue:all is not among mosaic's scopes here: cut to its team"
        )
    assert provider.checks["client_credentials"] == 1


async def test_a_rotated_provider_key_is_fetched_when_a_token_names_it(
    world: World, provider: OpenIDProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The inbox caches the provider's key set; a token signed with a key it has not seen
    makes it read the set again (not more often than every _REFRESH_S)."""
    async with httpx.AsyncClient() as http:
        before = provider.machine_token("mosaic", "deliveries:read")
        ok = await http.get(
            f"{world.url}/api/v1/deliveries", headers={"authorization": f"Bearer {before}"}
        )
        assert ok.status_code == 200  # the key set is cached now
        provider.rotate_key()
        after = provider.machine_token("mosaic", "deliveries:read")
        monkeypatch.setattr("consumers.inbox.oidc._REFRESH_S", 3600.0)
        stale = await http.get(
            f"{world.url}/api/v1/deliveries", headers={"authorization": f"Bearer {after}"}
        )
        assert stale.status_code == 401, "not refetched on demand more often than allowed"
        monkeypatch.setattr("consumers.inbox.oidc._REFRESH_S", 0.0)
        fresh = await http.get(
            f"{world.url}/api/v1/deliveries", headers={"authorization": f"Bearer {after}"}
        )
        assert fresh.status_code == 200, fresh.text
