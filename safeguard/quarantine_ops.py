"""``safeguard quarantine replay``: judge quarantined records again once their cause is fixed.

* **The gateway's quarantine.** Each chosen inbound envelope is sent, as it was, to the
  replay topic ``sgx.replay`` (key: the inbound topic it was first read from), which the
  gateway group reads like an inbound topic: the same checks (its sender must own that
  inbound topic), the same allocation directory caught up first, the same duplicate rule
  (a message judged once is never delivered again, however often it is replayed), its own
  audit chain (``sgx.replay:0``), and every audit record of it says it is a replay. What
  still fails is quarantined again, on the replay topic, with its reason now; the original
  row stays. The command then waits (``--wait``) and logs each row's outcome.
  Allocation updates are not replayed here: every gateway instance reads them from the
  LA's allocation topic, so the LA publishes the update again.
* **A consumer's quarantine** (``--consumer LA``): read again in this process by the
  consumer's own reader and queued exactly once (:mod:`consumers.replay`).

Each replay is logged (``quarantine_replay``); nothing is deleted.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from consumers.replay import replay as replay_deliveries
from consumers.service import DeliveryReader
from gateway.store import GatewayStore
from safeguard.runtime import Runtime
from sgx.kafka import schema_topic
from sgx.kafka.quarantine_replay import Held, QuarantineQuery, ReplayLog, Result
from sgx.kafka.wiring import (
    INBOUND_PREFIX,
    REPLAY_TOPIC,
    inbound_topic,
    kafka_errors,
    start_producer,
)
from sgx.wire.envelope import Opener, peek

Outcome = tuple[int, Result, str | None, str]


@dataclass
class ReplayReport:
    outcomes: list[Outcome] = field(default_factory=list)
    skipped: list[tuple[int, str]] = field(default_factory=list)  # (id, why not replayed)


def first_topic(held: Held) -> str | None:
    """The inbound topic a quarantined envelope was written to, if it was one."""
    q = held.entry
    if q.topic.startswith(INBOUND_PREFIX):
        return q.topic
    if q.topic == REPLAY_TOPIC and q.sender_claimed:  # quarantined again after a replay
        # the connector it claims to be sealed for (format 2), else its sender's own topic
        claims = peek(q.raw)
        return inbound_topic(claims.connector if claims and claims.connector else q.sender_claimed)
    return None


async def replay_gateway(
    rt: Runtime, query: QuarantineQuery, *, by: str, wait_s: float = 30.0
) -> ReplayReport:
    """Send the chosen rows of the gateway's quarantine to be judged again."""
    report = ReplayReport()
    async with await rt.gateway_store() as store:
        log = ReplayLog(store.engine, store.quarantine_table, schema=store.schema)
        held = await log.held(query)
        claimed = [row.entry.message_id for row in held if row.entry.message_id]
        judged = await store.judged(claimed)  # by (sender, message id)
        sent: dict[int, tuple[Held, int]] = {}  # quarantine id -> (row, replay offset)
        sending: dict[tuple[str, str], int] = {}  # one copy of each message per replay
        producer = await start_producer(rt.kafka)
        try:
            for row in held:
                origin = first_topic(row)
                if origin is None:
                    report.skipped.append(
                        (
                            row.quarantine_id,
                            f"read on {row.entry.topic}, "
                            "not an inbound topic: have its sender publish it again",
                        )
                    )
                    continue
                key = (row.entry.sender_claimed or "", row.entry.message_id or "")
                if (done := judged.get(key)) is not None:
                    report.skipped.append(
                        (
                            row.quarantine_id,
                            f"already judged ({done.outcome}) "
                            f"at {done.where}: a replay would be a duplicate",
                        )
                    )
                    continue
                if row.entry.message_id and (first := sending.get(key)) is not None:
                    report.skipped.append((row.quarantine_id, f"the same message as #{first}"))
                    continue
                if row.entry.message_id:
                    sending[key] = row.quarantine_id
                async with kafka_errors("send a quarantined envelope to be judged again"):
                    meta = await producer.send_and_wait(
                        REPLAY_TOPIC, row.entry.raw, key=origin.encode()
                    )
                sent[row.quarantine_id] = (row, meta.offset)
        finally:
            await producer.stop()
        await log.record(
            [
                (qid, "sent", None, f"to {REPLAY_TOPIC} offset {off}")
                for qid, (_, off) in sent.items()
            ],
            by=by,
        )
        outcomes = await _outcomes(store, log, sent, wait_s)
        await log.record(outcomes, by=by)
        report.outcomes = outcomes
    return report


async def _outcomes(
    store: GatewayStore, log: ReplayLog, sent: dict[int, tuple[Held, int]], wait_s: float
) -> list[Outcome]:
    """What the gateway made of each replay: judged (delivered, refused...) or quarantined
    again, as it records them; rows it has not judged within ``wait_s`` are left out."""
    deadline = time.monotonic() + wait_s
    found: dict[int, Outcome] = {}
    offsets = {off: qid for qid, (_, off) in sent.items()}
    again = QuarantineQuery(topic=REPLAY_TOPIC, offsets=tuple(offsets))
    ids = [row.entry.message_id for row, _ in sent.values() if row.entry.message_id]
    while len(found) < len(sent):
        for h in await log.held(again):  # quarantined again: only the replays' own rows
            qid = offsets[h.entry.offset]
            found[qid] = (qid, "still_quarantined", h.entry.reason, h.entry.detail)
        for judged in (await store.judged(ids)).values():
            if judged.topic == REPLAY_TOPIC and judged.offset in offsets:
                qid = offsets[judged.offset]
                found[qid] = (qid, "delivered", None, f"judged: {judged.outcome}")
        if time.monotonic() > deadline:
            break
        await asyncio.sleep(0.2)
    return [found[qid] for qid in sent if qid in found]


async def replay_consumer(rt: Runtime, la: str, query: QuarantineQuery, *, by: str) -> ReplayReport:
    """Read the chosen rows of LA's consumer quarantine again, and queue what reads."""
    trust = rt.trust()
    async with await rt.queue_store(la) as store:
        log = ReplayLog(store.engine, store.quarantine_table, schema=store.schema)
        held = await log.held(query)
        reader = DeliveryReader(
            opener=Opener(rt.identity(la, trust), trust),
            contract=rt.contract(),
            store=store,
            registry=schema_topic.SchemaRegistry(rt.kafka, trust, rt.contract()),
        )
        outcomes = await replay_deliveries(reader, store, held)
        await log.record(outcomes, by=by)
    return ReplayReport(outcomes=outcomes)
