"""Every query on a hot or periodic path uses an index: none scans a table that grows with
history (issue 20).

Each kind of store is filled with synthetic rows in every table (on PostgreSQL enough
that, after ANALYZE, the planner prefers an index wherever one fits; SQLite's planner
ignores row counts, so a few suffice there), then the calls the services make per
message, per batch, per request and per timer are run against it with every statement
they send captured (:func:`captured`). Each captured statement is then explained
(SQLite's ``EXPLAIN QUERY PLAN``, PostgreSQL's ``EXPLAIN (FORMAT JSON)``) with the same
parameters, and the test fails naming the statement if the plan scans a table whose size
grows with history. A new query added to these paths without an index is caught here;
:func:`test_the_check_catches_a_scan` shows the check is not blind.

What is left out, and why: ``audit verify``, ``audit list``, ``quarantine list`` and
other operator commands read history by design; the routes that list a caller's whole
queue (``/queue?show=all``, a child's sharing record) return history by design and are
paged or capped where they are served.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import MetaData, Table, Text, event, select, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from consumers.answer_rows import GatewayAnswer, GatewayReceipt
from consumers.inbox.consent_store import InboxConsents
from consumers.inbox.family_store import FamilyStore
from consumers.inbox.referral_store import InboxReferralResponses
from consumers.inbox.store import InboxStore
from consumers.inbox.throttle import SignInGuard
from consumers.information_rows import AnswerLink, InformationStatusRow
from consumers.monitor import QueueMonitor
from consumers.queue import QueueSelection, QueueStore
from gateway.allocations import AllocationDirectory
from gateway.checkpoints import Checkpoints
from gateway.consent_book import ConsentBook
from gateway.information_book import InformationBook
from gateway.records import Judged
from gateway.referral_book import ReferralBook
from gateway.requests import DisclosureRequests
from gateway.store import GatewayStore
from producers.consent_requests import ConsentRequests
from producers.information_requests import InformationRequests
from producers.outbox import OutboxStore
from producers.referral_outcomes import ReferralOutcomes
from safeguard import samples
from safeguard.store_tables import tables_of
from sgx.domain.family import DisclosureKind, FamilyDecision, FamilyException
from sgx.domain.identifiers import make_nhs_number, make_upn
from sgx.kafka.quarantine import QuarantineCount
from sgx.keys.pseudonym import Pseudonymiser
from sgx.ops.metrics import QueueMetrics
from sgx.store import driver
from sgx.store.database import Database
from sgx.store.db import UtcDateTime, is_sqlite, write_transaction
from sgx.wire import contract as c
from sgx.wire.contract import default_contract
from tests.conftest_db import BACKENDS, Backend, backend
from tests.unit.test_gateway_store import audit, ledger, quarantined
from tests.unit.test_queue_store import bad_record, entry

# rows per table: PostgreSQL's planner weighs them (a small table is scanned, rightly);
# SQLite's names a scan as a scan whatever the count
ROWS = {"sqlite": 500, "postgres": 20_000}

# Tables whose size follows live state, not history: scanning one is not a defect.
BOUNDED = {
    "audit_chain",  # one row per Kafka partition the gateway has read
    "gateway_allocation_offsets",  # one row per allocation-topic partition
    "known_schema",  # one row per writer schema learned
    "inbox_account",  # the LA's people
}

NOW = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Statement:
    sql: str
    parameters: Any


@contextmanager
def captured(engine: AsyncEngine) -> Iterator[list[Statement]]:
    """Every single statement ``engine`` sends while the block runs (not executemany),
    and every statement the hot paths send to the driver itself (:mod:`sgx.store.driver`;
    an executemany with its first row)."""
    seen: list[Statement] = []
    with _driver_statements(seen), _engine_statements(engine, seen):
        yield seen


_DRIVER_CALLS = (
    (driver._SqliteTx, "many"), (driver._SqliteTx, "execute"), (driver._SqliteTx, "fetch"),
    (driver._PostgresTx, "many"), (driver._PostgresTx, "execute"),
    (driver._PostgresTx, "fetch"), (driver.Driver, "read"),
)  # fmt: skip


@contextmanager
def _driver_statements(seen: list[Statement]) -> Iterator[None]:
    def spy(call: Any, many: bool) -> Any:
        async def spied(self: Any, sql: str, params: Any = ()) -> Any:
            if re.match(r"\s*(SELECT|UPDATE|DELETE|INSERT|WITH)\b", sql, re.I):
                first = params[0] if many and params else params
                seen.append(Statement(sql, tuple(first)))
            return await call(self, sql, params)

        return spied

    with pytest.MonkeyPatch.context() as patch:
        for owner, name in _DRIVER_CALLS:
            patch.setattr(owner, name, spy(getattr(owner, name), name == "many"))
        yield


@contextmanager
def _engine_statements(engine: AsyncEngine, seen: list[Statement]) -> Iterator[None]:

    def before(
        _conn: Any, _cursor: Any, sql: str, parameters: Any, _context: Any, many: bool
    ) -> None:
        if not many and re.match(r"\s*(SELECT|UPDATE|DELETE|INSERT|WITH)\b", sql, re.I):
            seen.append(Statement(sql, parameters))

    event.listen(engine.sync_engine, "before_cursor_execute", before)
    try:
        yield
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", before)


async def scans(conn: AsyncConnection, statement: Statement) -> set[str]:
    """The tables ``statement`` reads whole: its plan scans the table (or walks a whole
    index filtering row by row), or, on PostgreSQL, running it reads more than a tenth of
    a table's rows (which also catches a range that starts at the beginning)."""
    if conn.dialect.name == "sqlite":
        plan = await conn.exec_driver_sql(
            "EXPLAIN QUERY PLAN " + statement.sql, statement.parameters
        )
        # a primary-key range with other conditions filtering it and no limit: every row
        # after the cursor (all of them, from the start) is read to find a few
        unbounded = not re.search(r"\bLIMIT\b", statement.sql) and " AND " in statement.sql
        found = set()
        for row in plan:
            detail = str(tuple(row)[3])  # (id, parent, unused, detail)
            match = re.match(r"SCAN (\w+)", detail)
            if match and match.group(1) != "CONSTANT":
                found.add(match.group(1))
            match = re.match(r"SEARCH (\w+) USING INTEGER PRIMARY KEY \(rowid>\?\)", detail)
            if match and unbounded:
                found.add(match.group(1))
        return found
    analyze = re.match(r"\s*(SELECT|WITH)\b", statement.sql, re.I) is not None
    options = "ANALYZE, FORMAT JSON" if analyze else "FORMAT JSON"
    result = await conn.exec_driver_sql(
        f"EXPLAIN ({options}) " + statement.sql, statement.parameters
    )
    document = result.scalar_one()
    plan = json.loads(document) if isinstance(document, str) else document
    return set(_pg_scans(plan[0]["Plan"]))


