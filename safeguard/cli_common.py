"""What every ``safeguard`` command shares.

* **Settings**: :func:`runtime` reads the ``SGX_*`` environment variables
  (``sgx.settings``); ``--home`` overrides ``SGX_HOME``.
* **Errors**: :func:`async_command` (an async command) and :func:`exchange_errors` (a
  synchronous one) print an exchange error as one line, ``error: ...``, and exit with
  status 2. Nothing prints a stack trace at a user.
* **Options** shared by several groups: ``home_option``, ``la_option``,
  :func:`agency_option`, ``send_timeout_option``.
* **Signals**: :func:`until_signalled` runs a service until SIGTERM or SIGINT.
* **The outbox**: :func:`outbox_submit` is how a command that ingests a file hands
  notifications over. Each one is validated and kept in the agency's durable outbox (no
  broker needed), then the relay sends them, waiting at most ``--send-timeout`` seconds.
  Whatever the broker has not taken by then stays in the outbox, and the command says how
  many: the next ``safeguard producer relay`` or ingest sends them.

Exit status of every command: 0 done; 1 the input had bad parts (each reported, the good
part still went); 2 an exchange error (settings, trust directory, store, broker).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import signal
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator, Mapping
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import click

from producers.feeds import Submit
from producers.outbox import Outbox
from safeguard.outbox_wiring import Relayed, offline_outbox, relay_pending
from safeguard.runtime import Runtime
from sgx.errors import ContractError, ExchangeError
from sgx.settings import ExchangeSettings

P = ParamSpec("P")
T = TypeVar("T")
FC = TypeVar("FC", bound=Callable[..., Any])

Service = Callable[[asyncio.Event], Coroutine[Any, Any, None]]

SEND_TIMEOUT_S = 30.0


def runtime(home: Path | None) -> Runtime:
    """The settings of this process; ``home`` (``--home``) overrides ``SGX_HOME``."""
    rt = Runtime()
    if home is not None:
        rt.exchange = ExchangeSettings(home=home)
    return rt


def exchange_errors(fn: Callable[P, T]) -> Callable[P, T]:
    """Print an exchange error as one line and exit with status 2."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return fn(*args, **kwargs)
        except ExchangeError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)

    return wrapper


def async_command(fn: Callable[P, Coroutine[Any, Any, int | None]]) -> Callable[P, None]:
    """Run an async click command; a returned int is the exit status (None means 0)."""

    @functools.wraps(fn)
    @exchange_errors
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> None:
        status = asyncio.run(fn(*args, **kwargs))
        if status:
            sys.exit(status)

    return wrapper


async def until_signalled(run: Service) -> None:
    """Run ``run(stop)``; SIGTERM or SIGINT sets ``stop`` (the service then finishes cleanly)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await run(stop)
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)


home_option = click.option(
    "--home", type=click.Path(path_type=Path), default=None, help="state directory (SGX_HOME)"
)
la_option = click.option(
    "--la", default="la-camden", show_default=True, envvar="SGX_LA", help="local authority id"
)
send_timeout_option = click.option(
    "--send-timeout",
    type=click.FloatRange(min=0.0),
    default=SEND_TIMEOUT_S,
    show_default=True,
    help="seconds to wait for the broker to take what was kept (the rest stays in the outbox)",
)


@contextlib.contextmanager
def named_options(option_of: Mapping[str, str]) -> Iterator[None]:
    """A record's bad field, said as the option that gave it (``option_of``: field path
    to option), as a usage error (status 2)."""
    try:
        yield
    except ContractError as exc:
        raise click.UsageError(f"{option_of.get(exc.path, exc.path)}: {exc.problem}") from exc


def agency_option(default: str | None = None) -> Callable[[FC], FC]:
    """``--agency`` (``SGX_AGENCY``): the agency whose outbox and keys a command uses."""
    return click.option(
        "--agency",
        default=default,
        required=default is None,
        show_default=default is not None,
        envvar="SGX_AGENCY",
        help="the agency's party id in the trust directory",
    )


@contextlib.asynccontextmanager
async def outbox_submit(rt: Runtime, agency: str, *, timeout: float) -> AsyncIterator[Submit]:
    """``submit(name, record)`` into the agency's outbox; on exit, relay what is pending.

    ``submit`` validates (a ContractError names the field) and keeps the notification
    durably before it returns its id. The outbox (and the agency's keys) are opened at the
    first submit, so a file with nothing to push needs neither. On exit the relay sends
    every pending entry, older ones included; the broker is contacted only if there is
    one. If the block fails, nothing is relayed: what was kept stays for the next relay.
    """
    async with contextlib.AsyncExitStack() as stack:
        opened: list[Outbox] = []

        async def submit(name: str, record: Mapping[str, Any]) -> uuid.UUID:
            if not opened:
                opened.append(await stack.enter_async_context(offline_outbox(rt, agency)))
            return await opened[0].add(name, record)

        yield submit
    say_relayed(await relay_pending(rt, agency, timeout=timeout), agency)


def say_relayed(result: Relayed, agency: str) -> None:
    """One line for what the broker took, and a warning for what stays in the outbox."""
    if result.sent:
        click.echo(
            f"outbox: {result.sent} notification(s) sent to the exchange; "
            f"the gateway's receipts: safeguard producer receipts --agency {agency}"
        )
    if result.pending:
        click.echo(
            f"warning: outbox: {result.pending} notification(s) kept but not sent yet: "
            f"{result.problem}; `safeguard producer relay --agency {agency}` "
            "or the next ingest sends them",
            err=True,
        )
