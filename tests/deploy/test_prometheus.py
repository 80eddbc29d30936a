"""Prometheus config and alert rules, checked and unit-tested by the real promtool.

promtool comes from Debian's prometheus package (scripts/ensure-tools.sh installs it);
without it these tests fail, they never skip.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

from tests.deploy.catalogue import PROMTOOL, REPO, catalogue, metric_names, series_names

PROMETHEUS = REPO / "deploy" / "prometheus"
RULE_FILES = sorted((PROMETHEUS / "rules").glob("*.yml"))
TEST_FILES = sorted((PROMETHEUS / "tests").glob("*.yml"))


def promtool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    binary = shutil.which(PROMTOOL)
    assert binary is not None, "promtool is missing: run scripts/ensure-tools.sh"
    return subprocess.run([binary, *map(str, args)], capture_output=True, text=True, timeout=120)


def _alerts() -> list[dict[str, Any]]:
    rules = []
    for path in RULE_FILES:
        for group in yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]:
            rules += [rule for rule in group["rules"] if "alert" in rule]
    return rules


def test_scrape_config_and_rules_pass_promtool_check() -> None:
    result = promtool("check", "config", PROMETHEUS / "prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_rule_passes_its_promtool_unit_tests() -> None:
    assert TEST_FILES, "no promtool rule tests in deploy/prometheus/tests"
    result = promtool("test", "rules", *TEST_FILES)
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_unit_tests_really_compare_alerts(tmp_path: Path) -> None:
    # a wrong expectation must fail: the green run above is not a no-op
    broken = tmp_path / "broken.yml"
    text = (PROMETHEUS / "tests" / "exchange.test.yml").read_text(encoding="utf-8")
    broken.write_text(
        text.replace("../rules/", f"{PROMETHEUS}/rules/").replace(
            "severity: critical", "severity: x"
        )
    )
    assert promtool("test", "rules", broken).returncode != 0


def test_every_rule_has_a_firing_and_a_not_firing_case() -> None:
    firing: set[str] = set()
    quiet: set[str] = set()
    for path in TEST_FILES:
        for case in yaml.safe_load(path.read_text(encoding="utf-8"))["tests"]:
            for check in case.get("alert_rule_test", []):
                (firing if check.get("exp_alerts") else quiet).add(check["alertname"])
    names = {rule["alert"] for rule in _alerts()}
    assert names, "no alert rules found"
    assert names - firing == set(), "rules never tested firing"
    assert names - quiet == set(), "rules never tested not firing"
    expected = {
        "SgxServiceDown", "SgxDeliveryStalled", "SgxQuarantineGrowing", "SgxConsumerLagHigh",
        "SgxEncompassDeadlineAtRisk", "SgxDisclosureDeadlineAtRisk", "SgxDisclosureOverdue",
        "SgxKeyNearExpiry", "SgxUrgentUnread", "SgxFamilyDecisionOverdue",
        "SgxReferralNotAcknowledged", "SgxReferralNotDecided",
    }  # fmt: skip
    assert expected <= names


def test_rules_use_only_catalogued_metrics_and_every_alert_has_severity() -> None:
    known = series_names(catalogue())
    for rule in _alerts():
        names = metric_names(rule["expr"])
        assert names, f"{rule['alert']}: no metric in {rule['expr']!r}"
        assert names <= known, f"{rule['alert']}: {names - known} not in docs/metrics.md"
        assert rule["labels"]["severity"] in {"warning", "critical"}, rule["alert"]
        assert {"summary", "description"} <= set(rule["annotations"]), rule["alert"]
