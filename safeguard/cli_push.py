"""``safeguard push``: the push endpoint's commands (mint and revoke tokens, serve, OpenAPI).

The push endpoint is a service of its own (like ``gateway run``) and can serve several
agencies at once, so its group sits at the top of the CLI rather than under ``producer``.

``push serve`` hands each accepted notification to the agency's outbox
(:meth:`producers.outbox.Outbox.add`: validate, then keep durably) and answers 202 once it
is kept; the agency's outbox relay and receipt listener run alongside the HTTP server, so
the broker may be down for a while without losing or refusing anything. The outbox
gauges are served on ``/metrics`` (``SGX_METRICS_PORT``; with several agencies each
sample carries an ``agency`` label). Tokens live in ``<home>/push/tokens.json``; the
service reads them when it starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import click
import uvicorn
from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from producers.consent_requests import ConsentDesk, ConsentRequests
from producers.information_requests import InformationRequests
from producers.openapi import openapi_document, render
from producers.outbox import OutboxStore
from producers.push import Accept, push_app
from producers.push_information import InformationBoard
from producers.push_referrals import ReferralBoard
from producers.push_tokens import (
    DEFAULT_DAYS,
    SCOPES,
    PushTokens,
    Scope,
    mint_token,
    revoke_tokens,
    tokens_file,
)
from producers.referral_outcomes import ReferralOutcomes
from producers.relay import RelayOptions
from safeguard.cli_common import (
    async_command,
    exchange_errors,
    home_option,
    runtime,
    until_signalled,
)
from safeguard.monitoring import producer_monitoring
from safeguard.outbox_wiring import outbox_services
from safeguard.runtime import Runtime, serving_metrics
from sgx.errors import ConfigError, UnknownSender
from sgx.keys.kinds import AGENCY_KINDS

log = logging.getLogger(__name__)

START_LIMIT_S = 10.0
PUSHING_KINDS = frozenset(AGENCY_KINDS)


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
    registry: CollectorRegistry | None = None,
    options: RelayOptions | None = None,
) -> None:
    """Serve the push endpoint for ``agencies``, with their outbox relays, until ``stop``.

    Stops early (raising its error) if an outbox relay or receipt listener fails.
    """
    agencies = list(dict.fromkeys(agencies))
    tokens = _tokens(rt, agencies)
    registry = registry or CollectorRegistry()
    async with contextlib.AsyncExitStack() as stack:
        accepts: dict[str, Accept] = {}
        stores: dict[str, OutboxStore] = {}
        desks: dict[str, ConsentDesk] = {}
        boards: dict[str, ReferralBoard] = {}
        checks: dict[str, InformationBoard] = {}
        services: list[asyncio.Task[None]] = []
        registries = _registries(agencies, registry)
        for agency, metrics in registries.items():
            outbox, tasks = await stack.enter_async_context(
                outbox_services(rt, agency, registry=metrics, options=options)
            )
            accepts[agency], stores[agency] = outbox.add, outbox.store
            book = ConsentRequests(outbox.store.engine, schema=outbox.store.schema)
            desks[agency] = ConsentDesk(book, outbox)
            outcomes = ReferralOutcomes(outbox.store.engine, schema=outbox.store.schema)
            boards[agency] = ReferralBoard(outbox.store, outcomes, agency)
            asked = InformationRequests(outbox.store.engine, schema=outbox.store.schema)
            checks[agency] = InformationBoard(asked, outbox)
            services += tasks
        readiness = await stack.enter_async_context(producer_monitoring(rt, registries, stores))
        await stack.enter_async_context(serving_metrics(rt, registry, readiness))
        app = push_app(
            accepts, tokens, contract=rt.contract(), consents=desks, referrals=boards,
            information=checks,
        )  # fmt: skip
        config = uvicorn.Config(app, host=host, port=port, lifespan="off", log_config=None)
        await _serve(_QuietServer(config), stop, ready, services)


def _tokens(rt: Runtime, agencies: list[str]) -> PushTokens:
    for agency in agencies:
        _check_agency(rt, agency)
    tokens = PushTokens.load(tokens_file(rt.exchange.home), frozenset(agencies))
    missing = sorted(set(agencies) - tokens.agencies)
    if missing:
        raise ConfigError(
            f"no push token for {', '.join(missing)} in {tokens_file(rt.exchange.home)}: "
            "mint one with `safeguard push token AGENCY`"
        )
    return tokens


def _registries(agencies: list[str], registry: CollectorRegistry) -> dict[str, CollectorRegistry]:
    """Where each agency's producer metrics go: ``registry`` itself, or one each, labelled."""
    if len(agencies) == 1:
        return {agencies[0]: registry}
    own = {agency: CollectorRegistry() for agency in agencies}
    registry.register(AgencyMetrics(own))
    return own


