"""What the gateway's store keeps, table by table: the audit trail (``audit_record``) and
its chain heads (``audit_chain``), the messages judged once (``judged_message``), the
quarantine (``gateway_quarantine``) and the share ledger (``share_ledger``); with the rows
:class:`gateway.store.GatewayStore` writes into them and reads back.

Every table is defined here once: the store builds them, and the migration history
(``sgx/store/migrations/gateway``) must build exactly these (``tests/unit/test_migrations.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
)
from sqlalchemy.engine import RowMapping

from sgx.store.db import (
    UtcDateTime,
    decode_strings,
    encode_strings,
    quarantine_columns,
    serial,
    utc,
)


@dataclass(slots=True)  # not frozen, as AuditEntry: one per delivery to an LA
class LedgerEntry:
    """Non-content facts about a notification delivered to one LA, to judge a later onward
    share by that LA (a notification delivered to two LAs has an entry for each)."""

    notification_id: str
    sender: str
    sender_kind: str
    notification_type: str
    local_authority: str
    child_pseudonym: str | None
    restrictions: tuple[str, ...]
    onward_consent: tuple[str, ...]
    recorded_at: datetime


LEDGER_COLUMNS = tuple(f.name for f in fields(LedgerEntry))
_LEDGER_TUPLES = ("restrictions", "onward_consent")

# --- tables -----------------------------------------------------------------------------


def audit_table(metadata: MetaData) -> Table:
    return Table(
        "audit_record",
        metadata,
        Column("chain", String(300), primary_key=True),
        Column("sequence", BigInteger, primary_key=True, autoincrement=False),
        Column("decision", String(20), nullable=False),
        Column("message_id", String(300), nullable=False, index=True),
        Column("notification_id", String(64), index=True),
        Column("sender", String(200), nullable=False),
        Column("recipient", String(200)),
        Column("recipient_role", String(100)),
        Column("local_authority", String(200), index=True),
        Column("notification_type", String(200)),
        Column("child_pseudonym", String(64)),
        Column("reason", String(200), nullable=False),
        Column("lawful_basis", String(200)),
        Column("consent", String(100)),
        Column("no_consent_reason", Text),
        Column("restrictions", Text, nullable=False),
        Column("withheld", Text, nullable=False),
        Column("detail", Text, nullable=False),
        Column("decided_at", UtcDateTime, nullable=False),
        Column("decision_key", Text, nullable=False, unique=True),
        Column("prev_hash", String(64), nullable=False),
        Column("hash", String(64), nullable=False),
    )


def chain_table(metadata: MetaData) -> Table:
    return Table(
        "audit_chain",
        metadata,
        Column("chain", String(300), primary_key=True),
        Column("head_sequence", BigInteger, nullable=False),
        Column("head_hash", String(64), nullable=False),
        Column("epoch", BigInteger, nullable=False),
        Column("owner", String(200), nullable=False),
        Column("claimed_at", UtcDateTime, nullable=False),
    )


def judged_table(metadata: MetaData) -> Table:
    """Every message judged (not quarantined), by its verified sender and message id, and
    where it was first read: a copy read anywhere else is a duplicate."""
    return Table(
        "judged_message",
        metadata,
        Column("sender", String(200), nullable=False),
        Column("message_id", String(64), nullable=False),
        Column("topic", String(300), nullable=False),
        Column("partition", Integer, nullable=False),
        Column("offset", BigInteger, nullable=False),
        Column("item", Integer, nullable=False),
        Column("outcome", String(20), nullable=False),
        Column("type_label", String(100), nullable=False),
        Column("judged_at", UtcDateTime, nullable=False),
        # message id first: a batch is looked up by message id alone (the sender is what
        # it verifies to); led by the sender, every batch scanned every message ever
        # judged (gateway 0004 reorders it: one index, as before, not a second)
        PrimaryKeyConstraint("message_id", "sender"),
    )


def quarantine_table(metadata: MetaData) -> Table:
    return Table(
        "gateway_quarantine",
        metadata,
        Column("quarantine_id", serial(), primary_key=True),
        Column("message_id", String(300)),
        Column("sender_claimed", String(200)),
        *quarantine_columns("uq_gateway_quarantine_offset"),
    )


def ledger_table(metadata: MetaData) -> Table:
    return Table(
        "share_ledger",
        metadata,
        Column("notification_id", String(64), primary_key=True),
        Column("sender", String(200), nullable=False),
        Column("sender_kind", String(50), nullable=False),
        Column("notification_type", String(200), nullable=False),
        Column("local_authority", String(200), primary_key=True),
        Column("child_pseudonym", String(64)),
        Column("restrictions", Text, nullable=False),
        Column("onward_consent", Text, nullable=False),
        Column("recorded_at", UtcDateTime, nullable=False),
    )


def ledger_row(entry: LedgerEntry, timestamp: Callable[[datetime], Any]) -> tuple[Any, ...]:
    """The stored columns of ``entry`` (driver values), in ``LEDGER_COLUMNS`` order."""
    e = entry
    return (
        e.notification_id, e.sender, e.sender_kind, e.notification_type, e.local_authority,
        e.child_pseudonym, encode_strings(e.restrictions), encode_strings(e.onward_consent),
        timestamp(e.recorded_at),
    )  # fmt: skip


def judged_row(j: Judged, timestamp: Callable[[datetime], Any]) -> tuple[Any, ...]:
    return (
        j.sender, j.message_id, j.topic, j.partition, j.offset, j.item, j.outcome,
        j.type_label, timestamp(j.judged_at),
    )  # fmt: skip


def ledger_entry(row: RowMapping) -> LedgerEntry:
    values = dict(row)
    for name in _LEDGER_TUPLES:
        values[name] = decode_strings(values[name])
    return LedgerEntry(**values)


@dataclass(frozen=True, slots=True)
class Judged:
    """A message already judged: by whom it was sent, where it was first read, the outcome."""

    sender: str
    message_id: str
    topic: str
    partition: int
    offset: int
    item: int
    outcome: str
    type_label: str
    judged_at: datetime

    @property
    def where(self) -> str:
        return f"{self.topic}/{self.partition}/{self.offset}/{self.item}"


JUDGED_COLUMNS = tuple(f.name for f in fields(Judged))


def judged_from(row: Sequence[Any]) -> Judged:
    """A judged message from a driver's row of :data:`JUDGED_COLUMNS` (its time as SQLite
    keeps it, ISO-8601 text, or as PostgreSQL's driver returns it)."""
    sender, message_id, topic, partition, offset, item, outcome, type_label, at = row
    when = datetime.fromisoformat(at) if isinstance(at, str) else at
    return Judged(
        str(sender), str(message_id), str(topic), int(partition), int(offset), int(item),
        str(outcome), str(type_label), utc(when),
    )  # fmt: skip


@dataclass(frozen=True, slots=True)
class ChainState:
    """A chain's head row: its last record, the epoch of its writer's claim, the writer."""

    chain: str
    sequence: int
    hash: str
    epoch: int
    owner: str
