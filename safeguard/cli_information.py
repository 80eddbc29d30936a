"""``safeguard producer information list|answer|auto-answer``: an agency's side of MASH
network checks (:mod:`producers.information_requests`)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from pathlib import Path

import click

from producers.health import map_bundle
from producers.information_health import attendance_answer_from_health
from producers.information_requests import (
    InformationRequest,
    InformationRequests,
    attendance_answer,
)
from producers.push_information import AUTHOR_RESTRICTIONS, restrictions_of
from producers.receipts import catch_up
from producers.school import parse_export
from safeguard.cli_common import (
    agency_option,
    async_command,
    home_option,
    runtime,
    say_relayed,
    send_timeout_option,
)
from safeguard.cli_health import load_defaults
from safeguard.outbox_wiring import (
    offline_outbox,
    open_outbox_store,
    receipt_recorder,
    relay_pending,
)
from safeguard.runtime import Runtime
from sgx.errors import AlreadyAnswered, ConfigError, TransportError
from sgx.keys.trust import utc_now

OUTCOMES = {"held": "HELD", "nothing-held": "NOTHING_HELD", "cannot-match": "CANNOT_MATCH"}
RESTRICTIONS = {code.lower().replace("_", "-"): code for code in AUTHOR_RESTRICTIONS}


@click.group("information")
def producer_information() -> None:
    """MASH information requests (network checks) put to this agency, and its answers."""


async def _collect(rt: Runtime, agency: str) -> None:
    """Keep what waits on the agency's receipts topic; without the broker, say so."""
    try:
        trust = rt.trust()
        async with await open_outbox_store(rt, agency) as store:
            recorder = receipt_recorder(rt, store, rt.identity(agency, trust), trust, rt.contract())
            await catch_up(recorder, rt.kafka)
    except TransportError as exc:
        click.echo(f"the broker did not answer ({exc}): listing what the outbox holds")


def _described(r: InformationRequest) -> list[str]:
    now = utc_now()
    if r.answer_id is not None:
        state = f"{(r.outcome or '').lower()} by {r.answered_by}"
        state += " (automatically)" if r.automatic else ""
    else:
        state = "OVERDUE" if r.overdue(now) else "awaiting an answer"
    named = ", ".join(
        f"{k}={v}" for k, v in (("upn", r.upn), ("nhs_number", r.nhs_number),
                                ("name", f"{r.given_name or ''} {r.family_name or ''}".strip()),
                                ("born", r.date_of_birth), ("postcode", r.postcode)) if v
    )  # fmt: skip
    family = "told" if r.family_told else f"not told ({r.family_exception})"
    return [
        f"{r.request_id}  {r.rating:<5}  due {r.deadline:%Y-%m-%d %H:%M} UTC  {state}",
        f"    asked by: {r.requested_by} of {r.local_authority}'s MASH, "
        f"{r.requested_at:%Y-%m-%d %H:%M} UTC (family {family})",
        f"    child:    {named}",
        f"    asked:    {r.asked}",
    ]


@producer_information.command("list")
@home_option
@agency_option()
@click.option("--open/--all", "open_only", default=False, help="only requests not yet answered")
@click.option("--offline", is_flag=True, help="list what the outbox holds, without the broker")
@async_command
async def information_list(home: Path | None, agency: str, open_only: bool, offline: bool) -> None:
    """The information requests MASHs put to this agency, overdue ones marked."""
    rt = runtime(home)
    if not offline:
        await _collect(rt, agency)
    async with await open_outbox_store(rt, agency) as store:
        book = InformationRequests(store.engine, schema=store.schema)
        requests = await book.list(agency, open_only=open_only)
    for r in requests:
        for line in _described(r):
            click.echo(line)
    waiting = [r for r in requests if r.answer_id is None]
    overdue = sum(1 for r in waiting if r.overdue(utc_now()))
    click.echo(
        f"{len(requests)} information request(s), {len(waiting)} awaiting an answer, "
        f"{overdue} overdue"
    )


