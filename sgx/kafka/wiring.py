"""Kafka wiring shared by every role: topic names, clients, topics and raw reads.

Topics (see the design's Topics table)::

    sgx.inbound.<connector> envelopes of the agencies a connector carries (or of an
                            agency that is its own connector) to the gateway
    sgx.receipts.<owner>    the gateway's receipts (and share decisions) to an agency, or
                            to every agency a connector carries (sgx.kafka.outbound)
    sgx.delivery.<owner>    the gateway's deliveries to a party's consumer (an LA; a
                            school's key adult or a force's SPOC, or their connector's)
    sgx.allocations.<la>    an LA's allocation updates, read by every gateway instance

Clients are configured from :class:`~sgx.settings.KafkaSettings` only; a SASL password
is unwrapped from its ``SecretStr`` in :func:`client_options` and nowhere else.

The producer is ``acks="all"`` and idempotent (a broker's retry of a batch is written
once), except on the embedded broker, which refuses idempotent producers
(``SGX_KAFKA_IDEMPOTENCE=false``); duplicates a producer's own restart makes are absorbed
downstream by idempotent inserts either way. A refusal by the broker (credentials, or an
operation its ACLs do not grant) is :class:`~sgx.errors.BrokerRefused`, said in words and
never retried; anything else from aiokafka is a retriable :class:`~sgx.errors.TransportError`.
Consumers never auto-commit and start from ``earliest``: a role commits only after its
own durable write. aiokafka and OS errors become :class:`~sgx.errors.TransportError`
(retriable) through :func:`kafka_errors`.
"""

from __future__ import annotations

import asyncio
import functools
import re
import ssl
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Coroutine,
    Iterable,
    Mapping,
    Sequence,
)
from contextlib import asynccontextmanager
from typing import Any

from aiokafka import (
    AIOKafkaConsumer,
    AIOKafkaProducer,
    ConsumerRebalanceListener,
    ConsumerRecord,
    TopicPartition,
)
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import (
    ClusterAuthorizationFailedError,
    GroupAuthorizationFailedError,
    KafkaError,
    SaslAuthenticationFailed,
    TopicAuthorizationFailedError,
    TransactionalIdAuthorizationFailed,
    UnsupportedSaslMechanismError,
)
from aiokafka.helpers import create_ssl_context
from aiokafka.partitioner import murmur2

from sgx.errors import BrokerRefused, ConfigError, TransportError
from sgx.kafka.groups import start_in_group
from sgx.settings import KafkaSettings
from sgx.wire.envelope import pack

_PARTY_ID = re.compile(r"^[A-Za-z0-9_-]{1,200}$")
_TOPIC_EXISTS = 36  # Kafka error code TOPIC_ALREADY_EXISTS
_POLL_MS = 200
TOPIC_WAIT_S = 10.0  # how long ensure_topics waits for new topics to show in metadata
# Topics asked for in one CreateTopics request: a broker answers one of 50,000 (receipts
# and deliveries of a national partnership's agencies) only after the client gave up.
CREATE_CHUNK = 1_000
READ_LIMIT_S = 60.0  # how long read_topic may take to reach the end of a topic
# Record values one batch of work holds at most (run_batches), and so what one fetch asks
# the broker for: a fetch of aiokafka's default 50 MB (a gateway's first start fetching a
# backlog of allocation updates) was parsed, held beside the next one prefetched, and
# mostly read again after the batch was cut at this bound. 2 MB is a dozen allocation
# updates of 2,500 entries (their changes, snapshot rows and open-case lists are what a
# batch holds at once) and 1,700 notifications: more per batch saves nothing measurable.
MAX_WORK_BYTES = 2 * 1024 * 1024
# What one partition's fetch asks for: aiokafka keeps one fetched response buffered per
# partition (prefetching each as soon as its last is taken), so a backlog over many
# partitions (a first start's 152 allocation topics) was buffered whole, 1 MB each. A
# record (a batch) larger than this still comes, alone (KIP-74; Tansu too).
MAX_PARTITION_FETCH_BYTES = 128 * 1024
INBOUND_PREFIX = "sgx.inbound."
ALLOCATIONS_PREFIX = "sgx.allocations."
RECEIPTS_PREFIX = "sgx.receipts."
# Quarantined inbound envelopes sent to be judged again (``safeguard quarantine replay``):
# each record's key is the inbound topic it was first read from, its value the envelope.
REPLAY_TOPIC = "sgx.replay"


