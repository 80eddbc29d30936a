"""The gateway's gauge of overdue MASH information requests, for both sides to see.

:class:`InformationMonitor` reads the gateway's record of information requests
(:mod:`gateway.information_book`) every few seconds and sets
``sgx_information_requests_overdue{la,party}``: the requests each LA's MASH put to each
agency that are past their deadline with no answer. The gateway holds both sides of every
request, so one gauge serves the asking LA (its MASH waits on the answer) and the agency
asked (it owes it); ``SgxInformationRequestOverdue`` fires while one is. A pair with none
overdue is not shown. Labels are party ids: no request id, no child.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Gauge

from gateway.information_book import InformationBook
from sgx.keys.trust import Clock, utc_now
from sgx.ops.metrics import set_labelled


class InformationMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.overdue = Gauge(
            "sgx_information_requests_overdue",
            "MASH information requests past their deadline with no answer, by asking LA and "
            "agency asked",
            ["la", "party"],
            registry=registry,
        )


class InformationMonitor:
    def __init__(
        self, book: InformationBook, metrics: InformationMetrics, *, clock: Clock = utc_now
    ) -> None:
        self._book = book
        self._metrics = metrics
        self._clock = clock
        self._shown: set[tuple[str, ...]] = set()

    async def refresh(self) -> None:
        overdue = await self._book.overdue(self._clock())
        values: dict[tuple[str, ...], float] = {pair: n for pair, n in overdue.items()}
        set_labelled(self._metrics.overdue, values, self._shown)
