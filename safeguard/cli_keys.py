"""``safeguard keys``: the trust directory and its keys (create, rotate, revoke, move a
signing key into a PKCS#11 token)."""

from __future__ import annotations

from pathlib import Path

import click

from sgx.errors import ExchangeError


@click.group()
def keys() -> None:
    """Trust directory and keys."""


@keys.command("init")
@click.argument("directory", type=click.Path(path_type=Path))
def keys_init(directory: Path) -> None:
    """Generate a working demo trust directory in DIRECTORY."""
    from safeguard.parties import DEMO_CONNECTORS, DEMO_PARTIES
    from sgx.keys.key_admin import init_trust

    try:
        trust = init_trust(directory, DEMO_PARTIES, DEMO_CONNECTORS)
    except ExchangeError as exc:
        raise click.ClickException(str(exc)) from exc
    for party in trust.parties():
        click.echo(f"{party.id:<18} {party.kind:<16} key {party.keys[-1].kid}")
    for connector in trust.connectors():
        carries = ", ".join(connector.carries)
        click.echo(f"{connector.id:<18} {'connector':<16} carries {carries}")
    click.echo(f"private keys under {directory / 'private'} (owner-only)")


@keys.command("rotate")
@click.argument("directory", type=click.Path(path_type=Path))
@click.argument("party")
@click.option(
    "--in",
    "delay_s",
    type=click.FloatRange(min=0),
    default=0.0,
    show_default=True,
    help="seconds until the new key is used: give every service time to reload "
    "(SGX_TRUST_RELOAD_S) so nothing is sealed to a key a reader does not hold yet",
)
def keys_rotate(directory: Path, party: str, delay_s: float) -> None:
    """Give PARTY a new key (its public half into the directory); the old one stays valid
    until revoked, so a backlog sealed under it still opens."""
    from datetime import timedelta

    from sgx.keys.key_admin import rotate_key
    from sgx.keys.trust import utc_now

    not_before = utc_now() + timedelta(seconds=delay_s) if delay_s else None
    try:
        click.echo(rotate_key(directory, party, not_before=not_before))
    except ExchangeError as exc:
        raise click.ClickException(str(exc)) from exc


@keys.command("revoke")
@click.argument("directory", type=click.Path(path_type=Path))
@click.argument("kid")
def keys_revoke(directory: Path, kid: str) -> None:
    """Revoke key KID (``<party>/<...>``): nothing it signs verifies any more, nothing is
    sealed to it; running services pick the change up within SGX_TRUST_RELOAD_S or at once
    on SIGHUP, and quarantine what still arrives under it as unknown_key_id."""
    from sgx.keys.key_admin import revoke_key

    party = kid.split("/", 1)[0]
    try:
        revoke_key(directory, party, kid)
    except ExchangeError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"revoked {kid} of {party}")


@keys.command("rotate-into-token")
@click.argument("directory", type=click.Path(path_type=Path))
@click.argument("party")
@click.option(
    "--module",
    required=True,
    help="the PKCS#11 library, e.g. /usr/lib/softhsm/libsofthsm2.so",
)
@click.option("--token", required=True, help="the token's label")
@click.option(
    "--pin-file",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="file holding the token's user PIN (mode 0600)",
)
@click.option(
    "--pin-env",
    default=None,
    help="or: the environment variable holding the PIN (read whenever the key is loaded)",
)
def keys_rotate_into_token(
    directory: Path,
    party: str,
    module: str,
    token: str,
    pin_file: Path | None,
    pin_env: str | None,
) -> None:
    """Give PARTY a new key whose signing half is generated in a PKCS#11 token (it never
    leaves it); the old keys stay valid until revoked. Prints the new key id."""
    from pydantic import ValidationError

    from sgx.keys.hsm import TokenConfig
    from sgx.keys.key_admin import rotate_key_into_token

    if (pin_file is None) == (pin_env is None):
        raise click.UsageError("give one of --pin-file and --pin-env")
    try:
        config = TokenConfig(module=module, token=token, pin_file=pin_file, pin_env=pin_env)
    except ValidationError as exc:
        problems = "; ".join(
            f"--{str(err['loc'][0]).replace('_', '-')}: {err['msg']}" if err["loc"] else err["msg"]
            for err in exc.errors(include_url=False)
        )
        raise click.UsageError(problems) from exc
    try:
        click.echo(rotate_key_into_token(directory, party, config))
    except ExchangeError as exc:
        raise click.ClickException(str(exc)) from exc
