"""What the gateway sends an agency, on its connector's topics (issue 23).

An agency a connector carries (design.md, glossary "connector") has no topics of its own:
everything the gateway sends it (receipts, share decisions, consent and information
requests, an LA's responses to its referrals, a school's open-case lists on
``sgx.receipts.<connector>``; a school's key-adult and a force's SPOC deliveries on
``sgx.delivery.<connector>``) goes on its connector's outbound topics, so the broker's
topics and partitions grow with the connecting systems, not with the agencies. Each such
record is

* **keyed by the agency** (its id's UTF-8 bytes), so the default partitioner puts all of
  one agency's records on one partition, in the order the gateway sent them;
* **named for the agency** in one Kafka header, :data:`AGENCY_HEADER` (the agency's id,
  a party id as every topic name already is: nothing of a child), so a reader skips
  another agency's record without opening or even unpacking it;
* **sealed for the agency**, as on its own topic: the envelope's recipient is the agency,
  whose box key alone unwraps its data key. The connector carries what it cannot read.

An agency no connector carries, and every local authority (which publishes itself), keeps
its own ``sgx.receipts.<party>`` and ``sgx.delivery.<party>`` with records as before (no
header, keyed by message or child). :func:`for_agency` is the one rule every reader of
these topics applies: a record naming another agency is skipped, not an error; a record
naming this agency, or none (its own topic), is opened, and one that fails to open is
quarantined as before.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from typing import Any, TypeVar

from aiokafka import AIOKafkaProducer

from sgx.kafka.wiring import (
    MAX_BATCH_BYTES,
    MAX_BATCH_ENVELOPES,
    delivery_topic,
    envelope_chunks,
    receipts_topic,
)
from sgx.keys.trust import TrustDirectory
from sgx.wire.envelope import pack

AGENCY_HEADER = "sgx-agency"
R = TypeVar("R")


def receipts_topic_of(trust: TrustDirectory, party_id: str) -> str:
    """The topic the gateway answers ``party_id`` on: its connector's receipts topic, or
    its own when it is its own connector."""
    return receipts_topic(trust.outbound_connector(party_id))


def delivery_topic_of(trust: TrustDirectory, party_id: str) -> str:
    """The topic the gateway delivers to ``party_id`` on: its connector's delivery topic,
    or its own when it is its own connector (every LA)."""
    return delivery_topic(trust.outbound_connector(party_id))


def agency_headers(agency: str) -> list[tuple[str, bytes]]:
    """The Kafka headers of a record on a connector's outbound topic for ``agency``."""
    return [(AGENCY_HEADER, agency.encode())]


def named_agency(record: Any) -> str | None:
    """The agency a record's :data:`AGENCY_HEADER` names (None: no such header)."""
    for key, value in getattr(record, "headers", None) or ():
        if key == AGENCY_HEADER:
            return bytes(value).decode("utf-8", errors="replace")
    return None


def for_agency(records: Iterable[R], agency: str) -> list[R]:
    """The records of ``records`` that ``agency`` reads: those naming it, and those naming
    no agency (its own topic). Those naming another agency of its connector are skipped."""
    return [r for r in records if named_agency(r) in (None, agency)]


async def send_for_agency(
    producer: AIOKafkaProducer,
    topic: str,
    agency: str,
    envelopes: Sequence[bytes],
    *,
    max_envelopes: int = MAX_BATCH_ENVELOPES,
    max_bytes: int = MAX_BATCH_BYTES,
) -> list[asyncio.Future[Any]]:
    """Send ``envelopes`` sealed for ``agency`` to its connector's ``topic``: several per
    record (EnvelopeBatch, as :func:`~sgx.kafka.wiring.send_batched`), every record keyed
    by the agency and naming it in its header. Returns the acknowledgements' futures; call
    inside :func:`~sgx.kafka.wiring.kafka_errors`."""
    key, headers = agency.encode(), agency_headers(agency)
    futures = []
    for chunk in envelope_chunks(list(envelopes), max_envelopes, max_bytes):
        futures.append(await producer.send(topic, pack(chunk), key=key, headers=headers))
    return futures
