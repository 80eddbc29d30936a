"""The library work one notification cannot avoid, measured in one process.

    python -m benchmarks.floor [--count 5000]

Each step is a call into a library the spine is built on (fastavro, cryptography's
AES-GCM, hashlib, sqlite3) that the issue requires for every notification, made exactly
as the exchange makes it, with none of the exchange's logic around it: no rules, no
routing, no minimisation, no Kafka, no asyncio. The sum is a floor under the pipeline's
CPU per notification; the rest of the measured figure is the exchange's own logic and
its Kafka clients. ``benchmarks.run`` prints it beside the budget the 40% target leaves
(the raw chain's CPU per message / 0.40), so the two can be compared on one machine.

The codec calls go through ``sgx.wire.contract`` as the exchange's do (its own structural
checker off), the audit rows through ``gateway.audit_chain.audit_row``: what is measured is
what the exchange runs, less its logic around it.

The steps, for a notification about an allocated child (two recipients, one view):

* producer: encode the notification with fastavro, which checks every value's type as it
  writes (the issue: "validated with fastavro at the producer"); seal it (AES-256-GCM).
  fastavro's own ``validate`` is left out: it costs ~125 µs per notification here, which
  is why the exchange compiles its own structural checker (``sgx.wire.validation``, ~10 µs)
  and leaves type checks to the encoder.
* gateway: open (AES-GCM); decode with fastavro ("and again at the gateway"); encode the
  Delivery that tells the consumer whom to queue it for; SHA-256 over two canonical
  audit records, and insert them; seal the delivery.
* consumer: open; decode the Delivery; insert it (once) and two queue rows naming it
  (worker, supervisor).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import sqlite3
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from consumers.queue import QueueStore
from gateway.audit_chain import AUDIT_COLUMNS, AuditEntry, audit_row, decision_key
from gateway.store import GatewayStore
from safeguard import samples
from safeguard.parties import LA
from sgx.domain.identifiers import make_nhs_number
from sgx.store.db import SQLITE_PRAGMAS
from sgx.wire import contract as c
from sgx.wire.contract import default_contract

Step = tuple[str, str, float]  # (stage, what, µs per notification)


def _per_call(count: int, call: Callable[[int], object]) -> float:
    # each step from a collected heap: where a full collection of the earlier steps'
    # objects falls is not the step's library work (it moved the Delivery's decode
    # between 11 and 27 µs as other steps changed)
    gc.collect()
    start = time.process_time()
    for i in range(count):
        call(i)
    return (time.process_time() - start) / count * 1e6


async def _database(path: Path, store: type[GatewayStore | QueueStore]) -> sqlite3.Connection:
    """The store's own SQLite file (its real tables and indexes), opened with sqlite3."""
    async with await store.open(None, path, owner="benchmark"):
        pass
    db = sqlite3.connect(path, isolation_level=None)
    for pragma in SQLITE_PRAGMAS:
        db.execute(pragma)
    return db


QUEUE_COLUMNS = (
    "notification_id", "recipient_id", "recipient_role", "team", "route_reason",
    "notification_type", "urgency", "sender_agency", "authored_at", "routed_at",
    "restrictions", "withheld", "delivery_id", "source_offset", "queued_at", "status",
)  # fmt: skip
RECIPIENTS = (
    ("sw-1", "SOCIAL_WORKER", "ALLOCATED_WORKER"),
    ("sup-1", "SUPERVISOR", "SUPERVISOR"),
)


Rows = tuple[str, Sequence[str], list[tuple[Any, ...]]]  # (table, columns, rows)


def _insert_rows(db: sqlite3.Connection, tables: Sequence[Rows], count: int) -> float:
    """Insert each table's rows, those of 1,000 notifications to a transaction; the CPU it
    took, in seconds."""
    marks = [
        (f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})",
         rows, len(rows) // count)
        for table, columns, rows in tables
    ]  # fmt: skip
    start = time.process_time()
    for i in range(0, count, 1000):
        db.execute("BEGIN IMMEDIATE")
        for sql, rows, each in marks:
            db.executemany(sql, rows[i * each : (i + 1000) * each])
        db.execute("COMMIT")
    return time.process_time() - start


async def _inserted(
    store: type[GatewayStore | QueueStore], tables: Sequence[Rows], count: int
) -> float:
    """µs per notification to insert each table's rows into the store's own tables."""
    with tempfile.TemporaryDirectory() as tmp:
        db = await _database(Path(tmp) / "store.db", store)
        try:
            return _insert_rows(db, tables, count) / count * 1e6
        finally:
            db.close()


