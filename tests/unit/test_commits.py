"""Committing offsets (sgx.kafka.commits): a commit the group refuses because it
rebalanced is logged and the service goes on; any other failure still says what failed."""

from __future__ import annotations

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import CommitFailedError, KafkaConnectionError

from sgx.errors import TransportError
from sgx.kafka.commits import commit_offsets

TP = TopicPartition("sgx.receipts.school-hillside", 0)


class _Consumer:
    def __init__(self, error: Exception | None = None) -> None:
        self.error = error
        self.committed: list[dict[TopicPartition, int] | None] = []

    async def commit(self, offsets: dict[TopicPartition, int] | None = None) -> None:
        if self.error is not None:
            raise self.error
        self.committed.append(offsets)


async def test_offsets_are_committed_as_given_or_all_consumed() -> None:
    consumer = _Consumer()
    assert await commit_offsets(consumer, {TP: 4}, action="commit receipts")
    assert await commit_offsets(consumer, None, action="commit receipts")
    assert consumer.committed == [{TP: 4}, None]


async def test_a_commit_lost_to_a_rebalance_is_logged_not_raised(
    caplog: pytest.LogCaptureFixture,
) -> None:
    rebalanced = _Consumer(CommitFailedError("the group has already rebalanced"))
    consumer: AIOKafkaConsumer = rebalanced
    assert not await commit_offsets(consumer, None, action="commit open-case offsets")
    assert "commit open-case offsets: the group moved its partitions" in caplog.text


async def test_any_other_failure_names_the_commit() -> None:
    broken: AIOKafkaConsumer = _Consumer(KafkaConnectionError("gone"))
    with pytest.raises(TransportError, match="commit delivery offsets"):
        await commit_offsets(broken, {TP: 1}, action="commit delivery offsets")
