"""Data keys: made, wrapped and signed by a sender; verified and unwrapped by a recipient.

A data key (dek) is 32 random bytes used with AES-256-GCM for many envelopes from one
sender to one recipient (design.md, "Wire format (version 1)")::

    kek        = HKDF-SHA256(ikm  = X25519(ephemeral, recipient box key),
                             salt = data_key_id,
                             info = "SGX-WRAP1" ‖ lp(sender) ‖ lp(recipient)
                                    ‖ lp(recipient_key_id) ‖ ephemeral_public)
    wrapped    = AES-256-GCM(kek, nonce = 0^12, dek, aad = data_key_id)        48 bytes
    transcript = "SGX-DK2\\0" ‖ lp(sender) ‖ lp(sender_key_id) ‖ lp(recipient)
                 ‖ lp(recipient_key_id) ‖ lp(connector) ‖ data_key_id ‖ ephemeral_public
                 ‖ wrapped ‖ be64(not_after)
    signature  = Ed25519(sender_key_id, transcript)

In wire format 1 (no connector) the transcript is "SGX-DK1\\0" and has no lp(connector).
The connector is the one the sender seals for (the owner of the topic it publishes
on); signing it means an envelope copied onto another connector's topic is found out.

``lp(s)`` is a 2-byte big-endian length and the UTF-8 bytes. The kek is single-use (a fresh
ephemeral key per data key), so the fixed zero nonce of the wrap is never reused.

The raw dek lives only inside :class:`DataKey` (the sender's, which hands out nonces and
stops at its use limit or ``not_after``) and :class:`ReceivedDataKey` (the recipient's,
which only decrypts), in the manner of kroxylicious' ``Dek``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from sgx.errors import BadSignature, ExchangeError, TamperedEnvelope

DEK_LEN = 32
DATA_KEY_ID_LEN = 16
NONCE_LEN = 12
WRAPPED_LEN = DEK_LEN + 16
DEFAULT_MAX_USES = 5_000_000
_WRAP_INFO = b"SGX-WRAP1"
_TRANSCRIPT_TAG = b"SGX-DK1\0"
_TRANSCRIPT_TAG_2 = b"SGX-DK2\0"  # with the connector
_ZERO_NONCE = bytes(NONCE_LEN)


class DataKeyExhausted(ExchangeError):
    """A data key reached its use limit or its not_after; the sealer makes a new one."""


class Binding(NamedTuple):
    """The parties and key ids a data key is bound to (wrapped for, signed over), and the
    connector it is sealed for (None: wire format 1, which names none)."""

    sender: str
    sender_key_id: str
    recipient: str
    recipient_key_id: str
    connector: str | None = None


class DataKeyBlock(NamedTuple):
    """The wire form of a wrapped, signed data key (``DataKeyBlock`` in the schema)."""

    data_key_id: bytes
    ephemeral_public: bytes
    wrapped_key: bytes
    not_after_ms: int
    signature: bytes


def lp(text: str) -> bytes:
    """2-byte big-endian length ‖ UTF-8 bytes."""
    raw = text.encode()
    return len(raw).to_bytes(2, "big") + raw


def transcript(binding: Binding, block: DataKeyBlock) -> bytes:
    """The bytes the sender signs for a data key (the block's signature excluded)."""
    connector = b"" if binding.connector is None else lp(binding.connector)
    return b"".join((
        _TRANSCRIPT_TAG if binding.connector is None else _TRANSCRIPT_TAG_2,
        lp(binding.sender),
        lp(binding.sender_key_id),
        lp(binding.recipient),
        lp(binding.recipient_key_id),
        connector,
        block.data_key_id,
        block.ephemeral_public,
        block.wrapped_key,
        block.not_after_ms.to_bytes(8, "big", signed=True),
    ))  # fmt: skip


def _kek(shared: bytes, binding: Binding, data_key_id: bytes, ephemeral_public: bytes) -> AESGCM:
    info = b"".join((
        _WRAP_INFO,
        lp(binding.sender),
        lp(binding.recipient),
        lp(binding.recipient_key_id),
        ephemeral_public,
    ))  # fmt: skip
    kdf = HKDF(algorithm=SHA256(), length=DEK_LEN, salt=data_key_id, info=info)
    return AESGCM(kdf.derive(shared))


class DataKey:
    """A sender's data key: hands out counter nonces and encrypts until used up or expired."""

    __slots__ = ("_aead", "_limit", "_next", "binding", "block")

    def __init__(self, dek: bytes, binding: Binding, block: DataKeyBlock, max_uses: int) -> None:
        self._aead = AESGCM(dek)
        self._next = 0
        self._limit = max_uses
        self.binding = binding
        self.block = block

    def __repr__(self) -> str:
        return f"DataKey(id={self.block.data_key_id.hex()}, used={self._next}/{self._limit})"

    @property
    def uses(self) -> int:
        return self._next

    def usable(self, now_ms: int) -> bool:
        return self._next < self._limit and now_ms <= self.block.not_after_ms

    def seal(self, now_ms: int, head: bytes, tail: bytes, plaintext: bytes) -> tuple[bytes, bytes]:
        """Take the next nonce; header = head ‖ nonce ‖ tail; returns (header, ciphertext).

        The header is the AES-GCM associated data, so it is bound to the ciphertext.
        """
        if not self.usable(now_ms):
            raise DataKeyExhausted(f"data key {self.block.data_key_id.hex()} is used up")
        nonce = self._next.to_bytes(NONCE_LEN, "big")
        self._next += 1
        header = b"".join((head, nonce, tail))
        return header, self._aead.encrypt(nonce, plaintext, header)


class ReceivedDataKey:
    """A recipient's unwrapped data key: decrypt only."""

    __slots__ = ("_aead", "not_after_ms")

    def __init__(self, dek: bytes, not_after_ms: int) -> None:
        self._aead = AESGCM(dek)
        self.not_after_ms = not_after_ms

    def __repr__(self) -> str:
        return f"ReceivedDataKey(not_after_ms={self.not_after_ms})"

    def open(self, nonce: bytes, ciphertext: bytes | memoryview, header: bytes) -> bytes:
        try:
            return self._aead.decrypt(nonce, ciphertext, header)
        except InvalidTag as exc:
            raise TamperedEnvelope("envelope failed authentication (header or body)") from exc


def new_data_key(
    binding: Binding,
    recipient_box: X25519PublicKey,
    sign: Callable[[bytes], bytes],
    not_after_ms: int,
    *,
    max_uses: int = DEFAULT_MAX_USES,
    random: Callable[[int], bytes],
) -> DataKey:
    """Make a data key, wrap it for ``recipient_box`` and sign it (1 X25519, 1 Ed25519)."""
    data_key_id, dek = random(DATA_KEY_ID_LEN), random(DEK_LEN)
    ephemeral = X25519PrivateKey.from_private_bytes(random(32))
    ephemeral_public = ephemeral.public_key().public_bytes_raw()
    kek = _kek(ephemeral.exchange(recipient_box), binding, data_key_id, ephemeral_public)
    wrapped = kek.encrypt(_ZERO_NONCE, dek, data_key_id)
    unsigned = DataKeyBlock(data_key_id, ephemeral_public, wrapped, not_after_ms, b"")
    signature = sign(transcript(binding, unsigned))
    block = DataKeyBlock(data_key_id, ephemeral_public, wrapped, not_after_ms, signature)
    return DataKey(dek, binding, block, max_uses)


def verify_data_key(binding: Binding, block: DataKeyBlock, sender_key: Ed25519PublicKey) -> None:
    """BadSignature unless the sender's key signed this block for this binding."""
    try:
        sender_key.verify(block.signature, transcript(binding, block))
    except InvalidSignature as exc:
        raise BadSignature(
            f"data key {block.data_key_id.hex()} is not signed by {binding.sender_key_id}"
        ) from exc


def unwrap_data_key(
    binding: Binding, block: DataKeyBlock, recipient_box: X25519PrivateKey
) -> ReceivedDataKey:
    """Unwrap a (verified) data key; TamperedEnvelope if the wrap does not authenticate."""
    try:
        ephemeral = X25519PublicKey.from_public_bytes(block.ephemeral_public)
        shared = recipient_box.exchange(ephemeral)
        kek = _kek(shared, binding, block.data_key_id, block.ephemeral_public)
        dek = kek.decrypt(_ZERO_NONCE, block.wrapped_key, block.data_key_id)
    except (InvalidTag, ValueError) as exc:
        raise TamperedEnvelope(f"data key {block.data_key_id.hex()} does not unwrap") from exc
    return ReceivedDataKey(dek, block.not_after_ms)
