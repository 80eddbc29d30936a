"""What an LA's agreement says of MASH information requests (``[information_requests]``).

::

    [information_requests]
    asked = ["school", "health", "police"]      # the agency kinds a MASH may ask
    auto_answer = ["school"]                    # kinds whose feed may answer without a person
    [information_requests.hours]                # working hours to answer, by BRAG rating
    red = 4
    amber = 24
    green = 72
    [information_requests.match]                # what identifies the child to each kind
    school = ["upn", "given_name", "family_name", "date_of_birth"]

A rating with no hours cannot be asked with (the gateway refuses the request, saying so);
an agreement with no ``[information_requests]`` lets its LA ask no one. An asked kind must
have a ``match`` list: the gateway forwards only those identifiers of the child.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sgx.domain.network_checks import MATCH_FIELDS, MAX_HOURS, RATINGS
from sgx.errors import ConfigError
from sgx.keys.kinds import AGENCY_KINDS

_KEYS = ("asked", "auto_answer", "hours", "match")


@dataclass(frozen=True, slots=True)
class InformationTerms:
    """Who a MASH may ask, how soon each rating is answered, and what each kind is told."""

    hours: Mapping[str, int] = field(default_factory=dict)  # rating -> working hours
    asked: frozenset[str] = frozenset()  # agency kinds
    match: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # kind -> identifiers
    auto_answer: frozenset[str] = frozenset()

    @classmethod
    def parse(cls, section: Any, source: str) -> InformationTerms:
        where = f"{source}: information_requests"
        if not isinstance(section, dict):
            raise ConfigError(f"{where}: must be a table")
        unknown = sorted(set(section) - set(_KEYS))
        if unknown:
            raise ConfigError(f"{where}: unknown key(s) {unknown} (known: {', '.join(_KEYS)})")
        asked = _kinds(section.get("asked", []), f"{where}.asked")
        auto = _kinds(section.get("auto_answer", []), f"{where}.auto_answer")
        if not auto <= asked:
            raise ConfigError(f"{where}.auto_answer: {sorted(auto - asked)} may not be asked")
        hours = _hours(section.get("hours", {}), f"{where}.hours")
        match = _match(section.get("match", {}), f"{where}.match")
        missing = sorted(asked - set(match))
        if missing:
            raise ConfigError(f"{where}.match: no identifiers for {missing}, which may be asked")
        return cls(hours=hours, asked=asked, match=match, auto_answer=auto)


def _kinds(value: Any, where: str) -> frozenset[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{where}: must be a list of agency kinds")
    bad = [v for v in value if v not in AGENCY_KINDS or v == "local_authority"]
    if bad:
        raise ConfigError(f"{where}: {sorted(set(bad))} are not partner agency kinds")
    return frozenset(value)


def _hours(value: Any, where: str) -> dict[str, int]:
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: must be a table of ratings")
    hours: dict[str, int] = {}
    for rating, n in value.items():
        if rating.upper() not in RATINGS:
            raise ConfigError(f"{where}.{rating}: unknown rating (known: red, amber, green, blue)")
        if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_HOURS:
            raise ConfigError(f"{where}.{rating}: must be from 1 to {MAX_HOURS} working hours")
        hours[rating.upper()] = n
    return hours


def _match(value: Any, where: str) -> dict[str, tuple[str, ...]]:
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: must be a table of agency kinds")
    match: dict[str, tuple[str, ...]] = {}
    for kind, names in value.items():
        if kind not in AGENCY_KINDS:
            raise ConfigError(f"{where}.{kind}: unknown agency kind")
        if not isinstance(names, list) or not names:
            raise ConfigError(f"{where}.{kind}: must be a non-empty list of identifiers")
        bad = [n for n in names if n not in MATCH_FIELDS]
        if bad:
            raise ConfigError(
                f"{where}.{kind}: {bad} are not identifiers (known: {', '.join(MATCH_FIELDS)})"
            )
        match[kind] = tuple(names)
    return match
