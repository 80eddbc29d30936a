"""Schema evolution rules: which earlier versions each published type must stay compatible
with, in which direction, and a check that says exactly what breaks.

A type is *published* when it crosses the broker (single-object encoded, or the envelope's
own framing). Its readers decide the direction:

* **backward-transitive** — the current reader reads every earlier writer: for types only
  the gateway reads (``AllocationUpdate``, ``ShareRequest``), because the gateway is
  upgraded before the parties that write to it, and an agency that has not upgraded must
  still be understood.
* **full-transitive** — also every earlier reader reads the current writer: for every type
  a party of another release may read. The envelope (every party opens it), ``Delivery``
  and ``ReceiptBatch``, ``ShareDecision`` and ``OpenCaseList`` (the gateway writes them
  for agencies and LAs that upgrade on their own timetable), and the notification types
  and ``DisclosureRequest``: agencies write them (backward), and they also travel inside
  deliveries to consumers of any release (forward).

Earlier versions are the files in ``schemas/history/``; ``schemas/published.json`` records
each published type's current fingerprint, so a change to a type with no history yet is
caught too: its previous version must be added to history before the change ships. The
checker is the Apache ``avro`` package's (:func:`sgx.wire.avro.resolution_problem`); each
problem names the type, the version and the field.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from fastavro.schema import load_schema

from sgx.errors import ConfigError
from sgx.wire.avro import HISTORY_DIR, SchemaSet, fingerprint_of, resolution_problem

Direction = Literal["backward-transitive", "full-transitive"]
PUBLISHED_FILE = "published.json"
_NS = "org.safeguarding.exchange."
BACKWARD_ONLY = frozenset({_NS + "AllocationUpdate", _NS + "ShareRequest", _NS + "ConsentAnswer"})
FULL = frozenset(
    {
        _NS + "AttendanceUpdate",
        _NS + "HealthUpdate",
        _NS + "PoliceNotification",
        _NS + "Referral",
        _NS + "ReferralResponse",  # inside the signed response: the LA writes, the referrer reads
        _NS + "SignedReferralResponse",
        _NS + "DisclosureRequest",
        _NS + "Delivery",
        _NS + "ReceiptBatch",
        _NS + "ShareDecision",
        _NS + "ConsentRequest",  # the LA writes it, the gateway forwards it to the author
        _NS + "ConsentOutcome",
        _NS + "InformationRequest",  # the LA writes it, the gateway forwards it to the agency
        _NS + "InformationAnswer",  # the agency writes it, the gateway forwards it to the LA
        _NS + "InformationStatus",
        _NS + "OpenCaseList",
        _NS + "wire.Envelope",
        _NS + "wire.EnvelopeHeader",
        _NS + "wire.EnvelopeBatch",
        _NS + "wire.DataKeyBlock",
    }
)
PUBLISHED = BACKWARD_ONLY | FULL


def direction(name: str) -> Direction:
    return "backward-transitive" if name in BACKWARD_ONLY else "full-transitive"


@dataclass(frozen=True, slots=True)
class Problem:
    type_name: str
    version: str  # the history file, or "published.json"
    problem: str

    def __str__(self) -> str:
        return f"{self.type_name} against {self.version}: {self.problem}"


@dataclass(frozen=True, slots=True)
class TypeReport:
    name: str
    direction: Direction
    versions: list[str]  # history files checked
    problems: list[Problem]


def _history(schema_dir: Path) -> dict[str, list[tuple[str, Any]]]:
    found: dict[str, list[tuple[str, Any]]] = {}
    for path in sorted((schema_dir / HISTORY_DIR).glob("*.avsc")):
        name = path.name.rsplit(".v", 1)[0]
        try:
            found.setdefault(name, []).append((path.name, load_schema(str(path))))
        except (OSError, ValueError, KeyError) as exc:
            raise ConfigError(f"cannot load history schema {path}: {exc}") from exc
    return found


def published_fingerprints(schema_dir: Path) -> dict[str, str]:
    path = schema_dir / PUBLISHED_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from exc
    if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
        raise ConfigError(f"{path}: expected an object of type name to fingerprint (hex)")
    return data


def check(schema_dir: Path) -> list[TypeReport]:
    """Check every published type in ``schema_dir`` against its history and lock file."""
    schemas = SchemaSet(schema_dir)
    for name in PUBLISHED:
        schemas.parsed(name)
    history = _history(schema_dir)
    locked = published_fingerprints(schema_dir)
    reports = []
    for name in sorted(PUBLISHED):
        current = schemas.parsed(name)
        rule = direction(name)
        problems = []
        versions = history.get(name, [])
        for version, earlier in versions:
            if (found := resolution_problem(earlier, current)) is not None:
                problems.append(
                    Problem(name, version, f"the current reader cannot read it: {found}")
                )
            if (
                rule == "full-transitive"
                and (found := resolution_problem(current, earlier)) is not None
            ):
                problems.append(
                    Problem(name, version, f"its reader cannot read the current: {found}")
                )
        problems += _lock_problems(name, schemas.fingerprint(name).hex(), locked, versions)
        reports.append(TypeReport(name, rule, [v for v, _ in versions], problems))
    return reports


def _lock_problems(
    name: str, current: str, locked: dict[str, str], versions: list[tuple[str, Any]]
) -> list[Problem]:
    published = locked.get(name)
    if published is None:
        return [
            Problem(
                name,
                PUBLISHED_FILE,
                f"not listed: add its fingerprint {current} (`safeguard schemas check --lock`)",
            )
        ]
    if published == current:
        return []
    kept = {fingerprint_of(schema).hex() for _, schema in versions}
    if published in kept:
        return [
            Problem(
                name,
                PUBLISHED_FILE,
                f"changed from {published} to {current}, and "
                "the earlier version is in history: record the new fingerprint "
                "(`safeguard schemas check --lock`)",
            )
        ]
    return [
        Problem(
            name,
            PUBLISHED_FILE,
            f"changed from {published} to {current} without "
            f"keeping the published version: add it to schemas/{HISTORY_DIR}/ as the "
            "next v<N> first (schemas/history/README.md)",
        )
    ]


def lock(schema_dir: Path) -> dict[str, str]:
    """Record every published type's current fingerprint in ``published.json``."""
    schemas = SchemaSet(schema_dir)
    fingerprints = {name: schemas.fingerprint(name).hex() for name in sorted(PUBLISHED)}
    path = schema_dir / PUBLISHED_FILE
    path.write_text(json.dumps(fingerprints, indent=2) + "\n", encoding="utf-8")
    return fingerprints
