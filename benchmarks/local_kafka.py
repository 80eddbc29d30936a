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
from aiokafka.protocol.admin import DeleteGroupsRequest

from sgx.errors import ConfigError
from sgx.settings import REPO_ROOT

ENSURE_KAFKA = REPO_ROOT / "scripts" / "ensure-kafka.sh"
# the first start on a machine fetches Kafka (~90 MB) and applies the plan (a hundred runs
# of Kafka's tools); after that a start takes seconds and a running broker well under one
START_LIMIT_S = 900
# a group whose member was killed is not empty until the broker expires the member: at most
# the session timeout (sgx.settings.KafkaSettings.session_timeout_ms, 6 s) and a rebalance
GROUPS_EMPTY_LIMIT_S = 60.0
_GROUP_NOT_EMPTY, _GROUP_NOT_FOUND = 68, 69


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
    """Delete every topic but Kafka's own (and with them their committed offsets) and every
    consumer group, and wait until the broker lists none of them.

    The groups go too because a group outlives its topics: a member of the last run that was
    killed (the failure-path tests kill processes) stays in its group until the broker
    expires it, and the next run's service of that group would wait for it to join, inside
    the next test's time. Deleting the groups waits for that here, once, and starts every
    run with no group at all."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=30_000)
    await admin.start()
    try:
        await _delete_topics(admin, bootstrap)
        await _delete_groups(admin, bootstrap)
    finally:
        await admin.close()


async def _delete_topics(admin: AIOKafkaAdminClient, bootstrap: str) -> None:
    for _ in range(200):
        ours = [t for t in await admin.list_topics() if not t.startswith("__")]
        if not ours:
            return
        with contextlib.suppress(UnknownTopicOrPartitionError):  # deleted meanwhile
            await admin.delete_topics(ours, timeout_ms=30_000)
        await asyncio.sleep(0.05)
    raise ConfigError(f"{bootstrap}: topics still listed after deleting them: {ours}")


async def _delete_groups(admin: AIOKafkaAdminClient, bootstrap: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + GROUPS_EMPTY_LIMIT_S
    while groups := [str(g[0]) for g in await admin.list_consumer_groups()]:
        refused: dict[str, int] = {}
        for group in groups:  # one by one: aiokafka's admin has no delete_consumer_groups
            node = await admin.find_coordinator(group)
            answer = await admin._client.send(node, DeleteGroupsRequest([group]))
            for name, code in answer.results:
                if code not in (0, _GROUP_NOT_FOUND):
                    refused[name] = code
        if not refused:
            continue
        if loop.time() > deadline or any(c != _GROUP_NOT_EMPTY for c in refused.values()):
            raise ConfigError(
                f"{bootstrap}: consumer groups not deleted in {GROUPS_EMPTY_LIMIT_S:g}s "
                f"(Kafka error code by group: {refused}; {_GROUP_NOT_EMPTY}: it has members)"
            )
        await asyncio.sleep(0.2)
