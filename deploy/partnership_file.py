"""The partnership file (``deploy/parties.toml``): its parties and connectors, checked.

Each ``[[party]]`` has an ``id`` and a ``kind`` and, as its kind needs, ``gss_code``,
``serves`` or ``serves_any``; each ``[[connector]]`` an ``id``, the agencies it
``carries`` and optionally a ``name`` and a ``principal``. The rules are the trust
directory's (``sgx.keys.trust``, ``sgx.keys.connectors``) and this file's: an id names
SCRAM users and Kubernetes objects, so it is 1-50 of a-z 0-9 -. A file that breaks one
is refused with a ConfigError naming the file, the entry and the field.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ValidationError

from sgx.errors import ConfigError
from sgx.kafka.wiring import GATEWAY_GROUP
from sgx.keys.connectors import Connector, connector_problem
from sgx.keys.files import validation_error
from sgx.keys.kinds import AGENCY_KINDS, AgencyKind
from sgx.keys.trust import GSS_CODE

DEPLOY_DIR = Path(__file__).resolve().parent
PARTIES_FILE = DEPLOY_DIR / "parties.toml"
GATEWAY = GATEWAY_GROUP  # the gateway principal is named as its group

Kind = AgencyKind  # every agency kind of the trust directory (sgx.keys.kinds)

# A party id names topics, SCRAM users and Kubernetes objects: the narrowest of the three.
_PARTY_ID = re.compile(r"^[a-z0-9]([a-z0-9-]{0,48}[a-z0-9])?$")
_KINDS: tuple[Kind, ...] = AGENCY_KINDS
_GSS_CODE = re.compile(GSS_CODE)
_REQUIRED_KEYS = frozenset({"id", "kind"})
_OPTIONAL_KEYS = frozenset({"gss_code", "serves", "serves_any"})
_CONNECTOR_KEYS = frozenset({"id", "name", "principal", "carries"})


@dataclass(frozen=True, slots=True)
class Party:
    """A member of the partnership (never the gateway).

    A local authority has its ONS GSS code and serves itself; any other agency gives the
    ids of the LAs it serves, or ``serves_any`` (as ``sgx.keys.trust.Party``).
    """

    id: str
    kind: Kind
    gss_code: str | None = field(default=None, kw_only=True)
    serves: tuple[str, ...] = field(default=(), kw_only=True)
    serves_any: bool = field(default=False, kw_only=True)


def partnership_problem(party: Party, kinds: Mapping[str, str]) -> tuple[str, str] | None:
    """(field, problem) if ``party``'s GSS code or served LAs do not fit its kind; the rules
    of the trust directory (``sgx.keys.trust``), ``kinds`` being every party's kind by id."""
    if party.kind == "local_authority":
        if party.gss_code is None:
            return "gss_code", (
                'a local authority needs its ONS GSS code (e.g. "E09000007" for Camden,'
                ' "E09000019" for Islington): add gss_code to this party'
            )
        if not _GSS_CODE.fullmatch(party.gss_code):
            return "gss_code", (
                f"{party.gss_code!r} is not an ONS GSS code (a letter E, N, S or W and eight"
                ' digits, e.g. "E09000007")'
            )
        if party.serves_any or any(la != party.id for la in party.serves):
            return "serves", f"a local authority serves only itself ({party.id!r})"
        return None
    if party.gss_code is not None:
        return "gss_code", f"only a local authority has a GSS code, not a {party.kind}"
    if party.serves_any and party.serves:
        return "serves", "give either serves or serves_any, not both"
    for j, la in enumerate(party.serves):
        if kinds.get(la) != "local_authority":
            return f"serves[{j}]", f"{la!r} is not a local authority in this partnership"
    return None


def checked_parties(parties: Iterable[Party], source: Path | None = None) -> list[Party]:
    """``parties``, or ConfigError naming the party (and ``source``, the file) if wrong."""
    members = list(parties)
    kinds = {p.id: p.kind for p in members}
    seen: set[str] = set()
    codes: dict[str, str] = {}
    for i, party in enumerate(members):
        where = f"{source}: party[{i}] ({party.id!r})" if source else f"parties[{i}] ({party.id!r})"
        if not _PARTY_ID.fullmatch(party.id):
            raise ConfigError(f"{where}: id must be 1-50 of a-z 0-9 - (it names users and objects)")
        if party.kind not in _KINDS:
            raise ConfigError(f"{where}: kind {party.kind!r} is not one of {', '.join(_KINDS)}")
        if party.id in seen or party.id == GATEWAY or party.id.startswith("sgx-"):
            raise ConfigError(f"{where}: id is a duplicate or reserved (sgx-*)")
        seen.add(party.id)
        problem = partnership_problem(party, kinds)
        if problem:
            raise ConfigError(f"{where}: field '{problem[0]}': {problem[1]}")
        if party.gss_code is not None:
            other = codes.setdefault(party.gss_code, party.id)
            if other != party.id:
                taken = f"{party.gss_code} is already the GSS code of {other!r}"
                raise ConfigError(f"{where}: field 'gss_code': {taken}")
    return members


