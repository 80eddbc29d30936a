"""Sealed envelopes, wire format version 2 (design.md, "Wire format (version 2)").

Every record value is the Avro single-object encoding of ``wire.Envelope``
``{header: bytes, ciphertext: bytes}``; ``header`` is itself the single-object encoding
of ``wire.EnvelopeHeader`` and is the AES-GCM associated data of ``ciphertext``.

Version 2 adds the ``connector`` the envelope is published through (the owner of the
topic it is written to: the sender itself when it is its own connector) to the header
and to the signed data key, so an envelope copied onto another connector's topic is
refused. Version 1 headers (no connector; their own schema fingerprint) are still read
and opened; :attr:`Opened.connector` is then None, and the gateway accepts them only on
the sender's own topic. A :class:`Sealer` writes version 2, or version 1 when asked
(``format_version=1``: a producer of the release before, in tests).

:class:`Sealer` keeps one data key per recipient (see :mod:`sgx.keys.data_keys`) and pays one
X25519 exchange and one Ed25519 signature per data key, then one AES-GCM per envelope.
:class:`Opener` caches unwrapped data keys by the exact bytes of the signed fields and the
signature, so a steady stream costs one AES-GCM open per envelope.

The two wire records are encoded and parsed here by hand (a few zig-zag varints and
length-prefixed strings, :mod:`sgx.wire.codec`) because a generic fastavro call per
record costs more than all the cryptography on the steady path. The codec is pinned to
the schemas' fingerprints: if ``schemas/`` changes, :func:`check_schemas` refuses to run,
and the unit tests compare every byte with fastavro's encoding.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache, partial
from typing import NamedTuple
from uuid import UUID

from sgx.errors import ConfigError, MalformedEnvelope, UnknownKey, WrongRecipient
from sgx.keys.data_keys import (
    DEFAULT_MAX_USES,
    NONCE_LEN,
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
from sgx.wire.avro import SchemaSet
from sgx.wire.codec import (
    ENVELOPE_PREFIX,
    HEADER_PREFIX,
    HEADER_V1_PREFIX,
    PINNED_FINGERPRINTS,
)
from sgx.wire.codec import avro_bytes as _bytes
from sgx.wire.codec import avro_long as _long
from sgx.wire.codec import avro_string as _string
from sgx.wire.codec import pack as pack
from sgx.wire.codec import unpack as unpack
from sgx.wire.header import FORMAT_VERSION as FORMAT_VERSION
from sgx.wire.header import (
    LEGACY_FORMAT_VERSION,
    PURPOSE_BYTE,
    LocatedHeader,
    SignedFields,
    decode_signed,
    locate_header,
    millis,
    split_envelope,
)
from sgx.wire.header import EnvelopeClaims as EnvelopeClaims
from sgx.wire.header import Purpose as Purpose
from sgx.wire.header import message_id_of as message_id_of
from sgx.wire.header import peek as peek


@dataclass(frozen=True, slots=True)
class Opened:
    """An envelope that opened: authenticated sender, header facts and the plaintext.

    ``connector`` is the connector the sender sealed it for (signed: format 2), or None
    for a format 1 envelope, which names none."""

    purpose: Purpose
    message_id: UUID
    sender: Party
    sender_key_id: str
    sealed_at: datetime
    plaintext: bytes
    connector: str | None = None


@cache
def _default_schemas() -> SchemaSet:
    return SchemaSet(REPO_ROOT / "schemas")


def check_schemas(schemas: SchemaSet | None = None) -> None:
    """ConfigError unless the wire schemas are the ones this codec implements (the format
    1 header it still reads is ``schemas/history``'s EnvelopeHeader v1: a unit test
    pins its fingerprint)."""
    schemas = schemas or _default_schemas()
    for name, pinned in PINNED_FINGERPRINTS.items():
        actual = schemas.fingerprint(name)
        if actual != pinned:
            raise ConfigError(
                f"schema {name} has fingerprint {actual.hex()}, but sgx/wire/envelope.py implements"
                f" wire format {FORMAT_VERSION} ({pinned.hex()}); update the codec with the schema"
            )


def _encode_parties(binding: Binding) -> bytes:
    """``sender``, ``sender_key_id``, ``recipient``, ``recipient_key_id`` and, in format
    2, ``connector`` (header order)."""
    names: tuple[str, ...] = (
        binding.sender, binding.sender_key_id, binding.recipient, binding.recipient_key_id,
    )  # fmt: skip
    if binding.connector is not None:
        names += (binding.connector,)
    return b"".join(_string(name) for name in names)


def _encode_block(block: DataKeyBlock) -> bytes:
    return b"".join((
        block.data_key_id,
        block.ephemeral_public,
        _bytes(block.wrapped_key),
        _long(block.not_after_ms),
        block.signature,
    ))  # fmt: skip


# --------------------------------------------------------------------------- sealing


@dataclass(frozen=True, slots=True)
class _Current:
    key: DataKey
    parties: bytes  # encoded header fields bound to the data key
    tail: bytes  # encoded data-key block


class Sealer:
    """Seals envelopes from ``identity`` to ``recipient``, reusing one data key at a time.

    Each envelope is sealed for ``connector``, the connector whose topic it is published
    on (default: the sender itself, its own connector); the data key's signature covers
    it. ``format_version=1`` seals the format before connectors, as a producer of the
    release before did (no connector).

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
        connector: str | None = None,
        format_version: int = FORMAT_VERSION,
        schemas: SchemaSet | None = None,
        max_uses: int = DEFAULT_MAX_USES,
        max_age: timedelta = timedelta(hours=1),
        clock: Callable[[], datetime] = utc_now,
        random: Callable[[int], bytes] = os.urandom,
    ) -> None:
        check_schemas(schemas)
        if not trust.knows(recipient):
            raise ConfigError(f"recipient {recipient!r} is not in the trust directory")
        if not 0 < max_uses <= 2 ** (8 * NONCE_LEN):
            raise ConfigError(f"max_uses must be positive and fit the nonce, got {max_uses}")
        if format_version == FORMAT_VERSION:
            self._connector: str | None = connector or identity.party_id
            self._head = HEADER_PREFIX + _long(FORMAT_VERSION)
        elif format_version == LEGACY_FORMAT_VERSION and connector is None:
            self._connector = None
            self._head = HEADER_V1_PREFIX + _long(LEGACY_FORMAT_VERSION)
        else:
            raise ConfigError(
                f"wire format {format_version} cannot seal for a connector ({connector!r}):"
                f" format {FORMAT_VERSION} names the connector, format 1 names none"
            )
        self._identity = identity
        self._trust = trust
        self._recipient = recipient
        self._max_uses = max_uses
        self._max_age = max_age
        self._clock = clock
        self._random = random
        self._current: _Current | None = None
        self._generation = trust.generation

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
            self._head, PURPOSE_BYTE[purpose], message_id.bytes, current.parties, _long(now_ms),
        ))  # fmt: skip
        header, ciphertext = current.key.seal(now_ms, head, current.tail, plaintext)
        return b"".join((
            ENVELOPE_PREFIX, _long(len(header)), header, _long(len(ciphertext)), ciphertext,
        ))  # fmt: skip

    def _rekey(self, now: datetime) -> _Current:
        recipient_kid, recipient_box = self._trust.box_key(self._recipient, now)
        sender_kid = self._identity.current_signing_kid(now)
        binding = Binding(
            self._identity.party_id, sender_kid, self._recipient, recipient_kid, self._connector
        )
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
    signed: SignedFields
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
            connector=signed.binding.connector,
        )

    def _authenticate(
        self, header: LocatedHeader, signed: SignedFields, cached: _Cached | None
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


def _check_within(header: LocatedHeader, block: DataKeyBlock) -> None:
    if header.sealed_at_ms > block.not_after_ms:
        raise UnknownKey(
            f"data key {block.data_key_id.hex()} expired (not_after {block.not_after_ms} ms)"
            f" before sealed_at {header.sealed_at.isoformat()}"
        )
