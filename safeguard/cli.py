"""The ``safeguard`` command line.

Every command reads its settings from ``SGX_*`` environment variables (see
``sgx.settings``); ``--home`` overrides ``SGX_HOME``. Errors of the exchange are printed
as one clear line and exit with status 2; nothing prints a stack trace at a user. The
helpers every group shares live in :mod:`safeguard.cli_common`; the agency feeds' groups
in ``safeguard/cli_*.py`` are registered at the end of this module::

    safeguard producer relay | receipts                 an agency's outbox (cli_producer)
    safeguard producer school ingest FILE | watch DIR   attendance exports (cli_school)
    safeguard producer health ingest FILE               FHIR R4 bundles (cli_health)
    safeguard producer police encompass FILE | disclosure FILE    force exports (cli_police)
    safeguard producer referral send FILE | list | show ID   referrals and outcomes (cli_referral)
    safeguard push token | revoke | serve | openapi     the HTTP push endpoint (cli_push)
    safeguard inbox serve | user add | client add | openapi   an LA's inbox (cli_inbox)
    safeguard family outstanding | record | history | summary  families informed (cli_family)
    safeguard keys init | rotate | revoke | rotate-into-token   keys (cli_keys)
    safeguard schemas check [--lock]                  schema compatibility (cli_schemas)
    safeguard db upgrade | status                     the stores' schema versions (cli_db)
    safeguard police requests                           open Protocol requests (cli_police)
    safeguard queue checks ITEM                         a MASH item's network checks (cli_network)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shlex
from collections.abc import AsyncIterator
from pathlib import Path

import click

from consumers.queue import QueueStore
from consumers.reader import QueueReader
from safeguard.cli_common import (
    async_command,
    home_option,
    la_option,
    runtime,
    until_signalled,
)
from safeguard.cli_consent import consent, producer_consent
from safeguard.cli_db import db
from safeguard.cli_family import (
    checked,
    family,
    family_options,
    how_to_record,
    record_decision,
    say_decision,
)
from safeguard.cli_health import health
from safeguard.cli_inbox import inbox
from safeguard.cli_information import producer_information
from safeguard.cli_keys import keys
from safeguard.cli_network import queue_checks
from safeguard.cli_police import police, police_feed
from safeguard.cli_producer import producer
from safeguard.cli_push import push
from safeguard.cli_quarantine import quarantine
from safeguard.cli_referral import referral
from safeguard.cli_referral_desk import referral_desk
from safeguard.cli_schemas import schemas
from safeguard.cli_school import school
from safeguard.families import families
from safeguard.runtime import Runtime, create_topics, run_consumer, run_gateway


@click.group()
@click.option("-v", "--verbose", is_flag=True, help="log at INFO")
def main(verbose: bool) -> None:
    """Safeguarding Exchange: sealed, audited notifications about children."""
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )


# -- services ---------------------------------------------------------------------
@main.group()
def gateway() -> None:
    """The gateway."""


@gateway.command("run")
@home_option
@async_command
async def gateway_run(home: Path | None) -> None:
    """Run the gateway until SIGTERM/SIGINT."""
    rt = runtime(home)
    await create_topics(rt)
    await until_signalled(lambda stop: run_gateway(rt, stop))


@main.group()
def consumer() -> None:
    """A receiving party's delivery consumer (local authority, school or police force)."""


@consumer.command("run")
@home_option
@click.option(
    "--party",
    "--la",
    "party",
    default="la-camden",
    show_default=True,
    envvar="SGX_LA",
    help="receiving party id: a local authority, a school (key adult) or a police force (SPOC)",
)
@async_command
async def consumer_run(home: Path | None, party: str) -> None:
    """Run the delivery consumer into the party's queue until SIGTERM/SIGINT."""
    rt = runtime(home)
    await create_topics(rt)
    await until_signalled(lambda stop: run_consumer(rt, party, stop))


@main.command()
@home_option
@async_command
async def topics(home: Path | None) -> None:
    """Create every topic the exchange needs (idempotent)."""
    await create_topics(runtime(home))


@main.command()
@click.option("--port", type=int, default=9092, show_default=True)
@click.option("--log-dir", type=click.Path(path_type=Path), default=Path(".sgx"))
@async_command
async def broker(port: int, log_dir: Path) -> None:
    """Run the embedded (memory-only) broker on loopback until interrupted."""
    from sgx.kafka.embedded import EmbeddedBroker

    await asyncio.to_thread(log_dir.mkdir, parents=True, exist_ok=True)
    async with EmbeddedBroker(log_dir, port=port) as running:
        click.echo(f"embedded broker on {running.bootstrap_servers} (memory only)")
        click.echo(
            "services using it: SGX_KAFKA_IDEMPOTENCE=false (it has no idempotent producers)"
        )
        await until_signalled(_wait)


