"""A running service's trust directory follows the file: on SIGHUP at once, and a file that
no longer loads is not applied (the service keeps the directory it has)."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from safeguard.parties import DEMO_PARTIES, SCHOOL
from sgx.keys.identity import Identity
from sgx.keys.key_admin import init_trust, revoke_key, rotate_key
from sgx.keys.trust import DIRECTORY_FILE, TrustDirectory
from sgx.ops.metrics import TrustMetrics
from sgx.ops.trust_reload import TrustWatcher, watching


async def until(check: object, limit: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + limit
    while not check():  # type: ignore[operator]
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def test_sighup_reloads_at_once_and_a_broken_file_is_not_applied(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="sgx.ops.trust_reload")
    folder = tmp_path / "trust"
    init_trust(folder, DEMO_PARTIES)
    trust = TrustDirectory.load(folder)
    identity = Identity.load(folder, SCHOOL, directory=trust)
    registry = CollectorRegistry()

    def count(outcome: str) -> float:
        return registry.get_sample_value("sgx_trust_reloads_total", {"outcome": outcome}) or 0.0

    watcher = TrustWatcher(folder, trust, [identity], TrustMetrics(registry), interval_s=1000)
    async with watching(watcher):
        old = identity.signing_kid
        new = rotate_key(folder, SCHOOL)
        os.kill(os.getpid(), signal.SIGHUP)
        await until(lambda: count("ok") == 1)
        assert {k.kid for k in trust.party(SCHOOL).keys} == {old, new}
        assert {k.kid for k in identity.keys} == {old, new}, "its new private key is held too"
        assert f"keys added: {new}; keys revoked: none" in caplog.text
        generation = trust.generation

        revoke_key(folder, SCHOOL, old)
        os.kill(os.getpid(), signal.SIGHUP)
        await until(lambda: count("ok") == 2)
        assert f"keys revoked: {old}" in caplog.text
        assert trust.generation == generation + 1

        (folder / DIRECTORY_FILE).write_text("{ not json")
        os.kill(os.getpid(), signal.SIGHUP)
        await until(lambda: count("failed") == 1)
        assert trust.party(SCHOOL).keys[-1].kid == new, "the directory in use is kept"
        assert "changed but was not applied" in caplog.text
