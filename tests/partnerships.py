"""Random partnerships for the routing property tests, and the model they are checked by.

A :class:`Spec` is a partnership (2-5 LAs; agencies of random kinds, each serving a random
subset of the LAs or any LA, with random default LAs) and a script of steps: LAs
allocating, transferring in and closing cases, an LA naming another LA's case, and agencies
sending notifications about random children with and without a stated residence (an LA
of the partnership, or a GSS code outside it). :class:`Model` keeps which LA holds which
child, as the allocation updates say, and :func:`check_routed` checks one routed
notification against it, whoever carried it (the judge alone, or the whole exchange).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from hypothesis import strategies as st

from safeguard import samples
from sgx.domain.identifiers import make_nhs_number, make_upn
from sgx.keys.trust import PartyKind, PartySpec
from sgx.wire import contract as c

OUTSIDE_GSS = "E10000999"  # well formed, but no LA of any generated partnership
KINDS: dict[str, tuple[PartyKind, str]] = {
    "school": ("school", c.ATTENDANCE_UPDATE),
    "health": ("health", c.HEALTH_UPDATE),
    "police": ("police", c.POLICE_NOTIFICATION),
}


def la_id(i: int) -> str:
    return f"la-{i}"


def gss(i: int) -> str:
    return f"E09{i:06d}"


def worker(la: int, w: int) -> str:
    return f"sw-{la}-{w}"


def supervisor(la: int) -> str:
    return f"tm-{la}"


@dataclass(frozen=True)
class Agency:
    id: str
    kind: str  # a key of KINDS
    serves: tuple[int, ...] | None  # None: serves any LA
    defaults: tuple[int, ...]  # the agreement's default LAs (empty: implicit, one LA)


@dataclass(frozen=True)
class Child:
    nhs_number: str | None
    upn: str | None


@dataclass(frozen=True)
class Allocate:
    la: int
    child: int
    worker: int
    transfer_from: int | None = None


@dataclass(frozen=True)
class Close:
    la: int
    child: int


@dataclass(frozen=True)
class Intrude:
    """LA ``la`` sends an update naming ``other``'s cases: closing ``child`` there."""

    la: int
    other: int
    child: int


@dataclass(frozen=True)
class Notify:
    agency: int
    child: int
    residence: int | str | None  # an LA index, OUTSIDE_GSS, or not stated


Step = Allocate | Close | Intrude | Notify


@dataclass(frozen=True)
class Spec:
    las: int
    agencies: tuple[Agency, ...]
    children: tuple[Child, ...]
    steps: tuple[Step, ...]

    def parties(self) -> list[PartySpec]:
        parties = [PartySpec("gateway", "gateway", "Exchange gateway")]
        for i in range(self.las):
            parties.append(
                PartySpec(la_id(i), "local_authority", f"Authority {i}", gss_code=gss(i))
            )
        for agency in self.agencies:
            kind, _ = KINDS[agency.kind]
            served = tuple(la_id(i) for i in agency.serves or ())
            parties.append(
                PartySpec(agency.id, kind, f"Agency {agency.id}", served,
                          serves_any=agency.serves is None)
            )  # fmt: skip
        return parties

    def served(self, agency: Agency) -> tuple[int, ...]:
        return tuple(range(self.las)) if agency.serves is None else agency.serves

    def default_las(self) -> dict[str, list[str]]:
        """The agreement's [default_las] table."""
        return {a.id: [la_id(i) for i in a.defaults] for a in self.agencies if a.defaults}

    def child_record(self, index: int) -> dict[str, Any]:
        child = self.children[index]
        return samples.child(child.nhs_number, child.upn, given=f"Child{index}", family="Test")

    def notification(self, step: Notify) -> tuple[str, str, dict[str, Any]]:
        """(sender, schema name, record) of a Notify step."""
        agency = self.agencies[step.agency]
        the_child = self.child_record(step.child)
        if isinstance(step.residence, int):
            the_child["residence_la"] = gss(step.residence)
        elif isinstance(step.residence, str):
            the_child["residence_la"] = step.residence
        _kind, name = KINDS[agency.kind]
        build = {
            c.ATTENDANCE_UPDATE: samples.attendance_update,
            c.HEALTH_UPDATE: samples.health_update,
            c.POLICE_NOTIFICATION: samples.police_notification,
        }[name]
        record = build(the_child)
        record["author"] = {**record["author"], "agency_id": agency.id, "agency_name": agency.id}
        return agency.id, name, record

    def update(self, step: Allocate | Close | Intrude) -> tuple[str, dict[str, Any]]:
        """(sender, AllocationUpdate) of an allocation step."""
        child = self.children[step.child]
        if isinstance(step, Allocate):
            entry = (child.nhs_number, child.upn, worker(step.la, step.worker), "Team",
                     supervisor(step.la))  # fmt: skip
            origin = None if step.transfer_from is None else gss(step.transfer_from)
            update = samples.allocation_update([entry], la=la_id(step.la), transfer_from=origin)
            return la_id(step.la), update
        ended = [(child.nhs_number, child.upn)]
        if isinstance(step, Close):
            return la_id(step.la), samples.allocation_update([], ended, la=la_id(step.la))
        return la_id(step.la), samples.allocation_update([], ended, la=la_id(step.other))


