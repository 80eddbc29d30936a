"""The LA's consumer keeps the gateway's answers on the LA's receipts topic as rows (queue
0010): share decisions, consent outcomes and receipts, once however often Kafka delivers
them or the gateway publishes them again; what it cannot open or is not the gateway's is
quarantined with its reason. The LA's share client and referral responder read the rows
by key, not the topic. On SQLite and on a real PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from prometheus_client import CollectorRegistry
from sqlalchemy import func, select

from consumers.queue import QueueStore
from consumers.referral_client import ReferralResponder
from consumers.service import DeliveryConsumer
from consumers.share import ShareClient
from safeguard.parties import DEMO_CONNECTORS, DEMO_PARTIES, LA, SCHOOL
from safeguard.runtime import Runtime, consumer_topics
from sgx.keys.key_admin import init_trust
from sgx.ops.metrics import ConsumerMetrics
from sgx.settings import ExchangeSettings
from sgx.wire import contract as c
from sgx.wire.envelope import Opener, Purpose, Sealer, pack
from tests.conftest_db import BACKENDS, queue_store_on
from tests.unit.test_queue_store import _Commits, _Record

NOW = datetime(2026, 12, 7, 10, 0, tzinfo=UTC)
TOPIC = f"sgx.receipts.{LA}"


@pytest.fixture(params=BACKENDS)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[QueueStore]:
    async with queue_store_on(request.param, tmp_path, LA) as opened:
        yield opened


def decision(request_id: uuid.UUID, allowed: bool) -> dict[str, Any]:
    return {
        "request_id": request_id, "notification_id": uuid.UUID(int=7), "allowed": allowed,
        "broken": [] if allowed else ["THIRD_PARTY_AUTHOR_CONSENT"],
        "reason": "allowed" if allowed else "the author's consent", "decided_at": NOW,
    }  # fmt: skip


def outcome(request_id: uuid.UUID, state: str, at: datetime) -> dict[str, Any]:
    return {
        "request_id": request_id, "notification_id": uuid.UUID(int=7),
        "category": "PARENT_OR_CARER", "purpose": "a conference", "state": state,
        "author": SCHOOL, "answered_by": None if state == "ASKED" else "Ms Patel, DSL",
        "court_order": None, "still_blocked": [], "reason": state.lower(), "decided_at": at,
    }  # fmt: skip


def receipts(*said: tuple[uuid.UUID, str]) -> dict[str, Any]:
    return {
        "receipts": [
            {"message_id": m, "outcome": o, "reason": o.lower(), "detail": f"{o} detail",
             "decided_at": NOW}
            for m, o in said
        ]
    }  # fmt: skip


def test_only_a_local_authority_consumer_reads_its_receipts_topic(tmp_path: Path) -> None:
    trust = init_trust(tmp_path / "trust", DEMO_PARTIES, DEMO_CONNECTORS)
    assert consumer_topics(trust, LA, "local_authority") == [f"sgx.delivery.{LA}", TOPIC]
    assert consumer_topics(trust, SCHOOL, "school") == [f"sgx.delivery.{SCHOOL}"]


async def test_answers_are_kept_once_read_by_key_and_the_untrusted_quarantined(
    store: QueueStore, tmp_path: Path
) -> None:
    init_trust(tmp_path / "trust", DEMO_PARTIES)
    rt = Runtime(exchange=ExchangeSettings(home=tmp_path, metrics_port=-1))
    trust, contract = rt.trust(), rt.contract()
    gateway = Sealer(rt.identity("gateway", trust), trust, LA)
    school = Sealer(rt.identity(SCHOOL, trust), trust, LA)
    share, refused, consent, response, other = (uuid.uuid4() for _ in range(5))

    def sealed(by: Sealer, purpose: Purpose, name: str, record: dict[str, Any]) -> bytes:
        return by.seal(purpose, uuid.uuid4(), contract.encode(name, record))

    said = sealed(gateway, Purpose.SHARE_DECISION, c.SHARE_DECISION, decision(share, True))
    no = sealed(gateway, Purpose.SHARE_DECISION, c.SHARE_DECISION, decision(refused, False))
    asked = sealed(
        gateway, Purpose.SHARE_DECISION, c.CONSENT_OUTCOME, outcome(consent, "ASKED", NOW)
    )
    later = NOW - timedelta(seconds=5)  # the author's clock may be behind: ASKED stays first
    granted = sealed(
        gateway, Purpose.SHARE_DECISION, c.CONSENT_OUTCOME, outcome(consent, "GRANTED", later)
    )
    receipted = sealed(
        gateway, Purpose.RECEIPTS, c.RECEIPT_BATCH,
        receipts((response, "DELIVERED"), (other, "QUARANTINED")),
    )  # fmt: skip
    # an agency cannot speak for the gateway; bytes that are no envelope are kept as such
    forged = sealed(school, Purpose.SHARE_DECISION, c.SHARE_DECISION, decision(other, True))
    commits = _Commits({TopicPartition(TOPIC, 0)})
    consumer = DeliveryConsumer(
        opener=Opener(rt.identity(LA, trust), trust), contract=contract, store=store,
        consumer=cast("AIOKafkaConsumer", commits), metrics=ConsumerMetrics(CollectorRegistry()),
    )  # fmt: skip
    batch = [
        _Record(TOPIC, 0, 0, pack([said, asked])),
        _Record(TOPIC, 0, 1, no),
        _Record(TOPIC, 0, 2, receipted),
        _Record(TOPIC, 0, 3, pack([forged])),
        _Record(TOPIC, 0, 4, b"not an envelope"),
    ]
    await consumer.process(batch)
    await consumer.process(batch)  # Kafka delivers it again (a crash before the commit)
    again = sealed(gateway, Purpose.SHARE_DECISION, c.SHARE_DECISION, decision(share, True))
    await consumer.process([_Record(TOPIC, 0, 5, again)])  # the gateway published it again
    await consumer.process([_Record(TOPIC, 0, 6, granted)])  # the author answered
    assert commits.commits[-1] == {TopicPartition(TOPIC, 0): 7}  # after the rows were written
    assert consumer.queued == 0  # nothing of this is a queue item

    async with store.engine.connect() as conn:
        kept = store.answered
        answers = (await conn.execute(select(func.count()).select_from(kept.answers))).scalar()
        held = (await conn.execute(select(func.count()).select_from(kept.receipts))).scalar()
    assert (answers, held) == (4, 2)  # share, refused, ASKED, GRANTED; two receipts

    client = ShareClient(
        identity=rt.identity(LA, trust), trust=trust, contract=contract,
        producer=cast("AIOKafkaProducer", None), rows=store.answered,
    )  # fmt: skip
    found = await client.answers({share, refused, other})
    assert {k: v["allowed"] for k, v in found.items()} == {share: True, refused: False}
    assert found[refused]["broken"] == ["THIRD_PARTY_AUTHOR_CONSENT"]
    assert found[share] == decision(share, True)  # as the gateway sent it
    latest = await client.consent_answers({consent, share})
    assert [(k, v["state"]) for k, v in latest.items()] == [(consent, "GRANTED")]
    every = await client.consent_outcomes({consent})
    assert [o["state"] for o in every[consent]] == ["ASKED", "GRANTED"]
    assert list(await client.consent_outcomes()) == [consent]
    first = await store.answered.wait(contract, "consent", consent, 0.0)
    assert first["state"] == "ASKED"  # the gateway's first word, as a wait for it returns
    with pytest.raises(TimeoutError, match=str(other)):
        await store.answered.wait(contract, "share", other, 0.0)

    responder = ReferralResponder(
        identity=rt.identity(LA, trust), trust=trust, contract=contract,
        producer=cast("AIOKafkaProducer", None), rows=store.answered,
    )  # fmt: skip
    got = await responder.receipts({response, uuid.uuid4()})
    assert list(got) == [response]
    assert (got[response]["outcome"], got[response]["detail"]) == ("DELIVERED", "DELIVERED detail")
    assert got[response]["decided_at"] == NOW

    quarantined = [(q.offset, q.item, q.reason) for q in await store.quarantine_list()]
    assert quarantined == [(3, 0, "not_from_gateway"), (4, 0, "malformed_envelope")]
