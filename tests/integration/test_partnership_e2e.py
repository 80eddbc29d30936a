"""Routing by the child over a few random partnerships, through the whole exchange.

The same partnerships, scripts and model as the judge-level property test
(tests/unit/test_routing_property.py, hundreds of examples), here carried by a real broker,
the gateway service and one delivery consumer per LA: what each LA's queues hold is
checked against the model after every notification. Few examples: each starts its own
broker and a consumer per LA.
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

from sgx.wire import contract as c
from tests.integration.harness import (
    Exchange,
    agreement_with_defaults,
    eventually,
    running_exchange,
)
from tests.partnerships import Model, Notify, Spec, check_routed, la_id, specs, supervisor, worker

pytestmark = pytest.mark.broker

EXAMPLES = 4


def queue_ids(la: int) -> list[str]:
    return [*(worker(la, w) for w in range(3)), supervisor(la), f"mash:{la_id(la)}"]


async def received(ex: Exchange, spec: Spec, notification_id: str) -> list[tuple[str, str, str]]:
    found = []
    for la in range(spec.las):
        for queue in queue_ids(la):
            for view in await ex.queue(queue, la_id(la)):
                if view.item.notification_id == notification_id:
                    found.append((la_id(la), queue, view.item.route_reason))
    return found


async def total_rows(ex: Exchange, spec: Spec) -> int:
    return sum([await ex.queue_rows(la_id(la)) for la in range(spec.las)])


async def play(spec: Spec) -> None:
    model = Model(spec)
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        agreement = agreement_with_defaults(home, spec.default_las())
        async with running_exchange(
            home / "x", parties=spec.parties(), consumer=False, agreement=agreement
        ) as ex:
            for la in range(spec.las):
                await ex.start_consumer(party=la_id(la))
            for step in spec.steps:
                if not isinstance(step, Notify):
                    sender, update = spec.update(step)
                    await ex.allocate(update, sender=sender)
                    model.apply(step)
                    continue
                expected = len(model.expected(step))
                before = await total_rows(ex, spec)
                sender, name, record = spec.notification(step)
                sent = str(await ex.publish(sender, name, record))

                async def arrived(before: int = before, expected: int = expected) -> bool:
                    return await total_rows(ex, spec) >= before + expected

                await eventually(arrived, f"{expected} queue rows for {c.SHORT_NAMES[name]}")
                check_routed(model, step, await received(ex, spec, sent))
                assert await total_rows(ex, spec) == before + expected


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(specs(max_steps=8))
def test_random_partnerships_route_by_the_child_end_to_end(spec: Spec) -> None:
    asyncio.run(play(spec))
