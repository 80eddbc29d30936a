"""The author's consent to an onward share, from both ends.

A local authority asks (after a share was refused for want of the author's consent)::

    safeguard consent ask --la la-camden 12 --category parent_or_carer \\
        --purpose "child protection conference" --by sw-amara
    safeguard consent status --la la-camden

The author's agency answers::

    safeguard producer consent list   --agency school-hillside [--open]
    safeguard producer consent grant  --agency school-hillside REQUEST_ID --by "A. Head, DSL"
    safeguard producer consent refuse --agency school-hillside REQUEST_ID --by "..." --reason "..."

A police grant for parents or other agencies needs ``--court-order``. Settings, errors
and exit status are those of :mod:`safeguard.cli_common`.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from producers.consent_requests import ConsentRequest, ConsentRequests
from producers.outbox import OutboxStore
from producers.receipts import catch_up
from safeguard.cli_common import (
    agency_option,
    async_command,
    home_option,
    la_option,
    runtime,
    say_relayed,
    send_timeout_option,
)
from safeguard.outbox_wiring import (
    offline_outbox,
    open_outbox_store,
    receipt_recorder,
    relay_pending,
)
from safeguard.runtime import Runtime
from sgx.errors import NotFound, TransportError
from sgx.wire import contract as c

CATEGORIES = ["parent_or_carer", "other_professional", "care_proceedings", "la_social_care"]


# -- the local authority asks -------------------------------------------------------------
@click.group()
def consent() -> None:
    """Ask the author of a queue item for consent to share it onward."""


@consent.command("ask")
@home_option
@la_option
@click.argument("item", type=int)
@click.option("--category", type=click.Choice(CATEGORIES), required=True, help="who it would go to")
@click.option("--purpose", required=True, help="why: a grant covers this purpose only")
@click.option("--by", required=True, help="the worker asking (worker id)")
@async_command
async def consent_ask(
    home: Path | None, la: str, item: int, category: str, purpose: str, by: str
) -> int:
    """Ask ITEM's author, through the gateway, for consent to one onward share."""
    from safeguard.sharing import ask_consent

    outcome = await ask_consent(
        runtime(home), la, item, category=category.upper(), purpose=purpose, by=by
    )
    click.echo(f"{outcome['state'].lower()}: consent request {outcome['request_id']}")
    click.echo(f"  {outcome['reason']}")
    if outcome["state"] == "ASKED":
        click.echo(f"  the author's answer: safeguard consent status --la {la}")
    return 0 if outcome["state"] in ("ASKED", "NOT_NEEDED") else 1


@consent.command("status")
@home_option
@la_option
@async_command
async def consent_status(home: Path | None, la: str) -> None:
    """Every consent request the LA made, with where it stands now."""
    from safeguard.sharing import consent_outcomes

    outcomes = await consent_outcomes(runtime(home), la)
    for line in status_lines(outcomes):
        click.echo(line)


def status_lines(outcomes: dict[uuid.UUID, list[dict[str, Any]]]) -> list[str]:
    lines = []
    for request_id, said in outcomes.items():
        last = said[-1]
        lines.append(
            f"{request_id}  {last['state']:<20}  {last['category']:<18}  {last['purpose']!r}"
        )
        lines.append(f"    item {last['notification_id']}, author {last['author'] or '-'}")
        lines.append(f"    {last['reason']}")
    lines.append(f"{len(outcomes)} consent request(s)")
    return lines


# -- the author answers ----------------------------------------------------------------------
@click.group("consent")
def producer_consent() -> None:
    """Consent requests put to this agency as author, and its answers."""


@producer_consent.command("list")
@home_option
@agency_option()
@click.option("--open/--all", "open_only", default=False, help="only requests not yet answered")
@click.option(
    "--offline", is_flag=True, help="list what the outbox holds, without asking the broker"
)
@async_command
async def consent_list(home: Path | None, agency: str, open_only: bool, offline: bool) -> None:
    """The consent requests local authorities put to this agency (first read from the
    agency's receipts topic, in case its relay is not running as a service)."""
    rt = runtime(home)
    async with await open_outbox_store(rt, agency) as store:
        if not offline:
            await _collect(rt, agency, store)
        book = ConsentRequests(store.engine, schema=store.schema)
        requests = await book.list(agency, open_only=open_only)
        lines = [line for r in requests for line in await _described(store, r)]
    for line in lines:
        click.echo(line)
    waiting = sum(1 for r in requests if r.answer is None)
    click.echo(f"{len(requests)} consent request(s), {waiting} awaiting an answer")


