"""The inbox over HTTP, through the real broker, gateway and consumer: who sees what,
cursor paging while deliveries arrive, scopes, CSRF and cookie flags, JSON errors, onward
shares, the read audit, and a scan for data the caller may not see."""

from __future__ import annotations

import asyncio
import html
import logging
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import generate_latest

from consumers.queue import QueueSelection
from safeguard.inbox_wiring import inbox_store
from safeguard.parties import LA, SCHOOL
from sgx.wire import contract as c
from tests import samples
from tests.integration.inbox_world import CHILDREN, PASSWORD, Child, World, about, inbox_world
from tests.integration.test_author_consent import cli

pytestmark = pytest.mark.broker
SHARE = {"category": "LA_SOCIAL_CARE", "to_name": "x", "purpose": "tell the family"}


@pytest.fixture(scope="module")
async def world(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[World]:
    async with inbox_world(tmp_path_factory.mktemp("inbox-api")) as w:
        yield w


class Person:
    """A browser-like HTTP session: keeps the session cookie by hand, because httpx (rightly)
    sends a Secure cookie over https only, and the test server is plain http on loopback."""

    def __init__(self, base: str) -> None:
        self.http = httpx.AsyncClient(base_url=base)
        self.cookie = ""
        self.last_set_cookie = ""

    async def request(self, method: str, url: str, **kw: Any) -> httpx.Response:
        headers = {"cookie": self.cookie} if self.cookie else {}
        answer = await self.http.request(method, url, headers=headers, **kw)
        if set_cookie := answer.headers.get("set-cookie"):
            self.last_set_cookie = set_cookie
            self.cookie = set_cookie.split(";", 1)[0]
        return answer

    async def csrf(self, url: str = "/login") -> str:
        page = await self.request("GET", url)
        found = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        assert found, f"no CSRF token on {url}"
        return found.group(1)

    async def sign_in(self, username: str) -> None:
        token = await self.csrf()
        data = {"csrf_token": token, "username": username, "password": PASSWORD}
        answer = await self.request("POST", "/login", data=data)
        assert answer.status_code == 303, answer.text

    async def close(self) -> None:
        await self.http.aclose()


async def person(world: World, username: str) -> Person:
    p = Person(world.url)
    await p.sign_in(username)
    return p


async def token(world: World, name: str, *scopes: str) -> dict[str, str]:
    async with await inbox_store(world.exchange.rt, LA) as store:
        return {"authorization": f"Bearer {await store.add_client(name, scopes)}"}


async def items_of(world: World, recipient: str) -> list[int]:
    async with await world.exchange.rt.queue_store(LA) as store:
        rows = await store.select(QueueSelection(recipients=frozenset({recipient})))
    return [r.item_id for r in rows]


def mentions(text: str, child: Child) -> list[str]:
    """Which of the child's identifying values or facts appear in ``text``."""
    values = [child.nhs_number, child.upn, f"{child.given} Test", child.facts]
    return [v for v in values if v and (v in text or html.escape(v) in text)]


async def test_each_person_sees_their_own_queue_by_role(world: World) -> None:
    expected = {  # username: the children whose data they may see
        "amara": {"amira"},
        "ben": {"leo"},
        "jones": {"amira", "leo"},  # supervisor of Assessment Team 1
        "mash": {"maya"},
    }
    for username, visible in expected.items():
        p = await person(world, username)
        try:
            page = (await p.request("GET", "/queue?show=all")).text
        finally:
            await p.close()
        for name, child in CHILDREN.items():
            shown = f"{child.given} Test" in page
            assert shown == (name in visible), f"{username}'s queue and {name}"


async def test_another_workers_item_is_not_reachable_by_url(world: World) -> None:
    amaras = await items_of(world, "sw-amara")
    ben = await person(world, "ben")
    try:
        for item in amaras:
            for url in (f"/items/{item}", f"/items/{item}/child"):
                answer = await ben.request("GET", url)
                assert answer.status_code == 404
                assert mentions(answer.text, CHILDREN["amira"]) == []
            ack = await ben.request(
                "POST", f"/items/{item}/ack", data={"csrf_token": await ben.csrf("/queue")}
            )
            assert ack.status_code == 404
    finally:
        await ben.close()
    async with await world.exchange.rt.queue_store(LA) as store:
        assert [(await store.get(i)).status for i in amaras] == ["unread"] * len(amaras)


async def test_session_cookie_flags_and_csrf_are_enforced(world: World) -> None:
    p = Person(world.url)
    try:
        await p.request("GET", "/login")
        flags = [f.strip().lower() for f in p.last_set_cookie.split(";")]
        assert {"httponly", "secure", "samesite=lax"} <= set(flags), p.last_set_cookie
        refused = await p.request(
            "POST", "/login", data={"username": "amara", "password": PASSWORD}
        )
        assert refused.status_code == 403
        assert (await p.request("GET", "/queue")).status_code == 303  # still signed out
        await p.sign_in("amara")
        item = (await items_of(world, "sw-amara"))[-1]
        forged = await p.request("POST", f"/items/{item}/ack", data={"csrf_token": "guess"})
        assert forged.status_code == 403
        async with await world.exchange.rt.queue_store(LA) as store:
            assert (await store.get(item)).status == "unread"
        ok = await p.request(
            "POST", f"/items/{item}/ack", data={"csrf_token": await p.csrf("/queue")}
        )
        assert ok.status_code == 303
        async with await world.exchange.rt.queue_store(LA) as store:
            acked = await store.get(item)
        assert (acked.status, acked.acked_by) == ("acked", "sw-amara")
    finally:
        await p.close()


async def test_a_wrong_password_signs_nobody_in(world: World) -> None:
    p = Person(world.url)
    try:
        data = {"csrf_token": await p.csrf(), "username": "amara", "password": "not it at all"}
        answer = await p.request("POST", "/login", data=data)
        assert answer.status_code == 401
        assert "wrong" in answer.text
        assert (await p.request("GET", "/queue")).status_code == 303
    finally:
        await p.close()


async def test_scopes_hold(world: World) -> None:
    ben_only = await token(world, "ben-system", "deliveries:read", "queue:worker:sw-ben")
    team = await token(world, "team-system", "deliveries:read", "queue:team:Assessment Team 1")
    async with httpx.AsyncClient(base_url=world.url) as http:
        listed = (await http.get("/api/v1/deliveries", headers=ben_only)).json()["items"]
        assert {i["recipient_id"] for i in listed} == {"sw-ben"}
        amaras = await items_of(world, "sw-amara")
        assert (
            await http.get(f"/api/v1/deliveries/{amaras[0]}", headers=ben_only)
        ).status_code == 404
        own = listed[0]["item_id"]
        assert (await http.get(f"/api/v1/deliveries/{own}", headers=ben_only)).status_code == 200
        for method, url, body in (
            ("POST", f"/api/v1/deliveries/{own}/ack", None),
            ("POST", f"/api/v1/deliveries/{own}/shares", SHARE),
            ("GET", f"/api/v1/deliveries/{own}/sharing-record", None),
        ):
            answer = await http.request(method, url, headers=ben_only, json=body)
            assert answer.status_code == 403, url
            assert answer.json()["errors"][0]["problem"].startswith("this client's scope")
        team_rows = (await http.get("/api/v1/deliveries", headers=team)).json()["items"]
        assert {i["recipient_id"] for i in team_rows} == {"sw-amara", "sw-ben", "tm-jones"}
        assert (await http.get("/api/v1/deliveries")).status_code == 401
        bad = {"authorization": "Bearer sgxi_not-a-real-token"}
        assert (await http.get("/api/v1/deliveries", headers=bad)).status_code == 401


async def test_errors_are_json_with_a_field_path_and_echo_nothing(world: World) -> None:
    headers = await token(world, "cms", "deliveries:read", "shares:write", "queue:all")
    item = (await items_of(world, "sw-amara"))[0]
    async with httpx.AsyncClient(base_url=world.url) as http:
        sent = {
            "category": "NEIGHBOURS-xyzzy",
            "to_name": "Secret Name 42",
            "purpose": "p",
            "extra": "Private-99",
        }
        answer = await http.post(f"/api/v1/deliveries/{item}/shares", headers=headers, json=sent)
        assert answer.status_code == 422
        paths = {e["path"] for e in answer.json()["errors"]}
        assert paths == {"body.category", "body.extra"}
        for value in ("NEIGHBOURS-xyzzy", "Secret Name 42", "Private-99"):
            assert value not in answer.text
        limit = await http.get("/api/v1/deliveries?limit=9999", headers=headers)
        assert limit.status_code == 422
        assert limit.json()["errors"][0]["path"] == "query.limit"
        missing = await http.get("/api/v1/deliveries/999999", headers=headers)
        assert missing.status_code == 404
        assert "errors" in missing.json()


async def test_fetching_one_opens_it_and_audits_the_read(world: World) -> None:
    headers = await token(world, "mosaic", "deliveries:read", "queue:all")
    item = (await items_of(world, "sw-amara"))[0]
    async with httpx.AsyncClient(base_url=world.url) as http:
        listed = (await http.get("/api/v1/deliveries?limit=500", headers=headers)).text
        for child in CHILDREN.values():
            assert mentions(listed, child) == [], "a listing carries no child data"
        answer = await http.get(f"/api/v1/deliveries/{item}", headers=headers)
    assert answer.status_code == 200
    delivery = answer.json()
    assert delivery["notification"]["assessment"]["facts"] == CHILDREN["amira"].facts
    assert {r["code"] for r in delivery["restriction_texts"]} >= {"NOT_TO_PARENTS"}
    async with await inbox_store(world.exchange.rt, LA) as store:
        reads = await store.reads(item)
    assert ("mosaic", "system", "fetched") in {
        (r["reader"], r["reader_kind"], r["action"]) for r in reads
    }


async def test_an_onward_share_over_the_api_gets_the_gateways_answer(world: World) -> None:
    headers = await token(
        world, "eclipse", "deliveries:read", "shares:write", "sharing-record:read", "queue:all"
    )
    police = (await items_of(world, "sw-amara"))[0]
    async with httpx.AsyncClient(base_url=world.url, timeout=30) as http:
        asked = await http.post(
            f"/api/v1/deliveries/{police}/shares",
            headers=headers,
            json=SHARE | {"category": "PARENT_OR_CARER", "to_name": "the parents"},
        )
        assert asked.status_code == 201, asked.text
        share = asked.json()
        assert share["status"] == "refused"
        assert "NOT_TO_PARENTS" in share["broken"]
        again = await http.get(f"/api/v1/shares/{share['share_id']}", headers=headers)
        assert again.json() == share
        record = (
            await http.get(f"/api/v1/deliveries/{police}/sharing-record", headers=headers)
        ).json()
    assert share["share_id"] in {s["share_id"] for s in record["shared"]}
    assert {r["sender_agency"] for r in record["received"]} == {"met-police", SCHOOL}


async def test_the_authors_consent_asked_over_the_api_lets_that_share_through(
    world: World,
) -> None:
    """Cara's school update: a share to another professional is refused (third-party
    material); the case-management system asks the school's consent, cannot ask twice,
    sees the school's grant, and the same share then goes through, another still not."""
    headers = await token(world, "liquidlogic", "deliveries:read", "shares:write", "queue:all")
    (item,) = await items_of(world, "sw-carla")
    nurse = {"category": "OTHER_PROFESSIONAL", "to_name": "the school nurse",
             "purpose": "health assessment"}  # fmt: skip
    async with httpx.AsyncClient(base_url=world.url, timeout=30) as http:

        async def share(sent: dict[str, str]) -> dict[str, Any]:
            answer = await http.post(
                f"/api/v1/deliveries/{item}/shares", headers=headers, json=sent
            )
            assert answer.status_code == 201, answer.text
            found: dict[str, Any] = answer.json()
            return found

        refused = await share(nurse)
        assert refused["broken"] == ["THIRD_PARTY_AUTHOR_CONSENT"]
        allowed = await share(SHARE)  # within the LA: nothing to consent to
        not_needed = await http.post(
            f"/api/v1/shares/{allowed['share_id']}/consent", headers=headers
        )
        assert not_needed.status_code == 422, not_needed.text
        assert not_needed.json()["errors"][0]["path"] == "body.share"

        asked = await http.post(f"/api/v1/shares/{refused['share_id']}/consent", headers=headers)
        assert asked.status_code == 201, asked.text
        consent = asked.json()
        assert consent["status"] == "asked", consent
        assert (consent["author"], consent["to_category"], consent["purpose"]) == (
            SCHOOL, "OTHER_PROFESSIONAL", "health assessment",
        )  # fmt: skip
        twice = await http.post(f"/api/v1/shares/{refused['share_id']}/consent", headers=headers)
        assert twice.status_code == 409, twice.text
        assert "asked already" in twice.json()["errors"][0]["problem"]
        reader = await token(world, "reader", "deliveries:read", "queue:all")
        forbidden = await http.post(f"/api/v1/shares/{refused['share_id']}/consent", headers=reader)
        assert forbidden.status_code == 403

        # The school, whose relay is not running, finds the request on its receipts topic
        # and answers from the command line (signed and sent through its outbox).
        async with await inbox_store(world.exchange.rt, LA) as store:
            request_id = (await store.consents.get(consent["consent_id"])).request_id
        desk = ("producer", "consent", "list", "--agency", SCHOOL, "--open")
        assert "0 consent request(s)" in (await cli(world.exchange, *desk, "--offline")).output
        listed = await cli(world.exchange, *desk)
        assert f"{request_id}  awaiting an answer" in listed.output, listed.output
        assert "share to: OTHER_PROFESSIONAL for 'health assessment'" in listed.output
        by = "Ruth Okafor (designated safeguarding lead)"
        granted = await cli(
            world.exchange, "producer", "consent", "grant", request_id, "--agency", SCHOOL,
            "--by", by,
        )  # fmt: skip
        assert granted.exit_code == 0, granted.output
        url = f"/api/v1/consents/{consent['consent_id']}"
        for _ in range(200):
            now = (await http.get(url, headers=headers)).json()
            if now["status"] != "asked":
                break
            await asyncio.sleep(0.1)
        assert now["status"] == "granted", now
        assert now["answered_by"] == by
        assert now["still_blocked"] == []
        again = await http.post(f"/api/v1/shares/{refused['share_id']}/consent", headers=headers)
        assert again.status_code == 409  # granted: ask for the share again instead
        assert "consented already" in again.json()["errors"][0]["problem"]

        through = await share(nurse)
        assert through["status"] == "allowed", through
        assert request_id in through["reason"]
        parents = await share(nurse | {"category": "PARENT_OR_CARER", "to_name": "the parents"})
        assert parents["status"] == "refused"
        assert (await http.get("/metrics")).status_code == 404, "not beside the pages"
        metrics = generate_latest(world.inbox.registry).decode()
    for outcome in ("asked", "granted"):
        assert f'sgx_inbox_consent_requests_total{{outcome="{outcome}"}} 1.0' in metrics


async def test_cursor_paging_misses_and_repeats_nothing_while_deliveries_arrive(
    world: World,
) -> None:
    headers = await token(world, "poller", "deliveries:read", "queue:all")
    more = 25

    async def arrive() -> None:
        for n in range(more):
            record = about(samples.attendance_update(), CHILDREN["leo"], f"Leo-fact: late {n}.")
            await world.exchange.publish(SCHOOL, c.ATTENDANCE_UPDATE, record)
            await asyncio.sleep(0.02)

    async with await world.exchange.rt.queue_store(LA) as store:
        before = await store.count()
    arriving = asyncio.create_task(arrive())
    seen: list[int] = []
    cursor = "0"
    async with httpx.AsyncClient(base_url=world.url) as http:
        for _ in range(2000):
            page = (
                await http.get(f"/api/v1/deliveries?after={cursor}&limit=3", headers=headers)
            ).json()
            seen += [i["item_id"] for i in page["items"]]
            cursor = page["next_cursor"]
            if arriving.done() and len(seen) >= before + 2 * more:
                break
            await asyncio.sleep(0.01)
    await arriving
    async with await world.exchange.rt.queue_store(LA) as store:
        every = [i.item_id for i in await store.select(QueueSelection(everything=True))]
    assert len(seen) == len(set(seen)), "an item was repeated"
    assert seen == every, "paging missed an item"
    assert len(every) == before + 2 * more


async def test_no_child_data_in_urls_logs_or_metrics(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    ben = await person(world, "ben")
    pages: list[str] = []
    try:
        queue = (await ben.request("GET", "/queue?show=all")).text
        pages.append(queue)
        for item in re.findall(r'href="(/items/\d+)"', queue):
            pages.append((await ben.request("GET", item)).text)
            pages.append((await ben.request("GET", item + "/child?print=1")).text)
        for item in await items_of(world, "sw-amara") + await items_of(world, "mash:la-camden"):
            pages.append((await ben.request("GET", f"/items/{item}")).text)
        metrics = generate_latest(world.inbox.registry).decode()
    finally:
        await ben.close()
    assert any(mentions(p, CHILDREN["leo"]) for p in pages), "ben's own item was shown"
    urls = [u for p in pages for u in re.findall(r'(?:href|action)="([^"]+)"', p)]
    for child in CHILDREN.values():
        for text, where in (
            (" ".join(urls), "a URL"),
            (caplog.text, "a log line"),
            (metrics, "metrics"),
        ):
            assert mentions(text, child) == [], f"{child.given}'s data in {where}"
        if child.worker != "sw-ben":
            for page in pages:
                assert mentions(page, child) == [], f"{child.given}'s data on ben's pages"


async def test_a_share_answered_after_the_request_gave_up_waiting_is_picked_up(
    tmp_path: Path,
) -> None:
    """The inbox stops waiting for the gateway after SGX_INBOX_SHARE_TIMEOUT_S and records
    the share as pending; the answer that comes later is found and recorded when the share
    is next read, on the API as on the page."""
    # beside the module's world, which holds the shared Apache Kafka: a broker of its own
    async with inbox_world(tmp_path / "late", broker="tansu", share_timeout_s=0.001) as late:
        headers = await token(late, "cms", "deliveries:read", "shares:write", "queue:all")
        police = (await items_of(late, "sw-amara"))[0]
        async with httpx.AsyncClient(base_url=late.url, timeout=30) as http:
            asked = await http.post(
                f"/api/v1/deliveries/{police}/shares",
                headers=headers,
                json=SHARE | {"category": "PARENT_OR_CARER", "to_name": "the parents"},
            )
            share = asked.json()
            assert share["status"] == "pending"
            for _ in range(100):
                again = (
                    await http.get(f"/api/v1/shares/{share['share_id']}", headers=headers)
                ).json()
                if again["status"] != "pending":
                    break
                await asyncio.sleep(0.1)
        assert again["status"] == "refused"
        assert "NOT_TO_PARENTS" in again["broken"]


def same_words(text: str) -> str:
    return re.sub(r"(no item |/items/)\d+", r"\1N", text)


async def kilobytes(n: int) -> AsyncIterator[bytes]:
    """A body sent in chunks, with no length given beforehand."""
    for _ in range(n):
        yield b"a" * 1024


async def test_an_item_not_yours_reads_exactly_as_one_that_does_not_exist(world: World) -> None:
    """A guessed id tells nothing: the page and the API answer alike, word for word (but
    for the id), for another worker's item and for an id no item has."""
    amaras, missing = await items_of(world, "sw-amara"), 999_999
    ben = await person(world, "ben")
    headers = await token(world, "ben-cms", "deliveries:read", "queue:worker:sw-ben")
    try:
        for url in ("/items/{}", "/items/{}/child"):
            theirs = await ben.request("GET", url.format(amaras[0]))
            nothing = await ben.request("GET", url.format(missing))
            assert theirs.status_code == nothing.status_code == 404
            assert same_words(theirs.text) == same_words(nothing.text)
        async with httpx.AsyncClient(base_url=world.url) as http:
            theirs = await http.get(f"/api/v1/deliveries/{amaras[0]}", headers=headers)
            nothing = await http.get(f"/api/v1/deliveries/{missing}", headers=headers)
        assert theirs.status_code == nothing.status_code == 404
        assert same_words(theirs.text) == same_words(nothing.text)
    finally:
        await ben.close()


async def test_the_edge_refuses_odd_input_with_a_clear_answer(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="sgx.inbox")
    headers = await token(world, "edge-cms", "deliveries:read", "queue:all")
    async with httpx.AsyncClient(base_url=world.url) as http:
        for cursor in ("²", "١٢", "-1", "1e3"):  # digits Python's isdigit knows, and worse
            answer = await http.get(f"/api/v1/deliveries?after={cursor}", headers=headers)
            assert answer.status_code == 422, (cursor, answer.text)
            assert answer.json()["errors"][0]["path"] == "query.after"
        huge = await http.post("/login", content=b"username=" + b"a" * 100_000)
        assert huge.status_code == 413
        form = {"content-type": "application/x-www-form-urlencoded"}
        chunked = await http.post("/login", content=kilobytes(100), headers=form)
        assert chunked.status_code == 413
        page = await http.get("/login")
        csp = page.headers["content-security-policy"]
        assert "form-action 'self';" in csp  # forms post to this inbox only
    lines = [r.getMessage() for r in caplog.records if r.name == "sgx.inbox"]
    assert any(line.endswith("by system:edge-cms") for line in lines), lines
    assert any("POST /login 413" in line and "(anonymous)" in line for line in lines), lines


async def test_the_api_answers_in_json_where_no_route_matches(world: World) -> None:
    """Found by fuzzing: an id that is no whole number got the router's text/plain 404,
    and one of 19 digits a 500 (the database's integers are 64-bit); an unknown method a
    plain 405. Now ids are whole numbers of at most 18 digits, and the API answers with
    its JSON errors, 405 with Allow."""
    headers = await token(world, "route-cms", "deliveries:read", "shares:write", "queue:all")
    nineteen = "9" * 19
    amara = await person(world, "amara")
    try:
        async with httpx.AsyncClient(base_url=world.url) as http:
            for method, url in (
                ("GET", "/api/v1/deliveries/-1"),
                ("GET", "/api/v1/deliveries/1.5"),
                ("GET", f"/api/v1/deliveries/{nineteen}"),
                ("POST", f"/api/v1/deliveries/{nineteen}/ack"),
                ("GET", "/api/v1/shares/x"),
                ("GET", f"/api/v1/consents/{nineteen}"),
                ("GET", "/api/v1/nowhere"),
            ):
                answer = await http.request(method, url, headers=headers)
                assert answer.status_code == 404, (url, answer.text)
                (error,) = answer.json()["errors"]
                assert error["path"] == "path"
                assert error["problem"].startswith("no resource of this API has this path")
            wrong = await http.delete("/api/v1/deliveries", headers=headers)
            assert wrong.status_code == 405
            assert wrong.headers["allow"] == "GET, HEAD"
            assert wrong.json()["errors"][0]["problem"] == "DELETE is not allowed on this path"
        page = await amara.request("GET", f"/items/{nineteen}")
        assert page.status_code == 404, page.text
    finally:
        await amara.close()


async def test_a_share_body_that_is_not_json_is_400_and_a_large_one_413(world: World) -> None:
    """Found by fuzzing: a body that is not UTF-8, or nested too deeply for the parser,
    was a 500; the API's 413 was text/plain."""
    headers = await token(world, "body-cms", "deliveries:read", "shares:write", "queue:all")
    item = (await items_of(world, "sw-amara"))[0]
    url = f"/api/v1/deliveries/{item}/shares"
    async with httpx.AsyncClient(base_url=world.url) as http:
        for sent, problem in (
            (b"\xaa\x87", "not valid JSON: it is not UTF-8"),
            (b"[" * 60_000, "not valid JSON: it is nested too deeply"),
            (b"{", "not valid JSON: Expecting property name enclosed in double quotes at line 1"),
        ):
            answer = await http.post(url, content=sent, headers=headers)
            assert answer.status_code == 400, (problem, answer.text)
            (error,) = answer.json()["errors"]
            assert error["path"] == "body"
            assert error["problem"].startswith(problem)
        large = await http.post(url, content=b" " * 70_000, headers=headers)
        assert large.status_code == 413
        assert large.json()["errors"] == [
            {"path": "body", "problem": "the body must be at most 65536 bytes"}
        ]


async def test_a_supervisor_opens_only_their_own_copy_of_a_team_members_item(
    world: World,
) -> None:
    """The worker's copy is sealed with the worker's view (what the agreement withholds
    from a supervisor included): the supervisor sees it listed by its routing facts, its
    page says whose it is and links to their own copy, and nothing of it is opened."""
    amaras = await items_of(world, "sw-amara")
    async with await world.exchange.rt.queue_store(LA) as store:
        notifications = {(await store.get(i)).notification_id: i for i in amaras}
        own = {
            row.notification_id: row.item_id
            for row in await store.select(QueueSelection(recipients=frozenset({"tm-jones"})))
        }
    jones = await person(world, "jones")
    try:
        queue = await jones.request("GET", "/queue?show=all")
        assert queue.text.count("(sealed for its recipient)") >= len(amaras)
        for notification, item in notifications.items():
            page = await jones.request("GET", f"/items/{item}")
            assert page.status_code == 200
            assert "sealed for sw-amara" in page.text
            assert mentions(page.text, CHILDREN["amira"]) == [], "nothing of the item shown"
            assert f'href="/items/{own[notification]}"' in page.text, "a link to their copy"
            record = await jones.request("GET", f"/items/{item}/child")
            assert "sealed for sw-amara" in record.text, "not even the child's record"
            assert mentions(record.text, CHILDREN["amira"]) == []
            mine = await jones.request("GET", f"/items/{own[notification]}")
            assert "For tm-jones (supervisor)" in mine.text
        share = await jones.request(
            "POST",
            f"/items/{amaras[0]}/share",
            data={
                "csrf_token": await jones.csrf("/queue"),
                "category": "PARENT_OR_CARER",
                "to_name": "the parents",
                "purpose": "to tell them",
            },
        )
        assert share.status_code == 403, "nor shared from another's copy"
    finally:
        await jones.close()
    async with await inbox_store(world.exchange.rt, LA) as inbox:
        reads = [r for i in amaras for r in await inbox.reads(i) if r["reader"] == "tm-jones"]
    assert reads == [], "the worker's copies were never opened for the supervisor"
