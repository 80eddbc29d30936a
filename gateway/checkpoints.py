"""Signed checkpoints of the audit chains: a cut-off tail is detected, not only an edit.

A hash chain proves itself only up to its last record: whoever can delete the newest
records (and rewind the chain's head row) leaves a shorter chain that still verifies.
So, as a transparency log publishes signed tree heads, the gateway periodically signs
each chain's head with its own Ed25519 key (the gateway party's key in the trust
directory) and keeps the signed heads in ``audit_checkpoint``. :func:`verify_checkpoints`
checks every signature against the trust directory and that each chain still holds the
record each checkpoint names, with that hash: a chain cut below its newest checkpoint,
or rewritten under it, fails. Records after the newest checkpoint are protected only by
the next one, so the interval bounds what could be cut unseen.

The signed bytes are ``"SGX-AUDIT-CHECKPOINT1\\0"`` followed by the compact JSON array
``[chain, sequence, hash, signed_at]`` (``signed_at`` as ISO-8601 UTC with milliseconds
and a ``Z``). Checkpointing the same head twice is harmless (one row per chain and
sequence), so every gateway instance may checkpoint the chains it owns.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, fields
from datetime import datetime

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import BigInteger, Column, LargeBinary, MetaData, String, Table, select
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.audit_chain import iso_ms
from gateway.store import GatewayStore
from sgx.errors import AuditChainBroken, UnknownSender
from sgx.keys.identity import Identity
from sgx.keys.trust import TrustDirectory, utc_now
from sgx.store.db import (
    UtcDateTime,
    create_tables,
    insert_ignoring_duplicates,
    metadata_for,
    store_errors,
    write_transaction,
)

_DOMAIN = b"SGX-AUDIT-CHECKPOINT1\0"
_COMPACT = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


def _table(metadata: MetaData) -> Table:
    return Table(
        "audit_checkpoint",
        metadata,
        Column("chain", String(300), primary_key=True),
        Column("sequence", BigInteger, primary_key=True, autoincrement=False),
        Column("hash", String(64), nullable=False),
        Column("signed_at", UtcDateTime, nullable=False),
        Column("signer", String(200), nullable=False),
        Column("key_id", String(200), nullable=False),
        Column("signature", LargeBinary, nullable=False),
    )


@dataclass(frozen=True, slots=True)
class Checkpoint:
    chain: str
    sequence: int
    hash: str
    signed_at: datetime
    signer: str
    key_id: str
    signature: bytes

    def signed_bytes(self) -> bytes:
        return signed_bytes(self.chain, self.sequence, self.hash, self.signed_at)


def signed_bytes(chain: str, sequence: int, digest: str, signed_at: datetime) -> bytes:
    """What a checkpoint's signature covers (see the module docstring)."""
    return _DOMAIN + _COMPACT.encode([chain, sequence, digest, iso_ms(signed_at)]).encode()


