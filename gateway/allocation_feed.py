"""Every gateway instance's copy of the allocation stream: a global table of allocations.

Each LA publishes its allocation updates to its own topic, ``sgx.allocations.<la>``
(one partition: an LA's updates are totally ordered). Every gateway instance reads every
allocation topic, outside the gateway group (assigned, never committed), into its own
:class:`~gateway.allocations.AllocationDirectory`, as a Kafka Streams global table is
read. Notifications are encrypted to the gateway and keyed by whatever their sender
chose, so they cannot be co-partitioned with allocations by child; a global table lets
any instance judge any notification (docs/design.md, "Several gateways").

**Order.** :meth:`AllocationFeed.catch_up` runs before each batch of notifications is
judged: it asks the broker for the end of every allocation partition and reads up to it.
The end is asked for after the batch was fetched, so every allocation change the broker
took before any notification of the batch is applied before that notification is judged,
whichever topic, partition or fetch it came in. (A change taken moments after may be
applied too: the directory is never older than a notification, at most slightly newer.)

The embedded broker answers "latest offset" with the base offset of the partition's last
record batch plus one, not its end; reading up to that offset fetches the whole last
batch, and what a fetch returned is applied whole, so the end is reached there too. A
real Kafka broker's answer is exact.

**Deterministic.** What an update does depends only on the LA's own earlier updates (an
LA changes only its own rows), so every instance derives the same directory from the
same stream. The instance owning the allocation topic's partition in the gateway group
also judges each update for its side effects (audit, receipt, snapshot, open-case
lists: :mod:`gateway.allocation_updates`); it takes the summary this feed worked out
against the directory as it stood before the update (:meth:`settle`).
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from gateway.allocation_cases import Settled
from gateway.allocations import AllocationChange, AllocationDirectory, Position
from sgx.errors import ConfigError, ContractError, EnvelopeError, TransportError
from sgx.kafka.quarantine import Source, sources
from sgx.kafka.wiring import allocations_agency, allocations_topic, kafka_errors
from sgx.keys.trust import TrustDirectory
from sgx.wire import contract as c
from sgx.wire.contract import Contract
from sgx.wire.envelope import Opened, Opener, Purpose

log = logging.getLogger(__name__)
_POLL_MS = 100
# how long a catch-up may read nothing while behind before it is a TransportError: a limit
# on a stall, not on the catch-up (a first start with a year of updates on a busy machine
# takes minutes, and refusing to start then would be an outage that repeats at each restart)
CATCH_UP_STALL_S = 120.0
_KEPT_SUMMARIES = 10_000  # summaries kept for the partition's owner to take
_KEPT_APPLIED = 100_000  # updates whose first position is kept in memory (the rest: store)

Update = tuple[str, str]  # (LA, message id)
Where = tuple[str, int, int]  # (topic, partition, offset)


def summary(update: Mapping[str, Any], settled: Settled, trust: TrustDirectory) -> str:
    """What an applied update did, in words, for the audit record and the receipt (for a
    refused one, why)."""
    if settled.refused is not None:
        return settled.refused
    transfers = [a["transfer_from"] for a in update["allocations"] if a["transfer_from"]]
    parts = [f"{len(update['allocations']) - len(transfers)} allocated or changed"]
    for code in sorted(set(transfers)):
        origin = trust.authority(code)
        named = f"{origin.id} ({code})" if origin else f"{code}, not an LA of this exchange"
        parts.append(f"{transfers.count(code)} transferred in from {named}")
    held = settled.held
    parts.append(f"{sum(held)} closed")
    if not all(held):
        parts.append(f"{held.count(False)} closure(s) of a case not open here changed nothing")
    return ", ".join(parts)


class AllocationFeed:
    """Applies the allocation stream to the directory, in order, once per record."""

    def __init__(
        self,
        *,
        directory: AllocationDirectory,
        opener: Opener,
        contract: Contract,
        trust: TrustDirectory,
        consumer: AIOKafkaConsumer | None = None,
        offsets: AIOKafkaConsumer | None = None,
    ) -> None:
        self._directory = directory
        self._opener = opener
        self._contract = contract
        self._trust = trust
        self._consumer = consumer
        # asks where the topics begin and end on a connection of its own: on the
        # consumer's, the question waits behind a fetch the broker holds (for up to
        # SGX_KAFKA_FETCH_MAX_WAIT_MS when the allocation topics are idle, as they mostly
        # are), and every batch of notifications waited with it
        self._offsets = offsets  # None: the consumer's own (tools and tests)
        self._partitions: list[TopicPartition] = []
        self._next: dict[Position, int] = {}  # the next offset to apply, per partition
        # where the updates applied most recently were first read; older ones are asked
        # of the store (AllocationDirectory.first_read), so memory does not grow with history
        self._applied: OrderedDict[Update, Where | None] = OrderedDict()
        self._summaries: OrderedDict[Where, tuple[str, bool]] = OrderedDict()
        self.applied = 0  # records applied since start (metrics)
        self.ready = False

    @property
    def directory(self) -> AllocationDirectory:
        return self._directory

    def positions(self) -> dict[Position, int]:
        """The next offset this instance will apply, per allocation partition."""
        return dict(self._next)

    async def start(self, partitions: Iterable[TopicPartition] = ()) -> None:
        """Load the snapshot, then read ``partitions`` from where it stands to their end."""
        self._next = await self._directory.load()
        self._partitions = sorted(partitions)
        if self._consumer is not None and self._partitions:
            self._consumer.assign(self._partitions)
            await self._refuse_a_gap(self._consumer)
            for tp in self._partitions:
                self._consumer.seek(tp, self._next.get((tp.topic, tp.partition), 0))
            self._consumer.pause(*self._partitions)  # fetched only while catching up
            await self.catch_up()
        self.ready = True

    async def _refuse_a_gap(self, consumer: AIOKafkaConsumer) -> None:
        """Refuse to start if the broker no longer holds an update the directory has not
        applied: a topic that now begins after the snapshot's position lost updates (an
        allocation topic is kept for ever; a retention or a deletion broke that), and a
        directory without them could route a closed case's notifications to its old LA.
        Reading on from the first offset held would hide that; waiting for the missing
        records would wait for ever."""
        async with kafka_errors("read the starts of the allocation topics"):
            starts = await (self._offsets or consumer).beginning_offsets(self._partitions)
        lost = [
            f"{tp.topic}:{tp.partition} holds offsets from {start}, the directory "
            f"stands at {self._next.get((tp.topic, tp.partition), 0)}"
            for tp, start in sorted(starts.items())
            if start > self._next.get((tp.topic, tp.partition), 0)
        ]
        if lost:
            raise ConfigError(
                "allocation updates the directory has not applied are gone from the broker "
                f"({'; '.join(lost)}): keep allocation topics for ever (retention.ms=-1, "
                "deploy/acl_plan.py), and have the LA publish its open cases again"
            )

    async def catch_up(self) -> int:
        """Read every allocation partition to the end the broker reports now; returns the
        number of records applied."""
        if self._consumer is None or not self._partitions:
            return 0
        consumer = self._consumer
        async with kafka_errors("read the ends of the allocation topics"):
            ends = await (self._offsets or consumer).end_offsets(self._partitions)
        behind = [tp for tp in self._partitions if self._behind(tp, ends[tp])]
        if not behind:
            return 0
        before = self.applied
        loop = asyncio.get_running_loop()
        progressed = loop.time()
        consumer.resume(*behind)
        try:
            while behind:
                async with kafka_errors("read the allocation topics"):
                    fetched = await consumer.getmany(*behind, timeout_ms=_POLL_MS)
                if any(fetched.values()):
                    progressed = loop.time()
                elif loop.time() - progressed > CATCH_UP_STALL_S:
                    raise TransportError(
                        f"allocation topics: nothing read for {CATCH_UP_STALL_S:g}s while "
                        f"behind ({self._where(behind, ends)})"
                    )
                await self._apply_all(fetched)
                behind = [tp for tp in behind if self._behind(tp, ends[tp])]
            async with kafka_errors("read the allocation topics"):
                tail = await consumer.getmany(timeout_ms=0)  # a fetched tail
            await self._apply_all(tail)
        finally:
            # No fetch between catch-ups: a partition not paused is fetched again and again
            # (every SGX_KAFKA_FETCH_MAX_WAIT_MS while the topics are idle, as they mostly
            # are), and parsing those empty fetches was CPU every second whatever the traffic.
            consumer.pause(*self._partitions)
        return self.applied - before

    def _where(
        self, partitions: Iterable[TopicPartition], ends: Mapping[TopicPartition, int]
    ) -> str:
        return ", ".join(
            f"{tp.topic}:{tp.partition} at {self._next.get((tp.topic, tp.partition), 0)}"
            f" of {ends[tp]}"
            for tp in partitions
        )

    def _behind(self, tp: TopicPartition, end: int) -> bool:
        return self._next.get((tp.topic, tp.partition), 0) < end

    async def _apply_all(self, fetched: Mapping[TopicPartition, list[ConsumerRecord]]) -> None:
        """Apply what a fetch returned, in order. Each update is decoded only when it is
        applied: a fetch may hold hundreds of updates of thousands of entries, and one
        decoded is about sixteen times its bytes (2.5 MB for 2,500 entries)."""
        read = [
            (source, self._key(source))
            for records in fetched.values()
            for record in records
            for source in sources(record)
        ]
        unknown = {key for _, key in read if key is not None and key not in self._applied}
        stored = await self._directory.first_read(unknown)
        for source, key in read:
            first = self._applied.get(key, stored.get(key, source.position)) if key else None
            update = self._read(source) if key is not None and first == source.position else None
            if update is not None and key is not None:
                self.settle(source, update, key[1])
            else:  # unreadable, another LA's cases (refused by the owner), or a resend
                self._advance(source)

    def _opened(self, source: Source) -> Opened | None:
        """The allocation record opened, if its LA wrote it to its own topic; one that
        fails is left to the owner, which quarantines it (this instance skips it)."""
        try:
            opened = self._opener.open(source.envelope(), purposes=(Purpose.ALLOCATIONS,))
            sender = opened.sender
            if sender.kind != "local_authority" or sender.id != allocations_agency(source.topic):
                raise EnvelopeError(f"{sender.id} may not write to {source.topic}")
        except EnvelopeError as exc:
            log.debug("allocation record %s skipped: %s", source.where, exc)
            return None
        return opened

    def _key(self, source: Source) -> Update | None:
        """(LA, message id) of an allocation record its LA wrote (its update not decoded)."""
        opened = self._opened(source)
        return None if opened is None else (opened.sender.id, str(opened.message_id))

    def _read(self, source: Source) -> Mapping[str, Any] | None:
        """One allocation record's update, if it is about the LA's own cases (opened again:
        an AES-GCM open costs little beside holding every plaintext of a fetch at once)."""
        opened = self._opened(source)
        if opened is None:
            return None
        try:
            update = self._contract.decode_as(c.ALLOCATION_UPDATE, opened.plaintext)
        except ContractError as exc:
            log.debug("allocation record %s skipped: %s", source.where, exc)
            return None
        return update if update["la_id"] == opened.sender.id else None

    def _advance(self, source: Source) -> None:
        position = (source.topic, source.partition)
        self._next[position] = max(self._next.get(position, 0), source.offset + 1)

    def settle(
        self, source: Source, update: Mapping[str, Any], message_id: str
    ) -> tuple[AllocationChange, str, bool]:
        """The change ``update`` (read at ``source``, the sender's own cases) makes, its
        summary, and whether it was refused (it would put two NHS numbers in one case);
        applied to the directory the first time this instance meets it.

        A record this instance applied already (before the owner judged it, or in the
        snapshot it loaded) is not applied again: its summary is the one worked out when
        it was applied, or, if that is no longer kept, worked out against the directory
        as it stands now. (The snapshot does not depend on it: it settles the change
        against its own rows, :meth:`AllocationDirectory.persist`.)
        """
        where = (source.topic, source.partition, source.offset)
        directory = self._directory
        change = directory.change(update, where, message_id)
        first = source.offset >= self._next.get((source.topic, source.partition), 0)
        if not first:
            kept = self._summaries.get(where)
            if kept is None:
                settled = directory.preview(change)
                kept = summary(update, settled, self._trust), settled.refused is not None
            return change, *kept
        settled = directory.apply_in_memory(change)  # closing a case not held: no-op
        said = summary(update, settled, self._trust), settled.refused is not None
        self._applied[str(update["la_id"]), message_id] = where
        while len(self._applied) > _KEPT_APPLIED:
            self._applied.popitem(last=False)
        self._advance(source)
        self.applied += 1
        self._summaries[where] = said
        while len(self._summaries) > _KEPT_SUMMARIES:
            self._summaries.popitem(last=False)
        return change, *said


def allocation_topics(trust: TrustDirectory) -> list[str]:
    """Every LA's allocation topic."""
    return sorted(allocations_topic(la) for la in trust.local_authorities())