def _pg_scans(node: dict[str, Any]) -> Iterator[str]:
    kind, relation = node["Node Type"], node.get("Relation Name")
    read = node.get("Actual Rows", 0) * node.get("Actual Loops", 1) + node.get(
        "Rows Removed by Filter", 0
    )
    if relation and (
        kind == "Seq Scan"
        or (
            kind in ("Index Scan", "Index Only Scan")
            and "Index Cond" not in node
            and "Filter" in node
        )
        or read > ROWS["postgres"] // 10
    ):
        yield relation
    for child in node.get("Plans", []):
        yield from _pg_scans(child)


def h(i: int) -> str:
    """The synthetic string of row ``i`` (hex after its first letter, as a child key is)."""
    return f"h{i:06x}"


def _value(table: Table, name: str, i: int) -> Any:
    column = table.c[name]
    kind: type = datetime if isinstance(column.type, UtcDateTime) else column.type.python_type
    if isinstance(column.type, Text):  # lists of strings are kept as JSON text
        return json.dumps([h(i)])
    if kind is str:
        length = getattr(column.type, "length", None) or 64
        return h(i)[:length]
    if kind is bool:
        return i % 2 == 0
    if kind is int:
        return i
    if kind is datetime:  # the last few hours: what a day's pruning leaves
        return NOW - timedelta(seconds=i)
    if kind is bytes:
        return i.to_bytes(16, "big")
    if kind is date:
        return date(2010, 1, 1) + timedelta(days=i % 5000)
    raise AssertionError(f"no synthetic value for {table.name}.{name} ({kind})")


