"""deploy/docker/Dockerfile: one multi-stage image, non-root, ``safeguard`` as entrypoint.

No Docker daemon runs on the test machines, so the image is not built here; these checks
catch what would break a build or the runtime contract (a COPY of a path the build
context excludes, a missing console script, running as root).
"""

from __future__ import annotations

import json
import re
import tomllib
from fnmatch import fnmatch

from tests.deploy.catalogue import REPO

DOCKERFILE = REPO / "deploy" / "docker" / "Dockerfile"


def _instructions() -> list[tuple[str, str]]:
    text = DOCKERFILE.read_text(encoding="utf-8").replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines()]
    return [
        (line.split(maxsplit=1)[0].upper(), line.split(maxsplit=1)[1])
        for line in lines
        if line and not line.startswith("#")
    ]


def _ignored() -> list[str]:
    lines = (REPO / ".dockerignore").read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def test_multi_stage_build_running_as_a_non_root_user() -> None:
    instructions = _instructions()
    stages = [arg for op, arg in instructions if op == "FROM"]
    assert len(stages) >= 2
    (user,) = [arg for op, arg in instructions if op == "USER"]
    assert not user.startswith(("0", "root"))
    assert any(op == "COPY" and arg.startswith("--from=build") for op, arg in instructions)


def test_entrypoint_is_the_safeguard_console_script() -> None:
    (entrypoint,) = [arg for op, arg in _instructions() if op == "ENTRYPOINT"]
    assert json.loads(entrypoint) == ["safeguard"]
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert project["scripts"]["safeguard"] == "safeguard.cli:main"


def test_every_copied_path_exists_and_is_in_the_build_context() -> None:
    ignored = _ignored()
    copies = [arg for op, arg in _instructions() if op == "COPY" and not arg.startswith("--")]
    assert copies
    for arg in copies:
        *sources, _ = arg.split()
        for source in sources:
            assert (REPO / source).exists(), source
            assert not any(fnmatch(source, pattern) for pattern in ignored), source


def test_schemas_are_shipped_and_pointed_at() -> None:
    env = " ".join(arg for op, arg in _instructions() if op == "ENV")
    assert re.search(r"SGX_SCHEMA_DIR=/opt/sgx/schemas", env)
    assert any(op == "COPY" and arg == "schemas /opt/sgx/schemas" for op, arg in _instructions())
