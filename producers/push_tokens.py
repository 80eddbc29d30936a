"""Bearer tokens of the push endpoint, one or more per agency; only their digests are kept.

A token is ``sgxp_`` + 256 random bits (the prefix lets secret scanners spot a leaked
one), minted by ``safeguard push token AGENCY`` and shown once. Only its SHA-256 is
stored, in ``<home>/push/tokens.json`` (mode 0600, replaced atomically): a slow password
hash adds nothing for a 256-bit random secret. A presented token's digest is compared
with every stored digest by :func:`hmac.compare_digest`. An agency may hold several
tokens (rotation); ``safeguard push revoke AGENCY`` removes them all.

A token carries **scopes**: ``notifications`` (send notifications, the default),
``consent`` (answer the consent requests put to the agency, court orders included) and
``information`` (list the MASH information requests put to the agency and answer them,
:mod:`producers.push_information`): a system that only sends cannot grant consent, nor
read what MASHs are asking about which children. A token also **expires** (``--days``, 90 by
default). A running endpoint reads the file again whenever it changes (checked at most
once a second), so a revocation or a new token takes effect within seconds, without a
restart. Tokens of release 0.1 have no scopes or expiry recorded: they may send
notifications and do not expire; answering consent needs a token minted with
``--scope consent``. Two commands minting at the same moment may lose one token (last
writer wins): mint one at a time.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import os
import secrets
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, ValidationError

from sgx.errors import ConfigError

__all__ = ["SCOPES", "TOKEN_PREFIX", "PushTokens", "mint_token", "revoke_tokens", "tokens_file"]

TOKEN_PREFIX = "sgxp_"  # noqa: S105 - a public prefix, not a secret
Scope = Literal["notifications", "consent", "information"]
SCOPES: tuple[Scope, ...] = ("notifications", "consent", "information")
DEFAULT_DAYS = 90
RELOAD_EVERY_S = 1.0


def tokens_file(home: Path) -> Path:
    """Where the push endpoint's token digests are kept under an exchange home."""
    return home / "push" / "tokens.json"


class _StoredToken(BaseModel):
    agency: str = Field(min_length=1)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    created_at: dt.datetime
    scopes: list[Scope] = ["notifications"]
    expires_at: dt.datetime | None = None


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


def mint_token(
    path: Path,
    agency: str,
    scopes: Iterable[Scope] = ("notifications",),
    days: int = DEFAULT_DAYS,
) -> str:
    """A new bearer token for ``agency`` with ``scopes``, expiring in ``days``; only its
    SHA-256 is added to ``path``."""
    if days < 1:
        raise ConfigError("a token must live at least one day")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    now = dt.datetime.now(dt.UTC)
    stored = _read_tokens(path)
    stored.tokens.append(
        _StoredToken(
            agency=agency,
            sha256=_digest(token).hex(),
            created_at=now,
            scopes=sorted(set(scopes)) or ["notifications"],
            expires_at=now + dt.timedelta(days=days),
        )
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


_Entry = tuple[bytes, str, frozenset[str], dt.datetime | None]


class PushTokens:
    """The token digests the endpoint accepts, each for one agency and its scopes, read
    again from their file whenever it changes."""

    def __init__(self, path: Path, agencies: frozenset[str] | None, entries: list[_Entry]) -> None:
        self._path, self._agencies = path, agencies
        self._entries = tuple(entries)
        self._seen = self._stat()
        self._checked = time.monotonic()

    @classmethod
    def load(cls, path: Path, agencies: frozenset[str] | None = None) -> PushTokens:
        """The tokens in ``path`` (none if it does not exist), only of ``agencies`` if given."""
        return cls(path, agencies, cls._entries_of(path, agencies))

    @staticmethod
    def _entries_of(path: Path, agencies: frozenset[str] | None) -> list[_Entry]:
        return [
            (bytes.fromhex(t.sha256), t.agency, frozenset(t.scopes), t.expires_at)
            for t in _read_tokens(path).tokens
            if agencies is None or t.agency in agencies
        ]

    def _stat(self) -> tuple[int, int] | None:
        try:
            found = self._path.stat()
        except FileNotFoundError:
            return None
        return found.st_mtime_ns, found.st_ino

    def _fresh(self) -> None:
        """Read the file again if it changed (a mint or a revoke), at most once a second."""
        now = time.monotonic()
        if now - self._checked < RELOAD_EVERY_S:
            return
        self._checked = now
        seen = self._stat()
        if seen != self._seen:
            self._entries = tuple(self._entries_of(self._path, self._agencies))
            self._seen = seen

    @property
    def agencies(self) -> frozenset[str]:
        return frozenset(entry[1] for entry in self._entries)

    def agency_for(self, token: str, scope: Scope = "notifications") -> str | None:
        """The agency ``token`` was minted for, if it holds ``scope`` and has not expired,
        else None; compares against every digest."""
        self._fresh()
        digest, now = _digest(token), dt.datetime.now(dt.UTC)
        found = None
        for stored, agency, scopes, expires in self._entries:
            if hmac.compare_digest(stored, digest):
                live = expires is None or now < expires
                found = agency if live and scope in scopes else found
        return found

    def holder(self, token: str) -> str | None:
        """The agency of a live ``token`` whatever its scopes (to tell a token that lacks a
        scope from one that is unknown)."""
        return next((a for s in SCOPES if (a := self.agency_for(token, s))), None)
