"""Families informed from the command line: the inbox's own service
(:class:`consumers.inbox.family.Families`) over an LA's stores, for an operator.

The command line has no sign-in: whoever runs it holds the LA's store and key, as for
``safeguard queue share``. It acts as a system with every scope of the LA's inbox, named
``cli:<by>`` (``--by``, or ``--decided-by``) in the record of who recorded a decision.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from prometheus_client import CollectorRegistry

from consumers.inbox.access import ACK, READ, RECORD, SHARE, Principal
from consumers.inbox.family import Families
from consumers.inbox.service import Inbox, InboxMetrics
from consumers.inbox.settings import InboxSettings
from consumers.reader import QueueReader, QueueView
from safeguard.inbox_wiring import inbox_store
from safeguard.runtime import Runtime
from sgx.domain.calendar import CalendarSettings
from sgx.ops.metrics import FamilyMetrics
from sgx.wire.envelope import Opener

EVERYTHING = frozenset({READ, ACK, SHARE, RECORD, "queue:all"})


def operator(la: str, by: str) -> Principal:
    """Whoever runs the command, as the inbox's service sees them."""
    return Principal(la=la, subject=f"cli:{by}", kind="system", name=by, scopes=EVERYTHING)


async def _no_share(view: QueueView, *args: Any) -> dict[str, Any]:
    raise NotImplementedError("onward shares from the command line: safeguard queue share")


@contextlib.asynccontextmanager
async def families(rt: Runtime, la: str) -> AsyncIterator[Families]:
    """The families-informed service of ``la``, over its stores, while the block runs."""
    trust = rt.trust()
    identity = rt.identity(la, trust)
    async with await rt.queue_store(la) as queue, await inbox_store(rt, la) as store:
        reader = QueueReader(store=queue, opener=Opener(identity, trust), contract=rt.contract())
        inbox = Inbox(
            la=la, queue=queue, reader=reader, store=store, ask_share=_no_share,
            metrics=InboxMetrics(CollectorRegistry()),
        )  # fmt: skip
        yield Families(
            inbox,
            calendar=CalendarSettings().calendar(),
            due_days=InboxSettings().family_decision_working_days,
            metrics=FamilyMetrics(CollectorRegistry()),
        )
