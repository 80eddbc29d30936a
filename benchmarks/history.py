"""As fast in a year as on day one: the pipeline beside a fresh store and a year-old one.

    python -m benchmarks.history [--count 20000] [--history-rows 1000000] [--repeat 1]

The issue-20 benchmark. Two phases of the single-LA pipeline (:mod:`benchmarks.pipeline`)
on one broker, one after the other: with fresh stores, then with the gateway's store
and the consumer's queue already holding a history written straight into their SQLite
files (:func:`fill_history`) before any stage starts. The target: the gateway's and the
consumer's CPU per notification with the history at most 10% above the fresh stores'.

The history (``--history-rows`` N, default 1,000,000), spread over the year before the
phase, all from the phase's sender to its receiving LA(s), with the recipients, teams,
restrictions and sizes of the live rows:

* ``judged_message``: N messages of the sender (UUIDv7 ids minted over the year, as
  :func:`sgx.wire.ids.new_id` mints them), so every batch's look-up
  meets the same sender's history;
* ``audit_record``: N records, a worker's and a supervisor's delivery of every other
  message, hash-chained in :data:`HISTORY_CHAINS` chains of their own (the live run
  claims and writes the chains of the partitions it reads, as on day one), each with
  its ``audit_chain`` head row;
* ``audit_checkpoint``: a year of the gateway's checkpoints at ``checkpoint_interval_s``
  (30 s by default): one per interval in which a chain grew, naming its head then, so
  one per history record up to 1,051,200 a chain (the signatures are random bytes: they
  do not verify);
* ``share_ledger``: N entries, one per message;
* ``queue_item`` (each receiving LA's queue): N rows, the audit records' deliveries,
  acknowledged but the newest ``--history-unread`` (5,000), each pair naming one of N / 2
  ~200-byte envelopes in ``queue_delivery``
  (live ones are ~1.2 KB: the table's pages hold more rows, its indexes are the same).

The stores are opened once with the project's own open (which migrates them and so
creates every table), closed, and filled with ``sqlite3`` ``executemany``, one
transaction per table, with ``synchronous=OFF`` and no journal; then the files are
fsynced, so the timed phase does not flush the fill's pages.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import random
import sqlite3
import statistics
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from benchmarks.common import Result, bench_broker, broker_arguments, publish
from benchmarks.pipeline import SingleLA, gateway_cpu_us, run_pipeline_phase
from gateway.audit_chain import AUDIT_COLUMNS, GENESIS_HASH, AuditEntry, audit_row, decision_key
from gateway.checkpoints import Checkpoints
from gateway.records import (
    JUDGED_COLUMNS,
    LEDGER_COLUMNS,
    Judged,
    LedgerEntry,
    judged_row,
    ledger_row,
)
from safeguard.runtime import GATEWAY_ID, Runtime
from sgx.errors import ConfigError
from sgx.kafka.wiring import delivery_topic, inbound_topic
from sgx.settings import KafkaSettings
from sgx.store.db import encode_strings, utc
from sgx.wire import contract as c

YEAR_S = 365 * 24 * 3600
HISTORY_ROWS = 1_000_000
UNREAD = 5_000  # history queue rows not yet acknowledged (the newest)
HISTORY_CHAINS = 3  # the history's audit chains, as the sender's three inbound partitions
CHILDREN = 5_000  # children the history is about (pseudonyms)
WORKERS, SUPERVISORS, TEAM = 10, 3, "Assessment"  # as the live allocations
ENVELOPES_PER_RECORD = 50  # envelopes per Kafka record (wire.EnvelopeBatch)
ENVELOPE_BYTES = 200
CACHE_KIB = 1 << 20  # SQLite page cache during the fill
TARGET = 1.10  # history / fresh CPU per notification, at most (gateway and consumer)

RESTRICTIONS = ("THIRD_PARTY_AUTHOR_CONSENT",)
DETAIL = (
    "open to {la}; Children Act 2004 s.11; Children Act 1989 s.47;"
    " by Ruth Okafor (Designated Safeguarding Lead)"
)
TYPE_LABEL = c.SHORT_NAMES[c.ATTENDANCE_UPDATE]


@dataclass
class Filled:
    """What a fill wrote: rows and seconds per table (queue rows over every receiving LA),
    and the whole fill's seconds (opening the stores and syncing the files included)."""

    rows: dict[str, int] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    total_s: float = 0.0


