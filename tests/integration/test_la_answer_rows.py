"""The gateway's answers reach an LA's inbox from the rows its consumer keeps (issue 23),
through a real Kafka-protocol broker: an onward share's decision, the author's consent
outcome and the receipt for a response to a referral. The inbox is built as ``safeguard
inbox serve`` builds it: its share client and referral responder are given the LA's
queue database, and no broker settings to read a topic with. A receipt the broker holds
twice adds nothing."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import func, select

from consumers.inbox.access import READ, RESPOND, SHARE, Principal
from consumers.inbox.service import Inbox, InboxMetrics
from consumers.queue import QueueStore
from consumers.reader import QueueReader, QueueView
from consumers.referral_client import ReferralResponder
from consumers.share import ShareClient
from producers.consent_requests import ConsentRequests
from safeguard import samples
from safeguard.inbox_wiring import inbox_store
from safeguard.outbox_wiring import running_outbox
from safeguard.parties import GP, LA, SCHOOL
from sgx.kafka.wiring import read_topic, receipts_topic, start_producer
from sgx.wire import contract as c
from sgx.wire.envelope import Opener
from tests.integration.harness import Exchange, eventually, running_exchange
from tests.integration.test_author_consent import ALLOCATE, AMIRA, CONFERENCE, asked_of
from tests.integration.test_referral_outcomes import CONTACT, MIA

pytestmark = pytest.mark.broker

WORKER = Principal(
    la=LA, subject="cli:sw-amara", kind="system", name="sw-amara",
    scopes=frozenset({READ, SHARE, RESPOND, "queue:all"}),
)  # fmt: skip


@contextlib.asynccontextmanager
async def la_inbox(ex: Exchange) -> AsyncIterator[tuple[Inbox, QueueStore]]:
    """The LA's inbox service, wired as ``safeguard inbox serve`` wires it."""
    rt, trust = ex.rt, ex.rt.trust()
    identity = rt.identity(LA, trust)
    producer = await start_producer(rt.kafka)
    try:
        async with await rt.queue_store(LA) as queue, await inbox_store(rt, LA) as store:
            made = {"identity": identity, "trust": trust, "contract": rt.contract(),
                    "producer": producer, "rows": queue.answered}  # fmt: skip
            shares, responder = ShareClient(**made), ReferralResponder(**made)

            async def ask(view: QueueView, *args: Any) -> dict[str, Any]:
                to_id, category, to_name, purpose, by, request_id = args
                return await shares.request(
                    view, to_id=to_id, category=category, to_name=to_name, purpose=purpose,
                    requested_by=by, timeout=30, request_id=request_id,
                )  # fmt: skip

            async def consent(view: QueueView, *args: Any) -> dict[str, Any]:
                category, purpose, by, request_id = args
                return await shares.ask_consent(
                    view, category=category, purpose=purpose, requested_by=by, timeout=30,
                    request_id=request_id,
                )  # fmt: skip

            yield Inbox(
                la=LA, queue=queue, store=store, metrics=InboxMetrics(CollectorRegistry()),
                reader=QueueReader(store=queue, opener=Opener(identity, trust),
                                   contract=rt.contract()),
                ask_share=ask, find_answers=shares.answers, ask_consent=consent,
                find_consents=shares.consent_answers, send_response=responder.send,
                find_response_receipts=responder.receipts, referral_contact=CONTACT,
            ), queue  # fmt: skip
    finally:
        await producer.stop()


async def _rows(queue: QueueStore) -> tuple[int, int]:
    """How many answers and receipts the LA's consumer keeps."""
    async with queue.engine.connect() as conn:
        count = [
            (await conn.execute(select(func.count()).select_from(t))).scalar_one()
            for t in (queue.answered.answers, queue.answered.receipts)
        ]
    return count[0], count[1]


