"""SIGTERM under load: every service finishes its batch, commits, closes and exits 0.

The gateway and the consumer run as real processes (``python -m safeguard.cli``) while a
school publishes continuously; each is sent SIGTERM mid-stream and restarted. Afterwards
every published notification is in the queue exactly once per recipient, and the
restarted consumer processed only what arrived after its predecessor stopped: the
offsets were committed at shutdown, so nothing was replayed. Each process serves
``/readyz``, which says 200 only once it is connected to the broker and its database.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

from safeguard.parties import LA, POLICE, SCHOOL
from sgx.kafka.embedded import free_port
from tests.integration.harness import running_exchange
from tests.integration.processes import (
    allocated_children,
    assert_once_per_recipient,
    publish_until,
    service,
)

pytestmark = pytest.mark.broker

CHILDREN, ALLOCATE = allocated_children(8100)


async def test_sigterm_under_load_loses_and_doubles_no_queue_row(tmp_path: Path) -> None:
    async with running_exchange(tmp_path, consumer=False) as ex:
        await ex.allocate(ALLOCATE)
        await ex.stop("gateway")  # from here the gateway runs as a process of its own
        stop_publishing = asyncio.Event()
        sending = ex.background(publish_until(ex, CHILDREN, stop_publishing))
        async with service(ex, "gateway", "run") as gateway:
            async with service(ex, "consumer", "run", "--la", LA) as consumer:
                await ex.wait_rows(100, timeout=60)
                assert await consumer.terminate() == 0  # mid-stream: traffic goes on
            rows_at_stop = await ex.queue_rows()

            async with service(ex, "consumer", "run", "--la", LA) as consumer:
                await ex.wait_rows(rows_at_stop + 100, timeout=60)
                assert await gateway.terminate() == 0  # mid-stream too
                async with service(ex, "gateway", "run") as gateway:
                    await ex.wait_rows(rows_at_stop + 300, timeout=60)
                    stop_publishing.set()
                    sent = await sending
                    await ex.wait_rows(2 * len(sent), timeout=90)
                    await asyncio.sleep(1.0)  # any duplicate would arrive now
                    processed = await consumer.metric(
                        "sgx_consumer_notifications_total", outcome="queued"
                    )
                    assert await gateway.terminate() == 0
                assert await consumer.terminate() == 0

        await assert_once_per_recipient(ex, sent)
        # The restarted consumer started where its predecessor committed at SIGTERM.
        assert processed == 2 * len(sent) - rows_at_stop


async def test_the_relay_and_the_push_endpoint_are_ready_then_exit_0_on_sigterm(
    tmp_path: Path,
) -> None:
    async with running_exchange(tmp_path) as ex:
        mint = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "safeguard.cli", "push", "token", SCHOOL,
            "--home", str(ex.rt.exchange.home), stdout=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        assert await mint.wait() == 0
        async with service(ex, "producer", "relay", "--agency", POLICE) as relay:
            metrics = (await relay.get("/metrics")).text
            # a police force's relay measures Operation Encompass on its outbox
            assert "sgx_encompass_seconds_to_school_day " in metrics
            assert "sgx_encompass_undelivered_before_school_day 0.0" in metrics
            checks = (await relay.get("/readyz")).json()["checks"]
            assert checks == {"broker": "ok", f"outbox database {POLICE}": "ok"}
            assert await relay.terminate() == 0
        push_port = free_port()
        command = ("push", "serve", "--agency", SCHOOL, "--port", str(push_port))
        async with service(ex, *command) as push:
            assert (await push.get("/healthz")).status_code == 200
            assert await push.terminate() == 0
