"""``safeguard quarantine [list | show ID | replay]``: what was kept, and judging it again."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from safeguard.cli_common import async_command, home_option, runtime
from safeguard.quarantine_ops import ReplayReport, replay_consumer, replay_gateway
from safeguard.runtime import Runtime
from sgx.kafka.quarantine_replay import Held, QuarantineQuery, ReplayLog


def _when(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise click.BadParameter(f"{value!r} is not an ISO-8601 date or time") from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _filters(fn: Any) -> Any:
    for option in reversed(
        [
            home_option,
            click.option(
                "--consumer",
                "la",
                default=None,
                help="this LA's consumer quarantine (default: the gateway's)",
            ),
            click.option("--id", "ids", type=int, multiple=True, help="quarantine id (repeat)"),
            click.option("--reason", default=None, help="e.g. unknown_key_id, unknown_schema"),
            click.option("--sender", default=None, help="the sender the envelope claims"),
            click.option("--since", default=None, help="quarantined at or after (ISO-8601)"),
            click.option("--until", default=None, help="quarantined before (ISO-8601)"),
        ]
    ):
        fn = option(fn)
    return fn


def _query(
    ids: tuple[int, ...],
    reason: str | None,
    sender: str | None,
    since: str | None,
    until: str | None,
) -> QuarantineQuery:
    return QuarantineQuery(ids, reason, sender, _when(since), _when(until))


async def _log(rt: Runtime, la: str | None) -> tuple[ReplayLog, Any]:
    store: Any = await (rt.queue_store(la) if la else rt.gateway_store())
    return ReplayLog(store.engine, store.quarantine_table, schema=store.schema), store


def _line(h: Held) -> str:
    q = h.entry
    sender = f" from {q.sender_claimed}" if q.sender_claimed else ""
    replays = f" [replayed {len(h.replays)}x: {h.replays[-1]['result']}]" if h.replays else ""
    return (
        f"#{h.quarantine_id:<5} {q.quarantined_at:%Y-%m-%d %H:%M:%S} {q.reason:<22} "
        f"{q.topic}/{q.partition}/{q.offset}{sender}{replays}"
    )


@click.group(invoke_without_command=True)
@home_option
@click.option("--la", default="la-camden", show_default=True, help="also this LA's consumer")
@click.pass_context
def quarantine(ctx: click.Context, home: Path | None, la: str) -> None:
    """What the gateway and consumers quarantined, with reasons; replay after a fix.

    With no subcommand: the gateway's quarantine and LA's consumer's, as a summary."""
    if ctx.invoked_subcommand is None:
        ctx.invoke(_summary, home=home, la=la)


@async_command
async def _summary(home: Path | None, la: str) -> None:
    rt = runtime(home)
    for who, where in (("gateway", None), (f"{la} consumer", la)):
        log, store = await _log(rt, where)
        try:
            held = await log.held(QuarantineQuery())
        finally:
            await store.close()
        click.echo(f"{who} quarantine: {len(held)} record(s)")
        for h in held:
            click.echo(f"  {_line(h)} — {h.entry.detail}")


@quarantine.command("list")
@_filters
@async_command
async def quarantine_list(
    home: Path | None,
    la: str | None,
    ids: tuple[int, ...],
    reason: str | None,
    sender: str | None,
    since: str | None,
    until: str | None,
) -> None:
    """List quarantined records (the gateway's, or an LA consumer's), oldest first."""
    log, store = await _log(runtime(home), la)
    try:
        held = await log.held(_query(ids, reason, sender, since, until))
    finally:
        await store.close()
    click.echo(f"{la + ' consumer' if la else 'gateway'} quarantine: {len(held)} record(s)")
    for h in held:
        click.echo(f"  {_line(h)}")


@quarantine.command("show")
@home_option
@click.option("--consumer", "la", default=None, help="this LA's consumer quarantine")
@click.argument("quarantine_id", type=int)
@async_command
async def quarantine_show(home: Path | None, la: str | None, quarantine_id: int) -> None:
    """One quarantined record: where it was read, why it was kept, and its replays."""
    log, store = await _log(runtime(home), la)
    try:
        h = await log.one(quarantine_id)
    finally:
        await store.close()
    q = h.entry
    click.echo(_line(h))
    click.echo(f"  read on {q.topic} partition {q.partition} offset {q.offset} item {q.item}")
    click.echo(f"  message id (claimed) {q.message_id or '-'}, {len(q.raw)} bytes kept")
    click.echo(f"  why: {q.reason} — {q.detail}")
    for r in h.replays:
        why = f" ({r['reason']})" if r["reason"] else ""
        click.echo(
            f"  replay {r['replayed_at']:%Y-%m-%d %H:%M:%S} by {r['replayed_by']}: "
            f"{r['result']}{why} — {r['detail']}"
        )


@quarantine.command("replay")
@_filters
@click.option("--by", required=True, help="who replays (kept in the replay log)")
@click.option(
    "--wait",
    "wait_s",
    type=float,
    default=30.0,
    show_default=True,
    help="seconds to wait for the gateway's judgement",
)
@async_command
async def quarantine_replay(
    home: Path | None,
    la: str | None,
    ids: tuple[int, ...],
    reason: str | None,
    sender: str | None,
    since: str | None,
    until: str | None,
    by: str,
    wait_s: float,
) -> int:
    """Judge the chosen quarantined records again (after adding a key, deploying a schema,
    loading an allocation); what passes is delivered once, the rest stays quarantined."""
    rt = runtime(home)
    query = _query(ids, reason, sender, since, until)
    if la:
        report = await replay_consumer(rt, la, query, by=by)
    else:
        report = await replay_gateway(rt, query, by=by, wait_s=wait_s)
    return _say(report)


def _say(report: ReplayReport) -> int:
    counts: dict[str, int] = {}
    for qid, result, why, detail in report.outcomes:
        counts[result] = counts.get(result, 0) + 1
        click.echo(f"  #{qid:<5} {result}{f' ({why})' if why else ''} — {detail}")
    for qid, why in report.skipped:
        click.echo(f"  #{qid:<5} not replayed: {why}")
    summary = ", ".join(f"{n} {result.replace('_', ' ')}" for result, n in sorted(counts.items()))
    click.echo(
        f"replayed {len(report.outcomes)}: {summary or 'nothing'}"
        f"{f'; {len(report.skipped)} skipped' if report.skipped else ''}"
    )
    return 1 if counts.get("still_quarantined") else 0