async def measure(count: int) -> list[Step]:
    """Each unavoidable step's CPU per notification, in µs."""
    contract = default_contract()
    children = [samples.child(make_nhs_number(50_000 + i)) for i in range(100)]
    records = [samples.attendance_update(children[i % 100]) for i in range(count)]
    aead, nonce = AESGCM(os.urandom(32)), os.urandom(12)
    now = datetime.now(UTC)
    steps: list[Step] = []

    def step(stage: str, what: str, call: Callable[[int], object]) -> list[Any]:
        """Time ``call(i)`` for every notification; return what the calls returned."""
        made: list[Any] = []
        steps.append((stage, what, _per_call(count, lambda i: made.append(call(i)))))
        return made

    bodies = step(
        "producer", "fastavro encode",
        lambda i: contract.encode(c.ATTENDANCE_UPDATE, records[i], check=False),
    )  # fmt: skip
    sealed = step("producer", "AES-GCM seal", lambda i: aead.encrypt(nonce, bodies[i], b"h"))
    step("gateway", "AES-GCM open", lambda i: aead.decrypt(nonce, sealed[i], b"h"))
    step("gateway", "fastavro decode", lambda i: contract.decode(bodies[i], check=False))
    deliveries = [_delivery(records[i], bodies[i], now) for i in range(count)]
    encoded = step(
        "gateway", "fastavro encode Delivery",
        lambda i: contract.encode(c.DELIVERY, deliveries[i], check=False),
    )  # fmt: skip
    steps.extend(await _audit_steps(count, records, now))
    sealed_deliveries = step(
        "gateway", "AES-GCM seal delivery", lambda i: aead.encrypt(nonce, encoded[i], b"h")
    )
    step("consumer", "AES-GCM open", lambda i: aead.decrypt(nonce, sealed_deliveries[i], b"h"))
    step(
        "consumer", "fastavro decode Delivery",
        lambda i: contract.decode_as(c.DELIVERY, encoded[i], check=False),
    )  # fmt: skip
    ids = [str(uuid.uuid4()) for _ in sealed_deliveries]
    tables = [
        ("queue_item", QUEUE_COLUMNS, _queue_rows(ids, now)),
        (
            "queue_delivery",
            ("delivery_id", "envelope"),
            list(zip(ids, sealed_deliveries, strict=True)),
        ),
    ]
    used = await _inserted(QueueStore, tables, count)
    steps.append(("consumer", "SQLite: a delivery, 2 queue rows", used))
    return steps


def _delivery(record: dict[str, Any], body: bytes, now: datetime) -> dict[str, Any]:
    return {
        "notification_id": record["notification_id"],
        "recipients": [
            {
                "id": worker,
                "role": role,
                "team": "tm-1",
                "name": f"{worker} name",
                "route_reason": reason,
                "audit_sequence": 1,
            }
            for worker, role, reason in RECIPIENTS
        ],
        "sender_agency": record["author"]["agency_id"],
        "sender_kind": "school",
        "notification_type": c.ATTENDANCE_UPDATE,
        "urgency": record["urgency"],
        "authored_at": record["authored_at"],
        "routed_at": now,
        "restrictions": [],
        "onward_consent": [],
        "withheld": [],
        "notification": body,
    }


async def _audit_steps(count: int, records: list[dict[str, Any]], now: datetime) -> list[Step]:
    """Chain two audit records per notification (gateway.audit_chain.audit_row), insert them."""
    entries = [
        AuditEntry(
            decision="delivered",
            message_id=str(records[i]["notification_id"]),
            notification_id=str(records[i]["notification_id"]),
            sender=records[i]["author"]["agency_id"],
            recipient=worker,
            recipient_role=role,
            local_authority=LA,
            notification_type="attendance_update",
            child_pseudonym="ab" * 32,
            reason=reason,
            lawful_basis="PUBLIC_TASK",
            consent="NOT_SOUGHT",
            no_consent_reason="RISK_TO_CHILD",
            restrictions=(),
            withheld=(),
            detail="Children Act 2004 s.11",
            decided_at=now,
        )
        for i in range(count)
        for worker, role, reason in RECIPIENTS
    ]
    keys = [decision_key(entry) for entry in entries]
    rows: list[tuple[Any, ...]] = []

    def chain_two(i: int) -> None:
        for n in (2 * i, 2 * i + 1):
            prev = rows[-1][-1] if rows else "0" * 64
            rows.append(audit_row(entries[n], "bench:0", n + 1, prev, keys[n], _sqlite_time))

    hashed = _per_call(count, chain_two)
    inserted = await _inserted(GatewayStore, [("audit_record", AUDIT_COLUMNS, rows)], count)
    return [
        ("gateway", "SHA-256 chain: 2 audit records", hashed),
        ("gateway", "SQLite: 2 audit records", inserted),
    ]


def _sqlite_time(value: datetime) -> str:
    """A timestamp as the SQLite stores keep it (sgx.store.db.UtcDateTime)."""
    return value.isoformat(timespec="microseconds")


def _queue_rows(deliveries: list[str], now: datetime) -> list[tuple[Any, ...]]:
    """Two queue rows (QUEUE_COLUMNS) per sealed delivery, naming it (kept once)."""
    stamp = _sqlite_time(now)
    return [
        (str(uuid.uuid4()), worker, role, "tm-1", reason, c.ATTENDANCE_UPDATE, "ROUTINE",
         "school-hillside", stamp, stamp, "[]", "[]", delivery, f"sgx.delivery.la/0/{i}/0",
         stamp, "unread")
        for i, delivery in enumerate(deliveries)
        for worker, role, reason in RECIPIENTS
    ]  # fmt: skip


def report(steps: list[Step]) -> str:
    """The steps as a table, with each stage's sum and the total."""
    lines = [f"{'stage':9} {'unavoidable library work':34} {'µs':>7}"]
    for stage, what, us in steps:
        lines.append(f"{stage:9} {what:34} {us:7.1f}")
    fastavro = sum(us for _, what, us in steps if what.startswith("fastavro"))
    lines.append(f"{'':9} {'of which fastavro':34} {fastavro:7.1f}")
    lines.append(f"{'':9} {'total per notification':34} {total(steps):7.1f}")
    return "\n".join(lines)


def total(steps: list[Step]) -> float:
    return sum(us for _, _, us in steps)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=5_000, help="notifications per step")
    print(report(asyncio.run(measure(parser.parse_args().count))))


if __name__ == "__main__":
    main()
