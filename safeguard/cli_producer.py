"""``safeguard producer``: an agency's outbox, its relay, and the gateway's receipts.

    safeguard producer relay    --home .sgx --agency school-hillside      # until SIGTERM/SIGINT
    safeguard producer receipts --home .sgx --agency school-hillside [--pending | --all]

The feeds (``producer school``, ``producer health``, ``producer police``) are registered
under this group by :mod:`safeguard.cli`. Settings, errors and exit status are those of
:mod:`safeguard.cli_common`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import click
from prometheus_client import CollectorRegistry

from producers.outbox import OutboxEntry
from safeguard.cli_common import agency_option, async_command, home_option, runtime, until_signalled
from safeguard.monitoring import producer_monitoring
from safeguard.outbox_wiring import open_outbox_store, serve_outbox
from safeguard.runtime import create_topics, serving_metrics
from sgx.wire import contract as c


@click.group()
def producer() -> None:
    """An agency's producer: its outbox, relay and receipts."""


@producer.command("relay")
@home_option
@agency_option()
@async_command
async def relay(home: Path | None, agency: str) -> None:
    """Send the outbox to the broker and record receipts, until SIGTERM/SIGINT.

    Serves the outbox gauges on /metrics (SGX_METRICS_PORT; -1 = off).
    """
    rt = runtime(home)
    await create_topics(rt)
    registry = CollectorRegistry()
    async with (
        await open_outbox_store(rt, agency) as store,
        producer_monitoring(rt, {agency: registry}, {agency: store}) as readiness,
        serving_metrics(rt, registry, readiness),
    ):
        await until_signalled(
            lambda stop: serve_outbox(rt, agency, stop, registry=registry, store=store)
        )


@producer.command("receipts")
@home_option
@agency_option()
@click.option(
    "--pending/--all",
    "pending_only",
    default=False,
    help="only entries with no receipt yet (default: every entry)",
)
@async_command
async def receipts(home: Path | None, agency: str, pending_only: bool) -> None:
    """List the outbox: each notification's status and the gateway's receipt."""
    async with await open_outbox_store(runtime(home), agency) as store:
        entries = await store.entries(agency, awaiting_only=pending_only)
    for line in receipts_table(entries):
        click.echo(line)


_COLUMNS = ("MESSAGE ID", "TYPE", "CREATED (UTC)", "STATUS", "RECEIPT")
_WIDTHS = (36, 19, 19, 11)


def receipts_table(entries: Sequence[OutboxEntry]) -> list[str]:
    """The outbox as a table, one line per entry, with a count at the end."""
    lines = [_row(_COLUMNS)]
    lines += [_row(_cells(entry)) for entry in entries]
    waiting = sum(1 for e in entries if e.receipt_outcome is None)
    lines.append(f"{len(entries)} entr{'y' if len(entries) == 1 else 'ies'}, {waiting} awaiting")
    return lines


def _row(cells: Sequence[str]) -> str:
    padded = [cell.ljust(width) for cell, width in zip(cells, _WIDTHS, strict=False)]
    return "  ".join([*padded, *cells[len(_WIDTHS) :]]).rstrip()


def _cells(entry: OutboxEntry) -> tuple[str, ...]:
    return (
        str(entry.message_id),
        c.SHORT_NAMES.get(entry.schema_name, entry.schema_name),
        _when(entry.created_at),
        entry.status,
        _receipt(entry),
    )


def _receipt(entry: OutboxEntry) -> str:
    if entry.receipt_outcome is None:
        return "-"
    text = f"{entry.receipt_outcome} {entry.receipt_reason}"
    return f"{text}: {entry.receipt_detail}" if entry.receipt_detail else text


def _when(at: datetime) -> str:
    return at.strftime("%Y-%m-%d %H:%M:%S")
