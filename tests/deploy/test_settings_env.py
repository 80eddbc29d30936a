"""The deployments' environment is the settings the services read: every ``SGX_*``
variable a Compose service or a Kubernetes container sets names a field of a settings
class (``sgx/settings.py`` and the others), and every literal value is one that field
accepts. A misspelt or retired variable would otherwise be ignored without a word."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError
from pydantic_settings import BaseSettings

import consumers.inbox.settings
import sgx.domain.calendar
import sgx.ops.metrics
import sgx.settings
from tests.deploy.catalogue import REPO
from tests.deploy.yaml_strict import load, load_all

MODULES = (sgx.settings, sgx.ops.metrics, sgx.domain.calendar, consumers.inbox.settings)
COMPOSE_ONLY = {"SGX_SECRETS", "SGX_IMAGE_TAG"}  # Compose's own interpolation, not a setting


def settings_fields() -> dict[str, tuple[type[BaseSettings], str]]:
    """Every variable a settings class reads: (class, field name)."""
    found: dict[str, tuple[type[BaseSettings], str]] = {}
    for module in MODULES:
        for value in vars(module).values():
            if (
                isinstance(value, type)
                and issubclass(value, BaseSettings)
                and value is not BaseSettings
            ):
                prefix = str(value.model_config.get("env_prefix", ""))
                for name in value.model_fields:
                    found[(prefix + name).upper()] = (value, name)
    return found


def deployed_env() -> list[tuple[str, str, Any]]:
    """(where, variable, value or None for a secret reference) of every SGX_* variable."""
    found: list[tuple[str, str, Any]] = []
    compose = load(REPO / "deploy" / "compose" / "compose.yaml")
    for key, block in compose.items():
        if key.startswith("x-") and isinstance(block, dict):
            found += [(key, k, v) for k, v in block.items() if k.startswith("SGX_")]
    for name, service in compose["services"].items():
        environment = service.get("environment") or {}
        found += [(name, k, v) for k, v in environment.items() if k.startswith("SGX_")]
    for path in sorted((REPO / "deploy" / "k8s").rglob("*.yaml")):
        for doc in load_all(path):
            if doc.get("kind") != "Deployment":
                continue
            for container in doc["spec"]["template"]["spec"]["containers"]:
                for e in container.get("env", []):
                    if e["name"].startswith("SGX_"):
                        found.append((doc["metadata"]["name"], e["name"], e.get("value")))
    return found


def test_the_manifests_set_sgx_variables() -> None:
    assert len(deployed_env()) > 40


@pytest.mark.parametrize(("where", "variable", "value"), deployed_env())
def test_every_variable_is_a_setting_and_its_value_one_the_setting_takes(
    where: str, variable: str, value: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    if variable in COMPOSE_ONLY:
        return
    fields = settings_fields()
    assert variable in fields, f"{where} sets {variable}, which no service reads"
    if value is None or (isinstance(value, str) and "${" in value):
        return  # a secret, or Compose fills it in
    cls, _ = fields[variable]
    monkeypatch.setenv(variable, str(value))  # read as the service reads it
    try:
        cls()
    except ValidationError as refused:
        pytest.fail(f"{where}: {variable}={value!r} is refused: {refused}")
