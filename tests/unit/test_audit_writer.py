"""A gateway batch is a fixed number of driver calls, however many chains and rows it
writes, and its fence is the head rows' compare-and-set in the append's transaction
(gateway.audit_writer; SQLite and PostgreSQL)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from prometheus_client import CollectorRegistry

from gateway.records import Judged
from gateway.service import ChainClaims, Gateway
from gateway.store import GatewayStore
from sgx.errors import Fenced
from sgx.ops.metrics import GatewayMetrics
from sgx.store import driver
from tests.conftest_db import BACKENDS, Backend, backend
from tests.unit.test_gateway_store import audit, ledger, quarantined

CALLS = (
    (driver._SqliteTx, "many"), (driver._SqliteTx, "execute"), (driver._SqliteTx, "fetch"),
    (driver._PostgresTx, "many"), (driver._PostgresTx, "execute"),
    (driver._PostgresTx, "fetch"), (driver.Driver, "read"), (driver.Driver, "transaction"),
)  # fmt: skip


@pytest.fixture(params=BACKENDS)
async def db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    async with backend(request.param, tmp_path) as where:
        yield where


async def _open(db: Backend) -> GatewayStore:
    return await GatewayStore.open(db.dsn, db.sqlite_path, schema=db.schema, owner="gateway")


@pytest.fixture
async def store(db: Backend) -> AsyncIterator[GatewayStore]:
    async with await _open(db) as opened:
        yield opened


@contextmanager
def counted() -> Iterator[list[str]]:
    """The name of every driver call made while the block runs."""
    calls: list[str] = []

    def spy(owner: type, name: str) -> Any:
        call = getattr(owner, name)

        def spied(self: Any, *args: Any, **kwargs: Any) -> Any:
            calls.append(name)
            return call(self, *args, **kwargs)

        return spied

    with pytest.MonkeyPatch.context() as patch:
        for owner, name in CALLS:
            patch.setattr(owner, name, spy(owner, name))
        yield calls


def _batch(first: int, chains: list[str], per_chain: int) -> dict[str, Any]:
    entries = [
        (audit(first + i * per_chain + n), chain)
        for i, chain in enumerate(chains)
        for n in range(per_chain)
    ]
    count = len(entries)
    judged = [
        Judged("school-oakfield", f"message-{first + n}", "t", 0, first + n, 0, "delivered",
               "attendance_update", datetime(2026, 12, 7, tzinfo=UTC))
        for n in range(count)
    ]  # fmt: skip
    return {
        "audit": [entry for entry, _ in entries],
        "chains": [chain for _, chain in entries],
        "ledger": [ledger(first + n) for n in range(count)],
        "quarantine": [quarantined(first + n) for n in range(count)],
        "judged": judged,
    }


async def _write(store: GatewayStore, batch: dict[str, Any], fence: dict[str, int]) -> Any:
    return await store.record_places(
        batch["audit"], batch["quarantine"], batch["ledger"], chains=batch["chains"],
        fence=fence, judged=batch["judged"],
    )  # fmt: skip


async def test_a_batch_is_the_same_few_driver_calls_for_one_chain_or_twenty(
    store: GatewayStore,
) -> None:
    small = [f"sgx.inbound.school-oakfield:{p}" for p in range(1)]
    large = [f"sgx.inbound.school-oakfield:{p}" for p in range(20)]
    fence = await store.claim(large, "gateway-1")  # a claim reads the heads: none read again
    calls = []
    for first, chains, per_chain in ((1, small, 1), (1000, large, 15)):
        batch = _batch(first, chains, per_chain)
        with counted() as made:
            await store.judged(j.message_id for j in batch["judged"])
            await _write(store, batch, fence)
        calls.append(made)
    # the look-up; then one transaction: the fence, audit records, ledger, judged, quarantine
    assert calls[0] == calls[1]
    assert calls[0][0] == "read"
    assert calls[0].count("transaction") == 1
    assert len(calls[0]) == 7, calls[0]
    assert {c: (n, _) for c, (n, _) in (await store.verify_chains()).items()}[large[0]][0] == 16


async def test_a_head_moved_by_another_writer_is_read_again_and_the_chain_goes_on(
    db: Backend, store: GatewayStore
) -> None:
    """Two writers of one chain without a group (a tool beside the gateway): each writes on
    the head it knows; the database refuses the stale one, which reads the head and goes on,
    so the chain never forks."""
    chain = ["sgx.inbound.school-oakfield:0"]
    async with await _open(db) as other:
        assert await store.record_places([audit(1)], chains=chain) == [(chain[0], 1)]
        assert await other.record_places([audit(2)], chains=chain) == [(chain[0], 2)]
        with counted() as made:
            assert await store.record_places([audit(3)], chains=chain) == [(chain[0], 3)]
        assert made.count("transaction") == 2, "refused on the stale head, then written"
        assert await other.record_places([audit(4)], chains=chain) == [(chain[0], 4)]
    assert (await store.verify_chain(chain=chain[0]))[0] == 4


async def test_a_claim_by_another_instance_between_two_batches_fences_the_next(
    db: Backend, store: GatewayStore
) -> None:
    chain = "sgx.inbound.school-oakfield:0"
    mine = await store.claim([chain], "gateway-1")
    await store.record([audit(1)], chains=[chain], fence=mine)
    async with await _open(db) as successor:
        theirs = await successor.claim([chain], "gateway-2")
        await successor.record([audit(2)], chains=[chain], fence=theirs)
    with pytest.raises(Fenced, match=chain):
        await store.record([audit(3)], [quarantined(7)], [ledger(3)], chains=[chain], fence=mine)
    assert await store.quarantine_count() == 0, "nothing of the zombie's batch"
    assert await store.ledger_entry("notification-3", "la-north") is None
    assert (await store.verify_chain(chain=chain))[0] == 2


class _Assigned:
    """A group consumer's view of what the group assigned it (aiokafka's assignment())."""

    def __init__(self, *partitions: tuple[str, int]) -> None:
        self._partitions = {TopicPartition(t, p) for t, p in partitions}

    def assignment(self) -> set[TopicPartition]:
        return self._partitions


async def test_an_assigned_chain_whose_claim_failed_is_claimed_before_the_batch(
    db: Backend, store: GatewayStore
) -> None:
    """The rebalance listener's claim can give up (the database away for its whole limit);
    aiokafka goes on with the assignment, so the instance reads the partition holding no
    epoch for its chain. Fenced at every batch, it read the same batch again for ever (seen
    in CI: a gateway fenced every 40 ms). The chain is claimed at the batch instead; a chain
    the group did not assign here is still fenced, and a zombie's stale epoch is kept."""
    ours, not_ours = "sgx.inbound.school-oakfield:0", "sgx.inbound.school-oakfield:1"
    async with await _open(db) as other:
        await other.claim([ours, not_ours], "gateway-2")  # the previous owner's epoch 1
    claims = ChainClaims(store, "gateway-1", GatewayMetrics(CollectorRegistry()))
    gateway = Gateway.__new__(Gateway)  # only what _fence reads
    gateway._claims, gateway._epochs, gateway._store = claims, claims.epochs, store
    gateway._consumer = cast(AIOKafkaConsumer, _Assigned(("sgx.inbound.school-oakfield", 0)))
    claims.unclaimed = {ours, not_ours}  # the listener has not claimed them (or gave up)
    fence = await gateway._fence([ours, not_ours])
    assert fence == {ours: 2, not_ours: 0}
    assert claims.unclaimed == {not_ours}
    assert await store.record_places([audit(1)], chains=[ours], fence=fence) == [(ours, 1)]
    with pytest.raises(Fenced, match=not_ours):
        await store.record_places([audit(2)], chains=[not_ours], fence=fence)
    claims.epochs[ours] = 1  # a zombie's stale epoch: not claimed again, fenced
    assert await gateway._fence([ours]) == {ours: 1}


async def test_an_assigned_chain_a_rebalance_is_moving_is_fenced_not_claimed(
    db: Backend, store: GatewayStore
) -> None:
    """A zombie resuming: the rebalance revoked its chains (their epochs dropped) while
    aiokafka still lists the partitions as assigned. Its next batch must be fenced: claimed,
    the chain's new owner would be fenced, for ever once the zombie left the group (seen in
    the zombie test: the survivor delivered nothing more)."""
    chain = "sgx.inbound.school-oakfield:0"
    async with await _open(db) as survivor:
        await survivor.claim([chain], "gateway-2")  # the new owner's epoch
    claims = ChainClaims(store, "gateway-1", GatewayMetrics(CollectorRegistry()))
    gateway = Gateway.__new__(Gateway)  # only what _fence reads
    gateway._claims, gateway._epochs, gateway._store = claims, claims.epochs, store
    gateway._consumer = cast(AIOKafkaConsumer, _Assigned(("sgx.inbound.school-oakfield", 0)))
    fence = await gateway._fence([chain])
    assert fence == {chain: 0}
    with pytest.raises(Fenced, match=chain):
        await store.record_places([audit(1)], chains=[chain], fence=fence)
    assert (await store.chain_heads())[chain].owner == "gateway-2"