@dataclass(frozen=True)
class _Plan:
    """The history's shared facts: who, when, which ids."""

    sender: str
    sender_kind: str
    receivers: tuple[str, ...]
    rows: int
    unread: int
    interval_s: float
    key_id: str
    start: datetime
    seed: int
    ids: list[str]  # message id (= notification id) of message i
    children: list[str]  # child pseudonyms

    def at(self, message: int) -> datetime:
        """When message ``message`` was judged (the history spreads over a year)."""
        return self.start + timedelta(seconds=message * YEAR_S / self.rows)

    def la(self, message: int) -> str:
        return self.receivers[message % len(self.receivers)]

    def child(self, message: int) -> int:
        return message % len(self.children)


def iso(value: datetime) -> str:
    """A UtcDateTime column's SQLite value (:class:`sgx.store.db.UtcDateTime`)."""
    return utc(value).isoformat(timespec="microseconds")


def _time_ordered(rng: random.Random, count: int, start: datetime) -> list[str]:
    """``count`` ids as the exchange mints them (:func:`sgx.wire.ids.new_id`: UUIDv7),
    minted evenly over the year from ``start``."""
    first_ms, step_ms = int(start.timestamp() * 1000), YEAR_S * 1000 / max(count, 1)
    made = []
    for i in range(count):
        ms = first_ms + int(i * step_ms)
        value = (ms << 80) | (0x7 << 76) | (rng.getrandbits(12) << 64) | (0b10 << 62)
        made.append(str(uuid.UUID(int=value | rng.getrandbits(62))))
    return made


async def fill_history(
    rt: Runtime,
    sender: str,
    receivers: Sequence[str],
    rows: int = HISTORY_ROWS,
    *,
    unread: int = UNREAD,
    seed: int = 20,
) -> Filled:
    """Fill the gateway's store and each of ``receivers``' queues in ``rt``'s home with a
    year of ``sender``'s history (the module docstring says what); SQLite only."""
    if rt.dsn is not None:
        raise ConfigError("the history fill writes SQLite files: unset SGX_STORE_DSN")
    began = time.perf_counter()
    # The project's own open migrates each database (creating its tables) on first open.
    async with await rt.gateway_store() as store:
        await Checkpoints(store.engine, schema=store.schema).open()
        gateway_db = Path(str(store.engine.url.database))
    queues: dict[str, Path] = {}
    for la in receivers:
        async with await rt.queue_store(la) as queue:
            queues[la] = Path(str(queue.engine.url.database))
    trust = rt.trust()
    rng = random.Random(seed)
    start = datetime.now(UTC) - timedelta(seconds=YEAR_S + 3600)
    plan = _Plan(
        sender=sender,
        sender_kind=trust.party(sender).kind,
        receivers=tuple(receivers),
        rows=rows,
        unread=min(unread, rows),
        interval_s=rt.exchange.checkpoint_interval_s,
        key_id=rt.identity(GATEWAY_ID, trust).signing_kid,
        start=start,
        seed=seed,
        ids=_time_ordered(rng, rows, start),
        children=[f"{rng.getrandbits(128):032x}" for _ in range(CHILDREN)],
    )
    # One process per file, at once (threads would take turns for the GIL at every row).
    loop = asyncio.get_running_loop()
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(1 + len(queues), mp_context=spawn) as pool:
        parts = await asyncio.gather(
            loop.run_in_executor(pool, _in_bulk, gateway_db, _fill_gateway, plan),
            *(loop.run_in_executor(pool, _in_bulk, path, _fill_queue, plan, la)
              for la, path in queues.items()),
        )  # fmt: skip
    filled = Filled()
    for part in parts:
        for table, n in part.rows.items():
            filled.rows[table] = filled.rows.get(table, 0) + n
            seconds = filled.seconds.get(table, 0.0) + part.seconds[table]
            filled.seconds[table] = round(seconds, 1)
    filled.total_s = round(time.perf_counter() - began, 1)
    return filled


