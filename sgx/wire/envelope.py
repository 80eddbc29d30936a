"""Sealed envelopes, wire format version 1 (design.md, "Wire format (version 1)").

Every record value is the Avro single-object encoding of ``wire.Envelope``
``{header: bytes, ciphertext: bytes}``; ``header`` is itself the single-object encoding
of ``wire.EnvelopeHeader`` and is the AES-GCM associated data of ``ciphertext``.

:class:`Sealer` keeps one data key per recipient (see :mod:`sgx.keys.data_keys`) and pays one
X25519 exchange and one Ed25519 signature per data key, then one AES-GCM per envelope.
:class:`Opener` caches unwrapped data keys by the exact bytes of the signed fields and the
signature, so a steady stream costs one AES-GCM open per envelope.

The two wire records are encoded and parsed here by hand (a few zig-zag varints and
length-prefixed strings) because a generic fastavro call per record costs more than all
the cryptography on the steady path. The codec is pinned to the schemas' fingerprints:
if ``schemas/`` changes, :func:`check_schemas` refuses to run, and the unit tests compare
every byte with fastavro's encoding.
"""

from __future__ import annotations

import enum
import os
from collections import OrderedDict
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache, partial
from typing import NamedTuple
from uuid import UUID

from sgx.errors import ConfigError, MalformedEnvelope, UnknownKey, WrongRecipient
from sgx.keys.data_keys import (
    DATA_KEY_ID_LEN,
    DEFAULT_MAX_USES,
    NONCE_LEN,
    WRAPPED_LEN,
    Binding,
    DataKey,
    DataKeyBlock,
    ReceivedDataKey,
    new_data_key,
    unwrap_data_key,
    verify_data_key,
)
from sgx.keys.identity import Identity
from sgx.keys.trust import Party, PartyKey, TrustDirectory, utc_now
from sgx.settings import REPO_ROOT
from sgx.wire.avro import MAGIC, SchemaSet

FORMAT_VERSION = 1
ENVELOPE_SCHEMA = "org.safeguarding.exchange.wire.Envelope"
HEADER_SCHEMA = "org.safeguarding.exchange.wire.EnvelopeHeader"
BATCH_SCHEMA = "org.safeguarding.exchange.wire.EnvelopeBatch"
# CRC-64-AVRO fingerprints of the schemas this codec implements (format version 1).
PINNED_FINGERPRINTS = {
    ENVELOPE_SCHEMA: bytes.fromhex("8924b4fc4188f51b"),
    HEADER_SCHEMA: bytes.fromhex("4c8299f9d8f8a602"),
    BATCH_SCHEMA: bytes.fromhex("aaa201a5f0a36c2d"),
}
ENVELOPE_PREFIX = MAGIC + PINNED_FINGERPRINTS[ENVELOPE_SCHEMA]
HEADER_PREFIX = MAGIC + PINNED_FINGERPRINTS[HEADER_SCHEMA]
BATCH_PREFIX = MAGIC + PINNED_FINGERPRINTS[BATCH_SCHEMA]
_ENVELOPE_PREFIX_LEN = len(ENVELOPE_PREFIX)
_HEADER_PREFIX_LEN = len(HEADER_PREFIX)
_BATCH_PREFIX_LEN = len(BATCH_PREFIX)
MESSAGE_ID_LEN = 16
SIGNATURE_LEN = 64
EPHEMERAL_LEN = 32
TAG_LEN = 16
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)


class Purpose(enum.Enum):
    """What an envelope's ciphertext holds (the ``wire.Purpose`` Avro symbols, in order)."""

    NOTIFICATION = "NOTIFICATION"
    DELIVERY = "DELIVERY"
    RECEIPTS = "RECEIPTS"
    ALLOCATIONS = "ALLOCATIONS"
    SHARE_REQUEST = "SHARE_REQUEST"
    SHARE_DECISION = "SHARE_DECISION"


