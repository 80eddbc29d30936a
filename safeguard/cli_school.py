"""``safeguard producer school``: the school attendance feed from the command line.

    safeguard producer school ingest FILE   ingest one MIS attendance export, print the report
    safeguard producer school watch DIR     ingest every new *.csv in DIR, keep the open-case
                                            list current (until SIGTERM/SIGINT)

Both keep their state under the home directory (SQLite): ``open-cases-<school>.db`` (the
LA's open-case list, received through the exchange) and ``attendance-<school>.db`` (what
was last pushed per child pseudonym). ``ingest`` first reads the school's receipts topic
for a newer open-case list (``--no-sync`` skips that; a broker that cannot be reached
only leaves the list held). Every attendance update goes through the school's outbox:
``ingest`` keeps them and then relays them with a time limit
(:func:`safeguard.cli_common.outbox_submit`); ``watch`` runs the relay and the receipt
listener alongside the folder.

Exit status: 0 when every line was good, 1 when the report lists bad lines, 2 on an
exchange error (printed as one line).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import click

from producers.open_cases import OpenCaseListener, OpenCaseStore
from producers.school import IngestReport, PushedStore, SchoolFeed, SchoolProfile, ingest, watch
from safeguard.cli_common import (
    async_command,
    home_option,
    outbox_submit,
    runtime,
    send_timeout_option,
    until_signalled,
)
from safeguard.outbox_wiring import running_outbox
from safeguard.runtime import Runtime
from sgx.errors import TransportError
from sgx.kafka.outbound import receipts_topic_of
from sgx.kafka.wiring import open_cases_group, start_consumer
from sgx.wire.envelope import Opener

_school_options = [
    home_option,
    click.option("--school", "school_id", envvar="SGX_SCHOOL", required=True, help="party id"),
    click.option("--urn", envvar="SGX_SCHOOL_URN", required=True, help="the school's URN"),
    click.option("--author", envvar="SGX_SCHOOL_AUTHOR", required=True, help="who signs updates"),
    click.option(
        "--role", envvar="SGX_SCHOOL_AUTHOR_ROLE", default="Attendance Officer", show_default=True
    ),
    click.option("--contact", envvar="SGX_SCHOOL_CONTACT", default=None, help="how to reach them"),
]


def school_options(fn: click.decorators.FC) -> click.decorators.FC:
    for option in reversed(_school_options):
        fn = option(fn)
    return fn


@contextlib.asynccontextmanager
async def school_feed(
    rt: Runtime, school_id: str, urn: str, author: str, role: str, contact: str | None
) -> AsyncIterator[SchoolFeed]:
    """The school's profile, pseudonymiser and its two SQLite stores, closed on exit."""
    party = rt.trust().party(school_id)
    profile = SchoolProfile(
        agency_id=school_id,
        school_urn=urn,
        school_name=party.name,
        author_name=author,
        author_role=role,
        contact=contact,
    )
    async with (
        await OpenCaseStore.open(
            None, rt.sqlite(f"open-cases-{school_id}.db"), owner=school_id
        ) as cases,
        await PushedStore.open(
            None, rt.sqlite(f"attendance-{school_id}.db"), owner=school_id
        ) as pushed,
    ):
        yield SchoolFeed(profile, rt.pseudonyms(), cases, pushed)


def open_case_listener(rt: Runtime, school_id: str, store: OpenCaseStore) -> OpenCaseListener:
    trust = rt.trust()
    return OpenCaseListener(
        school_id=school_id,
        opener=Opener(rt.identity(school_id, trust), trust),
        contract=rt.contract(),
        store=store,
        topic=receipts_topic_of(trust, school_id),
    )


@click.group("school")
def school() -> None:
    """School attendance feed: MIS exports in, attendance updates out."""


@school.command("ingest")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@school_options
@click.option("--no-sync", is_flag=True, help="do not read the exchange for a newer open-case list")
@send_timeout_option
@async_command
async def ingest_command(
    file: Path,
    home: Path | None,
    school_id: str,
    urn: str,
    author: str,
    role: str,
    contact: str | None,
    no_sync: bool,
    send_timeout: float,
) -> int:
    """Ingest one attendance export FILE and print what was pushed and every bad line."""
    rt = runtime(home)
    async with school_feed(rt, school_id, urn, author, role, contact) as feed:
        if not no_sync:
            await _sync(rt, school_id, feed.open_cases)
        async with outbox_submit(rt, school_id, timeout=send_timeout) as submit:
            report = await ingest(file, feed=feed, submit=submit)
            _print(report)
    return 1 if report.errors else 0


async def _sync(rt: Runtime, school_id: str, store: OpenCaseStore) -> None:
    try:
        await open_case_listener(rt, school_id, store).catch_up(rt.kafka)
    except TransportError as exc:
        click.echo(f"warning: open-case list not refreshed, using the one held ({exc})", err=True)


def _print(report: IngestReport) -> None:
    for line in report.lines():
        click.echo(line)


@school.command("watch")
@click.argument("directory", type=click.Path(exists=True, file_okay=False, path_type=Path))
@school_options
@click.option("--poll", type=float, default=2.0, show_default=True, help="seconds between scans")
@async_command
async def watch_command(
    directory: Path,
    home: Path | None,
    school_id: str,
    urn: str,
    author: str,
    role: str,
    contact: str | None,
    poll: float,
) -> None:
    """Ingest each new *.csv in DIRECTORY once (until SIGINT/SIGTERM).

    Files move to DIRECTORY/processed or DIRECTORY/failed with a report beside them. The
    open-case list is kept current from the exchange meanwhile, and the school's outbox
    relay and receipt listener run alongside.
    """
    rt = runtime(home)

    async def run(stop: asyncio.Event) -> None:
        async with (
            school_feed(rt, school_id, urn, author, role, contact) as feed,
            running_outbox(rt, school_id) as outbox,
        ):
            listener = open_case_listener(rt, school_id, feed.open_cases)
            consumer = await start_consumer(
                rt.kafka,
                [receipts_topic_of(rt.trust(), school_id)],
                group_id=open_cases_group(school_id),
            )
            try:
                async with asyncio.TaskGroup() as tasks:
                    tasks.create_task(listener.run(consumer, stop))
                    tasks.create_task(watch(directory, outbox.add, stop, feed=feed, poll_s=poll))
            except ExceptionGroup as group:
                raise group.exceptions[0] from group  # one clear line, not a group
            finally:
                await consumer.stop()

    await until_signalled(run)
