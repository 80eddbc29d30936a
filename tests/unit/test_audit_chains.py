"""Several writers of the audit trail: a chain per partition, fenced by epoch, checkpointed
with a signature, and messages judged once (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gateway.checkpoints import Checkpoints, verify_checkpoints
from gateway.records import Judged
from gateway.store import GatewayStore
from safeguard.parties import DEMO_PARTIES
from sgx.errors import AuditChainBroken, Fenced
from sgx.keys.identity import Identity
from sgx.keys.key_admin import init_trust
from sgx.keys.trust import TrustDirectory
from tests.conftest_db import BACKENDS, Backend, backend
from tests.unit.test_gateway_store import audit

A, B = "sgx.inbound.school-hillside:0", "sgx.inbound.nhs-royal-free:1"


@pytest.fixture(params=BACKENDS)
async def db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    async with backend(request.param, tmp_path) as where:
        yield where


@pytest.fixture
async def store(db: Backend) -> AsyncIterator[GatewayStore]:
    async with await GatewayStore.open(
        db.dsn, db.sqlite_path, schema=db.schema, owner="gateway"
    ) as opened:
        yield opened


async def count(store: GatewayStore) -> int:
    return len(await store.audit_records())


async def test_each_chain_keeps_its_own_sequence(store: GatewayStore) -> None:
    places = await store.record_places([audit(n) for n in range(1, 6)], chains=[A, B, A, A, B])
    assert places == [(A, 1), (B, 1), (A, 2), (A, 3), (B, 2)]
    verified = await store.verify_chains()
    assert {chain: n for chain, (n, _) in verified.items()} == {A: 3, B: 2}
    heads = await store.chain_heads()
    assert (heads[A].sequence, heads[B].sequence) == (3, 2)


async def test_a_decision_recorded_in_one_chain_is_not_appended_to_another(
    store: GatewayStore,
) -> None:
    await store.record_places([audit(1)], chains=[A])
    assert await store.record_places([audit(1), audit(2)], chains=[B, B]) == [(A, 1), (B, 1)]


async def test_a_claim_fences_the_previous_writer(store: GatewayStore) -> None:
    first = await store.claim([A, B], "gateway-1")
    await store.record([audit(1)], chains=[A], fence=first)
    second = await store.claim([A], "gateway-2")  # the group gave A to another instance
    assert second[A] == first[A] + 1
    with pytest.raises(Fenced, match=A):
        await store.record([audit(2), audit(3)], chains=[A, B], fence=first)
    assert await count(store) == 1  # nothing of the zombie's batch, not even on B
    assert (await store.chain_heads())[A].owner == "gateway-2"
    await store.record([audit(2)], chains=[A], fence=second)
    await store.record([audit(3)], chains=[B], fence=first)  # B is still the first's
    assert {c: n for c, (n, _) in (await store.verify_chains()).items()} == {A: 2, B: 1}


async def test_writers_of_different_chains_run_side_by_side(store: GatewayStore) -> None:
    epochs = await store.claim([A, B], "gateway-1")

    async def write(chain: str, first: int) -> None:
        for n in range(first, first + 20):
            await store.record([audit(n)], chains=[chain], fence=epochs)

    await asyncio.gather(write(A, 1), write(B, 100))
    assert {c: n for c, (n, _) in (await store.verify_chains()).items()} == {A: 20, B: 20}


async def test_judged_messages_are_found_by_message_id(store: GatewayStore) -> None:
    seen = Judged("school-hillside", "m-1", "sgx.inbound.school-hillside", 0, 7, 0,
                  "delivered", "attendance_update", datetime(2026, 1, 5, tzinfo=UTC))  # fmt: skip
    await store.record([audit(1)], judged=[seen])
    await store.record([], judged=[dataclasses.replace(seen, offset=9)])  # the first stays
    assert await store.judged(["m-1", "m-2"]) == {("school-hillside", "m-1"): seen}


# --- signed checkpoints -------------------------------------------------------------------


@pytest.fixture
def trust_dir(tmp_path: Path) -> Path:
    init_trust(tmp_path / "trust", DEMO_PARTIES)
    return tmp_path / "trust"


async def test_a_tail_cut_below_a_signed_checkpoint_is_detected(
    db: Backend, store: GatewayStore, trust_dir: Path
) -> None:
    trust = TrustDirectory.load(trust_dir)
    gateway = Identity.load(trust_dir, "gateway", directory=trust)
    checkpoints = await Checkpoints(store.engine, schema=db.schema).open()
    await store.record([audit(n) for n in range(1, 6)], chains=[A] * 5)
    (made,) = await checkpoints.take(store, gateway)
    assert (made.chain, made.sequence) == (A, 5)
    assert await checkpoints.take(store, gateway) == []  # nothing grew
    assert (await verify_checkpoints(store, checkpoints, trust))[A].sequence == 5

    # Cut the last two records and rewind the head row: the chain alone still verifies...
    await db.execute(f"DELETE FROM {db.table('audit_record')} WHERE sequence >= 4")
    await db.execute(
        f"UPDATE {db.table('audit_chain')} SET head_sequence = 3, head_hash = "
        f"(SELECT hash FROM {db.table('audit_record')} WHERE sequence = 3)"
    )
    assert (await store.verify_chains())[A][0] == 3
    # ...but not against the signed checkpoint
    with pytest.raises(AuditChainBroken, match="cut below its checkpoint") as caught:
        await verify_checkpoints(store, checkpoints, trust)
    assert (caught.value.chain, caught.value.sequence) == (A, 5)


async def test_a_forged_or_foreign_checkpoint_is_refused(
    db: Backend, store: GatewayStore, trust_dir: Path
) -> None:
    trust = TrustDirectory.load(trust_dir)
    checkpoints = await Checkpoints(store.engine, schema=db.schema).open()
    await store.record([audit(1)], chains=[A])
    # signed by an agency, not the gateway
    school = Identity.load(trust_dir, "school-hillside", directory=trust)
    await checkpoints.take(store, school)
    with pytest.raises(AuditChainBroken, match="not a gateway key"):
        await verify_checkpoints(store, checkpoints, trust)
    await db.execute(f"DELETE FROM {db.table('audit_checkpoint')}")
    gateway = Identity.load(trust_dir, "gateway", directory=trust)
    await checkpoints.take(store, gateway)
    await db.execute(f"UPDATE {db.table('audit_checkpoint')} SET hash = '{'0' * 64}'")
    with pytest.raises(AuditChainBroken, match="signature does not verify"):
        await verify_checkpoints(store, checkpoints, trust)
