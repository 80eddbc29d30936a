"""The monitors' gauges as a fake clock moves: Operation Encompass and disclosure deadlines,
queue depth, age and urgent items per team, quarantine, audit head, key expiry; and the
readiness endpoint. Stores are real (SQLite and PostgreSQL); the clock is not."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest
from prometheus_client import CollectorRegistry

from consumers.monitor import QueueMonitor
from consumers.queue import QueueStore
from gateway import monitor as gateway_monitor
from gateway.consent_book import ConsentAnswered, ConsentAsk, ConsentBook
from gateway.monitor import GatewayMonitor, key_expiries
from gateway.referral_book import ReferralBook, ReferralReceived
from gateway.requests import DisclosureRequests
from gateway.store import GatewayStore
from producers.monitor import EncompassMonitor
from producers.outbox import OutboxStore, ReceiptUpdate
from producers.publisher import Prepared
from safeguard.parties import DEMO_PARTIES, LA, OTHER_LA, POLICE, SCHOOL
from sgx.domain.calendar import CalendarSettings, SchoolCalendar
from sgx.domain.working_days import working_days_after
from sgx.errors import StoreError
from sgx.keys.key_admin import init_trust, revoke_key, rotate_key
from sgx.keys.trust import TrustDirectory, utc_now
from sgx.ops.metrics import EncompassMetrics, GatewayStateMetrics, QueueMetrics, refreshing
from sgx.ops.serving import MetricsServer, Readiness, database_check
from sgx.store.db import open_engine, write_transaction
from sgx.wire import contract as c
from sgx.wire.contract import Contract
from tests import samples
from tests.clock import Clock
from tests.conftest_db import BACKENDS, Backend, backend
from tests.unit.test_gateway_store import audit, quarantined
from tests.unit.test_queue_store import bad_record, entry

LONDON = ZoneInfo("Europe/London")
FRIDAY_EVENING = datetime(2025, 3, 7, 19, 0, tzinfo=LONDON)  # GMT: London time = UTC
MONDAY_START = datetime(2025, 3, 10, 8, 30, tzinfo=LONDON)
TUESDAY_START = datetime(2025, 3, 11, 8, 30, tzinfo=LONDON)


@pytest.fixture(params=BACKENDS)
async def db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    async with backend(request.param, tmp_path) as where:
        yield where


def value(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


# -- Operation Encompass at the police force's outbox ------------------------------------


def police_record(
    kind: str = "OPERATION_ENCOMPASS", occurred: datetime = FRIDAY_EVENING
) -> Prepared:
    record = samples.police_notification(kind=kind)
    if record["police"]["incident"] is not None:
        record["police"]["incident"]["occurred_at"] = occurred.astimezone(UTC)
    plaintext = Contract.load(c.DEFAULT_SCHEMA_DIR).encode(c.POLICE_NOTIFICATION, record)
    return Prepared(record["notification_id"], c.POLICE_NOTIFICATION, b"k" * 16, plaintext)


async def encompass(
    db: Backend, calendar: SchoolCalendar, clock: Clock, *items: Prepared
) -> tuple[OutboxStore, EncompassMonitor, CollectorRegistry]:
    store = await OutboxStore.open(db.dsn, db.sqlite_path, schema=db.schema, owner="agency-test")
    await store.insert(POLICE, list(items))
    registry = CollectorRegistry()
    monitor = EncompassMonitor(
        store,
        POLICE,
        Contract.load(c.DEFAULT_SCHEMA_DIR),
        calendar,
        EncompassMetrics(registry),
        window=timedelta(hours=12),
        clock=clock,
    )
    return store, monitor, registry


async def test_encompass_gauge_rises_as_monday_morning_nears_and_falls_once_delivered(
    db: Backend,
) -> None:
    clock = Clock(FRIDAY_EVENING + timedelta(hours=1))
    incident, disclosure = police_record(), police_record(kind="PROTOCOL_2013_DISCLOSURE")
    store, monitor, registry = await encompass(
        db, SchoolCalendar(time(8, 30), LONDON), clock, incident, disclosure
    )
    async with store:
        undelivered = "sgx_encompass_undelivered_before_school_day"
        await monitor.refresh()
        assert value(registry, undelivered) == 0  # Monday 08:30 is 59.5 hours away
        seconds = value(registry, "sgx_encompass_seconds_to_school_day")
        assert seconds == (MONDAY_START - clock.now).total_seconds()

        clock.now = MONDAY_START - timedelta(hours=11)  # Sunday evening: inside the window
        await monitor.refresh()
        assert value(registry, undelivered) == 1  # the incident only, not the disclosure

        clock.now = MONDAY_START + timedelta(minutes=30)  # the school day has begun: overdue
        await monitor.refresh()
        assert value(registry, undelivered) == 1
        seconds = value(registry, "sgx_encompass_seconds_to_school_day")
        assert seconds == (TUESDAY_START - clock.now).total_seconds()

        delivered = ReceiptUpdate(incident.message_id, "DELIVERED", "delivered", "", clock.now)
        await store.apply_receipts(POLICE, [delivered])
        await monitor.refresh()
        assert value(registry, undelivered) == 0


async def test_a_holiday_monday_moves_the_encompass_deadline_to_tuesday(db: Backend) -> None:
    holiday = SchoolCalendar(time(8, 30), LONDON, frozenset({date(2025, 3, 10)}))
    clock = Clock(MONDAY_START + timedelta(minutes=30))
    store, monitor, registry = await encompass(db, holiday, clock, police_record())
    async with store:
        undelivered = "sgx_encompass_undelivered_before_school_day"
        await monitor.refresh()
        assert value(registry, undelivered) == 0  # Tuesday 08:30 is 24 hours away
        clock.now = TUESDAY_START - timedelta(hours=6)
        await monitor.refresh()
        assert value(registry, undelivered) == 1


# -- disclosure requests by days to the 14-day deadline -----------------------------------


async def test_disclosure_requests_move_through_the_due_buckets_past_14_days(
    db: Backend, tmp_path: Path
) -> None:
    asked = datetime(2025, 3, 3, 9, 30, tzinfo=UTC)
    clock = Clock(asked + timedelta(hours=1))
    registry = CollectorRegistry()
    trust = init_trust(tmp_path / "trust", DEMO_PARTIES)
    gateway_db = dataclasses.replace(db, sqlite_path=tmp_path / "gateway.db")
    async with (
        await DisclosureRequests.open(
            db.dsn, db.sqlite_path, schema=db.schema, owner="gateway"
        ) as requests,
        await GatewayStore.open(
            gateway_db.dsn, gateway_db.sqlite_path, schema=db.schema, owner="gateway"
        ) as store,
    ):
        await requests.opened("REQ-1", LA, POLICE, "PROTOCOL_2013", asked, "ab" * 16)
        await requests.opened("REQ-2", LA, POLICE, "PROTOCOL_2024", asked + timedelta(days=6), None)
        monitor = GatewayMonitor(
            store, requests, lambda: trust, GatewayStateMetrics(registry),
            consents=ConsentBook(store.engine, schema=db.schema), clock=clock,
        )  # fmt: skip

        async def due() -> dict[str, float | None]:
            await monitor.refresh()
            buckets = ("overdue", "lt_3d", "lt_7d", "lt_14d")
            return {b: value(registry, "sgx_disclosure_requests_open", due=b) for b in buckets}

        assert await due() == {"overdue": 0, "lt_3d": 0, "lt_7d": 0, "lt_14d": 2}
        clock.now = asked + timedelta(days=8)  # REQ-1: 6 days left; REQ-2: 12
        assert await due() == {"overdue": 0, "lt_3d": 0, "lt_7d": 1, "lt_14d": 1}
        clock.now = asked + timedelta(days=12)  # REQ-1: 2 days left; REQ-2: 8
        assert await due() == {"overdue": 0, "lt_3d": 1, "lt_7d": 0, "lt_14d": 1}
        clock.now = asked + timedelta(days=14, seconds=1)  # REQ-1 passed the 14-day mark
        assert await due() == {"overdue": 1, "lt_3d": 0, "lt_7d": 1, "lt_14d": 0}
        await requests.answered("REQ-1", str(uuid.uuid4()), clock.now)
        assert await due() == {"overdue": 0, "lt_3d": 0, "lt_7d": 1, "lt_14d": 0}


# -- referrals: acknowledgement and decision deadlines ----------------------------------


def _referred(referral_id: str, la: str, at: datetime, ack: int, decide: int) -> ReferralReceived:
    """A referral routed to ``la`` at ``at``, due in so many working days (England's)."""
    calendar = CalendarSettings().calendar()
    return ReferralReceived(
        referral_id, la, "gp-hillside", "gp_practice", None, at,
        working_days_after(calendar, at, ack), working_days_after(calendar, at, decide),
    )  # fmt: skip


async def test_referrals_not_acknowledged_then_not_decided_in_working_days_are_overdue(
    db: Backend, tmp_path: Path
) -> None:
    """Friday 16:00: due on Monday 16:00 (one working day; Islington decides in two).
    Over the weekend nothing is overdue; on Monday evening Camden's is, until answered."""
    friday = datetime(2025, 3, 7, 16, 0, tzinfo=LONDON)
    clock = Clock(friday + timedelta(hours=1))
    registry = CollectorRegistry()
    trust = init_trust(tmp_path / "trust", DEMO_PARTIES)
    gateway_db = dataclasses.replace(db, sqlite_path=tmp_path / "gateway.db")
    async with (
        await DisclosureRequests.open(
            db.dsn, db.sqlite_path, schema=db.schema, owner="gateway"
        ) as requests,
        await GatewayStore.open(
            gateway_db.dsn, gateway_db.sqlite_path, schema=db.schema, owner="gateway"
        ) as store,
    ):
        book = ReferralBook(requests.engine, schema=db.schema)
        await book.received(
            [_referred("r-1", LA, friday, 1, 1), _referred("r-2", OTHER_LA, friday, 1, 2)]
        )
        monitor = GatewayMonitor(
            store, requests, lambda: trust, GatewayStateMetrics(registry),
            consents=ConsentBook(store.engine, schema=db.schema), referrals=book, clock=clock,
        )  # fmt: skip

        async def overdue() -> dict[tuple[str, str], float | None]:
            await monitor.refresh()
            return {
                (la, stage): value(registry, "sgx_referrals_overdue", la=la, stage=stage)
                for la in (LA, OTHER_LA)
                for stage in ("acknowledgement", "decision")
            }

        none = dict.fromkeys(await overdue(), 0.0)
        assert await overdue() == none  # every series exported, none overdue
        clock.now = datetime(2025, 3, 10, 15, 59, tzinfo=LONDON)  # Monday, a minute early
        assert await overdue() == none
        clock.now = datetime(2025, 3, 10, 16, 1, tzinfo=LONDON)
        assert await overdue() == none | {
            (LA, "acknowledgement"): 1, (LA, "decision"): 1, (OTHER_LA, "acknowledgement"): 1,
        }  # fmt: skip
        await book.responded("r-1", LA, clock.now, None)  # acknowledged, late, not decided
        await book.responded("r-2", OTHER_LA, clock.now, None)
        assert await overdue() == none | {(LA, "decision"): 1}
        clock.now = datetime(2025, 3, 11, 16, 1, tzinfo=LONDON)  # Islington's two days too
        assert await overdue() == none | {(LA, "decision"): 1, (OTHER_LA, "decision"): 1}
        await book.responded("r-1", LA, clock.now, "EARLY_HELP")
        await book.responded("r-2", OTHER_LA, clock.now, "NO_FURTHER_ACTION")
        assert await overdue() == none
        answered = await book.get("r-1", LA)
        assert answered is not None
        assert answered.acknowledged_at == datetime(2025, 3, 10, 16, 1, tzinfo=LONDON)
        assert answered.decision == "EARLY_HELP"


# -- consent requests awaiting their authors -------------------------------------------


def _asked(request_id: str, author: str, at: datetime) -> ConsentAsk:
    return ConsentAsk(
        request_id=request_id, notification_id="n-1", local_authority=LA,
        requested_by="sw-amara", author=author, author_kind="school",
        category="PARENT_OR_CARER", purpose="conference", blocking=("THIRD_PARTY_AUTHOR_CONSENT",),
        requested_at=at,
    )  # fmt: skip


async def test_consent_requests_awaiting_each_author_and_the_oldest_age(
    db: Backend, tmp_path: Path
) -> None:
    asked = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
    clock = Clock(asked + timedelta(days=2))
    registry = CollectorRegistry()
    trust = init_trust(tmp_path / "trust", DEMO_PARTIES)
    async with (
        await GatewayStore.open(db.dsn, db.sqlite_path, schema=db.schema, owner="gateway") as store,
        await DisclosureRequests.open(
            db.dsn, tmp_path / "requests.db", schema=db.schema, owner="gateway"
        ) as req,
    ):
        book = ConsentBook(store.engine, schema=db.schema)
        monitor = GatewayMonitor(
            store, req, lambda: trust, GatewayStateMetrics(registry), consents=book, clock=clock
        )
        async with write_transaction(store.engine) as conn:
            await book.persist(
                conn,
                [
                    _asked("r-1", SCHOOL, asked),
                    _asked("r-2", SCHOOL, asked + timedelta(days=1)),
                    _asked("r-3", POLICE, asked + timedelta(days=1)),
                ],
            )

        async def shown(metric: str) -> dict[str, float | None]:
            await monitor.refresh()
            return {p: value(registry, metric, party=p) for p in (SCHOOL, POLICE)}

        assert await shown("sgx_consent_requests_awaiting") == {SCHOOL: 2, POLICE: 1}
        days = 86400.0
        assert await shown("sgx_consent_request_oldest_age_seconds") == {
            SCHOOL: 2 * days, POLICE: 1 * days,
        }  # fmt: skip
        answered = ConsentAnswered("r-1", "GRANTED", "a-1", "Ms Head", None, None, clock.now)
        async with write_transaction(store.engine) as conn:
            await book.persist(conn, [answered, dataclasses.replace(answered, request_id="r-3")])
        assert await shown("sgx_consent_requests_awaiting") == {SCHOOL: 1, POLICE: None}
        assert await shown("sgx_consent_request_oldest_age_seconds") == {
            SCHOOL: 1 * days, POLICE: None,
        }  # fmt: skip


@contextlib.asynccontextmanager
async def monitored_gateway(
    db: Backend,
    tmp_path: Path,
    trust: Callable[[], TrustDirectory],
    metrics: GatewayStateMetrics,
    clock: Callable[[], datetime] = utc_now,
) -> AsyncIterator[tuple[GatewayMonitor, GatewayStore]]:
    """A gateway's monitor over fresh stores (gateway and disclosure requests) on ``db``."""
    async with (
        await GatewayStore.open(db.dsn, db.sqlite_path, schema=db.schema, owner="gateway") as store,
        await DisclosureRequests.open(
            db.dsn, tmp_path / "requests.db", schema=db.schema, owner="gateway"
        ) as req,
    ):
        consents = ConsentBook(store.engine, schema=db.schema)
        yield GatewayMonitor(store, req, trust, metrics, consents=consents, clock=clock), store


async def test_gateway_quarantine_size_and_audit_chain_head(db: Backend, tmp_path: Path) -> None:
    registry = CollectorRegistry()
    trust = init_trust(tmp_path / "trust", DEMO_PARTIES)
    metrics = GatewayStateMetrics(registry)
    async with monitored_gateway(db, tmp_path, lambda: trust, metrics) as (monitor, store):
        await monitor.refresh()
        assert value(registry, "sgx_gateway_quarantine_size") == 0
        assert value(registry, "sgx_audit_chain_head", chain="sgx.inbound.a:0") is None
        await store.record(
            [audit(1), audit(2), audit(3)],
            [quarantined(7), quarantined(8)],
            [],
            chains=["sgx.inbound.a:0", "sgx.inbound.a:0", "sgx.inbound.b:1"],
        )
        await monitor.refresh()
        assert value(registry, "sgx_gateway_quarantine_size") == 2
        assert value(registry, "sgx_audit_chain_head", chain="sgx.inbound.a:0") == 2
        assert value(registry, "sgx_audit_chain_head", chain="sgx.inbound.b:1") == 1


# -- key expiry ---------------------------------------------------------------------------


def test_key_expiry_shows_each_partys_current_key_only(tmp_path: Path) -> None:
    trust_dir = tmp_path / "trust"
    first = init_trust(trust_dir, DEMO_PARTIES)
    old = first.party(POLICE).keys[0]
    assert key_expiries(first)[POLICE, old.kid] == old.not_after.timestamp()
    assert len(key_expiries(first)) == len(DEMO_PARTIES)

    new_kid = rotate_key(trust_dir, POLICE)
    rotated = TrustDirectory.load(trust_dir)
    shown = {kid for party, kid in key_expiries(rotated) if party == POLICE}
    assert shown == {new_kid}  # the superseded key no longer asks for a rotation

    revoke_key(trust_dir, POLICE, new_kid)
    assert {kid for p, kid in key_expiries(TrustDirectory.load(trust_dir)) if p == POLICE} == {
        old.kid
    }


async def test_key_expiry_series_follow_a_rotation(db: Backend, tmp_path: Path) -> None:
    trust_dir = tmp_path / "trust"
    registry = CollectorRegistry()
    metrics = GatewayStateMetrics(registry)
    trust = init_trust(trust_dir, DEMO_PARTIES)
    old_kid = trust.party(POLICE).keys[0].kid
    near = trust.party(POLICE).keys[0].not_after - timedelta(days=10)  # in the window
    async with monitored_gateway(
        db, tmp_path, lambda: TrustDirectory.load(trust_dir), metrics, Clock(near)
    ) as (monitor, _):
        await monitor.refresh()
        expiry = value(registry, "sgx_key_expiry_timestamp_seconds", party=POLICE, kid=old_kid)
        assert expiry == trust.party(POLICE).keys[0].not_after.timestamp()
        new_kid = rotate_key(trust_dir, POLICE)
        await monitor.refresh()
        assert (
            value(registry, "sgx_key_expiry_timestamp_seconds", party=POLICE, kid=old_kid) is None
        )
        assert value(registry, "sgx_key_expiry_timestamp_seconds", party=POLICE, kid=new_kid)


async def test_key_expiries_are_set_once_per_directory_the_watcher_loads(
    db: Backend, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The gateway's monitor reads the directory the gateway runs on (refreshed in place by
    its watcher), and sets the expiries when it changes, not at every refresh: one series
    per party every few seconds, and a load from disk, grew with the agencies."""
    trust_dir = tmp_path / "trust"
    registry = CollectorRegistry()
    trust = init_trust(trust_dir, DEMO_PARTIES)
    worked_out: list[TrustDirectory] = []

    def counted(directory: TrustDirectory) -> dict[tuple[str, ...], float]:
        worked_out.append(directory)
        return key_expiries(directory)

    monkeypatch.setattr(gateway_monitor, "key_expiries", counted)
    near = trust.party(POLICE).keys[0].not_after - timedelta(days=10)  # in the window
    metrics = GatewayStateMetrics(registry)
    async with monitored_gateway(db, tmp_path, lambda: trust, metrics, Clock(near)) as (monitor, _):
        for _ in range(3):
            await monitor.refresh()
        assert len(worked_out) == 1
        new_kid = rotate_key(trust_dir, POLICE)
        await monitor.refresh()
        assert len(worked_out) == 1  # on disk only: the gateway has not reloaded it yet
        trust.refresh(TrustDirectory.load(trust_dir))  # what its watcher does
        await monitor.refresh()
        await monitor.refresh()
        assert len(worked_out) == 2
        assert value(registry, "sgx_key_expiry_timestamp_seconds", party=POLICE, kid=new_kid)


async def test_a_key_is_shown_from_thirty_days_before_it_expires(
    db: Backend, tmp_path: Path
) -> None:
    """A year-long key concerns no alert (they fire at 14 and 3 days): at 25,000 agencies a
    series each made every scrape 26,000 lines. Each key shows once its expiry is within
    30 days, at the next refresh, without a reload; revoked or superseded keys never."""
    registry = CollectorRegistry()
    trust = init_trust(tmp_path / "trust", DEMO_PARTIES)
    police_key = trust.party(POLICE).keys[0]
    now = Clock(police_key.not_after - timedelta(days=31))
    metrics = GatewayStateMetrics(registry)
    async with monitored_gateway(db, tmp_path, lambda: trust, metrics, now) as (monitor, _):
        await monitor.refresh()
        assert value(registry, "sgx_key_expiry_timestamp_seconds", party=POLICE,
                     kid=police_key.kid) is None  # fmt: skip
        now.now = police_key.not_after - timedelta(days=29)
        await monitor.refresh()
        assert (
            value(registry, "sgx_key_expiry_timestamp_seconds", party=POLICE, kid=police_key.kid)
            == police_key.not_after.timestamp()
        )


# -- queues per team ----------------------------------------------------------------------


async def test_queue_depth_age_and_urgent_unread_per_team(db: Backend) -> None:
    registry = CollectorRegistry()
    async with await QueueStore.open(
        db.dsn, db.sqlite_path, schema=db.schema, owner="la-test"
    ) as store:
        await store.store_batch(
            [
                entry(1, "sw-anna", team="East"),
                entry(2, "sw-anna", team="East", urgency="IMMEDIATE"),
                entry(3, "sw-ben", team="West", urgency="IMMEDIATE"),
                entry(4, "key-adult:school-a", team=None, recipient_role="KEY_ADULT"),
            ],
            [bad_record(1), bad_record(2)],
        )
        queued_at = (await store.get(1)).queued_at
        clock = Clock(queued_at + timedelta(minutes=10))
        monitor = QueueMonitor(
            store,
            QueueMetrics(registry),
            urgent_after=timedelta(hours=1),
            clock=clock,
        )

        def team(name: str, team: str) -> float | None:
            return value(registry, name, team=team)

        await monitor.refresh()
        assert (team("sgx_queue_depth", "East"), team("sgx_queue_depth", "West")) == (2, 1)
        assert team("sgx_queue_depth", "KEY_ADULT") == 1  # no team: counted by role
        age = team("sgx_queue_oldest_unread_age_seconds", "East")
        assert age is not None
        assert age == pytest.approx(600, abs=1)
        assert team("sgx_urgent_unread", "East") == 0  # urgent, but unread for 10 minutes only
        assert value(registry, "sgx_consumer_quarantine_size") == 2

        clock.now = queued_at + timedelta(hours=2)
        await monitor.refresh()
        assert (team("sgx_urgent_unread", "East"), team("sgx_urgent_unread", "West")) == (1, 1)

        await store.ack(2, by="sw-anna")
        await store.ack(3, by="sw-ben")
        await monitor.refresh()
        assert team("sgx_urgent_unread", "East") == 0
        assert team("sgx_queue_depth", "West") == 0  # the team stays, at zero
        assert team("sgx_queue_oldest_unread_age_seconds", "West") == 0
        for sample in registry.collect():
            for s in sample.samples:
                assert "sw-anna" not in s.labels.values()
                assert "sw-ben" not in s.labels.values()


# -- the refresh loop and readiness -------------------------------------------------------


async def test_refreshing_survives_a_failed_refresh_and_stops_on_exit() -> None:
    calls: list[int] = []
    third = asyncio.Event()

    async def refresh() -> None:
        calls.append(len(calls))
        if len(calls) == 1:
            raise StoreError("the database is away")
        if len(calls) == 3:
            third.set()

    async with refreshing("test", refresh, interval=0.01):
        await asyncio.wait_for(third.wait(), 5)
    stopped_at = len(calls)
    await asyncio.sleep(0.05)
    assert len(calls) == stopped_at


async def test_readyz_is_503_with_the_reason_until_every_check_passes(tmp_path: Path) -> None:
    readiness = Readiness(limit=0.2)
    broker_up = False

    async def broker() -> None:
        if not broker_up:
            raise ConnectionError("broker 127.0.0.1:9 refused the connection")

    async def slow() -> None:
        await asyncio.sleep(1)

    async with await QueueStore.open(None, tmp_path / "q.db", owner="la-test") as store:
        readiness.add("broker", broker)
        readiness.add("queue database", database_check(store.engine))
        async with (
            MetricsServer(CollectorRegistry(), readiness=readiness) as server,
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as client,
        ):
            assert (await client.get("/healthz")).status_code == 200
            answer = await client.get("/readyz")
            assert answer.status_code == 503
            assert answer.json()["ready"] is False
            assert answer.json()["reason"].startswith("broker: ConnectionError: broker 127.0.0.1:9")
            assert answer.json()["checks"]["queue database"] == "ok"

            broker_up = True
            answer = await client.get("/readyz")
            assert answer.status_code == 200
            assert answer.json() == {
                "ready": True,
                "checks": {"broker": "ok", "queue database": "ok"},
            }

            readiness.add("slow", slow)
            answer = await client.get("/readyz")
            assert answer.status_code == 503
            assert answer.json()["reason"] == "slow: no answer within 0.2s"
    unreachable = Readiness()
    engine = open_engine("postgresql+asyncpg://postgres@127.0.0.1:1/test", tmp_path / "x.db")
    try:
        unreachable.add("database", database_check(engine))
        result = (await unreachable.probe())["database"]
    finally:
        await engine.dispose()
    assert result.startswith("StoreError: could not reach the database: ConnectionRefusedError")
