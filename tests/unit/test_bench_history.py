"""benchmarks.history: the history it writes straight into the stores is what the stores
would have written (read back through their own APIs), and the stores open on it."""

from __future__ import annotations

from dataclasses import fields, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from benchmarks.common import Result
from benchmarks.history import (
    HISTORY_CHAINS,
    Filled,
    fill_history,
    fill_line,
    history_line,
)
from benchmarks.pipeline import _route_reasons
from consumers.monitor import QueueMonitor
from consumers.queue import QueueEntry, QueueSelection
from gateway.audit_chain import AuditEntry
from gateway.checkpoints import Checkpoints
from safeguard.parties import DEMO_PARTIES, LA, SCHOOL
from safeguard.runtime import Runtime
from sgx.keys.key_admin import init_trust
from sgx.ops.metrics import QueueMetrics
from sgx.settings import ExchangeSettings, KafkaSettings, StoreSettings
from sgx.wire import contract as c

ROWS, UNREAD = 2_000, 300
LIVE_CHAIN = f"sgx.inbound.{SCHOOL}:0"


@pytest.fixture(scope="module")
async def filled(tmp_path_factory: pytest.TempPathFactory) -> tuple[Runtime, Filled]:
    home = tmp_path_factory.mktemp("history")
    init_trust(home / "trust", DEMO_PARTIES)
    rt = Runtime(
        exchange=ExchangeSettings(home=home, metrics_port=-1),
        kafka=KafkaSettings(),
        store=StoreSettings(dsn=None),  # SQLite in the home, whatever the environment says
    )
    return rt, await fill_history(rt, SCHOOL, (LA,), ROWS, unread=UNREAD)


def _recent(moment: datetime) -> bool:
    """Aware, in UTC, and within the year (and a bit) before now."""
    now = datetime.now(UTC)
    return moment.utcoffset() == timedelta(0) and now - timedelta(days=367) < moment < now


async def test_every_table_gets_its_rows(filled: tuple[Runtime, Filled]) -> None:
    rt, made = filled
    assert made.rows == {
        "judged_message": ROWS,
        "share_ledger": ROWS,
        "audit_record": ROWS,
        "audit_chain": HISTORY_CHAINS,
        "audit_checkpoint": ROWS,  # one per record: fewer records than 30-s intervals
        "queue_item": ROWS,
        "queue_delivery": ROWS // 2,  # one delivery for each message's two addressees
    }
    assert set(made.seconds) == set(made.rows)
    assert (Path(rt.exchange.home) / "gateway.db").exists()
    assert (Path(rt.exchange.home) / f"queue-{LA}.db").exists()


async def test_the_gateway_store_reads_the_history(filled: tuple[Runtime, Filled]) -> None:
    rt, _ = filled
    async with await rt.gateway_store() as store:  # opens: the migrations accept the file
        heads = await store.chain_heads()
        history = sorted(name for name, state in heads.items() if state.owner == "history")
        assert len(history) == HISTORY_CHAINS
        assert sum(heads[name].sequence for name in history) == ROWS
        # the chains are hash-chained as the store chains them: they verify
        verified = await store.verify_chains()
        assert {name: verified[name] for name in history} == {
            name: (heads[name].sequence, heads[name].hash) for name in history
        }
        records = await store.audit_records(chain=history[0], limit=10)
        assert [r.sequence for r in records] == list(range(1, 11))
        assert all(_recent(r.decided_at) and r.sender == SCHOOL for r in records)
        assert {r.recipient_role for r in records} == {"SOCIAL_WORKER", "SUPERVISOR"}
        assert records[0].restrictions == ("THIRD_PARTY_AUTHOR_CONSENT",)

        ids = [r.message_id for r in records]
        judged = await store.judged(ids)
        assert {key[1] for key in judged} == set(ids)
        assert all(j.sender == SCHOOL and _recent(j.judged_at) for j in judged.values())
        assert all(j.topic == f"sgx.inbound.{SCHOOL}" for j in judged.values())
        ledger = await store.ledger_entry(ids[0], LA)
        assert ledger is not None
        assert ledger.sender_kind == "school"
        assert _recent(ledger.recorded_at)

        # a decision already in the history is found, not appended again (its key is the
        # store's own); a new one is appended to a live chain as on day one
        old = records[0]
        again = AuditEntry(**{f.name: getattr(old, f.name) for f in fields(AuditEntry)})
        assert await store.record_places([again], chains=[LIVE_CHAIN]) == [
            (old.chain, old.sequence)
        ]
        new = replace(again, message_id="new", notification_id="new")
        assert await store.record_places([new], chains=[LIVE_CHAIN]) == [(LIVE_CHAIN, 1)]

        checkpoints = Checkpoints(store.engine)
        latest = await checkpoints.latest(history)
        assert {name: cp.sequence for name, cp in latest.items()} == {
            name: heads[name].sequence for name in history
        }
        for cp in latest.values():
            assert _recent(cp.signed_at)
            assert cp.signer == "gateway"
            record = await store.record_at(cp.chain, cp.sequence)
            assert record is not None
            assert record.hash == cp.hash  # each checkpoint names its chain's head then
        assert len(await checkpoints.all()) == ROWS


