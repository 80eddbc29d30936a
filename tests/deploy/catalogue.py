"""The metrics catalogue (docs/metrics.md) and the metric names a PromQL expression uses."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CATALOGUE = REPO / "docs" / "metrics.md"
PROMTOOL = "promtool"

_ROW = re.compile(r"^\| `(?P<name>[a-z_:][a-z0-9_:]*)` \| (?P<type>\w+) \| (?P<labels>[^|]*)\|")
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
_MATCHERS = re.compile(r"\{[^}]*\}")
_RANGE = re.compile(r"\[[^\]]*\]")
_GROUPING = re.compile(
    r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", re.IGNORECASE
)
_IDENT = re.compile(r"(?<![\w.:])([a-zA-Z_:][a-zA-Z0-9_:]*)(?![\w:])(?!\s*\()")
_KEYWORDS = {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring",
             "group_left", "group_right", "inf", "nan", "atan2"}  # fmt: skip
_HISTOGRAM_SERIES = ("_bucket", "_sum", "_count")


@dataclass(frozen=True)
class Entry:
    name: str
    type: str
    labels: frozenset[str]


def catalogue() -> dict[str, Entry]:
    """Every metric of docs/metrics.md's table, by name."""
    entries = {}
    for line in CATALOGUE.read_text(encoding="utf-8").splitlines():
        match = _ROW.match(line)
        if match:
            labels = frozenset(re.findall(r"`(\w+)`", match["labels"]))
            entries[match["name"]] = Entry(match["name"], match["type"], labels)
    return entries


def series_names(entries: dict[str, Entry]) -> set[str]:
    """Every series name a catalogued metric exports (histograms: _bucket, _sum, _count)."""
    names = set()
    for entry in entries.values():
        names.add(entry.name)
        if entry.type == "histogram":
            names.update(entry.name + suffix for suffix in _HISTOGRAM_SERIES)
    return names


def metric_names(expr: str) -> set[str]:
    """The metric names an expression selects (syntax is checked by promtool elsewhere)."""
    text = _STRING.sub('""', expr)
    text = _MATCHERS.sub(" ", text)
    text = _RANGE.sub(" ", text)
    text = _GROUPING.sub(" ", text)
    text = re.sub(r"\b\d+(\.\d+)?(e[+-]?\d+)?\b", " ", text)
    return {name for name in _IDENT.findall(text) if name.lower() not in _KEYWORDS}
