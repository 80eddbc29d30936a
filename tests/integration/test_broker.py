"""The Kafka wiring against a real broker: topics, round trips, commits, raw reads, errors."""

from __future__ import annotations

import asyncio
import ssl
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from prometheus_client import CollectorRegistry
from pydantic import SecretStr

from sgx.errors import ConfigError, TransportError
from sgx.kafka.embedded import EmbeddedBroker, free_port
from sgx.kafka.wiring import (
    client_options,
    committed_offsets,
    delivery_topic,
    ensure_topics,
    inbound_topic,
    list_topics,
    read_offsets,
    read_topic,
    receipts_topic,
    run_batches,
    start_consumer,
    start_producer,
    topic_partitions,
)
from sgx.ops.metrics import LagMetrics, LagMonitor
from sgx.settings import KafkaSettings

uses_broker = pytest.mark.broker


def unique_topic() -> str:
    return f"test.{uuid.uuid4().hex[:12]}"


async def consume(consumer: AIOKafkaConsumer, count: int, seconds: float = 15.0) -> list[bytes]:
    """Values of the next ``count`` records (fewer if ``seconds`` pass first)."""
    values: list[bytes] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while len(values) < count and loop.time() < deadline:
        batch = await consumer.getmany(timeout_ms=100)
        values.extend(r.value for recs in batch.values() for r in recs)
    return values


async def produce(settings: KafkaSettings, topic: str, values: list[bytes]) -> None:
    producer = await start_producer(settings)
    try:
        for i, value in enumerate(values):
            await producer.send_and_wait(topic, value, key=f"k{i}".encode())
    finally:
        await producer.stop()


async def joined(consumer: AIOKafkaConsumer) -> None:
    """Wait until a group consumer has its partitions (idle records are not expected)."""
    async with asyncio.timeout(15):
        while not consumer.assignment():
            assert await consumer.getmany(timeout_ms=100) == {}


@asynccontextmanager
async def filled_topic(
    settings: KafkaSettings, partitions: int, values: list[bytes]
) -> AsyncIterator[tuple[str, AIOKafkaConsumer]]:
    """A new topic of ``partitions`` holding ``values``, and a started consumer of it in a
    group of its own (stopped on exit)."""
    topic = unique_topic()
    await ensure_topics(settings, {topic: partitions})
    await produce(settings, topic, values)
    consumer = await start_consumer(settings, [topic], group_id=f"g-{uuid.uuid4().hex}")
    try:
        yield topic, consumer
    finally:
        await consumer.stop()


def test_topic_names() -> None:
    assert inbound_topic("school-1") == "sgx.inbound.school-1"
    assert receipts_topic("school-1") == "sgx.receipts.school-1"
    assert delivery_topic("la_9") == "sgx.delivery.la_9"
    with pytest.raises(ConfigError, match="cannot name a topic"):
        inbound_topic("a.b/c")


def test_client_options_unwrap_the_sasl_password_only_there() -> None:
    settings = KafkaSettings(
        bootstrap_servers="k1:9092,k2:9092",
        security_protocol="SASL_PLAINTEXT",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username="gateway",
        sasl_password=SecretStr("s3cret"),
    )
    assert "s3cret" not in repr(settings)
    assert client_options(settings) == {
        "bootstrap_servers": "k1:9092,k2:9092",
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "gateway",
        "sasl_plain_password": "s3cret",
    }


def test_client_options_refuse_incomplete_sasl_or_tls(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="SASL_MECHANISM"):
        client_options(KafkaSettings(security_protocol="SASL_SSL", sasl_username="u"))
    with pytest.raises(ConfigError, match="TLS context"):
        client_options(KafkaSettings(security_protocol="SSL", ssl_cafile=tmp_path / "no-ca.pem"))


def test_client_options_build_a_tls_context() -> None:
    options = client_options(KafkaSettings(security_protocol="SSL"))
    assert isinstance(options["ssl_context"], ssl.SSLContext)


@uses_broker
async def test_broker_answers_metadata(broker: KafkaSettings) -> None:
    assert isinstance(await list_topics(broker), list)


@uses_broker
async def test_ensure_topics_is_idempotent(broker: KafkaSettings) -> None:
    first, second = unique_topic(), unique_topic()
    await ensure_topics(broker, {first: 3})
    await ensure_topics(broker, {first: 3, second: 2})
    topics = await list_topics(broker)
    assert {first, second} <= set(topics)
    assert len(await topic_partitions(broker, first)) == 3
    assert len(await topic_partitions(broker, second)) == 2


@uses_broker
async def test_round_trip_through_a_group(broker: KafkaSettings) -> None:
    topic = unique_topic()
    await ensure_topics(broker, {topic: 3})
    values = [f"value-{i}".encode() for i in range(10)]
    await produce(broker, topic, values)
    consumer = await start_consumer(broker, [topic], group_id=f"g-{topic}")
    try:
        assert sorted(await consume(consumer, len(values))) == sorted(values)
    finally:
        await consumer.stop()


@uses_broker
async def test_committed_offsets_survive_a_consumer_restart(broker: KafkaSettings) -> None:
    topic, group = unique_topic(), f"g-{uuid.uuid4().hex}"
    await ensure_topics(broker, {topic: 2})
    old = [b"old-1", b"old-2", b"old-3"]
    await produce(broker, topic, old)
    first = await start_consumer(broker, [topic], group_id=group)
    try:
        assert sorted(await consume(first, len(old))) == old
        await first.commit()
    finally:
        await first.stop()
    # Tansu lets a group rejoin after a member left only after 2 x session_timeout_ms.
    second = await start_consumer(broker, [topic], group_id=group)
    try:
        await joined(second)
        await produce(broker, topic, [b"new"])
        seen = await consume(second, 1)
        seen += await consume(second, 1, seconds=0.5)  # anything old would show by now
        assert seen == [b"new"]
    finally:
        await second.stop()


