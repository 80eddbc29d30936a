"""The gateway's sealers to many recipients: an LRU, and an evicted recipient still
receives envelopes it opens (sealed under a new data key)."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from sgx.errors import ConfigError
from sgx.keys.identity import Identity
from sgx.keys.key_admin import init_trust
from sgx.keys.trust import PartySpec, TrustDirectory
from sgx.wire.envelope import Opener, Purpose
from sgx.wire.sealers import Sealers

LA = "la-northshire"
SCHOOLS = ("school-a", "school-b", "school-c")
SPECS = [
    PartySpec(LA, "local_authority", "Northshire Council", gss_code="E06000901"),
    PartySpec("gateway", "gateway", "Exchange gateway"),
    *(PartySpec(school, "school", school, (LA,)) for school in SCHOOLS),
]


@pytest.fixture
def trust_dir(tmp_path: Path) -> Path:
    init_trust(tmp_path / "trust", SPECS)
    return tmp_path / "trust"


def _identity(trust_dir: Path, trust: TrustDirectory, party: str) -> Identity:
    return Identity.load(trust_dir, party, directory=trust)


def test_keeps_the_most_recently_used_and_evicts_the_least(trust_dir: Path) -> None:
    trust = TrustDirectory.load(trust_dir)
    sealers = Sealers(_identity(trust_dir, trust, "gateway"), trust, size=2)
    a, b = sealers.get("school-a"), sealers.get("school-b")
    assert sealers.get("school-a") is a  # held, and now the most recently used
    sealers.get("school-c")  # full: school-b, the least recently used, goes
    assert len(sealers) == 2
    assert "school-b" not in sealers
    assert "school-a" in sealers
    assert "school-c" in sealers
    assert sealers.get("school-a") is a
    assert sealers.get("school-b") is not b  # a new sealer for the evicted recipient


def test_an_evicted_recipient_still_opens_what_is_sealed_to_it(trust_dir: Path) -> None:
    trust = TrustDirectory.load(trust_dir)
    sealers = Sealers(_identity(trust_dir, trust, "gateway"), trust, size=1)
    opener = Opener(_identity(trust_dir, trust, "school-a"), trust)
    first = sealers.get("school-a").seal(Purpose.RECEIPTS, uuid.uuid4(), b"before")
    first_key = sealers.get("school-a").data_key
    sealers.get("school-b")  # evicts school-a's sealer and its data key
    message_id = uuid.uuid4()
    again = sealers.get("school-a")
    second = again.seal(Purpose.RECEIPTS, message_id, b"after")
    assert first_key is not None
    assert again.data_key is not None
    assert again.data_key.block.data_key_id != first_key.block.data_key_id
    assert opener.open(first).plaintext == b"before"
    opened = opener.open(second)
    assert (opened.plaintext, opened.message_id, opened.sender.id) == (
        b"after",
        message_id,
        "gateway",
    )


def test_a_cache_of_no_sealers_is_refused(trust_dir: Path) -> None:
    trust = TrustDirectory.load(trust_dir)
    with pytest.raises(ConfigError, match="at least one sealer"):
        Sealers(_identity(trust_dir, trust, "gateway"), trust, size=0)
