"""Writing the trust directory and its keys: a new directory, rotation, revocation.

What :mod:`sgx.keys.trust` reads, this module writes (``safeguard keys init | rotate |
rotate-into-token | revoke``): each party's public keys into ``directory.json`` and its
private keys (mode 0600) under ``private/<party>/``, or, for a signing key in an HSM, a
reference to it (:mod:`sgx.keys.hsm`). A running service picks the change up without a restart
(:mod:`sgx.ops.trust_reload`).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
)
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
)
from pydantic import (
    ValidationError,
)

from sgx.errors import ConfigError

if TYPE_CHECKING:
    from sgx.keys.hsm import TokenConfig

from sgx.keys.connectors import Connector
from sgx.keys.files import validation_error  # fmt: skip
from sgx.keys.trust import (
    DIRECTORY_FILE,
    KEY_BACKDATE,
    KEY_VALIDITY,
    PRIVATE_DIR,
    PSEUDONYM_KEY_FILE,
    SIGNING_PEM_SUFFIX,
    SIGNING_REFERENCE_SUFFIX,
    Party,
    PartyKey,
    PartySpec,
    TrustDirectory,
    check_consistent,
    key_file_stem,
    read_whole,
    utc_now,
    write_directory,
)

# --------------------------------------------------------------------------- writing keys


def init_trust(
    trust_dir: Path, parties: Sequence[PartySpec], connectors: Sequence[Connector] = ()
) -> TrustDirectory:
    """Create a trust directory: keys for every party and the exchange's pseudonym key,
    and the ``connectors`` that publish for some of them (they have no keys)."""
    if (trust_dir / DIRECTORY_FILE).exists():
        raise ConfigError(f"{trust_dir / DIRECTORY_FILE} exists; refusing to overwrite keys")
    _private_dir(trust_dir / PRIVATE_DIR)
    now = utc_now()
    built = [_new_party(trust_dir, spec, now) for spec in parties]
    check_consistent(trust_dir / DIRECTORY_FILE, built, connectors)
    write_private_file(trust_dir / PRIVATE_DIR / PSEUDONYM_KEY_FILE, secrets.token_bytes(32))
    write_directory(trust_dir, built, connectors)
    return TrustDirectory(built, connectors)


def _new_party(trust_dir: Path, spec: PartySpec, now: datetime) -> Party:
    try:
        party = Party(
            id=spec.id, kind=spec.kind, name=spec.name, gss_code=spec.gss_code,
            serves=list(spec.serves), serves_any=spec.serves_any, keys=[],
        )  # fmt: skip
    except ValidationError as exc:
        raise validation_error(Path(f"party spec {spec.id!r}"), exc) from exc
    key = _new_key(trust_dir, party.id, set(), now)
    return party.model_copy(update={"keys": [key]})


def rotate_key(trust_dir: Path, party_id: str, *, not_before: datetime | None = None) -> str:
    """Add a new key for ``party_id`` (the old ones stay valid); returns the new kid.

    By default the new key is valid at once (from a day ago, like :func:`init_trust`), so
    senders that reload seal to it immediately: reload the party itself first. A future
    ``not_before`` gives everybody time to reload; until then the old key stays in use.
    """
    return _add_key(trust_dir, party_id, not_before, None)


def rotate_key_into_token(
    trust_dir: Path, party_id: str, token: TokenConfig, *, not_before: datetime | None = None
) -> str:
    """Like :func:`rotate_key`, but the new signing key is generated in a PKCS#11 token.

    The token makes a sensitive, non-extractable Ed25519 key pair labelled with the new kid
    (:func:`sgx.keys.hsm.generate_signing_key`); ``<kid>.signing.pkcs11``, where the PEM file
    would be, records the token and key (a relative ``pin_file`` or module path made
    absolute). The box key is a new X25519 PEM file as ever. Returns the new kid.
    """
    return _add_key(trust_dir, party_id, not_before, token)


def _add_key(
    trust_dir: Path, party_id: str, not_before: datetime | None, token: TokenConfig | None
) -> str:
    parties, connectors = read_whole(trust_dir / DIRECTORY_FILE)
    index = _index_of(trust_dir, parties, party_id)
    party = parties[index]
    now = utc_now()
    taken = {k.kid for k in party.keys}
    key = _new_key(trust_dir, party_id, taken, now, not_before, token=token)
    parties[index] = party.model_copy(update={"keys": [*party.keys, key]})
    write_directory(trust_dir, parties, connectors)
    return key.kid


def revoke_key(trust_dir: Path, party_id: str, kid: str) -> None:
    """Mark ``kid`` revoked: it no longer verifies and is never sealed to."""
    parties, connectors = read_whole(trust_dir / DIRECTORY_FILE)
    index = _index_of(trust_dir, parties, party_id)
    party = parties[index]
    if kid not in {k.kid for k in party.keys}:
        raise ConfigError(f"{trust_dir / DIRECTORY_FILE}: {party_id} has no key {kid!r}")
    keys = [k.model_copy(update={"revoked": True}) if k.kid == kid else k for k in party.keys]
    parties[index] = party.model_copy(update={"keys": keys})
    write_directory(trust_dir, parties, connectors)


def _index_of(trust_dir: Path, parties: Sequence[Party], party_id: str) -> int:
    for i, party in enumerate(parties):
        if party.id == party_id:
            return i
    raise ConfigError(f"{trust_dir / DIRECTORY_FILE}: no party {party_id!r}")


def _new_key(
    trust_dir: Path,
    party_id: str,
    taken: set[str],
    now: datetime,
    not_before: datetime | None = None,
    *,
    token: TokenConfig | None = None,
) -> PartyKey:
    """A new key pair's files (signing half in ``token`` if given) and its metadata."""
    kid = _new_kid(party_id, taken, now)
    box = X25519PrivateKey.generate()
    folder = trust_dir / PRIVATE_DIR / party_id
    _private_dir(folder)
    stem = key_file_stem(kid)
    if token is None:
        signing = Ed25519PrivateKey.generate()
        signing_public = signing.public_key().public_bytes_raw()
        write_private_file(folder / f"{stem}{SIGNING_PEM_SUFFIX}", _pem(signing))
    else:
        signing_public = _new_token_key(folder / f"{stem}{SIGNING_REFERENCE_SUFFIX}", token, kid)
    write_private_file(folder / f"{stem}.box.pem", _pem(box))
    return PartyKey(
        kid=kid,
        signing_public=signing_public,
        box_public=box.public_key().public_bytes_raw(),
        not_before=not_before or now - KEY_BACKDATE,
        not_after=max(now, not_before or now) + KEY_VALIDITY,
    )


