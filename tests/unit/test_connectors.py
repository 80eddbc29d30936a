"""Connectors in the trust directory: who may carry which agency, and what is refused."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from producers.publisher import connector_for
from safeguard.quarantine_ops import first_topic
from sgx.errors import ConfigError
from sgx.kafka.quarantine import Quarantined
from sgx.kafka.quarantine_replay import Held
from sgx.kafka.wiring import REPLAY_TOPIC
from sgx.keys.connectors import Connector
from sgx.keys.identity import Identity
from sgx.keys.key_admin import init_trust, revoke_key, rotate_key
from sgx.keys.trust import DIRECTORY_FILE, PartySpec, TrustDirectory
from sgx.wire.envelope import Purpose, Sealer

LA, OTHER_LA = "la-northshire", "la-southvale"
SCHOOL, OTHER_SCHOOL, OWN_SCHOOL, POLICE = (
    "school-hillside", "school-brookside", "school-oak", "police-north",
)  # fmt: skip
MIS, RECORDS = "mis-acme", "records-north"
SPECS = [
    PartySpec("gateway", "gateway", "Exchange gateway"),
    PartySpec(LA, "local_authority", "Northshire Council", gss_code="E06000901"),
    PartySpec(OTHER_LA, "local_authority", "Southvale Council", gss_code="E06000902"),
    PartySpec(SCHOOL, "school", "Hillside Primary", (LA,)),
    PartySpec(OTHER_SCHOOL, "school", "Brookside Primary", (OTHER_LA,)),
    PartySpec(OWN_SCHOOL, "school", "Oak Primary", (LA,)),
    PartySpec(POLICE, "police", "North Police", (LA, OTHER_LA)),
]
CONNECTORS = [
    Connector(id=MIS, name="Acme MIS (hosted)", carries=[SCHOOL, OTHER_SCHOOL]),
    Connector(id=RECORDS, name="North records", principal="records-cloud", carries=[POLICE]),
]


@pytest.fixture
def trust_dir(tmp_path: Path) -> Path:
    init_trust(tmp_path / "trust", SPECS, CONNECTORS)
    return tmp_path / "trust"


def test_the_directory_keeps_its_connectors(trust_dir: Path) -> None:
    trust = TrustDirectory.load(trust_dir)
    assert trust.connectors() == CONNECTORS
    assert trust.connector(MIS) == CONNECTORS[0]
    assert trust.connector(SCHOOL) is None  # a party is no connector
    assert trust.connector(RECORDS) is not None
    assert CONNECTORS[1].kafka_principal == "records-cloud"
    assert CONNECTORS[0].kafka_principal == MIS  # by default, its id


def test_a_connector_may_carry_only_what_it_lists_and_an_agency_is_its_own(
    trust_dir: Path,
) -> None:
    trust = TrustDirectory.load(trust_dir)
    assert trust.may_carry(MIS, SCHOOL)
    assert trust.may_carry(MIS, OTHER_SCHOOL)
    assert not trust.may_carry(MIS, OWN_SCHOOL)
    assert not trust.may_carry(MIS, POLICE)
    assert not trust.may_carry(RECORDS, SCHOOL)
    assert trust.may_carry(OWN_SCHOOL, OWN_SCHOOL)  # its own connector
    assert trust.may_carry(SCHOOL, SCHOOL)  # an agency may always be its own
    assert not trust.may_carry(OWN_SCHOOL, SCHOOL)  # but never another agency's
    assert not trust.may_carry("nobody", "nobody")
    assert trust.carriers(SCHOOL) == (MIS,)
    assert trust.carriers(OWN_SCHOOL) == ()


def test_inbound_topics_are_the_connectors_and_the_agencies_on_their_own(
    trust_dir: Path,
) -> None:
    trust = TrustDirectory.load(trust_dir)
    # 7 parties and the gateway: 2 LAs and one school on their own, and 2 connectors
    assert trust.inbound_connectors() == sorted([LA, OTHER_LA, OWN_SCHOOL, MIS, RECORDS])


def test_rotating_and_revoking_keys_keep_the_connectors(trust_dir: Path) -> None:
    kid = rotate_key(trust_dir, SCHOOL)
    revoke_key(trust_dir, SCHOOL, kid)
    assert TrustDirectory.load(trust_dir).connectors() == CONNECTORS


def test_a_directory_without_connectors_is_written_as_before(tmp_path: Path) -> None:
    init_trust(tmp_path / "trust", SPECS)
    data = json.loads((tmp_path / "trust" / DIRECTORY_FILE).read_text())
    assert set(data) == {"version", "parties"}  # an older release reads it
    assert TrustDirectory.load(tmp_path / "trust").connectors() == []


def test_a_refresh_brings_new_connectors(trust_dir: Path, tmp_path: Path) -> None:
    before = TrustDirectory(TrustDirectory.load(trust_dir).parties())
    assert not before.may_carry(MIS, SCHOOL)
    before.refresh(TrustDirectory.load(trust_dir))
    assert before.may_carry(MIS, SCHOOL)
    assert before.inbound_connectors() == TrustDirectory.load(trust_dir).inbound_connectors()


@pytest.mark.parametrize(
    ("connector", "message"),
    [
        (
            {"id": SCHOOL, "name": "x", "carries": [POLICE]},
            r"connectors\[0\]\.id': 'school-hillside' is a party",
        ),
        (
            {"id": "mis-x", "name": "x", "carries": [LA]},
            r"connectors\[0\]\.carries\[0\]': 'la-northshire' is a local_authority",
        ),
        (
            {"id": "mis-x", "name": "x", "carries": ["gateway"]},
            r"'gateway' is a gateway",
        ),
        (
            {"id": "mis-x", "name": "x", "carries": ["school-nowhere"]},
            r"'school-nowhere' is not a party in this directory",
        ),
        (
            {"id": "mis-x", "name": "x", "carries": [SCHOOL, SCHOOL]},
            r"carries\[1\]': 'school-hillside' is listed twice",
        ),
        (
            {"id": "mis-x", "name": "x", "principal": SCHOOL, "carries": [POLICE]},
            r"connectors\[0\]\.principal'",
        ),
        ({"id": "mis-x", "name": "x", "carries": []}, r"connectors\[0\]\.carries"),
        ({"id": "Mis X", "name": "x", "carries": [SCHOOL]}, r"connectors\[0\]\.id"),
    ],
)
def test_a_connector_that_does_not_fit_is_refused_naming_the_field(
    trust_dir: Path, connector: dict[str, object], message: str
) -> None:
    path = trust_dir / DIRECTORY_FILE
    data = json.loads(path.read_text())
    data["connectors"] = [connector]
    path.write_text(json.dumps(data))
    with pytest.raises(ConfigError, match=message):
        TrustDirectory.load(trust_dir)


def test_two_connectors_of_one_id_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"connectors\[1\]\.id': 'mis-acme' is already"):
        init_trust(tmp_path / "trust", SPECS, [CONNECTORS[0], CONNECTORS[0]])


def test_a_producer_publishes_through_its_connector_or_on_its_own(trust_dir: Path) -> None:
    trust = TrustDirectory.load(trust_dir)
    assert connector_for(trust, SCHOOL) == MIS  # the one connector that carries it
    assert connector_for(trust, SCHOOL, MIS) == MIS  # SGX_CONNECTOR, as it is
    assert connector_for(trust, OWN_SCHOOL) == OWN_SCHOOL  # no connector: its own topic
    assert connector_for(trust, LA) == LA
    with pytest.raises(ConfigError, match=r"'mis-acme' may not carry school-oak.*unset"):
        connector_for(trust, OWN_SCHOOL, MIS)
    with pytest.raises(
        ConfigError, match=r"'records-north' may not carry school-hillside.*mis-acme"
    ):
        connector_for(trust, SCHOOL, RECORDS)


def test_an_agency_under_two_connectors_must_name_one(tmp_path: Path) -> None:
    both = [*CONNECTORS, Connector(id="mis-other", name="Other MIS", carries=[SCHOOL])]
    trust = init_trust(tmp_path / "trust", SPECS, both)
    with pytest.raises(ConfigError, match="mis-acme, mis-other: set SGX_CONNECTOR"):
        connector_for(trust, SCHOOL)
    assert connector_for(trust, SCHOOL, "mis-other") == "mis-other"


@pytest.mark.parametrize(("options", "topic"), [
    ({"connector": MIS}, f"sgx.inbound.{MIS}"),  # format 2: the connector it was sealed for
    ({"format_version": 1}, f"sgx.inbound.{SCHOOL}"),  # format 1: its sender's own topic
])  # fmt: skip
def test_a_replay_quarantined_again_goes_back_to_its_connectors_topic(
    trust_dir: Path, options: dict[str, Any], topic: str
) -> None:
    trust = TrustDirectory.load(trust_dir)
    sealer = Sealer(Identity.load(trust_dir, SCHOOL, directory=trust), trust, "gateway", **options)
    value = sealer.seal(Purpose.NOTIFICATION, uuid.uuid4(), b"x")
    kept = Quarantined(
        topic=REPLAY_TOPIC, partition=0, offset=0, item=0, reason="not_carried", detail="",
        raw=value, quarantined_at=datetime.now(UTC), sender_claimed=SCHOOL,
    )  # fmt: skip
    assert first_topic(Held(1, kept)) == topic