class _Writer:
    """Bulk inserts into one SQLite file, counted and timed per table in ``filled``."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db
        self.filled = Filled()

    def insert(self, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
        """``rows`` into ``table`` in one transaction (one driver executemany)."""
        began = time.perf_counter()
        names = ", ".join(f'"{name}"' for name in columns)
        marks = ", ".join("?" for _ in columns)
        self._db.execute("BEGIN")
        cursor = self._db.executemany(f"INSERT INTO {table} ({names}) VALUES ({marks})", rows)
        self._db.execute("COMMIT")
        f = self.filled
        f.rows[table] = f.rows.get(table, 0) + cursor.rowcount
        f.seconds[table] = round(f.seconds.get(table, 0.0) + time.perf_counter() - began, 1)


def _in_bulk(path: Path, fill: Callable[..., None], *args: Any) -> Filled:
    """Run ``fill(writer, *args)`` on the SQLite file with durability off, then put it back
    as the stores keep it (WAL) and fsync the file; what it wrote."""
    db = sqlite3.connect(path, isolation_level=None)
    try:
        for pragma in (
            "PRAGMA journal_mode=OFF",
            "PRAGMA synchronous=OFF",
            f"PRAGMA cache_size=-{CACHE_KIB}",
            "PRAGMA temp_store=MEMORY",
        ):
            db.execute(pragma)
        writer = _Writer(db)
        fill(writer, *args)
        db.execute("PRAGMA journal_mode=WAL")
    finally:
        db.close()
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
    return writer.filled


# --- the gateway's store ----------------------------------------------------------------


def _fill_gateway(writer: _Writer, plan: _Plan) -> None:
    writer.insert("judged_message", JUDGED_COLUMNS, _judged(plan))
    writer.insert("share_ledger", LEDGER_COLUMNS, _ledger(plan))
    chains = _Chains(plan)
    writer.insert("audit_record", AUDIT_COLUMNS, chains.records())
    writer.insert("audit_chain", CHAIN_COLUMNS, chains.heads())
    writer.insert("audit_checkpoint", CHECKPOINT_COLUMNS, chains.checkpoints)


CHAIN_COLUMNS = ("chain", "head_sequence", "head_hash", "epoch", "owner", "claimed_at")
CHECKPOINT_COLUMNS = ("chain", "sequence", "hash", "signed_at", "signer", "key_id", "signature")


def _partition(message: int) -> int:
    return message % HISTORY_CHAINS


def _place(message: int) -> tuple[int, int, int]:
    """(partition, offset, item) a message was read at: batches of envelopes per record."""
    nth = message // HISTORY_CHAINS
    return _partition(message), nth // ENVELOPES_PER_RECORD, nth % ENVELOPES_PER_RECORD


def _judged(plan: _Plan) -> Iterator[tuple[Any, ...]]:
    topic = inbound_topic(plan.sender)
    for m, message_id in enumerate(plan.ids):
        partition, offset, item = _place(m)
        judged = Judged(
            plan.sender, message_id, topic, partition, offset, item, "delivered", TYPE_LABEL,
            plan.at(m),
        )  # fmt: skip
        yield judged_row(judged, iso)


def _ledger(plan: _Plan) -> Iterator[tuple[Any, ...]]:
    for m, message_id in enumerate(plan.ids):
        entry = LedgerEntry(
            message_id, plan.sender, plan.sender_kind, TYPE_LABEL, plan.la(m),
            plan.children[plan.child(m)], RESTRICTIONS, (), plan.at(m),
        )  # fmt: skip
        yield ledger_row(entry, iso)


def _recipient(plan: _Plan, record: int) -> tuple[int, str, str, str, str]:
    """The message of history record (or queue row) ``record`` and its addressee: every
    other message is delivered, to its child's worker (even rows) and supervisor (odd)."""
    message = record // 2 * 2
    child = plan.child(message)
    if record % 2 == 0:
        return message, f"sw-{child % WORKERS}", "SOCIAL_WORKER", "ALLOCATED_WORKER", TEAM
    return message, f"tm-{child % SUPERVISORS}", "SUPERVISOR", "SUPERVISOR", TEAM