def _topic(kind: str, party_id: str) -> str:
    if not _PARTY_ID.fullmatch(party_id):
        raise ConfigError(f"party id {party_id!r} cannot name a topic (use A-Z a-z 0-9 _ -)")
    return f"sgx.{kind}.{party_id}"


def _group(kind: str, party_id: str) -> str:
    _topic(kind, party_id)  # the same party id check
    return f"sgx-{kind}-{party_id}"


def inbound_topic(agency_id: str) -> str:
    """The topic an agency writes its envelopes to: ``sgx.inbound.<agency>``."""
    return _topic("inbound", agency_id)


def inbound_agency(topic: str) -> str:
    """The agency whose inbound topic ``topic`` is (the inverse of :func:`inbound_topic`)."""
    return topic.removeprefix(INBOUND_PREFIX)


def allocations_topic(la_id: str) -> str:
    """The topic a local authority publishes its allocation updates to:
    ``sgx.allocations.<la>``; every gateway instance reads all of them."""
    return _topic("allocations", la_id)


def allocations_agency(topic: str) -> str:
    """The LA whose allocation topic ``topic`` is (the inverse of :func:`allocations_topic`)."""
    return topic.removeprefix(ALLOCATIONS_PREFIX)


def agency_of(topic: str) -> str:
    """The agency whose inbound or allocation topic ``topic`` is (the writer's party id)."""
    if topic.startswith(ALLOCATIONS_PREFIX):
        return allocations_agency(topic)
    return inbound_agency(topic)


def receipts_topic(agency_id: str) -> str:
    """The topic the gateway answers an agency on: ``sgx.receipts.<agency>``."""
    return _topic("receipts", agency_id)


# Consumer groups: named here beside the topics so the services and the deployment's ACL
# plan (deploy/acl_plan.py) cannot disagree on them.
GATEWAY_GROUP = "sgx-gateway"


def delivery_group(party_id: str) -> str:
    """The group a party's delivery consumer commits in (also its service principal)."""
    return _group("consumer", party_id)


def receipts_group(agency_id: str) -> str:
    """The group an agency's outbox receipt listener commits in."""
    return _group("producer", agency_id)


def open_cases_group(school_id: str) -> str:
    """The group a school's open-case list listener commits in."""
    return _group("open-cases", school_id)


def delivery_topic(la_id: str) -> str:
    """The topic the gateway delivers to a local authority on: ``sgx.delivery.<la>``."""
    return _topic("delivery", la_id)


@asynccontextmanager
async def kafka_errors(action: str) -> AsyncIterator[None]:
    """Translate aiokafka and OS errors raised inside into TransportError about ``action``."""
    try:
        yield
    except _NOT_GRANTED as exc:
        raise BrokerRefused(
            f"{action}: the broker refused it, {exc}: this principal may do only what the "
            "cluster's ACLs grant it (deploy/acl_plan.py), and they do not grant this"
        ) from exc
    except _BAD_CREDENTIALS as exc:
        raise BrokerRefused(
            f"{action}: the broker refused the credentials, {exc}: check "
            "SGX_KAFKA_SASL_USERNAME, SGX_KAFKA_SASL_PASSWORD and SGX_KAFKA_SASL_MECHANISM"
        ) from exc
    except (KafkaError, OSError) as exc:
        raise TransportError(f"{action}: {type(exc).__name__}: {exc}") from exc


_NOT_GRANTED = (
    TopicAuthorizationFailedError,
    GroupAuthorizationFailedError,
    ClusterAuthorizationFailedError,
    TransactionalIdAuthorizationFailed,
)
_BAD_CREDENTIALS = (SaslAuthenticationFailed, UnsupportedSaslMechanismError)


