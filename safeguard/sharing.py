"""Onward share from the command line: open the item, ask the gateway, return its answer."""

from __future__ import annotations

from typing import Any

from consumers.share import ShareClient
from safeguard.runtime import Runtime
from sgx.kafka import start_producer


async def ask_share(
    rt: Runtime,
    la: str,
    item_id: int,
    *,
    to_id: str,
    category: str,
    to_name: str,
    purpose: str,
    by: str,
) -> dict[str, Any]:
    async with await rt.queue_store(la) as store:
        view = await (await rt.queue_reader(la, store)).show(item_id)
    trust = rt.trust()
    producer = await start_producer(rt.kafka)
    try:
        client = ShareClient(
            identity=rt.identity(la, trust),
            trust=trust,
            contract=rt.contract(),
            producer=producer,
            settings=rt.kafka,
        )
        return await client.request(
            view, to_id=to_id, category=category, to_name=to_name, purpose=purpose, requested_by=by
        )
    finally:
        await producer.stop()
