"""Bearer tokens of the push endpoint, one or more per agency; only their digests are kept.

A token is ``sgxp_`` + 256 random bits (the prefix lets secret scanners spot a leaked
one), minted by ``safeguard push token AGENCY`` and shown once. Only its SHA-256 is
stored, in ``<home>/push/tokens.json`` (mode 0600, replaced atomically): a slow password
hash adds nothing for a 256-bit random secret. A presented token's digest is compared
with every stored digest by :func:`hmac.compare_digest`. An agency may hold several
tokens (rotation); ``safeguard push revoke AGENCY`` removes them all. Two commands
minting at the same moment may lose one token (last writer wins): mint one at a time.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import os
import secrets
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, ValidationError

from sgx.errors import ConfigError

__all__ = ["TOKEN_PREFIX", "PushTokens", "mint_token", "revoke_tokens", "tokens_file"]

TOKEN_PREFIX = "sgxp_"  # noqa: S105 - a public prefix, not a secret


def tokens_file(home: Path) -> Path:
    """Where the push endpoint's token digests are kept under an exchange home."""
    return home / "push" / "tokens.json"


class _StoredToken(BaseModel):
    agency: str = Field(min_length=1)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    created_at: dt.datetime


class _TokenFile(BaseModel):
    version: Literal[1] = 1
    tokens: list[_StoredToken] = []


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def _read_tokens(path: Path) -> _TokenFile:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return _TokenFile()
    except OSError as exc:
        raise ConfigError(f"cannot read push tokens {path}: {exc}") from exc
    try:
        return _TokenFile.model_validate_json(text)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "(file)"
        raise ConfigError(f"push tokens {path}: {where}: {first['msg']}") from None


def _write_tokens(path: Path, tokens: _TokenFile) -> None:
    """Replace the file atomically, readable by its owner only."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".tmp")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(tokens.model_dump_json(indent=2) + "\n")
        out.flush()
        os.fsync(out.fileno())
    os.replace(partial, path)


def mint_token(path: Path, agency: str) -> str:
    """A new bearer token for ``agency``; only its SHA-256 is added to ``path``."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    stored = _read_tokens(path)
    stored.tokens.append(
        _StoredToken(agency=agency, sha256=_digest(token).hex(), created_at=dt.datetime.now(dt.UTC))
    )
    _write_tokens(path, stored)
    return token


def revoke_tokens(path: Path, agency: str) -> int:
    """Remove every token of ``agency`` from ``path``; returns how many there were."""
    stored = _read_tokens(path)
    kept = [token for token in stored.tokens if token.agency != agency]
    removed = len(stored.tokens) - len(kept)
    if removed:
        _write_tokens(path, _TokenFile(tokens=kept))
    return removed


class PushTokens:
    """The token digests the endpoint accepts, each for one agency."""

    def __init__(self, entries: list[tuple[bytes, str]]) -> None:
        self._entries = tuple(entries)

    @classmethod
    def load(cls, path: Path, agencies: frozenset[str] | None = None) -> PushTokens:
        """The tokens in ``path`` (none if it does not exist), only of ``agencies`` if given."""
        entries = [
            (bytes.fromhex(token.sha256), token.agency)
            for token in _read_tokens(path).tokens
            if agencies is None or token.agency in agencies
        ]
        return cls(entries)

    @property
    def agencies(self) -> frozenset[str]:
        return frozenset(agency for _, agency in self._entries)

    def agency_for(self, token: str) -> str | None:
        """The agency ``token`` was minted for, or None; compares against every digest."""
        digest = _digest(token)
        found = None
        for stored, agency in self._entries:
            if hmac.compare_digest(stored, digest):
                found = agency
        return found