async def test_share_consent_and_referral_answers_reach_the_inbox_from_the_rows(
    tmp_path: Path,
) -> None:
    async with running_exchange(tmp_path) as ex:
        await ex.allocate(ALLOCATE)
        referral = await ex.publish(GP, c.REFERRAL, samples.referral(MIA))
        async with running_outbox(ex.rt, SCHOOL) as school:
            await school.add(c.ATTENDANCE_UPDATE, samples.attendance_update(AMIRA))
            (item,) = await ex.wait_items("sw-amara", 1)
            (mash,) = await ex.wait_items(f"mash:{LA}", 1)
            async with la_inbox(ex) as (inbox, queue):
                # an onward share: the gateway's decision, waited for on the rows
                share = await inbox.share(
                    WORKER, item.item.item_id, category="PARENT_OR_CARER", to_name="parents",
                    purpose=CONFERENCE,
                )  # fmt: skip
                assert (share.allowed, share.broken) == (False, ("THIRD_PARTY_AUTHOR_CONSENT",))
                # the author's consent: the gateway's first word, then the author's answer
                asked = await inbox.ask_consent(WORKER, share.share_id)
                assert asked.state == "ASKED"
                (request,) = await asked_of(school, SCHOOL)
                book = ConsentRequests(school.store.engine)
                await book.answer(school, request.request_id, granted=True, answered_by="DSL")

                async def granted() -> bool:
                    (now,) = await inbox.consents([item.item.notification_id])
                    return now.state == "GRANTED"

                await eventually(granted, "the inbox to hear the author's grant from the rows")
                # a response to a referral: the gateway's receipt
                response = await inbox.referrals.respond(
                    WORKER, mash.item.item_id, stage="ACKNOWLEDGED", decision=None,
                    la_contact=CONTACT, responded_as="Mo Duty",
                )  # fmt: skip

                async def receipted() -> bool:
                    state = await inbox.referrals.state(await inbox.reader.open(mash.item))
                    return state.acknowledged is not None and state.responses[0].outcome is not None

                await eventually(receipted, "the inbox to hear the gateway's receipt")
                state = await inbox.referrals.state(await inbox.reader.open(mash.item))
                assert state.responses[0].response_id == response.response_id
                assert state.responses[0].outcome == "DELIVERED"
                assert str(referral) == mash.item.notification_id
                kept = await _rows(queue)
                assert kept[0] == 3  # the share's REFUSED, the consent's ASKED and GRANTED
                assert kept[1] >= 1

                # the broker holds the receipt twice: the consumer keeps it once
                await _redeliver_receipt(ex, uuid.UUID(response.response_id))
                assert await _rows(queue) == kept
                held = [q.reason for q in await queue.quarantine_list()]
                assert held == ["malformed_envelope"]  # the marker only: nothing of ours


async def _redeliver_receipt(ex: Exchange, response_id: uuid.UUID) -> None:
    """Publish the record holding ``response_id``'s receipt again, on its partition, then a
    marker the consumer quarantines; once the marker is held, the copy was read too."""
    topic = receipts_topic(LA)
    trust = ex.rt.trust()
    opener = Opener(ex.rt.identity(LA, trust), trust)
    contract = ex.rt.contract()
    (record,) = [
        r for r in await read_topic(ex.rt.kafka, topic)
        if any(
            receipt["message_id"] == response_id
            for receipt in contract.decode(opener.open(bytes(r.value or b"")).plaintext)[1].get(
                "receipts", []
            )
        )
    ]  # fmt: skip
    producer = await start_producer(ex.rt.kafka)
    try:
        await producer.send_and_wait(topic, record.value, partition=record.partition)
        await producer.send_and_wait(topic, b"marker", partition=record.partition)
    finally:
        await producer.stop()

    async def marker_held() -> bool:
        async with await ex.rt.queue_store(LA) as queue:
            return any(q.raw == b"marker" for q in await queue.quarantine_list())

    await eventually(marker_held, "the consumer to read past the copy")
