"""``safeguard schemas check``: is every published type compatible with its history?"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from safeguard.cli_common import exchange_errors
from sgx.settings import ExchangeSettings
from sgx.wire import compatibility


@click.group()
def schemas() -> None:
    """The exchange's Avro schemas and their published versions."""


@schemas.command("check")
@click.option(
    "--schemas",
    "schema_dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="schema folder (default: SGX_SCHEMA_DIR, the one the services load)",
)
@click.option("--lock", is_flag=True, help="then record the current fingerprints as published")
@exchange_errors
def schemas_check(schema_dir: Path | None, lock: bool) -> None:
    """Check each published type against its earlier versions in the direction its readers
    need (backward-transitive, or full-transitive); exit 1 naming what breaks."""
    folder = schema_dir or ExchangeSettings().schema_dir
    reports = compatibility.check(folder)
    failed = 0
    for report in reports:
        versions = ", ".join(v.rsplit(".", 2)[-2] for v in report.versions) or "no earlier version"
        short = report.name.removeprefix("org.safeguarding.exchange.")
        real = [p for p in report.problems if not (lock and _lockable(p.problem))]
        verdict = "ok" if not real else "INCOMPATIBLE"
        click.echo(f"{verdict:<12} {short:<20} {report.direction:<20} against {versions}")
        for problem in real:
            click.echo(f"    {problem.version}: {problem.problem}")
        failed += bool(real)
    if failed:
        click.echo(f"{failed} type(s) would break a reader: fix them before publishing")
        sys.exit(1)
    if lock:
        compatibility.lock(folder)
        click.echo(
            f"recorded the published fingerprints in {folder / compatibility.PUBLISHED_FILE}"
        )


def _lockable(problem: str) -> bool:
    """A problem ``--lock`` resolves: a new type's fingerprint, or a new version's whose
    earlier one is kept in history."""
    return "record the new" in problem or problem.startswith("not listed")
