"""The push endpoint end to end: HTTP in, through the real broker and gateway, into a queue."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from producers.push import from_json, push_app, to_json
from producers.push_tokens import PushTokens, mint_token, tokens_file
from safeguard import samples
from safeguard.cli_push import run_push
from safeguard.parties import LA, POLICE, SCHOOL
from safeguard.runtime import Runtime, publisher
from sgx.domain.identifiers import make_nhs_number, make_upn
from sgx.kafka.embedded import free_port
from sgx.kafka.wiring import inbound_topic, read_topic
from sgx.wire import contract as c
from tests.integration.harness import running_exchange

pytestmark = pytest.mark.broker

AMIRA = samples.child(make_nhs_number(41), make_upn(41), given="Amirabel", family="Xanthos")
LEO = samples.child(make_nhs_number(42), None, given="Leonidas", family="Quarrington")
ALLOCATE = samples.allocation_update(
    [
        (AMIRA["nhs_number"], AMIRA["upn"], "sw-amara", "Assessment Team 1", "tm-jones"),
        (LEO["nhs_number"], None, "sw-ben", "Assessment Team 2", "tm-lee"),
    ]
)


async def test_pushed_attendance_update_lands_in_the_allocated_workers_queue(
    tmp_path: Path,
) -> None:
    async with running_exchange(tmp_path) as ex:
        await ex.allocate(ALLOCATE)
        token = mint_token(tokens_file(tmp_path), SCHOOL)
        record = samples.attendance_update(AMIRA)
        body = to_json(ex.rt.contract(), c.ATTENDANCE_UPDATE, record)
        async with publisher(ex.rt, SCHOOL) as pub:
            app = push_app({SCHOOL: pub.publish}, PushTokens.load(tokens_file(tmp_path)))
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://push.test") as http:
                response = await http.post(
                    "/v1/notifications/attendance_update",
                    json=body,
                    headers={"Authorization": f"Bearer {token}"},
                )
        assert response.status_code == 202, response.text
        assert response.json() == {"notification_id": str(record["notification_id"])}

        await ex.wait_rows(2)
        (item,) = await ex.queue("sw-amara")
        assert item.item.notification_id == str(record["notification_id"])
        assert item.item.route_reason == "ALLOCATED_WORKER"
        # what the worker reads is what the school sent, in the contract's record shape
        assert item.notification == from_json(ex.rt.contract(), c.ATTENDANCE_UPDATE, body)
        assert [v.item.notification_id for v in await ex.queue("tm-jones")] == [
            str(record["notification_id"])
        ]
        assert await ex.queue(f"mash:{LA}") == []


@contextlib.asynccontextmanager
async def serving(rt: Runtime, agencies: list[str], port: int) -> AsyncIterator[None]:
    """``safeguard push serve`` as a task on a real TCP port, stopped on exit."""
    stop, ready = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(run_push(rt, agencies, stop, port=port, ready=ready))
    waiter = asyncio.create_task(ready.wait())
    done, _ = await asyncio.wait({task, waiter}, timeout=30, return_when=asyncio.FIRST_COMPLETED)
    if task in done:
        task.result()  # why it stopped
    assert waiter in done, "the push endpoint did not start"
    try:
        yield
    finally:
        stop.set()
        await task


def _bad_nhs_number(record: dict[str, Any]) -> dict[str, Any]:
    nhs_number = record["child"]["nhs_number"]
    record["child"]["nhs_number"] = nhs_number[:9] + str((int(nhs_number[9]) + 1) % 10)
    return record


async def test_push_serve_refuses_the_bad_and_delivers_the_good_over_http(
    tmp_path: Path,
) -> None:
    async with running_exchange(tmp_path) as ex:
        await ex.allocate(ALLOCATE)
        token = mint_token(tokens_file(tmp_path), POLICE, ("notifications", "consent"))
        contract = ex.rt.contract()
        good = samples.police_notification(LEO)
        bad = _bad_nhs_number(
            to_json(contract, c.POLICE_NOTIFICATION, samples.police_notification(LEO))
        )
        port = free_port()
        url = f"http://127.0.0.1:{port}/v1/notifications/police_notification"
        async with serving(ex.rt, [POLICE], port), httpx.AsyncClient() as http:
            anonymous = await http.post(url, json=to_json(contract, c.POLICE_NOTIFICATION, good))
            auth = {"Authorization": f"Bearer {token}"}
            refused = await http.post(url, json=bad, headers=auth)
            accepted = await http.post(
                url, json=to_json(contract, c.POLICE_NOTIFICATION, good), headers=auth
            )
        assert anonymous.status_code == 401
        assert refused.status_code == 422
        assert refused.json()["errors"][0]["path"] == "child.nhs_number"
        assert LEO["nhs_number"][:9] not in refused.text
        assert accepted.status_code == 202, accepted.text

        # 202 means kept in the outbox; once delivered, only the good one was published:
        # the refused one never reached the broker
        await ex.wait_rows(2)
        assert len(await read_topic(ex.rt.kafka, inbound_topic(POLICE))) == 1
        (item,) = await ex.queue("sw-ben")
        assert item.item.notification_id == str(good["notification_id"])
        assert item.notification["police"]["police_reference"] == "CAD-4471-20NOV26"
        assert await ex.queue_rows() == 2  # the allocated worker and the supervisor