def _new_token_key(reference: Path, token: TokenConfig, kid: str) -> bytes:
    """Generate ``kid``'s signing key in ``token``, write its reference file; the raw
    public key. Paths are made absolute so the reference reads the same from any cwd."""
    from sgx.keys.hsm import TokenKeyReference, generate_signing_key

    if reference.exists():
        raise ConfigError(f"{reference} exists; refusing to overwrite it")
    module = os.path.abspath(token.module) if os.sep in token.module else token.module
    pin_file = token.pin_file.absolute() if token.pin_file is not None else None
    written = TokenKeyReference(
        module=module, token=token.token, key=kid, pin_file=pin_file, pin_env=token.pin_env
    )
    public = generate_signing_key(written.config, kid)
    write_private_file(reference, written.dumps().encode("utf-8"))
    return public


def _new_kid(party_id: str, taken: set[str], now: datetime) -> str:
    while True:
        kid = f"{party_id}/{now:%Y-%m-%dT%H%M}-{secrets.token_hex(2)}"
        if kid not in taken:
            return kid


def _pem(key: Ed25519PrivateKey | X25519PrivateKey) -> bytes:
    return key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())


def _private_dir(path: Path) -> None:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.chmod(0o700)


def write_private_file(path: Path, data: bytes) -> None:
    """Create ``path`` with mode 0600 (fails if it exists) and write ``data``."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        os.fchmod(out.fileno(), 0o600)
        out.write(data)
