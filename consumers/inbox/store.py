"""The inbox's own records, in the LA's queue database: accounts, API clients, reads, shares
and the consents asked of authors.

Tables (beside ``queue_item``; ``schema`` places them in a PostgreSQL schema):

* ``inbox_account`` — local accounts of the embedded default: username, an argon2id hash
  of the password (argon2-cffi's defaults, RFC 9106's second recommended profile), the
  worker id, role and team it signs in as.
* ``inbox_client`` — case-management systems: a name, the SHA-256 of its bearer token (a
  256-bit random secret, so a slow password hash adds nothing; as the push endpoint's
  tokens), and its scopes.
* ``inbox_read`` — every read of an item, which is a disclosure too: who (worker id or
  client), how (``listed`` in a queue, ``opened`` on its page, ``fetched`` over the API,
  ``record`` on a child's page), which item and notification, when. Append only.
* ``inbox_share`` — every onward share asked for: the item, to whom (id, category, name),
  why, who asked, when, and the gateway's answer (allowed, the restrictions it would
  break, its reason) once it came.
* ``inbox_consent`` — every consent asked of an author about a refused share, and where
  it stands (:mod:`consumers.inbox.consent_store`).
* ``family_disclosure``, ``family_decision`` — each share (a disclosure) and whether the
  family was told of it (:mod:`consumers.inbox.family_store`); a share is registered
  with its request and marked made when the exchange allows it, in the same transactions.
* ``inbox_session`` — who is signed in, as what, since when (:mod:`consumers.inbox.sessions`).
* ``inbox_sign_in_failure`` — failed local sign-ins per name tried and per client
  address, and the names locked (:mod:`consumers.inbox.throttle`).
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import (
    Boolean,
    Column,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    false,
    select,
    update,
)
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncEngine

from consumers.inbox.access import Principal, Role, check_scopes, role_from
from consumers.inbox.consent_store import InboxConsents
from consumers.inbox.family_store import FamilyStore
from consumers.inbox.referral_store import InboxReferralResponses
from consumers.inbox.sessions import Sessions
from consumers.inbox.throttle import SignInGuard
from sgx.domain.family import DisclosureKind
from sgx.errors import ConfigError, NotFound
from sgx.store.database import Database
from sgx.store.db import (
    UtcDateTime,
    decode_strings,
    encode_strings,
    insert_ignoring_duplicates,
    one_of,
    read_row,
    read_rows,
    serial,
    store_errors,
    write_transaction,
)

TOKEN_PREFIX = "sgxi_"  # noqa: S105 - a public prefix (lets secret scanners spot a leak)
# the read audit's actions; ``family``: a family-informed decision recorded about the item
ReadAction = Literal["listed", "opened", "fetched", "record", "family"]
_HASHER = PasswordHasher()


@functools.cache
def _dummy_hash() -> str:
    """Verified when the username is unknown, so a wrong name costs as long as a wrong
    password. Made at the first sign-in, not at import: an argon2 hash is ~0.2-0.8 s of
    CPU, which every ``safeguard`` command (all import this module) paid at start."""
    return _HASHER.hash(secrets.token_urlsafe(16))


def _verify(password_hash: str | None, password: str) -> None:
    """Raise VerificationError unless ``password`` matches (``None``: an unknown user)."""
    _HASHER.verify(password_hash if password_hash is not None else _dummy_hash(), password)


@dataclass(frozen=True, slots=True)
class Account:
    username: str
    worker_id: str
    name: str
    role: Role | None
    team: str | None
    disabled: bool = False


@dataclass(frozen=True, slots=True)
class ShareRecord:
    share_id: int
    request_id: str
    item_id: int
    notification_id: str
    requested_by: str
    to_id: str
    to_category: str
    to_name: str
    purpose: str
    requested_at: datetime
    allowed: bool | None  # None: no answer from the gateway yet
    broken: tuple[str, ...]
    reason: str | None
    decided_at: datetime | None


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _tables(metadata: MetaData) -> tuple[Table, Table, Table, Table]:
    accounts = Table(
        "inbox_account",
        metadata,
        Column("username", String(200), primary_key=True),
        Column("password_hash", String(300), nullable=False),
        Column("worker_id", String(200), nullable=False),
        Column("name", String(300), nullable=False),
        Column("role", String(50)),
        Column("team", String(200)),
        Column("created_at", UtcDateTime, nullable=False),
        Column("disabled", Boolean, nullable=False, server_default=false()),  # queue 0005
    )
    clients = Table(
        "inbox_client",
        metadata,
        Column("client_id", String(200), primary_key=True),
        Column("token_sha256", String(64), nullable=False, unique=True),
        Column("scopes", Text, nullable=False),
        Column("created_at", UtcDateTime, nullable=False),
        Column("expires_at", UtcDateTime),  # queue 0005 (clients of release 0.1: none)
    )
    reads = Table(
        "inbox_read",
        metadata,
        Column("read_id", serial(), primary_key=True),
        Column("item_id", Integer, nullable=False),
        Column("notification_id", String(64), nullable=False),
        Column("reader", String(200), nullable=False),
        Column("reader_kind", String(10), nullable=False),
        Column("action", String(10), nullable=False),
        Column("read_at", UtcDateTime, nullable=False),
        Index("ix_inbox_read_item", "item_id"),
    )
    shares = Table(
        "inbox_share",
        metadata,
        Column("share_id", serial(), primary_key=True),
        Column("request_id", String(64), nullable=False, unique=True),
        Column("item_id", Integer, nullable=False),
        Column("notification_id", String(64), nullable=False),
        Column("requested_by", String(200), nullable=False),
        Column("to_id", String(200), nullable=False),
        Column("to_category", String(50), nullable=False),
        Column("to_name", String(300), nullable=False),
        Column("purpose", Text, nullable=False),
        Column("requested_at", UtcDateTime, nullable=False),
        Column("allowed", Boolean),
        Column("broken", Text, nullable=False),
        Column("reason", Text),
        Column("decided_at", UtcDateTime),
        Index("ix_inbox_share_notification", "notification_id"),
    )
    return accounts, clients, reads, shares


def _share(row: RowMapping) -> ShareRecord:
    values: dict[str, Any] = dict(row)
    values["broken"] = decode_strings(values["broken"])
    return ShareRecord(**values)


class InboxStore(Database):
    """Accounts, API clients, the read audit, onward shares and consent requests of one LA's
    inbox."""

    KIND = "queue"

    def __init__(self, engine: AsyncEngine, metadata: MetaData) -> None:
        super().__init__(engine, metadata)
        self._accounts, self._clients, self._reads, self._shares = _tables(metadata)
        self.consents = InboxConsents(engine, metadata)
        self.families = FamilyStore(engine, metadata)
        self.referrals = InboxReferralResponses(engine, metadata)
        self.sign_ins = SignInGuard(engine, metadata)
        self.sessions = Sessions(engine, metadata)

    # -- local accounts --------------------------------------------------------------
    async def add_account(
        self,
        username: str,
        password: str,
        *,
        worker_id: str,
        name: str,
        role: str,
        team: str | None,
        replace: bool = False,
    ) -> Account:
        """Add a local account (the password is kept only as an argon2id hash); an account of
        that name is replaced only if ``replace``, and then its sessions end at once."""
        if role_from(role) is None:
            raise ConfigError(f"unknown role {role!r}: use social_worker, supervisor or mash_duty")
        if len(password) < 12:
            raise ConfigError("a password needs at least 12 characters")
        row = {
            "username": username,
            "password_hash": await asyncio.to_thread(_HASHER.hash, password),
            "worker_id": worker_id,
            "name": name,
            "role": role,
            "team": team,
            "created_at": datetime.now(UTC),
        }
        with store_errors("add an inbox account"):
            async with write_transaction(self._engine) as conn:
                gone = await conn.execute(
                    self._accounts.delete().where(self._accounts.c.username == username)
                )
                if gone.rowcount and not replace:
                    raise ConfigError(
                        f"an account {username!r} exists already in this LA's inbox: nothing"
                        " changed (to change it, add it again with --replace)"
                    )
                await conn.execute(self._accounts.insert(), [row])
        if replace:
            await self.sessions.end_account(username, "account changed")
        return Account(username, worker_id, name, role_from(role), team)

    async def account(self, username: str) -> Account | None:
        """The local account ``username`` as it is now, or None."""
        a = self._accounts
        row = await read_row(
            self._engine, select(a).where(a.c.username == username), "read an inbox account"
        )
        if row is None:
            return None
        return Account(
            row["username"], row["worker_id"], row["name"], role_from(row["role"]), row["team"],
            bool(row["disabled"]),
        )  # fmt: skip

    async def disable_account(self, username: str) -> bool:
        """Disable ``username`` (it signs in no more) and end its sessions; whether it was
        there to disable."""
        a = self._accounts
        change = update(a).where(a.c.username == username).values(disabled=True)
        with store_errors("disable an inbox account"):
            async with write_transaction(self._engine) as conn:
                found = (await conn.execute(change)).rowcount
        await self.sessions.end_account(username, "account disabled")
        return bool(found)

    async def check_password(self, username: str, password: str) -> Account | None:
        """The account if ``password`` is its password, else None (same cost either way)."""
        query = select(self._accounts).where(self._accounts.c.username == username)
        with store_errors("read an inbox account"):
            async with self._engine.connect() as conn:
                row = (await conn.execute(query)).mappings().first()
        try:  # ~160 ms of CPU: off the event loop, which serves everyone else meanwhile
            await asyncio.to_thread(_verify, row["password_hash"] if row else None, password)
        except (VerificationError, InvalidHashError):
            return None
        if row is None or row["disabled"]:
            return None
        if _HASHER.check_needs_rehash(row["password_hash"]):
            await self._rehash(username, password)
        return Account(
            row["username"], row["worker_id"], row["name"], role_from(row["role"]), row["team"]
        )

    async def _rehash(self, username: str, password: str) -> None:
        change = (
            update(self._accounts)
            .where(self._accounts.c.username == username)
            .values(password_hash=await asyncio.to_thread(_HASHER.hash, password))
        )
        with store_errors("rehash an inbox password"):
            async with write_transaction(self._engine) as conn:
                await conn.execute(change)

    # -- API clients -------------------------------------------------------------------
    async def add_client(
        self, client_id: str, scopes: Sequence[str], *, days: int = 90, replace: bool = False
    ) -> str:
        """Register a system with a token that expires in ``days``; returns the token, shown
        once (only its digest is kept). A client of that name is replaced only if
        ``replace`` (its old token then stops working at once)."""
        check_scopes(frozenset(scopes))
        if days < 1:
            raise ConfigError("a token must live at least one day")
        token, now = TOKEN_PREFIX + secrets.token_urlsafe(32), datetime.now(UTC)
        row = {
            "client_id": client_id,
            "token_sha256": _digest(token),
            "scopes": encode_strings(sorted(set(scopes))),
            "created_at": now,
            "expires_at": now + timedelta(days=days),
        }
        with store_errors("add an inbox client"):
            async with write_transaction(self._engine) as conn:
                gone = await conn.execute(
                    self._clients.delete().where(self._clients.c.client_id == client_id)
                )
                if gone.rowcount and not replace:
                    raise ConfigError(
                        f"a client {client_id!r} exists already in this LA's inbox: nothing"
                        " changed (to give it a new token, add it again with --replace)"
                    )
                await conn.execute(self._clients.insert(), [row])
        return token

    async def revoke_client(self, client_id: str) -> bool:
        """Remove ``client_id``: its token is refused from the next request on."""
        with store_errors("revoke an inbox client"):
            async with write_transaction(self._engine) as conn:
                gone = await conn.execute(
                    self._clients.delete().where(self._clients.c.client_id == client_id)
                )
        return bool(gone.rowcount)

    async def client_for(self, la: str, token: str) -> Principal | None:
        """The system holding ``token``, or None."""
        if not token.startswith(TOKEN_PREFIX):
            return None
        query = select(self._clients).where(self._clients.c.token_sha256 == _digest(token))
        with store_errors("read an inbox client"):
            async with self._engine.connect() as conn:
                row = (await conn.execute(query)).mappings().first()
        if row is None or (row["expires_at"] and row["expires_at"] <= datetime.now(UTC)):
            return None
        return Principal(
            la=la,
            subject=row["client_id"],
            kind="system",
            name=row["client_id"],
            scopes=frozenset(decode_strings(row["scopes"])),
        )

    # -- the read audit ----------------------------------------------------------------
    async def record_reads(
        self, reader: Principal, action: ReadAction, items: Sequence[tuple[int, str]]
    ) -> None:
        """Audit that ``reader`` read these (item id, notification id) pairs just now."""
        if not items:
            return
        now = datetime.now(UTC)
        rows = [
            {
                "item_id": item_id,
                "notification_id": notification_id,
                "reader": reader.subject,
                "reader_kind": reader.kind,
                "action": action,
                "read_at": now,
            }
            for item_id, notification_id in items
        ]
        with store_errors("audit an inbox read"):
            async with write_transaction(self._engine) as conn:
                await conn.execute(self._reads.insert(), rows)

    async def reads(self, item_id: int | None = None) -> list[dict[str, Any]]:
        """The read audit (of one item if given), oldest first."""
        query = select(self._reads).order_by(self._reads.c.read_id)
        if item_id is not None:
            query = query.where(self._reads.c.item_id == item_id)
        with store_errors("list inbox reads"):
            async with self._engine.connect() as conn:
                return [dict(row) for row in (await conn.execute(query)).mappings()]

    # -- onward shares -----------------------------------------------------------------
    async def share_asked(
        self,
        *,
        request_id: str,
        item_id: int,
        notification_id: str,
        requested_by: str,
        to_id: str,
        to_category: str,
        to_name: str,
        purpose: str,
    ) -> int:
        """Record a share request before it is sent; returns its share id."""
        now = datetime.now(UTC)
        row = {
            "request_id": request_id,
            "item_id": item_id,
            "notification_id": notification_id,
            "requested_by": requested_by,
            "to_id": to_id,
            "to_category": to_category,
            "to_name": to_name,
            "purpose": purpose,
            "requested_at": now,
            "broken": encode_strings(()),
        }
        insert = insert_ignoring_duplicates(self._engine, self._shares, "request_id")
        with store_errors("record a share request"):
            async with write_transaction(self._engine) as conn:
                await conn.execute(insert, [row])
                query = select(self._shares.c.share_id).where(
                    self._shares.c.request_id == request_id
                )
                share_id = int((await conn.execute(query)).scalar_one())
                await self.families.register(
                    conn, kind=DisclosureKind.ONWARD_SHARE, ref=str(share_id), item_id=item_id,
                    notification_id=notification_id, to_name=to_name, to_category=to_category,
                    purpose=purpose, asked_by=requested_by, at=now,
                )  # fmt: skip
                return share_id

    async def share_decided(self, request_id: str, decision: dict[str, Any]) -> None:
        """Record the gateway's ShareDecision for a request."""
        change = (
            update(self._shares)
            .where(self._shares.c.request_id == request_id)
            .values(
                allowed=bool(decision["allowed"]),
                broken=encode_strings(tuple(decision["broken"])),
                reason=str(decision["reason"]),
                decided_at=decision["decided_at"],
            )
        )
        asked = select(self._shares.c.share_id).where(self._shares.c.request_id == request_id)
        with store_errors("record a share decision"):
            async with write_transaction(self._engine) as conn:
                await conn.execute(change)
                share_id = (await conn.execute(asked)).scalar_one_or_none()
                if share_id is not None:  # the family should hear of a share the exchange allowed
                    await self.families.made(
                        conn, DisclosureKind.ONWARD_SHARE, str(share_id),
                        bool(decision["allowed"]), decision["decided_at"],
                    )  # fmt: skip

    async def share(self, share_id: int) -> ShareRecord:
        """One share by id; NotFound if there is none."""
        query = select(self._shares).where(self._shares.c.share_id == share_id)
        row = await read_row(self._engine, query, "read an onward share")
        if row is None:
            raise NotFound(f"no share {share_id}")
        return _share(row)

    async def shares(self, notification_ids: Sequence[str]) -> list[ShareRecord]:
        """Every share asked of these notifications, oldest first."""
        if not notification_ids:
            return []
        c = self._shares.c
        query = (
            select(self._shares)
            .where(one_of(self._engine, c.notification_id, list(notification_ids)))
            .order_by(c.share_id)
        )
        return [_share(r) for r in await read_rows(self._engine, query, "list onward shares")]
