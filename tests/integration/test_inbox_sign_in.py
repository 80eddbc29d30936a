"""Sign-in that withstands guessing, and sessions the server controls, through the served
inbox: ten wrong passwords lock a name, then even the right one is refused until
`safeguard inbox user unlock`; a name that does not exist gets exactly the same answers;
refusals are counted by reason. A copied cookie opens nothing after sign-out; a role
change, a disabled account or a revocation ends a session at its next request."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator

import httpx
import pytest
from click.testing import CliRunner
from prometheus_client import generate_latest

from safeguard.cli import main as safeguard
from safeguard.parties import LA
from tests.integration.inbox_world import PASSWORD, World, inbox_world
from tests.integration.test_author_consent import cli
from tests.integration.test_inbox_api import Person

pytestmark = pytest.mark.broker


async def attempt(p: Person, username: str, password: str) -> httpx.Response:
    token = await p.csrf()
    data = {"csrf_token": token, "username": username, "password": password}
    return await p.request("POST", "/login", data=data)


def page_words(answer: httpx.Response) -> str:
    """The page without its per-request token."""
    return re.sub(r'value="[^"]+"', 'value=""', answer.text)


@pytest.fixture(scope="module")
async def world(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[World]:
    # no back-off between failures here, so the lockout is reached at once
    async with inbox_world(tmp_path_factory.mktemp("sign-in"), sign_in_backoff_s=0.0) as w:
        yield w


async def test_guessing_locks_a_name_alike_whether_it_exists_and_an_admin_unlocks_it(
    world: World,
) -> None:
    answers: dict[str, list[httpx.Response]] = {}
    for username in ("amara", "nobody-at-all"):
        p = Person(world.url)
        answers[username] = [await attempt(p, username, "not the password") for _ in range(10)]
        answers[username].append(await attempt(p, username, PASSWORD))  # too late
        await p.close()
    for got in answers.values():
        assert [a.status_code for a in got] == [401] * 10 + [429]
        assert "Too many failed sign-ins" in got[-1].text
    assert [page_words(a) for a in answers["amara"]] == [
        page_words(a) for a in answers["nobody-at-all"]
    ], "the answers say nothing of whether the name exists"

    result = await cli(world.exchange, "inbox", "user", "unlock", "amara", "--la", LA)
    assert result.exit_code == 0, result.output
    assert "amara in la-camden is unlocked" in result.output
    p = Person(world.url)
    answer = await attempt(p, "amara", PASSWORD)
    assert answer.status_code == 303, answer.text
    assert answer.headers["location"] == "/queue"
    await p.close()

    metrics = generate_latest(world.inbox.registry).decode()
    assert 'sgx_inbox_sign_in_refusals_total{reason="bad_credentials"} 20.0' in metrics
    assert 'sgx_inbox_sign_in_refusals_total{reason="locked"} 2.0' in metrics


async def signed_in_as(world: World, username: str) -> Person:
    p = Person(world.url)
    answer = await attempt(p, username, PASSWORD)
    assert answer.status_code == 303, answer.text
    return p


async def shows_queue(p: Person) -> bool:
    answer = await p.request("GET", "/queue")
    return answer.status_code == 200 and "Your queue" in answer.text


async def test_the_server_ends_sessions_whatever_the_browser_keeps(world: World) -> None:
    ex = world.exchange
    ben = await signed_in_as(world, "ben")
    copied = ben.cookie  # as a thief would keep it
    assert await shows_queue(ben)
    out = await ben.request("POST", "/logout", data={"csrf_token": await ben.csrf("/queue")})
    assert out.status_code == 303
    thief = Person(world.url)
    thief.cookie = copied
    assert not await shows_queue(thief), "a copy of the cookie opens nothing after sign-out"
    await ben.close()

    ben = await signed_in_as(world, "ben")
    add_again = [
        "inbox", "user", "add", "ben", "--la", LA, "--worker-id", "sw-ben", "--name", "Ben Ward",
        "--role", "mash_duty", "--password-stdin", "--home", str(ex.rt.exchange.home),
    ]  # fmt: skip
    result = await asyncio.to_thread(CliRunner().invoke, safeguard, add_again, PASSWORD + "\n")
    assert result.exit_code != 0
    assert "exists already" in result.output, result.output
    assert await shows_queue(ben), "a refused add changes nothing"

    jones = await signed_in_as(world, "jones")
    result = await cli(ex, "inbox", "sessions", "revoke", "--la", LA, "--worker", "tm-jones")
    assert result.exit_code == 0, result.output
    assert "1 session(s) ended" in result.output
    assert not await shows_queue(jones)

    result = await cli(ex, "inbox", "user", "disable", "ben", "--la", LA)
    assert result.exit_code == 0, result.output
    assert not await shows_queue(ben), "disabling ends the session at once"
    p = Person(world.url)
    assert (await attempt(p, "ben", PASSWORD)).status_code == 401, "and signs nobody in"
    for person_ in (ben, thief, jones, p):
        await person_.close()
