"""Reusable parts of the benchmarks: broker, child processes, pacing, payloads, results.

A benchmark phase runs its stages (producer, relay, sink, or the exchange's roles) as
separate OS processes started with ``spawn``. Each stage is an ``async def`` taking a
:class:`Report` callback first; it reports ``ready`` once it can take traffic and
``done`` (with its measurements) at the end. The parent waits for those events with
:class:`Stages`, bounded in time; a stage that fails or dies ends the phase.

Timing crosses processes through the payload: :func:`stamp` writes a sequence number
and the sender's ``time.time_ns()`` into the first 16 bytes of each value, and the
receiver subtracts it from its own clock (same machine, same clock).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import faulthandler
import json
import multiprocessing
import os
import platform
import queue
import signal
import struct
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, field
from multiprocessing.context import SpawnProcess
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Event as EventType
from pathlib import Path
from typing import Any, Protocol

from benchmarks.local_kafka import delete_every_topic, ensure_local_kafka
from benchmarks.where import task_stacks
from sgx.kafka.embedded import EmbeddedBroker
from sgx.settings import KafkaSettings

PROFILE_ENV = "SGX_BENCH_PROFILE"  # a directory: each stage writes <stage>-<pid>.prof there
PROFILE_CPU_ENV = "SGX_BENCH_PROFILE_CPU"  # "1": profile CPU time (time.thread_time)

STAMP = struct.Struct(">QQ")  # sequence number, sender time.time_ns()
PROCESS_EXIT_S = 10.0
REPORT_POLL_S = 0.2  # the parent looks at its deadline at least this often
WHERE_WAIT_S = 5.0  # how long a stage that hangs has to say where its tasks are
THREADS_DUMP_S = 1.0  # how long one that does not answer is given to print its threads


class Report(Protocol):
    """How a stage tells the parent about itself: ``report("done", rate=...)``."""

    def __call__(self, event: str, **data: Any) -> None: ...


Stage = Callable[..., Coroutine[Any, Any, None]]


# --- broker -------------------------------------------------------------------------


def bench_settings(
    bootstrap_servers: str, *, fetch_max_wait_ms: int = 10, idempotence: bool = True
) -> KafkaSettings:
    """Settings for a benchmark run: the exchange defaults, with quick group joins
    (``idempotence`` off for the embedded broker, which has no idempotent producers)."""
    return KafkaSettings(
        bootstrap_servers=bootstrap_servers,
        fetch_max_wait_ms=fetch_max_wait_ms,
        session_timeout_ms=2000,
        heartbeat_interval_ms=300,
        idempotence=idempotence,
    )


# The benchmarks' own Apache Kafka (scripts/ensure-kafka.sh, no ACL plan): its run
# directory and ports, apart from the tests' brokers
BENCH_KAFKA = {
    "SGX_KAFKA_RUN": os.environ.get("SGX_BENCH_KAFKA_RUN", "/var/tmp/sgx-kafka-bench"),  # noqa: S108
    "SGX_KAFKA_PLAINTEXT_PORT": "19292",
    "SGX_KAFKA_SASL_SSL_PORT": "19293",
    "SGX_KAFKA_CONTROLLER_PORT": "19294",
    "SGX_KAFKA_PLAN": "0",
}


async def apache_kafka() -> tuple[str, int]:
    """(bootstrap, pid) of the benchmarks' Apache Kafka, started if need be and emptied of
    every topic (each run starts from an empty broker, as with an embedded one)."""
    found = await asyncio.to_thread(ensure_local_kafka, BENCH_KAFKA)
    bootstrap = found["KAFKA_PLAINTEXT"]
    pid = int((Path(BENCH_KAFKA["SGX_KAFKA_RUN"]) / "kafka.pid").read_text())
    await delete_every_topic(bootstrap)
    return bootstrap, pid


def broker_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """``--bootstrap`` (an existing cluster) and ``--broker`` (which one to start)."""
    parser.add_argument("--bootstrap", default=None, help="use this cluster, not an embedded one")
    parser.add_argument(
        "--broker",
        choices=["tansu", "kafka"],
        default="tansu",
        help="without --bootstrap: the embedded Tansu, or Apache Kafka (scripts/ensure-kafka.sh)",
    )
    return parser


@asynccontextmanager
async def bench_broker(
    bootstrap_servers: str | None = None, *, fetch_max_wait_ms: int = 10, broker: str = "tansu"
) -> AsyncIterator[KafkaSettings]:
    """Settings for an existing cluster, for the benchmarks' Apache Kafka (``broker``
    ``kafka``: its CPU is measured too), or for an embedded broker started for the run."""
    global _broker_pid
    if bootstrap_servers:
        yield bench_settings(bootstrap_servers, fetch_max_wait_ms=fetch_max_wait_ms)
        return
    if broker == "kafka":
        bootstrap, _broker_pid = await apache_kafka()
        try:
            yield bench_settings(bootstrap, fetch_max_wait_ms=fetch_max_wait_ms)
        finally:
            _broker_pid = None
        return
    global _embedded
    with tempfile.TemporaryDirectory(prefix="sgx-bench-") as log_dir:
        async with EmbeddedBroker(Path(log_dir)) as embedded:
            _broker_pid, _embedded = embedded.pid, True
            try:
                yield bench_settings(
                    embedded.bootstrap_servers,
                    fetch_max_wait_ms=fetch_max_wait_ms,
                    idempotence=False,
                )
            finally:
                _broker_pid, _embedded = None, False


_broker_pid: int | None = None
_embedded = False  # the run's broker is an embedded Tansu that bench_broker started


@asynccontextmanager
async def phase_broker(settings: KafkaSettings) -> AsyncIterator[KafkaSettings]:
    """The broker one phase of the exchange runs on: in a run on the embedded Tansu, a
    fresh one of its own (its CPU is the phase's broker CPU); otherwise the run's.

    Tansu 0.6.0 loses a consumer group whose members leave together (sgx/kafka/groups.py):
    the two-gateway phase's instances stop at once, and the next phase's gateway, in the
    same group ``sgx-gateway``, then never got its assignment (issue 23: three of fourteen
    runs of benchmarks.run hung). A fresh broker per phase also gives every phase fresh
    topics, groups and offsets, as on an emptied Apache Kafka.
    """
    global _broker_pid
    if not _embedded:
        yield settings
        return
    run_pid = _broker_pid
    with tempfile.TemporaryDirectory(prefix="sgx-bench-phase-") as log_dir:
        async with EmbeddedBroker(Path(log_dir)) as embedded:
            _broker_pid = embedded.pid
            try:
                yield settings.model_copy(update={"bootstrap_servers": embedded.bootstrap_servers})
            finally:
                _broker_pid = run_pid


def broker_cpu_used(since: float | None) -> float | None:
    """Broker CPU seconds used since a :func:`broker_cpu_s` reading."""
    now = broker_cpu_s()
    return None if now is None or since is None else now - since


def broker_cpu_s() -> float | None:
    """CPU seconds the embedded broker has used so far (None for an external cluster)."""
    return None if _broker_pid is None else process_cpu_s(_broker_pid)


def process_cpu_s(pid: int) -> float:
    """CPU seconds process ``pid`` (all its threads) has used so far, from ``/proc``."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def host_cpu_s() -> float:
    """CPU seconds every process of the machine has used so far (``/proc/stat``)."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(f) for f in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def cpu_per_message(
    done: dict[str, Any],
    count: int,
    ready: dict[str, Any] | None = None,
    broker_s: float | None = None,
) -> dict[str, float]:
    """Each stage's CPU time per message in µs, from start-up (imports, group join) excluded.

    A stage's CPU is counted from its ``cpu_start_s`` (a stage that reports no "ready"
    passes it in its done report) or from its "ready" report, to its "done" report.
    """
    ready = ready or {}
    per_message = {}
    for name, data in sorted(done.items()):
        start = data.get("cpu_start_s", ready.get(name, {}).get("cpu_s", 0.0))
        per_message[name] = round((data["cpu_s"] - start) / count * 1e6, 1)
    if broker_s is not None:
        per_message["broker"] = round(broker_s / count * 1e6, 1)
    per_message["total"] = round(sum(per_message.values()), 1)
    return per_message


# --- payloads and pacing ------------------------------------------------------------


def stamp(seq: int, size: int) -> bytes:
    """A ``size``-byte value carrying ``seq`` and the current time."""
    head = STAMP.pack(seq, time.time_ns())
    return head + bytes(max(0, size - len(head)))


def read_stamp(value: bytes) -> tuple[int, int]:
    """The (sequence number, sent at ns) a :func:`stamp` value carries."""
    seq, sent_ns = STAMP.unpack_from(value)
    return int(seq), int(sent_ns)


async def paced(rate: float, count: int) -> AsyncIterator[int]:
    """Yield how many messages are due now, keeping ``rate`` per second until ``count``."""
    loop = asyncio.get_running_loop()
    start, sent = loop.time(), 0
    while sent < count:
        due = min(count, int((loop.time() - start) * rate) + 1)
        if due > sent:
            yield due - sent
            sent = due
        else:
            await asyncio.sleep(start + sent / rate - loop.time())


# --- statistics and results ---------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) by nearest rank; NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


@dataclass
class Result:
    """One measured line of a benchmark run."""

    name: str
    messages: int
    seconds: float
    per_second: float
    p50_ms: float | None = None
    p99_ms: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def _cell(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def format_table(results: Iterable[Result]) -> str:
    """The results as an aligned text table."""
    header = ("benchmark", "messages", "seconds", "msg/s", "p50 ms", "p99 ms")
    rows = [header] + [
        (
            r.name,
            f"{r.messages:,}",
            _cell(r.seconds, 2),
            _cell(r.per_second, 0),
            _cell(r.p50_ms, 1),
            _cell(r.p99_ms, 1),
        )
        for r in results
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(
        zip(row, widths, strict=True))) for row in rows]  # fmt: skip
    return "\n".join(lines)


def environment() -> dict[str, Any]:
    """Where the numbers were measured."""
    return {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def to_json(results: Iterable[Result], settings: dict[str, Any]) -> str:
    """The results, the run's settings and the environment as JSON."""
    body = {
        "environment": environment(),
        "settings": settings,
        "results": [asdict(r) for r in results],
    }
    return json.dumps(body, indent=2)