_PURPOSES = tuple(Purpose)
_PURPOSE_BYTE = {purpose: bytes([2 * i]) for i, purpose in enumerate(_PURPOSES)}


@dataclass(frozen=True, slots=True)
class Opened:
    """An envelope that opened: authenticated sender, header facts and the plaintext."""

    purpose: Purpose
    message_id: UUID
    sender: Party
    sender_key_id: str
    sealed_at: datetime
    plaintext: bytes


@dataclass(frozen=True, slots=True)
class EnvelopeClaims:
    """What an envelope's header *claims*, unauthenticated (for quarantine bookkeeping)."""

    message_id: UUID
    sender: str
    recipient: str
    purpose: Purpose
    sealed_at: datetime


def millis(at: datetime) -> int:
    """Avro timestamp-millis of an aware datetime (floored to the millisecond)."""
    return (at - _EPOCH) // _MS


def from_millis(ms: int) -> datetime:
    seconds, rest = divmod(ms, 1000)
    return _EPOCH + timedelta(0, seconds, rest * 1000)


@cache
def _default_schemas() -> SchemaSet:
    return SchemaSet(REPO_ROOT / "schemas")


def check_schemas(schemas: SchemaSet | None = None) -> None:
    """ConfigError unless the wire schemas are the ones this codec implements."""
    schemas = schemas or _default_schemas()
    for name, pinned in PINNED_FINGERPRINTS.items():
        actual = schemas.fingerprint(name)
        if actual != pinned:
            raise ConfigError(
                f"schema {name} has fingerprint {actual.hex()}, but sgx/wire/envelope.py implements"
                f" wire format {FORMAT_VERSION} ({pinned.hex()}); update the codec with the schema"
            )


# --------------------------------------------------------------------------- encoding


def _long(value: int) -> bytes:
    """Avro ``long``: zig-zag, then base-128 varint, least significant group first."""
    zigzag = (value << 1) ^ (value >> 63)
    out = bytearray()
    while zigzag > 0x7F:
        out.append((zigzag & 0x7F) | 0x80)
        zigzag >>= 7
    out.append(zigzag)
    return bytes(out)


def _bytes(value: bytes) -> bytes:
    return _long(len(value)) + value


def _string(value: str) -> bytes:
    return _bytes(value.encode())


def _encode_parties(binding: Binding) -> bytes:
    """``sender``, ``sender_key_id``, ``recipient``, ``recipient_key_id`` (header order)."""
    names = (binding.sender, binding.sender_key_id, binding.recipient, binding.recipient_key_id)
    return b"".join(_string(name) for name in names)


def _encode_block(block: DataKeyBlock) -> bytes:
    return b"".join((
        block.data_key_id,
        block.ephemeral_public,
        _bytes(block.wrapped_key),
        _long(block.not_after_ms),
        block.signature,
    ))  # fmt: skip


# --------------------------------------------------------------------------- batches
#
# A Kafka record value is either one Envelope or an EnvelopeBatch: the single-object
# encoding of ``{envelopes: array<bytes>}`` whose items are complete envelopes. Batching
# changes nothing about what protects a notification (each envelope keeps its own header,
# nonce and AEAD tag, and is opened, judged and quarantined on its own); it lets one
# produce, one fetch and one broker append carry many envelopes, as Kafka's own record
# batches do.


def pack(envelopes: Sequence[bytes]) -> bytes:
    """One record value carrying ``envelopes`` (an EnvelopeBatch, a single array block)."""
    if not envelopes:
        raise ValueError("an envelope batch holds at least one envelope")
    parts = [BATCH_PREFIX, _long(len(envelopes))]
    for envelope in envelopes:
        parts.append(_long(len(envelope)))
        parts.append(envelope)
    parts.append(b"\x00")
    return b"".join(parts)


