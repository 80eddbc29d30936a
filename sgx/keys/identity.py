"""A party's own identity: its private signing and box keys, read from the trust
directory's private folder (PEM files, or a reference to a key in a PKCS#11 token), which
sign and open on its behalf and never hand out raw key bytes.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Protocol

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from sgx.errors import ConfigError, UnknownKey, UnknownSender
from sgx.keys.files import read_private_file
from sgx.keys.trust import (
    DIRECTORY_FILE,
    PRIVATE_DIR,
    SIGNING_PEM_SUFFIX,
    SIGNING_REFERENCE_SUFFIX,
    Party,
    PartyKey,
    TrustDirectory,
    key_file_stem,
    newest,
    utc_now,
)


class Signer(Protocol):
    """A private signing key, asked to sign: an ``Ed25519PrivateKey`` from a PEM file, or
    a :class:`sgx.keys.hsm.TokenSigner` whose key stays in a PKCS#11 token."""

    def sign(self, data: bytes) -> bytes:
        """The 64-byte Ed25519 signature of ``data``."""
        ...


class Identity:
    """One party's private keys (signing and box), by key id. Raw bytes never leave it."""

    __slots__ = ("_box", "_keys", "_party", "_signing")

    def __init__(
        self,
        party: Party,
        signing: Mapping[str, Signer],
        box: Mapping[str, X25519PrivateKey],
    ) -> None:
        self._party = party
        self._signing = dict(signing)
        self._box = dict(box)
        self._keys = [key for key in party.keys if key.kid in self._signing]

    @classmethod
    def load(
        cls, trust_dir: Path, party_id: str, *, directory: TrustDirectory | None = None
    ) -> Identity:
        """Read the party's private keys; ConfigError if missing, exposed or not matching."""
        trust = directory or TrustDirectory.load(trust_dir)
        try:
            party = trust.party(party_id)
        except UnknownSender as exc:
            raise ConfigError(f"{trust_dir / DIRECTORY_FILE}: no party {party_id!r}") from exc
        signing, box = _load_private_keys(trust_dir / PRIVATE_DIR / party_id, party)
        if not signing:
            raise ConfigError(f"no private keys for {party_id} in {trust_dir / PRIVATE_DIR}")
        return cls(party, signing, box)

    def __repr__(self) -> str:
        return f"Identity({self._party.id!r}, kids={sorted(self._signing)!r})"

    def refresh(self, trust_dir: Path, directory: TrustDirectory) -> None:
        """Read this party's private keys again (after a rotation), in place."""
        newer = Identity.load(trust_dir, self._party.id, directory=directory)
        self._party, self._signing, self._box = newer._party, newer._signing, newer._box
        self._keys = newer._keys

    @property
    def party_id(self) -> str:
        return self._party.id

    @property
    def party(self) -> Party:
        return self._party

    @property
    def keys(self) -> list[PartyKey]:
        """Public metadata of the keys this identity holds privately (oldest first)."""
        return list(self._keys)

    @property
    def signing_kid(self) -> str:
        """The key id this identity signs with now."""
        return self.current_signing_kid(utc_now())

    def current_signing_kid(self, at: datetime) -> str:
        key = newest(self._keys, at)
        if key is None:
            raise UnknownKey(f"{self.party_id} holds no key valid at {at.isoformat()}")
        return key.kid

    def sign(self, data: bytes, *, kid: str | None = None) -> bytes:
        """Ed25519 signature with ``kid`` (default: the current signing key)."""
        kid = kid or self.signing_kid
        key = self._signing.get(kid)
        if key is None:
            raise UnknownKey(f"{self.party_id} holds no signing key {kid!r}")
        return key.sign(data)

    def box_private(self, kid: str) -> X25519PrivateKey:
        key = self._box.get(kid)
        if key is None:
            raise UnknownKey(f"{self.party_id} holds no box key {kid!r}")
        return key


def _load_private_keys(
    folder: Path, party: Party
) -> tuple[dict[str, Signer], dict[str, X25519PrivateKey]]:
    """The party's private keys in ``folder``: the signing half from its PEM file, or from
    a token when a ``.signing.pkcs11`` reference stands in its place."""
    signing: dict[str, Signer] = {}
    box: dict[str, X25519PrivateKey] = {}
    for key in party.keys:
        stem = folder / key_file_stem(key.kid)
        signing_file, box_file = stem.with_name(stem.name + SIGNING_PEM_SUFFIX), box_path(stem)
        reference = stem.with_name(stem.name + SIGNING_REFERENCE_SUFFIX)
        if reference.exists():
            if signing_file.exists():
                raise ConfigError(
                    f"{signing_file} and {reference} both exist: the signing key of {key.kid}"
                    " is either a PEM file or in a token; delete one"
                )
            signing[key.kid] = _load_token_signing(reference, key)
        elif not signing_file.exists() and not box_file.exists():
            continue
        else:
            signing[key.kid] = _load_signing(signing_file, key)
        box[key.kid] = _load_box(box_file, key)
    return signing, box


def box_path(stem: Path) -> Path:
    return stem.with_name(stem.name + ".box.pem")


def _load_signing(path: Path, key: PartyKey) -> Ed25519PrivateKey:
    private = _load_pem(path)
    if not isinstance(private, Ed25519PrivateKey):
        raise ConfigError(f"{path}: not an Ed25519 private key")
    if private.public_key().public_bytes_raw() != key.signing_public:
        raise ConfigError(f"{path}: does not match signing_public of {key.kid} in the directory")
    return private


def _load_token_signing(path: Path, key: PartyKey) -> Signer:
    """The token signer ``path`` refers to, checked against the directory's public key."""
    from sgx.keys.hsm import (  # python-pkcs11: only if a token is used
        TokenKeyReference,
        TokenSigner,
    )

    reference = TokenKeyReference.load(path)
    try:
        signer = TokenSigner(reference.config, reference.key)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    if signer.public_bytes_raw() != key.signing_public:
        signer.close()
        raise ConfigError(
            f"{path}: the token's key {signer.key_label!r} does not match signing_public of"
            f" {key.kid} in the directory"
        )
    return signer


def _load_box(path: Path, key: PartyKey) -> X25519PrivateKey:
    private = _load_pem(path)
    if not isinstance(private, X25519PrivateKey):
        raise ConfigError(f"{path}: not an X25519 private key")
    if private.public_key().public_bytes_raw() != key.box_public:
        raise ConfigError(f"{path}: does not match box_public of {key.kid} in the directory")
    return private


def _load_pem(path: Path) -> object:
    data = read_private_file(path)
    try:
        return load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{path}: not an unencrypted PKCS8 PEM private key: {exc}") from exc
