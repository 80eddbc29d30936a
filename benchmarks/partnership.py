"""A partnership of many LAs on the pipeline's machinery: routing by the child, measured.

:func:`build_plan` makes, from a seed, a partnership of ``las`` local authorities (GSS
codes E09000001 onwards), schools, NHS trusts and police forces each serving a random
subset of several LAs (so each is named in the agreement's ``[default_las]``), and the
``allocations`` allocation entries the LAs publish, spread evenly over the LAs in
AllocationUpdates of at most ``batch`` entries. Some children of the sender's LAs are
also transferred in by a second of them, so they are open to two LAs.

The timed notifications (:func:`notices`) are attendance updates from one school serving
``receivers`` LAs, about children of those LAs only, so one consumer per receiving LA
fits the machine: of every 20, 17 are about a child allocated in one LA (worker and
supervisor), one about a child open to two LAs (both LAs' workers and supervisors), one
about a child open nowhere who lives in one of them (its MASH), and one about a child
open nowhere whose residence is not stated or is outside the partnership (the sender's
default LA's MASH). That is 2.0 queue rows per notification, as in the single-LA
pipeline, where every notification reaches a worker and a supervisor.

:class:`ManyLAs` is the :class:`benchmarks.pipeline.Flow` that carries it. The
receiving LAs' consumers run in one process (``--consumer-per-la``: one process each), so
the machine runs as many busy processes as in the single-LA pipeline.

    python -m benchmarks.partnership [--count 20000] [--repeat 4] [--control] [--json FILE]

runs only the single-LA pipeline and the partnership, ``--repeat`` times interleaved,
and prints each pair side by side and the median of the pairs' gateway CPU ratios;
``--control`` adds, in each pair, the partnership with every child allocated in one LA.
``python -m benchmarks.run`` runs one pair beside the raw chain and the rest.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import random
import statistics
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from benchmarks.common import Result, bench_broker, broker_arguments, publish
from benchmarks.pipeline import run_pipeline_phase
from safeguard import samples
from sgx.domain.identifiers import make_nhs_number
from sgx.keys.trust import PartyKind, PartySpec
from sgx.settings import ExchangeSettings, KafkaSettings

LAS = 20
ALLOCATIONS = 100_000
BATCH = 2_500  # allocation entries per AllocationUpdate
RECEIVERS = 3  # LAs the sender serves; the timed notifications' children are theirs
TRANSFERS = 100  # children each receiving LA transfers in from another receiving LA
SEED = 20_261_202
ROUTING_TARGET = 1.10  # gateway CPU per notification, partnership / single LA, at most
OUTSIDE_GSS = "E09000033"  # Westminster: a real LA, not one of this partnership
# Kind, how many, and how many LAs each serves (at least, at most). The sender is the
# first school; it serves exactly RECEIVERS LAs.
AGENCIES: tuple[tuple[PartyKind, str, int, int, int], ...] = (
    ("school", "school", 8, 2, 4),
    ("health", "nhs-trust", 3, 3, 6),
    ("police", "police", 2, 6, 10),
)
ALLOCATED_SEED = 100_000  # make_nhs_number seeds of allocated children start here
UNALLOCATED_SEED = 400_000  # ... and of children open nowhere
Entry = tuple[str | None, str | None, str, str, str]  # samples.allocation_update's


class Update(NamedTuple):
    la: str
    entries: tuple[Entry, ...]
    transfer_from: str | None  # GSS code of the LA each entry is transferred in from


class Notice(NamedTuple):
    """One timed notification: its child, and the queue rows it makes in each LA."""

    nhs_number: str
    residence: str | None
    rows: dict[str, int]
    kind: str  # "allocated", "two LAs", "residence", "default LA"


@dataclass(frozen=True)
class Plan:
    parties: tuple[PartySpec, ...]
    default_las: dict[str, tuple[str, ...]]  # every agency serving several LAs
    sender: str
    receivers: tuple[str, ...]
    updates: tuple[Update, ...]
    held: dict[str, tuple[str, ...]]  # receiving LA -> NHS numbers open there only
    transfers: tuple[tuple[str, str, str], ...]  # (NHS number, from LA, to LA): open to both

    def gss(self, la: str) -> str:
        code = next(p.gss_code for p in self.parties if p.id == la)
        assert code is not None
        return code


def la_id(n: int) -> str:
    return f"la-{n:02d}"


def gss_code(n: int) -> str:
    return f"E09{n:06d}"


def gateway_and_las(ids: Sequence[str]) -> list[PartySpec]:
    """The gateway, and an LA for each of ``ids``: the n-th (from 1) with GSS code
    :func:`gss_code` (n), called "Borough n" (n as wide as the largest, two digits at least)."""
    width = max(2, len(str(len(ids))))
    return [PartySpec("gateway", "gateway", "Safeguarding Exchange gateway")] + [
        PartySpec(la, "local_authority", f"Borough {n:0{width}d} Children's Services",
                  gss_code=gss_code(n))
        for n, la in enumerate(ids, start=1)
    ]  # fmt: skip


@functools.cache
def build_plan(
    las: int = LAS, allocations: int = ALLOCATIONS, batch: int = BATCH, seed: int = SEED
) -> Plan:
    """The partnership and its allocations (deterministic for the arguments)."""
    if las < RECEIVERS or allocations < las * (2 * TRANSFERS + 1):
        raise ValueError(
            f"need at least {RECEIVERS} LAs and {2 * TRANSFERS + 1} allocations per LA"
        )
    rng = random.Random(seed)
    ids = [la_id(n) for n in range(1, las + 1)]
    parties = gateway_and_las(ids)
    default_las: dict[str, tuple[str, ...]] = {}
    for kind, prefix, count, fewest, most in AGENCIES:
        for k in range(1, count + 1):
            agency = f"{prefix}-{k:02d}"
            size = RECEIVERS if agency == "school-01" else rng.randint(fewest, most)
            served = tuple(sorted(rng.sample(ids, size)))
            parties.append(PartySpec(agency, kind, f"{prefix.title()} {k:02d}", served))
            default_las[agency] = (rng.choice(served),)
    sender = "school-01"
    receivers = next(p.serves for p in parties if p.id == sender)
    updates, held, transfers = _allocations(ids, receivers, allocations, batch)
    return Plan(
        tuple(parties), default_las, sender, receivers, tuple(updates), held, tuple(transfers)
    )


def _allocations(
    ids: Sequence[str], receivers: Sequence[str], total: int, batch: int
) -> tuple[list[Update], dict[str, tuple[str, ...]], list[tuple[str, str, str]]]:
    """``total`` entries, as even as can be over the LAs; each receiving LA's last
    TRANSFERS entries are the first children of the previous receiving LA, transferred in."""
    gss = {la: gss_code(n) for n, la in enumerate(ids, start=1)}
    quota = {la: total // len(ids) + (1 if n < total % len(ids) else 0) for n, la in enumerate(ids)}
    own: dict[str, list[str]] = {}
    seed = ALLOCATED_SEED
    for la in ids:
        mine = quota[la] - (TRANSFERS if la in receivers else 0)
        own[la] = [make_nhs_number(seed + i) for i in range(mine)]
        seed += mine
    transfers = [
        (nhs, receivers[k - 1], la)
        for k, la in enumerate(receivers)
        for nhs in own[receivers[k - 1]][:TRANSFERS]
    ]
    updates = []
    for n, la in enumerate(ids):
        entries = [_entry(n, i, nhs) for i, nhs in enumerate(own[la])]
        updates += [Update(la, tuple(entries[s : s + batch]), None)
                    for s in range(0, len(entries), batch)]  # fmt: skip
        moved_in = [_entry(n, i, nhs) for i, (nhs, _, to) in enumerate(transfers) if to == la]
        for s in range(0, len(moved_in), batch):
            origin = next(frm for _, frm, to in transfers if to == la)
            updates.append(Update(la, tuple(moved_in[s : s + batch]), gss[origin]))
    moved = {nhs for nhs, _, _ in transfers}
    held = {la: tuple(nhs for nhs in own[la] if nhs not in moved) for la in receivers}
    return updates, held, transfers


def _entry(la: int, i: int, nhs: str) -> Entry:
    return (nhs, None, f"sw-{la:02d}-{i % 40}", f"team-{i % 8}", f"tm-{la:02d}-{i % 8}")


def notices(plan: Plan, count: int, *, one_la: bool = False) -> list[Notice]:
    """The ``count`` timed notifications (see the module for the mix); ``one_la``: every
    one about a child allocated in the sender's first LA, as in the single-LA pipeline."""
    receivers, out = plan.receivers[:1] if one_la else plan.receivers, []
    (default,) = plan.default_las[plan.sender]
    allocated = unallocated = 0
    for i in range(count):
        turn, cycle = (i % 20) + (3 if one_la else 0), i // 20
        if turn == 0:
            nhs, frm, to = plan.transfers[cycle % len(plan.transfers)]
            out.append(Notice(nhs, None, {frm: 2, to: 2}, "two LAs"))
        elif turn in (1, 2):
            nhs = make_nhs_number(UNALLOCATED_SEED + unallocated % 50_000)
            unallocated += 1
            if turn == 1:
                home = receivers[cycle % len(receivers)]
                out.append(Notice(nhs, plan.gss(home), {home: 1}, "residence"))
            else:
                residence = OUTSIDE_GSS if cycle % 2 else None
                out.append(Notice(nhs, residence, {default: 1}, "default LA"))
        else:
            la = receivers[allocated % len(receivers)]
            children = plan.held[la]
            nhs = children[(allocated // len(receivers)) % len(children)]
            allocated += 1
            out.append(Notice(nhs, None, {la: 2}, "allocated"))
    return out


def rows(plan: Plan, count: int, *, one_la: bool = False) -> dict[str, int]:
    """Queue rows each receiving LA holds once ``count`` timed notifications are routed."""
    total: Counter[str] = Counter({la: 0 for la in plan.receivers[: 1 if one_la else None]})
    for notice in notices(plan, count, one_la=one_la):
        total.update(notice.rows)
    return dict(total)


def agreement_text(default_las: Mapping[str, Sequence[str]]) -> str:
    """The repository's agreement up to its [default_las], then these default LAs."""
    text = ExchangeSettings().agreement_file.read_text(encoding="utf-8")
    text = text[: text.index("[default_las]")]  # the partnership-wide part
    lines = [f"{sender} = {json.dumps(list(las))}" for sender, las in sorted(default_las.items())]
    return text + "[default_las]\n" + "\n".join(lines) + "\n"


def attendance(plan: Plan, notice: Notice) -> dict[str, Any]:
    """The sender school's attendance update about the notice's child."""
    name = next(p.name for p in plan.parties if p.id == plan.sender)
    child = samples.child(notice.nhs_number, residence=notice.residence)
    return samples.from_agency(samples.attendance_update(child), plan.sender, name)


@dataclass(frozen=True)
class ManyLAs:
    """The pipeline's :class:`~benchmarks.pipeline.Flow` over :func:`build_plan`."""

    las: int = LAS
    allocations: int = ALLOCATIONS
    batch: int = BATCH
    seed: int = SEED
    one_la: bool = False  # the control: every child allocated in one LA (one consumer)

    @property
    def plan(self) -> Plan:
        return build_plan(self.las, self.allocations, self.batch, self.seed)

    @property
    def parties(self) -> tuple[PartySpec, ...]:
        return self.plan.parties

    @property
    def sender(self) -> str:
        return self.plan.sender

    @property
    def receivers(self) -> tuple[str, ...]:
        return self.plan.receivers[:1] if self.one_la else self.plan.receivers

    def agreement(self) -> str:
        return agreement_text(self.plan.default_las)

    def allocation_updates(self) -> list[tuple[str, dict[str, Any]]]:
        return [
            (u.la, samples.allocation_update(u.entries, la=u.la, transfer_from=u.transfer_from))
            for u in self.plan.updates
        ]

    def notifications(self, count: int) -> list[dict[str, Any]]:
        chosen = notices(self.plan, count, one_la=self.one_la)
        return [attendance(self.plan, notice) for notice in chosen]

    def rows(self, count: int) -> dict[str, int]:
        return rows(self.plan, count, one_la=self.one_la)


# --- the report, and a run of the two pipelines alone ------------------------------


def _consumers(cpu: dict[str, float]) -> float:
    return sum(us for stage, us in cpu.items() if stage.startswith("consumer"))


def partnership_report(single: Result, many: Result) -> str:
    """The single-LA pipeline beside the partnership, and the routing target's verdict."""
    one, more = single.extra["cpu_us_per_message"], many.extra["cpu_us_per_message"]
    lines: list[tuple[str, ...]] = [
        ("", "single LA", "partnership", "partnership / single"),
        ("notifications/s", f"{single.per_second:,.0f}", f"{many.per_second:,.0f}",
         f"{many.per_second / single.per_second:.2f}"),
    ]  # fmt: skip
    for label, a, b in [
        ("gateway CPU µs / notification", one["gateway"], more["gateway"]),
        ("producer CPU µs / notification", one["producer"], more["producer"]),
        ("consumers' CPU µs / notification", _consumers(one), _consumers(more)),
        ("broker CPU µs / notification", one.get("broker"), more.get("broker")),
        ("total CPU µs / notification", one["total"], more["total"]),
        ("gateway's collector µs / notification", single.extra.get("gateway_gc_us_per_message"),
         many.extra.get("gateway_gc_us_per_message")),
        ("idle gateway CPU ms / s (no traffic)", single.extra.get("gateway_idle_cpu_ms_per_s"),
         many.extra.get("gateway_idle_cpu_ms_per_s")),
    ]:  # fmt: skip
        shown = [f"{x:,.1f}" if x is not None else "-" for x in (a, b)]
        ratio = f"{b / a:.2f}" if a and b else "-"
        lines.append((label, *shown, ratio))
    widths = [max(len(row[i]) for row in lines) for i in range(4)]
    table = "\n".join(
        "  ".join(cell.ljust(w) if i == 0 else cell.rjust(w)
                  for i, (cell, w) in enumerate(zip(row, widths, strict=True)))
        for row in lines
    )  # fmt: skip
    return table + "\n" + routing_line(one["gateway"], more["gateway"])


def routing_line(single_us: float, many_us: float) -> str:
    """Whether routing by the child stays within the target for the gateway's CPU."""
    ratio = many_us / single_us
    verdict = "within" if ratio <= ROUTING_TARGET else "MISSES"
    return (
        f"gateway CPU per notification, partnership / single LA: {many_us:,.1f} / "
        f"{single_us:,.1f} µs = {ratio:.2f} ({ratio - 1:+.0%}; {verdict} the"
        f" +{ROUTING_TARGET - 1:.0%} target)"
    )


def gateway_ratios(singles: Sequence[Result], many: Sequence[Result]) -> list[float]:
    """Gateway CPU per notification, partnership / single LA, of each interleaved pair."""
    return [
        m.extra["cpu_us_per_message"]["gateway"] / s.extra["cpu_us_per_message"]["gateway"]
        for s, m in zip(singles, many, strict=True)
    ]


def summary_line(singles: Sequence[Result], many: Sequence[Result]) -> str:
    """The median of the pairs' ratios (one pair's ratio varies by ±10% on a small host)."""
    ratios = sorted(gateway_ratios(singles, many))
    median = statistics.median(ratios)
    verdict = "within" if median <= ROUTING_TARGET else "MISSES"
    return (
        f"gateway CPU per notification, partnership / single LA, median of {len(ratios)}"
        f" interleaved pairs: {median:.2f} (pairs {', '.join(f'{r:.2f}' for r in ratios)});"
        f" {verdict} the +{ROUTING_TARGET - 1:.0%} target"
    )


def control_line(single: Result, control: Result, many: Result) -> str:
    """The gateway's CPU when the partnership routes every child to one LA, between the
    single-LA pipeline's and the partnership's: what the partnership's size costs, apart
    from its mix of routes."""
    a, b, c = (r.extra["cpu_us_per_message"]["gateway"] for r in (single, control, many))
    return (
        f"gateway CPU per notification: single LA {a:,.1f} µs; partnership, every child in"
        f" one LA {b:,.1f} µs ({b / a:.2f}); partnership, every route {c:,.1f} µs ({c / a:.2f})"
    )


def arguments(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    """The partnership's options (benchmarks.run adds them to its own)."""
    parser = parser or argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--las", type=int, default=LAS, help="LAs in the partnership run")
    parser.add_argument(
        "--allocations", type=int, default=ALLOCATIONS, help="allocations the LAs publish"
    )
    parser.add_argument("--batch", type=int, default=BATCH, help="entries per AllocationUpdate")
    parser.add_argument(
        "--consumer-per-la",
        action="store_true",
        help="one consumer process per receiving LA (default: one process runs them all)",
    )
    return parser


def phase_name(args: argparse.Namespace, *, one_la: bool = False) -> str:
    return f"partnership of {args.las} LAs, throughput" + (", one LA" if one_la else "")


async def run_partnership_phase(
    settings: KafkaSettings, args: argparse.Namespace, *, one_la: bool = False
) -> Result:
    """The partnership's throughput phase, with the options of :func:`arguments`."""
    many = ManyLAs(las=args.las, allocations=args.allocations, batch=args.batch, one_la=one_la)
    name = phase_name(args, one_la=one_la)
    return await run_pipeline_phase(
        settings, name, args.count, None, args.limit, many, one_process=not args.consumer_per_la
    )


async def amain(args: argparse.Namespace) -> None:
    """``--repeat`` pairs (single LA, then partnership) on one broker, each pair's ratio."""
    results, lines = [], []
    async with bench_broker(
        args.bootstrap, fetch_max_wait_ms=args.fetch_wait_ms, broker=args.broker
    ) as settings:
        for _ in range(args.repeat):
            single = await run_pipeline_phase(
                settings, "pipeline, throughput", args.count, None, args.limit
            )
            many = await run_partnership_phase(settings, args)
            results += [single, many]
            lines.append(partnership_report(single, many))
            if args.control:
                control = await run_partnership_phase(settings, args, one_la=True)
                results.append(control)
                lines.append(control_line(single, control, many))
    publish(results, vars(args), args.json)
    for line in lines:
        print()
        print(line)
    if args.repeat > 1:
        singles = [r for r in results if r.name == "pipeline, throughput"]
        fulls = [r for r in results if r.name == phase_name(args)]
        print()
        print(summary_line(singles, fulls))


def main() -> None:
    parser = arguments()
    parser.add_argument("--count", type=int, default=20_000, help="timed notifications")
    parser.add_argument("--repeat", type=int, default=1, help="pairs of runs, interleaved")
    parser.add_argument(
        "--control",
        action="store_true",
        help="also run the partnership with every child allocated in one LA (one consumer)",
    )
    parser.add_argument("--fetch-wait-ms", type=int, default=10, help="fetch_max_wait_ms")
    parser.add_argument("--limit", type=float, default=180.0, help="seconds per phase at most")
    broker_arguments(parser)
    parser.add_argument("--json", default=None, help="write results as JSON here ('-': stdout)")
    asyncio.run(amain(parser.parse_args()))


if __name__ == "__main__":
    main()
