"""Sealing and opening envelopes (wire format v2, and v1 still read), including the
golden-bytes fixtures of both formats.

Regenerate the fixtures (only when the format changes on purpose, with a new version)::

    .venv/bin/python -m tests.unit.test_envelope
"""

from __future__ import annotations

import hashlib
import itertools
import json
import shutil
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

import sgx.wire.codec
from sgx.errors import (
    BadSignature,
    ConfigError,
    MalformedEnvelope,
    TamperedEnvelope,
    UnknownKey,
    UnknownSender,
    WrongRecipient,
)
from sgx.keys.data_keys import Binding, DataKeyBlock, verify_data_key
from sgx.keys.identity import Identity
from sgx.keys.key_admin import init_trust, revoke_key, rotate_key, write_private_file
from sgx.keys.trust import (
    DIRECTORY_FILE,
    PRIVATE_DIR,
    Party,
    PartyKey,
    PartySpec,
    TrustDirectory,
    key_file_stem,
    write_directory,
)
from sgx.settings import REPO_ROOT
from sgx.wire import avro
from sgx.wire.codec import (
    BATCH_PREFIX,
    BATCH_SCHEMA,
    ENVELOPE_PREFIX,
    ENVELOPE_SCHEMA,
    HEADER_SCHEMA,
    HEADER_V1_FINGERPRINT,
)
from sgx.wire.envelope import (
    EnvelopeClaims,
    Opener,
    Purpose,
    Sealer,
    check_schemas,
    pack,
    peek,
    unpack,
)

SCHOOL, HEALTH, LA, GATEWAY = "school-hillside", "health-north", "la-northshire", "gateway"
LA_GSS = "E06000901"  # a well-formed ONS GSS code for the fictional Northshire
SPECS = [
    PartySpec(LA, "local_authority", "Northshire Council", gss_code=LA_GSS),
    PartySpec(SCHOOL, "school", "Hillside Primary", (LA,)),
    PartySpec(HEALTH, "health", "North NHS Trust", (LA,)),
    PartySpec(GATEWAY, "gateway", "Exchange gateway"),
]
SCHEMAS = avro.SchemaSet(REPO_ROOT / "schemas")
SCHEMAS.load_all()
PLAINTEXT = bytes(range(256)) * 4  # 1 KB

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
GOLDEN_FILE = FIXTURES / "envelope_v1.bin"
GOLDEN_V2_FILE = FIXTURES / "envelope_v2.bin"
GOLDEN_CONNECTOR = "mis-golden"
GOLDEN_V2_PLAINTEXT = b"golden plaintext: wire format version 2, through a connector"
GOLDEN_KEYS = FIXTURES / "envelope_keys"
GOLDEN_AT = datetime(2026, 11, 21, 6, 2, 3, 456_000, tzinfo=UTC)
GOLDEN_ID = uuid.UUID("6f1c2a9e-3b7d-4e58-9a0c-5d2e8f4b1a37")
GOLDEN_PLAINTEXT = b"golden plaintext: wire format version 1"
GOLDEN_FROM = datetime(2026, 1, 1, tzinfo=UTC)
GOLDEN_UNTIL = datetime(2036, 1, 1, tzinfo=UTC)


# --------------------------------------------------------------------------- helpers


@dataclass
class Exchange:
    trust_dir: Path
    trust: TrustDirectory

    def identity(self, party_id: str) -> Identity:
        return Identity.load(self.trust_dir, party_id, directory=self.trust)

    def sealer(self, sender: str, recipient: str, **options: Any) -> Sealer:
        return Sealer(self.identity(sender), self.trust, recipient, **options)

    def opener(self, recipient: str, **options: Any) -> Opener:
        return Opener(self.identity(recipient), self.trust, **options)

    def reload(self) -> Exchange:
        return Exchange(self.trust_dir, TrustDirectory.load(self.trust_dir))


@pytest.fixture
def exchange(tmp_path: Path) -> Exchange:
    trust_dir = tmp_path / "trust"
    return Exchange(trust_dir, init_trust(trust_dir, SPECS))


def seal(sealer: Sealer, purpose: Purpose = Purpose.NOTIFICATION) -> bytes:
    return sealer.seal(purpose, uuid.uuid4(), PLAINTEXT)