async def fill(engine: AsyncEngine, metadata: MetaData, rows: int) -> None:
    """``rows`` synthetic rows in every table of ``metadata`` (every value distinct, so
    every unique constraint holds), then fresh planner statistics."""
    async with engine.begin() as conn:
        for table in metadata.sorted_tables:
            serial = table.autoincrement_column
            names = [c.name for c in table.columns if c is not serial]
            values = [{n: _value(table, n, i) for n in names} for i in range(rows)]
            for start in range(0, rows, 5_000):
                await conn.execute(table.insert(), values[start : start + 5_000])
    if not is_sqlite(engine):
        async with engine.connect() as conn:
            await conn.execution_options(isolation_level="AUTOCOMMIT")
            await conn.execute(text("ANALYZE"))


# --- the hot and periodic calls of each kind of store -----------------------------------

# A workload is an async generator: what it does before its ``yield`` is start-up (read
# once per process, not checked); what it does after is the hot and periodic path.
Workload = Callable[[AsyncEngine, str | None], AsyncIterator[None]]


async def _gateway(engine: AsyncEngine, schema: str | None) -> AsyncIterator[None]:
    store = GatewayStore(engine, MetaData(schema=schema))
    quarantined_rows = QuarantineCount(engine, store.quarantine_table, clock=lambda: NOW)
    await quarantined_rows.count()  # the monitor's first count reads the table once
    directory = AllocationDirectory(engine, Pseudonymiser(b"k" * 32), schema=schema)
    children = [(make_nhs_number(i), make_upn(i)) for i in range(3)]
    cases = [(nhs, upn, "sw-1", "T", "tm-1") for nhs, upn in children]
    await directory.apply(samples.allocation_update(cases, la="la-x"))  # cases of two keys
    yield
    ids = [h(i) for i in range(0, 400, 7)] + [str(uuid.uuid4()) for _ in range(10)]
    await store.judged(ids)  # every batch
    epochs = await store.claim(["sgx.inbound.school-a/0"], "gateway-1")  # a rebalance
    judged = Judged("school-a", str(uuid.uuid4()), "t", 0, 1, 0, "judged", "x", NOW)
    await store.record_places(  # every batch: audit, quarantine, ledger, judged at once
        [audit(1, message_id=str(uuid.uuid4()))],
        [quarantined(10**9)],
        [ledger(1, notification_id=str(uuid.uuid4()))],
        chains=["sgx.inbound.school-a/0"],
        fence=epochs,
        judged=[judged],
    )
    await store.ledger_entry(h(3), h(3))  # a share, a consent request or answer
    await store.chain_heads()  # the monitor, the checkpoint job
    await Checkpoints(engine, schema=schema).latest([h(1), h(2), "gateway"])  # checkpoints
    await quarantined_rows.count()  # the monitor, every few seconds
    book = ConsentBook(engine, schema=schema)
    await book.awaiting()  # the monitor
    await book.request(h(5))  # a consent answer
    await book.grants(h(5), h(5), h(5))  # a share that meets a restriction
    information = InformationBook(engine, schema=schema)
    await information.overdue(NOW)  # the monitor
    await information.request(h(5))  # an information answer
    moved = [(None, children[0][1], "sw-2", "T", "tm-1")]  # a re-allocation by UPN alone
    closed = [(children[1][0], None)]  # a closure by NHS number alone
    change = directory.change(samples.allocation_update(moved, closed, la="la-x"))
    async with write_transaction(engine) as conn:  # every allocation update, by its owner
        await directory.persist(conn, [change])
    await directory.open_case_keys([h(1)])  # a batch naming open-case lists
    await directory.first_read([(h(2), h(2)), (h(3), h(9))])  # allocation records read
    await store.close()  # the connection its batches held