@uses_broker
async def test_read_topic_returns_every_record_of_every_partition(broker: KafkaSettings) -> None:
    topic = unique_topic()
    await ensure_topics(broker, {topic: 3})
    values = [f"record-{i}".encode() for i in range(30)]
    await produce(broker, topic, values)
    records: list[ConsumerRecord] = await read_topic(broker, topic)
    assert sorted(r.value for r in records) == sorted(values)
    assert {r.partition for r in records} == {0, 1, 2}
    assert records == sorted(records, key=lambda r: (r.partition, r.offset))


@uses_broker
async def test_read_topic_of_an_empty_or_missing_topic(broker: KafkaSettings) -> None:
    empty, missing = unique_topic(), unique_topic()
    await ensure_topics(broker, {empty: 2})
    assert await read_topic(broker, empty) == []
    assert await read_topic(broker, missing) == []
    assert missing not in await list_topics(broker)


async def test_a_bad_bootstrap_address_gives_transport_error() -> None:
    nowhere = KafkaSettings(bootstrap_servers=f"127.0.0.1:{free_port()}")
    with pytest.raises(TransportError, match="producer"):
        await start_producer(nowhere)
    with pytest.raises(TransportError, match="consumer"):
        await start_consumer(nowhere, ["t"], group_id="g")
    with pytest.raises(TransportError):
        await list_topics(nowhere)


async def test_missing_broker_binary_gives_transport_error(tmp_path: Path) -> None:
    with pytest.raises(TransportError, match="not found"):
        await EmbeddedBroker(tmp_path, binary=tmp_path / "no-such-tansu").start()


async def test_a_broker_that_dies_gives_transport_error_with_its_log(tmp_path: Path) -> None:
    script = tmp_path / "fake-tansu"
    script.write_text("#!/bin/sh\necho 'fake broker: cannot bind' >&2\nexit 3\n")
    script.chmod(0o755)
    with pytest.raises(TransportError, match=r"(?s)exited with status 3.*cannot bind"):
        await EmbeddedBroker(tmp_path, binary=script, startup_timeout=10).start()


@uses_broker
async def test_lag_is_the_highwater_minus_every_partition_s_commit_read_at_once(
    broker: KafkaSettings,
) -> None:
    values = [f"v{i}".encode() for i in range(9)]
    async with filled_topic(broker, 3, values) as (topic, consumer):
        assert sorted(await consume(consumer, len(values))) == sorted(values)
        partitions = sorted(consumer.assignment())
        ahead = partitions[0]  # committed to its end; the others one record short of it
        commits = {tp: consumer.highwater(tp) - (0 if tp == ahead else 1) for tp in partitions}
        await consumer.commit(commits)
        assert await committed_offsets(consumer, partitions) == commits
        registry = CollectorRegistry()
        await LagMonitor(consumer, LagMetrics(registry)).refresh()
        for tp in partitions:
            labels = {"topic": topic, "partition": str(tp.partition)}
            expected = 0 if tp == ahead else 1
            assert registry.get_sample_value("sgx_consumer_lag", labels) == expected


@uses_broker
async def test_a_batch_holds_at_most_max_bytes_and_the_rest_is_read_again(
    broker: KafkaSettings,
) -> None:
    values = [bytes([i]) * 100_000 for i in range(12)]  # 100 KB each
    seen: list[bytes] = []
    batches: list[int] = []
    stop = asyncio.Event()
    async with filled_topic(broker, 2, values) as (_, consumer):

        async def process(records: list[ConsumerRecord]) -> None:
            batches.append(len(records))
            seen.extend(r.value for r in records)
            await consumer.commit()
            if len(seen) >= len(values):
                stop.set()

        async with asyncio.timeout(30):
            await run_batches(
                consumer, stop, process, max_records=500, action="test", max_bytes=250_000
            )
        assert sorted(seen) == sorted(values)  # each once: nothing skipped, nothing twice
        assert max(batches) == 2  # 2 x 100 KB fit in 250 KB, a third does not
        committed = await committed_offsets(consumer, consumer.assignment())
        assert sum(committed.values()) == len(values)


@uses_broker
async def test_a_batch_commits_only_the_partitions_it_read(broker: KafkaSettings) -> None:
    """The gateway and the consumers commit the offsets after the records a batch read,
    and no others: a group holding hundreds of idle partitions sent every one of them with
    every commit."""
    topic, group = unique_topic(), f"g-{uuid.uuid4().hex}"
    await ensure_topics(broker, {topic: 3})
    producer = await start_producer(broker)
    try:
        for value in (b"a", b"b"):
            await producer.send_and_wait(topic, value, partition=1)
    finally:
        await producer.stop()
    consumer = await start_consumer(broker, [topic], group_id=group)
    try:
        read: list[ConsumerRecord] = []  # the group is joined by the first fetches
        async with asyncio.timeout(15):
            while len(read) < 2:
                batches = await consumer.getmany(timeout_ms=100)
                read += [r for batch in batches.values() for r in batch]
        offsets = read_offsets(consumer, read)
        assert offsets == {TopicPartition(topic, 1): 2}
        await consumer.commit(offsets)
        every = [TopicPartition(topic, p) for p in range(3)]
        assert await committed_offsets(consumer, every) == {TopicPartition(topic, 1): 2}
    finally:
        await consumer.stop()