async def test_the_queue_reads_the_history(filled: tuple[Runtime, Filled]) -> None:
    rt, _ = filled
    async with await rt.queue_store(LA) as queue:  # opens: the migrations accept the file
        assert await queue.count() == ROWS
        assert await queue.count(unread_only=True) == UNREAD
        rows = await queue.select(QueueSelection(teams=frozenset({"Assessment"})), limit=4)
        assert [r.item_id for r in rows] == [1, 2, 3, 4]
        assert [r.recipient_role for r in rows] == ["SOCIAL_WORKER", "SUPERVISOR"] * 2
        assert rows[0].notification_id == rows[1].notification_id
        assert rows[0].notification_type == c.ATTENDANCE_UPDATE
        assert all(r.status == "acked" and r.acked_by == r.recipient_id for r in rows)
        assert all(r.acked_at is not None and _recent(r.acked_at) for r in rows)
        assert all(_recent(r.queued_at) and r.authored_at < r.routed_at for r in rows)
        assert rows[0].restrictions == ("THIRD_PARTY_AUTHOR_CONSENT",)
        assert rows[0].envelope == rows[1].envelope != rows[2].envelope  # kept once each
        assert rows[0].delivery_id == rows[1].delivery_id
        unread = await queue.list("sw-0")
        assert unread
        assert all(item.status == "unread" for item in unread)

        # the monitor sees the unread history under the live rows' team
        monitor = QueueMonitor(queue, QueueMetrics(CollectorRegistry()))
        teams = await monitor.teams(datetime.now(UTC))
        assert teams["Assessment"].depth == UNREAD

        # a redelivered history row is ignored; a new one is queued after the history
        old = rows[0]
        redelivered = QueueEntry(**{f.name: getattr(old, f.name) for f in fields(QueueEntry)})
        assert await queue.store_batch([redelivered]) == 0
        fresh = replace(redelivered, notification_id="new")
        assert await queue.store_batch([fresh]) == 1
        since = datetime.now(UTC) - timedelta(minutes=5)
        # the pipeline's read-back counts only what was queued in the phase
        assert await _route_reasons(rt, (LA,), since) == {"ALLOCATED_WORKER": 1}


def _result(gateway: float, consumer: float) -> Result:
    cpu = {"gateway": gateway, "consumer": consumer, "total": gateway + consumer}
    return Result("phase", 100, 1.0, 100.0, extra={"cpu_us_per_message": cpu})


def test_the_history_line() -> None:
    fresh, aged = _result(200.0, 100.0), _result(210.0, 99.0)
    assert history_line(fresh, aged) == (
        "history / fresh CPU per notification = 1.05 (gateway: 210.0 / 200.0 µs),"
        " 0.99 (consumer: 99.0 / 100.0 µs); target <= 1.10: meets"
    )
    assert history_line(fresh, _result(200.0, 120.0)).endswith("target <= 1.10: MISSES")
    aged.extra["history"] = {
        "rows": {"judged_message": 1_000_000},
        "seconds": {"judged_message": 9.5},
        "total_s": 40.0,
    }
    assert fill_line(aged) == "history filled in 40.0 s: judged_message 1,000,000 (9.5 s)"