def unpack(value: bytes) -> list[bytes]:
    """The envelopes a record value carries: itself if it is one envelope, else a batch's.

    MalformedEnvelope if the value is neither, or the batch is truncated, empty or has
    bytes after its end. The envelopes themselves are not checked here: each is opened
    (and, if need be, quarantined) on its own.
    """
    if value[:_ENVELOPE_PREFIX_LEN] == ENVELOPE_PREFIX:
        return [value]
    if value[:_BATCH_PREFIX_LEN] != BATCH_PREFIX:
        raise MalformedEnvelope("record is neither an envelope nor an envelope batch")
    envelopes: list[bytes] = []
    try:
        count, pos = _varint(value, _BATCH_PREFIX_LEN)
        while count != 0:
            if count < 0:  # Avro: a negative count is followed by the block's size in bytes
                count = -count
                _, pos = _length(value, pos)
            for _ in range(count):
                size, pos = _length(value, pos)
                envelopes.append(value[pos : pos + size])
                pos += size
            count, pos = _varint(value, pos)
    except IndexError as exc:
        raise MalformedEnvelope("truncated envelope batch") from exc
    if pos != len(value) or not envelopes:
        raise MalformedEnvelope("envelope batch is empty or does not fit the record")
    return envelopes


# --------------------------------------------------------------------------- parsing
#
# A header is read in two steps. ``locate_header`` reads the per-envelope fields (version,
# purpose, message_id, sealed_at, nonce) and finds the signed ones (the four party/key-id
# strings and the data-key block) without decoding them; their raw bytes are the Opener's
# cache key. ``decode_signed`` decodes them on a cache miss; on a hit they are byte-for-byte
# a header that already decoded, so nothing is skipped that could be malformed.
#
# Slicing is not bounds-checked field by field: reading a varint past the end raises
# IndexError (translated to MalformedEnvelope), and a field that ran past the end leaves
# ``pos`` beyond the end, which the final "consumed exactly" check refuses. Lengths are
# checked non-negative so ``pos`` only grows.


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    """Avro ``long`` at ``pos``: (value, next position). IndexError if the bytes run out."""
    byte = buf[pos]
    if byte < 0x80:
        return (byte >> 1) ^ -(byte & 1), pos + 1
    acc, shift = byte & 0x7F, 7
    while True:
        pos += 1
        byte = buf[pos]
        acc |= (byte & 0x7F) << shift
        if byte < 0x80:
            return (acc >> 1) ^ -(acc & 1), pos + 1
        shift += 7
        if shift > 63:
            raise MalformedEnvelope("overlong Avro long")


def _length(buf: bytes, pos: int) -> tuple[int, int]:
    size, pos = _varint(buf, pos)
    if size < 0:
        raise MalformedEnvelope(f"negative length {size} at offset {pos}")
    return size, pos


def _text(buf: bytes, pos: int) -> tuple[str, int]:
    size, pos = _length(buf, pos)
    end = pos + size
    return buf[pos:end].decode(), end


class _Header(NamedTuple):
    """A located header: the per-envelope fields, and the signed fields still encoded."""

    purpose: Purpose
    message_id: bytes
    sealed_at_ms: int
    sealed_at: datetime
    nonce: bytes
    signed: bytes  # signed fields and signature exactly as on the wire (the cache key)
    parties_at: int
    block_at: int


class _Signed(NamedTuple):
    """The decoded fields a data-key signature covers."""

    binding: Binding
    block: DataKeyBlock


def split_envelope(value: bytes) -> tuple[bytes, memoryview]:
    """(header bytes, ciphertext view) of an Envelope; MalformedEnvelope if it is not one."""
    if value[:_ENVELOPE_PREFIX_LEN] != ENVELOPE_PREFIX:
        raise MalformedEnvelope("not a version 1 envelope (bad magic or schema fingerprint)")
    try:
        size, pos = _length(value, _ENVELOPE_PREFIX_LEN)
        header, pos = value[pos : pos + size], pos + size
        size, pos = _length(value, pos)
    except IndexError as exc:
        raise MalformedEnvelope("truncated envelope") from exc
    if size < TAG_LEN or pos + size != len(value):
        raise MalformedEnvelope(f"ciphertext length {size} does not fit the record")
    return header, memoryview(value)[pos:]


