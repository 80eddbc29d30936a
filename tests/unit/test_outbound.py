"""What the gateway sends through a connector (sgx.kafka.outbound): whose topics carry an
agency, which records a reader keeps, and the topics the exchange creates for them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from safeguard.runtime import exchange_topics
from sgx.kafka.outbound import (
    AGENCY_HEADER,
    agency_headers,
    delivery_topic_of,
    for_agency,
    named_agency,
    receipts_topic_of,
)
from sgx.keys.connectors import Connector
from sgx.keys.key_admin import init_trust
from sgx.keys.trust import PartySpec, TrustDirectory
from sgx.settings import KafkaSettings

LA = "la-northshire"
SCHOOL, OTHER_SCHOOL, OWN_SCHOOL, HEALTH = (
    "school-hillside", "school-brookside", "school-oak", "nhs-north",
)  # fmt: skip
MIS, SECOND_MIS, EPR = "mis-acme", "mis-beta", "epr-north"
SPECS = [
    PartySpec("gateway", "gateway", "Exchange gateway"),
    PartySpec(LA, "local_authority", "Northshire Council", gss_code="E06000901"),
    PartySpec(SCHOOL, "school", "Hillside Primary", (LA,)),
    PartySpec(OTHER_SCHOOL, "school", "Brookside Primary", (LA,)),
    PartySpec(OWN_SCHOOL, "school", "Oak Primary", (LA,)),
    PartySpec(HEALTH, "health", "North Trust", (LA,)),
]
CONNECTORS = [
    Connector(id=MIS, name="Acme MIS", carries=[SCHOOL, OTHER_SCHOOL]),
    Connector(id=SECOND_MIS, name="Beta MIS", carries=[OTHER_SCHOOL]),  # carries it too
    Connector(id=EPR, name="North EPR", carries=[HEALTH]),
]


@dataclass
class _Record:
    value: bytes
    headers: tuple[tuple[str, bytes], ...] = ()


@pytest.fixture(scope="module")
def trust(tmp_path_factory: pytest.TempPathFactory) -> TrustDirectory:
    folder: Path = tmp_path_factory.mktemp("outbound") / "trust"
    return init_trust(folder, SPECS, CONNECTORS)


def test_an_agency_hears_on_its_first_connectors_topics_or_its_own(
    trust: TrustDirectory,
) -> None:
    assert trust.outbound_connector(SCHOOL) == MIS
    assert trust.outbound_connector(OTHER_SCHOOL) == MIS  # the first that lists it
    assert trust.outbound_connector(OWN_SCHOOL) == OWN_SCHOOL
    assert trust.outbound_connector(LA) == LA
    assert receipts_topic_of(trust, SCHOOL) == f"sgx.receipts.{MIS}"
    assert delivery_topic_of(trust, SCHOOL) == f"sgx.delivery.{MIS}"
    assert receipts_topic_of(trust, OWN_SCHOOL) == f"sgx.receipts.{OWN_SCHOOL}"
    assert delivery_topic_of(trust, LA) == f"sgx.delivery.{LA}"


def test_a_reader_keeps_its_own_records_and_those_naming_nobody() -> None:
    mine = _Record(b"1", tuple(agency_headers(SCHOOL)))
    theirs = _Record(b"2", tuple(agency_headers(OTHER_SCHOOL)))
    own_topic = _Record(b"3")  # an agency's own topic: no header
    other_header = _Record(b"4", (("trace", b"x"),))
    records = [mine, theirs, own_topic, other_header]
    assert for_agency(records, SCHOOL) == [mine, own_topic, other_header]
    assert for_agency(records, OTHER_SCHOOL) == [theirs, own_topic, other_header]
    assert named_agency(mine) == SCHOOL
    assert named_agency(own_topic) is None
    assert agency_headers(SCHOOL) == [(AGENCY_HEADER, SCHOOL.encode())]


def test_the_exchange_creates_outbound_topics_per_connector_not_per_agency(
    trust: TrustDirectory,
) -> None:
    topics = exchange_topics(trust, KafkaSettings(inbound_partitions=3, delivery_partitions=2))
    outbound = {t: n for t, n in topics.items() if t.startswith(("sgx.receipts.", "sgx.delivery."))}
    assert outbound == {
        f"sgx.receipts.{LA}": 1,
        f"sgx.delivery.{LA}": 2,
        f"sgx.receipts.{OWN_SCHOOL}": 1,
        f"sgx.delivery.{OWN_SCHOOL}": 2,
        f"sgx.receipts.{MIS}": 3,  # as many partitions as its inbound topic
        f"sgx.delivery.{MIS}": 2,  # its schools' key adults
        f"sgx.receipts.{EPR}": 3,  # a trust has no delivery topic: nor has its connector
    }  # the second MIS carries no agency first: it hears nothing, so it has no topics
