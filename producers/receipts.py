"""The receipt listener: the gateway's answers, matched to the agency's outbox entries.

The gateway answers each envelope with a receipt — DELIVERED, REFUSED (agreement) or
QUARANTINED, with reason and detail — gathered in one ``ReceiptBatch`` per sender per
gateway batch, sealed for the sender on ``sgx.receipts.<agency>`` (purpose RECEIPTS), or,
for an agency a connector carries, on ``sgx.receipts.<connector>`` among the connector's
other agencies' records, which the recorder skips unopened (:mod:`sgx.kafka.outbound`).

Per batch of records: split each record into its envelopes (a record may carry one or an
EnvelopeBatch), open each (it must come from the gateway), decode the receipts, and
record them on their outbox entries together with any record that could not be trusted
or read (kept with its reason, never dropped) in ONE transaction; the consumer offsets
are committed only after that commit. A crash replays the batch, and recording the same
receipt twice writes the same answer. Records of other purposes on the same topic (a
local authority's SHARE_DECISION answers) belong to the share client and are skipped; a
consent request the gateway forwards to this agency as author, or a MASH's information
request (SHARE_REQUEST), is kept in the outbox's database with the receipts read beside it,
and so is a local authority's signed response to one of the agency's referrals (a
``SignedReferralResponse`` among the RECEIPTS, :mod:`producers.referral_outcomes`), once the
LA's signature verifies.

:class:`ReceiptRecorder` is what records mean to the outbox, :class:`ReceiptListener`
consumes the topic in the agency's group, and :func:`catch_up` reads it once to its end
for an agency whose relay does not run as a service (``safeguard producer consent list``).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import uuid
from collections.abc import Iterable
from typing import Any

from aiokafka import AIOKafkaConsumer
from sqlalchemy.ext.asyncio import AsyncConnection

from producers.consent_requests import ConsentRequest, ConsentRequests
from producers.information_requests import InformationRequest, InformationRequests
from producers.outbox import RECEIPT_OUTCOMES, OutboxStore, ReceiptUpdate
from producers.referral_outcomes import ReferralHeard, ReferralOutcomes
from sgx.errors import ContractError, ExchangeError
from sgx.kafka.backoff import Backoff
from sgx.kafka.commits import commit_offsets
from sgx.kafka.outbound import for_agency, receipts_topic_of
from sgx.kafka.quarantine import Source, from_gateway, sources
from sgx.kafka.schema_topic import SchemaRegistry, read_learning
from sgx.kafka.wiring import kafka_errors, read_topic, receipts_topic, run_batches
from sgx.keys.trust import TrustDirectory, utc_now
from sgx.settings import KafkaSettings
from sgx.wire import contract as c
from sgx.wire.contract import Contract
from sgx.wire.envelope import Opener, Purpose
from sgx.wire.referral_signature import verify_response

log = logging.getLogger(__name__)


class ReceiptRecorder:
    """What the gateway's records on an agency's receipts topic mean to its outbox: each
    receipt on its entry, each forwarded consent request kept, anything that cannot be
    trusted or read kept with its reason; all of it idempotent."""

    def __init__(
        self,
        *,
        store: OutboxStore,
        agency: str,
        opener: Opener,
        contract: Contract,
        registry: SchemaRegistry | None = None,
        consents: ConsentRequests | None = None,
        trust: TrustDirectory | None = None,
        outcomes: ReferralOutcomes | None = None,
        topic: str | None = None,
    ) -> None:
        """``consents`` keeps the consent requests the gateway forwards and ``outcomes`` the
        LAs' responses to the agency's referrals (default: in the outbox's database), as the
        information requests are kept beside them; ``trust`` verifies an LA's signature on a
        response (without it, a response is kept in quarantine: unverified words are not an
        LA's). ``topic`` is where the gateway answers the agency: by default its connector's
        receipts topic as ``trust`` says, else its own (:mod:`sgx.kafka.outbound`)."""
        self.agency = agency
        if topic is None:
            topic = receipts_topic(agency) if trust is None else receipts_topic_of(trust, agency)
        self.topic = topic
        self._store = store
        self._consents = consents or ConsentRequests(store.engine, schema=store.schema)
        self._outcomes = outcomes or ReferralOutcomes(store.engine, schema=store.schema)
        self._information = InformationRequests(store.engine, schema=store.schema)
        self._trust = trust
        self._opener = opener
        self._contract = contract
        self._registry = registry

    async def record(self, records: Iterable[Any]) -> tuple[int, int]:
        """Record what ``records`` hold in ONE transaction; (receipts, consent requests)."""
        # A newer gateway's receipts (a schema this release has not seen) are read once the
        # registry has taught the schema (sgx.wire.schema_registry).
        # on a connector's topic, another agency's records are skipped unopened
        mine = for_agency(records, self.agency)
        found = [source for record in mine for source in sources(record)]
        read, quarantined, _ = await read_learning(found, self._read, self._registry)
        receipts = [r for r in read if isinstance(r, ReceiptUpdate)]
        asked = [r for r in read if isinstance(r, ConsentRequest)]
        heard = [r for r in read if isinstance(r, ReferralHeard)]
        checks = [r for r in read if isinstance(r, InformationRequest)]
        also = functools.partial(self._persist, asked=asked, heard=heard, checks=checks)
        await self._store.apply_receipts(
            self.agency, receipts, quarantined, also=also if asked or heard or checks else None
        )
        for q in quarantined:
            log.warning("receipts of %s: kept a record as %s", self.agency, q.reason)
        return len(receipts), len(asked) + len(checks)

    async def _persist(
        self,
        conn: AsyncConnection,
        *,
        asked: list[ConsentRequest],
        heard: list[ReferralHeard],
        checks: list[InformationRequest],
    ) -> None:
        await self._consents.persist(conn, asked)
        await self._outcomes.persist(conn, heard)
        await self._information.persist(conn, checks)

    def _read(
        self, source: Source
    ) -> list[ReceiptUpdate | ConsentRequest | ReferralHeard | InformationRequest]:
        opened = self._opener.open(source.envelope())
        if opened.purpose is Purpose.SHARE_REQUEST:
            from_gateway(opened, "a consent or information request")
            name, record = self._contract.decode(opened.plaintext)
            if name == c.INFORMATION_REQUEST:
                return [InformationRequest.of(self.agency, record, utc_now())]
            record = self._contract.decode_as(c.CONSENT_REQUEST, opened.plaintext)
            return [ConsentRequest.of(self.agency, record, utc_now())]
        if opened.purpose is not Purpose.RECEIPTS:
            return []  # a share decision or consent outcome: the LA's share client reads those
        from_gateway(opened, "receipts")
        name, record = self._contract.decode(opened.plaintext)
        if name == c.SIGNED_REFERRAL_RESPONSE:
            return [self._heard(record)]
        if name != c.RECEIPT_BATCH:
            raise ContractError("$", f"a RECEIPTS envelope holds a {name}", schema=name)
        return [_update(r) for r in record["receipts"]]

    def _heard(self, signed: dict[str, Any]) -> ReferralHeard:
        """An LA's response to one of this agency's referrals, once its signature verifies
        (an EnvelopeError otherwise: the record is kept in quarantine)."""
        if self._trust is None:
            raise ContractError("$", "no trust directory to verify the LA's signature with")
        response = verify_response(self._trust, self._contract, signed)
        if response["referrer"] != self.agency:
            raise ContractError("referrer", f"a response for {response['referrer']}, not us")
        return ReferralHeard.of(self.agency, signed, response, utc_now())


async def catch_up(recorder: ReceiptRecorder, settings: KafkaSettings) -> int:
    """Read the agency's receipts topic from its start to its end, outside the listener's
    group (nothing committed), and record what is on it; returns the consent requests read.
    For an agency whose relay does not run as a service: what the listener would have
    recorded is recorded now (again, harmlessly, for what it recorded already)."""
    _, asked = await recorder.record(await read_topic(settings, recorder.topic))
    return asked


class ReceiptListener:
    """Consumes one agency's receipts topic into its outbox (:class:`ReceiptRecorder`)."""

    def __init__(
        self,
        recorder: ReceiptRecorder,
        consumer: AIOKafkaConsumer,
        *,
        max_records: int = 500,
        backoff: Backoff | None = None,
    ) -> None:
        self._recorder = recorder
        self._agency = recorder.agency
        self._consumer = consumer
        self._max_records = max_records
        self._backoff = backoff or Backoff()
        self.received = 0  # receipts recorded since start

    async def run(self, stop: asyncio.Event) -> None:
        """Record receipts until ``stop`` is set; a retriable failure is retried."""
        while not stop.is_set():
            try:
                await run_batches(
                    self._consumer,
                    stop,
                    self.process,
                    max_records=self._max_records,
                    action="fetch receipts",
                )
            except ExchangeError as exc:
                if not exc.retriable:
                    raise
                await self._recover(stop, exc)

    async def _recover(self, stop: asyncio.Event, exc: ExchangeError) -> None:
        """Back off, then rewind to the committed offsets: the failed batch is read again."""
        delay = self._backoff.next_delay()
        log.warning("receipts of %s: %s; retrying in %.1fs", self._agency, exc, delay)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), delay)
        try:
            async with kafka_errors("rewind receipts to the committed offsets"):
                await self._rewind()
        except ExchangeError as again:
            log.warning("receipts of %s: %s", self._agency, again)

    async def _rewind(self) -> None:
        for tp in self._consumer.assignment():
            committed = await self._consumer.committed(tp)
            if committed is None:
                await self._consumer.seek_to_beginning(tp)
            else:
                self._consumer.seek(tp, committed)

    async def process(self, records: Iterable[Any]) -> None:
        receipts, _ = await self._recorder.record(records)
        await commit_offsets(self._consumer, None, action="commit receipt offsets")
        self._backoff.reset()
        self.received += receipts


def _update(receipt: dict[str, Any]) -> ReceiptUpdate:
    outcome = str(receipt["outcome"])
    if outcome not in RECEIPT_OUTCOMES:
        raise ContractError("receipts[].outcome", f"unknown receipt outcome {outcome!r}")
    return ReceiptUpdate(
        message_id=uuid.UUID(str(receipt["message_id"])),
        outcome=outcome,
        reason=receipt["reason"],
        detail=receipt["detail"],
        decided_at=receipt["decided_at"],
    )