class _Chains:
    """The history's audit records, hash-chained as the store chains them, one chain per
    inbound partition; their heads; and a year of checkpoints of them."""

    def __init__(self, plan: _Plan) -> None:
        self._plan = plan
        self.names = [f"history/{inbound_topic(plan.sender)}:{p}" for p in range(HISTORY_CHAINS)]
        self._heads = dict.fromkeys(self.names, (0, GENESIS_HASH))
        sizes = [0] * HISTORY_CHAINS
        for record in range(plan.rows):
            sizes[_partition(record // 2 * 2)] += 1
        self._sizes = dict(zip(self.names, sizes, strict=True))
        self.checkpoints: list[tuple[Any, ...]] = []
        self._rng = random.Random(plan.seed + 1)

    def records(self) -> Iterator[tuple[Any, ...]]:
        plan = self._plan
        intervals = int(YEAR_S // plan.interval_s)
        for record in range(plan.rows):
            message, recipient, role, reason, _team = _recipient(plan, record)
            chain = self.names[_partition(message)]
            la = plan.la(message)
            entry = AuditEntry(
                decision="delivered",
                message_id=plan.ids[message],
                notification_id=plan.ids[message],
                sender=plan.sender,
                recipient=recipient,
                recipient_role=role,
                local_authority=la,
                notification_type=TYPE_LABEL,
                child_pseudonym=plan.children[plan.child(message)],
                reason=reason,
                lawful_basis="PUBLIC_TASK",
                consent="NOT_SOUGHT",
                no_consent_reason="RISK_TO_CHILD",
                restrictions=RESTRICTIONS,
                withheld=(),
                detail=DETAIL.format(la=la),
                decided_at=plan.at(message),
            )
            sequence, prev = self._heads[chain]
            row = audit_row(entry, chain, sequence + 1, prev, decision_key(entry), iso)
            self._heads[chain] = (sequence + 1, row[-1])
            # a checkpoint per interval in which the chain grew: its k-th of n records
            # ends the k-th of min(n, intervals) equal stretches of the year
            size = self._sizes[chain]
            taken = min(size, intervals)
            if (sequence + 1) * taken // size > sequence * taken // size:
                signed = entry.decided_at + timedelta(seconds=plan.interval_s)
                self.checkpoints.append(
                    (chain, sequence + 1, row[-1], iso(signed), GATEWAY_ID, plan.key_id,
                     self._rng.randbytes(64))
                )  # fmt: skip
            yield row

    def heads(self) -> list[tuple[Any, ...]]:
        claimed = iso(self._plan.start)
        return [
            (chain, sequence, digest, 1, "history", claimed)
            for chain, (sequence, digest) in self._heads.items()
        ]


# --- a receiving LA's queue -------------------------------------------------------------

QUEUE_COLUMNS = (
    "notification_id", "recipient_id", "recipient_role", "team", "route_reason",
    "notification_type", "urgency", "sender_agency", "authored_at", "routed_at",
    "restrictions", "withheld", "delivery_id", "source_offset", "queued_at", "status",
    "acked_at", "acked_by",
)  # fmt: skip


def _fill_queue(writer: _Writer, plan: _Plan, la: str) -> None:
    """The rows, and each delivery they name kept once (queue_delivery), as the queue
    keeps them since queue 0006."""
    writer.insert("queue_item", QUEUE_COLUMNS, _queue_rows(plan, la))
    writer.insert("queue_delivery", ("delivery_id", "envelope"), _deliveries(plan))


def _delivery_id(plan: _Plan, message: int) -> str:
    """The history's delivery of ``message`` (worker and supervisor see one view)."""
    return f"d-{plan.ids[message]}"


def _deliveries(plan: _Plan) -> Iterator[tuple[str, bytes]]:
    rng = random.Random(plan.seed + 2)
    for row in range(0, plan.rows, 2):  # a message's two rows name one delivery
        yield _delivery_id(plan, _recipient(plan, row)[0]), rng.randbytes(ENVELOPE_BYTES)


def _queue_rows(plan: _Plan, la: str) -> Iterator[tuple[Any, ...]]:
    topic = delivery_topic(la)
    restrictions, withheld = encode_strings(RESTRICTIONS), encode_strings(())
    acked_from = plan.rows - plan.unread
    for row in range(plan.rows):
        message, recipient, role, reason, team = _recipient(plan, row)
        routed = plan.at(message)
        queued = routed + timedelta(milliseconds=30)
        partition, offset, item = _place(message)
        acked = row < acked_from
        yield (
            plan.ids[message], recipient, role, team, reason, c.ATTENDANCE_UPDATE, "ROUTINE",
            plan.sender, iso(routed - timedelta(seconds=5)), iso(routed), restrictions, withheld,
            _delivery_id(plan, message), f"{topic}/{partition}/{offset}/{item}", iso(queued),
            "acked" if acked else "unread", iso(queued + timedelta(hours=2)) if acked else None,
            recipient if acked else None,
        )  # fmt: skip


# --- the phases -------------------------------------------------------------------------

FRESH, HISTORY = "pipeline, fresh stores", "pipeline, a year of history"


def arguments(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    """The history's options (benchmarks.run adds them to its own)."""
    parser = parser or argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--history-rows",
        type=int,
        default=HISTORY_ROWS,
        help="judged messages, audit records, ledger entries and queue rows of history"
        " (0: no history phase)",
    )
    parser.add_argument(
        "--history-unread", type=int, default=UNREAD, help="history queue rows left unread"
    )
    return parser


async def run_history_phase(
    settings: KafkaSettings, args: argparse.Namespace
) -> tuple[Result, Result]:
    """The single-LA pipeline with fresh stores, then with ``args.history_rows`` of history
    (``args.count`` notifications each, on the same broker): (fresh, history)."""
    flow = SingleLA()

    async def fill(_home: Path, rt: Runtime) -> dict[str, Any]:
        filled = await fill_history(
            rt, flow.sender, flow.receivers, args.history_rows, unread=args.history_unread
        )
        return asdict(filled)

    fresh = await run_pipeline_phase(settings, FRESH, args.count, None, args.limit, flow)
    history = await run_pipeline_phase(
        settings, HISTORY, args.count, None, args.limit, flow, history=fill
    )
    return fresh, history


def consumer_cpu_us(result: Result) -> float:
    """CPU per notification of every consumer stage of the phase, together."""
    cpu = result.extra["cpu_us_per_message"]
    return float(sum(us for name, us in cpu.items() if name.startswith("consumer")))


def ratios(fresh: Result, history: Result) -> dict[str, float]:
    """history / fresh CPU per notification, for the gateway and the consumer."""
    return {
        "gateway": gateway_cpu_us(history) / gateway_cpu_us(fresh),
        "consumer": consumer_cpu_us(history) / consumer_cpu_us(fresh),
    }


def history_line(fresh: Result, history: Result) -> str:
    """``history / fresh CPU per notification = R`` for the gateway and the consumer."""
    r = ratios(fresh, history)
    verdict = "meets" if max(r.values()) <= TARGET else "MISSES"
    g = f"gateway: {gateway_cpu_us(history):,.1f} / {gateway_cpu_us(fresh):,.1f} µs"
    k = f"consumer: {consumer_cpu_us(history):,.1f} / {consumer_cpu_us(fresh):,.1f} µs"
    return (
        f"history / fresh CPU per notification = {r['gateway']:.2f} ({g}),"
        f" {r['consumer']:.2f} ({k}); target <= {TARGET:.2f}: {verdict}"
    )


def fill_line(history: Result) -> str:
    """How much history the phase's stores held and how long writing it took."""
    filled = history.extra["history"]
    tables = ", ".join(
        f"{table} {n:,} ({filled['seconds'][table]:.1f} s)" for table, n in filled["rows"].items()
    )
    return f"history filled in {filled['total_s']:.1f} s: {tables}"


def summary_line(pairs: Sequence[tuple[Result, Result]]) -> str:
    """The median of several interleaved pairs' ratios (one pair's moves with the host)."""
    each = [ratios(fresh, history) for fresh, history in pairs]
    median = {who: statistics.median(r[who] for r in each) for who in ("gateway", "consumer")}
    verdict = "meets" if max(median.values()) <= TARGET else "MISSES"
    listed = "; ".join(f"{r['gateway']:.2f} / {r['consumer']:.2f}" for r in each)
    return (
        f"history / fresh CPU per notification, median of {len(each)} pairs ="
        f" {median['gateway']:.2f} (gateway), {median['consumer']:.2f} (consumer);"
        f" pairs (gateway / consumer): {listed}; target <= {TARGET:.2f}: {verdict}"
    )


async def amain(args: argparse.Namespace) -> None:
    pairs = []
    async with bench_broker(
        args.bootstrap, fetch_max_wait_ms=args.fetch_wait_ms, broker=args.broker
    ) as settings:
        for _ in range(args.repeat):
            pairs.append(await run_history_phase(settings, args))
    publish([r for pair in pairs for r in pair], vars(args), args.json)
    for fresh, history in pairs:
        print()
        print(fill_line(history))
        print(history_line(fresh, history))
    if len(pairs) > 1:
        print()
        print(summary_line(pairs))


def main() -> None:
    parser = arguments()
    parser.add_argument("--count", type=int, default=20_000, help="timed notifications")
    parser.add_argument("--repeat", type=int, default=1, help="pairs of phases, interleaved")
    parser.add_argument("--fetch-wait-ms", type=int, default=10, help="fetch_max_wait_ms")
    parser.add_argument("--limit", type=float, default=180.0, help="seconds per phase at most")
    broker_arguments(parser)
    parser.add_argument("--json", default=None, help="write results as JSON here ('-': stdout)")
    args = parser.parse_args()
    if args.history_rows <= 0:
        parser.error("--history-rows must be positive")
    asyncio.run(amain(args))


if __name__ == "__main__":
    main()
