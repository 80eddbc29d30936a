"""Sending the schools' open-case lists (gateway.open_case_sender): each list encoded as the
contract would, one round per LA once its backlog is judged, never more than the bound of
unacknowledged bytes, and an LA's allocation partition held uncommitted until its lists
went. Through the broker: tests/integration/test_open_case_rounds.py."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import CommitFailedError
from prometheus_client import CollectorRegistry

from gateway.decision import Decision
from gateway.open_case_sender import OpenCaseSender
from gateway.open_cases import encoded_lists, open_case_list, served_sets
from gateway.service import Gateway
from sgx.errors import ContractError
from sgx.kafka.outbound import AGENCY_HEADER
from sgx.kafka.quarantine import Source
from sgx.kafka.wiring import allocations_topic, receipts_topic
from sgx.keys.connectors import Connector
from sgx.keys.key_admin import init_trust
from sgx.keys.trust import PartySpec, TrustDirectory
from sgx.ops.metrics import GatewayMetrics
from sgx.wire import contract as c
from sgx.wire.contract import Contract, default_contract
from sgx.wire.envelope import Purpose

LA, OTHER_LA = "la-northshire", "la-southvale"
SCHOOL, OTHER_SCHOOL, BOUNDARY, OWN = (
    "school-hillside", "school-brookside", "school-boundary", "school-oak",
)  # fmt: skip
MIS = "mis-acme"
SPECS = [
    PartySpec("gateway", "gateway", "Exchange gateway"),
    PartySpec(LA, "local_authority", "Northshire Council", gss_code="E06000901"),
    PartySpec(OTHER_LA, "local_authority", "Southvale Council", gss_code="E06000902"),
    PartySpec(SCHOOL, "school", "Hillside Primary", (LA,)),
    PartySpec(OTHER_SCHOOL, "school", "Brookside Primary", (OTHER_LA,)),
    PartySpec(BOUNDARY, "school", "Boundary Primary", (LA, OTHER_LA)),
    PartySpec(OWN, "school", "Oak Primary", (LA,)),
]
CONNECTORS = [Connector(id=MIS, name="Acme MIS", carries=[SCHOOL, OTHER_SCHOOL, BOUNDARY])]
KEYS = {LA: [os.urandom(16) for _ in range(40)], OTHER_LA: [os.urandom(16) for _ in range(30)]}
ISSUED = datetime(2026, 12, 8, 9, 30, tzinfo=UTC)


@pytest.fixture(scope="module")
def trust(tmp_path_factory: pytest.TempPathFactory) -> TrustDirectory:
    folder: Path = tmp_path_factory.mktemp("trust") / "trust"
    return init_trust(folder, SPECS, CONNECTORS)


@pytest.fixture(scope="module")
def contract() -> Contract:
    return default_contract()


# --------------------------------------------------------------------------- encoding


@pytest.mark.parametrize("school", ["school-hillside", "s", "school-" + "x" * 70])
def test_each_list_is_the_contracts_own_encoding(contract: Contract, school: str) -> None:
    """Encoded once, each school's bytes are exactly those of encoding its own record
    (a 77-character id: the field's length takes two bytes)."""
    keys = KEYS[LA]
    (got,) = encoded_lists(contract, [school], keys, ISSUED)
    assert got == (school, contract.encode(c.OPEN_CASE_LIST, open_case_list(school, keys, ISSUED)))


def test_schools_of_one_served_set_share_the_list_not_the_id(contract: Contract) -> None:
    lists = dict(encoded_lists(contract, [SCHOOL, OWN], KEYS[LA], ISSUED))
    for school, encoded in lists.items():
        decoded = contract.decode_as(c.OPEN_CASE_LIST, encoded)
        assert decoded["school_id"] == school
        assert decoded["child_keys"] == sorted(KEYS[LA])
        assert decoded["issued_at"] == ISSUED


def test_a_list_with_a_key_of_the_wrong_length_is_refused_where(contract: Contract) -> None:
    keys = [*sorted(KEYS[LA])[:3], b"short"]
    with pytest.raises(ContractError, match=r"child_keys\[\d\]': is 5 bytes"):
        list(encoded_lists(contract, [SCHOOL], keys, ISSUED))


def test_served_sets_group_the_schools_of_the_las(trust: TrustDirectory) -> None:
    assert served_sets([LA], trust) == {(LA,): [SCHOOL, OWN], (LA, OTHER_LA): [BOUNDARY]}
    assert served_sets([OTHER_LA, LA], trust) == {
        (LA,): [SCHOOL, OWN],
        (LA, OTHER_LA): [BOUNDARY],
        (OTHER_LA,): [OTHER_SCHOOL],
    }


# --------------------------------------------------------------------------- when


class _Consumer:
    """What the sender asks of the gateway's consumer: its assignment, the high watermarks."""

    def __init__(self, highwater: dict[TopicPartition, int]) -> None:
        self.highwaters = highwater
        self.assigned = set(highwater)

    def assignment(self) -> set[TopicPartition]:
        return self.assigned

    def highwater(self, tp: TopicPartition) -> int | None:
        return self.highwaters.get(tp)


class _Directory:
    def __init__(self) -> None:
        self.reads: list[tuple[str, ...]] = []

    async def open_case_keys(self, local_authorities: Iterable[str]) -> list[bytes]:
        las = tuple(local_authorities)
        self.reads.append(las)
        return sorted({key for la in las for key in KEYS[la]})


class _Producer:
    """Acknowledges each record a little later; notes the most bytes ever unacknowledged."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes | None, Any, bytes]] = []
        self.unacknowledged = 0
        self.most_unacknowledged = 0

    async def send(
        self, topic: str, value: bytes, *, key: bytes | None = None, headers: Any = None
    ) -> asyncio.Future[None]:
        self.sent.append((topic, key, headers, value))
        self.unacknowledged += len(value)
        self.most_unacknowledged = max(self.most_unacknowledged, self.unacknowledged)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def acknowledge() -> None:
            self.unacknowledged -= len(value)
            done.set_result(None)

        asyncio.get_running_loop().call_later(0.001, acknowledge)
        return done


def _plain(school: str, purpose: Purpose, message_id: uuid.UUID, plaintext: bytes) -> bytes:
    assert purpose is Purpose.ALLOCATIONS
    return plaintext  # sealing is the envelope's, tested there


class _Clock:
    now = 100.0

    def __call__(self) -> float:
        return self.now


def _sender(
    trust: TrustDirectory, contract: Contract, **kwargs: Any
) -> tuple[OpenCaseSender, _Producer, _Directory]:
    producer, directory = _Producer(), _Directory()
    sender = OpenCaseSender(
        trust=trust,
        directory=directory,
        contract=contract,
        producer=producer,
        seal=_plain,
        **kwargs,
    )
    return sender, producer, directory


def _applied(la: str, offset: int) -> tuple[Source, Decision]:
    decision = Decision(outcome="applied", type_label="allocation_update")
    decision.open_cases_of.add(la)
    return Source(allocations_topic(la), 0, offset, 0, b""), decision


def _mark(sender: OpenCaseSender, *updates: tuple[str, int]) -> None:
    applied = [_applied(la, offset) for la, offset in updates]
    sender.mark([s for s, _ in applied], [d for _, d in applied])


TP, OTHER_TP = (
    TopicPartition(allocations_topic(LA), 0),
    TopicPartition(allocations_topic(OTHER_LA), 0),
)


def test_an_la_with_updates_still_waiting_waits(trust: TrustDirectory, contract: Contract) -> None:
    sender, _, _ = _sender(trust, contract)
    _mark(sender, (LA, 0), (OTHER_LA, 4))
    consumer = _Consumer({TP: 4, OTHER_TP: 5})  # three more of LA's on the broker
    assert sender.due(consumer) == [OTHER_LA]
    assert sender.held() == {TP, OTHER_TP}
    _mark(sender, (LA, 3))
    assert sender.due(consumer) == [LA, OTHER_LA]


def test_an_idle_gateway_sends_what_waits(trust: TrustDirectory, contract: Contract) -> None:
    sender, _, _ = _sender(trust, contract)
    _mark(sender, (LA, 0))
    consumer = _Consumer({TP: 9})
    assert sender.due(consumer) == []
    assert sender.due(consumer, idle=True) == [LA]


def test_an_la_waits_no_longer_than_the_hold(trust: TrustDirectory, contract: Contract) -> None:
    """A stream of updates that never ends still gets its schools a list every HOLD_S."""
    clock = _Clock()
    sender, _, _ = _sender(trust, contract, hold_s=30.0, clock=clock)
    _mark(sender, (LA, 0))
    consumer = _Consumer({TP: 100})
    clock.now += 29.9
    _mark(sender, (LA, 50))  # the wait counts from the first update, not the last
    assert sender.due(consumer) == []
    clock.now += 0.2
    assert sender.due(consumer) == [LA]


def test_a_partition_moved_away_is_forgotten(trust: TrustDirectory, contract: Contract) -> None:
    """Its new owner reads the updates again (they were not committed) and sends."""
    sender, _, _ = _sender(trust, contract)
    _mark(sender, (LA, 0))
    consumer = _Consumer({TP: 1})
    consumer.assigned = set()
    assert sender.due(consumer, idle=True) == []
    assert sender.held() == set()


async def test_one_round_sends_every_school_its_list_and_releases_the_offsets(
    trust: TrustDirectory, contract: Contract
) -> None:
    sender, producer, directory = _sender(trust, contract)
    _mark(sender, (LA, 0), (LA, 1), (LA, 2), (OTHER_LA, 7))
    released = await sender.send([LA])
    assert released == {TP: 3}  # the offset after its last update judged
    assert sender.held() == {OTHER_TP}  # not sent: still held
    assert sorted(directory.reads) == [(LA,), (LA, OTHER_LA)]  # one read per served set
    got = {}
    for topic, key, headers, value in producer.sent:
        record = contract.decode_as(c.OPEN_CASE_LIST, value)
        school = record["school_id"]
        got[school] = set(record["child_keys"])
        if school == OWN:  # its own receipts topic
            assert (topic, headers) == (receipts_topic(OWN), None)
        else:  # its connector's, keyed by and naming the school
            assert (topic, key, headers) == (
                receipts_topic(MIS),
                school.encode(),
                [(AGENCY_HEADER, school.encode())],
            )
    assert got == {
        SCHOOL: set(KEYS[LA]),
        OWN: set(KEYS[LA]),
        BOUNDARY: set(KEYS[LA]) | set(KEYS[OTHER_LA]),
    }  # Brookside serves Southvale only: nothing sent to it
    assert sender.sent == 3


async def test_lists_unacknowledged_stay_within_the_bound(
    trust: TrustDirectory, contract: Contract
) -> None:
    one = len(next(encoded_lists(contract, [SCHOOL], KEYS[LA], ISSUED))[1])
    sender, producer, _ = _sender(trust, contract, in_flight_bytes=one + 1)
    _mark(sender, (LA, 0), (OTHER_LA, 0))
    await sender.send([LA, OTHER_LA])
    assert len(producer.sent) == 4
    assert producer.most_unacknowledged <= 2 * one + 200  # the bound, and the list that passed it
    unbounded, producer, _ = _sender(trust, contract)
    _mark(unbounded, (LA, 0), (OTHER_LA, 0))
    await unbounded.send([LA, OTHER_LA])
    assert producer.most_unacknowledged > 3 * one  # without it all four were out at once


# --------------------------------------------------------------------------- the commit


class _Rebalanced(_Consumer):
    """A consumer whose group moved the partitions before the batch's commit."""

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        raise CommitFailedError("the group has already rebalanced")


async def test_a_commit_lost_to_a_rebalance_does_not_stop_the_gateway(
    trust: TrustDirectory, contract: Contract, caplog: pytest.LogCaptureFixture
) -> None:
    """The batch is recorded and published; its new owner reads it again and finds it
    judged. A gateway that died of it (as each did) took a live instance down with every
    rebalance that fell between a batch and its commit (seen in the zombie test: the
    survivor exited when the resumed zombie rejoined)."""
    gateway = Gateway.__new__(Gateway)  # only what the commit reads
    gateway.open_cases, _, _ = _sender(trust, contract)
    gateway._metrics = GatewayMetrics(CollectorRegistry())
    gateway._consumer = cast(AIOKafkaConsumer, _Rebalanced({TP: 1, OTHER_TP: 1}))
    gateway._claims = None
    await gateway._send_open_cases(offsets={TP: 1})
    assert "moved 1 partition(s) before their offsets were committed" in caplog.text