def decoded(value: bytes) -> tuple[dict[str, Any], dict[str, Any]]:
    """(envelope, header) decoded by fastavro through sgx.wire.avro."""
    name, envelope = avro.decode(SCHEMAS, value)
    assert name == ENVELOPE_SCHEMA
    header_name, header = avro.decode(SCHEMAS, envelope["header"])
    assert header_name == HEADER_SCHEMA
    return envelope, header


def rewrite(value: bytes, **changes: Any) -> bytes:
    """Re-encode ``value`` with fastavro after changing header fields."""
    envelope, header = decoded(value)
    header.update(changes)
    envelope["header"] = avro.encode(SCHEMAS, HEADER_SCHEMA, header)
    return avro.encode(SCHEMAS, ENVELOPE_SCHEMA, envelope)


def flip(value: bytes, index: int) -> bytes:
    data = bytearray(value)
    data[index] ^= 0x01
    return bytes(data)


def data_key_id(value: bytes) -> bytes:
    key_id: bytes = decoded(value)[1]["data_key"]["data_key_id"]
    return key_id


# --------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("purpose", list(Purpose))
def test_round_trip_for_each_purpose(exchange: Exchange, purpose: Purpose) -> None:
    message_id = uuid.uuid4()
    sealer = exchange.sealer(SCHOOL, GATEWAY)
    before = datetime.now(UTC)
    value = sealer.seal(purpose, message_id, PLAINTEXT)
    opened = exchange.opener(GATEWAY).open(value, purposes={purpose})
    assert opened.purpose is purpose
    assert opened.message_id == message_id
    assert opened.sender.id == SCHOOL
    assert opened.sender_key_id == exchange.identity(SCHOOL).signing_kid
    assert before - timedelta(milliseconds=1) <= opened.sealed_at <= datetime.now(UTC)
    assert opened.plaintext == PLAINTEXT


def test_hand_codec_is_byte_identical_to_fastavro(exchange: Exchange) -> None:
    value = seal(exchange.sealer(HEALTH, GATEWAY), Purpose.SHARE_DECISION)
    envelope, header = decoded(value)
    assert header["format_version"] == 2
    assert header["purpose"] == "SHARE_DECISION"
    assert header["sender"] == HEALTH
    assert header["connector"] == HEALTH  # its own connector, by default
    assert header["recipient"] == GATEWAY
    assert len(header["data_key"]["wrapped_key"]) == 48
    assert avro.encode(SCHEMAS, HEADER_SCHEMA, header) == envelope["header"]
    assert avro.encode(SCHEMAS, ENVELOPE_SCHEMA, envelope) == value


# --------------------------------------------------------------------------- batches


def _batch(exchange: Exchange, n: int) -> tuple[list[bytes], bytes]:
    sealer = exchange.sealer(SCHOOL, GATEWAY)
    envelopes = [sealer.seal(Purpose.NOTIFICATION, uuid.uuid4(), PLAINTEXT * i) for i in range(n)]
    return envelopes, pack(envelopes)


def test_a_batch_is_the_avro_envelope_batch(exchange: Exchange) -> None:
    envelopes, value = _batch(exchange, 3)
    assert avro.encode(SCHEMAS, BATCH_SCHEMA, {"envelopes": envelopes}) == value
    assert unpack(value) == envelopes
    opener = exchange.opener(GATEWAY)
    assert [opener.open(e).plaintext for e in unpack(value)] == [b"", PLAINTEXT, PLAINTEXT * 2]


def test_a_single_envelope_is_a_batch_of_one(exchange: Exchange) -> None:
    (envelope,), _ = _batch(exchange, 1)
    assert unpack(envelope) == [envelope]


def test_unpack_reads_blocks_with_byte_counts(exchange: Exchange) -> None:
    """Avro writers may write a block as a negative count followed by its size in bytes."""
    envelopes, _ = _batch(exchange, 2)
    body = b"".join(sgx.wire.codec.avro_bytes(e) for e in envelopes)
    value = (
        BATCH_PREFIX
        + sgx.wire.codec.avro_long(-2)
        + sgx.wire.codec.avro_long(len(body))
        + body
        + b"\x00"
    )
    assert unpack(value) == envelopes


