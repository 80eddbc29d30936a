"""The gateway's monitor: quarantine, audit chain head, key expiry, disclosure deadlines.

:class:`GatewayMonitor` reads the gateway's stores every few seconds and sets:

* ``sgx_gateway_quarantine_size`` — records held in the gateway's quarantine;
* ``sgx_audit_chain_head{chain}`` — the sequence of the newest audit record of each chain;
* ``sgx_key_expiry_timestamp_seconds{party,kid}`` — for each party of the trust
  directory whose current key (the non-revoked key that expires last) expires within
  :data:`EXPIRY_SHOWN` (30 days; the alerts fire at 14 and 3), when it expires. Worked
  out again whenever the gateway's watcher reloads the directory (a published rotation
  shows without a restart), and at each refresh only the keys that came within the
  window are added. A key superseded by a rotation is not shown, so "key near expiry"
  asks for a rotation only when the party has no later key. Every key was shown until
  2026-12-08: at 25,000 agencies one series each made every scrape 26,000 lines (about
  0.25 s of the gateway's CPU), for a year-long key that no alert could yet concern;
* ``sgx_disclosure_requests_open{due}`` — open 2013 / 2024 Protocol disclosure requests
  (:mod:`gateway.requests`) by whole days left to their 14-day deadline: ``overdue``
  (past it), ``lt_3d`` (0 to 2 days left), ``lt_7d`` (3 to 6), ``lt_14d`` (7 to 14). Every
  bucket is always exported (0 when empty), so alert rules see the series;
* ``sgx_consent_requests_awaiting{party}`` and ``sgx_consent_request_oldest_age_seconds{party}``
  — consent requests forwarded to each author (:mod:`gateway.consent_book`) that it has
  not answered, and how long the oldest has waited (an author with none is not shown):
  nothing may wait unseen, and an LA's share waits on the answer;
* ``sgx_referrals_overdue{la,stage}`` — referrals (:mod:`gateway.referral_book`) an LA has
  not acknowledged (``acknowledgement``) or not decided (``decision``) by the deadline its
  agreement sets in working days; every LA of the directory and both stages always
  exported (0 when none), so the alert rules see the series.

Labels are party ids, key ids and buckets: no request reference, no child. The clock is
injected, so a test moves time past the 14-day mark. :func:`gateway_monitors` runs it
with the gateway consumer's :class:`~sgx.ops.metrics.LagMonitor` and registers the readiness
checks (broker, gateway database, disclosure-request database).
"""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import timedelta

from aiokafka import AIOKafkaConsumer
from prometheus_client import CollectorRegistry

from gateway.consent_book import ConsentBook
from gateway.referral_book import STAGES, ReferralBook
from gateway.requests import DisclosureRequests, OpenRequest
from gateway.store import GatewayStore
from sgx.kafka.quarantine import QuarantineCount
from sgx.keys.trust import Clock, TrustDirectory, utc_now
from sgx.ops.metrics import (
    GatewayStateMetrics,
    LagMetrics,
    LagMonitor,
    MonitorSettings,
    refreshing,
    set_labelled,
)
from sgx.ops.serving import Readiness, broker_check, database_check

DUE_BUCKETS = ("overdue", "lt_3d", "lt_7d", "lt_14d")


def due_bucket(request: OpenRequest) -> str:
    """The ``due`` label of an open request: how close its 14-day deadline is."""
    if request.overdue:
        return "overdue"
    if request.days_remaining < 3:
        return "lt_3d"
    if request.days_remaining < 7:
        return "lt_7d"
    return "lt_14d"


EXPIRY_SHOWN = timedelta(days=30)  # a key's expiry is exported from this long before it


def key_expiries(trust: TrustDirectory) -> dict[tuple[str, ...], float]:
    """(party, kid) → unix expiry of each party's non-revoked key that expires last."""
    expiries: dict[tuple[str, ...], float] = {}
    for party in trust.parties():
        live = [key for key in party.keys if not key.revoked]
        if live:
            key = max(live, key=lambda k: k.not_after)
            expiries[party.id, key.kid] = key.not_after.timestamp()
    return expiries


