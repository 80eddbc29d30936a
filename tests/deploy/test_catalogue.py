"""docs/metrics.md lists every metric the code defines, and no label can carry personal data."""

from __future__ import annotations

import inspect
from collections.abc import Callable

from prometheus_client import CollectorRegistry
from prometheus_client.metrics import MetricWrapperBase

from consumers.inbox.service import InboxMetrics
from sgx.ops import metrics
from tests.deploy.catalogue import catalogue

# closed-set labels only (docs/metrics.md, "The label rule")
ALLOWED_LABELS = {"type", "outcome", "reason", "urgency", "due", "topic", "partition", "party",
                  "kid", "team", "la", "job", "instance", "chain", "event",
                  "route", "status", "action", "method", "identifier", "stage"}  # fmt: skip


def _defined() -> list[MetricWrapperBase]:
    """Every metric of every *Metrics class in sgx.ops.metrics (each on a fresh registry)."""
    found: list[MetricWrapperBase] = []
    for name, cls in inspect.getmembers(metrics, inspect.isclass):
        if name.endswith("Metrics") and cls.__module__ == metrics.__name__:
            factory: Callable[[CollectorRegistry], object] = cls
            instance = factory(CollectorRegistry())
            found += [m for m in vars(instance).values() if isinstance(m, MetricWrapperBase)]
    inbox = InboxMetrics(CollectorRegistry())
    return found + [m for m in vars(inbox).values() if isinstance(m, MetricWrapperBase)]


def test_every_defined_metric_is_catalogued_with_its_type_and_labels() -> None:
    entries = catalogue()
    defined = _defined()
    assert len(defined) >= 10
    for metric in defined:
        kind, labels = metric._type, set(metric._labelnames)
        name = f"{metric._name}_total" if kind == "counter" else metric._name
        assert name in entries, f"{name} is missing from docs/metrics.md"
        assert entries[name].type == kind, name
        assert labels == set(entries[name].labels), f"{name}: labels {labels} as catalogued"


def test_catalogued_labels_are_closed_sets_only() -> None:
    for entry in catalogue().values():
        assert entry.labels <= ALLOWED_LABELS, entry.name


def test_the_catalogue_states_the_no_personal_data_rule() -> None:
    from tests.deploy.catalogue import CATALOGUE

    text = CATALOGUE.read_text(encoding="utf-8")
    assert "**No label carries personal data.**" in text
