"""An LA's MASH asking network checks in the tests, and what its consumer kept of them.

The client publishes each request and waits for the gateway's status in the LA's queue
store (where its consumer keeps it); :meth:`Mash.answers` reads every answer the store
links to a request, opened from the MASH queue as a reader opens it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from consumers.network_checks import NetworkCheckClient
from consumers.queue import QueueStore
from consumers.reader import QueueView
from safeguard.parties import LA
from sgx.kafka.wiring import start_producer
from tests.integration.harness import Exchange


@dataclass
class Mash:
    ex: Exchange
    la: str
    client: NetworkCheckClient

    async def ask(self, request: dict[str, Any], timeout: float = 30.0) -> dict[str, Any]:
        """Send ``request``; the gateway's status as the consumer kept it."""
        status = await self.client.ask(request, timeout=timeout)
        said = dataclasses.asdict(status)
        said["identifiers_sent"] = list(status.identifiers_sent)
        return said

    async def answer_items(self) -> dict[uuid.UUID, QueueView]:
        """Every answer the LA's store links to a request: the MASH queue's item, opened."""
        async with await self.ex.rt.queue_store(self.la) as store:
            return await answer_items(self.ex, store, self.la)

    async def answers(self) -> dict[uuid.UUID, dict[str, Any]]:
        """Every answer kept, by request: the agency's InformationAnswer."""
        return {rid: view.notification for rid, view in (await self.answer_items()).items()}


async def answer_items(ex: Exchange, store: QueueStore, la: str) -> dict[uuid.UUID, QueueView]:
    links = store.information.answers
    async with store.engine.connect() as conn:
        ids = [str(r) for (r,) in (await conn.execute(select(links.c.request_id))).all()]
    reader = await ex.rt.queue_reader(la, store)
    found = await store.answering(ids)
    return {uuid.UUID(rid): await reader.show(item) for rid, item in found.items()}


@contextlib.asynccontextmanager
async def mash(ex: Exchange, la: str = LA) -> AsyncIterator[Mash]:
    """``la``'s MASH (its consumer must be running to hear the gateway)."""
    trust = ex.rt.trust()
    producer = await start_producer(ex.rt.kafka)
    try:
        async with await ex.rt.queue_store(la) as store:
            client = NetworkCheckClient(
                identity=ex.rt.identity(la, trust), trust=trust, contract=ex.rt.contract(),
                producer=producer, rows=store.information,
            )  # fmt: skip
            yield Mash(ex, la, client)
    finally:
        await producer.stop()
