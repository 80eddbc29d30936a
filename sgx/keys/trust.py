"""The trust directory: every party and its public keys, and which key verifies what.

Layout of a trust directory::

    <trust_dir>/directory.json                     parties and public keys, and the
                                                   connectors (shared)
    <trust_dir>/private/                           0700
    <trust_dir>/private/pseudonym.key              32 random bytes, 0600 (the exchange's)
    <trust_dir>/private/<party_id>/<kid>.signing.pem   Ed25519, PKCS8, 0600
    <trust_dir>/private/<party_id>/<kid>.signing.pkcs11   or: the key is in a PKCS#11 token
    <trust_dir>/private/<party_id>/<kid>.box.pem       X25519, PKCS8, 0600

``<kid>`` in a file name is the key id with ``/`` written as ``_`` (see
:func:`key_file_stem`). A key id is ``<party_id>/<UTC minute>-<4 hex>``, e.g.
``school-hillside/2026-11-21T0602-ab12``.

A signing key in an HSM (:func:`rotate_key_into_token`) has, in place of its PEM file, a
reference naming the token and key (format in :mod:`sgx.keys.hsm`); the token only signs.

:class:`TrustDirectory` answers "which public key verifies this sender's key id at this
moment", "which box key do I seal to" and "may this connector carry this agency"
(:mod:`sgx.keys.connectors`); a party's own private keys are its
:class:`sgx.keys.identity.Identity`, read from the files laid out above.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey
from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from sgx.errors import ConfigError, UnknownKey, UnknownSender
from sgx.keys.connectors import Connector, carriers, connector_problem
from sgx.keys.files import validation_error
from sgx.keys.kinds import PartyKind as PartyKind  # re-exported: the kinds live there

if TYPE_CHECKING:
    pass

DIRECTORY_FILE = "directory.json"
SIGNING_PEM_SUFFIX = ".signing.pem"
SIGNING_REFERENCE_SUFFIX = ".signing.pkcs11"  # a reference to a key in a PKCS#11 token
PRIVATE_DIR = "private"
PSEUDONYM_KEY_FILE = "pseudonym.key"
KEY_VALIDITY = timedelta(days=365)
KEY_BACKDATE = timedelta(days=1)

_PARTY_ID = r"^[a-z0-9][a-z0-9-]{0,63}$"
GSS_CODE = r"^[ENSW][0-9]{8}$"  # ONS Government Statistical Service code, e.g. E09000007
_KID = r"^[a-z0-9][a-z0-9-]{0,63}/[A-Za-z0-9:.-]{1,64}$"
_MODEL = ConfigDict(extra="forbid", frozen=True, ser_json_bytes="base64", val_json_bytes="base64")


class PartyKey(BaseModel):
    """One key pair of a party: Ed25519 for signing, X25519 for receiving data keys."""

    model_config = _MODEL

    kid: Annotated[str, Field(pattern=_KID)]
    signing_public: bytes
    box_public: bytes
    not_before: AwareDatetime
    not_after: AwareDatetime
    revoked: bool = False

    @field_validator("signing_public", "box_public")
    @classmethod
    def _raw_32(cls, value: bytes) -> bytes:
        if len(value) != 32:
            raise ValueError(f"must be a raw 32-byte public key, got {len(value)} bytes")
        return value

    def valid_at(self, at: datetime) -> bool:
        """Not revoked and ``at`` within [not_before, not_after]."""
        return not self.revoked and self.not_before <= at <= self.not_after


class Party(BaseModel):
    """An agency or the gateway, with its keys (oldest first).

    A local authority has its ONS GSS code (``gss_code``, e.g. ``E09000007`` Camden) as
    well as its party id, and serves itself. Any other agency lists the LAs it serves
    (``serves``: a police force or an NHS trust usually serves several), or is marked as
    serving any LA (``serves_any``, like a national body). Whom a notification reaches
    follows the child, not this list; the list says which LAs an agency works with: which
    open cases a school is told of, and which LAs may be its default front doors.

    A directory written before partnerships (one ``local_authority`` per party) is read as
    ``serves = [that LA]``; its local authorities then need a ``gss_code``.
    """

    model_config = _MODEL

    id: Annotated[str, Field(pattern=_PARTY_ID)]
    kind: PartyKind
    name: Annotated[str, Field(min_length=1, max_length=200)]
    gss_code: Annotated[str, Field(pattern=GSS_CODE)] | None = None
    serves: list[str] = Field(default_factory=list)
    serves_any: bool = False
    keys: list[PartyKey]

    @model_validator(mode="before")
    @classmethod
    def _one_local_authority(cls, data: object) -> object:
        """Read the pre-partnership ``local_authority`` field as ``serves``."""
        if not isinstance(data, dict) or "local_authority" not in data:
            return data
        if "serves" in data:
            raise ValueError("give 'serves' (a list of LA ids), not also 'local_authority'")
        data = dict(data)
        la = data.pop("local_authority")
        data["serves"] = [la] if la is not None else []
        return data


_PARTY_FIELDS = set(Party.model_fields)  # shared by every party read (_compact)
_KEY_FIELDS = set(PartyKey.model_fields)


class _DirectoryFile(BaseModel):
    model_config = _MODEL

    version: Literal[1] = 1
    parties: list[Party]
    connectors: list[Connector] = Field(default_factory=list)


@dataclass(frozen=True, slots=True)
class PartySpec:
    """What :func:`init_trust` needs to know about a party before it has keys."""

    id: str
    kind: PartyKind
    name: str
    serves: tuple[str, ...] = ()
    gss_code: str | None = field(default=None, kw_only=True)
    serves_any: bool = field(default=False, kw_only=True)


Clock = Callable[[], datetime]
"""Where a component reads the current time; tests inject a fake one."""


def utc_now() -> datetime:
    """The current time, aware, in UTC: every component's default :data:`Clock`."""
    return datetime.now(UTC)


