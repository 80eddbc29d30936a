"""``safeguard inbox``: an LA's inbox service, its local accounts and its API clients."""

from __future__ import annotations

import getpass
import sys
from pathlib import Path

import click

from consumers.inbox.openapi import render
from consumers.inbox.settings import InboxSettings
from safeguard.cli_common import (
    async_command,
    exchange_errors,
    home_option,
    la_option,
    runtime,
    until_signalled,
)
from safeguard.inbox_wiring import inbox_store, run_inbox
from sgx.errors import ConfigError


@click.group()
def inbox() -> None:
    """The social worker's inbox: web pages and the case-management API."""


@inbox.command("serve")
@home_option
@la_option
@click.option("--host", default=None, help="address to listen on (SGX_INBOX_HOST)")
@click.option("--port", type=int, default=None, help="port (SGX_INBOX_PORT; 0: any free one)")
@async_command
async def inbox_serve(home: Path | None, la: str, host: str | None, port: int | None) -> None:
    """Serve LA's inbox until SIGTERM/SIGINT (OpenID Connect if SGX_INBOX_OIDC_* are set)."""
    settings = InboxSettings()
    settings = settings.model_copy(
        update={k: v for k, v in (("host", host), ("port", port)) if v is not None}
    )
    rt = runtime(home)
    await until_signalled(lambda stop: run_inbox(rt, la, settings, stop))


@inbox.group("user")
def user() -> None:
    """Local accounts (the embedded default; production signs in through the LA's IdP)."""


@user.command("add")
@home_option
@la_option
@click.argument("username")
@click.option("--worker-id", required=True, help="the worker id queue rows are addressed to")
@click.option("--name", required=True, help="display name")
@click.option(
    "--role", type=click.Choice(["social_worker", "supervisor", "mash_duty"]), required=True
)
@click.option("--team", default=None, help="team (a supervisor sees their team's items)")
@click.option("--password-stdin", is_flag=True, help="read the password from standard input")
@click.option(
    "--replace", is_flag=True, help="change an existing account (its sessions end at once)"
)
@async_command
async def user_add(
    home: Path | None,
    la: str,
    username: str,
    worker_id: str,
    name: str,
    role: str,
    team: str | None,
    password_stdin: bool,
    replace: bool,
) -> None:
    """Add a local account USERNAME (--replace to change one); the password is kept as an
    argon2id hash."""
    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = getpass.getpass("password: ")
        if getpass.getpass("again: ") != password:
            raise ConfigError("the two passwords differ")
    async with await inbox_store(runtime(home), la) as store:
        account = await store.add_account(
            username, password, worker_id=worker_id, name=name, role=role, team=team,
            replace=replace,
        )  # fmt: skip
    click.echo(f"account {account.username} signs in as {account.worker_id} ({role}) in {la}")


@user.command("unlock")
@home_option
@la_option
@click.argument("username")
@async_command
async def user_unlock(home: Path | None, la: str, username: str) -> None:
    """Lift the lockout (and the back-off) that failed sign-ins put on USERNAME."""
    async with await inbox_store(runtime(home), la) as store:
        was_locked = await store.sign_ins.unlock(username)
    if was_locked:
        click.echo(f"{username} in {la} is unlocked: the next sign-in is judged at once")
    else:
        click.echo(f"{username} in {la} was not locked; any back-off on it is lifted")


@user.command("disable")
@home_option
@la_option
@click.argument("username")
@async_command
async def user_disable(home: Path | None, la: str, username: str) -> None:
    """Disable USERNAME: it signs in no more, and its sessions end at once."""
    async with await inbox_store(runtime(home), la) as store:
        if not await store.disable_account(username):
            raise ConfigError(f"no account {username!r} in {la}'s inbox")
    click.echo(f"{username} in {la} is disabled; its sessions have ended")


@inbox.group("sessions")
def sessions() -> None:
    """Sign-in sessions, kept by the server (ending one takes effect on the next request)."""


@sessions.command("revoke")
@home_option
@la_option
@click.option("--user", "username", default=None, help="the sessions of this local account")
@click.option("--worker", default=None, help="the sessions signed in as this worker id")
@click.option("--all", "everyone", is_flag=True, help="every session of this LA's inbox")
@async_command
async def sessions_revoke(
    home: Path | None, la: str, username: str | None, worker: str | None, everyone: bool
) -> None:
    """End sessions at once: one account's, one worker's (single sign-on too), or all."""
    if [username is not None, worker is not None, everyone].count(True) != 1:
        raise ConfigError("name exactly one of --user, --worker or --all")
    async with await inbox_store(runtime(home), la) as store:
        if username is not None:
            ended = await store.sessions.end_account(username, "revoked")
        elif worker is not None:
            ended = await store.sessions.end_worker(worker, "revoked")
        else:
            ended = await store.sessions.end_all("revoked")
    click.echo(f"{ended} session(s) ended in {la}'s inbox")


@inbox.group("client")
def client() -> None:
    """Case-management systems that use the API with a bearer token."""


@client.command("add")
@home_option
@la_option
@click.argument("name")
@click.option(
    "--scope", "scopes", multiple=True, required=True, help="e.g. deliveries:read, queue:all"
)
@click.option("--days", type=int, default=90, show_default=True, help="its token expires then")
@click.option("--replace", is_flag=True, help="give an existing client a new token")
@async_command
async def client_add(
    home: Path | None, la: str, name: str, scopes: tuple[str, ...], days: int, replace: bool
) -> None:
    """Register system NAME; its token is printed once (only its hash is kept)."""
    try:
        async with await inbox_store(runtime(home), la) as store:
            token = await store.add_client(name, scopes, days=days, replace=replace)
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    click.echo(token)
    click.echo(
        f"token for {name} in {la} ({days} days): store it now, it is not shown again", err=True
    )


@client.command("revoke")
@home_option
@la_option
@click.argument("name")
@async_command
async def client_revoke(home: Path | None, la: str, name: str) -> None:
    """Revoke system NAME: its token is refused from the next request on."""
    async with await inbox_store(runtime(home), la) as store:
        if not await store.revoke_client(name):
            raise ConfigError(f"no client {name!r} in {la}'s inbox")
    click.echo(f"{name} in {la} is revoked: its token is refused from now on")


@inbox.command("openapi")
@click.option("--out", type=click.Path(path_type=Path), default=None, help="file (else stdout)")
@exchange_errors
def inbox_openapi(out: Path | None) -> None:
    """Write the case-management API's OpenAPI 3.1 document."""
    if out is None:
        click.echo(render(), nl=False)
    else:
        out.write_text(render(), encoding="utf-8")


@inbox.command("reads")
@home_option
@la_option
@click.option("--item", type=int, default=None, help="only this queue item's reads")
@async_command
async def inbox_reads(home: Path | None, la: str, item: int | None) -> None:
    """Who read which item, how and when (the inbox's read audit), oldest first."""
    async with await inbox_store(runtime(home), la) as store:
        reads = await store.reads(item)
    click.echo(f"{la}: {len(reads)} read(s){f' of item #{item}' if item else ''}")
    for r in reads:
        click.echo(
            f"  {r['read_at']:%Y-%m-%d %H:%M:%S} #{r['item_id']:<5} {r['action']:<7} "
            f"by {r['reader']} ({r['reader_kind']})"
        )
