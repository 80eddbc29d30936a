"""``safeguard producer referral``: an agency's referrals to children's social care.

``safeguard producer referral send FILE --agency gp-hillside`` maps each referral form in
FILE (:mod:`producers.referral_form`) to a referral and sends every good one through the
agency's outbox (:func:`safeguard.cli_common.outbox_submit`); each bad form is reported
by its index and field path (``[1].household[0].relationship``) and the rest still go
(exit status 1 then). The gateway routes a referral by the child, like any notification:
to the allocated worker and supervisor in every LA holding the child, else to the MASH
of the LA the child lives in, else to the agency's default LA.

``safeguard producer referral list`` shows each referral the agency sent with the
gateway's receipt and what each LA that received it said (acknowledged, decided), read
first from the agency's receipts topic in case its relay is not running as a service;
``--waiting`` only those no LA has decided yet. ``safeguard producer referral show ID``
shows one in full: each response, the LA's reasons and next steps for the referrer, whom
to contact, and that the LA's signature on it verified.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import click

from producers.outbox import OutboxStore
from producers.receipts import catch_up
from producers.referral_form import ingest_forms
from producers.referral_outcomes import (
    ReferralHeard,
    ReferralOutcomes,
    ReferralStatus,
    referral_statuses,
)
from safeguard.cli_common import (
    agency_option,
    async_command,
    home_option,
    outbox_submit,
    runtime,
    send_timeout_option,
)
from safeguard.outbox_wiring import open_outbox_store, receipt_recorder
from safeguard.runtime import Runtime
from sgx.errors import NotFound, TransportError

DECISIONS = {
    "NO_FURTHER_ACTION": "no further action",
    "INFORMATION_AND_ADVICE": "information and advice",
    "EARLY_HELP": "early help",
    "SECTION_17_ASSESSMENT": "child in need assessment (s.17)",
    "SECTION_47_ENQUIRIES": "child protection enquiries (s.47)",
    "IMMEDIATE_PROTECTION": "immediate protection",
}


@click.group("referral")
def referral() -> None:
    """Referrals to children's social care: send forms, see what the LA decided."""


@referral.command("send")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@home_option
@agency_option()
@send_timeout_option
@async_command
async def send(file: Path, home: Path | None, agency: str, send_timeout: float) -> int:
    """Send the referral forms in FILE (JSON: one form or an array of them)."""
    rt = runtime(home)
    async with outbox_submit(rt, agency, timeout=send_timeout) as submit:
        report = await ingest_forms(file, agency, submit, rt.contract())
        for line in report.lines():
            click.echo(line)
    return 1 if report.errors else 0


async def _statuses(home: Path | None, agency: str, offline: bool) -> list[ReferralStatus]:
    rt = runtime(home)
    async with await open_outbox_store(rt, agency) as store:
        if not offline:
            await _collect(rt, agency, store)
        return await referral_statuses(
            store, ReferralOutcomes(store.engine, schema=store.schema), agency
        )


async def _collect(rt: Runtime, agency: str, store: OutboxStore) -> None:
    """Keep what waits on the agency's receipts topic; without the broker, say so and go on."""
    try:
        trust = rt.trust()
        identity = rt.identity(agency, trust)
        await catch_up(receipt_recorder(rt, store, identity, trust, rt.contract()), rt.kafka)
    except TransportError as exc:
        click.echo(f"the broker did not answer ({exc}): listing what the outbox holds")


def _said(heard: ReferralHeard) -> str:
    if heard.stage == "ACKNOWLEDGED":
        return f"{heard.local_authority} acknowledged"
    return f"{heard.local_authority} decided: {DECISIONS.get(heard.decision or '', '?')}"


def _line(status: ReferralStatus) -> str:
    entry = status.entry
    said = "; ".join(_said(h) for h in status.by_la.values()) or "no LA has answered yet"
    if entry is None:
        return f"{status.referral_id}  (not in this outbox: sent some other way)  {said}"
    receipt = entry.receipt_outcome or entry.status
    return f"{status.referral_id}  {entry.created_at:%Y-%m-%d %H:%M}  {receipt:<11}  {said}"


@referral.command("list")
@home_option
@agency_option()
@click.option("--waiting", is_flag=True, help="only referrals no LA has decided yet")
@click.option("--offline", is_flag=True, help="what the outbox holds, without the broker")
@async_command
async def list_referrals(home: Path | None, agency: str, waiting: bool, offline: bool) -> None:
    """The agency's referrals: the receipt, and what each LA said of each."""
    found = await _statuses(home, agency, offline)
    if waiting:
        found = [s for s in found if not any(h.stage == "DECIDED" for h in s.responses)]
    for status in found:
        click.echo(_line(status))
    decided = sum(1 for s in found if any(h.stage == "DECIDED" for h in s.responses))
    click.echo(f"{len(found)} referral(s), {decided} decided")


def _described(heard: ReferralHeard) -> Iterator[str]:
    yield (
        f"  {_said(heard)} at {heard.responded_at:%Y-%m-%d %H:%M} UTC by {heard.responded_by}"
        f" (signed with {heard.signer_key_id}: verified)"
    )
    if heard.reasons:
        yield f"    reasons: {heard.reasons}"
    if heard.next_steps:
        yield f"    next steps for you: {heard.next_steps}"
    reference = f" (reference {heard.la_reference})" if heard.la_reference else ""
    yield f"    contact: {heard.la_contact}{reference}"


@referral.command("show")
@click.argument("referral_id", type=click.UUID)
@home_option
@agency_option()
@click.option("--offline", is_flag=True, help="what the outbox holds, without the broker")
@async_command
async def show(referral_id: uuid.UUID, home: Path | None, agency: str, offline: bool) -> None:
    """One referral: its receipt and every LA response in full."""
    found = next(
        (s for s in await _statuses(home, agency, offline) if s.referral_id == referral_id),
        None,
    )
    if found is None:
        raise NotFound(f"{agency}'s outbox holds no referral {referral_id}")
    click.echo(_line(found))
    entry = found.entry
    if entry is not None and entry.receipt_detail:
        click.echo(
            f"  receipt: {entry.receipt_outcome} {entry.receipt_reason}: {entry.receipt_detail}"
        )
    for heard in found.responses:
        for line in _described(heard):
            click.echo(line)