def publish(results: Sequence[Result], settings: dict[str, Any], json_path: str | None) -> None:
    """Print the table; write the JSON to ``json_path`` (``-``: print it too)."""
    print(format_table(results))
    if json_path == "-":
        print(to_json(results, settings))
    elif json_path:
        Path(json_path).write_text(to_json(results, settings) + "\n", encoding="utf-8")


# --- child processes ----------------------------------------------------------------


def _run_stage(name: str, stage: Stage, args: tuple[Any, ...], reports: Queue[Any]) -> None:
    """Child process entry: run one stage on a fresh event loop, reporting any failure."""

    # a stage that does not report in time is asked where it is (Stages.expect): every
    # asyncio task's chain of awaits in a "where" report (SIGUSR2); if its loop does not
    # answer, every thread's stack to stderr (SIGUSR1)
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    profile_dir = os.environ.get(PROFILE_ENV)
    profiler = None
    if profile_dir:  # SGX_BENCH_PROFILE_CPU=1: the main thread's CPU time, not wall time
        cpu = os.environ.get(PROFILE_CPU_ENV) == "1"
        profiler = cProfile.Profile(time.thread_time) if cpu else cProfile.Profile()

    def report(event: str, **data: Any) -> None:
        data.setdefault("cpu_s", time.process_time())  # CPU used so far, whatever the load
        if event == "ready" and profiler is not None:  # profile what the CPU figures count
            profiler.disable()
            profiler.clear()
            profiler.enable()
        reports.put({"stage": name, "event": event, **data})

    try:
        if profiler is not None:
            profiler.enable()
        asyncio.run(_answering_where(stage(report, *args), report))
    except BaseException as exc:
        report("error", detail=f"{type(exc).__name__}: {exc}")
        raise
    finally:
        if profiler is not None and profile_dir:
            profiler.disable()
            Path(profile_dir).mkdir(parents=True, exist_ok=True)
            profiler.dump_stats(Path(profile_dir) / f"{name}-{os.getpid()}.prof")


