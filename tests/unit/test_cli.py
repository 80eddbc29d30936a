"""The ``safeguard`` command tree and what its commands share (no broker here).

The police feed's commands run with a broker address where nothing listens: what they
read is kept in the force's outbox all the same, and they say so.
"""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from prometheus_client import CollectorRegistry, generate_latest

from safeguard.cli import main
from safeguard.cli_common import async_command, until_signalled
from safeguard.cli_push import AgencyMetrics
from safeguard.parties import DEMO_PARTIES, POLICE, SCHOOL
from sgx.errors import ConfigError
from sgx.kafka.embedded import free_port
from sgx.keys.key_admin import init_trust
from sgx.ops.metrics import ProducerMetrics

REPO = Path(__file__).resolve().parents[2]
POLICE_FIXTURES = REPO / "tests" / "fixtures" / "police"

COMMANDS = [
    ["producer", "relay"],
    ["producer", "receipts"],
    ["producer", "school", "ingest"],
    ["producer", "school", "watch"],
    ["producer", "health", "ingest"],
    ["producer", "police", "encompass"],
    ["producer", "police", "disclosure"],
    ["push", "token"],
    ["push", "revoke"],
    ["push", "serve"],
    ["push", "openapi"],
    ["police", "requests"],
    ["referral", "list"],
    ["referral", "show"],
    ["referral", "acknowledge"],
    ["referral", "decide"],
    ["gateway", "run"],
    ["consumer", "run"],
    ["queue", "list"],
    ["inbox", "serve"],
    ["inbox", "user", "add"],
    ["inbox", "client", "add"],
    ["inbox", "reads"],
    ["inbox", "openapi"],
    ["keys", "rotate-into-token"],
    ["schemas", "check"],
    ["quarantine", "list"],
    ["quarantine", "show"],
    ["quarantine", "replay"],
]


@pytest.mark.parametrize("path", COMMANDS, ids=" ".join)
def test_every_command_is_registered_where_documented(path: list[str]) -> None:
    command: click.Command = main
    for name in path:
        assert isinstance(command, click.Group), f"{command.name} has no subcommands"
        found = command.get_command(click.Context(command), name)
        assert found is not None, f"no `safeguard {' '.join(path)}`"
        command = found
    result = CliRunner().invoke(main, [*path, "--help"], prog_name="safeguard")
    assert result.exit_code == 0, result.output
    assert f"Usage: safeguard {' '.join(path)}" in result.output


def test_the_readme_shows_every_agency_feed_command() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    feeds = readme[readme.index("## Agency feeds") :]
    for path in COMMANDS:
        if path[0] in ("producer", "push", "police"):
            assert f"safeguard {' '.join(path)} " in feeds, path
    assert "\nmake demo    # " in readme
    assert "\nmake test    # " in readme


def test_async_command_prints_an_exchange_error_as_one_line_and_exits_2() -> None:
    @click.command()
    @async_command
    async def failing() -> None:
        await asyncio.sleep(0)
        raise ConfigError("trust/directory.json: no party 'x'")

    result = CliRunner().invoke(failing)
    assert result.exit_code == 2
    assert result.output == "error: trust/directory.json: no party 'x'\n"


def test_async_command_exits_with_the_status_the_command_returns() -> None:
    @click.command()
    @click.argument("status", type=int)
    @async_command
    async def returning(status: int) -> int:
        await asyncio.sleep(0)
        return status

    assert CliRunner().invoke(returning, ["0"]).exit_code == 0
    assert CliRunner().invoke(returning, ["1"]).exit_code == 1


async def test_until_signalled_stops_the_service_on_sigterm() -> None:
    stopped = []

    async def service(stop: asyncio.Event) -> None:
        os.kill(os.getpid(), signal.SIGTERM)  # the handler is installed by now
        await asyncio.wait_for(stop.wait(), 5)
        stopped.append(True)

    await until_signalled(service)
    assert stopped == [True]
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # the handler is removed again


def invoke_offline(args: list[str], home: Path) -> tuple[int, str]:
    """``safeguard ARGS --home HOME`` with a broker address where nothing listens."""
    env = {"SGX_KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}", "SGX_METRICS_PORT": "-1"}
    result = CliRunner().invoke(main, [*args, "--home", str(home)], env=env)
    return result.exit_code, result.output