@dataclass
class Model:
    """Which LAs hold which child, and who holds it there, as the updates say."""

    spec: Spec
    open: dict[int, dict[int, int]] = field(default_factory=dict)  # child -> LA -> worker

    def apply(self, step: Step) -> None:
        if isinstance(step, Allocate):
            self.open.setdefault(step.child, {})[step.la] = step.worker
        elif isinstance(step, Close):
            self.open.get(step.child, {}).pop(step.la, None)
        # Intrude changes nothing: that is the point.

    def holders(self, child: int) -> dict[int, int]:
        return dict(self.open.get(child, {}))

    def open_cases(self, school: Agency) -> set[int]:
        """The children open in any LA the school serves."""
        served = set(self.spec.served(school))
        return {child for child, las in self.open.items() if served & set(las)}

    def expected_mash(self, step: Notify) -> set[str]:
        """The MASH queues a notification about a child open nowhere must reach."""
        if isinstance(step.residence, int):
            return {f"mash:{la_id(step.residence)}"}
        agency = self.spec.agencies[step.agency]
        served = self.spec.served(agency)
        defaults = agency.defaults or (served if len(served) == 1 else ())
        return {f"mash:{la_id(i)}" for i in defaults}

    def expected(self, step: Notify) -> set[tuple[str, str]]:
        """Every (LA, queue id) the notification must reach, and no other."""
        held = self.holders(step.child)
        if held:
            pairs = set()
            for la, w in held.items():
                pairs |= {(la_id(la), worker(la, w)), (la_id(la), supervisor(la))}
            return pairs
        mash = self.expected_mash(step)
        return {(queue.removeprefix("mash:"), queue) for queue in mash}


def check_routed(model: Model, step: Notify, received: Iterable[tuple[str, str, str]]) -> None:
    """``received``: (LA, queue id, route reason) of every queue the notification reached.

    It reached at least one queue; no worker or supervisor of an LA that does not hold the
    child; a MASH only for a child open nowhere, and only its residence LA's or the
    sender's default LA's; and exactly the queues the rule names.
    """
    got = list(received)
    assert got, f"{step}: reached no queue"
    held = {la_id(la) for la in model.holders(step.child)}
    for la, queue, reason in got:
        if queue.startswith("mash:"):
            assert not held, f"{step}: MASH {queue} got a child open to {sorted(held)}"
            assert queue in model.expected_mash(step), f"{step}: wrong MASH {queue}"
            expect = "RESIDENCE_MASH" if isinstance(step.residence, int) else "DEFAULT_LA_MASH"
            assert reason == expect, (step, queue, reason)
        else:
            assert la in held, f"{step}: {queue} of {la} got a child {la} does not hold"
            assert queue.startswith(("sw-" + la[3:] + "-", "tm-" + la[3:])), (la, queue)
            assert reason in ("ALLOCATED_WORKER", "SUPERVISOR"), reason
    assert {(la, queue) for la, queue, _ in got} == model.expected(step)


# --------------------------------------------------------------------------- strategies


@st.composite
def agencies(draw: st.DrawFn, las: int, count: int) -> tuple[Agency, ...]:
    found = []
    for i in range(count):
        kind = draw(st.sampled_from(sorted(KINDS)))
        any_la = draw(st.booleans()) if kind != "school" else False
        serves = None if any_la else tuple(
            sorted(draw(st.sets(st.integers(0, las - 1), min_size=1, max_size=las)))
        )  # fmt: skip
        served = tuple(range(las)) if serves is None else serves
        defaults: tuple[int, ...] = ()
        if len(served) > 1:
            defaults = tuple(sorted(draw(st.sets(st.sampled_from(served), min_size=1))))
        found.append(Agency(f"ag-{i}-{kind}", kind, serves, defaults))
    return tuple(found)


@st.composite
def specs(draw: st.DrawFn, max_steps: int = 14) -> Spec:
    las = draw(st.integers(2, 5))
    agency_list = draw(agencies(las, draw(st.integers(1, 4))))
    children = tuple(
        Child(
            make_nhs_number(900 + i) if ids != "upn" else None,
            make_upn(900 + i) if ids != "nhs" else None,
        )
        for i, ids in enumerate(
            draw(st.lists(st.sampled_from(["nhs", "upn", "both"]), min_size=1, max_size=5))
        )
    )
    n = len(children)
    la_index, child_index = st.integers(0, las - 1), st.integers(0, n - 1)
    residence = st.one_of(st.none(), la_index, st.just(OUTSIDE_GSS))
    step = st.one_of(
        st.builds(
            Allocate, la_index, child_index, st.integers(0, 2), st.one_of(st.none(), la_index)
        ),
        st.builds(Close, la_index, child_index),
        st.builds(Intrude, la_index, la_index, child_index).filter(lambda s: s.la != s.other),
        st.builds(Notify, st.integers(0, len(agency_list) - 1), child_index, residence),
        st.builds(Notify, st.integers(0, len(agency_list) - 1), child_index, residence),
    )
    steps = tuple(draw(st.lists(step, min_size=1, max_size=max_steps)))
    return Spec(las, agency_list, children, steps)
