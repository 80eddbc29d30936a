"""The project's local Apache Kafka (``scripts/ensure-kafka.sh``) as the tests and the
benchmarks use it: started, or found running, with a run directory and ports of their
own, and emptied of every topic so that a run starts from an empty broker."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
from collections.abc import Mapping

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import UnknownTopicOrPartitionError

from sgx.errors import ConfigError
from sgx.settings import REPO_ROOT

ENSURE_KAFKA = REPO_ROOT / "scripts" / "ensure-kafka.sh"
# the first start on a machine fetches Kafka (~90 MB) and applies the plan (a hundred runs
# of Kafka's tools); after that a start takes seconds and a running broker well under one
START_LIMIT_S = 900


def ensure_local_kafka(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """Start the broker of ``scripts/ensure-kafka.sh`` (``env``: its settings) if it is
    not running; the connection settings it prints (``KAFKA_PLAINTEXT``, ...). A broker
    that does not start is a ConfigError with the script's own words."""
    try:
        done = subprocess.run(
            [str(ENSURE_KAFKA), "start"],
            capture_output=True,
            text=True,
            timeout=START_LIMIT_S,
            check=False,
            env={**os.environ, **(env or {})},
        )
    except subprocess.TimeoutExpired as exc:
        raise ConfigError(f"{ENSURE_KAFKA} start did not finish in {START_LIMIT_S}s") from exc
    if done.returncode != 0:
        raise ConfigError(
            f"Apache Kafka did not start ({ENSURE_KAFKA} start exited {done.returncode}):\n"
            f"{done.stderr}"
        )
    return dict(line.split("=", 1) for line in done.stdout.splitlines() if "=" in line)


async def delete_every_topic(bootstrap: str) -> None:
    """Delete every topic but Kafka's own (and with them their committed offsets), and
    wait until the broker no longer lists them."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=30_000)
    await admin.start()
    try:
        for _ in range(200):
            ours = [t for t in await admin.list_topics() if not t.startswith("__")]
            if not ours:
                return
            with contextlib.suppress(UnknownTopicOrPartitionError):  # deleted meanwhile
                await admin.delete_topics(ours, timeout_ms=30_000)
            await asyncio.sleep(0.05)
        raise ConfigError(f"{bootstrap}: topics still listed after deleting them: {ours}")
    finally:
        await admin.close()