def parse_header(header: bytes) -> tuple[_Header, _Signed]:
    """Parse an EnvelopeHeader (single-object encoded); MalformedEnvelope if it is not one."""
    located = locate_header(header)
    return located, decode_signed(header, located)


def locate_header(buf: bytes) -> _Header:
    """Read the per-envelope fields and find the signed ones without decoding them."""
    if buf[:_HEADER_PREFIX_LEN] != HEADER_PREFIX:
        raise MalformedEnvelope("header is not an EnvelopeHeader (bad magic or fingerprint)")
    try:
        version, pos = _varint(buf, _HEADER_PREFIX_LEN)
        if version != FORMAT_VERSION:
            raise MalformedEnvelope(f"unsupported envelope format_version {version}")
        index, pos = _varint(buf, pos)
        message_id, parties_at = buf[pos : pos + MESSAGE_ID_LEN], pos + MESSAGE_ID_LEN
        pos = _skip_strings(buf, parties_at, 4)
        sealed_at_ms, nonce_at = _varint(buf, pos)
    except IndexError as exc:
        raise MalformedEnvelope("truncated header") from exc
    block_at = nonce_at + NONCE_LEN
    return _Header(
        _purpose(index), message_id, sealed_at_ms, _timestamp(sealed_at_ms),
        buf[nonce_at:block_at], buf[parties_at:pos] + buf[block_at:], parties_at, block_at,
    )  # fmt: skip


def _skip_strings(buf: bytes, pos: int, count: int) -> int:
    for _ in range(count):
        size, pos = _length(buf, pos)
        pos += size
    return pos


def decode_signed(buf: bytes, header: _Header) -> _Signed:
    """Decode the signed fields of a located header; MalformedEnvelope if they are not."""
    try:
        sender, pos = _text(buf, header.parties_at)
        sender_key_id, pos = _text(buf, pos)
        recipient, pos = _text(buf, pos)
        recipient_key_id, pos = _text(buf, pos)
        block, end = _block(buf, header.block_at)
    except IndexError as exc:
        raise MalformedEnvelope("truncated header") from exc
    except UnicodeDecodeError as exc:
        raise MalformedEnvelope(f"invalid UTF-8 in a header string: {exc}") from exc
    if end != len(buf):
        raise MalformedEnvelope(f"header length {len(buf)} does not match its fields ({end})")
    return _Signed(Binding(sender, sender_key_id, recipient, recipient_key_id), block)


def _block(buf: bytes, pos: int) -> tuple[DataKeyBlock, int]:
    data_key_id, pos = buf[pos : pos + DATA_KEY_ID_LEN], pos + DATA_KEY_ID_LEN
    ephemeral_public, pos = buf[pos : pos + EPHEMERAL_LEN], pos + EPHEMERAL_LEN
    size, pos = _length(buf, pos)
    if size != WRAPPED_LEN:
        raise MalformedEnvelope(f"wrapped_key is {size} bytes, not {WRAPPED_LEN}")
    wrapped_key, pos = buf[pos : pos + size], pos + size
    not_after_ms, pos = _varint(buf, pos)
    signature, pos = buf[pos : pos + SIGNATURE_LEN], pos + SIGNATURE_LEN
    return DataKeyBlock(data_key_id, ephemeral_public, wrapped_key, not_after_ms, signature), pos


def _purpose(index: int) -> Purpose:
    if not 0 <= index < len(_PURPOSES):
        raise MalformedEnvelope(f"unknown purpose index {index}")
    return _PURPOSES[index]


def _timestamp(ms: int) -> datetime:
    try:
        return from_millis(ms)
    except OverflowError as exc:
        raise MalformedEnvelope(f"sealed_at {ms} is out of range") from exc