async def _requests(engine: AsyncEngine, schema: str | None) -> AsyncIterator[None]:
    requests = DisclosureRequests(engine, MetaData(schema=schema))
    yield
    await requests.open_requests(NOW)  # the monitor
    await requests.status(h(7))  # a disclosure request or answer
    referrals = ReferralBook(engine, schema=schema)
    await referrals.overdue(NOW)  # the monitor
    await referrals.get(h(7), h(7))  # an LA's response to a referral
    await referrals.responded(h(7), h(7), NOW, "EARLY_HELP")


async def _queue(engine: AsyncEngine, schema: str | None) -> AsyncIterator[None]:
    store = QueueStore(engine, MetaData(schema=schema))
    monitor = QueueMonitor(store, QueueMetrics(CollectorRegistry()))
    await monitor.quarantine_size()  # the first count reads the table once
    yield
    await store.store_batch([entry(1, recipient=h(4))], [bad_record(10**9)])  # every batch
    await store.store_batch([entry(1, recipient=h(4))])  # a batch the gateway published again
    said = InformationStatusRow(h(3), "x", "RED", "ASKED", NOW, ("upn",), "r", NOW, "t/0/1/0")
    await store.store_batch(  # a batch with a network check's status and answer
        [], statuses=[said], answers=[AnswerLink(h(3), h(3), h(4), "t/0/2/0")]
    )
    worker = QueueSelection(recipients=frozenset({h(4), h(5)}))
    team = QueueSelection(recipients=frozenset({h(4)}), teams=frozenset({h(8)}))
    for who in (worker, team):
        await store.select(who, include_acked=False)  # the queue page
        await store.select(who, after=100, limit=50)  # the deliveries API, paging
        await store.newest(who, "acked", before=None, limit=100)  # the page's acknowledged
        await store.newest(who, "acked", before=200, limit=100)  # ... and older ones
    await store.select(QueueSelection(everything=True), after=100, limit=50)
    await store.get(3)  # an item page
    await store.ack(3, h(4))  # acknowledge
    checks = [h(3), h(7), str(uuid.uuid4())]  # a MASH item's network checks, by request id
    await store.information.status_of(checks)  # the page, the API, the client's wait
    await store.answering(checks)  # ... and the items answering them
    contract = default_contract()  # the gateway's answers on the receipts topic (queue 0010)
    share, consent, response = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    decision = {"request_id": share, "notification_id": uuid.uuid4(), "allowed": True,
                "broken": [], "reason": "r", "decided_at": NOW}  # fmt: skip
    await store.store_batch(  # a batch of the LA's receipts topic
        [],
        gateway=[
            GatewayAnswer(str(share), "share", "ALLOWED", NOW,
                          contract.encode(c.SHARE_DECISION, decision), "t/0/3/0"),
            GatewayReceipt(str(response), "DELIVERED", "r", "d", NOW, "t/0/4/0"),
        ],
    )  # fmt: skip
    await store.answered.wait(contract, "share", share, 1.0)  # a share asked, waiting
    await store.answered.latest(contract, "share", [share, uuid.uuid4()])  # pending shares
    await store.answered.latest(contract, "consent", [consent])  # consents awaiting the author
    await store.answered.said(contract, "consent", [consent])  # the demo, a test
    await store.answered.receipts_for([response, uuid.uuid4()])  # a referral's responses
    await monitor.teams(NOW)  # the monitor
    await monitor.quarantine_size()
    inbox = InboxStore(engine, MetaData(schema=schema))
    await inbox.client_for("la-x", "sgxi_" + "0" * 40)  # every API request
    guard = SignInGuard(engine, MetaData(schema=schema), clock=lambda: NOW)
    await guard.check(h(1), "198.51.100.7")  # every sign-in
    await guard.failed(h(1), "198.51.100.7")  # every failed one
    await guard.succeeded(h(2), "198.51.100.8")
    await inbox.shares([h(3), h(9)])  # an item page
    await inbox.share(3)
    request = str(uuid.uuid4())  # a share asked (registered as a disclosure), then answered
    await inbox.share_asked(
        request_id=request, item_id=3, notification_id=h(3), requested_by="x", to_id="x",
        to_category="LA_SOCIAL_CARE", to_name="x", purpose="p",
    )  # fmt: skip
    await inbox.share_decided(
        request, {"allowed": True, "broken": [], "reason": "r", "decided_at": NOW}
    )
    consents = InboxConsents(engine, MetaData(schema=schema))
    await consents.of([h(3)])
    await consents.get(3)
    await _families(inbox.families, worker, team)
    responses = InboxReferralResponses(engine, MetaData(schema=schema))
    await responses.of([h(3), h(9)])  # a referral's item page, the queue page's referrals
    await responses.sent(h(3))
    await responses.receipted(h(3), "DELIVERED", "passed on")
    await store.close()  # the connection its batches held