async def _collect(rt: Runtime, agency: str, store: OutboxStore) -> None:
    """Keep what waits on the agency's receipts topic; without the broker, say so and go on."""
    try:
        trust = rt.trust()
        identity = rt.identity(agency, trust)
        await catch_up(receipt_recorder(rt, store, identity, trust, rt.contract()), rt.kafka)
    except TransportError as exc:
        click.echo(f"the broker did not answer ({exc}): listing what the outbox holds")


async def _described(store: OutboxStore, r: ConsentRequest) -> Sequence[str]:
    """A request in words: the item as this agency holds it, who asks, for what."""
    try:
        entry = await store.get(r.agency, r.notification_id)
        item = (
            f"{c.SHORT_NAMES.get(entry.schema_name, entry.schema_name)} {r.notification_id}, "
            f"sent {entry.created_at:%Y-%m-%d %H:%M} UTC"
        )
    except NotFound:
        item = f"{r.notification_id} (not in this outbox: sent some other way)"
    state = (
        "awaiting an answer"
        if r.answer is None
        else f"{r.answer.lower()} by {r.answered_by} at {r.answered_at:%Y-%m-%d %H:%M} UTC"
    )
    lines = [
        f"{r.request_id}  {state}",
        f"    item:     {item}",
        f"    asked by: {r.requested_by} of {r.local_authority}, "
        f"{r.requested_at:%Y-%m-%d %H:%M} UTC",
        f"    share to: {r.category} for {r.purpose!r}",
        f"    barred by: {', '.join(r.blocking)}",
    ]
    if r.court_order:
        lines.append(f"    court order: {r.court_order}")
    return lines


def _answer_options(fn: Any) -> Any:
    for option in reversed(
        [
            home_option,
            agency_option(),
            click.argument("request_id", type=click.UUID),
            click.option("--by", required=True, help="who decides (name and role)"),
            click.option("--reason", default=None, help="why, or the grant's conditions"),
            send_timeout_option,
        ]
    ):
        fn = option(fn)
    return fn


@producer_consent.command("grant")
@_answer_options
@click.option(
    "--court-order",
    default=None,
    help="the court order directing disclosure (court, case number, date): required for "
    "police material confidential to the proceedings",
)
@async_command
async def consent_grant(
    home: Path | None,
    agency: str,
    request_id: uuid.UUID,
    by: str,
    reason: str | None,
    send_timeout: float,
    court_order: str | None,
) -> None:
    """Consent to the share REQUEST_ID names (that recipient category, that purpose)."""
    await _answer(home, agency, request_id, True, by, reason, court_order, send_timeout)


@producer_consent.command("refuse")
@_answer_options
@async_command
async def consent_refuse(
    home: Path | None,
    agency: str,
    request_id: uuid.UUID,
    by: str,
    reason: str | None,
    send_timeout: float,
) -> None:
    """Refuse the share REQUEST_ID names; the restriction stays."""
    await _answer(home, agency, request_id, False, by, reason, None, send_timeout)


async def _answer(
    home: Path | None,
    agency: str,
    request_id: uuid.UUID,
    granted: bool,
    by: str,
    reason: str | None,
    court_order: str | None,
    send_timeout: float,
) -> None:
    rt = runtime(home)
    async with offline_outbox(rt, agency) as outbox:
        book = ConsentRequests(outbox.store.engine, schema=outbox.store.schema)
        answered = await book.answer(
            outbox,
            request_id,
            granted=granted,
            answered_by=by,
            reason=reason,
            court_order=court_order,
        )
    click.echo(
        f"{(answered.answer or '').lower()}: consent request {request_id} "
        f"({answered.category} for {answered.purpose!r}, asked by {answered.local_authority})"
    )
    say_relayed(await relay_pending(rt, agency, timeout=send_timeout), agency)