def key_file_stem(kid: str) -> str:
    """The file-name form of a key id (``/`` → ``_``; party ids never contain ``_``)."""
    return kid.replace("/", "_")


def newest(keys: Iterable[PartyKey], at: datetime) -> PartyKey | None:
    """The newest key valid at ``at`` (latest not_before; later in the list on a tie)."""
    best: PartyKey | None = None
    for key in keys:
        if key.valid_at(at) and (best is None or key.not_before >= best.not_before):
            best = key
    return best


# --------------------------------------------------------------------------- directory


class TrustDirectory:
    """The parties of the exchange and their public keys.

    A running service refreshes its directory in place (:meth:`refresh`, from
    :mod:`sgx.ops.trust_reload`) when the file changes, so every opener, sealer and router
    holding it sees a rotated or revoked key at once; :attr:`generation` counts refreshes,
    so a holder that caches what it derived from a key (a sealer's data key) knows to
    derive it again."""

    def __init__(self, parties: Sequence[Party], connectors: Sequence[Connector] = ()) -> None:
        self.generation = 0
        self._parties = {party.id: party for party in parties}
        self._connectors = {connector.id: connector for connector in connectors}
        self._carriers = carriers(connectors)
        self._by_gss = {p.gss_code: p for p in parties if p.gss_code is not None}
        self._all_las = tuple(sorted(p.id for p in parties if p.kind == "local_authority"))
        self._serving = _serving(self._parties.values(), self._all_las)
        # each key's public-key objects are made when used (a few µs; the envelope code
        # caches what it derives from them): made for every key at load, a national
        # directory's 50,000 of them held 18 MB in every process
        self._keys = {(party.id, key.kid): key for party in parties for key in party.keys}

    @classmethod
    def load(cls, trust_dir: Path) -> TrustDirectory:
        """Read ``trust_dir/directory.json``; ConfigError naming the file and field if wrong."""
        return cls(*read_whole(trust_dir / DIRECTORY_FILE))

    def refresh(self, newer: TrustDirectory) -> None:
        """Become ``newer`` (a fresh load of the same file), in place; bumps the generation."""
        self._parties, self._by_gss = newer._parties, newer._by_gss
        self._connectors, self._carriers = newer._connectors, newer._carriers
        self._all_las, self._keys = newer._all_las, newer._keys
        self._serving = newer._serving
        self.generation += 1

    def party(self, party_id: str) -> Party:
        party = self._parties.get(party_id)
        if party is None:
            raise UnknownSender(f"party {party_id!r} is not in the trust directory")
        return party

    def knows(self, party_id: str) -> bool:
        """Whether ``party_id`` is a party in the directory."""
        return party_id in self._parties

    def parties(self, kind: PartyKind | None = None) -> list[Party]:
        return [p for p in self._parties.values() if kind is None or p.kind == kind]

    def connectors(self) -> list[Connector]:
        """Every connector, as the directory lists them."""
        return list(self._connectors.values())

    def connector(self, connector_id: str) -> Connector | None:
        """The connector of this id, if the directory has one."""
        return self._connectors.get(connector_id)

    def carriers(self, agency_id: str) -> tuple[str, ...]:
        """The ids of the connectors that carry ``agency_id`` (none: it is its own)."""
        return self._carriers.get(agency_id, ())

    def may_carry(self, connector_id: str, agency_id: str) -> bool:
        """Whether ``connector_id`` may publish for ``agency_id``: a connector that lists
        it, or the agency itself (an agency may always be its own connector)."""
        if connector_id == agency_id:
            return agency_id in self._parties
        return connector_id in self._carriers.get(agency_id, ())  # not a scan of its list

    def outbound_connector(self, party_id: str) -> str:
        """Whose outbound topics carry what the gateway sends ``party_id`` (its receipts,
        requests, open-case lists and deliveries): the first connector the directory lists
        as carrying it, or the party itself when none does (its own connector, its own
        ``sgx.receipts.<party>`` as before connectors)."""
        carriers = self._carriers.get(party_id)
        return carriers[0] if carriers else party_id

    def inbound_connectors(self) -> list[str]:
        """Whose inbound topics the exchange has: every connector, and every party but the
        gateway that no connector carries (its own connector), sorted."""
        carried = self._carriers
        own = [p.id for p in self._parties.values() if p.kind != "gateway" and p.id not in carried]
        return sorted([*self._connectors, *own])

    def authority(self, gss_code: str) -> Party | None:
        """The local authority with this ONS GSS code, if it is in the directory."""
        return self._by_gss.get(gss_code)

    def local_authorities(self) -> tuple[str, ...]:
        """The ids of every LA in the directory, sorted (held: not a scan of every party)."""
        return self._all_las

    def served(self, party_id: str) -> tuple[str, ...]:
        """The ids of the LAs ``party_id`` serves (sorted): an LA itself; every LA in the
        directory for a party marked ``serves_any``; else the party's ``serves``."""
        party = self.party(party_id)
        if party.kind == "local_authority":
            return (party.id,)
        if party.serves_any:
            return self._all_las
        return tuple(sorted(party.serves))

    def serving(self, la_id: str, kind: PartyKind) -> list[Party]:
        """The parties of ``kind`` that serve the LA ``la_id`` (indexed: a national
        directory holds 25,000 parties, and every LA's schools are asked for often)."""
        return list(self._serving.get((la_id, kind), ()))

    def verify_key(self, party_id: str, kid: str, at: datetime) -> Ed25519PublicKey:
        """The public key that verifies ``kid`` of ``party_id`` at moment ``at``."""
        key = self._keys.get((party_id, kid))
        if key is None:
            self.party(party_id)
            raise UnknownKey(f"{party_id} has no key {kid!r}")
        if not key.valid_at(at):
            raise UnknownKey(_invalid_reason(key, at))
        return _signing_key(key.signing_public)

    def box_key(self, party_id: str, at: datetime) -> tuple[str, X25519PublicKey]:
        """The newest valid, non-revoked box key of ``party_id`` at ``at``: (kid, key)."""
        key = newest(self.party(party_id).keys, at)
        if key is None:
            raise UnknownKey(f"{party_id} has no key valid at {at.isoformat()}")
        return key.kid, _box_key(key.box_public)


