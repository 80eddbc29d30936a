"""One child, however it is named: the rule for an LA's cases (docs/design.md, "Cases").

An allocation entry names a child by its NHS number, its UPN or both. The identifiers one
LA's allocation names together are one child's: they form that LA's **case** for the
child. Every later allocation or closure of that LA naming any identifier of the case acts
on the whole case, however few of its identifiers it names:

* an allocation (a new worker, a transfer-in) moves every identifier of the case to the
  allocation it names and adds any identifier it names that the case lacked; naming
  identifiers of two of the LA's cases joins them into one;
* a closure (``ended``) removes every identifier of every case it names an identifier of;
* an allocation that would put two different NHS numbers in one case is a contradiction:
  the whole update is refused and nothing in it changes.

Cases are the LA's own: nothing here links identifiers across LAs, or from what a
notification names. This module is the rule alone, over an LA's cases as a look-up
(:data:`CaseOf`), so the in-memory index (:mod:`gateway.allocation_index`) and the
database snapshot (:mod:`gateway.allocations`) settle an update the same way.

**Keys.** A child identifier is known here only by its pseudonym, as an ``int``: the
16-byte HMAC of a UPN, or that of an NHS number with :data:`NHS_BIT` set, so the rule can
tell an NHS number's key from a UPN's and the two kinds share one key space without
colliding (an ``int`` of 129 bits costs what one of 128 does).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sgx.keys.pseudonym import PSEUDONYM_LEN, Pseudonymiser

NHS_BIT = 1 << (8 * PSEUDONYM_LEN)  # set in the key of an NHS number's pseudonym
_LOW = NHS_BIT - 1

# the LA's case holding a key (every key of it), or None if the LA does not hold the key
CaseOf = Callable[[int], tuple[int, ...] | None]


@dataclass(frozen=True, slots=True)
class Allocation:
    worker_id: str
    worker_name: str
    team: str
    supervisor_id: str
    supervisor_name: str


def nhs_key(pseudonym: bytes) -> int:
    return int.from_bytes(pseudonym) | NHS_BIT


def upn_key(pseudonym: bytes) -> int:
    return int.from_bytes(pseudonym)


def memory_keys(nhs_pseudonym: bytes | None, upn_pseudonym: bytes | None) -> tuple[int, ...]:
    """The keys of a child named by these pseudonyms (either may be absent)."""
    keys = () if nhs_pseudonym is None else (nhs_key(nhs_pseudonym),)
    return keys if upn_pseudonym is None else (*keys, upn_key(upn_pseudonym))


def named_keys(
    pseudonyms: Pseudonymiser, nhs_number: str | None, upn: str | None
) -> tuple[int, ...]:
    """The keys of the identifiers an entry (an allocation, a closure) names."""
    return memory_keys(*pseudonyms.identifier_keys(nhs_number, upn))


def is_nhs(key: int) -> bool:
    return key >= NHS_BIT


def db_key(key: int) -> str:
    """The database's form of a key: "n" (NHS number) or "u" (UPN) and the hex pseudonym."""
    return ("n" if is_nhs(key) else "u") + (key & _LOW).to_bytes(PSEUDONYM_LEN).hex()


def from_db_key(key: str) -> int:
    value = int(key[1:], 16)
    return value | NHS_BIT if key[0] == "n" else value


def case_id(keys: Sequence[int]) -> str | None:
    """How the database names a case of several keys (None: a case of one key names no
    other): the least of its keys in the database's form, so an NHS number's if it has one."""
    return min(db_key(k) for k in keys) if len(keys) > 1 else None


@dataclass(frozen=True, slots=True)
class Settled:
    """What one update does to its LA's cases, worked out against them as they stood.

    ``cases``: every case the update leaves open with a new or changed allocation (all its
    keys and the allocation); ``closed``: keys the LA held and no longer does;
    ``held``: for each closure, whether it closed anything; ``refused``: why the whole
    update was refused (then nothing changes).
    """

    cases: tuple[tuple[tuple[int, ...], Allocation], ...] = ()
    closed: tuple[int, ...] = ()
    held: tuple[bool, ...] = ()
    refused: str | None = None


@dataclass(eq=False, slots=True)
class _Case:
    keys: tuple[int, ...]
    allocation: Allocation | None  # None: as it stood (not changed by this update)


def settle(
    allocations: Sequence[tuple[tuple[int, ...], Allocation]],
    ended: Sequence[tuple[int, ...]],
    case_of: CaseOf,
) -> Settled:
    """The rule applied to one update of an LA: its ``allocations`` in order (each entry's
    keys and allocation), then its closures (``ended``, each entry's keys), against the
    LA's cases as ``case_of`` finds them."""
    now: dict[int, _Case | None] = {}  # each key met: its case after the steps so far
    held_before: list[int] = []

    def current(key: int) -> _Case | None:
        if key in now:
            return now[key]
        found = case_of(key)
        if found is None:
            now[key] = None
            return None
        case = now[key] = _Case(found, None)
        for k in found:
            now[k] = case
        held_before.extend(found)
        return case

    for index, (keys, allocation) in enumerate(allocations, start=1):
        touched = [case for case in map(current, keys) if case is not None]
        if touched:
            members = set(keys).union(*(case.keys for case in touched))
            if sum(k >= NHS_BIT for k in members) > 1:
                return Settled(refused=_contradiction(index, len(allocations)))
            joined = _Case(tuple(sorted(members)), allocation)
        elif keys:  # one entry names at most one NHS number: nothing to contradict
            joined = _Case(keys, allocation)
        else:
            continue
        for k in joined.keys:
            now[k] = joined
    held = []
    for keys in ended:
        closing = {id(c): c for c in map(current, keys) if c is not None}
        held.append(bool(closing))
        for case in closing.values():
            for k in case.keys:
                now[k] = None
    changed = {id(c): c for c in now.values() if c is not None and c.allocation is not None}
    cases = tuple((c.keys, c.allocation) for c in changed.values() if c.allocation is not None)
    closed = tuple(sorted(k for k in set(held_before) if now[k] is None))
    return Settled(cases, closed, tuple(held))


def _contradiction(index: int, of: int) -> str:
    return (
        f"allocation {index} of {of} would put two NHS numbers in one case (the identifiers "
        "an LA names together, now or before, are one child's): the update is refused "
        "whole and nothing in it was applied"
    )
