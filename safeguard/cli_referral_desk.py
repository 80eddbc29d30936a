"""``safeguard referral``: an LA acknowledges and decides the referrals it received.

    safeguard referral list --la la-camden [--worker sw-amara | --team T | --mash] [--all]
    safeguard referral show --la la-camden ITEM
    safeguard referral acknowledge --la la-camden ITEM --by "Mo Duty, MASH duty worker"
    safeguard referral decide --la la-camden ITEM --decision section-47 \\
        --reasons "..." [--next-steps "..."] --by "Tess Jones, MASH manager"

The referring agency's side is ``safeguard producer referral`` (send, list, show), as
``safeguard consent`` is the LA's side of ``producer consent``. Each response goes through
the inbox's own referral desk (:mod:`safeguard.referral_desk`): recorded, signed by the
LA, sent to the gateway, which tells the referrer only; the command then waits up to
``--wait`` seconds for the gateway's receipt and says what became of it. The contact the
referrer is offered is ``--contact``, else ``SGX_INBOX_REFERRAL_CONTACT``. A bad argument
is a usage error naming the option (exit status 2); a response the gateway refused or
quarantined exits 1.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from consumers.inbox.referral_store import ResponseRecord
from consumers.inbox.referrals import DECISIONS, ReferralState, is_referral
from consumers.inbox.service import Inbox
from consumers.inbox.settings import InboxSettings
from consumers.queue import QueueItem
from consumers.reader import QueueView, child_label
from safeguard.cli_common import async_command, home_option, la_option, named_options, runtime
from safeguard.referral_desk import operator, referral_inbox
from sgx.wire import contract as c

DECISION_OPTIONS = {
    "no-further-action": "NO_FURTHER_ACTION",
    "information-and-advice": "INFORMATION_AND_ADVICE",
    "early-help": "EARLY_HELP",
    "section-17": "SECTION_17_ASSESSMENT",
    "section-47": "SECTION_47_ENQUIRIES",
    "immediate-protection": "IMMEDIATE_PROTECTION",
}
OPTION_OF = {  # a response's field, as this command line names it
    "item": "ITEM", "stage": "the command", "decision": "--decision", "reasons": "--reasons",
    "next_steps": "--next-steps", "la_reference": "--reference", "responded_as": "--by",
    "la_contact": "--contact (or SGX_INBOX_REFERRAL_CONTACT)",
}  # fmt: skip
FC = TypeVar("FC", bound=Callable[..., Any])
WAIT_S = 10.0
POLL_S = 0.5
FAILED = ("refused", "quarantined")


@click.group("referral")
def referral_desk() -> None:
    """Referrals the LA received: acknowledge them and decide, told to the referrer."""


def _when(at: dt.datetime | None) -> str:
    return f"{at:%Y-%m-%d %H:%M} UTC" if at else "(none)"


def _due(state: ReferralState) -> dt.datetime:
    """What falls due next (for the order of the list: soonest, so overdue, first)."""
    due = state.acknowledge_by if state.acknowledged is None else state.decide_by
    return due or dt.datetime.max.replace(tzinfo=dt.UTC)


def _response_line(r: ResponseRecord) -> str:
    what = (
        "acknowledged"
        if r.stage == "ACKNOWLEDGED"
        else "decided: " + DECISIONS.get(r.decision or "", r.decision or "?")
    )
    status = r.status
    if status == "delivered":
        status = "delivered: passed to the referrer"
    elif status in FAILED:
        status += f" ({r.outcome_detail}): the referrer was not told"
    return f"  {_when(r.responded_at)}  {what}, by {r.responded_as} [{status}]"


@referral_desk.command("list")
@home_option
@la_option
@click.option("--worker", "workers", multiple=True, help="only this worker's queue (repeat)")
@click.option("--team", "teams", multiple=True, help="only this team's queues (repeat)")
@click.option("--mash", is_flag=True, help="only the MASH queue")
@click.option("--all", "everything", is_flag=True, help="decided referrals too")
@async_command
async def referral_list(
    home: Path | None,
    la: str,
    workers: tuple[str, ...],
    teams: tuple[str, ...],
    mash: bool,
    everything: bool,
) -> None:
    """Referrals awaiting acknowledgement or a decision, what falls due first at the top."""
    who = operator(la, "operator", workers=frozenset(workers), teams=frozenset(teams),
                   mash=mash)  # fmt: skip
    async with referral_inbox(runtime(home), la) as inbox:
        rows = [  # only referrals are opened (and their reads audited), one row each
            i for i in await inbox.items(who)
            if i.notification_type == c.REFERRAL and who.may_open(i)
        ]  # fmt: skip
        first: dict[str, QueueItem] = {}
        for row in rows:  # a supervisor's copy beside the worker's: the first row stands
            first.setdefault(row.notification_id, row)
        rows = list(first.values())
        views = [v for v in await inbox.listed(who, rows) if isinstance(v, QueueView)]
        referrals = {v.item.notification_id: v for v in views}
        states = await inbox.referrals.states(list(referrals.values()))
    now = dt.datetime.now(dt.UTC)
    shown = [
        (states[nid], view)
        for nid, view in referrals.items()
        if everything or states[nid].decided is None
    ]
    shown.sort(key=lambda pair: (pair[0].decided is not None, _due(pair[0])))
    overdue = sum(1 for state, _ in shown if state.overdue(now))
    waiting = "" if everything else " awaiting a response"
    click.echo(f"{la}: {len(shown)} referral(s){waiting}, {overdue} overdue")
    for state, view in shown:
        flag = "  OVERDUE" if state.overdue(now) else ""
        click.echo(
            f"#{view.item.item_id:<4} {view.item.urgency:<9} {child_label(view.notification)} "
            f"— from {view.delivery['sender_agency']} (to {view.item.recipient_id}): "
            f"{state.words(now)}{flag}"
        )


async def _opened(inbox: Inbox, by: str, la: str, item: int) -> QueueView:
    view = await inbox.open(operator(la, by), item, "opened")
    if not is_referral(view):
        raise click.UsageError(f"ITEM: #{item} is a {view.type_label}, not a referral")
    return view


@referral_desk.command("show")
@home_option
@la_option
@click.argument("item", type=int)
@async_command
async def referral_show(home: Path | None, la: str, item: int) -> None:
    """The referral of queue item ITEM: its deadlines and every response, with what became
    of each (a response not sent yet is sent again now)."""
    async with referral_inbox(runtime(home), la) as inbox:
        view = await _opened(inbox, "operator", la, item)
        state = await inbox.referrals.state(view)
    now = dt.datetime.now(dt.UTC)
    click.echo(
        f"#{item} referral from {view.delivery['sender_agency']} about "
        f"{child_label(view.notification)}"
    )
    click.echo(
        f"  acknowledge by {_when(state.acknowledge_by)}; decide by {_when(state.decide_by)}"
    )
    click.echo(f"  {state.words(now)}{'  OVERDUE' if state.overdue(now) else ''}")
    for r in state.responses:
        click.echo(_response_line(r))
    if not state.responses:
        click.echo("  no response yet")


def respond_options(fn: FC) -> FC:
    """The options every response takes."""
    for option in reversed([
        click.option("--by", required=True, help="who responds, as the referrer will read it"),
        click.option("--contact", default=None,
                     help="how the referrer reaches the LA (default SGX_INBOX_REFERRAL_CONTACT)"),
        click.option("--reference", default=None, help="the LA's reference for the referrer"),
        click.option("--wait", type=click.FloatRange(min=0.0), default=WAIT_S, show_default=True,
                     help="seconds to wait for the gateway's receipt"),
    ]):  # fmt: skip
        fn = option(fn)
    return fn


async def _respond(
    home: Path | None,
    la: str,
    item: int,
    *,
    stage: str,
    decision: str | None,
    by: str,
    contact: str | None,
    reference: str | None,
    wait: float,
    reasons: str | None = None,
    next_steps: str | None = None,
) -> int:
    contact = contact or InboxSettings().referral_contact
    for option, given in (("--by", by), (OPTION_OF["la_contact"], contact)):
        if not given.strip():  # said before anything is opened, or sent again
            raise click.UsageError(f"{option}: must not be empty")
    async with referral_inbox(runtime(home), la) as inbox:
        view = await _opened(inbox, by, la, item)
        with named_options(OPTION_OF):
            made = await inbox.referrals.respond(
                operator(la, by), item, stage=stage, decision=decision, reasons=reasons,
                next_steps=next_steps, la_contact=contact, la_reference=reference,
                responded_as=by,
            )  # fmt: skip
        made = await _receipted(inbox, view, made, wait)
    what = "acknowledged" if stage == "ACKNOWLEDGED" else "decided"
    click.echo(
        f"{what}: the referral of #{item} from {view.delivery['sender_agency']} "
        f"(response {made.response_id})"
    )
    click.echo(_response_line(made))
    if made.status == "sending":
        click.echo(
            f"warning: the broker did not take it; it is kept, and sent again by "
            f"`safeguard referral show --la {la} {item}` (or when the inbox shows it)",
            err=True,
        )
    elif made.status == "sent":
        click.echo(f"  no receipt yet: `safeguard referral show --la {la} {item}` looks again")
    return 1 if made.status in FAILED else 0


async def _receipted(
    inbox: Inbox, view: QueueView, made: ResponseRecord, wait: float
) -> ResponseRecord:
    """``made`` once the gateway's receipt is in (or ``wait`` seconds have passed)."""
    deadline = asyncio.get_running_loop().time() + wait
    while made.status == "sent" and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(POLL_S)
        state = await inbox.referrals.state(view)
        made = next(r for r in state.responses if r.response_id == made.response_id)
    return made