@functools.lru_cache(maxsize=4096)
def _signing_key(raw: bytes) -> Ed25519PublicKey:
    return Ed25519PublicKey.from_public_bytes(raw)


@functools.lru_cache(maxsize=4096)
def _box_key(raw: bytes) -> X25519PublicKey:
    return X25519PublicKey.from_public_bytes(raw)


def _serving(
    parties: Iterable[Party], all_las: tuple[str, ...]
) -> dict[tuple[str, PartyKind], list[Party]]:
    """The parties serving each LA, by (LA, kind), in the directory's order."""
    index: dict[tuple[str, PartyKind], list[Party]] = {}
    for party in parties:
        if party.kind == "local_authority":
            served: Iterable[str] = (party.id,)
        else:
            served = all_las if party.serves_any else set(party.serves)
        for la in served:
            index.setdefault((la, party.kind), []).append(party)
    return index


def _invalid_reason(key: PartyKey, at: datetime) -> str:
    if key.revoked:
        return f"key {key.kid} is revoked"
    window = f"{key.not_before.isoformat()} .. {key.not_after.isoformat()}"
    return f"key {key.kid} is not valid at {at.isoformat()} (valid {window})"


def read_directory(path: Path) -> list[Party]:
    """The parties of the trust directory file at ``path`` (checked)."""
    return read_whole(path)[0]