def _ssl_context(settings: KafkaSettings) -> ssl.SSLContext:
    try:
        context: ssl.SSLContext = create_ssl_context(
            cafile=settings.ssl_cafile,
            certfile=settings.ssl_certfile,
            keyfile=settings.ssl_keyfile,
        )
    except OSError as exc:  # ssl.SSLError is an OSError: unreadable or bad files
        raise ConfigError(f"cannot build the Kafka TLS context: {exc}") from exc
    return context


def _sasl_options(settings: KafkaSettings) -> dict[str, Any]:
    if not (settings.sasl_mechanism and settings.sasl_username and settings.sasl_password):
        raise ConfigError(
            f"{settings.security_protocol} needs SGX_KAFKA_SASL_MECHANISM, "
            "SGX_KAFKA_SASL_USERNAME and SGX_KAFKA_SASL_PASSWORD"
        )
    return {
        "sasl_mechanism": settings.sasl_mechanism,
        "sasl_plain_username": settings.sasl_username,
        "sasl_plain_password": settings.sasl_password.get_secret_value(),
    }


def client_options(settings: KafkaSettings) -> dict[str, Any]:
    """Connection keyword arguments common to aiokafka producers, consumers and admins."""
    protocol = settings.security_protocol
    options: dict[str, Any] = {
        "bootstrap_servers": settings.bootstrap_servers,
        "security_protocol": protocol,
    }
    if protocol in ("SSL", "SASL_SSL"):
        options["ssl_context"] = _ssl_context(settings)
    if protocol.startswith("SASL_"):
        options.update(_sasl_options(settings))
    return options


async def start_producer(settings: KafkaSettings, **overrides: Any) -> AIOKafkaProducer:
    """A started producer: acks=all, idempotent where the broker has it (not the embedded
    one: ``SGX_KAFKA_IDEMPOTENCE``), batching from the settings."""
    options: dict[str, Any] = {
        **client_options(settings),
        "acks": "all",
        "enable_idempotence": settings.idempotence,
        "linger_ms": settings.linger_ms,
        "max_batch_size": settings.max_batch_size,
        **overrides,
    }
    producer = AIOKafkaProducer(**options)
    await _start(producer, "start Kafka producer")
    return producer


async def start_consumer(
    settings: KafkaSettings,
    topics: Sequence[str],
    *,
    group_id: str | None,
    listener: ConsumerRebalanceListener | None = None,
    **overrides: Any,
) -> AIOKafkaConsumer:
    """A started consumer subscribed to ``topics``: manual commits, from earliest.

    ``listener`` hears the group's partition assignments and revocations.
    """
    options: dict[str, Any] = {
        **client_options(settings),
        "group_id": group_id,
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "fetch_max_wait_ms": settings.fetch_max_wait_ms,
        "fetch_max_bytes": MAX_WORK_BYTES,
        "max_partition_fetch_bytes": MAX_PARTITION_FETCH_BYTES,
        "session_timeout_ms": settings.session_timeout_ms,
        "heartbeat_interval_ms": settings.heartbeat_interval_ms,
        **overrides,
    }
    if listener is None:
        consumer = AIOKafkaConsumer(*topics, **options)
    else:
        consumer = AIOKafkaConsumer(**options)
        consumer.subscribe(list(topics), listener=listener)
    action = f"start Kafka consumer on {', '.join(topics) or 'no topic'}"
    if group_id is None or not topics:
        await _start(consumer, action)
    else:  # waits for the group's first assignment: within SGX_KAFKA_GROUP_JOIN_LIMIT_S
        admin = functools.partial(admin_client, settings)
        await _start(consumer, action, start_in_group(consumer, settings, group_id, topics, admin))
    return consumer


async def _start(
    client: AIOKafkaProducer | AIOKafkaConsumer,
    action: str,
    starting: Coroutine[Any, Any, None] | None = None,
) -> None:
    """Start an aiokafka client (or await ``starting``, which does); on failure stop it
    (no leaked connections) and translate."""
    try:
        async with kafka_errors(action):
            await (client.start() if starting is None else starting)
    except BaseException:
        await client.stop()
        raise