class GatewayMonitor:
    """Sets the gateway's state gauges from its stores and trust directory."""

    def __init__(
        self,
        store: GatewayStore,
        requests: DisclosureRequests,
        trust: Callable[[], TrustDirectory],
        metrics: GatewayStateMetrics,
        *,
        consents: ConsentBook,
        referrals: ReferralBook | None = None,
        clock: Clock = utc_now,
    ) -> None:
        self._store = store
        self._referrals = referrals
        self._quarantined = QuarantineCount(store.engine, store.quarantine_table, clock)
        self._requests = requests
        self._consents = consents
        self._trust = trust
        self._metrics = metrics
        self._clock = clock
        self._keys_shown: set[tuple[str, ...]] = set()
        # the directory (and its generation: a reload refreshes it in place) they were set from
        self._keys_of: tuple[TrustDirectory, int] | None = None
        self._expiring: list[tuple[float, tuple[str, ...]]] = []  # soonest first
        self._awaiting_shown: set[tuple[str, ...]] = set()
        self._oldest_shown: set[tuple[str, ...]] = set()

    async def refresh(self) -> None:
        m = self._metrics
        m.quarantine_size.set(await self._quarantined.count())
        for chain, state in (await self._store.chain_heads()).items():
            m.audit_chain_head.labels(chain=chain).set(state.sequence)
        self._key_expiries(self._trust())
        due = Counter(due_bucket(r) for r in await self._requests.open_requests(self._clock()))
        for bucket in DUE_BUCKETS:
            m.disclosure_requests.labels(due=bucket).set(due[bucket])
        await self._awaiting_authors()
        await self._overdue_referrals()

    def _key_expiries(self, trust: TrustDirectory) -> None:
        """Show the keys expiring within :data:`EXPIRY_SHOWN`. The expiries are worked out
        once per trust directory loaded (they change only when a reload brings a new
        one: one series per party every refresh cost 25 ms of CPU a second with 25,000
        agencies, with no traffic); a refresh only shows those that came into the window."""
        reloaded = self._keys_of != (trust, trust.generation)
        if reloaded:
            self._expiring = sorted((at, labels) for labels, at in key_expiries(trust).items())
            self._keys_of = (trust, trust.generation)
        horizon = (self._clock() + EXPIRY_SHOWN).timestamp()
        within = bisect.bisect_right(self._expiring, horizon, key=lambda entry: entry[0])
        if reloaded or within != len(self._keys_shown):
            shown = {labels: at for at, labels in self._expiring[:within]}
            set_labelled(self._metrics.key_expiry, shown, self._keys_shown)

    async def _overdue_referrals(self) -> None:
        if self._referrals is None:
            return
        overdue = await self._referrals.overdue(self._clock())
        for la in self._trust().local_authorities():
            for stage in STAGES:
                self._metrics.referrals_overdue.labels(la=la, stage=stage).set(overdue[la, stage])

    async def _awaiting_authors(self) -> None:
        m, now = self._metrics, self._clock()
        awaiting = await self._consents.awaiting()
        ages: dict[tuple[str, ...], float] = {
            (a,): (now - oldest).total_seconds() for a, (_, oldest) in awaiting.items()
        }
        counts: dict[tuple[str, ...], float] = {(a,): n for a, (n, _) in awaiting.items()}
        set_labelled(m.consents_awaiting, counts, self._awaiting_shown)
        set_labelled(m.consent_oldest_age, ages, self._oldest_shown)


@asynccontextmanager
async def gateway_monitors(
    *,
    store: GatewayStore,
    requests: DisclosureRequests,
    consents: ConsentBook,
    trust: Callable[[], TrustDirectory],
    consumer: AIOKafkaConsumer,
    referrals: ReferralBook | None = None,
    registry: CollectorRegistry,
    readiness: Readiness,
    settings: MonitorSettings | None = None,
    clock: Clock = utc_now,
    checkpoint: Callable[[], Awaitable[None]] | None = None,
    checkpoint_interval_s: float = 30.0,
) -> AsyncIterator[GatewayMonitor]:
    """Run the gateway's state and lag monitors (and ``checkpoint``, signing chain heads,
    every ``checkpoint_interval_s``) while the block runs; register readiness."""
    settings = settings or MonitorSettings()
    readiness.add("broker", broker_check(consumer))
    readiness.add("gateway database", database_check(store.engine))
    readiness.add("disclosure request database", database_check(requests.engine))
    state = GatewayMonitor(
        store, requests, trust, GatewayStateMetrics(registry), consents=consents,
        referrals=referrals, clock=clock,
    )  # fmt: skip
    lag = LagMonitor(consumer, LagMetrics(registry))
    async with AsyncExitStack() as stack:
        await stack.enter_async_context(refreshing("gateway", state.refresh, settings.interval_s))
        await stack.enter_async_context(refreshing("gateway lag", lag.refresh, settings.interval_s))
        if checkpoint is not None:
            await stack.enter_async_context(
                refreshing("audit checkpoints", checkpoint, checkpoint_interval_s)
            )
        yield state
