"""The hand-written Avro of the wire records: the pinned schemas, the primitives, batches.

The envelope codec (:mod:`sgx.wire.envelope`) encodes and parses its records by hand (a
generic fastavro call per record costs more than all the cryptography on the steady
path); this module holds what it is built from: the schemas' pinned CRC-64-AVRO
fingerprints and single-object prefixes, Avro's ``long``, ``bytes`` and ``string``, and
the EnvelopeBatch that carries several envelopes in one Kafka record. The unit tests
compare every byte with fastavro's encoding.
"""

from __future__ import annotations

from collections.abc import Sequence

from sgx.errors import MalformedEnvelope
from sgx.wire.avro import MAGIC

ENVELOPE_SCHEMA = "org.safeguarding.exchange.wire.Envelope"
HEADER_SCHEMA = "org.safeguarding.exchange.wire.EnvelopeHeader"
BATCH_SCHEMA = "org.safeguarding.exchange.wire.EnvelopeBatch"
# CRC-64-AVRO fingerprints of the schemas the codec implements (wire format version 2).
PINNED_FINGERPRINTS = {
    ENVELOPE_SCHEMA: bytes.fromhex("8924b4fc4188f51b"),
    HEADER_SCHEMA: bytes.fromhex("c8e0d828304379b2"),
    BATCH_SCHEMA: bytes.fromhex("aaa201a5f0a36c2d"),
}
# The header of wire format version 1 (before connectors), still read:
# schemas/history/org.safeguarding.exchange.wire.EnvelopeHeader.v1.avsc
HEADER_V1_FINGERPRINT = bytes.fromhex("4c8299f9d8f8a602")
ENVELOPE_PREFIX = MAGIC + PINNED_FINGERPRINTS[ENVELOPE_SCHEMA]
HEADER_PREFIX = MAGIC + PINNED_FINGERPRINTS[HEADER_SCHEMA]
HEADER_V1_PREFIX = MAGIC + HEADER_V1_FINGERPRINT
BATCH_PREFIX = MAGIC + PINNED_FINGERPRINTS[BATCH_SCHEMA]
_ENVELOPE_PREFIX_LEN = len(ENVELOPE_PREFIX)
_BATCH_PREFIX_LEN = len(BATCH_PREFIX)


# --------------------------------------------------------------------------- encoding


def avro_long(value: int) -> bytes:
    """Avro ``long``: zig-zag, then base-128 varint, least significant group first."""
    zigzag = (value << 1) ^ (value >> 63)
    out = bytearray()
    while zigzag > 0x7F:
        out.append((zigzag & 0x7F) | 0x80)
        zigzag >>= 7
    out.append(zigzag)
    return bytes(out)


def avro_bytes(value: bytes) -> bytes:
    return avro_long(len(value)) + value


def avro_string(value: str) -> bytes:
    return avro_bytes(value.encode())


# --------------------------------------------------------------------------- parsing
#
# Slicing is not bounds-checked field by field: reading a varint past the end raises
# IndexError (the caller translates it to MalformedEnvelope), and a field that ran past the
# end leaves ``pos`` beyond the end, which the callers' "consumed exactly" checks refuse.
# Lengths are checked non-negative so ``pos`` only grows.


def read_long(buf: bytes, pos: int) -> tuple[int, int]:
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


def read_length(buf: bytes, pos: int) -> tuple[int, int]:
    size, pos = read_long(buf, pos)
    if size < 0:
        raise MalformedEnvelope(f"negative length {size} at offset {pos}")
    return size, pos


def read_text(buf: bytes, pos: int) -> tuple[str, int]:
    size, pos = read_length(buf, pos)
    end = pos + size
    return buf[pos:end].decode(), end


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
    parts = [BATCH_PREFIX, avro_long(len(envelopes))]
    for envelope in envelopes:
        parts.append(avro_long(len(envelope)))
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
        count, pos = read_long(value, _BATCH_PREFIX_LEN)
        while count != 0:
            if count < 0:  # Avro: a negative count is followed by the block's size in bytes
                count = -count
                _, pos = read_length(value, pos)
            for _ in range(count):
                size, pos = read_length(value, pos)
                envelopes.append(value[pos : pos + size])
                pos += size
            count, pos = read_long(value, pos)
    except IndexError as exc:
        raise MalformedEnvelope("truncated envelope batch") from exc
    if pos != len(value) or not envelopes:
        raise MalformedEnvelope("envelope batch is empty or does not fit the record")
    return envelopes
