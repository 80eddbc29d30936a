"""The library work one notification cannot avoid, measured in one process.

    python -m benchmarks.floor [--count 5000]

Each step is a call into a library the spine is built on (fastavro, cryptography's
AES-GCM, hashlib, sqlite3) that the issue requires for every notification, made exactly
as the exchange makes it, with none of the exchange's own Python around it: no rules, no
routing, no minimisation, no Kafka, no asyncio. The sum is a floor under the pipeline's
CPU per notification; the rest of the measured figure is the exchange's own logic and
its Kafka clients. ``benchmarks.run`` prints it beside the budget the 40% target leaves
(the raw chain's CPU per message / 0.40), so the two can be compared on one machine.

The steps, for a notification about an allocated child (two recipients, one view):

* producer: encode the notification with fastavro, which checks every value's type as it
  writes (the issue: "validated with fastavro at the producer"); seal it (AES-256-GCM).
  fastavro's own ``validate`` is left out: it costs ~125 µs per notification here, which
  is why the exchange compiles its own structural checker (``sgx.validation``, ~10 µs)
  and leaves type checks to the encoder.
* gateway: open (AES-GCM); decode with fastavro ("and again at the gateway"); encode the
  Delivery that tells the consumer whom to queue it for; SHA-256 over two canonical
  audit records, and insert them; seal the delivery.
* consumer: open; decode the Delivery; insert two queue rows (worker, supervisor).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import io
import json
import os
import sqlite3
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from fastavro import schemaless_reader, schemaless_writer

from consumers.queue import QueueStore
from gateway.store import GatewayStore
from safeguard import samples
from sgx import contract as c
from sgx.contract import default_contract
from sgx.db import SQLITE_PRAGMAS
from sgx.identifiers import make_nhs_number

Step = tuple[str, str, float]  # (stage, what, µs per notification)


def _per_call(count: int, call: Callable[[int], object]) -> float:
    start = time.process_time()
    for i in range(count):
        call(i)
    return (time.process_time() - start) / count * 1e6


async def _database(path: Path, store: type[GatewayStore | QueueStore]) -> sqlite3.Connection:
    """The store's own SQLite file (its real tables and indexes), opened with sqlite3."""
    async with await store.open(None, path):
        pass
    db = sqlite3.connect(path, isolation_level=None)
    for pragma in SQLITE_PRAGMAS:
        db.execute(pragma)
    return db


def _insert_rows(db: sqlite3.Connection, table: str, rows: list[tuple[Any, ...]]) -> None:
    marks = ", ".join("?" for _ in rows[0])
    db.execute("BEGIN IMMEDIATE")
    db.executemany(f"INSERT INTO {table} VALUES ({marks})", rows)
    db.execute("COMMIT")


async def measure(count: int) -> list[Step]:
    """Each unavoidable step's CPU per notification, in µs."""
    contract = default_contract()
    notification = contract.parsed(c.ATTENDANCE_UPDATE)
    delivery_schema = contract.parsed(c.DELIVERY)
    children = [samples.child(make_nhs_number(50_000 + i)) for i in range(100)]
    records = [samples.attendance_update(children[i % 100]) for i in range(count)]
    aead, nonce = AESGCM(os.urandom(32)), os.urandom(12)

    def encode(schema: Any, record: Any) -> bytes:
        buf = io.BytesIO()
        schemaless_writer(buf, schema, record)
        return buf.getvalue()

    steps: list[Step] = []
    bodies: list[bytes] = []
    steps.append(
        (
            "producer",
            "fastavro encode",
            _per_call(count, lambda i: bodies.append(encode(notification, records[i]))),
        )
    )
    sealed: list[bytes] = []
    steps.append(
        (
            "producer",
            "AES-GCM seal",
            _per_call(count, lambda i: sealed.append(aead.encrypt(nonce, bodies[i], b"header"))),
        )
    )
    steps.append(
        (
            "gateway",
            "AES-GCM open",
            _per_call(count, lambda i: aead.decrypt(nonce, sealed[i], b"header")),
        )
    )
    steps.append(
        (
            "gateway",
            "fastavro decode",
            _per_call(
                count, lambda i: schemaless_reader(io.BytesIO(bodies[i]), notification, None)
            ),
        )
    )
    now = datetime.now(UTC)
    deliveries = [_delivery(records[i], bodies[i], now) for i in range(count)]
    encoded: list[bytes] = []
    steps.append(
        (
            "gateway",
            "fastavro encode Delivery",
            _per_call(count, lambda i: encoded.append(encode(delivery_schema, deliveries[i]))),
        )
    )
    steps += await _audit_steps(count, records, now)
    steps.append(
        (
            "gateway",
            "AES-GCM seal delivery",
            _per_call(count, lambda i: aead.encrypt(nonce, encoded[i], b"header")),
        )
    )
    steps.append(
        (
            "consumer",
            "AES-GCM open",
            _per_call(count, lambda i: aead.decrypt(nonce, sealed[i], b"header")),
        )
    )
    steps.append(
        (
            "consumer",
            "fastavro decode Delivery",
            _per_call(
                count, lambda i: schemaless_reader(io.BytesIO(encoded[i]), delivery_schema, None)
            ),
        )
    )
    steps.append(("consumer", "SQLite: 2 queue rows", await _queue_rows(count, encoded, now)))
    return steps