async def _families(families: FamilyStore, *selections: QueueSelection) -> None:
    """The family-informed record: the outstanding page and its gauge, an item's shares."""
    for who in selections:
        await families.outstanding(who)  # the outstanding page and API
    await families.outstanding_by_team()  # the monitor
    share = DisclosureKind.ONWARD_SHARE
    ref, notification = str(10**7), str(uuid.uuid4())  # rows the filler made are not real
    await families.register(
        None, kind=share, ref=ref, item_id=3, notification_id=notification, to_name="x",
        to_category="OTHER_PROFESSIONAL", purpose="p", asked_by="x", made=True, at=NOW,
    )  # fmt: skip
    await families.of([notification, str(uuid.uuid4())])  # the family-facing summary
    await families.current(share, [ref, h(9)])  # an item page's shares
    found = await families.get(share, ref)  # recording a decision
    told = FamilyDecision(False, "x", NOW, exception=FamilyException.UNDUE_DELAY, reason="r")
    await families.record(found.disclosure_id, told, recorded_by="x", recorder_kind="person")
    await families.history(found.disclosure_id)


async def _outbox(engine: AsyncEngine, schema: str | None) -> AsyncIterator[None]:
    store = OutboxStore(engine, MetaData(schema=schema))
    yield
    await store.pending(h(2), 100)  # every relay pass
    await store.mark_sent(h(2), [2, 9])
    await store.depth(h(2))  # after each pass
    requests = ConsentRequests(engine, schema=schema)
    await requests.list(h(2), open_only=True)  # the push endpoint's open requests
    outcomes = ReferralOutcomes(engine, schema=schema)
    await outcomes.of(h(2), [uuid.uuid4()])  # the push endpoint's referral
    await outcomes.after(h(2), 100, 50)  # the push endpoint's poll for responses
    checks = InformationRequests(engine, schema=schema)
    await checks.list(h(2), open_only=True)  # the agency's open information requests


WORKLOADS: dict[str, Workload] = {
    "gateway": _gateway,
    "requests": _requests,
    "queue": _queue,
    "outbox": _outbox,
}


@pytest.fixture(params=BACKENDS)
async def db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    async with backend(request.param, tmp_path) as made:
        yield made


class _Kind(Database):
    """Opens (and so migrates) a database of the kind under test."""

    KIND = ""

    def __init__(self, engine: AsyncEngine, metadata: MetaData) -> None:
        super().__init__(engine, metadata)
        tables_of(self.KIND, engine, metadata)


