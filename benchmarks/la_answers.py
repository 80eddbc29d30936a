"""An LA's look-up of the gateway's answer costs the same whatever its history (issue 23).

    python -m benchmarks.la_answers [--history 1000000] [--lookups 500]

The LA's consumer keeps the gateway's answers on the LA's receipts topic as rows
(:mod:`consumers.answer_rows`); the inbox, ``safeguard queue share``, ``consent`` and
``referral`` look them up by key. Two SQLite queue databases: one with 1,000 answers kept
(share decisions, each with a receipt), one with ``--history``; the time of one share
decision's look-up (:meth:`~consumers.answer_rows.AnswerRows.latest`, decoding the
record) and one receipt's (:meth:`~consumers.answer_rows.AnswerRows.receipts_for`),
each the mean of ``--lookups``. The target: the history's look-up at most 1.5x the small
store's. Before queue 0010 every look-up read the LA's receipts topic from its start and
opened every envelope: linear in the history.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from consumers.answer_rows import GatewayAnswer, GatewayReceipt
from consumers.queue import QueueStore
from sgx.wire import contract as c
from sgx.wire.contract import default_contract

NOW = datetime(2026, 12, 7, tzinfo=UTC)
SMALL = 1_000
TARGET = 1.5


async def lookups(path: Path, answers: int, times: int) -> tuple[float, float]:
    """Mean milliseconds of a share decision's and a receipt's look-up, ``answers`` kept."""
    contract = default_contract()
    async with await QueueStore.open(None, path, owner="la-bench") as store:
        ids = [uuid.uuid4() for _ in range(answers)]
        for start in range(0, answers, 5_000):
            rows: list[GatewayAnswer | GatewayReceipt] = []
            for rid in ids[start : start + 5_000]:
                decision = {"request_id": rid, "notification_id": rid, "allowed": True,
                            "broken": [], "reason": "r", "decided_at": NOW}  # fmt: skip
                encoded = contract.encode(c.SHARE_DECISION, decision)
                rows.append(GatewayAnswer(str(rid), "share", "ALLOWED", NOW, encoded, "t/0/0/0"))
                rows.append(GatewayReceipt(str(rid), "DELIVERED", "r", "d", NOW, "t/0/0/0"))
            await store.store_batch([], gateway=rows)
        probe = ids[answers // 2]
        await store.answered.latest(contract, "share", [probe])  # warm
        began = time.perf_counter()
        for _ in range(times):
            assert await store.answered.latest(contract, "share", [probe])
        share = (time.perf_counter() - began) / times * 1000
        began = time.perf_counter()
        for _ in range(times):
            assert await store.answered.receipts_for([probe])
        receipt = (time.perf_counter() - began) / times * 1000
    return share, receipt


async def amain(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        small = await lookups(Path(tmp) / "small.db", SMALL, args.lookups)
        large = await lookups(Path(tmp) / "large.db", args.history, args.lookups)
    worst = max(large[0] / small[0], large[1] / small[1])
    for n, (share, receipt) in ((SMALL, small), (args.history, large)):
        print(f"{n:>9,} answers kept: share decision {share:.2f} ms, receipt {receipt:.2f} ms")
    print(f"history / small look-up = {worst:.2f} (target <= {TARGET})")
    return 0 if worst <= TARGET else 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--history", type=int, default=1_000_000, help="answers kept")
    parser.add_argument("--lookups", type=int, default=500, help="look-ups timed, each")
    raise SystemExit(asyncio.run(amain(parser.parse_args())))


if __name__ == "__main__":
    main()