@asynccontextmanager
async def admin_client(settings: KafkaSettings) -> AsyncIterator[AIOKafkaAdminClient]:
    """A started admin client, closed on exit."""
    admin = AIOKafkaAdminClient(**client_options(settings))
    try:
        async with kafka_errors("connect Kafka admin client"):
            await admin.start()
        yield admin
    finally:
        await admin.close()


async def _metadata(admin: AIOKafkaAdminClient) -> dict[str, list[int]]:
    """Every topic the cluster knows, with its partition numbers.

    Asks for *all* topics: a metadata request naming a topic auto-creates it on
    brokers that allow that (Tansu does), which must not happen by looking.
    """
    async with kafka_errors("read Kafka metadata"):
        topics = await admin.describe_topics(None)
    return {t["topic"]: sorted(p["partition"] for p in t["partitions"]) for t in topics}


async def list_topics(settings: KafkaSettings) -> list[str]:
    """The names of every topic on the cluster, sorted."""
    async with admin_client(settings) as admin:
        return sorted(await _metadata(admin))


async def ensure_topics(settings: KafkaSettings, topics: Mapping[str, int]) -> None:
    """Create the missing ``topics`` (name → partitions) and wait until metadata shows them.

    A topic that already exists is left as it is, whatever its partition count. Raises
    TransportError if a new topic is not in metadata after ``TOPIC_WAIT_S`` seconds (and
    10 ms for each topic created: a broker shows thousands of new topics slowly).
    """
    async with admin_client(settings) as admin:
        existing = await _metadata(admin)
        missing = [NewTopic(name, n, 1) for name, n in topics.items() if name not in existing]
        for start in range(0, len(missing), CREATE_CHUNK):  # a nation's topics: tens of thousands
            await _create(admin, missing[start : start + CREATE_CHUNK])
        # a broker takes its time to show thousands of new topics: 10 ms more for each
        await _wait_for_topics(admin, topics.keys(), TOPIC_WAIT_S + 0.01 * len(missing))


async def _create(admin: AIOKafkaAdminClient, topics: list[NewTopic]) -> None:
    async with kafka_errors("create Kafka topics"):
        response = await admin.create_topics(topics)
    for entry in response.topic_errors:
        name, code = entry[0], entry[1]
        if code not in (0, _TOPIC_EXISTS):
            raise TransportError(f"create Kafka topic {name}: broker error code {code}")


async def _wait_for_topics(
    admin: AIOKafkaAdminClient, names: Iterable[str], limit_s: float = TOPIC_WAIT_S
) -> None:
    absent = set(names)
    try:
        async with asyncio.timeout(limit_s):
            while absent:
                known = await _metadata(admin)
                absent = {name for name in absent if not known.get(name)}
                await asyncio.sleep(0.05 if absent else 0)
    except TimeoutError as exc:
        shown = sorted(absent)
        more = f" and {len(shown) - 10} more" if len(shown) > 10 else ""
        raise TransportError(
            f"topics not in metadata after {limit_s:g}s: {shown[:10]}{more}"
        ) from exc


async def committed_offsets(
    consumer: AIOKafkaConsumer, partitions: Iterable[TopicPartition]
) -> dict[TopicPartition, int]:
    """The group's committed offset of each of ``partitions`` that has one, in ONE
    OffsetFetch request.

    aiokafka's public ``committed()`` asks for one partition per round trip; a national
    gateway is assigned thousands (8,537 in ``benchmarks/national.py``), and one
    refresh then took longer than its interval. This calls the coordinator method
    ``committed()`` itself calls, with every partition at once (aiokafka has no public
    form of it).
    """
    wanted = list(partitions)
    if not wanted:
        return {}
    fetched = await consumer._coordinator.fetch_committed_offsets(wanted)
    return {tp: meta.offset for tp, meta in fetched.items() if meta.offset >= 0}


async def partitions_of(settings: KafkaSettings, topics: Iterable[str]) -> list[TopicPartition]:
    """Every partition of ``topics`` (one metadata request; missing topics have none)."""
    async with admin_client(settings) as admin:
        known = await _metadata(admin)
    return [TopicPartition(t, p) for t in sorted(set(topics)) for p in known.get(t, [])]


