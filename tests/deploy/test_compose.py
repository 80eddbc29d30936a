"""deploy/compose/compose.yaml: renders, matches the Compose Specification, and hangs together.

``docker compose config`` runs when the Compose plugin is installed. Where it is not (this
project's machines have the docker CLI without the plugin), the file is checked against
the Compose Specification's JSON schema (as vendored by check-jsonschema) instead, plus
the cross-references Compose would resolve: secrets files, mounts, services, commands.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import pytest

from deploy import acl_plan
from safeguard.cli import main as safeguard_cli
from safeguard.parties import DEMO_CONNECTORS, DEMO_PARTIES
from sgx.keys.key_admin import init_trust
from tests.deploy.catalogue import REPO
from tests.deploy.yaml_strict import load

COMPOSE_DIR = REPO / "deploy" / "compose"
COMPOSE = COMPOSE_DIR / "compose.yaml"
MAKE_CERTS = REPO / "deploy" / "scripts" / "make-certs.sh"
SERVICES = {"gateway", "consumer", "inbox", "push"}  # the exchange's own services
_VARIABLE = re.compile(r"\$\{(\w+)(?::-([^}]*))?\}")


@pytest.fixture(scope="module")
def secrets(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The secrets directory as the README says to make it: make-certs.sh, then keys init."""
    directory = tmp_path_factory.mktemp("compose") / "secrets"
    subprocess.run(["bash", str(MAKE_CERTS), str(directory)], check=True, capture_output=True)
    init_trust(directory / "trust", DEMO_PARTIES)
    return directory


def _interpolate(text: str, env: dict[str, str]) -> str:
    return _VARIABLE.sub(lambda m: env.get(m[1], m[2] or ""), text)


def _compose() -> dict[str, Any]:
    data: dict[str, Any] = load(COMPOSE)
    return data


def _services() -> dict[str, dict[str, Any]]:
    services: dict[str, dict[str, Any]] = _compose()["services"]
    return services


def _host_path(value: str, secrets: Path) -> Path:
    path = Path(_interpolate(value, {"SGX_SECRETS": str(secrets)}))
    return path if path.is_absolute() else (COMPOSE_DIR / path).resolve()


def _sources(service: dict[str, Any], secrets: Path) -> Iterator[tuple[str, bool]]:
    """Each volume's source, and whether it is a host path (a bind mount)."""
    for volume in service.get("volumes", []):
        source = _interpolate(volume, {"SGX_SECRETS": str(secrets)}).split(":")[0]
        yield source, source.startswith((".", "/"))


