"""``safeguard health``: the health feed's command line.

``safeguard producer health ingest FILE`` maps a FHIR R4 Bundle (JSON) to health updates
and pushes every good entry through the NHS body's outbox (:func:`cli_common.outbox_submit`:
kept durably, then relayed); it prints one line per pushed notification and one per problem
(entry index, resource, FHIR path). Exit status: 0 when everything was pushed, 1 when
some entries were refused (the rest were still pushed), 2 when the exchange itself failed
(settings, trust directory, store). A broker that cannot be reached is not a failure: the
notifications stay in the outbox and a warning says how many.

The agency's defaults (author, consent and lawful basis, risk level...) come from a TOML
file given with ``--defaults`` holding :class:`producers.health.HealthFeedDefaults` keys;
without one, the agency's name comes from the trust directory and every other default
is the class's.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import click
from pydantic import ValidationError

from producers.health import HealthFeedDefaults, HealthIngestReport, ingest_bundle
from safeguard.cli_common import (
    agency_option,
    async_command,
    home_option,
    outbox_submit,
    runtime,
    send_timeout_option,
)
from safeguard.parties import HEALTH
from safeguard.runtime import Runtime
from sgx.errors import ConfigError


def load_defaults(path: Path | None, agency_id: str, rt: Runtime) -> HealthFeedDefaults:
    """The agency's defaults from a TOML file, else from the trust directory."""
    values: dict[str, Any] = {"agency_id": agency_id}
    if path is not None:
        try:
            values |= tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"{path}: cannot read the health feed defaults: {exc}") from exc
    if values["agency_id"] != agency_id:
        raise ConfigError(f"{path}: agency_id is {values['agency_id']}, not {agency_id}")
    if "agency_name" not in values:
        values["agency_name"] = rt.trust().party(agency_id).name
    try:
        return HealthFeedDefaults.model_validate(values)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"{path}: {where}: {first['msg']}") from exc


def print_report(report: HealthIngestReport) -> None:
    click.echo(f"pushed {len(report.pushed)} health update(s), {len(report.errors)} error(s)")
    for pushed in report.pushed:
        click.echo(f"pushed  entry[{pushed.index}] {pushed.resource}  {pushed.notification_id}")
    for error in report.errors:
        click.echo(f"error   {error}")


@click.group("health")
def health() -> None:
    """The health feed: FHIR R4 bundles into health updates."""


@health.command("ingest")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@home_option
@agency_option(default=HEALTH)
@click.option(
    "--defaults",
    "defaults_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="TOML file of the agency's defaults (author, consent, lawful basis, ...)",
)
@send_timeout_option
@async_command
async def ingest(
    file: Path, home: Path | None, agency: str, defaults_file: Path | None, send_timeout: float
) -> int:
    """Map the FHIR Bundle FILE to health updates and push every good entry."""
    rt = runtime(home)
    defaults = load_defaults(defaults_file, agency, rt)
    async with outbox_submit(rt, agency, timeout=send_timeout) as submit:
        report = await ingest_bundle(file, submit, defaults, contract=rt.contract())
        print_report(report)
    return 1 if report.errors else 0