class AgencyMetrics(Collector):
    """Several agencies' producer metrics as one set of families, labelled ``agency``.

    Each agency's ``ProducerMetrics`` lives in its own registry (the metric names are the
    same for every agency); this collector serves them together.
    """

    def __init__(self, registries: Mapping[str, CollectorRegistry]) -> None:
        self._registries = dict(registries)

    def collect(self) -> Iterator[Metric]:
        families: dict[str, Metric] = {}
        for agency, registry in self._registries.items():
            for metric in registry.collect():
                family = families.get(metric.name)
                if family is None:
                    family = Metric(metric.name, metric.documentation, metric.type, metric.unit)
                    families[metric.name] = family
                family.samples += [
                    sample._replace(labels={**sample.labels, "agency": agency})
                    for sample in metric.samples
                ]
        yield from families.values()


async def _serve(
    server: uvicorn.Server,
    stop: asyncio.Event,
    ready: asyncio.Event | None,
    services: list[asyncio.Task[None]],
) -> None:
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
        await asyncio.wait({task, stopping, *services}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
    finally:
        server.should_exit = True
        await task


@click.group()
def push() -> None:
    """The push endpoint: agency systems POST notifications as JSON."""


@push.command("token")
@home_option
@click.argument("agency")
@click.option(
    "--scope",
    "scopes",
    type=click.Choice(SCOPES),
    multiple=True,
    default=("notifications",),
    show_default=True,
    help="notifications: send them; consent: answer consent requests; information: list and "
    "answer MASH information requests (repeat for several)",
)
@click.option("--days", type=int, default=DEFAULT_DAYS, show_default=True, help="it expires then")
@exchange_errors
def push_token(home: Path | None, agency: str, scopes: tuple[Scope, ...], days: int) -> None:
    """Mint a bearer token for AGENCY: printed once, only its hash is kept; a running
    endpoint accepts it within a second."""
    rt = runtime(home)
    _check_agency(rt, agency)
    token = mint_token(tokens_file(rt.exchange.home), agency, scopes, days)
    click.echo(token)
    click.echo(
        f"token for {agency} ({', '.join(sorted(set(scopes)))}; {days} days): store it now,"
        " it is not shown again",
        err=True,
    )


@push.command("revoke")
@home_option
@click.argument("agency")
@exchange_errors
def push_revoke(home: Path | None, agency: str) -> None:
    """Revoke every push token of AGENCY (a running endpoint refuses them within a second)."""
    removed = revoke_tokens(tokens_file(runtime(home).exchange.home), agency)
    click.echo(f"revoked {removed} token(s) of {agency}")


@push.command("serve")
@home_option
@click.option("--agency", "agencies", multiple=True, required=True, help="agency to serve")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=8080, show_default=True)
@async_command
async def push_serve(home: Path | None, agencies: tuple[str, ...], host: str, port: int) -> None:
    """Serve the push endpoint for one or more agencies until SIGTERM/SIGINT.

    Each agency's outbox relay and receipt listener run alongside; the broker must answer
    when the service starts.
    """
    rt = runtime(home)
    await until_signalled(lambda stop: run_push(rt, list(agencies), stop, host=host, port=port))


@push.command("openapi")
@click.option("--out", type=click.Path(path_type=Path), default=None, help="file (else stdout)")
@exchange_errors
def push_openapi(out: Path | None) -> None:
    """Write the push endpoint's OpenAPI document (derived from the Avro schemas)."""
    text = render(openapi_document(runtime(None).contract()))
    if out is None:
        click.echo(text, nl=False)
    else:
        out.write_text(text, encoding="utf-8")
