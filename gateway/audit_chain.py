"""The audit trail's hash chains: what one decision is, what is hashed, how a stored
record is checked.

**Chains.** Every decision belongs to the chain of the Kafka partition it was read from
(``sgx.inbound.<agency>:<partition>``, ``sgx.allocations.<la>:0``), so several gateway
instances, each owning some partitions, never contend for one head, and a partition
that moves between instances carries its chain with it (:mod:`gateway.store` fences the
old owner).

**The hash.** Record ``n`` of chain ``c`` (sequences run 1, 2, 3, ... without gaps) holds

    hash_n = SHA-256(bytes.fromhex(hash_{n-1}) || canonical_n)    (lower-case hex)

with ``hash_0`` = 64 zeros (the genesis ``prev_hash``) — the 32 raw digest bytes of the
previous hash, not its hex text. ``canonical_n`` is the UTF-8 encoding of a JSON array
holding ``c``, ``n`` and then every :class:`AuditEntry` field in declaration order
(decision, message_id, notification_id, sender, recipient, recipient_role,
local_authority, notification_type, child_pseudonym, reason, lawful_basis, consent,
no_consent_reason, restrictions, withheld, detail, decided_at), written with no
whitespace (``","`` separators), non-ASCII characters as themselves (not ``\\u``
escapes), ``null`` for None, tuples as arrays of strings, and ``decided_at`` as ISO-8601
UTC with milliseconds and a ``Z`` (``"2024-03-01T09:00:00.123Z"``). The chain's name is
hashed so a record cannot be moved into another chain. An array in a fixed order is as
unambiguous as an object with sorted keys and about half the cost to write, once per
record. The stored ``decided_at`` is truncated to the millisecond, so what is stored is
exactly what is hashed. :func:`canonical_entry` and :func:`chain_hash` are that
definition in code.

:func:`verify_row` checks one stored record against its predecessor: missing (a sequence
gap), not linked, or a stored column that differs from what :func:`audit_row` would
write for its content. :mod:`gateway.store` writes and walks the chains.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

from sqlalchemy.engine import RowMapping

from sgx.errors import AuditChainBroken
from sgx.store.db import decode_strings, encode_strings, utc

GENESIS_HASH = "0" * 64
DECISIONS = frozenset(
    {"delivered", "refused", "quarantined", "share_allowed", "share_refused", "applied",
     "duplicate", "consent_requested", "consent_granted", "consent_refused",
     "information_requested", "information_answered"}
)  # fmt: skip


@dataclass(slots=True)
class AuditEntry:
    """One decision of the gateway; ``decision`` is one of :data:`DECISIONS`.

    Not frozen: a frozen dataclass sets each of its 17 fields through
    ``object.__setattr__``, three times the cost of building it (two per notification);
    nothing changes an entry once made (:func:`gateway.decision.replayed` makes a new one).
    """

    decision: str
    message_id: str
    notification_id: str | None
    sender: str
    recipient: str | None
    recipient_role: str | None
    local_authority: str | None  # the LA the decision concerns: whose operators answer for it
    notification_type: str | None
    child_pseudonym: str | None
    reason: str
    lawful_basis: str | None
    consent: str | None
    no_consent_reason: str | None
    restrictions: tuple[str, ...]
    withheld: tuple[str, ...]
    detail: str
    decided_at: datetime


@dataclass(slots=True)
class AuditRecord(AuditEntry):
    """An audit entry as stored: its chain, its place in it and its hashes."""

    chain: str
    sequence: int
    prev_hash: str
    hash: str


_AUDIT_FIELDS = tuple(f.name for f in fields(AuditEntry))
AUDIT_COLUMNS = ("chain", "sequence", *_AUDIT_FIELDS, "decision_key", "prev_hash", "hash")
Head = tuple[int, str]  # (sequence, hash) of a chain's last record
_AUDIT_TUPLES = ("restrictions", "withheld")
_COMPACT = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


def iso_ms(value: datetime) -> str:
    """``value`` as ISO-8601 UTC with milliseconds and ``Z``: ``2024-03-01T09:00:00.123Z``."""
    return utc(value).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def canonical_entry(entry: AuditEntry, sequence: int, chain: str, at: str | None = None) -> bytes:
    """The bytes hashed for ``entry`` at ``sequence`` of ``chain`` (see the module
    docstring); ``at`` is ``iso_ms(entry.decided_at)`` if the caller has it already."""
    e = entry
    return _COMPACT.encode([
        chain, sequence, e.decision, e.message_id, e.notification_id, e.sender, e.recipient,
        e.recipient_role, e.local_authority, e.notification_type, e.child_pseudonym, e.reason,
        e.lawful_basis, e.consent, e.no_consent_reason, list(e.restrictions), list(e.withheld),
        e.detail, at or iso_ms(e.decided_at),
    ]).encode("utf-8")  # fmt: skip


def chain_hash(
    prev_hash: str, entry: AuditEntry, sequence: int, chain: str, at: str | None = None
) -> str:
    """hash_n = SHA-256(prev hash bytes || canonical entry), as lower-case hex."""
    canonical = canonical_entry(entry, sequence, chain, at)
    return hashlib.sha256(bytes.fromhex(prev_hash) + canonical).hexdigest()


def decision_key(entry: AuditEntry) -> str:
    """What makes a decision the same decision: sender, message, decision, recipient, LA,
    child; for a ``duplicate`` also its detail, which says where the copy was read, so
    each resend is audited once however often its batch is replayed."""
    e = entry
    key = [e.sender, e.message_id, e.decision, e.recipient, e.local_authority, e.child_pseudonym]
    if e.decision == "duplicate":
        key.append(e.detail)
    return _COMPACT.encode(key)


def _to_ms(value: datetime) -> datetime:
    value = utc(value)
    return value.replace(microsecond=value.microsecond // 1000 * 1000)


Times = dict[datetime, tuple[str, Any]]  # decided_at: its canonical text, its stored value


def audit_row(
    entry: AuditEntry,
    chain: str,
    sequence: int,
    prev_hash: str,
    key: str,
    timestamp: Callable[[datetime], Any] = lambda value: value,
    times: Times | None = None,
) -> tuple[Any, ...]:
    """The stored columns of ``entry`` at ``sequence`` of ``chain``, in :data:`AUDIT_COLUMNS`
    order.

    ``decided_at`` is truncated to the millisecond and passed through ``timestamp`` (a
    driver's value for an insert; as is to compare with a row read back). ``times`` keeps
    both forms of each time across a batch, whose records share one time per decision.
    """
    e = entry
    at, stored = _times(e.decided_at, timestamp, {} if times is None else times)
    digest = chain_hash(prev_hash, e, sequence, chain, at)
    return (
        chain, sequence, e.decision, e.message_id, e.notification_id, e.sender, e.recipient,
        e.recipient_role, e.local_authority, e.notification_type, e.child_pseudonym, e.reason,
        e.lawful_basis, e.consent, e.no_consent_reason, encode_strings(e.restrictions),
        encode_strings(e.withheld), e.detail, stored, key, prev_hash, digest,
    )  # fmt: skip


def _times(
    decided_at: datetime, timestamp: Callable[[datetime], Any], times: Times
) -> tuple[str, Any]:
    """(canonical text, stored value) of a decision time, formatted once per time."""
    known = times.get(decided_at)
    if known is None:
        known = times[decided_at] = (iso_ms(decided_at), timestamp(_to_ms(decided_at)))
    return known


def audit_record(row: RowMapping) -> AuditRecord:
    values = {
        name: row[name] for name in (*_AUDIT_FIELDS, "chain", "sequence", "prev_hash", "hash")
    }
    for name in _AUDIT_TUPLES:
        values[name] = decode_strings(values[name])
    return AuditRecord(**values)


def chain_rows(
    audit: Sequence[AuditEntry],
    chains: Sequence[str],
    keys: list[str],
    known: dict[str, tuple[str, int]],
    heads: dict[str, Head],
    timestamp: Callable[[datetime], Any],
) -> tuple[list[tuple[Any, ...]], list[tuple[str, int]]]:
    """New rows (in ``AUDIT_COLUMNS`` order, driver values) for the decisions not
    ``known``, and every decision's (chain, sequence); ``heads`` (by chain) is advanced."""
    rows: list[tuple[Any, ...]] = []
    places: list[tuple[str, int]] = []
    times: Times = {}
    for entry, chain, key in zip(audit, chains, keys, strict=True):
        if key not in known:
            sequence, prev = heads[chain]
            row = audit_row(entry, chain, sequence + 1, prev, key, timestamp, times)
            rows.append(row)
            heads[chain] = (sequence + 1, row[-1])  # the hash column
            known[key] = (chain, sequence + 1)
        places.append(known[key])
    return rows, places


def verify_row(row: RowMapping, head: Head) -> Head:
    """Check one stored record against its predecessor ``head`` in its chain; return the
    new head."""
    sequence = head[0] + 1
    if row["sequence"] != sequence:
        raise AuditChainBroken(sequence, f"record missing (the next one is {row['sequence']})")
    if row["prev_hash"] != head[1]:
        raise AuditChainBroken(sequence, f"prev_hash does not link to record {head[0]}")
    try:
        entry = audit_record(row)
        values = audit_row(entry, entry.chain, sequence, head[1], decision_key(entry))
        rebuilt = dict(zip(AUDIT_COLUMNS, values, strict=True))
    except (ValueError, TypeError, KeyError) as exc:
        raise AuditChainBroken(sequence, f"record unreadable: {exc}") from exc
    if rebuilt["hash"] != row["hash"]:
        raise AuditChainBroken(sequence, "content does not match the record's hash")
    for name, value in rebuilt.items():
        if row[name] != value:
            raise AuditChainBroken(sequence, f"column {name} is not what was recorded")
    return sequence, row["hash"]


def check_decisions(audit: Sequence[AuditEntry]) -> None:
    unknown = {entry.decision for entry in audit} - DECISIONS
    if unknown:
        raise ValueError(f"unknown audit decision(s) {sorted(unknown)}; known: {sorted(DECISIONS)}")


def check_anchor(anchor: tuple[int, str] | None, head: tuple[int, str]) -> None:
    if anchor is None or anchor[0] == 0:
        return
    if head[0] < anchor[0]:
        missing = f"records {head[0] + 1}..{anchor[0]} are missing"
        raise AuditChainBroken(head[0] + 1, f"{missing} (the chain was cut short)")


def check_anchor_hash(anchor: tuple[int, str] | None, head: tuple[int, str]) -> None:
    if anchor is not None and head[0] == anchor[0] and head[1] != anchor[1]:
        raise AuditChainBroken(head[0], "hash differs from the chain head held by the writer")
