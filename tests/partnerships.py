"""Random partnerships for the routing property tests, and the model they are checked by.

A :class:`Spec` is a partnership (2-5 LAs; agencies of random kinds, each serving a random
subset of the LAs or any LA, with random default LAs) and a script of steps: LAs
allocating, transferring in and closing cases, an LA naming another LA's case, and agencies
sending notifications about random children with and without a stated residence (an LA
of the partnership, or a GSS code outside it). Every step names its child by a random
non-empty subset of the child's identifiers (:class:`Naming`), now and then pairing its NHS
number with another child's UPN (a mistake, or a child known by two records).
:class:`Model` keeps each LA's cases as the allocation updates say, by the rule of
docs/design.md ("Cases": identifiers an LA names together are one child's), and
:func:`check_routed` checks one routed notification against it, whoever carried it (the
judge alone, or the whole exchange).
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
    # agencies that only refer (any agency may refer too: Notify.refer)
    "gp_practice": ("gp_practice", c.REFERRAL),
    "community_health": ("community_health", c.REFERRAL),
    "youth_justice": ("youth_justice", c.REFERRAL),
    "probation": ("probation", c.REFERRAL),
    "early_years": ("early_years", c.REFERRAL),
    "voluntary": ("voluntary", c.REFERRAL),
    "housing": ("housing", c.REFERRAL),
}

FEEDS = ("school", "health", "police")


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
class Naming:
    """Which of its child's identifiers a step names: the NHS number, the UPN, or both; the
    UPN may be another child's (``upn_of``), as a mistaken or merged record pairs them."""

    nhs: bool = True
    upn: bool = True
    upn_of: int | None = None


ALL = Naming()


@dataclass(frozen=True)
class Allocate:
    la: int
    child: int
    worker: int
    transfer_from: int | None = None
    names: Naming = ALL


@dataclass(frozen=True)
class Close:
    la: int
    child: int
    names: Naming = ALL


@dataclass(frozen=True)
class Intrude:
    """LA ``la`` sends an update naming ``other``'s cases: closing ``child`` there."""

    la: int
    other: int
    child: int
    names: Naming = ALL


@dataclass(frozen=True)
class Notify:
    agency: int
    child: int
    residence: int | str | None  # an LA index, OUTSIDE_GSS, or not stated
    names: Naming = ALL
    refer: bool = False  # a referral, whatever the agency's own type

    def is_referral(self, spec: Spec) -> bool:
        return self.refer or KINDS[spec.agencies[self.agency].kind][1] == c.REFERRAL


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

    def identifiers(self, step: Step) -> tuple[str | None, str | None]:
        """(NHS number, UPN) the step names (at least one)."""
        child, names = self.children[step.child], step.names
        upn_child = child if names.upn_of is None else self.children[names.upn_of]
        nhs = child.nhs_number if names.nhs else None
        upn = upn_child.upn if names.upn else None
        assert nhs or upn, f"{step} names no identifier"
        return nhs, upn

    def child_record(self, step: Notify) -> dict[str, Any]:
        nhs, upn = self.identifiers(step)
        return samples.child(nhs, upn, given=f"Child{step.child}", family="Test")

    def notification(self, step: Notify) -> tuple[str, str, dict[str, Any]]:
        """(sender, schema name, record) of a Notify step."""
        agency = self.agencies[step.agency]
        the_child = self.child_record(step)
        if isinstance(step.residence, int):
            the_child["residence_la"] = gss(step.residence)
        elif isinstance(step.residence, str):
            the_child["residence_la"] = step.residence
        name = c.REFERRAL if step.is_referral(self) else KINDS[agency.kind][1]
        build = {
            c.ATTENDANCE_UPDATE: samples.attendance_update,
            c.HEALTH_UPDATE: samples.health_update,
            c.POLICE_NOTIFICATION: samples.police_notification,
            c.REFERRAL: samples.referral,
        }[name]
        record = build(the_child)
        record["author"] = {**record["author"], "agency_id": agency.id, "agency_name": agency.id}
        return agency.id, name, record

    def update(self, step: Allocate | Close | Intrude) -> tuple[str, dict[str, Any]]:
        """(sender, AllocationUpdate) of an allocation step."""
        nhs, upn = self.identifiers(step)
        if isinstance(step, Allocate):
            entry = (nhs, upn, worker(step.la, step.worker), "Team", supervisor(step.la))
            origin = None if step.transfer_from is None else gss(step.transfer_from)
            update = samples.allocation_update([entry], la=la_id(step.la), transfer_from=origin)
            return la_id(step.la), update
        ended = [(nhs, upn)]
        if isinstance(step, Close):
            return la_id(step.la), samples.allocation_update([], ended, la=la_id(step.la))
        return la_id(step.la), samples.allocation_update([], ended, la=la_id(step.other))


def is_nhs_number(identifier: str) -> bool:
    return len(identifier) == 10 and identifier.isdigit()


@dataclass(frozen=True)
class Case:
    """One LA's case: the identifiers it named together (now or before), and its worker."""

    identifiers: frozenset[str]
    worker: int