class Checkpoints:
    """The signed chain heads, kept in the gateway's database."""

    def __init__(self, engine: AsyncEngine, *, schema: str | None = None) -> None:
        self._engine = engine
        self._metadata = metadata_for(engine, schema)
        self._table = _table(self._metadata)
        self._add = insert_ignoring_duplicates(engine, self._table, "chain", "sequence")

    async def open(self) -> Checkpoints:
        await create_tables(self._engine, self._metadata)
        return self

    async def latest(self, chains: Iterable[str]) -> dict[str, Checkpoint]:
        """The newest checkpoint of each of ``chains`` that has one: one primary-key look-up
        per chain, whatever the number of checkpoints signed before (one per chain every
        ``checkpoint_interval_s``: a year of them is a million rows a chain)."""
        t = self._table
        found: dict[str, Checkpoint] = {}
        with store_errors("read the newest audit checkpoints"):
            async with self._engine.connect() as conn:
                for chain in sorted(set(chains)):
                    query = (
                        select(t).where(t.c.chain == chain).order_by(t.c.sequence.desc()).limit(1)
                    )
                    row = (await conn.execute(query)).mappings().first()
                    if row is not None:
                        found[chain] = _checkpoint(row)
        return found

    async def all(self) -> list[Checkpoint]:
        t = self._table
        query = select(t).order_by(t.c.chain, t.c.sequence)
        with store_errors("read audit checkpoints"):
            async with self._engine.connect() as conn:
                rows = (await conn.execute(query)).mappings().all()
        return [_checkpoint(row) for row in rows]

    async def take(
        self, store: GatewayStore, identity: Identity, chains: Iterable[str] | None = None
    ) -> list[Checkpoint]:
        """Sign the head of every chain (of ``chains`` only, if given) that has grown since
        its newest checkpoint; returns the checkpoints made."""
        heads = await store.chain_heads()
        wanted = set(heads) if chains is None else set(chains) & set(heads)
        latest = await self.latest(wanted)
        made: list[Checkpoint] = []
        now = utc_now()
        kid = identity.signing_kid
        for chain in sorted(wanted):
            head = heads[chain]
            done = latest.get(chain)
            if head.sequence == 0 or (done is not None and done.sequence >= head.sequence):
                continue
            data = signed_bytes(chain, head.sequence, head.hash, now)
            made.append(
                Checkpoint(chain, head.sequence, head.hash, now, identity.party_id, kid,
                           identity.sign(data, kid=kid))
            )  # fmt: skip
        if made:
            rows = [_row(c) for c in made]
            with store_errors("write audit checkpoints"):
                async with write_transaction(self._engine) as conn:
                    await conn.execute(self._add, rows)
        return made


def _row(c: Checkpoint) -> dict[str, object]:
    return {f.name: getattr(c, f.name) for f in fields(Checkpoint)}


def _checkpoint(row: RowMapping) -> Checkpoint:
    return Checkpoint(**dict(row))


def check_signature(checkpoint: Checkpoint, trust: TrustDirectory) -> None:
    """AuditChainBroken unless ``checkpoint`` is signed by its signer's key in ``trust``."""
    try:
        party = trust.party(checkpoint.signer)
    except UnknownSender as exc:
        raise AuditChainBroken(
            checkpoint.sequence, f"checkpoint signer: {exc}", chain=checkpoint.chain
        ) from exc
    key = next((k for k in party.keys if k.kid == checkpoint.key_id), None)
    if key is None or party.kind != "gateway":
        raise AuditChainBroken(
            checkpoint.sequence,
            f"checkpoint signed with {checkpoint.signer}/{checkpoint.key_id}, not a gateway key",
            chain=checkpoint.chain,
        )
    try:
        Ed25519PublicKey.from_public_bytes(key.signing_public).verify(
            checkpoint.signature, checkpoint.signed_bytes()
        )
    except InvalidSignature as exc:
        raise AuditChainBroken(
            checkpoint.sequence, "checkpoint signature does not verify", chain=checkpoint.chain
        ) from exc


async def verify_checkpoints(
    store: GatewayStore, checkpoints: Checkpoints, trust: TrustDirectory
) -> dict[str, Checkpoint]:
    """Check every checkpoint's signature and that its chain still holds the record it
    names, with its hash; return the newest checkpoint of each chain. Raises
    AuditChainBroken naming the chain and record (a cut-off tail: "missing")."""
    newest: dict[str, Checkpoint] = {}
    for checkpoint in await checkpoints.all():
        check_signature(checkpoint, trust)
        record = await store.record_at(checkpoint.chain, checkpoint.sequence)
        if record is None:
            raise AuditChainBroken(
                checkpoint.sequence,
                f"record missing: the chain was cut below its checkpoint signed at "
                f"{iso_ms(checkpoint.signed_at)}",
                chain=checkpoint.chain,
            )
        if record.hash != checkpoint.hash:
            raise AuditChainBroken(
                checkpoint.sequence,
                "hash differs from the signed checkpoint (the chain was rewritten)",
                chain=checkpoint.chain,
            )
        newest[checkpoint.chain] = checkpoint
    return newest