async def _answering_where(running: Coroutine[Any, Any, None], report: Report) -> None:
    """Run a stage, answering SIGUSR2 with every task's chain of awaits (a "where"
    report: the parent prints it, whole, however busy the shared stderr is)."""

    def where() -> None:
        report("where", stacks=task_stacks())

    asyncio.get_running_loop().add_signal_handler(signal.SIGUSR2, where)
    await running


class StageFailed(RuntimeError):
    """A stage reported an error, died, or did not report in time."""


class Stages:
    """The child processes of one benchmark phase; an async context manager.

    On exit every child still running is terminated and all are joined.
    """

    def __init__(self) -> None:
        self._ctx = multiprocessing.get_context("spawn")
        self._reports: Queue[Any] = self._ctx.Queue()
        self._processes: dict[str, SpawnProcess] = {}

    def event(self) -> EventType:
        """An event a stage can wait on (pass it in the stage's arguments)."""
        return self._ctx.Event()

    def cpu_s(self, name: str) -> float:
        """CPU seconds stage ``name`` has used so far (read from ``/proc``)."""
        pid = self._processes[name].pid
        assert pid is not None
        return process_cpu_s(pid)

    def spawn(self, name: str, stage: Stage, *args: Any) -> None:
        """Start ``stage(report, *args)`` in a new process called ``name``."""
        process = self._ctx.Process(
            target=_run_stage, args=(name, stage, args, self._reports), name=name, daemon=True
        )
        process.start()
        self._processes[name] = process

    async def expect(self, event: str, names: Iterable[str], limit_s: float) -> dict[str, Any]:
        """Wait until each named stage reports ``event``; its data by stage name. A stage
        that has not within ``limit_s`` is a StageFailed naming it and what it last said
        (a stage waiting for something reports "waiting" with what it has and wants)."""
        waiting = set(names)
        got: dict[str, Any] = {}
        last: dict[str, dict[str, Any]] = {}
        loop = asyncio.get_running_loop()
        deadline = loop.time() + limit_s
        # each poll ends within REPORT_POLL_S; never cancelled, so no report is lost in a
        # poll's thread (a timeout cancelling one dropped the "where" answers it got)
        while waiting and loop.time() < deadline:
            message = await self._next_report()
            if message is None:
                continue
            self._check(message)
            last[message["stage"]] = message
            if message["event"] == event and message["stage"] in waiting:
                waiting.discard(message["stage"])
                got[message["stage"]] = message
        if waiting:
            silent = await self._dump_stacks(waiting)
            said = "; ".join(f"{name}: {_said(last.get(name))}" for name in sorted(waiting))
            blocked = (
                f"; no answer from {', '.join(silent)} in {WHERE_WAIT_S:g}s: its event loop is"
                " busy or blocked (its threads' stacks are printed above)"
                if silent
                else ""
            )
            raise StageFailed(
                f"no {event!r} within {limit_s:g}s from {', '.join(sorted(waiting))} ({said})"
                f"{blocked}"
            )
        return got

    async def _dump_stacks(self, names: Iterable[str]) -> list[str]:
        """Print where each named stage is (a stage that hangs): its tasks' chains of
        awaits, which it sends back in a "where" report (SIGUSR2, answered by its event
        loop); for a stage that does not answer in time (its loop blocked), its threads'
        stacks, which faulthandler writes itself (SIGUSR1). Returns those stages.

        Not both signals at once: faulthandler reading the main thread's frames from
        another thread while the main thread ran the SIGUSR2 handler crashed a gateway
        (SIGSEGV) in one of the runs that found issue 23's hang, and the phase then failed
        as "died with exit code -11" instead of saying which stage was not ready."""
        asked: dict[str, int] = {}
        for name in sorted(names):
            process = self._processes.get(name)
            if process is not None and process.pid is not None and process.exitcode is None:
                os.kill(process.pid, signal.SIGUSR2)
                asked[name] = process.pid
        loop = asyncio.get_running_loop()
        deadline = loop.time() + WHERE_WAIT_S
        while asked and loop.time() < deadline:
            message = await asyncio.to_thread(self._poll)  # a death now hides nothing
            if message is not None and message["event"] == "where":
                print(f"=== where stage {message['stage']} is", file=sys.stderr)
                print(message["stacks"], file=sys.stderr, flush=True)
                asked.pop(message["stage"], None)
        for pid in asked.values():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGUSR1)
        if asked:
            await asyncio.sleep(THREADS_DUMP_S)  # faulthandler writes to the shared stderr
        return sorted(asked)

    async def _next_report(self) -> dict[str, Any] | None:
        message = await asyncio.to_thread(self._poll)
        if message is None:
            self._check_alive()
        return message

    def _poll(self) -> dict[str, Any] | None:
        try:
            message: dict[str, Any] = self._reports.get(timeout=REPORT_POLL_S)
        except queue.Empty:
            return None
        return message

    @staticmethod
    def _check(message: dict[str, Any]) -> None:
        if message["event"] == "error":
            raise StageFailed(f"stage {message['stage']} failed: {message['detail']}")

    def _check_alive(self) -> None:
        for name, process in self._processes.items():
            if process.exitcode not in (None, 0):
                raise StageFailed(f"stage {name} died with exit code {process.exitcode}")

    async def __aenter__(self) -> Stages:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        await asyncio.to_thread(self._stop_all, 0 if exc_type else PROCESS_EXIT_S)

    def _stop_all(self, grace_s: float) -> None:
        """Give each child ``grace_s`` to exit on its own, then terminate it."""
        for process in self._processes.values():
            process.join(grace_s)
            if process.exitcode is None:
                process.terminate()
                process.join(PROCESS_EXIT_S)
        self._reports.close()
        self._reports.join_thread()


def _said(message: dict[str, Any] | None) -> str:
    """A stage's last report, in words."""
    if message is None:
        return "nothing since it started"
    detail = {k: v for k, v in message.items() if k not in ("stage", "event")}
    return f"{message['event']} {detail}" if detail else str(message["event"])