def checked_connectors(
    parties: Sequence[Party], connectors: Sequence[Connector], source: Path | None = None
) -> None:
    """ConfigError naming the connector and the field where one does not fit ``parties``
    (the trust directory's rules, ``sgx.keys.connectors``, and this file's id rule)."""
    kinds: dict[str, str] = {p.id: p.kind for p in parties}
    kinds[GATEWAY] = "gateway"
    names: dict[str, str] = {}
    for i, connector in enumerate(connectors):
        where = f"connector[{i}] ({connector.id!r})"
        where = f"{source}: {where}" if source else where
        for name in (connector.id, connector.kafka_principal):
            if not _PARTY_ID.fullmatch(name) or name.startswith("sgx-"):
                raise ConfigError(f"{where}: {name!r} must be 1-50 of a-z 0-9 - and not sgx-*")
        problem = connector_problem(connector, kinds, names)
        if problem:
            raise ConfigError(f"{where}: field '{problem[0]}': {problem[1]}")
        names[connector.id] = f"connector {connector.id}"
        names.setdefault(connector.kafka_principal, f"connector {connector.id}'s principal")


def load_parties(path: Path) -> list[Party]:
    """The ``[[party]]`` tables of a TOML parties file: ``id``, ``kind`` and, as the kind
    needs, ``gss_code``, ``serves`` or ``serves_any``; ConfigError naming the file, the
    party and the field if one is missing, malformed or does not fit the partnership."""
    return load_partnership(path)[0]


def load_partnership(path: Path) -> tuple[list[Party], list[Connector]]:
    """The parties of a TOML parties file (:func:`load_parties`) and its ``[[connector]]``
    tables: ``id``, ``carries`` (agency ids) and optionally ``name`` and ``principal``."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read parties file {path}: {exc}") from exc
    entries, tables = data.get("party", []), data.get("connector", [])
    if not isinstance(entries, list) or not isinstance(tables, list):
        raise ConfigError(f"{path}: party and connector must be arrays of tables ([[party]])")
    parties = checked_parties(
        [_party_entry(path, i, entry) for i, entry in enumerate(entries)], path
    )
    connectors = [_connector_entry(path, i, table) for i, table in enumerate(tables)]
    checked_connectors(parties, connectors, path)
    return parties, connectors


def _connector_entry(path: Path, i: int, entry: object) -> Connector:
    if not isinstance(entry, dict) or not {"id", "carries"} <= set(entry):
        raise ConfigError(f"{path}: connector[{i}] must have the keys id and carries")
    where = f"{path}: connector[{i}] ({entry['id']!r})"
    unknown = sorted(set(entry) - _CONNECTOR_KEYS)
    if unknown:
        allowed = ", ".join(sorted(_CONNECTOR_KEYS))
        raise ConfigError(f"{where}: field '{unknown[0]}' is not one of {allowed}")
    try:
        return Connector.model_validate({"name": entry["id"], **entry})
    except ValidationError as exc:
        raise validation_error(Path(where), exc) from exc


def _party_entry(path: Path, i: int, entry: object) -> Party:
    if not isinstance(entry, dict) or not set(entry) >= _REQUIRED_KEYS:
        raise ConfigError(f"{path}: party[{i}] must have the keys id and kind")
    where = f"{path}: party[{i}] ({entry['id']!r})"
    unknown = sorted(set(entry) - _REQUIRED_KEYS - _OPTIONAL_KEYS)
    if unknown:
        allowed = ", ".join(sorted(_REQUIRED_KEYS | _OPTIONAL_KEYS))
        raise ConfigError(f"{where}: field '{unknown[0]}' is not one of {allowed}")
    for key in ("id", "kind", "gss_code"):
        if key in entry and not isinstance(entry[key], str):
            raise ConfigError(f"{where}: field '{key}' must be a string")
    serves = entry.get("serves", [])
    if not isinstance(serves, list) or not all(isinstance(la, str) for la in serves):
        raise ConfigError(f"{where}: field 'serves' must be a list of LA ids")
    serves_any = entry.get("serves_any", False)
    if not isinstance(serves_any, bool):
        raise ConfigError(f"{where}: field 'serves_any' must be true or false")
    return Party(
        entry["id"],
        entry["kind"],
        gss_code=entry.get("gss_code"),
        serves=tuple(serves),
        serves_any=serves_any,
    )