def test_police_export_keeps_the_good_objects_and_names_the_bad_field(tmp_path: Path) -> None:
    init_trust(tmp_path / "trust", DEMO_PARTIES)
    batch = str(POLICE_FIXTURES / "batch_with_bad_item.json")
    status, output = invoke_offline(["producer", "police", "encompass", batch], tmp_path)
    assert status == 1, output
    lines = output.splitlines()
    assert lines[0] == "pushed 1 police notification(s), 1 error(s)"
    assert lines[1].startswith("pushed  [0] OPERATION_ENCOMPASS ")
    assert lines[1].endswith("(and the key adult at school-hillside)")
    assert lines[2].startswith("error   police export: field '[1].incident.child_present': ")
    assert lines[3].startswith(
        "warning: outbox: 1 notification(s) kept but not sent yet: the broker cannot be "
        "reached (start Kafka producer: "
    )
    assert "`safeguard producer relay --agency met-police` or the next ingest" in lines[3]

    status, output = invoke_offline(["producer", "receipts", "--agency", POLICE], tmp_path)
    assert status == 0, output
    (entry,) = output.splitlines()[1:-1]
    assert entry.split()[0] == lines[1].split()[3]
    assert entry.split()[1:2] + entry.split()[4:] == ["police_notification", "PENDING", "-"]
    assert output.splitlines()[-1] == "1 entry, 1 awaiting"


def test_police_export_of_the_other_kind_is_refused_before_anything_is_kept(
    tmp_path: Path,
) -> None:
    init_trust(tmp_path / "trust", DEMO_PARTIES)
    encompass = str(POLICE_FIXTURES / "encompass.json")
    status, output = invoke_offline(["producer", "police", "disclosure", encompass], tmp_path)
    assert status == 1, output
    assert output.splitlines() == [
        "pushed 0 police notification(s), 1 error(s)",
        "error   police export: field '[0].type': is operation_encompass: "
        "push it with `safeguard producer police encompass`",
    ]


def test_police_export_from_another_agency_is_refused(tmp_path: Path) -> None:
    init_trust(tmp_path / "trust", DEMO_PARTIES)
    encompass = str(POLICE_FIXTURES / "encompass.json")
    args = ["producer", "police", "encompass", encompass, "--agency", SCHOOL]
    status, output = invoke_offline(args, tmp_path)
    assert status == 1, output
    assert (
        f"error   police export: field '[0].force.id': is not {SCHOOL}, "
        "the force pushing this export"
    ) in output.splitlines()


def test_several_agencies_metrics_are_served_together_labelled() -> None:
    school, police = CollectorRegistry(), CollectorRegistry()
    ProducerMetrics(school).outbox_depth.set(2)
    ProducerMetrics(police).outbox_depth.set(0)
    served = CollectorRegistry()
    served.register(AgencyMetrics({SCHOOL: school, POLICE: police}))
    text = generate_latest(served).decode()
    assert text.count("# TYPE sgx_producer_outbox_depth gauge") == 1
    assert f'sgx_producer_outbox_depth{{agency="{SCHOOL}"}} 2.0' in text
    assert f'sgx_producer_outbox_depth{{agency="{POLICE}"}} 0.0' in text


def test_inbox_accounts_and_clients_from_the_command_line(tmp_path: Path) -> None:
    from safeguard.parties import DEMO_PARTIES
    from sgx.keys.key_admin import init_trust

    init_trust(tmp_path / "trust", DEMO_PARTIES)
    home = ["--home", str(tmp_path), "--la", "la-camden"]
    runner = CliRunner()
    added = runner.invoke(
        main,
        [
            "inbox",
            "user",
            "add",
            "amara",
            *home,
            "--worker-id",
            "sw-amara",
            "--name",
            "Amara",
            "--role",
            "social_worker",
            "--team",
            "Team 1",
            "--password-stdin",
        ],
        input="a long enough password\n",
    )
    assert added.exit_code == 0, added.output
    assert "account amara signs in as sw-amara (social_worker) in la-camden" in added.output
    short = runner.invoke(
        main,
        [
            "inbox",
            "user",
            "add",
            "ben",
            *home,
            "--worker-id",
            "sw-ben",
            "--name",
            "Ben",
            "--role",
            "social_worker",
            "--password-stdin",
        ],
        input="short\n",
    )
    assert short.exit_code != 0
    assert "at least 12 characters" in short.output
    client = runner.invoke(
        main, ["inbox", "client", "add", "mosaic", *home, "--scope", "queue:all"]
    )
    assert client.exit_code == 0, client.output
    assert client.stdout.startswith("sgxi_")
    wrong = runner.invoke(main, ["inbox", "client", "add", "x", *home, "--scope", "queue:everyone"])
    assert wrong.exit_code != 0
    assert "unknown scope 'queue:everyone'" in wrong.output
    reads = runner.invoke(main, ["inbox", "reads", *home])
    assert reads.exit_code == 0, reads.output
    assert "la-camden: 0 read(s)" in reads.output