def _delivery(record: dict[str, Any], body: bytes, now: datetime) -> dict[str, Any]:
    def addressee(worker: str, role: str, reason: str) -> dict[str, Any]:
        return {"id": worker, "role": role, "team": "tm-1", "name": f"{worker} name",
                "route_reason": reason, "audit_sequence": 1}  # fmt: skip

    return {
        "notification_id": record["notification_id"],
        "recipients": [
            addressee("sw-1", "SOCIAL_WORKER", "ALLOCATED_WORKER"),
            addressee("sup-1", "SUPERVISOR", "SUPERVISOR"),
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
    """Hash two canonical audit records per notification, then insert them (real DDL)."""
    encoder = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)
    stamp = now.isoformat(timespec="milliseconds")
    rows: list[tuple[Any, ...]] = []
    prev = "0" * 64

    def hash_two(i: int) -> None:
        nonlocal prev
        for recipient in ("sw-1", "sup-1"):
            sequence = len(rows) + 1
            values = [
                sequence, "delivered", str(records[i]["notification_id"]), "n", "school",
                recipient, "SOCIAL_WORKER", "attendance_update", "ab" * 32, "ALLOCATED_WORKER",
                "PUBLIC_TASK", "NOT_SOUGHT", "RISK_TO_CHILD", [], [], "basis", stamp,
            ]  # fmt: skip
            digest = hashlib.sha256(
                bytes.fromhex(prev) + encoder.encode(values).encode()
            ).hexdigest()
            key = f"{values[2]}/{recipient}"
            rows.append((*values[:13], "[]", "[]", "basis", stamp, key, prev, digest))
            prev = digest

    hashed = _per_call(count, hash_two)
    with tempfile.TemporaryDirectory() as tmp:
        db = await _database(Path(tmp) / "audit.db", GatewayStore)
        start = time.process_time()
        for i in range(0, len(rows), 1000):
            _insert_rows(db, "audit_record", rows[i : i + 1000])
        inserted = (time.process_time() - start) / count * 1e6
        db.close()
    return [
        ("gateway", "SHA-256 chain: 2 audit records", hashed),
        ("gateway", "SQLite: 2 audit records", inserted),
    ]


async def _queue_rows(count: int, envelopes: list[bytes], now: datetime) -> float:
    stamp = now.isoformat(timespec="microseconds")
    rows = [
        (None, str(uuid.uuid4()), worker, "SOCIAL_WORKER", "tm-1", "ALLOCATED_WORKER",
         c.ATTENDANCE_UPDATE, "ROUTINE", "school-hillside", stamp, stamp, "[]", "[]",
         envelopes[i], f"sgx.delivery.la/0/{i}/0", stamp, "unread", None, None)
        for i in range(count)
        for worker in ("sw-1", "sup-1")
    ]  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        db = await _database(Path(tmp) / "queue.db", QueueStore)
        start = time.process_time()
        for i in range(0, len(rows), 1000):
            _insert_rows(db, "queue_item", rows[i : i + 1000])
        used = (time.process_time() - start) / count * 1e6
        db.close()
    return used


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
