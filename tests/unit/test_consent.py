"""The author's consent: what a grant lifts, the records' rules, and both ends' stores."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from prometheus_client import CollectorRegistry
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.consent_book import ConsentAnswered, ConsentAsk, ConsentBook
from gateway.store import GatewayStore
from producers.consent_requests import ConsentRequest, ConsentRequests
from producers.outbox import Outbox, OutboxStore
from producers.publisher import Publisher
from producers.push_consent import answer_from_json
from safeguard.parties import DEMO_PARTIES, LA, POLICE, SCHOOL
from safeguard.runtime import Runtime
from sgx.domain.consent import Grant, blocking, purpose_key, still_blocked
from sgx.errors import AlreadyAnswered, ContractError, NotFound
from sgx.keys.key_admin import init_trust
from sgx.ops.metrics import ProducerMetrics
from sgx.settings import ExchangeSettings
from sgx.store.db import write_transaction
from sgx.wire import contract as c
from sgx.wire.contract import default_contract
from tests.conftest_db import BACKENDS, Backend, backend

THIRD, POLICE_ONLY = "THIRD_PARTY_AUTHOR_CONSENT", "POLICE_CONFIDENTIAL_TO_PROCEEDINGS"
NOW = datetime(2026, 12, 6, 9, 30, tzinfo=UTC)


def test_purposes_compare_as_words() -> None:
    assert purpose_key("  Child  protection\nCONFERENCE ") == "child protection conference"
    assert purpose_key("child protection conference") != purpose_key("planning")


def test_a_consent_on_record_never_lifts_what_only_a_court_order_lifts() -> None:
    codes = (THIRD, POLICE_ONLY)
    assert blocking(codes, (), "PARENT_OR_CARER") == [THIRD, POLICE_ONLY]
    assert blocking(codes, ("PARENT_OR_CARER",), "PARENT_OR_CARER") == [POLICE_ONLY]
    assert blocking(codes, (), "CARE_PROCEEDINGS") == [THIRD]  # proceedings: not police-barred
    assert blocking(codes, (), "LA_SOCIAL_CARE") == []


def test_a_grant_lifts_the_authors_restrictions_and_a_court_order_the_police_one() -> None:
    broken = [THIRD, POLICE_ONLY]
    assert still_blocked(broken, None) == broken
    assert still_blocked(broken, Grant("r", "p", "DS Smith", None)) == [POLICE_ONLY]
    assert still_blocked(broken, Grant("r", "p", "DS Smith", "Order ZE26C00123")) == []
    assert still_blocked(["NOT_TO_PARENTS"], Grant("r", "p", "Head", None)) == []


def request_record(**fields: Any) -> dict[str, Any]:
    return {
        "request_id": uuid.uuid4(),
        "notification_id": uuid.uuid4(),
        "local_authority": LA,
        "requested_by": "sw-amara",
        "category": "PARENT_OR_CARER",
        "purpose": "Child protection conference",
        "requested_at": NOW,
        "blocking": [],
        **fields,
    }


def _answer(**fields: Any) -> dict[str, Any]:
    return {
        "answer_id": uuid.uuid4(),
        "request_id": uuid.uuid4(),
        "notification_id": uuid.uuid4(),
        "granted": True,
        "answered_by": "Ms Head",
        "reason": None,
        "court_order": None,
        "answered_at": NOW,
        **fields,
    }


@pytest.mark.parametrize(
    ("record", "path"),
    [
        (request_record(purpose="   "), "purpose"),
        (request_record(purpose="x" * 501), "purpose"),
        (request_record(requested_by=""), "requested_by"),
    ],
)
def test_a_consent_request_must_say_who_and_why(record: dict[str, Any], path: str) -> None:
    with pytest.raises(ContractError) as raised:
        default_contract().encode(c.CONSENT_REQUEST, record)
    assert raised.value.path == path


def test_a_court_order_goes_only_with_a_grant() -> None:
    contract = default_contract()
    contract.encode(c.CONSENT_ANSWER, _answer(court_order="Order ZE26C00123"))
    with pytest.raises(ContractError) as raised:
        contract.encode(c.CONSENT_ANSWER, _answer(granted=False, court_order="Order"))
    assert raised.value.path == "court_order"
    with pytest.raises(ContractError) as blank:
        contract.encode(c.CONSENT_ANSWER, _answer(answered_by=" "))
    assert blank.value.path == "answered_by"


def test_the_push_answer_names_a_wrong_field_and_never_echoes_it() -> None:
    assert answer_from_json({"granted": False, "answered_by": "Ms Head"})["granted"] is False
    with pytest.raises(ContractError) as missing:
        answer_from_json({"answered_by": "Ms Head"})
    assert missing.value.path == "granted"
    with pytest.raises(ContractError) as wrong:
        answer_from_json({"granted": "yes", "answered_by": "Ms Head"})
    assert wrong.value.path == "granted"
    with pytest.raises(ContractError) as extra:
        answer_from_json({"granted": True, "answered_by": "x", "nhs_9434765919": 1})
    assert "9434765919" not in str(extra.value)


@pytest.mark.parametrize("field", ["answered_by", "reason", "court_order"])
def test_the_push_answer_refuses_an_empty_field_by_name(field: str) -> None:
    """The document says minLength 1; "" was taken as no reason or no court order (found
    by fuzzing the push endpoint)."""
    with pytest.raises(ContractError, match="must not be empty") as empty:
        answer_from_json({"granted": True, "answered_by": "Ms Head", field: ""})
    assert empty.value.path == field
    assert answer_from_json({"granted": True, "answered_by": "Ms Head", "reason": None})


# -- the author's store -------------------------------------------------------------------


@pytest.fixture(params=BACKENDS)
async def db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    async with backend(request.param, tmp_path) as where:
        yield where


@contextlib.asynccontextmanager
async def offline_outbox(tmp_path: Path, store: OutboxStore, agency: str) -> AsyncIterator[Outbox]:
    """The agency's outbox over ``store``, its publisher's Kafka client never started."""
    init_trust(tmp_path / "trust", DEMO_PARTIES)
    rt = Runtime(exchange=ExchangeSettings(home=tmp_path, metrics_port=-1))
    trust = rt.trust()
    kafka = AIOKafkaProducer(bootstrap_servers="127.0.0.1:9")
    try:
        publisher = Publisher(
            identity=rt.identity(agency, trust),
            trust=trust,
            contract=rt.contract(),
            pseudonyms=rt.pseudonyms(),
            producer=kafka,
            metrics=ProducerMetrics(CollectorRegistry()),
        )
        yield Outbox(store, publisher, agency)
    finally:
        await kafka.stop()


async def keep_requests(engine: AsyncEngine, book: ConsentRequests, *asked: ConsentRequest) -> None:
    async with write_transaction(engine) as conn:
        await book.persist(conn, list(asked))


async def test_an_author_answers_once_and_the_answer_goes_in_the_outbox(
    db: Backend, tmp_path: Path
) -> None:
    async with (
        await OutboxStore.open(
            db.dsn, db.sqlite_path, schema=db.schema, owner="agency-test"
        ) as store,
        offline_outbox(tmp_path, store, SCHOOL) as outbox,
    ):
        book = ConsentRequests(store.engine, schema=db.schema)
        asked = ConsentRequest.of(SCHOOL, request_record(blocking=[THIRD]), NOW)
        await keep_requests(store.engine, book, asked, asked)  # a replayed batch keeps one
        assert [r.request_id for r in await book.list(SCHOOL, open_only=True)] == [asked.request_id]
        assert await book.list(POLICE) == []

        answered = await book.answer(
            outbox, asked.request_id, granted=True, answered_by="Ms Head", reason="for the CP"
        )
        assert (answered.answer, answered.answered_by) == ("GRANTED", "Ms Head")
        (entry,) = await store.entries(SCHOOL)
        assert entry.schema_name == c.CONSENT_ANSWER
        assert entry.message_id == answered.answer_id
        assert await book.list(SCHOOL, open_only=True) == []

        with pytest.raises(AlreadyAnswered, match="the first answer stands"):
            await book.answer(outbox, asked.request_id, granted=False, answered_by="Mr Other")
        assert len(await store.entries(SCHOOL)) == 1
        with pytest.raises(NotFound):
            await book.answer(outbox, uuid.uuid4(), granted=True, answered_by="Ms Head")


async def test_a_police_grant_that_bars_parents_needs_the_court_order(
    db: Backend, tmp_path: Path
) -> None:
    async with (
        await OutboxStore.open(
            db.dsn, db.sqlite_path, schema=db.schema, owner="agency-test"
        ) as store,
        offline_outbox(tmp_path, store, POLICE) as outbox,
    ):
        book = ConsentRequests(store.engine, schema=db.schema)
        asked = ConsentRequest.of(POLICE, request_record(blocking=[THIRD, POLICE_ONLY]), NOW)
        await keep_requests(store.engine, book, asked)
        with pytest.raises(ContractError) as raised:
            await book.answer(outbox, asked.request_id, granted=True, answered_by="DS Smith")
        assert raised.value.path == "court_order"
        assert await store.entries(POLICE) == []  # nothing kept
        refused = await book.answer(outbox, asked.request_id, granted=False, answered_by="DS Smith")
        assert refused.answer == "REFUSED"


# -- the gateway's book -------------------------------------------------------------------


def _ask(category: str = "PARENT_OR_CARER", **fields: Any) -> ConsentAsk:
    values: dict[str, Any] = {
        "request_id": str(uuid.uuid4()),
        "notification_id": "n-1",
        "local_authority": LA,
        "requested_by": "sw-amara",
        "author": SCHOOL,
        "author_kind": "school",
        "category": category,
        "purpose": "Child protection conference",
        "blocking": (THIRD,),
        "requested_at": NOW,
        **fields,
    }
    return ConsentAsk(**values)


def _answered(ask: ConsentAsk, answer: str, by: str) -> ConsentAnswered:
    return ConsentAnswered(ask.request_id, answer, str(uuid.uuid4()), by, None, None, NOW)


async def test_the_gateway_keeps_the_first_answer_and_finds_grants_by_category(
    db: Backend,
) -> None:
    async with await GatewayStore.open(
        db.dsn, db.sqlite_path, schema=db.schema, owner="gateway"
    ) as store:
        book = ConsentBook(store.engine, schema=db.schema)
        parents, court, other_la = _ask(), _ask("CARE_PROCEEDINGS"), _ask(local_authority="la-x")
        async with write_transaction(store.engine) as conn:
            await book.persist(conn, [parents, court, other_la, parents])
            await book.persist(
                conn,
                [_answered(parents, "GRANTED", "Ms Head"), _answered(parents, "REFUSED", "Mr B")],
            )
            await book.persist(conn, [_answered(court, "REFUSED", "Ms Head")])
            await book.persist(conn, [_answered(other_la, "GRANTED", "Ms Head")])
        (grant,) = await book.grants("n-1", LA, "PARENT_OR_CARER")
        assert (grant.request_id, grant.answered_by) == (parents.request_id, "Ms Head")
        assert await book.grants("n-1", LA, "CARE_PROCEEDINGS") == []  # refused
        assert await book.grants("n-1", LA, "OTHER_PROFESSIONAL") == []
        assert len(await book.requests("n-1", LA)) == 2
        stored = await book.request(parents.request_id)
        assert stored is not None
        assert stored.answer == "GRANTED"
        assert stored.blocking == (THIRD,)
        assert await book.request("nope") is None