@pytest.mark.parametrize(
    ("mangle", "message"),
    [
        (lambda v: v[:-1], "truncated"),
        (lambda v: v[:-40], "truncated"),
        (lambda v: v + b"\x00", "does not fit"),
        (lambda v: v[:12], "truncated"),
        (lambda v: b"\xc3\x01" + bytes(8) + v[10:], "neither an envelope nor"),
        (lambda v: BATCH_PREFIX + b"\x00", "empty"),
    ],
    ids=["last-byte", "mid-item", "trailing", "cut-count", "other-schema", "empty"],
)
def test_a_broken_batch_is_malformed(
    exchange: Exchange, mangle: Callable[[bytes], bytes], message: str
) -> None:
    _, value = _batch(exchange, 3)
    with pytest.raises(MalformedEnvelope, match=message):
        unpack(mangle(value))


def test_pack_refuses_nothing() -> None:
    with pytest.raises(ValueError, match="at least one"):
        pack([])


def test_empty_plaintext(exchange: Exchange) -> None:
    value = exchange.sealer(SCHOOL, GATEWAY).seal(Purpose.RECEIPTS, uuid.uuid4(), b"")
    assert exchange.opener(GATEWAY).open(value).plaintext == b""


def test_a_record_reprocessed_hours_later_still_opens(exchange: Exchange) -> None:
    sealed_at = datetime.now(UTC) - timedelta(hours=5)
    value = seal(exchange.sealer(SCHOOL, GATEWAY, clock=lambda: sealed_at))
    opened = exchange.opener(GATEWAY).open(value)
    assert opened.sealed_at == sealed_at.replace(microsecond=sealed_at.microsecond // 1000 * 1000)


def test_peek_reads_claims_without_keys(exchange: Exchange) -> None:
    message_id = uuid.uuid4()
    value = exchange.sealer(SCHOOL, GATEWAY).seal(Purpose.ALLOCATIONS, message_id, PLAINTEXT)
    claims = peek(value)
    assert isinstance(claims, EnvelopeClaims)
    assert (claims.message_id, claims.sender, claims.recipient) == (message_id, SCHOOL, GATEWAY)
    assert claims.purpose is Purpose.ALLOCATIONS
    assert peek(b"garbage") is None
    assert peek(value[:-40] + b"x") is None


# --------------------------------------------------------------------------- tampering


def test_tampered_ciphertext_byte(exchange: Exchange) -> None:
    value = seal(exchange.sealer(SCHOOL, GATEWAY))
    with pytest.raises(TamperedEnvelope):
        exchange.opener(GATEWAY).open(flip(value, len(value) - 100))


def test_tampered_tag_byte(exchange: Exchange) -> None:
    value = seal(exchange.sealer(SCHOOL, GATEWAY))
    with pytest.raises(TamperedEnvelope):
        exchange.opener(GATEWAY).open(flip(value, len(value) - 1))


@pytest.mark.parametrize(
    "field", ["message_id", "nonce", "purpose", "sealed_at", "raw_message_id_byte"]
)
def test_tampered_header_fields(exchange: Exchange, field: str) -> None:
    value = seal(exchange.sealer(SCHOOL, GATEWAY))
    _, header = decoded(value)
    options: dict[str, dict[str, Any]] = {
        "message_id": {"message_id": flip(header["message_id"], 3)},
        "nonce": {"nonce": flip(header["nonce"], 11)},
        "purpose": {"purpose": "DELIVERY"},
        "sealed_at": {"sealed_at": header["sealed_at"] - timedelta(seconds=1)},
        "raw_message_id_byte": {},
    }
    changes = options[field]
    opener = exchange.opener(GATEWAY)
    opener.open(value)  # cache the data key: the tamper must fail on the steady path too
    tampered = rewrite(value, **changes) if changes else flip(value, 30)  # inside message_id
    with pytest.raises(TamperedEnvelope):
        opener.open(tampered)


def test_forged_signature(exchange: Exchange) -> None:
    school = exchange.trust.party(SCHOOL)
    kid = school.keys[0].kid
    forger = Identity(school, {kid: Ed25519PrivateKey.generate()}, {})
    value = seal(Sealer(forger, exchange.trust, GATEWAY))
    with pytest.raises(BadSignature):
        exchange.opener(GATEWAY).open(value)


def test_tampered_data_key_block_is_a_bad_signature(exchange: Exchange) -> None:
    value = seal(exchange.sealer(SCHOOL, GATEWAY))
    _, header = decoded(value)
    block = dict(header["data_key"], wrapped_key=flip(header["data_key"]["wrapped_key"], 0))
    with pytest.raises(BadSignature):
        exchange.opener(GATEWAY).open(rewrite(value, data_key=block))


def test_cached_data_key_is_not_accepted_under_another_sender(exchange: Exchange) -> None:
    opener = exchange.opener(GATEWAY)
    value = seal(exchange.sealer(HEALTH, GATEWAY))
    opener.open(value)  # the data key is now cached
    school_kid = exchange.identity(SCHOOL).signing_kid
    relabelled = rewrite(value, sender=SCHOOL, sender_key_id=school_kid)
    with pytest.raises(BadSignature):
        opener.open(relabelled)


def test_unknown_sender(exchange: Exchange) -> None:
    value = seal(exchange.sealer(SCHOOL, GATEWAY))
    with pytest.raises(UnknownSender):
        exchange.opener(GATEWAY).open(rewrite(value, sender="school-nowhere"))


def test_unknown_sender_key_id(exchange: Exchange) -> None:
    value = seal(exchange.sealer(SCHOOL, GATEWAY))
    with pytest.raises(UnknownKey):
        exchange.opener(GATEWAY).open(rewrite(value, sender_key_id=f"{SCHOOL}/unknown"))


def test_sender_key_of_another_party(exchange: Exchange) -> None:
    value = seal(exchange.sealer(SCHOOL, GATEWAY))
    health_kid = exchange.identity(HEALTH).signing_kid
    with pytest.raises(UnknownKey):
        exchange.opener(GATEWAY).open(rewrite(value, sender_key_id=health_kid))


def test_unknown_recipient_key_id(exchange: Exchange) -> None:
    value = seal(exchange.sealer(SCHOOL, GATEWAY))
    with pytest.raises(UnknownKey):
        exchange.opener(GATEWAY).open(rewrite(value, recipient_key_id=f"{GATEWAY}/unknown"))


def test_sender_key_outside_its_validity_at_sealed_at(exchange: Exchange) -> None:
    long_ago = datetime.now(UTC) - timedelta(days=30)
    value = seal(exchange.sealer(SCHOOL, GATEWAY))
    with pytest.raises(UnknownKey):
        exchange.opener(GATEWAY).open(rewrite(value, sealed_at=long_ago))


def test_sealed_after_the_data_key_expired(exchange: Exchange) -> None:
    value = seal(exchange.sealer(SCHOOL, GATEWAY))
    _, header = decoded(value)
    late = header["data_key"]["not_after"] + timedelta(milliseconds=1)
    opener = exchange.opener(GATEWAY)
    with pytest.raises(UnknownKey, match="expired"):
        opener.open(rewrite(value, sealed_at=late))  # cache miss path
    opener.open(value)
    with pytest.raises(UnknownKey, match="expired"):
        opener.open(rewrite(value, sealed_at=late))  # cache hit path


def test_revoked_sender_key(exchange: Exchange) -> None:
    value = seal(exchange.sealer(SCHOOL, GATEWAY))
    revoke_key(exchange.trust_dir, SCHOOL, exchange.identity(SCHOOL).signing_kid)
    with pytest.raises(UnknownKey, match="revoked"):
        exchange.reload().opener(GATEWAY).open(value)


def test_no_sealing_to_a_revoked_recipient_key(exchange: Exchange) -> None:
    revoke_key(exchange.trust_dir, GATEWAY, exchange.identity(GATEWAY).signing_kid)
    with pytest.raises(UnknownKey):
        seal(exchange.reload().sealer(SCHOOL, GATEWAY))


def test_wrong_recipient(exchange: Exchange) -> None:
    value = seal(exchange.sealer(SCHOOL, GATEWAY))
    with pytest.raises(WrongRecipient):
        exchange.opener(LA).open(value)


def test_wrong_recipient_claimed_in_header(exchange: Exchange) -> None:
    value = seal(exchange.sealer(SCHOOL, LA))
    la_kid = exchange.identity(LA).signing_kid
    relabelled = rewrite(value, recipient=GATEWAY, recipient_key_id=la_kid)
    with pytest.raises(UnknownKey):  # the gateway holds no key of the LA
        exchange.opener(GATEWAY).open(relabelled)


def test_purpose_not_allowed(exchange: Exchange) -> None:
    value = seal(exchange.sealer(SCHOOL, GATEWAY), Purpose.DELIVERY)
    with pytest.raises(MalformedEnvelope, match="DELIVERY"):
        exchange.opener(GATEWAY).open(value, purposes=(Purpose.NOTIFICATION,))


# --------------------------------------------------------------------------- malformed


def test_every_truncation_is_malformed(exchange: Exchange) -> None:
    value = seal(exchange.sealer(SCHOOL, GATEWAY))
    opener = exchange.opener(GATEWAY)
    for length in range(len(value)):
        with pytest.raises(MalformedEnvelope):
            opener.open(value[:length])


@pytest.mark.parametrize(
    "value",
    [
        b"",
        b"\xc3\x01",
        b"\x00" * 400,
        b"garbage" * 50,
        bytes(range(256)),
        ENVELOPE_PREFIX + b"\xff" * 60,  # overlong varint
        ENVELOPE_PREFIX + b"\x01",  # negative length
        ENVELOPE_PREFIX + b"\x04\xc3\x01\x00",
    ],
)
def test_garbage_is_malformed(exchange: Exchange, value: bytes) -> None:
    with pytest.raises(MalformedEnvelope):
        exchange.opener(GATEWAY).open(value)


def test_trailing_bytes_are_malformed(exchange: Exchange) -> None:
    value = seal(exchange.sealer(SCHOOL, GATEWAY))
    with pytest.raises(MalformedEnvelope):
        exchange.opener(GATEWAY).open(value + b"\x00")


def test_other_schema_fingerprint_is_malformed(exchange: Exchange) -> None:
    value = seal(exchange.sealer(SCHOOL, GATEWAY))
    with pytest.raises(MalformedEnvelope, match="fingerprint"):
        exchange.opener(GATEWAY).open(value[:2] + bytes(8) + value[10:])


def test_other_format_version_is_malformed(exchange: Exchange) -> None:
    value = seal(exchange.sealer(SCHOOL, GATEWAY))
    with pytest.raises(MalformedEnvelope, match="format_version 3"):
        exchange.opener(GATEWAY).open(rewrite(value, format_version=3))


def test_wrapped_key_of_the_wrong_length_is_malformed(exchange: Exchange) -> None:
    value = seal(exchange.sealer(SCHOOL, GATEWAY))
    _, header = decoded(value)
    block = dict(header["data_key"], wrapped_key=header["data_key"]["wrapped_key"] + b"\x00")
    with pytest.raises(MalformedEnvelope, match="wrapped_key"):
        exchange.opener(GATEWAY).open(rewrite(value, data_key=block))


def test_invalid_utf8_in_a_header_string_is_malformed(exchange: Exchange) -> None:
    value = seal(exchange.sealer(SCHOOL, GATEWAY))
    start = value.index(SCHOOL.encode())
    with pytest.raises(MalformedEnvelope, match="UTF-8"):
        exchange.opener(GATEWAY).open(value[:start] + b"\xff" + value[start + 1 :])


def test_changed_wire_schema_is_refused(tmp_path: Path) -> None:
    for source in (REPO_ROOT / "schemas").glob("org.safeguarding.exchange.wire.*.avsc"):
        shutil.copy(source, tmp_path)
    envelope = tmp_path / f"{ENVELOPE_SCHEMA}.avsc"
    envelope.write_text(envelope.read_text().replace('"ciphertext"', '"body"'))
    with pytest.raises(ConfigError, match="fingerprint"):
        check_schemas(avro.SchemaSet(tmp_path))


# --------------------------------------------------------------------------- key life


def test_data_key_is_reused_until_its_use_limit(exchange: Exchange) -> None:
    sealer = exchange.sealer(SCHOOL, GATEWAY, max_uses=3)
    ids = [data_key_id(seal(sealer)) for _ in range(7)]
    assert ids[0] == ids[1] == ids[2] != ids[3]
    assert ids[3] == ids[4] == ids[5] != ids[6]
    nonces = [decoded(seal(sealer))[1]["nonce"] for _ in range(2)]
    assert [int.from_bytes(n, "big") for n in nonces] == [1, 2]


def test_data_key_is_renewed_after_max_age(exchange: Exchange) -> None:
    now = [datetime.now(UTC)]
    sealer = exchange.sealer(SCHOOL, GATEWAY, clock=lambda: now[0])
    first = seal(sealer)
    now[0] += timedelta(minutes=59)
    second = seal(sealer)
    now[0] += timedelta(minutes=2)
    third = seal(sealer)
    assert data_key_id(first) == data_key_id(second) != data_key_id(third)
    opener = exchange.opener(GATEWAY)
    assert [opener.open(v).plaintext for v in (first, second, third)] == [PLAINTEXT] * 3


def test_data_key_ends_when_the_sender_key_expires(exchange: Exchange) -> None:
    key = exchange.trust.party(SCHOOL).keys[0]
    near_end = key.not_after - timedelta(minutes=10)
    value = seal(exchange.sealer(SCHOOL, GATEWAY, clock=lambda: near_end))
    not_after = decoded(value)[1]["data_key"]["not_after"]
    assert not_after == key.not_after.replace(microsecond=key.not_after.microsecond // 1000 * 1000)


def test_opener_verifies_a_data_key_once(
    exchange: Exchange, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[bytes] = []

    def counting(binding: Binding, block: DataKeyBlock, key: Any) -> None:
        calls.append(block.data_key_id)
        verify_data_key(binding, block, key)

    monkeypatch.setattr(sgx.wire.envelope, "verify_data_key", counting)
    sealer = exchange.sealer(SCHOOL, GATEWAY)
    opener = exchange.opener(GATEWAY)
    for _ in range(5):
        opener.open(seal(sealer))
    assert len(calls) == 1


def test_opener_cache_is_bounded(exchange: Exchange) -> None:
    opener = exchange.opener(GATEWAY, cache_size=1)
    school, health = exchange.sealer(SCHOOL, GATEWAY), exchange.sealer(HEALTH, GATEWAY)
    for _ in range(3):
        assert opener.open(seal(school)).sender.id == SCHOOL
        assert opener.open(seal(health)).sender.id == HEALTH


def test_rotation_of_the_recipient(exchange: Exchange) -> None:
    old = seal(exchange.sealer(SCHOOL, GATEWAY))
    old_kid = decoded(old)[1]["recipient_key_id"]
    new_kid = rotate_key(exchange.trust_dir, GATEWAY)
    rotated = exchange.reload()
    new = seal(rotated.sealer(SCHOOL, GATEWAY))
    assert decoded(new)[1]["recipient_key_id"] == new_kid != old_kid
    opener = rotated.opener(GATEWAY)
    assert opener.open(old).plaintext == opener.open(new).plaintext == PLAINTEXT


def test_rotation_of_the_sender(exchange: Exchange) -> None:
    old = seal(exchange.sealer(SCHOOL, GATEWAY))
    new_kid = rotate_key(exchange.trust_dir, SCHOOL)
    rotated = exchange.reload()
    assert rotated.identity(SCHOOL).signing_kid == new_kid
    new = seal(rotated.sealer(SCHOOL, GATEWAY))
    opener = rotated.opener(GATEWAY)
    assert opener.open(new).sender_key_id == new_kid
    assert opener.open(old).sender_key_id != new_kid


def test_rotation_announced_ahead(exchange: Exchange) -> None:
    now = datetime.now(UTC)
    switch = now + timedelta(minutes=30)
    new_kid = rotate_key(exchange.trust_dir, GATEWAY, not_before=switch)
    rotated = exchange.reload()
    clock = [now]
    sealer = rotated.sealer(SCHOOL, GATEWAY, clock=lambda: clock[0])
    before = decoded(seal(sealer))[1]
    assert before["recipient_key_id"] != new_kid
    assert before["data_key"]["not_after"] == switch.replace(
        microsecond=switch.microsecond // 1000 * 1000
    )
    clock[0] = switch + timedelta(seconds=1)
    after = seal(sealer)
    assert decoded(after)[1]["recipient_key_id"] == new_kid
    assert rotated.opener(GATEWAY).open(after).plaintext == PLAINTEXT


def test_sealer_refuses_an_unknown_recipient(exchange: Exchange) -> None:
    with pytest.raises(ConfigError):
        exchange.sealer(SCHOOL, "la-nowhere")


# --------------------------------------------------------------------------- golden bytes


def fixed_random(seed: bytes) -> Callable[[int], bytes]:
    """Deterministic 'randomness' for the golden envelope (SHAKE-256 of seed ‖ counter)."""
    counter = itertools.count()

    def draw(size: int) -> bytes:
        return hashlib.shake_256(seed + next(counter).to_bytes(4, "big")).digest(size)

    return draw


def golden_sealer(keys: Path, version: int = 1) -> Sealer:
    """The sealer of the golden envelope of wire format ``version`` (2: for a connector)."""
    trust = TrustDirectory.load(keys)
    identity = Identity.load(keys, SCHOOL, directory=trust)
    if version == 1:
        draw = fixed_random(b"sgx-golden-v1")
        return Sealer(
            identity, trust, GATEWAY, format_version=1, clock=lambda: GOLDEN_AT, random=draw
        )
    draw = fixed_random(b"sgx-golden-v2")
    return Sealer(
        identity, trust, GATEWAY, connector=GOLDEN_CONNECTOR, clock=lambda: GOLDEN_AT, random=draw
    )


@pytest.fixture
def golden_keys(tmp_path: Path) -> Path:
    """The fixture keys, copied with private files at 0600 (git does not keep modes).

    The checked-in directory.json predates partnerships (one ``local_authority`` a party,
    no GSS codes): the copy gets the GSS code its local authority now needs, as an
    operator would add it, and is otherwise read as it is (``local_authority`` as
    ``serves``). The directory does not enter the envelope's bytes."""
    keys = tmp_path / "keys"
    shutil.copytree(GOLDEN_KEYS, keys)
    directory = keys / DIRECTORY_FILE
    data = json.loads(directory.read_text(encoding="utf-8"))
    for party in data["parties"]:
        if party["kind"] == "local_authority":
            party.setdefault("gss_code", LA_GSS)
    directory.write_text(json.dumps(data, indent=2), encoding="utf-8")
    for path in (keys / PRIVATE_DIR).rglob("*"):
        path.chmod(0o700 if path.is_dir() else 0o600)
    (keys / PRIVATE_DIR).chmod(0o700)
    return keys


def test_golden_bytes(golden_keys: Path) -> None:
    value = golden_sealer(golden_keys).seal(Purpose.NOTIFICATION, GOLDEN_ID, GOLDEN_PLAINTEXT)
    assert value == GOLDEN_FILE.read_bytes()


def test_golden_fixture_opens(golden_keys: Path) -> None:
    trust = TrustDirectory.load(golden_keys)
    opener = Opener(Identity.load(golden_keys, GATEWAY, directory=trust), trust)
    opened = opener.open(GOLDEN_FILE.read_bytes(), purposes={Purpose.NOTIFICATION})
    assert opened.plaintext == GOLDEN_PLAINTEXT
    assert opened.message_id == GOLDEN_ID
    assert opened.sealed_at == GOLDEN_AT
    assert opened.sender.id == SCHOOL
    assert opened.sender.serves == [LA]  # its old local_authority, read as serves
    assert opened.connector is None  # format 1 names no connector


def test_golden_v2_bytes(golden_keys: Path) -> None:
    sealer = golden_sealer(golden_keys, version=2)
    value = sealer.seal(Purpose.NOTIFICATION, GOLDEN_ID, GOLDEN_V2_PLAINTEXT)
    assert value == GOLDEN_V2_FILE.read_bytes()


def test_golden_v2_fixture_opens_naming_its_connector(golden_keys: Path) -> None:
    trust = TrustDirectory.load(golden_keys)
    opener = Opener(Identity.load(golden_keys, GATEWAY, directory=trust), trust)
    opened = opener.open(GOLDEN_V2_FILE.read_bytes(), purposes={Purpose.NOTIFICATION})
    assert opened.plaintext == GOLDEN_V2_PLAINTEXT
    assert opened.sender.id == SCHOOL
    assert opened.connector == GOLDEN_CONNECTOR
    claims = peek(GOLDEN_V2_FILE.read_bytes())
    assert claims is not None
    assert claims.connector == GOLDEN_CONNECTOR


def test_golden_v2_fixture_is_the_avro_schema() -> None:
    value = GOLDEN_V2_FILE.read_bytes()
    envelope, header = decoded(value)
    assert header["format_version"] == 2
    assert header["connector"] == GOLDEN_CONNECTOR
    assert header["sender"] == SCHOOL
    assert avro.encode(SCHEMAS, HEADER_SCHEMA, header) == envelope["header"]
    assert avro.encode(SCHEMAS, ENVELOPE_SCHEMA, envelope) == value


def test_the_format_1_header_is_the_history_schema_the_codec_reads() -> None:
    # the codec parses format 1 by hand; fastavro reads it through schemas/history
    assert SCHEMAS.historical(HEADER_V1_FINGERPRINT) is not None
    _, header = decoded(GOLDEN_FILE.read_bytes())
    assert header["format_version"] == 1
    assert header["connector"] == ""  # the field's default, for a header without it


def test_a_changed_connector_is_refused(exchange: Exchange) -> None:
    value = seal(exchange.sealer(SCHOOL, GATEWAY))
    with pytest.raises(BadSignature):
        exchange.opener(GATEWAY).open(rewrite(value, connector="mis-elsewhere"))
    with pytest.raises(MalformedEnvelope, match="names no connector"):
        exchange.opener(GATEWAY).open(rewrite(value, connector=""))


def test_a_connector_is_signed_with_the_data_key_and_cached_apart(exchange: Exchange) -> None:
    identity, trust = exchange.identity(SCHOOL), exchange.trust
    through = Sealer(identity, trust, GATEWAY, connector="mis-a")
    own = Sealer(identity, trust, GATEWAY)
    legacy = Sealer(identity, trust, GATEWAY, format_version=1)
    opener = exchange.opener(GATEWAY)
    assert opener.open(seal(through)).connector == "mis-a"
    assert opener.open(seal(own)).connector == SCHOOL
    assert opener.open(seal(legacy)).connector is None


def test_format_1_cannot_name_a_connector(exchange: Exchange) -> None:
    identity, trust = exchange.identity(SCHOOL), exchange.trust
    with pytest.raises(ConfigError, match="format 1 names none"):
        Sealer(identity, trust, GATEWAY, connector="mis-a", format_version=1)
    with pytest.raises(ConfigError):
        Sealer(identity, trust, GATEWAY, format_version=3)


def test_golden_fixture_is_the_avro_schema(golden_keys: Path) -> None:
    value = GOLDEN_FILE.read_bytes()
    envelope, header = decoded(value)
    assert header["nonce"] == bytes(12)
    assert header["sealed_at"] == GOLDEN_AT
    assert header["data_key"]["not_after"] == GOLDEN_AT + timedelta(hours=1)
    assert avro.encode(SCHEMAS, ENVELOPE_SCHEMA, envelope) == value


def _golden_key(index: int, party_id: str) -> tuple[PartyKey, Ed25519PrivateKey, X25519PrivateKey]:
    kid = f"{party_id}/2026-01-01T0000-{index:04x}"
    seed = hashlib.sha256(f"sgx golden key {kid}".encode()).digest()
    signing = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(seed + b"signing").digest())
    box = X25519PrivateKey.from_private_bytes(hashlib.sha256(seed + b"box").digest())
    public = PartyKey(
        kid=kid,
        signing_public=signing.public_key().public_bytes_raw(),
        box_public=box.public_key().public_bytes_raw(),
        not_before=GOLDEN_FROM,
        not_after=GOLDEN_UNTIL,
    )
    return public, signing, box


def _golden_parties() -> Iterator[tuple[Party, Ed25519PrivateKey, X25519PrivateKey]]:
    for index, spec in enumerate(SPECS, start=1):
        key, signing, box = _golden_key(index, spec.id)
        party = Party(
            id=spec.id, kind=spec.kind, name=spec.name, gss_code=spec.gss_code,
            serves=list(spec.serves), serves_any=spec.serves_any, keys=[key],
        )  # fmt: skip
        yield party, signing, box


def regenerate_golden() -> None:
    """Rewrite tests/fixtures/envelope_keys/ and envelope_v1.bin (deterministic)."""
    from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

    shutil.rmtree(GOLDEN_KEYS, ignore_errors=True)
    parties = list(_golden_parties())
    for party, signing, box in parties:
        folder = GOLDEN_KEYS / PRIVATE_DIR / party.id
        folder.mkdir(parents=True, mode=0o700)
        stem = key_file_stem(party.keys[0].kid)
        for suffix, key in ((".signing.pem", signing), (".box.pem", box)):
            pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
            write_private_file(folder / f"{stem}{suffix}", pem)
    write_directory(GOLDEN_KEYS, [party for party, _, _ in parties])
    value = golden_sealer(GOLDEN_KEYS).seal(Purpose.NOTIFICATION, GOLDEN_ID, GOLDEN_PLAINTEXT)
    GOLDEN_FILE.write_bytes(value)
    v2 = golden_sealer(GOLDEN_KEYS, 2).seal(Purpose.NOTIFICATION, GOLDEN_ID, GOLDEN_V2_PLAINTEXT)
    GOLDEN_V2_FILE.write_bytes(v2)


if __name__ == "__main__":
    regenerate_golden()
