"""``safeguard family``: whether families were told of what their LA shared about them.

    safeguard family outstanding --la la-camden [--worker sw-amara | --team T | --mash]
    safeguard family record --la la-camden SHARE --told --when "2026-12-07 10:30" \\
        --told-by "Amara Osei" --how phone [--whom "Amira's mother"] [--decided-by NAME]
    safeguard family record --la la-camden SHARE --not-told --exception risk_to_child \\
        --reason "..." --decided-by "Tess Jones, team manager"
    safeguard family history --la la-camden SHARE
    safeguard family summary --la la-camden ITEM      (the family-facing summary, to print)

``safeguard queue share`` takes the same options (:func:`family_options`), so the decision
can be recorded with the share; without them it says how to record it later. A time
without a zone is the LA's local time (``SGX_SCHOOL_TIMEZONE``). Settings, errors and exit
status are those of :mod:`safeguard.cli_common`.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from consumers.inbox.family import Families
from consumers.inbox.family_store import DecisionRecord
from consumers.queue import QueueSelection
from safeguard.cli_common import async_command, home_option, la_option, named_options, runtime
from safeguard.families import families, operator
from sgx.domain.family import DisclosureKind, FamilyException, InformMethod

FC = TypeVar("FC", bound=Callable[..., Any])
METHODS = [m.value.lower() for m in InformMethod]
EXCEPTIONS = [e.value.lower() for e in FamilyException]
SHARE = DisclosureKind.ONWARD_SHARE
OPTION_OF = {  # a decision's field, as this command line names it
    "informed": "--told/--not-told", "informed_at": "--when", "informed_by": "--told-by",
    "method": "--how", "family_member": "--whom", "exception": "--exception",
    "reason": "--reason", "decided_by": "--decided-by",
}  # fmt: skip


def family_options(fn: FC) -> FC:
    """The family-informed decision's options (all optional here; ``record`` needs one of
    --told / --not-told)."""
    options = [
        click.option("--told/--not-told", "told", default=None, help="whether the family was told"),
        click.option("--when", "informed_at", default=None, help="when they were told"),
        click.option("--told-by", "informed_by", default=None, help="who told them"),
        click.option("--how", "method", type=click.Choice(METHODS), default=None),
        click.option("--whom", "family_member", default=None, help="who in the family"),
        click.option("--exception", type=click.Choice(EXCEPTIONS), default=None),
        click.option("--reason", default=None, help="why the exception applies (or a note)"),
        click.option("--decided-by", default=None, help="who decided (default: --by)"),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def fields_of(told: bool | None, zone: Any, **given: str | None) -> dict[str, Any] | None:
    """The decision the options state (None: none given)."""
    if told is None:
        named = [f"--{k.replace('_', '-')}" for k, v in given.items() if v is not None]
        if named:
            raise click.UsageError(f"{', '.join(named)} need --told or --not-told")
        return None
    fields: dict[str, Any] = {"informed": told}
    fields |= {k: v for k, v in given.items() if v is not None}
    if told and "decided_by" not in fields and "informed_by" in fields:
        fields["decided_by"] = fields["informed_by"]  # who told them decided to
    when = fields.get("informed_at")
    if when is not None:
        from datetime import datetime

        try:
            moment = datetime.fromisoformat(when)
        except ValueError:
            moment = None  # decision_from names the field
        if moment is not None and moment.tzinfo is None:
            fields["informed_at"] = moment.replace(tzinfo=zone).isoformat()
    return fields


def say_decision(record: DecisionRecord) -> None:
    click.echo(f"  decision {record.decision_id}: {record.decision.words()}")
    if record.decision.reason:
        click.echo(f"    why: {record.decision.reason}")
    if record.supersedes:
        click.echo(f"    (supersedes decision {record.supersedes}, kept on the record)")


async def record_decision(
    service: Families, la: str, share_id: int, fields: dict[str, Any], by: str
) -> DecisionRecord:
    return await service.record(operator(la, by), SHARE, str(share_id), fields)


async def checked(rt: Any, la: str, by: str, told: bool | None, **given: str | None) -> Any:
    """The decision ``queue share`` was given, checked before anything is shared (None:
    none given)."""
    if told is None and all(v is None for v in given.values()):
        return None
    async with families(rt, la) as service:
        fields = fields_of(told, service.calendar.zone, **given)
        if fields is not None:
            fields.setdefault("decided_by", by)  # the worker asking, unless --decided-by
            with named_options(OPTION_OF):
                service.check(operator(la, by), fields)
        return fields


def how_to_record(la: str, share_id: int) -> str:
    return (
        f"  was the family told? record it: safeguard family record --la {shlex.quote(la)} "
        f"{share_id} --told --when ... --told-by ... --how ...  (or --not-told --exception ...)"
    )


@click.group()
def family() -> None:
    """Families informed: whether each family was told of what was shared about them."""


@family.command("record")
@home_option
@la_option
@click.argument("share", type=int)
@family_options
@async_command
async def family_record(
    home: Path | None, la: str, share: int, told: bool | None, decided_by: str | None,
    **given: str | None,
) -> None:  # fmt: skip
    """Record whether the family was told of onward share SHARE, or which exception applies."""
    rt = runtime(home)
    async with families(rt, la) as service:
        fields = fields_of(told, service.calendar.zone, decided_by=decided_by, **given)
        if fields is None:
            raise click.UsageError("say --told or --not-told")
        by = decided_by or given.get("informed_by") or "operator"
        with named_options(OPTION_OF):
            recorded = await record_decision(service, la, share, fields, by)
    click.echo(f"share {share} of {la}: recorded")
    say_decision(recorded)


@family.command("outstanding")
@home_option
@la_option
@click.option("--worker", default=None, help="only the shares from this worker's queue")
@click.option("--team", default=None, help="only the shares from this team's queues")
@click.option("--mash", is_flag=True, help="only the shares from the MASH queue")
@async_command
async def family_outstanding(
    home: Path | None, la: str, worker: str | None, team: str | None, mash: bool
) -> None:
    """Shares allowed with no record of whether the family was told, oldest first."""
    recipients = {worker} if worker else set()
    if mash:
        recipients.add(f"mash:{la}")
    teams = {team} if team else set()
    every = not (recipients or teams)
    selection = QueueSelection(frozenset(recipients), frozenset(teams), everything=every)
    async with families(runtime(home), la) as service:
        found = await service.outstanding(operator(la, "operator"))
    shown = [o for o in found if selection.everything or _covered(selection, o)]
    click.echo(f"{la}: {len(shown)} decision(s) outstanding")
    for o in shown:
        d = o.disclosure
        flag = " OVERDUE" if o.overdue else ""
        click.echo(
            f"  {d.kind} {d.ref} (item #{d.item_id}, {o.pending.recipient_id}): to {d.to_name} "
            f"({d.to_category}) for {d.purpose!r}, due {o.due:%Y-%m-%d %H:%M} UTC{flag}"
        )


def _covered(selection: QueueSelection, o: Any) -> bool:
    return o.pending.recipient_id in selection.recipients or o.pending.team in selection.teams


@family.command("history")
@home_option
@la_option
@click.argument("share", type=int)
@async_command
async def family_history(home: Path | None, la: str, share: int) -> None:
    """Every decision recorded about onward share SHARE, oldest first (the audit)."""
    async with families(runtime(home), la) as service:
        found, history = await service.history(operator(la, "operator"), SHARE, str(share))
    made = {True: "made", False: "refused: nothing was shared", None: "awaiting the exchange"}
    click.echo(
        f"share {share} of {la}: to {found.to_name} for {found.purpose!r}, {made[found.made]}"
    )
    for record in history:
        click.echo(f"  {record.recorded_at:%Y-%m-%d %H:%M} recorded by {record.recorded_by}")
        say_decision(record)
    if not history:
        click.echo("  no decision recorded")


@family.command("summary")
@home_option
@la_option
@click.argument("item", type=int)
@async_command
async def family_summary(home: Path | None, la: str, item: int) -> None:
    """Print the family-facing summary for the child of queue item ITEM."""
    async with families(runtime(home), la) as service:
        found = await service.summary(operator(la, "operator"), item)
    click.echo(found.text(), nl=False)