async def topic_partitions(settings: KafkaSettings, topic: str) -> list[TopicPartition]:
    """The partitions of ``topic`` (none if the topic does not exist; it is not created)."""
    async with admin_client(settings) as admin:
        partitions = (await _metadata(admin)).get(topic, [])
    return [TopicPartition(topic, p) for p in partitions]


async def read_topic(settings: KafkaSettings, topic: str) -> list[ConsumerRecord]:
    """Every record now on every partition of ``topic``, in (partition, offset) order.

    Reads from offset 0 up to each partition's highwater as seen in the first fetch
    response (the embedded broker's "latest offset" answer is unreliable, its fetch
    highwater is not), with no consumer group and no commit. A missing topic reads as
    empty. Raises TransportError if the end is not reached within ``READ_LIMIT_S`` seconds.
    """
    partitions = await topic_partitions(settings, topic)
    if not partitions:
        return []
    consumer = await start_consumer(settings, [], group_id=None)
    try:
        consumer.assign(partitions)
        for tp in partitions:
            consumer.seek(tp, 0)
        async with asyncio.timeout(READ_LIMIT_S):
            records = await _read_to_highwater(consumer, partitions)
    except TimeoutError as exc:
        raise TransportError(f"read topic {topic}: end not reached in {READ_LIMIT_S:g}s") from exc
    finally:
        await consumer.stop()
    return sorted(records, key=lambda r: (r.partition, r.offset))


async def _read_to_highwater(
    consumer: AIOKafkaConsumer, partitions: list[TopicPartition]
) -> list[ConsumerRecord]:
    ends: dict[TopicPartition, int] = {}
    records: list[ConsumerRecord] = []
    pending = set(partitions)
    while pending:
        async with kafka_errors("read topic"):
            batch = await consumer.getmany(*pending, timeout_ms=_POLL_MS)
        _note_highwaters(consumer, pending, ends)
        for tp, recs in batch.items():
            records.extend(r for r in recs if r.offset < ends.get(tp, r.offset + 1))
        pending = {tp for tp in pending if not await _reached(consumer, tp, ends)}
    return records


def _note_highwaters(
    consumer: AIOKafkaConsumer,
    partitions: Iterable[TopicPartition],
    ends: dict[TopicPartition, int],
) -> None:
    for tp in partitions:
        highwater = consumer.highwater(tp)
        if tp not in ends and highwater is not None:
            ends[tp] = highwater


async def _reached(
    consumer: AIOKafkaConsumer, tp: TopicPartition, ends: dict[TopicPartition, int]
) -> bool:
    return tp in ends and await consumer.position(tp) >= ends[tp]


async def run_batches(
    consumer: AIOKafkaConsumer,
    stop: asyncio.Event,
    process: Callable[[list[ConsumerRecord]], Awaitable[None]],
    *,
    max_records: int,
    action: str,
    max_bytes: int = MAX_WORK_BYTES,
    idle: Callable[[], Awaitable[None]] | None = None,
) -> None:
    """Fetch and ``process`` batches until ``stop`` is set; the batch in hand is finished.
    ``idle`` (if given) is called, between batches, after a fetch that brought nothing.

    ``process`` owns the commit: a role commits offsets only once its own work is durable.
    A batch holds at most ``max_bytes`` of record values (and at least one record): what
    a fetch returned beyond that is read again next time (:func:`seek_back`), so the
    commit after it covers exactly the records processed. Without the bound a gateway
    catching up on a backlog of allocation updates decoded 500 of them (over a million
    entries) at once.
    """
    while not stop.is_set():
        async with kafka_errors(action):
            records = await _take(consumer, max_records, max_bytes)
        taken, size = 0, 0
        for record in records:
            size += len(record.value) if record.value is not None else 0
            if taken and size > max_bytes:
                break
            taken += 1
        if taken < len(records):
            seek_back(consumer, records[taken:])
        if records:
            await process(records[:taken])
        elif idle is not None:
            await idle()


TAKE_CHUNK = 16  # records taken from the consumer's buffer at a time