def message_id_of(value: bytes) -> UUID | None:
    """The message id an envelope's header claims (unauthenticated, and cheap: the signed
    fields are not decoded); None if the record is no envelope."""
    try:
        return UUID(bytes=locate_header(split_envelope(value)[0]).message_id)
    except (MalformedEnvelope, ValueError):
        return None


def peek(value: bytes) -> EnvelopeClaims | None:
    """Best-effort, UNAUTHENTICATED header claims of a record; None if it does not parse."""
    try:
        header, signed = parse_header(split_envelope(value)[0])
    except MalformedEnvelope:
        return None
    return EnvelopeClaims(
        message_id=UUID(bytes=header.message_id),
        sender=signed.binding.sender,
        recipient=signed.binding.recipient,
        purpose=header.purpose,
        sealed_at=header.sealed_at,
    )


# --------------------------------------------------------------------------- sealing


@dataclass(frozen=True, slots=True)
class _Current:
    key: DataKey
    parties: bytes  # encoded header fields bound to the data key
    tail: bytes  # encoded data-key block


class Sealer:
    """Seals envelopes from ``identity`` to ``recipient``, reusing one data key at a time.

    A new data key (one X25519 exchange, one Ed25519 signature) is made when the current
    one reaches ``max_uses`` or its ``not_after``. ``not_after`` is ``max_age`` after
    creation, brought forward to the moment the sender's signing key or the recipient's
    box key in use expires or a newer one becomes valid — so a key change starts a new
    data key, and so does a refresh of the trust directory (a key rotated or revoked).
    """

    def __init__(
        self,
        identity: Identity,
        trust: TrustDirectory,
        recipient: str,
        *,
        schemas: SchemaSet | None = None,
        max_uses: int = DEFAULT_MAX_USES,
        max_age: timedelta = timedelta(hours=1),
        clock: Callable[[], datetime] = utc_now,
        random: Callable[[int], bytes] = os.urandom,
    ) -> None:
        check_schemas(schemas)
        if recipient not in {p.id for p in trust.parties()}:
            raise ConfigError(f"recipient {recipient!r} is not in the trust directory")
        if not 0 < max_uses <= 2 ** (8 * NONCE_LEN):
            raise ConfigError(f"max_uses must be positive and fit the nonce, got {max_uses}")
        self._identity = identity
        self._trust = trust
        self._recipient = recipient
        self._max_uses = max_uses
        self._max_age = max_age
        self._clock = clock
        self._random = random
        self._current: _Current | None = None
        self._generation = trust.generation
        self._head = HEADER_PREFIX + _long(FORMAT_VERSION)

    @property
    def data_key(self) -> DataKey | None:
        """The data key in use (for tests and metrics; it never reveals its bytes)."""
        return self._current.key if self._current else None

    def seal(self, purpose: Purpose, message_id: UUID, plaintext: bytes) -> bytes:
        """The Envelope record value carrying ``plaintext`` for the recipient."""
        now = self._clock()
        now_ms = millis(now)
        current = self._current
        if self._generation != self._trust.generation:  # the directory was refreshed
            current, self._generation = None, self._trust.generation
        if current is None or not current.key.usable(now_ms):
            current = self._current = self._rekey(now)
        head = b"".join((
            self._head, _PURPOSE_BYTE[purpose], message_id.bytes, current.parties, _long(now_ms),
        ))  # fmt: skip
        header, ciphertext = current.key.seal(now_ms, head, current.tail, plaintext)
        return b"".join((
            ENVELOPE_PREFIX, _long(len(header)), header, _long(len(ciphertext)), ciphertext,
        ))  # fmt: skip

    def _rekey(self, now: datetime) -> _Current:
        recipient_kid, recipient_box = self._trust.box_key(self._recipient, now)
        sender_kid = self._identity.current_signing_kid(now)
        binding = Binding(self._identity.party_id, sender_kid, self._recipient, recipient_kid)
        not_after = min(
            now + self._max_age,
            _key_deadline(self._identity.keys, sender_kid, now),
            _key_deadline(self._trust.party(self._recipient).keys, recipient_kid, now),
        )
        key = new_data_key(
            binding,
            recipient_box,
            partial(self._identity.sign, kid=sender_kid),
            millis(not_after),
            max_uses=self._max_uses,
            random=self._random,
        )
        return _Current(key, _encode_parties(binding), _encode_block(key.block))


