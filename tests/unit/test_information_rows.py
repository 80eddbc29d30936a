"""The LA's consumer keeps the MASH's network checks as rows (queue 0009): the gateway's
status on each request and the MASH queue item answering it, once however often Kafka
delivers them; what it cannot open or check is quarantined with its reason. On SQLite and
on a real PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from prometheus_client import CollectorRegistry

from consumers.queue import QueueStore
from consumers.service import DeliveryConsumer
from safeguard.parties import DEMO_PARTIES, LA, SCHOOL
from safeguard.runtime import Runtime
from sgx.keys.key_admin import init_trust
from sgx.ops.metrics import ConsumerMetrics
from sgx.settings import ExchangeSettings
from sgx.wire import contract as c
from sgx.wire.envelope import Opener, Purpose, Sealer, pack
from tests.conftest_db import BACKENDS, queue_store_on
from tests.unit.test_queue_store import _Commits, _Record

NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
TOPIC = f"sgx.delivery.{LA}"


@pytest.fixture(params=BACKENDS)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[QueueStore]:
    async with queue_store_on(request.param, tmp_path, LA) as opened:
        yield opened


def status(request_id: uuid.UUID, state: str = "ASKED") -> dict[str, Any]:
    return {
        "request_id": request_id, "agency": SCHOOL, "rating": "AMBER", "state": state,
        "deadline": NOW + timedelta(hours=24) if state == "ASKED" else None,
        "identifiers_sent": ["upn", "date_of_birth"] if state == "ASKED" else [],
        "reason": "asked" if state == "ASKED" else "not served", "decided_at": NOW,
    }  # fmt: skip


def answer(request_id: uuid.UUID, answer_id: uuid.UUID) -> dict[str, Any]:
    return {
        "answer_id": answer_id, "request_id": request_id, "local_authority": LA,
        "outcome": "HELD", "facts": "Two exclusions", "professional_opinion": None,
        "restrictions": [], "answered_by": "Ms Patel, DSL", "automatic": False,
        "answered_at": NOW,
    }  # fmt: skip


def delivery(record: dict[str, Any], notification_id: uuid.UUID, rt: Runtime) -> dict[str, Any]:
    return {
        "notification_id": notification_id,
        "recipients": [
            {"id": f"mash:{LA}", "role": "MASH_DUTY", "team": "MASH", "name": "MASH duty",
             "route_reason": "REQUESTING_LA_MASH", "audit_sequence": 1, "audit_chain": "x:0"}
        ],
        "sender_agency": SCHOOL, "sender_kind": "school",
        "notification_type": c.INFORMATION_ANSWER, "urgency": "PRIORITY",
        "authored_at": NOW, "routed_at": NOW,
        "restrictions": [{"code": "THIRD_PARTY_AUTHOR_CONSENT", "source": "DEFAULT",
                          "text": "t"}],
        "onward_consent": [], "withheld": [], "referral_due": None,
        "notification": rt.contract().encode(c.INFORMATION_ANSWER, record),
    }  # fmt: skip


async def test_statuses_and_answers_are_kept_once_and_the_untrusted_quarantined(
    store: QueueStore, tmp_path: Path
) -> None:
    init_trust(tmp_path / "trust", DEMO_PARTIES)
    rt = Runtime(exchange=ExchangeSettings(home=tmp_path, metrics_port=-1))
    trust, contract = rt.trust(), rt.contract()
    gateway = Sealer(rt.identity("gateway", trust), trust, LA)
    school = Sealer(rt.identity(SCHOOL, trust), trust, LA)
    asked, refused, answer_id = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()

    def sealed(by: Sealer, purpose: Purpose, name: str, record: dict[str, Any]) -> bytes:
        return by.seal(purpose, uuid.uuid4(), contract.encode(name, record))

    said = sealed(gateway, Purpose.SHARE_DECISION, c.INFORMATION_STATUS, status(asked))
    no = sealed(gateway, Purpose.SHARE_DECISION, c.INFORMATION_STATUS, status(refused, "REFUSED"))
    answered = sealed(
        gateway, Purpose.DELIVERY, c.DELIVERY, delivery(answer(asked, answer_id), answer_id, rt)
    )
    # an agency cannot speak for the gateway; a delivery naming another answer than it
    # holds, and a status that is not one, cannot be checked
    forged = sealed(school, Purpose.SHARE_DECISION, c.INFORMATION_STATUS, status(uuid.uuid4()))
    other = uuid.uuid4()
    mismatched = sealed(
        gateway, Purpose.DELIVERY, c.DELIVERY, delivery(answer(other, other), uuid.uuid4(), rt)
    )
    not_a_status = sealed(
        gateway, Purpose.SHARE_DECISION, c.INFORMATION_ANSWER, answer(other, other)
    )
    elsewhere = uuid.uuid4()  # an answer naming another LA, in this LA's MASH queue
    islingtons = sealed(
        gateway, Purpose.DELIVERY, c.DELIVERY,
        delivery(answer(other, elsewhere) | {"local_authority": "la-islington"}, elsewhere, rt),
    )  # fmt: skip
    commits = _Commits({TopicPartition(TOPIC, 0)})
    consumer = DeliveryConsumer(
        opener=Opener(rt.identity(LA, trust), trust), contract=contract, store=store,
        consumer=cast("AIOKafkaConsumer", commits), metrics=ConsumerMetrics(CollectorRegistry()),
    )  # fmt: skip
    batch = [
        _Record(TOPIC, 0, 0, pack([said, answered])),
        _Record(TOPIC, 0, 1, no),
        _Record(TOPIC, 0, 2, pack([forged, mismatched, not_a_status, islingtons])),
    ]
    await consumer.process(batch)
    await consumer.process(batch)  # Kafka delivers it again (a crash before the commit)
    await consumer.process([_Record(TOPIC, 0, 3, answered)])  # the gateway published it again

    kept = await store.information.status_of([str(asked), str(refused), str(other)])
    assert set(kept) == {str(asked), str(refused)}
    assert (kept[str(asked)].state, kept[str(asked)].deadline) == (
        "ASKED",
        NOW + timedelta(hours=24),
    )
    assert kept[str(asked)].identifiers_sent == ("upn", "date_of_birth")
    assert (kept[str(refused)].state, kept[str(refused)].reason) == ("REFUSED", "not served")
    assert kept[str(asked)].source_offset == f"{TOPIC}/0/0/0"

    answering = await store.answering([str(asked), str(refused), str(other)])
    assert list(answering) == [str(asked)]
    item = await store.get(answering[str(asked)])
    assert (item.notification_id, item.recipient_id) == (str(answer_id), f"mash:{LA}")
    assert item.notification_type == c.INFORMATION_ANSWER
    assert await store.count() == 1  # one row, whatever the redeliveries
    assert consumer.queued == 1

    held = [(q.offset, q.item, q.reason) for q in await store.quarantine_list()]
    assert held == [
        (2, 0, "not_from_gateway"), (2, 1, "invalid_record"), (2, 2, "invalid_record"),
        (2, 3, "invalid_record"),
    ]  # fmt: skip
