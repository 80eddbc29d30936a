"""Replaying a consumer's quarantine: records kept because they could not be read then
(a key or a schema missing, say) are read again now, by the same reader the consumer uses.

What reads now goes into the queue, exactly once (the queue is unique on notification and
recipient, so a second replay adds nothing); what still fails is reported with its reason
now. The quarantine rows themselves are never deleted (the caller logs each outcome in
:class:`sgx.kafka.quarantine_replay.ReplayLog`).
"""

from __future__ import annotations

from consumers.queue import QueueEntry, QueueStore
from consumers.service import DeliveryReader, keep
from sgx.kafka.quarantine import Source
from sgx.kafka.quarantine_replay import Held, Result
from sgx.keys.trust import utc_now

Outcome = tuple[int, Result, str | None, str]


async def replay(reader: DeliveryReader, store: QueueStore, held: list[Held]) -> list[Outcome]:
    """Read each held delivery again; queue what reads. One outcome per row, in order."""
    outcomes: list[Outcome] = []
    for row in held:
        q = row.entry
        entries, kept = await reader.read(
            [Source(q.topic, q.partition, q.offset, q.item, q.raw)], utc_now
        )
        if kept:
            outcomes.append(
                (row.quarantine_id, "still_quarantined", kept[0].reason, kept[0].detail)
            )
            continue
        inserted = await keep(store, entries, [])
        addressees = sum(1 for e in entries if isinstance(e, QueueEntry))
        detail = f"{inserted} new queue row(s) of {addressees} addressee(s)"
        outcomes.append((row.quarantine_id, "delivered", None, detail))
    return outcomes
