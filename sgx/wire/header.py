"""Reading an envelope's header: the per-envelope fields, and the signed ones.

The wire format (design.md, "Wire format (version 2)") is sealed and opened by
:mod:`sgx.wire.envelope`; this module reads what it needs of a record value by hand
(:mod:`sgx.wire.codec`): the ``Envelope``'s header and ciphertext, and the header of
format 2 (with the connector) or of format 1 (without), told apart by the header schema's
fingerprint. :func:`peek` and :func:`message_id_of` read a header's claims without
authenticating them, for quarantine bookkeeping.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import NamedTuple
from uuid import UUID

from sgx.errors import MalformedEnvelope
from sgx.keys.data_keys import DATA_KEY_ID_LEN, NONCE_LEN, WRAPPED_LEN, Binding, DataKeyBlock
from sgx.wire.codec import ENVELOPE_PREFIX, HEADER_PREFIX, HEADER_V1_PREFIX
from sgx.wire.codec import read_length as _length
from sgx.wire.codec import read_long as _varint
from sgx.wire.codec import read_text as _text

FORMAT_VERSION = 2
LEGACY_FORMAT_VERSION = 1  # before connectors: still read, sealed only when asked
_ENVELOPE_PREFIX_LEN = len(ENVELOPE_PREFIX)
_HEADER_PREFIX_LEN = len(HEADER_PREFIX)
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
PURPOSE_BYTE = {purpose: bytes([2 * i]) for i, purpose in enumerate(_PURPOSES)}


@dataclass(frozen=True, slots=True)
class EnvelopeClaims:
    """What an envelope's header *claims*, unauthenticated (for quarantine bookkeeping)."""

    message_id: UUID
    sender: str
    recipient: str
    purpose: Purpose
    sealed_at: datetime
    connector: str | None = None


def millis(at: datetime) -> int:
    """Avro timestamp-millis of an aware datetime (floored to the millisecond)."""
    return (at - _EPOCH) // _MS


def from_millis(ms: int) -> datetime:
    seconds, rest = divmod(ms, 1000)
    return _EPOCH + timedelta(0, seconds, rest * 1000)


# --------------------------------------------------------------------------- parsing
#
# A header is read in two steps. ``locate_header`` reads the per-envelope fields (version,
# purpose, message_id, sealed_at, nonce) and finds the signed ones (the four party/key-id
# strings, in format 2 the connector, and the data-key block) without decoding them; their
# raw bytes (and the format) are the Opener's cache key. ``decode_signed`` decodes them on a
# cache miss; on a hit they are byte-for-byte a header that already decoded, so nothing is
# skipped that could be malformed.


class LocatedHeader(NamedTuple):
    """A located header: the per-envelope fields, and the signed fields still encoded."""

    purpose: Purpose
    message_id: bytes
    sealed_at_ms: int
    sealed_at: datetime
    nonce: bytes
    signed: bytes  # format, signed fields and signature exactly as on the wire (cache key)
    parties_at: int
    block_at: int
    version: int


class SignedFields(NamedTuple):
    """The decoded fields a data-key signature covers."""

    binding: Binding
    block: DataKeyBlock


def split_envelope(value: bytes) -> tuple[bytes, memoryview]:
    """(header bytes, ciphertext view) of an Envelope; MalformedEnvelope if it is not one."""
    if value[:_ENVELOPE_PREFIX_LEN] != ENVELOPE_PREFIX:
        raise MalformedEnvelope("not an envelope (bad magic or schema fingerprint)")
    try:
        size, pos = _length(value, _ENVELOPE_PREFIX_LEN)
        header, pos = value[pos : pos + size], pos + size
        size, pos = _length(value, pos)
    except IndexError as exc:
        raise MalformedEnvelope("truncated envelope") from exc
    if size < TAG_LEN or pos + size != len(value):
        raise MalformedEnvelope(f"ciphertext length {size} does not fit the record")
    return header, memoryview(value)[pos:]


def parse_header(header: bytes) -> tuple[LocatedHeader, SignedFields]:
    """Parse an EnvelopeHeader (single-object encoded); MalformedEnvelope if it is not one."""
    located = locate_header(header)
    return located, decode_signed(header, located)


def locate_header(buf: bytes) -> LocatedHeader:
    """Read the per-envelope fields and find the signed ones without decoding them."""
    prefix = buf[:_HEADER_PREFIX_LEN]
    if prefix == HEADER_PREFIX:
        expected, strings = FORMAT_VERSION, 5  # ... recipient_key_id, connector
    elif prefix == HEADER_V1_PREFIX:
        expected, strings = LEGACY_FORMAT_VERSION, 4
    else:
        raise MalformedEnvelope("header is not an EnvelopeHeader (bad magic or fingerprint)")
    try:
        version, pos = _varint(buf, _HEADER_PREFIX_LEN)
        if version != expected:
            raise MalformedEnvelope(f"format_version {version} in a format {expected} header")
        index, pos = _varint(buf, pos)
        message_id, parties_at = buf[pos : pos + MESSAGE_ID_LEN], pos + MESSAGE_ID_LEN
        pos = _skip_strings(buf, parties_at, strings)
        sealed_at_ms, nonce_at = _varint(buf, pos)
    except IndexError as exc:
        raise MalformedEnvelope("truncated header") from exc
    block_at = nonce_at + NONCE_LEN
    signed = bytes([version]) + buf[parties_at:pos] + buf[block_at:]
    return LocatedHeader(
        _purpose(index), message_id, sealed_at_ms, _timestamp(sealed_at_ms),
        buf[nonce_at:block_at], signed, parties_at, block_at, version,
    )  # fmt: skip


def _skip_strings(buf: bytes, pos: int, count: int) -> int:
    for _ in range(count):
        size, pos = _length(buf, pos)
        pos += size
    return pos


def decode_signed(buf: bytes, header: LocatedHeader) -> SignedFields:
    """Decode the signed fields of a located header; MalformedEnvelope if they are not."""
    try:
        sender, pos = _text(buf, header.parties_at)
        sender_key_id, pos = _text(buf, pos)
        recipient, pos = _text(buf, pos)
        recipient_key_id, pos = _text(buf, pos)
        connector = _text(buf, pos)[0] if header.version == FORMAT_VERSION else None
        block, end = _block(buf, header.block_at)
    except IndexError as exc:
        raise MalformedEnvelope("truncated header") from exc
    except UnicodeDecodeError as exc:
        raise MalformedEnvelope(f"invalid UTF-8 in a header string: {exc}") from exc
    if end != len(buf):
        raise MalformedEnvelope(f"header length {len(buf)} does not match its fields ({end})")
    if connector == "":
        raise MalformedEnvelope("a format 2 header names no connector")
    binding = Binding(sender, sender_key_id, recipient, recipient_key_id, connector)
    return SignedFields(binding, block)


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
        connector=signed.binding.connector,
    )
