"""Schema evolution: the repository's schemas pass `safeguard schemas check`, and an
incompatible edit is refused with the type, the version and the field named."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from safeguard.cli import main
from sgx.wire import compatibility

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"
NS = "org.safeguarding.exchange."


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return Path(shutil.copytree(SCHEMAS, tmp_path / "schemas"))


def edit(folder: Path, name: str, change: Any) -> None:
    path = folder / f"{NS}{name}.avsc"
    schema = json.loads(path.read_text())
    change(schema["fields"])
    path.write_text(json.dumps(schema, indent=2))


def check(folder: Path) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["schemas", "check", "--schemas", str(folder)])
    return result.exit_code, result.output


def test_the_repositorys_schemas_are_compatible_with_every_published_version() -> None:
    code, output = check(SCHEMAS)
    assert code == 0, output
    assert "ok           AttendanceUpdate     full-transitive      against v1, v2" in output
    assert "ok           AllocationUpdate     backward-transitive  against v1" in output


def test_a_new_field_without_a_default_breaks_earlier_writers(folder: Path) -> None:
    edit(
        folder,
        "AttendanceUpdate",
        lambda f: f.append({"name": "interpreter_needed", "type": "boolean"}),
    )
    code, output = check(folder)
    assert code == 1
    assert "INCOMPATIBLE AttendanceUpdate" in output
    assert "AttendanceUpdate.v2.avsc: the current reader cannot read it" in output
    assert "interpreter_needed" in output


def test_removing_a_field_breaks_earlier_readers_of_a_full_transitive_type(folder: Path) -> None:
    edit(folder, "Delivery", lambda f: f.remove(next(x for x in f if x["name"] == "withheld")))
    code, output = check(folder)
    assert code == 1
    assert "INCOMPATIBLE Delivery" in output
    assert "Delivery.v2.avsc: its reader cannot read the current" in output
    assert "withheld" in output


def test_a_published_type_changed_without_keeping_its_version_is_refused(folder: Path) -> None:
    note = {"name": "note", "type": ["null", "string"], "default": None}
    edit(folder, "ShareDecision", lambda f: f.append(note))
    code, output = check(folder)
    assert code == 1
    assert "without keeping the published version" in output
    assert "ShareDecision" in output


def test_a_compatible_change_with_its_history_kept_is_locked_in(folder: Path) -> None:
    reports = {r.name: r for r in compatibility.check(folder)}
    published = compatibility.published_fingerprints(folder)
    assert all(not r.problems for r in reports.values())
    assert published[NS + "AttendanceUpdate"] == "bfe210d02da99e90"
    (folder / compatibility.PUBLISHED_FILE).write_text(
        json.dumps(published | {NS + "AttendanceUpdate": "d655a6c2246ab9e8"})
    )  # as before this release: v2 published, now in history
    code, output = check(folder)
    assert code == 1
    assert "the earlier version is in history: record the new fingerprint" in output
    result = CliRunner().invoke(main, ["schemas", "check", "--schemas", str(folder), "--lock"])
    assert result.exit_code == 0, result.output
    assert (
        compatibility.published_fingerprints(folder)[NS + "AttendanceUpdate"] == "bfe210d02da99e90"
    )


def test_a_new_type_is_refused_until_locked_and_then_passes(folder: Path) -> None:
    published = compatibility.published_fingerprints(folder)
    del published[NS + "ConsentOutcome"]  # as before this release added it
    (folder / compatibility.PUBLISHED_FILE).write_text(json.dumps(published))
    code, output = check(folder)
    assert code == 1
    assert "INCOMPATIBLE ConsentOutcome" in output
    assert "not listed: add its fingerprint" in output
    result = CliRunner().invoke(main, ["schemas", "check", "--schemas", str(folder), "--lock"])
    assert result.exit_code == 0, result.output
    assert NS + "ConsentOutcome" in compatibility.published_fingerprints(folder)
    assert check(folder)[0] == 0
