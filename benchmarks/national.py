"""A national exchange on one machine: 152 LAs, 25,000 agencies behind about 200
connectors, 1,000,000 allocations, and a morning of notifications replayed at ten times
its peak rate through a real ``safeguard gateway run`` process.

    python -m benchmarks.national [--las 152] [--schools 24757] [--trusts 200] [--forces 43]
        [--connectors 200] [--own 100] [--allocations 1000000] [--morning 60000]
        [--peak 100] [--speed 10] [--json FILE]

In order, on one embedded broker (or ``--bootstrap``):

1. **Parties** (:func:`build`, seeded): ``--las`` LAs (GSS codes E09000001 on); police
   forces covering consecutive runs of LAs (the first covers 32, as the Metropolitan
   Police covers the London boroughs); NHS trusts serving 2-6 neighbouring LAs; schools
   serving one LA, or two (a boundary school). Every agency's default LA (the agreement's
   ``[default_las]``) is the first it serves. ``--own`` agencies (drawn at random: small
   ones with a system of their own) are their own connectors; the rest publish through
   ``--connectors`` connectors (:func:`connect`): schools' MIS suppliers, trusts' patient
   records and forces' records systems, each carrying a run of agencies of one kind, as
   many connectors to a kind as its share of the agencies. The gateway reads one inbound
   topic per connector and per agency of its own, not one per agency.
2. **Allocations**: ``--allocations`` entries spread evenly over the LAs, in
   AllocationUpdates of at most 2,500, published by each LA to its allocation topic
   before the gateway starts. Half the children are known by NHS number (the 999 test
   range holds only 500,000), half by UPN only; each LA also transfers in 20 children of
   the LA before it, so those are open to two LAs.
3. **Start-up**: ``safeguard gateway run`` as its own process; start-up is spawn → its
   ``/readyz`` answering 200, which it does only once its allocation directory has read
   every allocation topic to its end (and written its snapshot). Its resident memory
   (``VmRSS``) is read from ``/proc`` then and after the morning, with the peak
   (``VmHWM``).
4. **The raw Kafka chain** at the morning's rate, for the same seconds (the comparison:
   producer → relay → sink on the same broker, :mod:`benchmarks.raw_chain`).
5. **The morning** (:func:`morning`): ``--morning`` notifications in a morning's mix (80%
   school attendance updates, 12% A&E attendances, 8% police domestic-abuse
   notifications; 90% about a child allocated in an LA the sender serves, 2% about a
   child open to two LAs, 8% about a child open nowhere, with or without the residence
   LA stated), published in order at ``--peak`` x ``--speed`` per second (the peak: the
   busiest minutes of a national morning, registers closing at about 09:30; ten times it
   for the whole morning, not only its peak). Each sender publishes its own, all through
   one Kafka producer in one process. A sink reads every LA's delivery topic in one
   consumer group and opens and decodes each delivery with the LA's key as its consumer
   does (152 consumers with their queues do not fit this machine beside the rest; the
   queue insert is measured by :mod:`benchmarks.pipeline`). End-to-end latency per
   (notification, LA) is the sink's receipt - the notification's ``authored_at`` (set at
   publish). Lag at second t is what was published by t minus what had reached every
   LA it goes to by t; it must not grow through the morning.
6. **Restart**: SIGTERM, then the gateway starts again, from its snapshot this time.

Every figure is printed and, with ``--json``, written with the run's settings.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

import httpx
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from benchmarks.common import (
    PROFILE_ENV,
    Report,
    Result,
    Stages,
    bench_broker,
    broker_arguments,
    paced,
    percentile,
    process_cpu_s,
    publish,
)
from benchmarks.partnership import Entry, agreement_text, gateway_and_las, gss_code
from benchmarks.pipeline import (
    AGREEMENT_FILE,
    APPLIED,
    GATEWAY_NOTIFICATIONS,
    phase_runtime,
    prepare_home,
    publish_allocations,
)
from benchmarks.raw_chain import phases, run_phase
from producers.publisher import Publisher
from safeguard import samples
from sgx.domain.identifiers import make_nhs_number, make_upn
from sgx.kafka.embedded import free_port
from sgx.kafka.quarantine import sources
from sgx.kafka.wiring import delivery_topic, start_consumer, start_producer
from sgx.keys.connectors import CARRIED_KINDS, Connector
from sgx.keys.trust import PartyKind, PartySpec
from sgx.ops.metrics import ProducerMetrics
from sgx.settings import KafkaSettings
from sgx.wire import contract as c
from sgx.wire.envelope import Opener, Purpose

LAS = 152
SCHOOLS, TRUSTS, FORCES = 24_757, 200, 43  # 25,000 agencies
CONNECTORS, OWN = 200, 100  # connectors, and agencies that are their own
ALLOCATIONS = 1_000_000
BATCH = 2_500  # allocation entries per AllocationUpdate
TRANSFERS = 20  # children each LA transfers in from the LA before it
MORNING = 60_000
PEAK = 100.0  # notifications/s at the busiest minutes of a national morning
SPEED = 10.0
SEED = 20_261_203
FIRST_FORCE_LAS = 32  # the Metropolitan Police: the London boroughs
NHS_CHILDREN = 500_000  # make_nhs_number's distinct test numbers
UNALLOCATED_UPN = 2_000_000  # make_upn seeds of children open nowhere start here
RSS_TARGET_MB = 300.0
P99_TARGET_MS = 250.0
IDLE_CPU_TARGET_MS = 50.0  # an idle gateway's CPU, ms per second
READY_LIMIT_S = 900.0
SCRAPE_EVERY_S = 3.0
SINK_GROUP = "sgx-bench-national-sink"
MIX: tuple[tuple[str, float], ...] = (("school", 0.80), ("health", 0.12), ("police", 0.08))


def la_id(n: int) -> str:
    return f"la-{n:03d}"


@dataclass(frozen=True)
class National:
    """The parties and how the allocations are spread; children are worked out, not held
    (a million tuples would make the benchmark's own processes the largest thing here)."""

    las: tuple[str, ...]
    parties: tuple[PartySpec, ...]
    serves: dict[str, tuple[str, ...]]  # agency -> the LAs it serves, its default first
    by_kind: dict[str, tuple[str, ...]]  # "school" / "health" / "police" -> agencies
    quota: tuple[int, ...]  # allocations of each LA (its own children and its transfers)
    offset: tuple[int, ...]  # index of each LA's first own child
    connectors: tuple[Connector, ...] = ()

    def own(self, k: int) -> int:
        """How many children LA ``k`` (0-based) holds of its own (not transferred in)."""
        return self.quota[k] - (TRANSFERS if len(self.las) > 1 else 0)

    def child(self, k: int, i: int) -> tuple[str | None, str | None]:
        """(NHS number, UPN) of LA ``k``'s ``i``-th own child: even indexes by NHS number,
        odd by UPN only."""
        g = self.offset[k] + i
        return (make_nhs_number(g // 2), None) if g % 2 == 0 else (None, make_upn(g // 2))

    def transferred(self, k: int) -> list[tuple[str | None, str | None]]:
        """The children LA ``k`` transfers in: the first NHS-numbered ones of LA ``k-1``."""
        if len(self.las) == 1:
            return []
        before = (k - 1) % len(self.las)
        return [self.child(before, 2 * j + self._even(before)) for j in range(TRANSFERS)]

    def _even(self, k: int) -> int:
        return self.offset[k] % 2  # first i whose global index is even

    def gss(self, k: int) -> str:
        return gss_code(k + 1)


def build(
    las: int = LAS,
    schools: int = SCHOOLS,
    trusts: int = TRUSTS,
    forces: int = FORCES,
    allocations: int = ALLOCATIONS,
    seed: int = SEED,
    connectors: int = 0,
    own: int = 0,
) -> National:
    """The national partnership (deterministic for the arguments)."""
    if allocations > 2 * NHS_CHILDREN or allocations < las * (4 * TRANSFERS):
        raise ValueError(f"allocations must be {las * 4 * TRANSFERS}..{2 * NHS_CHILDREN}")
    if forces > las:
        raise ValueError("more police forces than LAs")
    rng = random.Random(seed)
    ids = tuple(la_id(n) for n in range(1, las + 1))
    parties = gateway_and_las(ids)
    serves: dict[str, tuple[str, ...]] = {}

    def add(kind: PartyKind, agency: str, name: str, served: list[str]) -> None:
        parties.append(PartySpec(agency, kind, name, tuple(sorted(served))))
        serves[agency] = tuple(served)  # the first is its default LA

    for f, (start, size) in enumerate(_force_areas(las, forces, rng), start=1):
        add("police", f"police-{f:02d}", f"Police Force {f:02d}", list(ids[start : start + size]))
    for t in range(1, trusts + 1):
        start, size = rng.randrange(las), rng.randint(2, min(6, las))
        add("health", f"nhs-trust-{t:03d}", f"NHS Trust {t:03d}",
            [ids[(start + j) % las] for j in range(size)])  # fmt: skip
    for s in range(1, schools + 1):
        start, size = rng.randrange(las), (2 if rng.random() < 0.15 and las > 1 else 1)
        add("school", f"school-{s:04d}", f"School {s:04d}",
            [ids[(start + j) % las] for j in range(size)])  # fmt: skip
    quota = tuple(allocations // las + (1 if k < allocations % las else 0) for k in range(las))
    kept = [q - (TRANSFERS if las > 1 else 0) for q in quota]  # each LA's own children
    offset = tuple(sum(kept[:k]) for k in range(las))
    by_kind = {
        kind: tuple(p.id for p in parties if p.kind == kind)
        for kind in ("school", "health", "police")
    }
    carried = connect(by_kind, connectors, own, rng) if connectors else ()
    return National(ids, tuple(parties), serves, by_kind, quota, offset, carried)


def connect(
    by_kind: dict[str, tuple[str, ...]], connectors: int, own: int, rng: random.Random
) -> tuple[Connector, ...]:
    """``connectors`` connectors carrying every agency but ``own`` drawn at random (their
    own connectors): each kind gets connectors in proportion to its agencies (one at
    least), each carrying a consecutive run of them, as a supplier serves a region."""
    agencies = [a for kind in sorted(by_kind) for a in by_kind[kind]]
    if not 0 <= own <= len(agencies) or connectors > len(agencies) - own:
        raise ValueError(f"{connectors} connectors and {own} own cannot share {len(agencies)}")
    alone = set(rng.sample(agencies, own))
    kinds = {k: [a for a in by_kind[k] if a not in alone] for k in sorted(by_kind)}
    kinds = {k: v for k, v in kinds.items() if v and k in CARRIED_KINDS}
    total = sum(len(v) for v in kinds.values())
    shares = {k: max(1, round(connectors * len(v) / total)) for k, v in kinds.items()}
    biggest = max(shares, key=lambda k: len(kinds[k]))
    shares[biggest] += connectors - sum(shares.values())  # the rounding, to the biggest
    made: list[Connector] = []
    for kind, carried in kinds.items():
        n = shares[kind]
        for j in range(n):
            run = carried[j * len(carried) // n : (j + 1) * len(carried) // n]
            name = f"{kind} connector {j + 1:03d}"
            made.append(Connector(id=f"conn-{kind}-{j + 1:03d}", name=name, carries=run))
    return tuple(made)


def _force_areas(las: int, forces: int, rng: random.Random) -> list[tuple[int, int]]:
    """(first LA, how many) of each force: consecutive runs covering every LA once."""
    first = min(FIRST_FORCE_LAS, las - (forces - 1))
    rest, areas, start = las - first, [(0, first)], first
    for f in range(forces - 1):
        left = forces - 1 - f
        size = rest // left if left == 1 else max(1, round(rest / left + rng.uniform(-1, 1)))
        size = min(size, rest - (left - 1))
        areas.append((start, size))
        start, rest = start + size, rest - size
    return areas


def allocation_updates(national: National) -> Iterator[tuple[str, dict[str, Any]]]:
    """(LA, AllocationUpdate) of every allocation, made as they are published."""
    for k, la in enumerate(national.las):
        entries = [_entry(k, i, *national.child(k, i)) for i in range(national.own(k))]
        for s in range(0, len(entries), BATCH):
            yield la, samples.allocation_update(entries[s : s + BATCH], la=la)
        moved = [_entry(k, i, *child) for i, child in enumerate(national.transferred(k))]
        if moved:
            before = (k - 1) % len(national.las)
            yield la, samples.allocation_update(moved, la=la, transfer_from=national.gss(before))


def _entry(k: int, i: int, nhs: str | None, upn: str | None) -> Entry:
    return (nhs, upn, f"sw-{k:03d}-{i % 40}", f"team-{i % 8}", f"tm-{k:03d}-{i % 8}")


class Item(NamedTuple):
    """One notification of the morning: who sends it, about whom, and which LAs it reaches."""

    sender: str
    kind: str  # "school", "health", "police"
    nhs: str | None
    upn: str | None
    residence: str | None
    reaches: tuple[str, ...]
    route: str  # "allocated", "two LAs", "residence", "default LA"


def morning(national: National, count: int, seed: int = SEED) -> list[Item]:
    """The morning's ``count`` notifications, in the order they are published."""
    rng = random.Random(seed + 1)
    index = {la: k for k, la in enumerate(national.las)}
    kinds, weights = zip(*MIX, strict=True)
    items = []
    for n in range(count):
        kind = rng.choices(kinds, weights)[0]
        sender = rng.choice(national.by_kind[kind])
        served = national.serves[sender]
        la = rng.choice(served)
        k, roll = index[la], rng.random()
        if roll < 0.02 and len(national.las) > 1:  # open to two LAs: LA k and the one before
            nhs, upn = national.transferred(k)[n % TRANSFERS]
            before = national.las[(k - 1) % len(national.las)]
            items.append(Item(sender, kind, nhs, upn, None, (before, la), "two LAs"))
        elif roll < 0.10 and kind == "school":  # open nowhere: known to the school by UPN
            upn = make_upn(UNALLOCATED_UPN + n)
            if roll < 0.06:
                items.append(Item(sender, kind, None, upn, national.gss(k), (la,), "residence"))
            else:
                items.append(Item(sender, kind, None, upn, None, (served[0],), "default LA"))
        else:
            nhs, upn = _allocated(national, k, rng, by_nhs=kind != "school")
            items.append(Item(sender, kind, nhs, upn, None, (la,), "allocated"))
    return items


def _allocated(
    national: National, k: int, rng: random.Random, *, by_nhs: bool
) -> tuple[str | None, str | None]:
    """One of LA ``k``'s own children; a hospital or the police know children by NHS
    number only, so for them one of the NHS-numbered half."""
    i = rng.randrange(TRANSFERS * 2, national.own(k))  # not one the next LA transferred in
    if by_nhs and (national.offset[k] + i) % 2:
        i -= 1
    return national.child(k, i)


def record(item: Item, names: dict[str, str]) -> dict[str, Any]:
    """The notification ``item`` stands for, as its sender's system would write it."""
    child = samples.child(item.nhs, item.upn, residence=item.residence)
    return samples.from_agency(BUILDERS[item.kind](child), item.sender, names[item.sender])


BUILDERS = {
    "school": samples.attendance_update,
    "health": samples.health_update,
    "police": samples.police_notification,
}
NOTIFICATION_TYPES = {
    "school": c.ATTENDANCE_UPDATE,
    "health": c.HEALTH_UPDATE,
    "police": c.POLICE_NOTIFICATION,
}


# --- stages ---------------------------------------------------------------------------


async def producer_stage(
    report: Report, home: str, settings: KafkaSettings, args: dict[str, Any], go: Any
) -> None:
    """Every sender of the morning, each its own Publisher, over one Kafka producer."""
    national = _build(args)
    items = morning(national, args["morning"])
    names = {p.id: p.name for p in national.parties}
    records = [(item.sender, NOTIFICATION_TYPES[item.kind], record(item, names))
               for item in items]  # fmt: skip
    rt = phase_runtime(Path(home), settings)
    trust, contract, pseudonyms = rt.trust(), rt.contract(), rt.pseudonyms()
    producer = await start_producer(rt.kafka)
    try:
        metrics = ProducerMetrics(CollectorRegistry())
        senders = {
            sender: Publisher(
                identity=rt.identity(sender, trust), trust=trust, contract=contract,
                pseudonyms=pseudonyms, producer=producer, metrics=metrics,
            )
            for sender in {item.sender for item in items}
        }  # fmt: skip
        report("ready")
        await asyncio.to_thread(go.wait)
        cpu_start_s, first_ns, sent = time.process_time(), time.time_ns(), 0
        async for due in paced(args["rate"], len(records)):
            now, batch = datetime.now(UTC), records[sent : sent + due]
            by_sender: dict[str, list[tuple[str, dict[str, Any]]]] = {}
            for sender, name, body in batch:
                body["authored_at"] = now
                by_sender.setdefault(sender, []).append((name, body))
            await asyncio.gather(*(senders[s].publish_many(b) for s, b in by_sender.items()))
            sent += due
        report("done", first_ns=first_ns, acked_ns=time.time_ns(), cpu_start_s=cpu_start_s)
    finally:
        await producer.stop()


async def sink_stage(
    report: Report, home: str, settings: KafkaSettings, las: list[str], expected: int
) -> None:
    """Every LA's delivery topic, opened and decoded with the LA's key; "done" once each
    (notification, LA) pair expected has arrived, with latencies and the lag timeline."""
    rt = phase_runtime(Path(home), settings)
    trust, contract = rt.trust(), rt.contract()
    openers = {delivery_topic(la): Opener(rt.identity(la, trust), trust) for la in las}
    consumer = await start_consumer(rt.kafka, sorted(openers), group_id=SINK_GROUP)
    try:
        while not consumer.assignment():  # noqa: ASYNC110 - waits for the group join
            await asyncio.sleep(0.1)
        await asyncio.sleep(1.5)
        report("ready")
        arrived: dict[tuple[str, str], tuple[float, float]] = {}  # -> (authored, received)
        while len(arrived) < expected:
            fetched = await consumer.getmany(timeout_ms=200, max_records=1_000)
            received = time.time()
            for tp, batch in fetched.items():
                opener = openers[tp.topic]
                for r in batch:
                    for source in sources(r):
                        opened = opener.open(source.envelope(), purposes=(Purpose.DELIVERY,))
                        delivery = contract.decode_as(c.DELIVERY, opened.plaintext)
                        key = (str(delivery["notification_id"]), tp.topic)
                        authored = delivery["authored_at"].timestamp()
                        arrived.setdefault(key, (authored, received))
        report("done", last_ns=time.time_ns(), **_timings(list(arrived.values())))
    finally:
        await consumer.stop()


def _progress(stage: str, figures: dict[str, Any]) -> None:
    """What has been measured so far, on stderr (a run stopped early still tells)."""
    print(f"[{time.strftime('%H:%M:%S')}] {stage}: {figures}", file=sys.stderr, flush=True)


def _timings(pairs: list[tuple[float, float]]) -> dict[str, Any]:
    """Latency percentiles and the lag timeline, second by second, in notification-LA
    pairs: published (authored) by then minus arrived by then."""
    latencies = [(got - authored) * 1e3 for authored, got in pairs]
    authored = sorted(a for a, _ in pairs)
    got = sorted(g for _, g in pairs)
    start, end = authored[0], authored[-1]
    lag, i, j, t = [], 0, 0, start + 1.0
    while t <= end + 1.0:
        while i < len(authored) and authored[i] <= t:
            i += 1
        while j < len(got) and got[j] <= t:
            j += 1
        lag.append(i - j)
        t += 1.0
    return {
        "p50_ms": percentile(latencies, 50),
        "p99_ms": percentile(latencies, 99),
        "max_ms": max(latencies),
        "lag_by_second": lag,
        "first_authored": start,
        "last_received": got[-1],
    }


def _build(args: dict[str, Any]) -> National:
    return build(args["las"], args["schools"], args["trusts"], args["forces"],
                 args["allocations"], connectors=args["connectors"],
                 own=args["own"])  # fmt: skip


# --- the gateway as its own process ------------------------------------------------------


@dataclass
class GatewayProcess:
    process: asyncio.subprocess.Process
    port: int
    ready_s: float = 0.0

    def status(self) -> dict[str, float]:
        """VmRSS and VmHWM (peak) in MB, from /proc."""
        lines = Path(f"/proc/{self.process.pid}/status").read_text().splitlines()
        fields = {k: v for k, _, v in (line.partition(":") for line in lines)}
        return {key: int(fields[key].split()[0]) / 1024 for key in ("VmRSS", "VmHWM")}

    def cpu_s(self) -> float:
        return process_cpu_s(self.process.pid)

    async def idle_cpu_ms_per_s(self, seconds: float = 5.0) -> float:
        """CPU the gateway uses with no traffic (its fetch loop over every partition)."""
        before = self.cpu_s()
        await asyncio.sleep(seconds)
        return round((self.cpu_s() - before) / seconds * 1e3, 1)

    async def audited(self, updates: int) -> float:
        """Seconds from ready until the group has judged ``updates`` allocation updates."""
        started = time.perf_counter()
        async with asyncio.timeout(READY_LIMIT_S):
            while await self.metric(GATEWAY_NOTIFICATIONS, **APPLIED) < updates:  # noqa: ASYNC110
                # a scrape of a national gateway (a lag series per partition) costs it
                # about 0.25 s of CPU: polled more often, the poll would be the load
                await asyncio.sleep(SCRAPE_EVERY_S)
        return round(time.perf_counter() - started, 1)

    async def lists_sent(self) -> float:
        """Seconds from the audit's end until no LA's open-case lists wait any more."""
        started = time.perf_counter()
        async with asyncio.timeout(READY_LIMIT_S):
            while await self.metric("sgx_gateway_open_case_las_waiting") > 0:  # noqa: ASYNC110
                await asyncio.sleep(SCRAPE_EVERY_S)
        return round(time.perf_counter() - started, 1)

    async def metric(self, name: str, **labels: str) -> float:
        """The sum of the samples ``name`` (with ``labels``) the gateway exports now."""
        async with httpx.AsyncClient(timeout=60) as client:
            text = (await client.get(f"http://127.0.0.1:{self.port}/metrics")).text
        return sum(
            sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())
        )


# The gateway under cProfile timing its main thread's CPU (not the time it waits).
_PROFILED = """
import cProfile, runpy, sys, time
sys.argv[0] = "safeguard"
profiler = cProfile.Profile(time.thread_time)
profiler.enable()
try:
    runpy.run_module("safeguard.cli", run_name="__main__")
finally:
    profiler.disable()
    profiler.dump_stats("{out}")
"""


def _env(
    settings: KafkaSettings, home: Path, port: int, fetch_wait_ms: int | None = None
) -> dict[str, str]:
    wait = settings.fetch_max_wait_ms if fetch_wait_ms is None else fetch_wait_ms
    return {
        **os.environ,
        "SGX_KAFKA_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
        "SGX_KAFKA_FETCH_MAX_WAIT_MS": str(wait),
        "SGX_KAFKA_SESSION_TIMEOUT_MS": str(settings.session_timeout_ms),
        "SGX_KAFKA_HEARTBEAT_INTERVAL_MS": str(settings.heartbeat_interval_ms),
        # off on the embedded broker, which refuses idempotent producers
        "SGX_KAFKA_IDEMPOTENCE": str(settings.idempotence).lower(),
        "SGX_METRICS_PORT": str(port),
        "SGX_AGREEMENT_FILE": str(home / AGREEMENT_FILE),
    }


@contextlib.asynccontextmanager
async def gateway_process(
    settings: KafkaSettings, home: Path, fetch_wait_ms: int | None = None
) -> AsyncIterator[GatewayProcess]:
    """``safeguard gateway run``, yielded once its /readyz answers 200 (its consumers'
    ``fetch_max_wait_ms`` the run's unless ``fetch_wait_ms`` says otherwise)."""
    port, started = free_port(), time.perf_counter()
    profile_dir = os.environ.get(PROFILE_ENV)  # as for the stages: a cProfile of the gateway
    out = f"{profile_dir}/gateway-{port}.prof"
    command = ["-c", _PROFILED.format(out=out)] if profile_dir else ["-m", "safeguard.cli"]
    process = await asyncio.create_subprocess_exec(
        sys.executable, *command, "gateway", "run", "--home", str(home),
        env=_env(settings, home, port, fetch_wait_ms), stdout=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    running = GatewayProcess(process, port)
    try:
        async with asyncio.timeout(READY_LIMIT_S), httpx.AsyncClient(timeout=5) as client:
            while True:
                if process.returncode is not None:
                    raise RuntimeError(f"the gateway exited with status {process.returncode}")
                with contextlib.suppress(httpx.TransportError):
                    if (await client.get(f"http://127.0.0.1:{port}/readyz")).status_code == 200:
                        break
                await asyncio.sleep(0.1)
        running.ready_s = time.perf_counter() - started
        yield running
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), 60)
            except TimeoutError:
                process.kill()
                await process.wait()


# --- the run ------------------------------------------------------------------------------


async def prepare(home: Path, settings: KafkaSettings, national: National) -> dict[str, Any]:
    """Trust directory, agreement, topics, and every LA's allocations built and published."""
    started = time.perf_counter()
    defaults = {agency: las[:1] for agency, las in national.serves.items()}
    rt = await prepare_home(
        home, settings, national.parties, agreement_text(defaults), national.connectors
    )
    topics_s = time.perf_counter() - started
    published = time.perf_counter()
    updates = await publish_allocations(rt, allocation_updates(national))
    return {
        "trust_and_topics_s": round(topics_s, 1),
        "allocation_updates": updates,
        "allocations_publish_s": round(time.perf_counter() - published, 1),
    }


async def run(
    settings: KafkaSettings, args: argparse.Namespace
) -> tuple[list[Result], dict[str, Any]]:
    national = _build(vars(args))
    items = morning(national, args.morning)
    expected = sum(len(item.reaches) for item in items)
    carried = {a for connector in national.connectors for a in connector.carries}
    figures: dict[str, Any] = {
        "las": len(national.las),
        "agencies": len(national.serves),
        "connectors": len(national.connectors),
        "own_connectors": len(national.serves) - len(carried),
        "inbound_topics": len(national.connectors)
        + len(national.serves)
        - len(carried)
        + len(national.las),
        "allocations": sum(national.quota),
        "morning": len(items),
        "rate": args.rate,
        "notification_la_pairs": expected,
    }
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="sgx-bench-national-") as tmp:
        home = Path(tmp)
        # the raw chain first, on the same broker, with no gateway running beside it
        seconds = len(items) / args.rate
        raw_args = argparse.Namespace(**{**vars(args), "seconds": seconds, "count": 0})
        results.append(await run_phase(settings, phases(raw_args)[1]))  # its paced phase
        figures.update(await prepare(home, settings, national))
        _progress("prepared", figures)
        async with gateway_process(settings, home, args.gateway_fetch_wait_ms) as gateway:
            figures["gateway_start_s"] = round(gateway.ready_s, 1)
            figures["gateway_after_start_mb"] = gateway.status()
            figures["gateway_allocations"] = await gateway.metric("sgx_gateway_allocations")
            figures["gateway_group_partitions"] = await gateway.metric(
                "sgx_gateway_group_partitions"
            )
            # The allocation topics' owner then judges each update once (audit, receipt):
            # a first start's one-off, timed apart from the morning.
            figures["gateway_audited_updates_s"] = await gateway.audited(
                figures["allocation_updates"]
            )
            figures["open_case_lists_after_audit_s"] = await gateway.lists_sent()
            figures["open_case_lists"] = await gateway.metric("sgx_gateway_open_case_lists_total")
            figures["gateway_after_audit_mb"] = gateway.status()
            figures["gateway_idle_cpu_ms_per_s"] = await gateway.idle_cpu_ms_per_s(10.0)
            _progress("gateway started", figures)
            morning_result, cpu = await _morning(settings, home, national, args, expected, gateway)
            results.append(morning_result)
            figures["gateway_cpu_us_per_notification"] = round(cpu / len(items) * 1e6, 1)
            figures["gateway_after_morning_mb"] = gateway.status()
        async with gateway_process(settings, home, args.gateway_fetch_wait_ms) as again:
            figures["gateway_restart_s"] = round(again.ready_s, 1)
            figures["gateway_after_restart_mb"] = again.status()
    return results, figures


async def _morning(
    settings: KafkaSettings,
    home: Path,
    national: National,
    args: argparse.Namespace,
    expected: int,
    gateway: GatewayProcess,
) -> tuple[Result, float]:
    stage_args = {**vars(args)}
    async with Stages() as stages:
        go = stages.event()
        stages.spawn("sink", sink_stage, str(home), settings, list(national.las), expected)
        stages.spawn("producer", producer_stage, str(home), settings, stage_args, go)
        await stages.expect("ready", ["sink", "producer"], args.limit)
        cpu_start = gateway.cpu_s()
        go.set()
        done = await stages.expect("done", ["producer", "sink"], args.limit)
        cpu = gateway.cpu_s() - cpu_start
    sink, producer = done["sink"], done["producer"]
    seconds = sink["last_received"] - producer["first_ns"] / 1e9
    lag = sink["lag_by_second"]
    return (
        Result(
            name=f"national morning @ {args.rate:g}/s",
            messages=args.morning,
            seconds=seconds,
            per_second=args.morning / seconds,
            p50_ms=sink["p50_ms"],
            p99_ms=sink["p99_ms"],
            extra={
                "max_ms": round(sink["max_ms"], 1),
                "lag_by_second": lag,
                "lag": lag_verdict(lag, slack=args.rate / 10),
                "producer_cpu_us_per_notification": round(
                    (producer["cpu_s"] - producer["cpu_start_s"]) / args.morning * 1e6, 1
                ),
            },
        ),
        cpu,
    )


def lag_verdict(lag: list[int], slack: float = 50.0) -> dict[str, Any]:
    """The lag's mean over the second and the last quarter of the morning (the first
    holds every fetch loop's start): it grows if the last is more than a quarter above
    the second, plus ``slack`` pairs (a tenth of a second's traffic)."""
    quarter = max(1, len(lag) // 4)
    second = statistics.fmean(lag[quarter : 2 * quarter] or lag)
    last = statistics.fmean(lag[-quarter:])
    return {"second_quarter_mean": round(second, 1), "last_quarter_mean": round(last, 1),
            "at_end": lag[-1], "max": max(lag), "grows": last > 1.25 * second + slack}  # fmt: skip


def report(results: list[Result], figures: dict[str, Any]) -> str:
    raw, national = results
    assert national.p99_ms is not None
    assert national.p50_ms is not None
    assert raw.p99_ms is not None
    assert raw.p50_ms is not None
    lag = national.extra["lag"]
    start_mb, end_mb = figures["gateway_after_start_mb"], figures["gateway_after_morning_mb"]
    peak = max(end_mb["VmHWM"], figures["gateway_after_restart_mb"]["VmHWM"])
    idle = figures["gateway_idle_cpu_ms_per_s"]
    lines = [
        f"{figures['las']} LAs, {figures['agencies']:,} agencies, {figures['allocations']:,}"
        f" allocations in {figures['allocation_updates']} updates (built and published in"
        f" {figures['allocations_publish_s']} s)",
        f"{figures['connectors']} connectors and {figures['own_connectors']} agencies their"
        f" own: {figures['inbound_topics']} inbound topics (with the LAs'),"
        f" {figures['gateway_group_partitions']:.0f} partitions in the gateway group",
        f"first start: {figures['allocation_updates']} updates judged in"
        f" {figures['gateway_audited_updates_s']} s, {figures['open_case_lists']:,.0f} open-case"
        f" lists sent (the last {figures['open_case_lists_after_audit_s']} s after);"
        f" resident memory then {figures['gateway_after_audit_mb']['VmRSS']:.0f} MB, peak"
        f" {figures['gateway_after_audit_mb']['VmHWM']:.0f} MB",
        f"idle gateway CPU: {idle} ms/s"
        f" ({'within' if idle <= IDLE_CPU_TARGET_MS else 'OVER'} the"
        f" {IDLE_CPU_TARGET_MS:.0f} ms/s target)",
        f"gateway start-up (spawn to /readyz, directory read from the allocation topics):"
        f" {figures['gateway_start_s']} s; restart from its snapshot:"
        f" {figures['gateway_restart_s']} s",
        f"gateway resident memory: {start_mb['VmRSS']:.0f} MB after start-up,"
        f" {end_mb['VmRSS']:.0f} MB after the morning, peak {peak:.0f} MB"
        f" ({'within' if peak <= RSS_TARGET_MB else 'OVER'} the {RSS_TARGET_MB:.0f} MB target)",
        f"morning: {national.messages:,} notifications at {figures['rate']:g}/s:"
        f" {national.per_second:,.0f}/s through, p50 {national.p50_ms:.1f} ms,"
        f" p99 {national.p99_ms:.1f} ms"
        f" ({'within' if national.p99_ms <= P99_TARGET_MS else 'OVER'} the"
        f" {P99_TARGET_MS:.0f} ms target); raw Kafka chain at the same rate: p50"
        f" {raw.p50_ms:.1f} ms, p99 {raw.p99_ms:.1f} ms (p99 ratio"
        f" {national.p99_ms / raw.p99_ms:.1f})",
        f"lag (notification-LA pairs published, not yet arrived): second quarter mean"
        f" {lag['second_quarter_mean']}, last quarter mean {lag['last_quarter_mean']}, at the"
        f" end {lag['at_end']}, max {lag['max']} ({'GROWS' if lag['grows'] else 'steady'})",
        f"gateway CPU per notification in the morning:"
        f" {figures['gateway_cpu_us_per_notification']:,.1f} µs",
    ]
    return "\n".join(lines)


def arguments() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--las", type=int, default=LAS)
    parser.add_argument("--schools", type=int, default=SCHOOLS)
    parser.add_argument("--trusts", type=int, default=TRUSTS)
    parser.add_argument("--forces", type=int, default=FORCES)
    parser.add_argument(
        "--connectors", type=int, default=CONNECTORS, help="connectors (0: every agency its own)"
    )
    parser.add_argument("--own", type=int, default=OWN, help="agencies their own connectors")
    parser.add_argument("--allocations", type=int, default=ALLOCATIONS)
    parser.add_argument("--morning", type=int, default=MORNING, help="notifications replayed")
    parser.add_argument("--peak", type=float, default=PEAK, help="the morning's peak, per s")
    parser.add_argument("--speed", type=float, default=SPEED, help="replayed at peak x this")
    parser.add_argument("--partitions", type=int, default=3, help="raw chain partitions")
    parser.add_argument("--fetch-wait-ms", type=int, default=10, help="fetch_max_wait_ms")
    parser.add_argument(
        "--gateway-fetch-wait-ms",
        type=int,
        default=None,
        help="the gateway's fetch_max_wait_ms (default: --fetch-wait-ms); a real broker"
        " answers a waiting fetch once a record arrives, the embedded one holds it",
    )
    parser.add_argument("--limit", type=float, default=600.0, help="seconds per phase at most")
    broker_arguments(parser)
    parser.add_argument("--json", default=None, help="write results as JSON here ('-': stdout)")
    return parser


async def amain(args: argparse.Namespace) -> None:
    args.rate = args.peak * args.speed
    async with bench_broker(
        args.bootstrap, fetch_max_wait_ms=args.fetch_wait_ms, broker=args.broker
    ) as settings:
        results, figures = await run(settings, args)
    publish(results, {**vars(args), **figures}, args.json)
    print(report(results, figures))


def main() -> None:
    asyncio.run(amain(arguments().parse_args()))


if __name__ == "__main__":
    main()
