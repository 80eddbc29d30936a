"""The information-sharing agreement: who may send what, and who may see which fields.

The agreement file (TOML, see ``gateway/agreement.toml``) is checked against the contract
when it is loaded, so a typo in a field path or a field that cannot be removed stops the
gateway at start-up instead of silently sharing too much.

Minimisation nulls every nullable field a role may not see. The author, the child's
identity and the sharing basis always travel; non-nullable fields are mandatory in the
contract and so always travel too.

An agency's answer to a MASH information request (``InformationAnswer``) is minimised by
the same lists, under ``information_answer`` in ``[roles.<role>]``. An agreement written
before answers existed says nothing of them, so that list is optional, and its default is
the safe one (:data:`ANSWER_DEFAULT`): the MASH that asked (``mash_duty``) sees the whole
answer, as the answer is to its own question and the agency already kept to what it asked;
any other role sees nothing optional (the outcome, who answered and when, and the
restrictions travel; the facts and the opinion do not), as for any allow-list.

``[referrals]`` says within how many working days the receiving LA acknowledges a referral
and decides its response (:class:`ReferralTimes`; Working Together's one working day each
when the agreement is silent).
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.information_terms import InformationTerms
from sgx.errors import ConfigError
from sgx.keys.kinds import AGENCY_KINDS
from sgx.wire.contract import FULL_NAMES, INFORMATION_ANSWER, SHORT_NAMES, Contract

ROLES = ("social_worker", "supervisor", "mash_duty", "onward", "key_adult")
ALWAYS_VISIBLE = ("notification_id", "author", "child", "sharing")
ANSWER = "information_answer"  # an answer's field lists, in [roles.<role>]
# What a role sees of an answer when the agreement has no list for it: the MASH that asked,
# everything; any other role, nothing optional (deny by default, as every list allows).
ANSWER_DEFAULT: Mapping[str, list[str]] = {"mash_duty": ["*"]}


def _short(type_name: str) -> str:
    return ANSWER if type_name == INFORMATION_ANSWER else SHORT_NAMES[type_name]


def _covered(path: str, entries: Iterable[str]) -> bool:
    return any(path == entry or path.startswith(entry + ".") for entry in entries)


def _full_name(short: str, where: str) -> str:
    full = FULL_NAMES.get(short)
    if full is None:
        known = ", ".join(sorted(SHORT_NAMES.values()))
        raise ConfigError(f"{where}: unknown notification type {short!r} (known: {known})")
    return full


def withheld_paths(
    contract: Contract, type_name: str, visible: list[str], where: str
) -> tuple[str, ...]:
    """The outermost nullable fields of ``type_name`` not covered by ``visible``."""
    paths = contract.field_paths(type_name)
    for entry in visible:
        if entry != "*" and entry not in paths:
            raise ConfigError(f"{where}: {entry!r} is not a field of {_short(type_name)}")
    if "*" in visible:
        return ()
    shown = [*visible, *ALWAYS_VISIBLE]
    withheld: list[str] = []
    for path in sorted(paths, key=lambda p: p.count(".")):
        if _covered(path, withheld) or _covered(path, shown):
            continue
        if any(entry.startswith(path + ".") for entry in shown):
            continue  # partly visible: decide on its children
        if contract.is_nullable(type_name, path):
            withheld.append(path)
    return tuple(sorted(withheld))


def _null_path(record: dict[str, Any], parts: list[str]) -> bool:
    """Null ``parts`` in ``record`` (copy-on-write along the path); True if a value was removed."""
    head, rest = parts[0], parts[1:]
    value = record.get(head)
    if value is None:
        return False
    if not rest:
        record[head] = None
        return True
    if not isinstance(value, dict):
        return False
    child = dict(value)
    removed = _null_path(child, rest)
    if removed:
        record[head] = child
    return removed


MAX_WORKING_DAYS = 20  # a longer time to answer a referral is a typo, not an agreement


@dataclass(frozen=True, slots=True)
class ReferralTimes:
    """Within how many working days an LA acknowledges a referral and decides on it."""

    acknowledge: int = 1
    decide: int = 1


@dataclass(frozen=True, slots=True)
class Agreement:
    """A loaded, contract-checked information-sharing agreement."""

    senders: Mapping[str, frozenset[str]]
    withheld: Mapping[tuple[str, str], tuple[str, ...]]
    source: str
    referral_times: ReferralTimes = ReferralTimes()
    information: InformationTerms = field(default_factory=InformationTerms)  # MASH requests

    @classmethod
    def load(cls, path: Path, contract: Contract) -> Agreement:
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"agreement {path}: {exc}") from exc
        return cls.from_mapping(data, contract, source=str(path))

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], contract: Contract, *, source: str) -> Agreement:
        if data.get("version") != 1:
            raise ConfigError(f"{source}: 'version' must be 1")
        return cls(
            senders=_senders(data.get("senders"), source),
            withheld=_roles(data.get("roles"), contract, source),
            source=source,
            referral_times=_referral_times(data.get("referrals", {}), source),
            information=InformationTerms.parse(data.get("information_requests", {}), source),
        )

    def may_send(self, agency_kind: str, type_name: str) -> bool:
        return type_name in self.senders.get(agency_kind, frozenset())

    def minimise(
        self, role: str, type_name: str, record: dict[str, Any]
    ) -> tuple[dict[str, Any], list[str]]:
        """A copy of ``record`` for ``role`` and the paths of the values removed from it."""
        paths = self.withheld.get((role, type_name))
        if paths is None:
            raise ConfigError(f"{self.source}: no field list for role {role!r} and {type_name}")
        if not paths:
            return record, []
        copy = dict(record)
        removed = [path for path in paths if _null_path(copy, path.split("."))]
        return copy, removed


def _senders(section: Any, source: str) -> dict[str, frozenset[str]]:
    if not isinstance(section, dict):
        raise ConfigError(f"{source}: missing [senders] table")
    senders: dict[str, frozenset[str]] = {}
    for kind, types in section.items():
        where = f"{source}: senders.{kind}"
        if kind not in AGENCY_KINDS:
            raise ConfigError(f"{where}: unknown agency kind (known: {', '.join(AGENCY_KINDS)})")
        if not isinstance(types, list):
            raise ConfigError(f"{where}: must be a list of notification types")
        senders[kind] = frozenset(_full_name(str(t), where) for t in types)
    return senders


def _referral_times(section: Any, source: str) -> ReferralTimes:
    where = f"{source}: referrals"
    if not isinstance(section, dict):
        raise ConfigError(f"{where}: must be a table")
    keys = {
        "acknowledge_within_working_days": "acknowledge",
        "decide_within_working_days": "decide",
    }
    unknown = sorted(set(section) - set(keys))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown} (known: {', '.join(keys)})")
    days = {}
    for key, name in keys.items():
        value = section.get(key, 1)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}.{key}: must be a whole number of working days")
        if not 1 <= value <= MAX_WORKING_DAYS:
            raise ConfigError(f"{where}.{key}: must be from 1 to {MAX_WORKING_DAYS} working days")
        days[name] = value
    times = ReferralTimes(**days)
    if times.decide < times.acknowledge:
        raise ConfigError(
            f"{where}.decide_within_working_days: is sooner than the acknowledgement; a "
            "decision acknowledges the referral too"
        )
    return times


def _roles(section: Any, contract: Contract, source: str) -> dict[tuple[str, str], tuple[str, ...]]:
    if not isinstance(section, dict):
        raise ConfigError(f"{source}: missing [roles] tables")
    withheld: dict[tuple[str, str], tuple[str, ...]] = {}
    for role in ROLES:
        types = section.get(role)
        if not isinstance(types, dict):
            raise ConfigError(f"{source}: missing [roles.{role}] table")
        known = [*SHORT_NAMES.values(), ANSWER]
        unknown = sorted(set(types) - set(known))
        if unknown:
            raise ConfigError(
                f"{source}: roles.{role}: unknown type(s) {unknown} (known: {', '.join(known)})"
            )
        for short in SHORT_NAMES.values():
            where = f"{source}: roles.{role}.{short}"
            visible = types.get(short)
            if not isinstance(visible, list):
                raise ConfigError(f"{where}: missing list of visible fields")
            full = _full_name(short, where)
            withheld[(role, full)] = withheld_paths(
                contract, full, [str(v) for v in visible], where
            )
        where = f"{source}: roles.{role}.{ANSWER}"
        visible = types.get(ANSWER, ANSWER_DEFAULT.get(role, []))
        if not isinstance(visible, list):
            raise ConfigError(f"{where}: must be a list of visible fields")
        withheld[(role, INFORMATION_ANSWER)] = withheld_paths(
            contract, INFORMATION_ANSWER, [str(v) for v in visible], where
        )
    return withheld
