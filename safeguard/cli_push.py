"""``safeguard push``: the push endpoint's commands (mint and revoke tokens, serve, OpenAPI).

``push serve`` hands each accepted notification to the agency's publisher (validate, seal,
publish, await the broker's ack) until the producer outbox is wired in as ``accept``.
Tokens live in ``<home>/push/tokens.json``; the service reads them when it starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import signal
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import click
import uvicorn

from producers.openapi import openapi_document, render
from producers.push import Accept, push_app
from producers.push_tokens import PushTokens, mint_token, revoke_tokens, tokens_file
from safeguard.runtime import Runtime, publisher
from sgx.errors import ConfigError, ExchangeError, UnknownSender
from sgx.settings import ExchangeSettings

log = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")
START_LIMIT_S = 10.0
PUSHING_KINDS = frozenset({"school", "health", "police", "local_authority"})


def _runtime(home: Path | None) -> Runtime:
    rt = Runtime()
    if home is not None:
        rt.exchange = ExchangeSettings(home=home)
    return rt


def _exchange_errors(fn: Callable[P, T]) -> Callable[P, T]:
    """Print an exchange error as one line and exit 2, as the rest of the CLI does."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return fn(*args, **kwargs)
        except ExchangeError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)

    return wrapper


def _check_agency(rt: Runtime, agency: str) -> None:
    """Refuse a party that is not in the trust directory or does not send notifications."""
    trust = rt.trust()
    try:
        party = trust.party(agency)
    except UnknownSender:
        raise ConfigError(f"{rt.exchange.trust_dir}: no party {agency!r}") from None
    if party.kind not in PUSHING_KINDS:
        raise ConfigError(f"{agency} is a {party.kind}, not an agency that pushes notifications")


class _QuietServer(uvicorn.Server):
    """A uvicorn server that leaves signal handling to the caller's stop event."""

    @contextlib.contextmanager
    def capture_signals(self) -> Any:
        yield


async def run_push(
    rt: Runtime,
    agencies: list[str],
    stop: asyncio.Event,
    *,
    host: str = "127.0.0.1",
    port: int = 8080,
    ready: asyncio.Event | None = None,
) -> None:
    """Serve the push endpoint for ``agencies`` until ``stop`` is set."""
    for agency in agencies:
        _check_agency(rt, agency)
    tokens = PushTokens.load(tokens_file(rt.exchange.home), frozenset(agencies))
    missing = sorted(set(agencies) - tokens.agencies)
    if missing:
        raise ConfigError(
            f"no push token for {', '.join(missing)} in {tokens_file(rt.exchange.home)}: "
            "mint one with `safeguard push token AGENCY`"
        )
    async with contextlib.AsyncExitStack() as stack:
        accepts: dict[str, Accept] = {}
        for agency in agencies:
            accepts[agency] = (await stack.enter_async_context(publisher(rt, agency))).publish
        app = push_app(accepts, tokens, contract=rt.contract())
        config = uvicorn.Config(app, host=host, port=port, lifespan="off", log_config=None)
        await _serve(_QuietServer(config), stop, ready)


async def _serve(server: uvicorn.Server, stop: asyncio.Event, ready: asyncio.Event | None) -> None:
    task = asyncio.create_task(server.serve())
    try:
        async with asyncio.timeout(START_LIMIT_S):
            while not server.started:
                if task.done():
                    task.result()
                    raise ConfigError("the push endpoint stopped while starting (port in use?)")
                await asyncio.sleep(0.01)
        log.info("push endpoint on http://%s:%d", server.config.host, server.config.port)
        if ready is not None:
            ready.set()
        stopping = asyncio.create_task(stop.wait())
        await asyncio.wait({task, stopping}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
    finally:
        server.should_exit = True
        await task


async def _until_signalled(run: Callable[[asyncio.Event], Coroutine[Any, Any, None]]) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await run(stop)


home_option = click.option(
    "--home", type=click.Path(path_type=Path), default=None, help="state directory (SGX_HOME)"
)


@click.group()
def push() -> None:
    """The push endpoint: agency systems POST notifications as JSON."""


@push.command("token")
@home_option
@click.argument("agency")
@_exchange_errors
def push_token(home: Path | None, agency: str) -> None:
    """Mint a bearer token for AGENCY: printed once, only its hash is kept."""
    rt = _runtime(home)
    _check_agency(rt, agency)
    token = mint_token(tokens_file(rt.exchange.home), agency)
    click.echo(token)
    click.echo(f"token for {agency}: store it now, it is not shown again", err=True)


@push.command("revoke")
@home_option
@click.argument("agency")
@_exchange_errors
def push_revoke(home: Path | None, agency: str) -> None:
    """Revoke every push token of AGENCY (a running endpoint drops them on restart)."""
    removed = revoke_tokens(tokens_file(_runtime(home).exchange.home), agency)
    click.echo(f"revoked {removed} token(s) of {agency}")


@push.command("serve")
@home_option
@click.option("--agency", "agencies", multiple=True, required=True, help="agency to serve")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=8080, show_default=True)
@_exchange_errors
def push_serve(home: Path | None, agencies: tuple[str, ...], host: str, port: int) -> None:
    """Serve the push endpoint for one or more agencies until interrupted."""
    rt = _runtime(home)
    asyncio.run(
        _until_signalled(lambda stop: run_push(rt, list(agencies), stop, host=host, port=port))
    )


@push.command("openapi")
@click.option("--out", type=click.Path(path_type=Path), default=None, help="file (else stdout)")
@_exchange_errors
def push_openapi(out: Path | None) -> None:
    """Write the push endpoint's OpenAPI document (derived from the Avro schemas)."""
    text = render(openapi_document(_runtime(None).contract()))
    if out is None:
        click.echo(text, nl=False)
    else:
        out.write_text(text, encoding="utf-8")
