"""consumers.inbox.throttle: failed sign-ins back off exponentially per name and per
address, lock a name at the tenth, treat an unknown name exactly as a known one, and are
lifted by a success or by an administrator; on SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import MetaData

from consumers.inbox.store import InboxStore
from consumers.inbox.throttle import FORGET_AFTER, LOCK_AFTER, MAX_WAIT, SignInGuard
from tests.clock import Clock
from tests.conftest_db import BACKENDS, backend

START = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)
PASSWORD = "correct horse battery"


@pytest.fixture(params=BACKENDS)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[InboxStore]:
    async with backend(request.param, tmp_path) as db:
        opened = await InboxStore.open(db.dsn, db.sqlite_path, schema=db.schema, owner="la-test")
        try:
            yield opened
        finally:
            await opened.close()


def guard_of(store: InboxStore, clock: Clock) -> SignInGuard:
    return SignInGuard(store.engine, MetaData(schema=store.schema), backoff_s=1.0, clock=clock)


async def fail(guard: SignInGuard, name: str, address: str | None = "198.51.100.7") -> None:
    assert (await guard.check(name, address)).verdict == "ok"
    await guard.failed(name, address)


async def test_three_free_failures_then_a_wait_that_doubles(store: InboxStore) -> None:
    clock = Clock(START)
    guard = guard_of(store, clock)
    for _ in range(3):
        await fail(guard, "amara")
    waits = []
    for _ in range(4):  # the 4th..7th failures: 1, 2, 4, 8 seconds
        refusal = await guard.check("amara", "198.51.100.7")
        assert refusal.verdict == "throttled"
        assert refusal.until is not None
        waits.append((refusal.until - clock.now).total_seconds())
        clock.now = refusal.until
        await fail(guard, "amara")
    assert waits == [1.0, 2.0, 4.0, 8.0]


async def test_the_tenth_failure_locks_the_name_until_unlocked(store: InboxStore) -> None:
    clock = Clock(START)
    guard = guard_of(store, clock)
    for _ in range(LOCK_AFTER):
        clock.now += MAX_WAIT  # past every back-off
        await fail(guard, "amara", address=None)
    clock.now += 10 * FORGET_AFTER  # a lock is not forgotten
    assert (await guard.check("amara", None)).verdict == "locked"
    assert await guard.unlock("amara") is True
    assert (await guard.check("amara", None)).verdict == "ok"
    assert await guard.unlock("amara") is False


async def test_an_unknown_name_is_throttled_and_locked_as_a_real_one(store: InboxStore) -> None:
    await store.add_account(
        "amara", PASSWORD, worker_id="sw-amara", name="Amara", role="social_worker", team="T1"
    )
    clock = Clock(START)
    guard = guard_of(store, clock)
    seen = {}
    for name in ("amara", "nobody-here"):
        verdicts = []
        for _ in range(LOCK_AFTER + 1):
            refusal = await guard.check(name, None)
            verdicts.append(refusal.verdict)
            if refusal.verdict == "ok":
                assert await store.check_password(name, "wrong password!") is None
                await guard.failed(name, None)
            clock.now += timedelta(seconds=5)
        clock.now += MAX_WAIT
        while (await guard.check(name, None)).verdict == "ok":
            await guard.failed(name, None)
            clock.now += MAX_WAIT
        seen[name] = verdicts
    assert seen["amara"] == seen["nobody-here"]
    assert "throttled" in seen["amara"]
    for name in seen:
        assert (await guard.check(name, None)).verdict == "locked"


async def test_an_address_backs_off_but_is_never_locked(store: InboxStore) -> None:
    clock = Clock(START)
    guard = guard_of(store, clock)
    for n in range(30):  # 30 names from one address, each wrong once
        clock.now += MAX_WAIT
        await fail(guard, f"name-{n}", "203.0.113.9")
    assert (await guard.check("someone-else", "203.0.113.9")).verdict == "throttled"
    clock.now += MAX_WAIT
    assert (await guard.check("someone-else", "203.0.113.9")).verdict == "ok"


async def test_a_success_clears_the_name_and_the_address(store: InboxStore) -> None:
    clock = Clock(START)
    guard = guard_of(store, clock)
    for _ in range(5):
        clock.now += MAX_WAIT
        await fail(guard, "amara")
    assert (await guard.check("amara", "198.51.100.7")).verdict == "throttled"
    await guard.succeeded("amara", "198.51.100.7")
    assert (await guard.check("amara", "198.51.100.7")).verdict == "ok"


async def test_old_failures_are_forgotten(store: InboxStore) -> None:
    clock = Clock(START)
    guard = guard_of(store, clock)
    for _ in range(5):
        clock.now += MAX_WAIT
        await fail(guard, "amara")
    clock.now += FORGET_AFTER + timedelta(seconds=1)
    await fail(guard, "someone-else")  # a failure write forgets what is a day old
    for _ in range(3):  # amara starts again from nothing: three free failures
        await fail(guard, "amara", address=None)
    assert (await guard.check("amara", None)).verdict == "throttled"


async def test_guessing_does_not_stall_the_event_loop(store: InboxStore) -> None:
    """Each guess costs an argon2 hash (~160 ms of CPU) in a worker thread: while four
    run at once, the event loop keeps turning (a ticker every 5 ms measures its longest
    stall), so other users' requests are answered meanwhile. Were the hash on the loop,
    the stall would be about one hash long; off it, it stays under half of one."""
    await store.add_account(
        "amara", PASSWORD, worker_id="sw-amara", name="Amara", role="social_worker", team="T1"
    )
    costs = []
    for _ in range(2):  # the cheaper of two: the first also opens a connection
        started = time.perf_counter()
        assert await store.check_password("amara", "not it") is None
        costs.append(time.perf_counter() - started)
    one_hash = min(costs)
    ticks: list[float] = []
    done = asyncio.Event()

    async def ticker() -> None:
        last = time.perf_counter()
        while not done.is_set():
            await asyncio.sleep(0.005)
            now = time.perf_counter()
            ticks.append(now - last)
            last = now

    running = asyncio.create_task(ticker())
    guesses = [store.check_password(name, "not it") for name in ("amara", "ben", "x", "amara")]
    assert await asyncio.gather(*guesses) == [None] * 4
    done.set()
    await running
    assert len(ticks) >= 2
    assert max(ticks) < one_hash, (
        f"the loop stalled {max(ticks):.3f} s; a hash takes {one_hash:.3f} s"
    )
