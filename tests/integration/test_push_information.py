"""A network check answered over the agency's push endpoint, through the real broker.

Camden's MASH asks the school what it holds; ``push serve`` (serving the school and the
health trust) keeps the request as its receipt listener reads it; the school's system
lists it over HTTP, with its rating and deadline, and answers it, restricted; the answer
reaches Camden's MASH with the school's restriction, and no one else. The health trust's
token, on the same endpoint, neither sees the school's request nor answers it.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from producers.push_tokens import mint_token, tokens_file
from safeguard.parties import HEALTH, OTHER_LA, SCHOOL
from sgx.kafka.embedded import free_port
from tests.integration.harness import eventually, running_exchange
from tests.integration.mash import mash
from tests.integration.test_network_checks import CHILD, ask
from tests.integration.test_push import serving

pytestmark = pytest.mark.broker

ANSWER = {
    "outcome": "HELD",
    "facts": "Two fixed-term exclusions this year; attendance 71% this term",
    "professional_opinion": "The DSL is worried about the child's weight",
    "restrictions": ["NOT_TO_PARENTS"],
    "answered_by": "Ms Patel, DSL",
}


async def test_the_school_answers_the_mash_over_its_push_endpoint(tmp_path: Path) -> None:
    async with running_exchange(tmp_path) as ex, mash(ex) as client:
        path = tokens_file(tmp_path)
        school = mint_token(path, SCHOOL, ("notifications", "information"))
        health = mint_token(path, HEALTH, ("notifications", "information"))
        sender = mint_token(path, SCHOOL, ("notifications",))
        asked = ask(SCHOOL, "RED")
        status = await client.ask(asked)
        assert status["state"] == "ASKED", status
        rid = str(asked["request_id"])
        port = free_port()
        base = f"http://127.0.0.1:{port}/v1/information-requests"
        async with serving(ex.rt, [SCHOOL, HEALTH], port), httpx.AsyncClient() as http:
            as_school = {"authorization": f"Bearer {school}"}
            as_health = {"authorization": f"Bearer {health}"}
            listed: list[dict[str, Any]] = []

            async def kept() -> bool:
                got = await http.get(base + "?open=true", headers=as_school)
                listed[:] = got.json()["information_requests"]
                return bool(listed)

            await eventually(kept, "the school's push endpoint to keep the MASH's request")
            (request,) = listed
            assert request["request_id"] == rid
            assert request["rating"] == "RED"
            deadline = datetime.fromisoformat(request["deadline"])
            assert deadline == status["deadline"]
            assert request["child"]["upn"] == CHILD["upn"]
            assert request["child"]["nhs_number"] is None  # a school is never sent it

            # the health trust: served here, its token valid, the school's request not its own
            theirs = await http.get(base, headers=as_health)
            assert theirs.status_code == 200
            assert theirs.json() == {"information_requests": []}
            meddled = await http.post(f"{base}/{rid}/answer", json=ANSWER, headers=as_health)
            assert meddled.status_code == 404, meddled.text
            # a school token that may only send: forbidden
            only_sends = {"authorization": f"Bearer {sender}"}
            assert (await http.get(base, headers=only_sends)).status_code == 403

            bad = await http.post(
                f"{base}/{rid}/answer", json={**ANSWER, "facts": None}, headers=as_school
            )
            assert bad.status_code == 422
            assert bad.json()["errors"][0]["path"] == "facts"
            answered = await http.post(f"{base}/{rid}/answer", json=ANSWER, headers=as_school)
            assert answered.status_code == 202, answered.text
            again = await http.post(f"{base}/{rid}/answer", json=ANSWER, headers=as_school)
            assert again.status_code == 409

            async def heard() -> bool:
                return asked["request_id"] in await client.answers()

            await eventually(heard, "the school's answer to reach Camden's MASH")
        said = (await client.answers())[uuid.UUID(rid)]
        assert said["outcome"] == "HELD"
        assert said["facts"] == ANSWER["facts"]
        assert said["professional_opinion"] == ANSWER["professional_opinion"]
        assert said["answered_by"] == "Ms Patel, DSL"
        assert "NOT_TO_PARENTS" in [r["code"] for r in said["restrictions"]]
        async with mash(ex, OTHER_LA) as islington:
            assert await islington.answers() == {}
        assert ex.quarantined("not_the_agency_asked") == 0  # the endpoint stopped it first