def _key_deadline(keys: Iterable[PartyKey], kid: str, now: datetime) -> datetime:
    """When ``kid`` stops being the key to use: its expiry, or a newer key's start."""
    ends = [k.not_after for k in keys if k.kid == kid]
    ends += [k.not_before for k in keys if not k.revoked and k.not_before > now]
    return min(ends)


# --------------------------------------------------------------------------- opening


class _Cached(NamedTuple):
    signed: _Signed
    key: ReceivedDataKey


class Opener:
    """Opens envelopes addressed to ``identity``; fails closed with an EnvelopeError.

    Unwrapped data keys are cached (LRU, ``cache_size`` entries) under the exact bytes of
    the signed fields and the signature; a hit skips decoding those fields, the signature
    check and the unwrap, and nothing else.
    """

    def __init__(
        self,
        identity: Identity,
        trust: TrustDirectory,
        *,
        schemas: SchemaSet | None = None,
        cache_size: int = 4096,
    ) -> None:
        check_schemas(schemas)
        self._identity = identity
        self._trust = trust
        self._cache: OrderedDict[bytes, _Cached] = OrderedDict()
        self._cache_size = max(cache_size, 1)

    def open(self, value: bytes, *, purposes: Collection[Purpose] | None = None) -> Opened:
        """Authenticate and decrypt one record value (see design.md for the checks)."""
        header_bytes, ciphertext = split_envelope(value)
        header = locate_header(header_bytes)
        cached = self._cache.get(header.signed)
        signed = cached.signed if cached else decode_signed(header_bytes, header)
        if purposes is not None and header.purpose not in purposes:
            raise MalformedEnvelope(f"purpose {header.purpose.value} is not expected here")
        sender, key = self._authenticate(header, signed, cached)
        return Opened(
            purpose=header.purpose,
            message_id=UUID(bytes=header.message_id),
            sender=sender,
            sender_key_id=signed.binding.sender_key_id,
            sealed_at=header.sealed_at,
            plaintext=key.open(header.nonce, ciphertext, header_bytes),
        )

    def _authenticate(
        self, header: _Header, signed: _Signed, cached: _Cached | None
    ) -> tuple[Party, ReceivedDataKey]:
        binding = signed.binding
        if binding.recipient != self._identity.party_id:
            raise WrongRecipient(f"sealed for {binding.recipient}, not {self._identity.party_id}")
        sender = self._trust.party(binding.sender)
        verify = self._trust.verify_key(binding.sender, binding.sender_key_id, header.sealed_at)
        box = self._identity.box_private(binding.recipient_key_id)
        if cached is None:
            verify_data_key(binding, signed.block, verify)
            _check_within(header, signed.block)
            cached = _Cached(signed, unwrap_data_key(binding, signed.block, box))
            self._remember(header.signed, cached)
        else:
            self._cache.move_to_end(header.signed)
            _check_within(header, signed.block)
        return sender, cached.key

    def _remember(self, signed: bytes, cached: _Cached) -> None:
        self._cache[signed] = cached
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)


def _check_within(header: _Header, block: DataKeyBlock) -> None:
    if header.sealed_at_ms > block.not_after_ms:
        raise UnknownKey(
            f"data key {block.data_key_id.hex()} expired (not_after {block.not_after_ms} ms)"
            f" before sealed_at {header.sealed_at.isoformat()}"
        )
