"""Ids of messages, notifications and requests: UUIDv7 (RFC 9562), ordered by time.

A uuid4 is random, so every index keyed by one (the gateway's judged messages, its audit
records by message and notification, its share ledger, each queue's deliveries) takes each
new id on a page of its own once the index outgrows memory: the cost of recording a
message grows with the number recorded before it (benchmarks/history.py measured a
gateway's CPU per notification 1.6 times higher with a year of history). A UUIDv7 leads
with the time in milliseconds, so new ids land together at the end of those indexes
wherever the history stands. The other 74 bits are random: an id is not a secret (every
read is checked for access), but two must never collide.

Written here rather than taken from the ``uuid6`` package: to keep its ids monotonic it
advances the millisecond past the clock whenever a process mints two in one millisecond,
so a gateway minting 4,000 a second would run its ids ahead of time without bound. We need
the time order, not strict monotonicity (ids minted in the same millisecond need no order
between them). Python 3.14's ``uuid.uuid7`` keeps a counter instead; use it from there.

Ids that must be derived from their content (the health feed's, so that ingesting the
same entry twice gives the same notification) keep their own scheme.
"""

from __future__ import annotations

import secrets
import time
import uuid

_VERSION_7 = 0x7 << 76
_VARIANT_RFC = 0b10 << 62


def new_id() -> uuid.UUID:
    """A new time-ordered id (UUIDv7: 48 bits of Unix time in ms, version, 74 random bits)."""
    ms = time.time_ns() // 1_000_000
    random_a, random_b = secrets.randbits(12), secrets.randbits(62)
    return uuid.UUID(int=(ms << 80) | _VERSION_7 | (random_a << 64) | _VARIANT_RFC | random_b)
