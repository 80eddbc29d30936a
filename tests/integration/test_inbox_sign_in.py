"""Sign-in that withstands guessing, through the served inbox: ten wrong passwords lock a
name, then even the right one is refused until `safeguard inbox user unlock`; a name
that does not exist gets exactly the same answers; refusals are counted by reason."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest
from prometheus_client import generate_latest

from safeguard.parties import LA
from tests.integration.inbox_world import PASSWORD, inbox_world
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


async def test_guessing_locks_a_name_alike_whether_it_exists_and_an_admin_unlocks_it(
    tmp_path: Path,
) -> None:
    # no back-off between failures here, so the lockout is reached at once
    async with inbox_world(tmp_path, sign_in_backoff_s=0.0) as world:
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