@referral_desk.command("acknowledge")
@home_option
@la_option
@click.argument("item", type=int)
@respond_options
@async_command
async def referral_acknowledge(
    home: Path | None, la: str, item: int, by: str, contact: str | None, reference: str | None,
    wait: float,
) -> int:  # fmt: skip
    """Acknowledge the referral of queue item ITEM to the referrer (once)."""
    return await _respond(
        home, la, item, stage="ACKNOWLEDGED", decision=None, by=by, contact=contact,
        reference=reference, wait=wait,
    )  # fmt: skip


@referral_desk.command("decide")
@home_option
@la_option
@click.argument("item", type=int)
@click.option("--decision", type=click.Choice(list(DECISION_OPTIONS)), required=True,
              help="the response under Working Together")  # fmt: skip
@click.option("--reasons", required=True, help="why, for the referrer")
@click.option("--next-steps", default=None, help="what the referrer is asked to do next")
@respond_options
@async_command
async def referral_decide(
    home: Path | None, la: str, item: int, decision: str, reasons: str, next_steps: str | None,
    by: str, contact: str | None, reference: str | None, wait: float,
) -> int:  # fmt: skip
    """Record the LA's decision on the referral of queue item ITEM and tell the referrer (a
    later decision supersedes; the referrer is told each)."""
    if not reasons.strip():
        raise click.UsageError("--reasons: say why, for the referrer")
    return await _respond(
        home, la, item, stage="DECIDED", decision=DECISION_OPTIONS[decision], by=by,
        contact=contact, reference=reference, wait=wait, reasons=reasons, next_steps=next_steps,
    )  # fmt: skip
