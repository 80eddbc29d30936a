"""Ids of messages, notifications and requests: UUIDv7 (RFC 9562), ordered by time.

A uuid4 is random, so every index keyed by one (the gateway's judged messages, its audit
records by message and notification, its share ledger, each queue's deliveries) takes each
new id on a page of its own once the index outgrows memory: the cost of recording a
message grows with the number recorded before it (benchmarks/history.py measured a
gateway's CPU per notification 1.6 times higher with a year of history). A UUIDv7 leads
with the time in milliseconds, so new ids land together at the end of those indexes
wherever the history stands. It keeps 74 random bits: an id is not a secret (every read
is checked for access), but it must not be guessable into a collision.

Ids that must be derived from their content (the health feed's, so that ingesting the
same entry twice gives the same notification) keep their own scheme.
"""

from __future__ import annotations

import uuid

import uuid6


def new_id() -> uuid.UUID:
    """A new time-ordered id (UUIDv7), as a plain :class:`uuid.UUID`."""
    return uuid.UUID(bytes=uuid6.uuid7().bytes)
