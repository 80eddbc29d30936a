"""Committing a consumer's offsets once its batch is done, through a rebalance too.

A group may move a partition between the moment a batch was read and the moment its
offsets are committed (another instance joined or left). The commit is then refused
(aiokafka's ``CommitFailedError``), and the records are read again by the partition's
new owner. Every reader of the exchange is idempotent over a re-read (the gateway's
judged-once look-up, the queue's key on notification and recipient, the outbox's
receipts by message id, the newest open-case list kept), so such a refusal is logged,
not raised: raised, it stopped a live service at every rebalance that fell there.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import CommitFailedError

from sgx.kafka.wiring import kafka_errors

log = logging.getLogger(__name__)


async def commit_offsets(
    consumer: AIOKafkaConsumer,
    offsets: Mapping[TopicPartition, int] | None,
    *,
    action: str,
) -> bool:
    """Commit ``offsets`` (None: everything consumed); False if the group refused it
    because it rebalanced meanwhile. Any other failure is a TransportError naming
    ``action``."""
    async with kafka_errors(action):
        try:
            if offsets is None:
                await consumer.commit()
            else:
                await consumer.commit(dict(offsets))
        except CommitFailedError:
            moved = "its partitions" if offsets is None else f"{len(offsets)} partition(s)"
            log.warning(
                "%s: the group moved %s before their offsets were committed; their new"
                " owner reads those records again and finds them done", action, moved,
            )  # fmt: skip
            return False
    return True
