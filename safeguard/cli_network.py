"""The network checks asked from a MASH item, as the LA's store keeps them::

    safeguard queue checks --la la-camden 7

One line per agency asked: the gateway's word (asked, with the deadline; refused, and
why; or not yet heard), whether it is overdue, and the answer's own queue item (open it
with ``safeguard queue show``). Read from the rows the LA's consumer keeps
(:mod:`consumers.information_rows`), not from a topic. Settings, errors and exit status
are those of :mod:`safeguard.cli_common`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import click

from consumers.reader import readable
from safeguard.cli_common import async_command, home_option, la_option, runtime
from safeguard.inbox_wiring import inbox_store
from sgx.domain.family import DisclosureKind
from sgx.wire import contract as c


@click.command("checks")
@home_option
@la_option
@click.argument("item", type=int)
@async_command
async def queue_checks(home: Path | None, la: str, item: int) -> None:
    """The network checks asked from MASH item ITEM, and what came back."""
    rt = runtime(home)
    now = datetime.now(UTC)
    async with await rt.queue_store(la) as store, await inbox_store(rt, la) as inbox:
        row = await store.get(item)
        asked = [
            d for d in await inbox.families.of([row.notification_id])
            if d.kind == DisclosureKind.NETWORK_CHECK and d.item_id == item
        ]  # fmt: skip
        refs = [d.ref for d in asked]
        statuses = await store.information.status_of(refs)
        answering = await store.answering(refs)
        reader = await rt.queue_reader(la, store)
        if row.notification_type == c.INFORMATION_ANSWER:
            click.echo(f"#{item} is an answer to a network check: list its MASH item's checks")
            return
        click.echo(f"#{item}: {len(asked)} network check(s)")
        for d in asked:
            status = statuses.get(d.ref)
            if d.ref in answering:
                answer = (await reader.show(answering[d.ref])).notification
                how = "automatically" if answer["automatic"] else f"by {answer['answered_by']}"
                said = f"answered: item #{answering[d.ref]}, {readable(answer['outcome'])}, {how}"
            elif status is None:
                said = "sent; no word from the gateway yet"
            elif status.state == "REFUSED":
                said = f"refused: {status.reason}"
            else:
                assert status.deadline is not None
                late = " OVERDUE" if status.deadline <= now else ""
                said = f"asked ({status.rating}), due {status.deadline:%Y-%m-%d %H:%M} UTC{late}"
            click.echo(f"  {d.to_name:<20} request {d.ref}  {said}")
