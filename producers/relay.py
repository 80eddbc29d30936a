"""The outbox relay: sends pending outbox entries until the broker has acknowledged them.

Each pass takes up to ``batch_size`` PENDING entries, oldest first, seals and publishes
them (:meth:`Publisher.send`, which waits for every broker ack), and marks the whole
batch SENT in ONE transaction. Passes repeat until nothing is pending; then the relay
waits for :attr:`Outbox.added` or its poll interval (another process may have added).

**Never drops.** A send that fails or is not acknowledged within ``send_timeout`` leaves
the batch PENDING (its attempts counted) and the relay backs off and tries again, for as
long as it runs. Every retriable error of the exchange (broker, database) is retried; an
error that is not retriable (a broken trust directory, say) stops the relay loudly rather
than looping on something a retry cannot fix. Entries are never deleted or skipped.

**At least once, never twice in a queue.** A crash after the broker's ack and before the
mark, or a send that timed out although the broker did take it, publishes the same
notification again. The gateway's audit trail and the social worker's queue are unique on
the notification id, so the second copy adds no queue row.

**Backoff** is :class:`sgx.kafka.backoff.Backoff` (capped exponential with equal jitter); the
wait also ends when the relay is stopped.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from producers.outbox import Outbox, Pending
from producers.publisher import Prepared
from sgx.errors import ExchangeError, TransportError
from sgx.kafka.backoff import Backoff
from sgx.ops.metrics import ProducerMetrics

log = logging.getLogger(__name__)


class Sends(Protocol):
    """What the relay needs of a publisher: seal, publish and await every broker ack."""

    async def send(self, items: Sequence[Prepared]) -> None: ...


@dataclass(frozen=True, slots=True)
class RelayOptions:
    """How the relay paces itself."""

    batch_size: int = 500
    send_timeout: float = 15.0  # no ack by then: the batch stays pending and is resent
    poll_interval: float = 1.0  # look for entries added by another process this often
    backoff_initial: float = 0.2
    backoff_cap: float = 30.0


class OutboxRelay:
    """Publishes an agency's pending outbox entries, oldest first, until acknowledged."""

    def __init__(
        self,
        outbox: Outbox,
        sender: Sends,
        *,
        metrics: ProducerMetrics | None = None,
        options: RelayOptions | None = None,
    ) -> None:
        self._outbox = outbox
        self._store = outbox.store
        self._agency = outbox.agency
        self._sender = sender
        self._metrics = metrics
        self._options = options or RelayOptions()
        self._backoff = Backoff(self._options.backoff_initial, self._options.backoff_cap)
        self.sent = 0  # entries acknowledged by the broker since start
        self.failures = 0  # failed passes since start

    async def run(self, stop: asyncio.Event) -> None:
        """Relay until ``stop`` is set; the batch in hand is finished (or times out) first."""
        while not stop.is_set():
            try:
                await self.drain(stop)
            except ExchangeError as exc:
                if not exc.retriable:
                    raise
                await self._back_off(stop, exc)
                continue
            self._backoff.reset()
            await self._idle(stop)

    async def drain(self, stop: asyncio.Event | None = None) -> int:
        """Send pending entries in batches until none is left; return how many were sent."""
        sent = 0
        self._outbox.added.clear()  # entries added from here on wake the next pass
        try:
            while stop is None or not stop.is_set():
                batch = await self._store.pending(self._agency, self._options.batch_size)
                if not batch:
                    break
                await self._send(batch)
                sent += len(batch)
        finally:
            await self._observe()
        return sent

    async def _send(self, batch: Sequence[Pending]) -> None:
        ids = [entry.entry_id for entry in batch]
        try:
            async with asyncio.timeout(self._options.send_timeout):
                await self._sender.send([entry.prepared for entry in batch])
        except (TimeoutError, ExchangeError) as exc:
            await self._note_failure(ids)
            if isinstance(exc, TimeoutError):
                raise TransportError(
                    f"publish {len(ids)} outbox entries of {self._agency}: "
                    f"no broker ack within {self._options.send_timeout:g}s"
                ) from exc
            raise
        await self._store.mark_sent(self._agency, ids)
        self.sent += len(ids)

    async def _note_failure(self, ids: list[int]) -> None:
        self.failures += 1
        try:
            await self._store.note_failure(self._agency, ids)
        except ExchangeError as exc:  # counting is bookkeeping: the send error matters more
            log.warning("outbox of %s: could not count a failed send: %s", self._agency, exc)

    async def _back_off(self, stop: asyncio.Event, exc: ExchangeError) -> None:
        delay = self._backoff.next_delay()
        log.warning("outbox relay of %s: %s; retrying in %.1fs", self._agency, exc, delay)
        await _first_of(stop, timeout=delay)

    async def _idle(self, stop: asyncio.Event) -> None:
        await _first_of(stop, self._outbox.added, timeout=self._options.poll_interval)

    async def _observe(self) -> None:
        if self._metrics is None:
            return
        try:
            depth = await self._store.depth(self._agency)
        except ExchangeError as exc:
            log.warning("outbox of %s: could not measure depth: %s", self._agency, exc)
            return
        self._metrics.outbox_depth.set(depth.pending)
        self._metrics.outbox_oldest_age.set(depth.oldest_age(datetime.now(UTC)))


async def _first_of(*events: asyncio.Event, timeout: float) -> None:
    """Return when any of ``events`` is set, or after ``timeout`` seconds."""
    waiters = [asyncio.create_task(event.wait()) for event in events]
    try:
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
        await asyncio.gather(*waiters, return_exceptions=True)