@producer_information.command("answer")
@home_option
@agency_option()
@click.argument("request_id", type=click.UUID)
@click.option("--outcome", type=click.Choice(sorted(OUTCOMES)), required=True)
@click.option("--facts", default=None, help="what the agency holds, as facts (when held)")
@click.option("--opinion", default=None, help="the agency's professional opinion, apart")
@click.option(
    "--restrict", "restrict", multiple=True, type=click.Choice(RESTRICTIONS),
    help="a restriction on onward use (repeat for several)",
)  # fmt: skip
@click.option("--by", required=True, help="who answers (name and role)")
@send_timeout_option
@async_command
async def information_answer(
    home: Path | None,
    agency: str,
    request_id: uuid.UUID,
    outcome: str,
    facts: str | None,
    opinion: str | None,
    restrict: tuple[str, ...],
    by: str,
    send_timeout: float,
) -> None:
    """Answer REQUEST_ID: what is held (facts apart from opinion), nothing, or no match."""
    rt = runtime(home)
    codes = list(dict.fromkeys(RESTRICTIONS[r] for r in restrict))
    async with offline_outbox(rt, agency) as outbox:
        book = InformationRequests(outbox.store.engine, schema=outbox.store.schema)
        answered = await book.answer(
            outbox, request_id, outcome=OUTCOMES[outcome], answered_by=by, facts=facts,
            opinion=opinion, restrictions=restrictions_of(codes, "--restrict"),
        )  # fmt: skip
    click.echo(f"{outcome}: information request {request_id} (asked by {answered.local_authority})")
    say_relayed(await relay_pending(rt, agency, timeout=send_timeout), agency)


@producer_information.command("auto-answer")
@home_option
@agency_option()
@click.option(
    "--export",
    "export_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="(a school) the attendance export the school's feed holds (CSV)",
)
@click.option(
    "--bundle",
    "bundle_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="(a health body) the FHIR R4 bundle its feed holds (JSON)",
)
@click.option(
    "--defaults", "defaults_path", type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None, help="(with --bundle) the health feed's defaults (TOML), as for ingest",
)  # fmt: skip
@send_timeout_option
@async_command
async def information_auto_answer(
    home: Path | None,
    agency: str,
    export_path: Path | None,
    bundle_path: Path | None,
    defaults_path: Path | None,
    send_timeout: float,
) -> None:
    """(A school's or health body's feed) answer open requests from what the feed holds,
    without a person. A school, from its attendance export: the pupil's figures where the
    UPN matches, else cannot match. A health body, from its FHIR bundle: the child's A&E
    attendances where the NHS number matches; a request it holds none for stays open for a
    person. The gateway accepts these only where the asking LA's agreement lets that kind
    answer automatically."""
    rt = runtime(home)
    kind = rt.trust().party(agency).kind
    answer = await _feed_answerer(rt, agency, kind, export_path, bundle_path, defaults_path)
    await _collect(rt, agency)
    answered = 0
    async with offline_outbox(rt, agency) as outbox:
        book = InformationRequests(outbox.store.engine, schema=outbox.store.schema)
        for request in await book.list(agency, open_only=True):
            said = answer(request)
            if said is None:
                click.echo(f"left for a person: information request {request.request_id}")
                continue
            outcome, facts = said
            try:
                await book.answer(
                    outbox, request.request_id, outcome=outcome, facts=facts,
                    answered_by=f"{agency} {FEEDS[kind]}", automatic=True,
                )  # fmt: skip
            except AlreadyAnswered:
                continue
            answered += 1
            click.echo(f"{outcome.lower()}: information request {request.request_id}")
    click.echo(f"{answered} information request(s) answered from {SOURCES[kind]}")
    say_relayed(await relay_pending(rt, agency, timeout=send_timeout), agency)


FEEDS = {"school": "attendance feed", "health": "A&E feed"}  # who answered
SOURCES = {"school": "the register", "health": "the A&E feed"}  # from what
Answerer = Callable[[InformationRequest], tuple[str, str | None] | None]


async def _feed_answerer(
    rt: Runtime,
    agency: str,
    kind: str,
    export_path: Path | None,
    bundle_path: Path | None,
    defaults_path: Path | None,
) -> Answerer:
    """How this agency's feed answers a request (None: it cannot; a person must)."""
    if kind == "school" and export_path is not None and bundle_path is None:
        text = await asyncio.to_thread(export_path.read_text, encoding="utf-8-sig")
        export = parse_export(text)
        return lambda request: attendance_answer(request, export)
    if kind == "health" and bundle_path is not None and export_path is None:
        defaults = load_defaults(defaults_path, agency, rt)
        data = await asyncio.to_thread(bundle_path.read_bytes)
        mapped, _ = await asyncio.to_thread(map_bundle, data, defaults, contract=rt.contract())
        updates = [m.record for m in mapped]

        def from_health(request: InformationRequest) -> tuple[str, str | None] | None:
            facts = attendance_answer_from_health(request, updates)
            return None if facts is None else ("HELD", facts)

        return from_health
    raise ConfigError(
        f"{agency} is a {kind}: a school's feed answers from its attendance export (--export), "
        "a health body's from its FHIR bundle (--bundle); no other feed answers by itself"
    )
