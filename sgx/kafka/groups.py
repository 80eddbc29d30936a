"""Joining a consumer group, within a deadline that says what the coordinator did.

aiokafka's ``start()`` of a consumer subscribed in a group waits for the group's first
assignment with no deadline of its own: a join that never completes left a service
waiting for ever before it served anything (issue 23: a gateway that never got ready).
:func:`start_in_group` bounds it by ``SGX_KAFKA_GROUP_JOIN_LIMIT_S`` and, past it, asks the
coordinator once how it describes the group, so the error says what was seen.

**Known on the embedded broker (Tansu 0.6.0).** When a group's members leave together (a
follower's LeaveGroup, then the leader's within a few hundred milliseconds: several
gateway instances stopped at once), Tansu keeps the group at the generation the first
leave began, with the departed leader as its leader. It then answers every new member's
JoinGroup with that generation and that leader, and the new member's (follower's)
SyncGroup with REBALANCE_IN_PROGRESS after a wait, for ever; DescribeGroups calls the
group "Unknown" while a member is trying to join it (Empty, with no members, otherwise).
Apache Kafka elects a new leader among the members that rejoin
(``tests/integration/test_group_join.py`` runs the same sequence on both). Deleting the
group (DeleteGroups, which an Empty group allows) frees it, and so does a fresh embedded
broker; this module only says so: deleting a group also deletes its
committed offsets, a decision for whoever runs the broker.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager

from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from sgx.errors import TransportError
from sgx.settings import KafkaSettings

# the states Apache Kafka's group coordinator describes a group in
KAFKA_GROUP_STATES = frozenset(
    {"Empty", "PreparingRebalance", "CompletingRebalance", "Stable", "Dead", "Assigning",
     "Reconciling"}
)  # fmt: skip
DESCRIBE_LIMIT_S = 5.0  # how long the diagnosis of a join that did not complete may take
Admin = Callable[[], AbstractAsyncContextManager[AIOKafkaAdminClient]]


async def start_in_group(
    consumer: AIOKafkaConsumer,
    settings: KafkaSettings,
    group: str,
    topics: Sequence[str],
    admin: Admin,
) -> None:
    """Start ``consumer`` (subscribed to ``topics`` in ``group``) and wait for its first
    assignment, at most ``settings.group_join_limit_s``; past it a TransportError that
    names the group and what its coordinator says of it (asked through ``admin``, a
    started admin client of the same cluster). The consumer is left to the caller to stop
    either way."""
    limit_s = settings.group_join_limit_s
    try:
        async with asyncio.timeout(limit_s):
            await consumer.start()
    except TimeoutError as exc:
        seen = await describe_group(admin, group)
        raise TransportError(
            f"join consumer group {group} (over {len(topics)} topic(s)): no partitions "
            f"assigned within {limit_s:g}s (SGX_KAFKA_GROUP_JOIN_LIMIT_S); {seen}"
        ) from exc


async def describe_group(admin: Admin, group: str) -> str:
    """What the group's coordinator says of ``group``, in words (for an error)."""
    try:
        async with asyncio.timeout(DESCRIBE_LIMIT_S), admin() as client:
            responses = await client.describe_consumer_groups([group])
    except (TimeoutError, TransportError, KafkaError, OSError) as exc:
        return f"the coordinator could not be asked about the group ({type(exc).__name__})"
    described = [g for r in responses for g in r.groups if g[1] == group]
    if not described:
        return "the coordinator does not describe the group"
    error_code, _, state, _, protocol, members = described[0][:6]
    if error_code:
        return f"the coordinator answered DescribeGroups with error code {error_code}"
    seen = f"the coordinator describes the group as {state!r} with {len(members)} member(s)"
    if state not in KAFKA_GROUP_STATES:
        return (
            f"{seen}, a state Apache Kafka does not have: it has lost track of the group. "
            "The embedded broker (Tansu 0.6.0) does so when the group's leader leaves "
            "while another member's leave is being rebalanced (several instances stopped "
            "at once), and stays so. Restart the embedded broker, or delete the group (its "
            "committed offsets go with it) and start again (docs/design.md, 'The broker')"
        )
    return (
        f"{seen}{f' ({protocol})' if protocol else ''}: a rebalance that does not settle "
        "(members joining and leaving, or one that does not rejoin within the session "
        "timeout)"
    )