def test_compose_file_matches_the_compose_specification() -> None:
    checker = shutil.which("check-jsonschema", path=str(Path(sys.executable).parent))
    assert checker is not None, "check-jsonschema is missing: pip install -e '.[dev]'"
    result = subprocess.run(
        [checker, "--builtin-schema", "vendor.compose-spec", str(COMPOSE)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def _compose_plugin() -> bool:
    docker = shutil.which("docker")
    if docker is None:
        return False
    probe = subprocess.run([docker, "compose", "version"], capture_output=True, text=True)
    return probe.returncode == 0


def test_docker_compose_config_renders_where_the_plugin_exists(secrets: Path) -> None:
    if not _compose_plugin():
        # said, not passed: the schema test above and the cross-reference tests below
        # stand in for `docker compose config` (see the module docstring)
        pytest.skip("no docker compose plugin to run `docker compose config`")
    env = {**os.environ, "SGX_SECRETS": str(secrets)}
    result = subprocess.run(
        ["docker", "compose", "-f", str(COMPOSE), "config", "--quiet"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert result.returncode == 0, result.stderr


def test_every_secret_file_and_mount_the_services_need_exists(secrets: Path) -> None:
    for name, service in _services().items():
        env_file = service.get("env_file")
        if env_file is not None:
            assert _host_path(env_file, secrets).is_file(), f"{name}: env_file {env_file}"
        for source, bind in _sources(service, secrets):
            assert not bind or _host_path(source, secrets).exists(), f"{name}: mount {source}"
    assert (secrets / "trust" / "directory.json").is_file()


def test_services_reference_declared_services_and_volumes(secrets: Path) -> None:
    compose = _compose()
    services, volumes = compose["services"], set(compose["volumes"])
    for name, service in services.items():
        assert set(service.get("depends_on", [])) <= set(services), name
        for source, bind in _sources(service, secrets):
            assert bind or source in volumes, f"{name}: volume {source} not declared"


def test_three_kraft_brokers_with_sasl_ssl_and_deny_by_default(secrets: Path) -> None:
    services = _services()
    brokers = {n: s["environment"] for n, s in services.items() if re.fullmatch(r"kafka-\d", n)}
    assert len(brokers) == 3
    for env in brokers.values():
        assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
        assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"].count("@") == 3
        assert "CLIENT:SASL_SSL" in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"]
        assert "PLAINTEXT" not in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"]
        assert env["KAFKA_LISTENER_NAME_CLIENT_SASL_ENABLED_MECHANISMS"] == "SCRAM-SHA-512"
        assert env["KAFKA_ALLOW_EVERYONE_IF_NO_ACL_FOUND"] == "false"
        keystore = env["KAFKA_SSL_KEYSTORE_LOCATION"].removeprefix("/secrets/")
        assert (secrets / keystore).is_file(), keystore
    assert len({env["KAFKA_NODE_ID"] for env in brokers.values()}) == 3


def _resolve(args: list[str]) -> click.Command:
    """The leaf command of the ``safeguard`` CLI for ``args``, its options parsed."""
    command: click.Command = safeguard_cli
    while isinstance(command, click.Group):
        sub = command.get_command(click.Context(command), args[0])
        assert sub is not None, f"no command {args[0]!r}"
        command, args = sub, args[1:]
    command.make_context(command.name or "", list(args))  # raises on an unknown option
    return command


def test_exchange_services_run_real_safeguard_commands_as_real_principals() -> None:
    principals = set(acl_plan.plan(*acl_plan.load_partnership(acl_plan.PARTIES_FILE)).principals)
    image_services = {
        n: s for n, s in _services().items() if "safeguarding-exchange" in s.get("image", "")
    }
    ran = set()
    for name, service in image_services.items():
        if name == "sgx-trust":
            continue
        _resolve(service["command"])
        ran.add(service["command"][0])
        user = Path(service["env_file"]).name.removesuffix(".env")
        assert user in principals, f"{name}: SASL user {user} is not in the ACL plan"
        assert service["environment"]["SGX_KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
    assert ran == {"gateway", "consumer", "push", "inbox"}


def test_prometheus_scrapes_the_compose_services() -> None:
    prometheus = load(REPO / "deploy" / "prometheus" / "prometheus.yml")
    jobs = [job for job in prometheus["scrape_configs"] if job["job_name"].startswith("sgx-")]
    targets = {
        target.split(":")[0]
        for job in jobs
        for static in job.get("static_configs", [])
        for target in static["targets"]
    } | {name for job in jobs for dns in job.get("dns_sd_configs", []) for name in dns["names"]}
    assert targets <= set(_services())
    assert {"gateway", "consumer-la-camden", "push-school-hillside"} <= targets
    assert {f"consumer-{la}" for la in _local_authorities()} <= targets


def test_at_least_two_gateways_share_one_home() -> None:
    gateway = _services()["gateway"]
    assert gateway["deploy"]["replicas"] >= 2
    assert "gateway-home:/var/lib/sgx" in gateway["volumes"]  # one SQLite gateway database


def _local_authorities() -> list[str]:
    parties = acl_plan.load_parties(acl_plan.PARTIES_FILE)
    return [p.id for p in parties if p.kind == "local_authority"]


def test_each_local_authority_of_the_partnership_has_its_delivery_consumer() -> None:
    services = _services()
    for la in _local_authorities():
        service = services[f"consumer-{la}"]
        assert service["command"] == ["consumer", "run", "--la", la]
        assert service["deploy"]["replicas"] >= 2  # one group: they share the delivery topic
        user = Path(service["env_file"]).name.removesuffix(".env")
        assert user == acl_plan.consumer_principal(la)


def test_the_acl_plan_and_the_trust_directory_describe_one_partnership() -> None:
    # keys init writes DEMO_PARTIES; the cluster's users come from parties.toml
    parties, connectors = acl_plan.load_partnership(acl_plan.PARTIES_FILE)
    planned = {(p.id, p.kind, p.gss_code, p.serves, p.serves_any) for p in parties}
    demo = {
        (s.id, s.kind, s.gss_code, tuple(s.serves), s.serves_any)
        for s in DEMO_PARTIES
        if s.kind != "gateway"
    }
    assert planned == demo
    # and the same connectors, carrying the same agencies (the names are for people)
    assert [(c.id, c.kafka_principal, c.carries) for c in connectors] == [
        (c.id, c.kafka_principal, c.carries) for c in DEMO_CONNECTORS
    ]


def test_each_partys_services_mount_its_own_store_and_no_other() -> None:
    """With SQLite a party's store is a file in its home volume: Camden's consumer and
    inbox share Camden's; no volume holding a store serves two parties."""
    homes: dict[str, set[str]] = {}
    for service in _services().values():
        command = service.get("command", [])
        if not isinstance(command, list) or not command or command[0] not in SERVICES:
            continue
        party = next(
            (command[i + 1] for i, a in enumerate(command) if a in ("--la", "--agency")),
            "gateway",
        )
        for volume in service.get("volumes", []):
            source, target = volume.split(":")[:2]
            if target == "/var/lib/sgx":  # the home: its stores
                homes.setdefault(source, set()).add(party)
    assert homes, "no service keeps a store"
    assert all(len(parties) == 1 for parties in homes.values()), homes
    assert homes["consumer-la-camden-home"] == {"la-camden"}


def test_a_connector_runs_as_its_own_principal_for_the_agencies_it_carries() -> None:
    _, connectors = acl_plan.load_partnership(acl_plan.PARTIES_FILE)
    by_id = {c.id: c for c in connectors}
    running = [s for s in _services().values() if "SGX_CONNECTOR" in s.get("environment", {})]
    assert running, "no service publishes through a connector"
    for service in running:
        connector = by_id[service["environment"]["SGX_CONNECTOR"]]
        command = service["command"]
        agencies = [command[i + 1] for i, a in enumerate(command) if a == "--agency"]
        assert set(agencies) == set(connector.carries)
        assert Path(service["env_file"]).name == f"{connector.kafka_principal}.env"
