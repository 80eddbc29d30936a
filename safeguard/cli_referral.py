"""``safeguard producer referral``: an agency's referrals to children's social care.

``safeguard producer referral send FILE --agency gp-hillside`` maps each referral form in
FILE (:mod:`producers.referral_form`) to a referral and sends every good one through the
agency's outbox (:func:`safeguard.cli_common.outbox_submit`); each bad form is reported
by its index and field path (``[1].household[0].relationship``) and the rest still go
(exit status 1 then). The gateway routes a referral by the child, like any notification:
to the allocated worker and supervisor in every LA holding the child, else to the MASH
of the LA the child lives in, else to the agency's default LA.
"""

from __future__ import annotations

from pathlib import Path

import click

from producers.referral_form import ingest_forms
from safeguard.cli_common import (
    agency_option,
    async_command,
    home_option,
    outbox_submit,
    runtime,
    send_timeout_option,
)


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