async def _wait(stop: asyncio.Event) -> None:
    await stop.wait()


# -- queue ------------------------------------------------------------------------
@main.group()
def queue() -> None:
    """A social worker's queue."""


@contextlib.asynccontextmanager
async def _reader(rt: Runtime, la: str) -> AsyncIterator[tuple[QueueReader, QueueStore]]:
    async with await rt.queue_store(la) as store:
        yield await rt.queue_reader(la, store), store


@queue.command("list")
@home_option
@la_option
@click.option("--worker", required=True, help="queue id: a worker id or mash:<la>")
@click.option("--all", "include_acked", is_flag=True, help="include acknowledged items")
@async_command
async def queue_list(home: Path | None, la: str, worker: str, include_acked: bool) -> None:
    """List WORKER's queue, oldest first."""
    from consumers.reader import summary_line

    async with _reader(runtime(home), la) as (reader, _):
        views = await reader.list(worker, include_acked=include_acked)
    click.echo(f"{worker}: {len(views)} item(s)")
    for view in views:
        click.echo(summary_line(view))


@queue.command("show")
@home_option
@la_option
@click.argument("item", type=int)
@async_command
async def queue_show(home: Path | None, la: str, item: int) -> None:
    """Show ITEM in full, with its restrictions."""
    from consumers.reader import detail

    async with _reader(runtime(home), la) as (reader, _):
        click.echo(detail(await reader.show(item)))


@queue.command("ack")
@home_option
@la_option
@click.argument("item", type=int)
@click.option("--by", required=True, help="who read it")
@async_command
async def queue_ack(home: Path | None, la: str, item: int, by: str) -> None:
    """Acknowledge ITEM as read."""
    async with _reader(runtime(home), la) as (_, store):
        acked = await store.ack(item, by)
    click.echo(
        f"#{acked.item_id} acknowledged by {acked.acked_by} at {acked.acked_at:%Y-%m-%d %H:%M:%S}"
    )


@queue.command("share")
@home_option
@la_option
@click.argument("item", type=int)
@click.option(
    "--to", "to_id", required=True, help="recipient id (a worker id, 'parents', 'court', ...)"
)
@click.option(
    "--category",
    type=click.Choice(
        ["la_social_care", "parent_or_carer", "other_professional", "care_proceedings"]
    ),
    default="la_social_care",
    show_default=True,
)
@click.option("--name", "to_name", default="", help="recipient's name")
@click.option("--purpose", required=True, help="why the share is needed")
@click.option("--by", required=True, help="who asks")
@family_options
@async_command
async def queue_share(
    home: Path | None,
    la: str,
    item: int,
    to_id: str,
    category: str,
    to_name: str,
    purpose: str,
    by: str,
    told: bool | None,
    **decision_given: str | None,
) -> int:
    """Ask the gateway to share ITEM onward; it refuses one that breaks a restriction.
    Whether the family was told may be recorded with it (--told ... / --not-told ...)."""
    from safeguard.sharing import share_and_record

    rt = runtime(home)
    decider = decision_given["decided_by"] or by
    decided = await checked(rt, la, decider, told, **decision_given)
    share_id, decision = await share_and_record(
        rt,
        la,
        item,
        to_id=to_id,
        category=category.upper(),
        to_name=to_name or to_id,
        purpose=purpose,
        by=by,
    )
    if decided is not None:
        async with families(rt, la) as service:
            say_decision(await record_decision(service, la, share_id, decided, by))
    if decision["allowed"]:
        click.echo(f"allowed: share of #{item} with {to_id} ({category}) — {decision['reason']}")
        click.echo(f"  share {share_id}" if decided else how_to_record(la, share_id))
        return 0
    click.echo(f"refused: {', '.join(decision['broken']) or 'no such item'} — {decision['reason']}")
    if decision["broken"]:
        click.echo(
            f"  to ask the author: safeguard consent ask --la {la} {item} --category {category} "
            f"--purpose {shlex.quote(purpose)} --by {shlex.quote(by)}"
        )
    return 1


# -- audit and quarantine ---------------------------------------------------------
@main.group()
def audit() -> None:
    """The gateway's audit trail."""


