"""The Grafana dashboard: valid JSON, valid PromQL (promtool), catalogued metrics only."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from tests.deploy.catalogue import REPO, catalogue, metric_names, series_names
from tests.deploy.test_prometheus import promtool

GRAFANA = REPO / "deploy" / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "exchange.json"


def _dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return data


def _exprs() -> list[tuple[str, str]]:
    return [
        (panel["title"], target["expr"])
        for panel in _dashboard()["panels"]
        for target in panel.get("targets", [])
    ]


def test_the_dashboard_parses_and_every_panel_queries_the_provisioned_datasource() -> None:
    dashboard = _dashboard()
    assert dashboard["uid"] == "sgx-exchange"
    datasources = yaml.safe_load(
        (GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text(encoding="utf-8")
    )["datasources"]
    uids = {ds["uid"] for ds in datasources}
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    assert len(panels) >= 15
    assert {p["datasource"]["uid"] for p in panels} <= uids
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])


def test_every_expression_names_only_catalogued_metrics() -> None:
    known = series_names(catalogue())
    used: set[str] = set()
    for title, expr in _exprs():
        names = metric_names(expr)
        assert names, f"{title}: no metric in {expr!r}"
        assert names <= known, f"{title}: {names - known} not in docs/metrics.md"
        used |= names
    # the dashboard shows the deadlines, the queues, the flow and the trust signals
    for must in (
        "sgx_encompass_undelivered_before_school_day",
        "sgx_disclosure_requests_open",
        "sgx_queue_oldest_unread_age_seconds",
        "sgx_consumer_lag",
        "sgx_end_to_end_latency_seconds_bucket",
        "sgx_key_expiry_timestamp_seconds",
    ):
        assert must in used


def test_every_expression_is_valid_promql(tmp_path: Path) -> None:
    rules = [
        {"record": f"dashboard:expr_{i}", "expr": expr} for i, (_, expr) in enumerate(_exprs())
    ]
    path = tmp_path / "dashboard.rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = promtool("check", "rules", path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dashboard_provisioning_points_at_the_mounted_dashboards() -> None:
    provider = yaml.safe_load(
        (GRAFANA / "provisioning" / "dashboards" / "exchange.yml").read_text(encoding="utf-8")
    )["providers"][0]
    compose = (REPO / "deploy" / "compose" / "compose.yaml").read_text(encoding="utf-8")
    assert f"../grafana/dashboards:{provider['options']['path']}:ro" in compose
