"""The partnership: each local authority's agreement, and each sender's default LAs.

One agreement file (``gateway/agreement.toml``) holds the partnership-wide agreement
(``[senders]``, ``[roles.*]``: :class:`~gateway.agreement.Agreement`) and, where an LA's
information-sharing agreement differs, that LA's own entries::

    [authorities.la-islington.senders]            # replaces these kinds' lists
    police = ["police_notification"]
    [authorities.la-islington.roles.supervisor]   # replaces these types' field lists
    health_update = ["assessment.professional_opinion"]
    [authorities.la-islington.referrals]          # replaces these referral times
    decide_within_working_days = 2

Whatever an LA does not say is the partnership's. The gateway minimises each delivery by
the receiving LA's agreement, so one notification can reach two LAs differently minimised.

``[default_las]`` names, for a sender that serves several LAs, the LA(s) whose front door
(MASH) receives a notification about a child who is open to no LA and whose residence the
sender does not know::

    [default_las]
    nhs-royal-free = ["la-camden"]

A sender serving one LA defaults to it. A sender serving several must be named (the
gateway refuses to start otherwise): such a notification is never dropped, and never sent
to an LA the gateway picked. A named LA must be one the sender serves.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.agreement import Agreement
from sgx.errors import ConfigError
from sgx.keys.trust import TrustDirectory
from sgx.wire.contract import Contract


@dataclass(frozen=True, slots=True)
class Partnership:
    """The agreements in force, by receiving LA, and the senders' default LAs."""

    default: Agreement
    by_la: Mapping[str, Agreement]
    default_las: Mapping[str, tuple[str, ...]]  # sender id -> its default LAs

    @classmethod
    def load(cls, path: Path, contract: Contract, trust: TrustDirectory) -> Partnership:
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"agreement {path}: {exc}") from exc
        return cls.from_mapping(data, contract, trust, source=str(path))

    @classmethod
    def from_mapping(
        cls, data: Mapping[str, Any], contract: Contract, trust: TrustDirectory, *, source: str
    ) -> Partnership:
        base = {k: v for k, v in data.items() if k not in ("authorities", "default_las")}
        authorities = _table(data.get("authorities", {}), f"{source}: authorities")
        by_la: dict[str, Agreement] = {}
        for la, own in authorities.items():
            where = f"{source}: authorities.{la}"
            _check_la(trust, la, where)
            merged = _merged(base, _table(own, where), where)
            by_la[la] = Agreement.from_mapping(merged, contract, source=where)
        return cls(
            default=Agreement.from_mapping(base, contract, source=source),
            by_la=by_la,
            default_las=_default_las(data.get("default_las", {}), trust, source),
        )

    def agreement(self, la: str) -> Agreement:
        """The agreement that governs what ``la`` receives."""
        return self.by_la.get(la, self.default)

    def defaults(self, sender: str) -> tuple[str, ...]:
        """The LAs whose MASH receives ``sender``'s notifications about a child open to no
        LA whose residence is unknown; empty for a sender serving no LA."""
        return self.default_las.get(sender, ())


def _table(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: must be a table")
    return value


def _check_la(trust: TrustDirectory, la: str, where: str) -> None:
    if la not in trust.local_authorities():
        raise ConfigError(f"{where}: {la!r} is not a local authority in the trust directory")


def _is_party(trust: TrustDirectory, party_id: str) -> bool:
    return trust.knows(party_id)


def _merged(base: Mapping[str, Any], own: Mapping[str, Any], where: str) -> dict[str, Any]:
    """The partnership's agreement with ``own``'s senders and field lists put over it."""
    unknown = set(own) - {"senders", "roles", "referrals", "information_requests"}
    if unknown:
        known = "senders, roles, referrals, information_requests"
        raise ConfigError(f"{where}: unknown key(s) {sorted(unknown)} (known: {known})")
    merged = dict(base)
    if "referrals" in own:
        merged["referrals"] = {
            **_table(base.get("referrals", {}), where),
            **_table(own["referrals"], where),
        }
    if "information_requests" in own:  # each key replaces the partnership's
        merged["information_requests"] = {
            **_table(base.get("information_requests", {}), where),
            **_table(own["information_requests"], where),
        }
    if "senders" in own:
        merged["senders"] = {**_table(base.get("senders"), where), **_table(own["senders"], where)}
    roles = {role: dict(types) for role, types in _table(base.get("roles"), where).items()}
    for role, types in _table(own.get("roles", {}), f"{where}.roles").items():
        roles.setdefault(role, {}).update(_table(types, f"{where}.roles.{role}"))
    merged["roles"] = roles
    return merged


def _default_las(section: Any, trust: TrustDirectory, source: str) -> dict[str, tuple[str, ...]]:
    named = _table(section, f"{source}: default_las")
    defaults: dict[str, tuple[str, ...]] = {}
    for sender, las in named.items():
        where = f"{source}: default_las.{sender}"
        if not _is_party(trust, sender):
            raise ConfigError(f"{where}: {sender!r} is not a party in the trust directory")
        if not isinstance(las, list) or not las or not all(isinstance(la, str) for la in las):
            raise ConfigError(f"{where}: must be a non-empty list of LA ids")
        served = trust.served(sender)
        for la in las:
            if la not in served:
                raise ConfigError(
                    f"{where}: {sender} does not serve {la!r} (it serves: "
                    f"{', '.join(served) or 'no LA'})"
                )
        defaults[sender] = tuple(sorted(set(las)))
    for party in trust.parties():
        if party.kind in ("gateway", "local_authority") or party.id in defaults:
            continue
        served = trust.served(party.id)
        if len(served) == 1:
            defaults[party.id] = served
        elif served:
            raise ConfigError(
                f"{source}: default_las: {party.id} serves {len(served)} LAs"
                f" ({', '.join(served)}); name the LA(s) whose MASH receives its notifications"
                f" about a child open to no LA whose residence it does not know"
                f' (e.g. {party.id} = ["{served[0]}"])'
            )
    return defaults