@dataclass
class Model:
    """Each LA's cases, as its updates say, by the rule (docs/design.md, "Cases"): the
    identifiers one LA's allocation names together are one child's; an allocation or a
    closure naming any of them acts on the whole case; an allocation that would put two
    NHS numbers in one case is refused whole. Nothing links identifiers across LAs or
    from a notification."""

    spec: Spec
    cases: dict[int, list[Case]] = field(default_factory=dict)  # LA -> its cases

    def named(self, step: Step) -> frozenset[str]:
        return frozenset(i for i in self.spec.identifiers(step) if i)

    def apply(self, step: Step) -> bool:
        """Apply an allocation step; False if the LA's update is refused (changes nothing).
        Intrude changes nothing either, and is refused: that is the point."""
        if isinstance(step, Intrude):
            return False
        if isinstance(step, Notify):
            return True
        named, own = self.named(step), self.cases.get(step.la, [])
        touched = [case for case in own if case.identifiers & named]
        kept = [case for case in own if not case.identifiers & named]
        if isinstance(step, Close):
            self.cases[step.la] = kept
            return True
        joined = named.union(*(case.identifiers for case in touched))
        if sum(map(is_nhs_number, joined)) > 1:
            return False
        self.cases[step.la] = [*kept, Case(joined, step.worker)]
        return True

    def holders(self, step: Notify) -> dict[int, int]:
        """LA -> worker of every LA holding a case by an identifier the notification names:
        the case of its NHS number if the LA holds one, else that of its UPN."""
        nhs, upn = self.spec.identifiers(step)
        found = {}
        for la, own in self.cases.items():
            for identifier in (nhs, upn):
                case = next((c for c in own if identifier in c.identifiers), None)
                if identifier and case is not None:
                    found[la] = case.worker
                    break
        return found

    def open_identifiers(self, school: Agency) -> set[str]:
        """Every identifier open in any LA the school serves."""
        served = set(self.spec.served(school))
        return {
            identifier
            for la, own in self.cases.items()
            if la in served
            for case in own
            for identifier in case.identifiers
        }

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
        held = self.holders(step)
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
    held = {la_id(la) for la in model.holders(step)}
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
        # the feeds' kinds as often as every kind together (most of which only refer)
        kind = draw(st.one_of(st.sampled_from(FEEDS), st.sampled_from(sorted(KINDS))))
        any_la = draw(st.booleans()) if kind != "school" else False
        serves = None if any_la else tuple(
            sorted(draw(st.sets(st.integers(0, las - 1), min_size=1, max_size=las)))
        )  # fmt: skip
        served = tuple(range(las)) if serves is None else serves
        defaults: tuple[int, ...] = ()
        if len(served) > 1:
            defaults = tuple(sorted(draw(st.sets(st.sampled_from(served), min_size=1))))
        found.append(Agency(f"ag-{i}-{kind.replace('_', '-')}", kind, serves, defaults))
    return tuple(found)


@st.composite
def namings(
    draw: st.DrawFn, children: tuple[Child, ...], child: int, near: tuple[int, ...] = ()
) -> Naming:
    """A non-empty subset of the child's identifiers; now and then its NHS number paired
    with another child's UPN (one of ``near``, children the LA has allocated, if any)."""
    has_nhs, has_upn = children[child].nhs_number is not None, children[child].upn is not None
    others = [i for i, c in enumerate(children) if i != child and c.upn is not None]
    if has_nhs and others and draw(st.integers(0, 2)) == 0:
        nearer = [i for i in near if i in others]
        return Naming(upn_of=draw(st.sampled_from(nearer or others)))
    if has_nhs and has_upn:
        nhs, upn = draw(st.sampled_from([(True, True), (True, False), (False, True)]))
        return Naming(nhs, upn)
    return Naming(has_nhs, has_upn)


@st.composite
def steps(
    draw: st.DrawFn,
    las: int,
    agencies: int,
    children: tuple[Child, ...],
    residence: st.SearchStrategy[int | str | None],
    earlier: tuple[Step, ...],
) -> Step:
    """One step; most name a child (and a closure its LA) an earlier allocation named, so
    scripts re-allocate, transfer, close and notify the cases they opened."""
    any_la = st.integers(0, las - 1)
    la, child = draw(any_la), draw(st.integers(0, len(children) - 1))
    opened = [(s.la, s.child) for s in earlier if isinstance(s, Allocate)]
    whole = [(s.la, s.child) for s in earlier if isinstance(s, Allocate) and s.names == ALL]
    with_nhs = [i for i, c in enumerate(children) if c.nhs_number is not None]
    if whole and draw(st.integers(0, 7)) == 0:  # a mix-up: another's NHS number with b's UPN
        la, b = draw(st.sampled_from(whole))
        a = draw(st.sampled_from([i for i in with_nhs if i != b] or [b]))
        if a != b and children[b].upn is not None:
            return Allocate(la, a, draw(st.integers(0, 2)), None, Naming(upn_of=b))
    if opened and draw(st.integers(0, 3)) < 3:
        la, child = draw(st.sampled_from(opened))
    near = tuple(c for la_, c in opened if la_ == la)
    names = draw(namings(children, child, near))
    kind = draw(st.sampled_from(["allocate", "close", "intrude", "notify", "notify"]))
    if kind == "allocate":
        la = draw(st.sampled_from([la, la, draw(any_la)]))  # the same LA, or one taking it in
        origin = draw(st.one_of(st.none(), any_la))
        return Allocate(la, child, draw(st.integers(0, 2)), origin, names)
    if kind == "close":
        return Close(la, child, names)
    if kind == "intrude":
        sender = draw(any_la.filter(lambda sender: sender != la))
        return Intrude(sender, la, child, names)
    refer = draw(st.integers(0, 3)) == 0  # now and then a referral, from any kind of agency
    return Notify(draw(st.integers(0, agencies - 1)), child, draw(residence), names, refer)


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
            draw(st.lists(st.sampled_from(["both", "both", "nhs", "upn"]), min_size=2, max_size=5))
        )
    )
    residence = st.one_of(st.none(), st.integers(0, las - 1), st.just(OUTSIDE_GSS))
    script: tuple[Step, ...] = ()
    for _ in range(max_steps - draw(st.integers(0, max_steps - 1))):  # long scripts first
        script += (draw(steps(las, len(agency_list), children, residence, script)),)
    return Spec(las, agency_list, children, script)
