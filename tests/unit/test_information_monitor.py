"""The overdue-information-request gauge: open requests past their deadline, by LA and
agency; answered or not yet due ones are not counted, and a pair with none goes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from prometheus_client import CollectorRegistry

from gateway.information_book import InformationAnswered, InformationAsk, InformationBook
from gateway.information_monitor import InformationMetrics, InformationMonitor
from gateway.store import GatewayStore

NOW = datetime(2025, 3, 10, 12, tzinfo=UTC)


def ask(request_id: str, agency: str, due_in_hours: float, la: str = "la-camden") -> InformationAsk:
    return InformationAsk(
        request_id=request_id, local_authority=la, agency=agency, agency_kind="school",
        rating="RED", deadline=NOW + timedelta(hours=due_in_hours), child_pseudonym=None,
        family_told=True, family_exception=None, requested_by="mash-1",
        requested_at=NOW - timedelta(hours=8),
    )  # fmt: skip


async def test_overdue_requests_are_counted_by_la_and_agency_until_answered(
    tmp_path: Path,
) -> None:
    store = await GatewayStore.open(None, tmp_path / "gateway.db", owner="gateway")
    try:
        book = InformationBook(store.engine)
        async with store.engine.begin() as conn:
            await book.persist(conn, [
                ask("r1", "school-a", -1), ask("r2", "school-a", -2), ask("r3", "school-a", 1),
                ask("r4", "police", -3, la="la-islington"), ask("r5", "police", -1),
            ])  # fmt: skip
        registry = CollectorRegistry()
        monitor = InformationMonitor(book, InformationMetrics(registry), clock=lambda: NOW)
        await monitor.refresh()

        def overdue(la: str, party: str) -> float | None:
            labels = {"la": la, "party": party}
            return registry.get_sample_value("sgx_information_requests_overdue", labels)

        assert overdue("la-camden", "school-a") == 2
        assert overdue("la-islington", "police") == 1
        assert overdue("la-camden", "police") == 1
        async with store.engine.begin() as conn:
            await book.persist(conn, [
                InformationAnswered("r5", "a5", "NOTHING_HELD", "DS Smith", False, NOW),
                InformationAnswered("r1", "a1", "HELD", "DSL", False, NOW),
                InformationAnswered("r1", "a1-again", "HELD", "DSL", False, NOW),  # first stands
            ])  # fmt: skip
        await monitor.refresh()
        assert overdue("la-camden", "school-a") == 1
        assert overdue("la-camden", "police") is None  # answered: the series goes
        first = await book.request("r1")
        assert first is not None
        assert first.answer_id == "a1"
        assert [a.request_id for a in await book.of_agency("school-a")] == ["r1", "r2", "r3"]
    finally:
        await store.close()