async def _take(consumer: AIOKafkaConsumer, max_records: int, max_bytes: int) -> list[Any]:
    """Up to ``max_records`` fetched records, taken a few at a time until they hold
    ``max_bytes``: aiokafka makes a record of each buffered one it hands out, and a
    gateway's allocation updates are 100-200 KB each (500 of them were 50 MB in hand)."""
    records: list[Any] = []
    size = 0
    wait_ms = _POLL_MS
    while len(records) < max_records and size <= max_bytes:
        chunk = min(TAKE_CHUNK, max_records - len(records))
        batches = await consumer.getmany(timeout_ms=wait_ms, max_records=chunk)
        taken = [record for batch in batches.values() for record in batch]
        if not taken:
            break
        records += taken
        size += sum(len(r.value) for r in taken if r.value is not None)
        wait_ms = 0  # then only what is buffered already
    return records


def read_offsets(
    consumer: AIOKafkaConsumer, records: Iterable[ConsumerRecord]
) -> dict[TopicPartition, int]:
    """The offsets to commit once ``records`` are done: for each partition they came from
    (and the consumer still holds), the offset after the last of them. Only those: a
    commit of every assigned partition sends hundreds of unchanged offsets per batch."""
    after: dict[TopicPartition, int] = {}
    for r in records:
        tp = TopicPartition(r.topic, r.partition)
        after[tp] = max(after.get(tp, 0), r.offset + 1)
    assigned = consumer.assignment()
    return {tp: offset for tp, offset in after.items() if tp in assigned}


def seek_back(consumer: AIOKafkaConsumer, records: Iterable[ConsumerRecord]) -> None:
    """Read ``records`` again: each partition still assigned is sought back to its first
    of them (a partition assigned elsewhere now is read by its new owner from the
    committed offset)."""
    first: dict[TopicPartition, int] = {}
    for r in records:
        tp = TopicPartition(r.topic, r.partition)
        first[tp] = min(first.get(tp, r.offset), r.offset)
    assigned = consumer.assignment()
    for tp, offset in first.items():
        if tp in assigned:
            consumer.seek(tp, offset)


# --- several envelopes per record ---------------------------------------------------------

MAX_BATCH_ENVELOPES = 500
MAX_BATCH_BYTES = 512 * 1024  # below the broker's default 1 MB message.max.bytes


async def send_batched(
    producer: AIOKafkaProducer,
    topic: str,
    items: Iterable[tuple[bytes, bytes]],
    *,
    max_envelopes: int = MAX_BATCH_ENVELOPES,
    max_bytes: int = MAX_BATCH_BYTES,
) -> list[asyncio.Future[Any]]:
    """Send ``(key, envelope)`` pairs to ``topic``, several envelopes per Kafka record.

    Each envelope goes to the partition its key picks (the default partitioner's
    murmur2, as a keyed send would), so a child's envelopes stay in order on one
    partition; the envelopes of one partition are packed into EnvelopeBatch records of
    at most ``max_envelopes`` envelopes and about ``max_bytes``. Returns the futures of
    the broker acknowledgements; call inside :func:`kafka_errors`.
    """
    partitions = sorted(await producer.partitions_for(topic))
    grouped: dict[int, list[bytes]] = {}
    for key, envelope in items:
        index = (murmur2(key) & 0x7FFFFFFF) % len(partitions)
        grouped.setdefault(partitions[index], []).append(envelope)
    futures = []
    for partition, envelopes in grouped.items():
        for chunk in envelope_chunks(envelopes, max_envelopes, max_bytes):
            futures.append(await producer.send(topic, pack(chunk), partition=partition))
    return futures


def envelope_chunks(envelopes: list[bytes], most: int, max_bytes: int) -> Iterable[list[bytes]]:
    """``envelopes`` in order, in runs of at most ``most`` and about ``max_bytes``."""
    chunk: list[bytes] = []
    size = 0
    for envelope in envelopes:
        if chunk and (len(chunk) >= most or size + len(envelope) > max_bytes):
            yield chunk
            chunk, size = [], 0
        chunk.append(envelope)
        size += len(envelope)
    if chunk:
        yield chunk
