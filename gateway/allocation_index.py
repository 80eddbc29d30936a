"""The allocation directory in memory: who holds each child key, and each LA's cases.

**Memory.** Children are keyed by pseudonym (:mod:`gateway.allocation_cases`: of the NHS
number, and separately of the UPN), so memory holds no child identifier in the clear.
Each key (an ``int``: 48 bytes against 65 for ``bytes`` and 82 for the hex ``str``) maps
to a tuple of (LA, allocation) pairs, and equal allocations and pairs are shared between
the children of one worker. An LA's case of several keys (the NHS number and UPN it named
together) is a ring: each of its keys maps to the next in that LA's ring dict, so a case
of one key (most children of an LA that knows only one identifier) costs nothing more,
and one of two costs two dict entries: about 89 bytes a pseudonym at 1,000,000
allocations each by one identifier, 134 where every case has two keys, measured by
``benchmarks.directory_memory``.
"""

from __future__ import annotations

from gateway.allocation_cases import Allocation, Settled

_Held = tuple[tuple[str, Allocation], ...]


class AllocationIndex:
    """Every LA's allocations by child key, and how each LA's keys form cases."""

    def __init__(self) -> None:
        self._by_key: dict[int, _Held] = {}  # key -> ((LA, allocation), ...)
        self._shared: dict[tuple[str, Allocation], _Held] = {}  # one tuple per LA and worker
        self._rings: dict[str, dict[int, int]] = {}  # LA -> key -> the next key of its case
        self._entries = 0

    def __len__(self) -> int:
        """(LA, key) pairs held: a child open to two LAs by both identifiers counts four."""
        return self._entries

    def keys(self) -> int:
        """Distinct keys held, whichever LAs hold them."""
        return len(self._by_key)

    def holders(self, keys: tuple[int, ...]) -> dict[str, Allocation]:
        """Every LA holding any of ``keys``, with its allocation; for an LA holding several
        (in different cases: it never named them together), the first key's wins."""
        found: dict[str, Allocation] = {}
        for key in reversed(keys):
            found.update(self._by_key.get(key, ()))
        return found

    def case_of(self, la: str, key: int) -> tuple[int, ...] | None:
        """Every key of ``la``'s case holding ``key``, or None if ``la`` does not hold it."""
        for holder, _ in self._by_key.get(key, ()):
            if holder == la:
                break
        else:
            return None
        ring = self._rings.get(la)
        if ring is None or key not in ring:
            return (key,)
        case, after = [key], ring[key]
        while after != key:
            case.append(after)
            after = ring[after]
        return tuple(case)

    def apply(self, la: str, settled: Settled) -> None:
        """Make ``la``'s cases what ``settled`` says (a refused update changes nothing)."""
        if settled.refused is not None:
            return
        ring = self._rings.get(la)
        for key in settled.closed:
            self._drop(la, key)
            if ring:
                ring.pop(key, None)
        for keys, allocation in settled.cases:
            for key in keys:
                self._put(la, key, allocation)
            if len(keys) > 1:
                ring = self._rings.setdefault(la, {}) if ring is None else ring
                for key, after in zip(keys, keys[1:] + keys[:1], strict=True):
                    ring[key] = after
            elif ring:
                ring.pop(keys[0], None)
        if ring is not None and not ring:
            del self._rings[la]

    def load(self, la: str, key: int, allocation: Allocation, anchor: int | None) -> None:
        """One row of the snapshot: ``key`` held by ``la``, in the case named by the key
        ``anchor`` (None: a case of one key). Rows come in any order; the rings are whole
        once every row is read. Each key is one ``int`` object, wherever it is held."""
        if anchor is not None:
            ring = self._rings.setdefault(la, {})
            if anchor != key:  # link the key in after the anchor
                ring[key] = ring.get(anchor, anchor)
                ring[anchor] = key
            elif key in ring:  # the anchor's own row, after a key of its case
                key = _held_as(ring, key)
            else:  # the anchor's own row first: alone until its case's keys link in
                ring[key] = key
        self._put(la, key, allocation)

    def _put(self, la: str, key: int, allocation: Allocation) -> None:
        pair = (la, allocation)
        single = self._shared.get(pair)
        if single is None:
            single = self._shared[pair] = (pair,)
        held = self._by_key.get(key)
        if held is None:
            self._by_key[key] = single
            self._entries += 1
            return
        others = tuple(p for p in held if p[0] != la)
        self._entries += len(others) + 1 - len(held)
        self._by_key[key] = others + single if others else single

    def _drop(self, la: str, key: int) -> None:
        held = self._by_key.get(key)
        if held is None:
            return
        others = tuple(p for p in held if p[0] != la)
        self._entries -= len(held) - len(others)
        if others:
            self._by_key[key] = others
        else:
            del self._by_key[key]


def _held_as(ring: dict[int, int], key: int) -> int:
    """The ``int`` object ``ring`` holds for ``key`` (the value its predecessor points at)."""
    before = ring[key]
    while ring[before] != key:
        before = ring[before]
    return ring[before]
