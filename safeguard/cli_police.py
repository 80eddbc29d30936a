"""The police feed's commands: a force's exports in, and the exchange's open requests.

``safeguard producer police encompass FILE`` and ``safeguard producer police disclosure
FILE`` (group :data:`police_feed`) map a force system's JSON export
(:mod:`producers.police`: Operation Encompass notifications, or 2013 / 2024 Protocol
disclosures answering a local authority's request) to police notifications and push every
good one through the force's outbox (:func:`safeguard.cli_common.outbox_submit`). Each bad
object is reported by its index and field path (``[1].incident.child_present``) and the
rest still go; exit status 1 then. The gateway routes an Operation Encompass notification
to children's social care and to the key adult of the school named in it, and attaches
police material's confidentiality restriction to everything a force sends.

``safeguard police requests`` (group :data:`police`) lists the 2013 / 2024 Protocol
disclosure requests the police have not answered yet, overdue first, with the days left to
the 14-day deadline. ``--now`` moves the clock (for testing and for "what will be overdue
on Friday").
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import click

from gateway.requests import OpenRequest
from producers.police import ingest_export
from safeguard.cli_common import (
    agency_option,
    async_command,
    home_option,
    outbox_submit,
    runtime,
    send_timeout_option,
)
from safeguard.parties import POLICE

_COLUMNS = ("REFERENCE", "PROTOCOL", "LA", "POLICE", "REQUESTED", "DUE", "DAYS LEFT", "STATUS")


def _parse_now(value: str | None) -> datetime:
    if value is None:
        return datetime.now(UTC)
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter("must be an ISO 8601 timestamp", param_hint="--now") from None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _minute(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M")


def _row(request: OpenRequest) -> tuple[str, ...]:
    return (
        request.request_reference,
        request.protocol.removeprefix("PROTOCOL_"),
        request.la_id,
        request.police_id,
        _minute(request.requested_at),
        _minute(request.due_at),
        str(request.days_remaining),
        "OVERDUE" if request.overdue else "open",
    )


def render(requests: list[OpenRequest]) -> str:
    """The requests as an aligned text table (times in UTC)."""
    rows = [_COLUMNS, *(_row(r) for r in requests)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(_COLUMNS))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]
    return "\n".join(line.rstrip() for line in lines)


async def _requests(home: Path | None, la: str | None, now: datetime) -> list[OpenRequest]:
    async with await runtime(home).disclosure_requests() as store:
        return await store.open_requests(now, la_id=la)


@click.group()
def police() -> None:
    """2013 / 2024 Protocol disclosure requests to the police: open ones, 14-day deadlines."""


@police.command("requests")
@home_option
@click.option("--la", default=None, help="only this local authority's requests")
@click.option(
    "--now", default=None, help="ISO 8601 time to judge deadlines at (default: now; naive = UTC)"
)
@async_command
async def requests(home: Path | None, la: str | None, now: str | None) -> None:
    """Open disclosure requests with days left to the 14-day deadline, overdue first."""
    moment = _parse_now(now)
    found = await _requests(home, la, moment)
    if not found:
        click.echo("no open disclosure requests")
        return
    click.echo(render(found))
    overdue = sum(r.overdue for r in found)
    click.echo(f"{len(found)} open, {overdue} overdue (as of {_minute(moment)} UTC)")


# -- the feed: a force's exports into its outbox --------------------------------------------


@click.group("police")
def police_feed() -> None:
    """Police feed: a force's Operation Encompass and Protocol disclosure exports."""


def _feed_command(command: str, summary: str) -> None:
    @police_feed.command(command, help=summary)
    @click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
    @home_option
    @agency_option(default=POLICE)
    @send_timeout_option
    @async_command
    async def push_export(file: Path, home: Path | None, agency: str, send_timeout: float) -> int:
        rt = runtime(home)
        async with outbox_submit(rt, agency, timeout=send_timeout) as submit:
            report = await ingest_export(file, command, agency, submit, rt.contract())
            for line in report.lines():
                click.echo(line)
        return 1 if report.errors else 0


_feed_command(
    "encompass",
    "Push the Operation Encompass notifications in the force export FILE (JSON): to "
    "children's social care and the key adult of the child's school.",
)
_feed_command(
    "disclosure",
    "Push the 2013 / 2024 Protocol disclosures in the force export FILE (JSON), each "
    "answering a local authority's request (with what was redacted and why).",
)