def read_whole(path: Path) -> tuple[list[Party], list[Connector]]:
    """The parties and the connectors of the trust directory file at ``path`` (checked)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read trust directory {path}: {exc}") from exc
    try:
        parsed = _DirectoryFile.model_validate_json(text)
    except ValidationError as exc:
        raise validation_error(path, exc) from exc
    check_consistent(path, parsed.parties, parsed.connectors)
    return [_compact(party) for party in parsed.parties], parsed.connectors


def _compact(party: Party) -> Party:
    """``party`` as read, its models sharing one set of field names (and its LA ids one
    string each). Pydantic keeps a set of the fields given per instance: 728 bytes for a
    party's and for a key's, 36 MB in every process for a national directory of 25,000
    parties. Every field is given in a directory file as written, and the models are
    frozen, so one set for all says the same; replaced in place, so the load's peak is
    not two directories."""
    for key in party.keys:
        object.__setattr__(key, "__pydantic_fields_set__", _KEY_FIELDS)
    object.__setattr__(party, "__pydantic_fields_set__", _PARTY_FIELDS)
    party.serves[:] = [sys.intern(la) for la in party.serves]
    return party


def check_consistent(
    path: Path, parties: Sequence[Party], connectors: Sequence[Connector] = ()
) -> None:
    """ConfigError naming the file and the field where the parties or connectors do not fit
    together (duplicates, GSS codes, served LAs, key ids, what a connector carries)."""
    kinds = {p.id: p.kind for p in parties}
    seen: set[str] = set()
    codes: dict[str, str] = {}
    for i, party in enumerate(parties):
        where = f"parties[{i}]"
        if party.id in seen:
            raise ConfigError(f"{path}: field '{where}.id': duplicate party id {party.id!r}")
        seen.add(party.id)
        problem = _partnership_problem(party, kinds)
        if problem:
            raise ConfigError(f"{path}: field '{where}.{problem[0]}': {problem[1]}")
        if party.gss_code is not None:
            other = codes.setdefault(party.gss_code, party.id)
            if other != party.id:
                taken = f"GSS code {party.gss_code} is already {other}'s"
                raise ConfigError(f"{path}: field '{where}.gss_code': {taken}")
        _check_keys(path, where, party)
    names: dict[str, str] = {}
    for i, connector in enumerate(connectors):
        problem = connector_problem(connector, kinds, names)
        if problem:
            raise ConfigError(f"{path}: field 'connectors[{i}].{problem[0]}': {problem[1]}")
        names[connector.id] = f"connector {connector.id}"
        names.setdefault(connector.kafka_principal, f"connector {connector.id}'s principal")


def _partnership_problem(party: Party, kinds: Mapping[str, str]) -> tuple[str, str] | None:
    """(field, problem) if ``party``'s GSS code or served LAs do not fit its kind."""
    if party.kind == "gateway":
        if party.serves or party.serves_any:
            return "serves", "must be empty for the gateway (it serves the whole exchange)"
        return None if party.gss_code is None else ("gss_code", "must be null for the gateway")
    if party.kind == "local_authority":
        if party.gss_code is None:
            return "gss_code", (
                'a local authority needs its ONS GSS code (e.g. "E09000007" for Camden,'
                ' "E09000019" for Islington): add "gss_code" to this party'
            )
        if party.serves_any or any(la != party.id for la in party.serves):
            return "serves", f"a local authority serves only itself ({party.id!r})"
        return None
    if party.gss_code is not None:
        return "gss_code", f"only a local authority has a GSS code, not a {party.kind}"
    if party.serves_any and party.serves:
        return "serves", "give either 'serves' or 'serves_any', not both"
    for j, la in enumerate(party.serves):
        if kinds.get(la) != "local_authority":
            return f"serves[{j}]", f"{la!r} is not a local authority in this directory"
    return None


def _check_keys(path: Path, where: str, party: Party) -> None:
    kids: set[str] = set()
    for j, key in enumerate(party.keys):
        field = f"{where}.keys[{j}]"
        if not key.kid.startswith(party.id + "/"):
            raise ConfigError(f"{path}: field '{field}.kid': must start with {party.id + '/'!r}")
        if key.kid in kids:
            raise ConfigError(f"{path}: field '{field}.kid': duplicate key id {key.kid!r}")
        if key.not_after <= key.not_before:
            raise ConfigError(f"{path}: field '{field}.not_after': not after not_before")
        kids.add(key.kid)


def write_directory(
    trust_dir: Path, parties: Sequence[Party], connectors: Sequence[Connector] = ()
) -> None:
    """Write directory.json atomically (write a temporary file, then rename)."""
    contents = _DirectoryFile(parties=list(parties), connectors=list(connectors))
    # a directory without connectors is written as before them, so older readers read it
    text = contents.model_dump_json(indent=2, exclude=None if connectors else {"connectors"})
    path = trust_dir / DIRECTORY_FILE
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(text + "\n", encoding="utf-8")
    os.replace(tmp, path)
