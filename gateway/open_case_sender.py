"""Sending schools their open-case lists: once an LA's backlog is judged, streamed.

Each school's list is the complete current list, so only the newest matters. The sender
keeps the LAs whose allocation updates were committed and whose schools have not had a
list since (:meth:`OpenCaseSender.mark`), and sends an LA's lists (:meth:`send`) once no
more of its updates wait on its allocation partition (the partition's high watermark, as
the last fetch gave it, is the next offset to judge), when the gateway is idle, or
:data:`HOLD_S` after the first update waiting: a first start judging a backlog of four
updates an LA sends its schools one round, not four. Reading the lists from the committed
snapshot, encoding each served set's list once (:func:`gateway.open_cases.encoded_lists`)
and sealing per school, it awaits the broker once :data:`IN_FLIGHT_BYTES` of lists are
unacknowledged, so a round to 24,757 schools never holds every list at once.

**Nothing is lost.** The offset of an LA's allocation partition is not committed while
its lists wait (:meth:`held`): a crash, or the partition moving to another instance,
reads those updates again, which are judged again (the audit trail ignores decisions it
already holds) and their lists sent then.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from gateway.decision import Decision
from gateway.open_cases import encoded_lists, served_sets
from sgx.kafka.outbound import agency_headers
from sgx.kafka.quarantine import Source
from sgx.kafka.wiring import kafka_errors, receipts_topic
from sgx.keys.trust import TrustDirectory, utc_now
from sgx.wire.contract import Contract
from sgx.wire.envelope import Purpose
from sgx.wire.ids import new_id

HOLD_S = 30.0  # an LA's lists wait at most this long behind a backlog of its updates
IN_FLIGHT_BYTES = 8 << 20  # sealed lists sent and not yet acknowledged, at most

Seal = Callable[[str, Purpose, uuid.UUID, bytes], bytes]  # (school, purpose, id, plaintext)


class OpenCaseKeys(Protocol):
    """Where the lists are read: the committed snapshot
    (:meth:`gateway.allocations.AllocationDirectory.open_case_keys`)."""

    async def open_case_keys(self, local_authorities: Iterable[str]) -> list[bytes]: ...


@dataclass(slots=True)
class _Waiting:
    since: float  # monotonic: the first update since the LA's schools had a list
    partition: TopicPartition  # the LA's allocation partition, not committed meanwhile
    offset: int  # the offset after its last update judged: committed once sent


class OpenCaseSender:
    def __init__(
        self,
        *,
        trust: TrustDirectory,
        directory: OpenCaseKeys,
        contract: Contract,
        producer: AIOKafkaProducer,
        seal: Seal,
        hold_s: float = HOLD_S,
        in_flight_bytes: int = IN_FLIGHT_BYTES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._trust = trust
        self._directory = directory
        self._contract = contract
        self._producer = producer
        self._seal = seal
        self._hold_s = hold_s
        self._in_flight_bytes = in_flight_bytes
        self._clock = clock
        self._waiting: dict[str, _Waiting] = {}
        self.sent = 0  # lists sent (for tests and benchmarks)

    def mark(self, read: Sequence[Source], decisions: Sequence[Decision]) -> None:
        """Note the LAs of a committed batch whose schools need a fresh list."""
        for source, decision in zip(read, decisions, strict=True):
            for la in decision.open_cases_of:
                tp = TopicPartition(source.topic, source.partition)
                waiting = self._waiting.get(la)
                if waiting is None:
                    self._waiting[la] = _Waiting(self._clock(), tp, source.offset + 1)
                else:
                    waiting.partition = tp
                    waiting.offset = max(waiting.offset, source.offset + 1)

    def held(self) -> set[TopicPartition]:
        """The allocation partitions whose offsets must not be committed yet."""
        return {waiting.partition for waiting in self._waiting.values()}

    def due(self, consumer: AIOKafkaConsumer, *, idle: bool = False) -> list[str]:
        """The waiting LAs to send now: no more of their updates wait (or ``idle``: none
        of anything does), or they waited :data:`HOLD_S`. An LA whose partition this
        instance no longer holds is forgotten: its new owner reads the updates again."""
        if not self._waiting:
            return []
        assigned = consumer.assignment()
        now = self._clock()
        due = []
        for la, waiting in list(self._waiting.items()):
            if waiting.partition not in assigned:
                del self._waiting[la]
                continue
            highwater = consumer.highwater(waiting.partition)
            behind = highwater is not None and highwater > waiting.offset
            if idle or not behind or now - waiting.since >= self._hold_s:
                due.append(la)
        return sorted(due)

    async def send(self, las: Sequence[str]) -> dict[TopicPartition, int]:
        """Send every school serving one of ``las`` its list, awaiting the broker's
        acknowledgements; returns the offsets their partitions may now commit."""
        if not las:
            return {}
        issued_at = utc_now()
        pending: list[asyncio.Future[Any]] = []
        in_flight = 0
        async with kafka_errors("publish open-case lists"):
            for served, schools in served_sets(las, self._trust).items():
                keys = await self._directory.open_case_keys(served)
                for school, plaintext in encoded_lists(self._contract, schools, keys, issued_at):
                    message_id = new_id()
                    value = self._seal(school, Purpose.ALLOCATIONS, message_id, plaintext)
                    pending.append(await self._send(school, message_id, value))
                    in_flight += len(value)
                    self.sent += 1
                    if in_flight >= self._in_flight_bytes:
                        await asyncio.gather(*pending)
                        pending, in_flight = [], 0
            await asyncio.gather(*pending)
        released: dict[TopicPartition, int] = {}
        for la in las:
            waiting = self._waiting.pop(la, None)
            if waiting is not None:
                released[waiting.partition] = waiting.offset
        return released

    async def _send(self, school: str, message_id: uuid.UUID, value: bytes) -> asyncio.Future[Any]:
        owner = self._trust.outbound_connector(school)
        if owner == school:  # its own receipts topic
            sent: asyncio.Future[Any] = await self._producer.send(
                receipts_topic(school), value, key=message_id.bytes
            )
            return sent
        # its connector's receipts topic: keyed by the school, named in the header
        key, headers = school.encode(), agency_headers(school)
        sent = await self._producer.send(receipts_topic(owner), value, key=key, headers=headers)
        return sent