@audit.command("verify")
@home_option
@async_command
async def audit_verify(home: Path | None) -> int:
    """Recompute every audit hash chain and check the signed checkpoints; exit 1 and name
    the chain and record if one was edited or cut short."""
    from gateway.checkpoints import Checkpoints, verify_checkpoints
    from sgx.errors import AuditChainBroken

    rt = runtime(home)
    async with await rt.gateway_store() as store:
        checkpoints = await Checkpoints(store.engine, schema=store.schema).open()
        try:
            verified = await store.verify_chains()
            signed = await verify_checkpoints(store, checkpoints, rt.trust())
        except AuditChainBroken as exc:
            click.echo(f"audit chain BROKEN: {exc}")
            return 1
    for chain, (count, head) in verified.items():
        mark = signed.get(chain)
        note = f", signed checkpoint at {mark.sequence}" if mark else ", no checkpoint yet"
        click.echo(f"  {chain}: {count} record(s), head {head[:16]}…{note}")
    total = sum(count for count, _ in verified.values())
    click.echo(f"audit verified: {len(verified)} chain(s), {total} record(s)")
    return 0


@audit.command("checkpoint")
@home_option
@async_command
async def audit_checkpoint(home: Path | None) -> None:
    """Sign the head of every audit chain that grew since its last checkpoint (a running
    gateway does this for its own chains every SGX_CHECKPOINT_INTERVAL_S)."""
    from gateway.checkpoints import Checkpoints

    rt = runtime(home)
    async with await rt.gateway_store() as store:
        checkpoints = await Checkpoints(store.engine, schema=store.schema).open()
        made = await checkpoints.take(store, rt.identity("gateway"))
    for c in made:
        click.echo(f"  {c.chain}: head {c.sequence} signed by {c.signer} ({c.key_id})")
    click.echo(f"{len(made)} checkpoint(s) signed")


@audit.command("list")
@home_option
@click.option("--limit", type=int, default=50, show_default=True)
@click.option("--la", "la", default=None, help="only the decisions concerning this local authority")
@async_command
async def audit_list(home: Path | None, limit: int, la: str | None) -> None:
    """Show the latest audit records (of one LA with --la): who, to whom, why."""
    async with await runtime(home).gateway_store() as store:
        records = await store.audit_records(local_authority=la)
    for r in records[-limit:]:
        to = f" → {r.recipient} ({r.recipient_role})" if r.recipient else ""
        where = f" [{r.local_authority}]" if r.local_authority else ""
        click.echo(
            f"{r.decided_at:%Y-%m-%d %H:%M:%S} {r.decision:<13} "
            f"{r.notification_type or '-':<20} {r.sender}{to}{where}: {r.reason}"
            f"  [{r.chain} #{r.sequence}]"
        )


@main.command()
@click.option(
    "--keep",
    type=click.Path(path_type=Path),
    default=None,
    help="keep the demo's state in this directory",
)
@click.option(
    "--inbox",
    "inbox_port",
    type=int,
    default=None,
    help="then serve the LAs' inboxes on this port (and the next) until Ctrl-C",
)
@async_command
async def demo(keep: Path | None, inbox_port: int | None) -> None:
    """Run the whole exchange on the embedded broker and show what arrives where."""
    from safeguard.demo import run_demo

    await run_demo(keep, inbox_port)


# -- agency feeds -----------------------------------------------------------------
# `safeguard producer relay|receipts`, `producer school ingest|watch`,
# `producer health ingest`, `producer police encompass|disclosure`: an agency's side.
producer.add_command(school)
producer.add_command(health)
producer.add_command(police_feed)
producer.add_command(referral)  # `producer referral send|list|show`: as referrer
producer.add_command(producer_consent)  # `producer consent list|grant|refuse`: as author
producer.add_command(producer_information)  # `producer information list|answer|auto-answer`
main.add_command(producer)
main.add_command(keys)  # `safeguard keys init|rotate|revoke|rotate-into-token`
# `safeguard consent ask|status`: an LA asks an item's author for consent to share it.
main.add_command(consent)
# `safeguard push token|revoke|serve|openapi`: the push endpoint is a service of its own
# (one process can serve several agencies), like `gateway run`.
main.add_command(push)
main.add_command(inbox)
queue.add_command(queue_checks)
main.add_command(family)  # `safeguard family outstanding|record|history|summary`
main.add_command(referral_desk)  # `safeguard referral list|show|acknowledge|decide`: as LA
main.add_command(schemas)
main.add_command(quarantine)
main.add_command(db)
# `safeguard police requests`: the exchange's view of open Protocol disclosure requests.
main.add_command(police)


if __name__ == "__main__":
    main()
