"""Every table of each kind of database, as this release's code defines them: what its
migration history (``sgx/store/migrations/<kind>``) must build, checked by
``tests/unit/test_migrations.py`` and rendered into a new migration by
``scripts/render-migration.py``."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import MetaData
from sqlalchemy.ext.asyncio import AsyncEngine

from consumers.inbox.store import InboxStore
from consumers.queue import QueueStore
from gateway.allocations import AllocationDirectory
from gateway.checkpoints import Checkpoints
from gateway.consent_book import ConsentBook
from gateway.information_book import InformationBook
from gateway.referral_book import ReferralBook
from gateway.requests import DisclosureRequests
from gateway.store import GatewayStore
from producers.consent_requests import ConsentRequests
from producers.information_requests import InformationRequests
from producers.open_cases import OpenCaseStore
from producers.outbox import OutboxStore
from producers.referral_outcomes import ReferralOutcomes
from producers.school import PushedStore
from sgx.kafka.quarantine_replay import ReplayLog
from sgx.keys.pseudonym import Pseudonymiser


def _copy(tables: MetaData, into: MetaData) -> None:
    """Tables a class built on its own metadata (in the same database), into ``into``."""
    for table in tables.tables.values():
        table.to_metadata(into)


def _gateway(engine: AsyncEngine, m: MetaData) -> None:
    store = GatewayStore(engine, m)
    _copy(AllocationDirectory(engine, Pseudonymiser(b"k" * 32), schema=m.schema)._metadata, m)
    _copy(Checkpoints(engine, schema=m.schema)._metadata, m)
    _copy(ReplayLog(engine, store.quarantine_table, schema=m.schema)._metadata, m)
    _copy(ConsentBook(engine, schema=m.schema)._metadata, m)
    _copy(InformationBook(engine, schema=m.schema).metadata, m)


def _requests(engine: AsyncEngine, m: MetaData) -> None:
    DisclosureRequests(engine, m)
    _copy(ReferralBook(engine, schema=m.schema).metadata, m)


def _outbox(engine: AsyncEngine, m: MetaData) -> None:
    OutboxStore(engine, m)
    _copy(ConsentRequests(engine, schema=m.schema)._metadata, m)
    _copy(ReferralOutcomes(engine, schema=m.schema).metadata, m)
    _copy(InformationRequests(engine, schema=m.schema).metadata, m)


def _queue(engine: AsyncEngine, m: MetaData) -> None:
    store = QueueStore(engine, m)
    InboxStore(engine, m)
    _copy(ReplayLog(engine, store.quarantine_table, schema=m.schema)._metadata, m)


TABLES: dict[str, Callable[[AsyncEngine, MetaData], object]] = {
    "gateway": _gateway,
    "requests": _requests,
    "queue": _queue,
    "outbox": _outbox,
    "open_cases": OpenCaseStore,
    "attendance": PushedStore,
}


def tables_of(kind: str, engine: AsyncEngine, metadata: MetaData) -> MetaData:
    """``metadata`` with every table of a ``kind`` database built on it."""
    TABLES[kind](engine, metadata)
    return metadata
