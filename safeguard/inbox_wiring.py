"""``safeguard inbox serve``: one LA's inbox beside its consumer, wired to the queue, the
LA's key, the broker (for onward shares) and, if configured, the LA's OpenID provider."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry
from starlette.types import ASGIApp

from consumers.inbox.app import inbox_app
from consumers.inbox.auth import checked_secret, session_secret
from consumers.inbox.family import Families
from consumers.inbox.family_monitor import FamilyMonitor
from consumers.inbox.network_checks import NetworkChecks
from consumers.inbox.oidc import IdentityProvider
from consumers.inbox.service import Inbox, InboxMetrics
from consumers.inbox.settings import InboxSettings
from consumers.inbox.store import InboxStore
from consumers.network_checks import NetworkCheckClient
from consumers.reader import QueueReader, QueueView
from consumers.referral_client import ReferralResponder
from consumers.share import ShareClient
from safeguard.runtime import Runtime, serving_metrics, watching_trust
from sgx.domain.calendar import CalendarSettings
from sgx.errors import ConfigError
from sgx.kafka.wiring import start_producer
from sgx.ops.metrics import FamilyMetrics, MonitorSettings, refreshing
from sgx.ops.serving import HttpServer, Readiness, database_check
from sgx.wire.envelope import Opener

log = logging.getLogger(__name__)


async def inbox_store(rt: Runtime, la: str) -> InboxStore:
    """The inbox's accounts, clients, reads and shares: in the LA's queue database."""
    return await InboxStore.open(
        rt.dsn, rt.sqlite(f"queue-{la}.db"), owner=la, schema=rt.store_schema(la)
    )


@dataclass(frozen=True, slots=True)
class RunningInbox:
    url: str
    server: HttpServer
    registry: CollectorRegistry  # served on the metrics port (if one is set), not at url
    app: ASGIApp  # what the server serves at url (for in-process tests)


@contextlib.asynccontextmanager
async def serving_inbox(
    rt: Runtime,
    la: str,
    settings: InboxSettings,
    registry: CollectorRegistry | None = None,
) -> AsyncIterator[RunningInbox]:
    """Serve LA's inbox on ``settings.host``/``port`` (0: a free port) while in the block."""
    trust = rt.trust()
    party = trust.party(la)
    if party.kind != "local_authority":
        raise ConfigError(f"{la} is a {party.kind}: the inbox serves a local authority")
    registry = registry or CollectorRegistry()
    identity = rt.identity(la, trust)
    async with contextlib.AsyncExitStack() as stack:
        await stack.enter_async_context(watching_trust(rt, trust, [identity], registry))
        queue = await stack.enter_async_context(await rt.queue_store(la))
        store = await stack.enter_async_context(await inbox_store(rt, la))
        store.sign_ins.backoff_s = settings.sign_in_backoff_s
        store.sessions.idle = dt.timedelta(seconds=settings.session_idle_s)
        store.sessions.absolute = dt.timedelta(seconds=settings.session_max_age_s)
        producer = await start_producer(rt.kafka)
        stack.push_async_callback(producer.stop)
        shares = ShareClient(
            identity=identity,
            trust=trust,
            contract=rt.contract(),
            producer=producer,
            rows=queue.answered,
        )
        network = NetworkCheckClient(
            identity=identity,
            trust=trust,
            contract=rt.contract(),
            producer=producer,
            rows=queue.information,
        )

        responder = ReferralResponder(
            identity=identity,
            trust=trust,
            contract=rt.contract(),
            producer=producer,
            rows=queue.answered,
        )

        async def ask(
            view: QueueView,
            to_id: str,
            category: str,
            to_name: str,
            purpose: str,
            by: str,
            request_id: uuid.UUID,
        ) -> dict[str, Any]:
            return await shares.request(
                view,
                to_id=to_id,
                category=category,
                to_name=to_name,
                purpose=purpose,
                requested_by=by,
                timeout=settings.share_timeout_s,
                request_id=request_id,
            )

        async def ask_consent(
            view: QueueView, category: str, purpose: str, by: str, request_id: uuid.UUID
        ) -> dict[str, Any]:
            return await shares.ask_consent(
                view, category=category, purpose=purpose, requested_by=by,
                timeout=settings.share_timeout_s, request_id=request_id,
            )  # fmt: skip

        inbox = Inbox(
            la=la,
            queue=queue,
            reader=QueueReader(store=queue, opener=Opener(identity, trust), contract=rt.contract()),
            store=store,
            ask_share=ask,
            find_answers=shares.answers,
            ask_consent=ask_consent,
            find_consents=shares.consent_answers,
            metrics=InboxMetrics(registry),
            send_response=responder.send,
            find_response_receipts=responder.receipts,
            referral_contact=settings.referral_contact,
        )
        calendar, days = CalendarSettings().calendar(), settings.family_decision_working_days
        family_metrics = FamilyMetrics(registry)
        families = Families(inbox, calendar=calendar, due_days=days, metrics=family_metrics)
        monitor = FamilyMonitor(store.families, family_metrics, calendar=calendar, due_days=days)
        interval = MonitorSettings().interval_s
        await stack.enter_async_context(refreshing("family decisions", monitor.refresh, interval))
        readiness = Readiness()
        readiness.add("queue database", database_check(queue.engine))
        secret = (
            checked_secret(settings.session_secret.get_secret_value(), "SGX_INBOX_SESSION_SECRET")
            if settings.session_secret
            else session_secret(rt.exchange.home / "inbox" / f"session-{la}.key")
        )
        idp = IdentityProvider(settings, la) if settings.oidc_issuer else None

        async def ready() -> bool:
            return all(result == "ok" for result in (await readiness.probe()).values())

        app = inbox_app(
            inbox,
            settings,
            session_secret=secret,
            la_name=party.name,
            idp=idp,
            ready=ready,
            families=families,
            network_checks=NetworkChecks(inbox, families, trust=trust, ask=network.ask),
        )
        server = await stack.enter_async_context(HttpServer(app, settings.host, settings.port))
        await stack.enter_async_context(serving_metrics(rt, registry, readiness))
        url = f"http://{settings.host}:{server.port}"
        log.info("inbox of %s on %s", la, url)
        yield RunningInbox(url, server, registry, app)


async def run_inbox(rt: Runtime, la: str, settings: InboxSettings, stop: asyncio.Event) -> None:
    """Serve LA's inbox until ``stop`` (or the server fails)."""
    async with serving_inbox(rt, la, settings) as running:
        stopping = asyncio.create_task(stop.wait())
        served = running.server.task
        await asyncio.wait(
            {stopping, *([served] if served else [])}, return_when=asyncio.FIRST_COMPLETED
        )
        stopping.cancel()