async def filled(db: Backend, kind: str) -> AsyncEngine:
    opener: type[_Kind] = type(kind, (_Kind,), {"KIND": kind})
    store = await opener.open(db.dsn, db.sqlite_path, owner="party-test", schema=db.schema)
    metadata = tables_of(kind, store.engine, MetaData(schema=db.schema))
    await fill(store.engine, metadata, ROWS[db.kind])
    return store.engine


@pytest.mark.parametrize("kind", sorted(WORKLOADS))
async def test_hot_and_periodic_queries_use_an_index(db: Backend, kind: str) -> None:
    engine = await filled(db, kind)
    try:
        steps = WORKLOADS[kind](engine, db.schema)
        await anext(steps)  # start-up
        with captured(engine) as statements:
            async for _ in steps:
                pass
        assert statements, "the workload ran no queries: the capture is broken"
        scanning = []
        async with engine.connect() as conn:
            for statement in statements:
                whole = await scans(conn, statement) - BOUNDED
                if whole:
                    scanning.append(f"{sorted(whole)} in: {statement.sql}")
        assert not scanning, "\n\n".join(scanning)
    finally:
        await engine.dispose()


async def test_the_check_catches_a_scan(db: Backend) -> None:
    """A look-up by a column no index leads with (the judged-message look-up before the
    index of gateway 0004) is reported as a scan of its table."""
    engine = await filled(db, "gateway")
    try:
        judged = GatewayStore(engine, MetaData(schema=db.schema))._judged
        with captured(engine) as statements:
            async with engine.connect() as conn:
                await conn.execute(select(judged).where(judged.c.type_label.in_([h(1), h(2)])))
        # and the look-up by message id the gateway makes uses its index
        with captured(engine) as lookups:
            store = GatewayStore(engine, MetaData(schema=db.schema))
            await store.judged([h(1), h(2)])
            await store.close()
        async with engine.connect() as conn:
            assert await scans(conn, statements[0]) == {"judged_message"}
            assert await scans(conn, lookups[0]) == set()
    finally:
        await engine.dispose()


async def test_the_quarantine_count_reads_only_new_rows_and_misses_none(db: Backend) -> None:
    """The monitors' quarantine gauge: exact as rows arrive, including a row whose lower id
    commits after a higher one (PostgreSQL hands ids out at insert, not at commit), and
    once the rows have settled it reads none of them again."""
    store = await GatewayStore.open(db.dsn, db.sqlite_path, schema=db.schema, owner="gateway")
    table = db.table("gateway_quarantine")
    try:
        now = [NOW]
        count = QuarantineCount(store.engine, store.quarantine_table, clock=lambda: now[0])
        await store.record([], [quarantined(i, quarantined_at=NOW) for i in range(3)])
        assert await count.count() == 3
        await store.record([], [quarantined(3, quarantined_at=NOW)])
        await db.execute(f'UPDATE {table} SET quarantine_id = 10 WHERE "offset" = 3')
        if db.kind == "postgres":  # as if ids 4 to 9 were handed out to writers still open
            await db.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'quarantine_id'), 10)"
            )
        assert await count.count() == 4
        await store.record([], [quarantined(4, quarantined_at=NOW)])
        await db.execute(f'UPDATE {table} SET quarantine_id = 5 WHERE "offset" = 4')
        assert await count.count() == 5  # id 5 arrived after id 10: counted all the same
        now[0] = NOW + timedelta(minutes=5)  # every row has settled
        assert await count.count() == 5
        with captured(store.engine) as statements:
            assert await count.count() == 5
            await store.record([], [quarantined(5, quarantined_at=now[0])])
            assert await count.count() == 6
        reads = [s.sql for s in statements if s.sql.lstrip().upper().startswith("SELECT")]
        assert reads
        assert all("count(" not in sql.lower() for sql in reads), reads
        assert all(re.search(r"quarantine_id\s*>", sql) for sql in reads), reads
    finally:
        await store.close()
