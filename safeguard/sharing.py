"""Onward shares from the command line: open the item, ask the gateway, return its answer;
and the author's consent for a share it refused.

A share is recorded in the LA's inbox store (``inbox_share``) before it is asked and its
answer when it comes, as the inbox records its own: so it is on the child's sharing record
and, once allowed, a disclosure whose family-informed decision is then due
(:mod:`safeguard.families`)."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

from consumers.share import ShareClient
from safeguard.inbox_wiring import inbox_store
from safeguard.runtime import Runtime
from sgx.errors import NotAnsweredYet
from sgx.kafka.wiring import start_producer
from sgx.wire.ids import new_id


@contextlib.asynccontextmanager
async def share_client(rt: Runtime, la: str) -> AsyncIterator[ShareClient]:
    """The LA's share client, with a Kafka producer and the LA's queue database (where its
    consumer keeps the gateway's answers) for as long as the block lasts."""
    trust = rt.trust()
    async with await rt.queue_store(la) as queue:
        producer = await start_producer(rt.kafka)
        try:
            yield ShareClient(
                identity=rt.identity(la, trust),
                trust=trust,
                contract=rt.contract(),
                producer=producer,
                rows=queue.answered,
            )
        finally:
            await producer.stop()


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
    """Ask the gateway to share queue item ``item_id`` onward; its ShareDecision."""
    _, decision = await share_and_record(
        rt, la, item_id, to_id=to_id, category=category, to_name=to_name, purpose=purpose, by=by
    )
    return decision


async def share_and_record(
    rt: Runtime,
    la: str,
    item_id: int,
    *,
    to_id: str,
    category: str,
    to_name: str,
    purpose: str,
    by: str,
) -> tuple[int, dict[str, Any]]:
    """:func:`ask_share`, recorded in the LA's inbox store: (its share id, the decision)."""
    async with await rt.queue_store(la) as store:
        view = await (await rt.queue_reader(la, store)).show(item_id)
    request_id = new_id()
    async with await inbox_store(rt, la) as inbox, share_client(rt, la) as client:
        share_id = await inbox.share_asked(
            request_id=str(request_id), item_id=item_id, notification_id=view.item.notification_id,
            requested_by=by, to_id=to_id, to_category=category, to_name=to_name, purpose=purpose,
        )  # fmt: skip
        with _waited(la, f"share {share_id} is recorded as pending"):
            decision = await client.request(
                view, to_id=to_id, category=category, to_name=to_name, purpose=purpose,
                requested_by=by, request_id=request_id,
            )  # fmt: skip
        await inbox.share_decided(str(request_id), decision)
    return share_id, decision


async def ask_consent(
    rt: Runtime, la: str, item_id: int, *, category: str, purpose: str, by: str
) -> dict[str, Any]:
    """Ask the author of queue item ``item_id`` for consent to share it with ``category``
    for ``purpose``; returns the gateway's first word (ASKED, NOT_NEEDED, or
    UNKNOWN_NOTIFICATION)."""
    async with await rt.queue_store(la) as store:
        view = await (await rt.queue_reader(la, store)).show(item_id)
    async with share_client(rt, la) as client:
        with _waited(la, f"'safeguard consent status --la {la}' shows it when it comes"):
            return await client.ask_consent(
                view, category=category, purpose=purpose, requested_by=by
            )


@contextlib.contextmanager
def _waited(la: str, then: str) -> Iterator[None]:
    """A wait for the gateway's answer that ran out, as NotAnsweredYet saying what to check."""
    try:
        yield
    except TimeoutError as exc:
        raise NotAnsweredYet(
            f"{exc}: the gateway answers on the LA's receipts topic and the LA's consumer "
            f"keeps the answer; is it running ('safeguard consumer run --la {la}'), and the "
            f"gateway? The request stands: {then}"
        ) from exc


async def consent_outcomes(
    rt: Runtime, la: str, request_ids: set[uuid.UUID] | None = None
) -> dict[uuid.UUID, list[dict[str, Any]]]:
    """The consent outcomes the gateway sent the LA on these requests (None: on every
    request, for a listing), by request, oldest first, as the LA's consumer keeps them:
    read from the LA's queue database, no broker needed."""
    async with await rt.queue_store(la) as queue:
        return await queue.answered.said(rt.contract(), "consent", _sorted(request_ids))


def _sorted(request_ids: set[uuid.UUID] | None) -> list[uuid.UUID] | None:
    return None if request_ids is None else sorted(request_ids)
