"""Picking up trust-directory changes while a service runs: no restart for a key change.

:class:`TrustWatcher` checks ``directory.json`` every ``interval_s`` (by size, mtime and
content hash) and at once on SIGHUP. When it changed and still loads, the service's
:class:`~sgx.keys.trust.TrustDirectory` and its own :class:`~sgx.keys.trust.Identity` are refreshed
in place (:meth:`TrustDirectory.refresh`), so openers see a revoked key as revoked and
sealers re-key to a rotated one with no restart; it logs what changed (keys added and
revoked, by key id) and counts the reload (``sgx_trust_reloads_total{outcome}``). A file
that no longer loads is not applied: the service goes on with the directory it has, logs
the error and counts ``outcome="failed"``; the next change is tried again.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import signal
import time
from collections.abc import AsyncIterator, Iterable, Iterator
from pathlib import Path

from sgx.errors import ExchangeError
from sgx.keys.identity import Identity
from sgx.keys.trust import DIRECTORY_FILE, TrustDirectory
from sgx.ops.metrics import TrustMetrics

log = logging.getLogger(__name__)
DEFAULT_INTERVAL_S = 5.0
_HANGUPS: set[asyncio.Event] = set()  # every watcher of this process wakes on SIGHUP


def _on_hangup() -> None:
    for event in _HANGUPS:
        event.set()


@contextlib.contextmanager
def _hangup(event: asyncio.Event) -> Iterator[None]:
    loop = asyncio.get_running_loop()
    first = not _HANGUPS
    _HANGUPS.add(event)
    try:
        if first:
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(signal.SIGHUP, _on_hangup)
        yield
    finally:
        _HANGUPS.discard(event)
        if not _HANGUPS:
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.remove_signal_handler(signal.SIGHUP)


def _stamp(path: Path) -> tuple[int, int, str] | None:
    try:
        stat = path.stat()
        return stat.st_size, stat.st_mtime_ns, hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def _keys(trust: TrustDirectory) -> dict[str, bool]:
    return {k.kid: k.revoked for p in trust.parties() for k in p.keys}


class TrustWatcher:
    def __init__(
        self,
        trust_dir: Path,
        trust: TrustDirectory,
        identities: Iterable[Identity],
        metrics: TrustMetrics,
        *,
        interval_s: float = DEFAULT_INTERVAL_S,
    ) -> None:
        self._dir = trust_dir
        self._trust = trust
        self._identities = list(identities)
        self._metrics = metrics
        self._interval = interval_s
        self._seen = _stamp(trust_dir / DIRECTORY_FILE)
        self._wake = asyncio.Event()
        metrics.loaded.set(time.time())

    def check(self) -> bool:
        """Reload now if the file changed; True if a new directory was applied."""
        stamp = _stamp(self._dir / DIRECTORY_FILE)
        if stamp is None or stamp == self._seen:
            return False
        self._seen = stamp
        try:
            newer = TrustDirectory.load(self._dir)
            before = _keys(self._trust)
            self._trust.refresh(newer)
            for identity in self._identities:
                identity.refresh(self._dir, self._trust)
        except ExchangeError as exc:
            log.error("trust directory %s changed but was not applied: %s", self._dir, exc)
            self._metrics.reloads.labels(outcome="failed").inc()
            return False
        after = _keys(self._trust)
        added = sorted(set(after) - set(before))
        revoked = sorted(k for k, gone in after.items() if gone and not before.get(k, False))
        log.info(
            "trust directory reloaded: %d parties; keys added: %s; keys revoked: %s",
            len(self._trust.parties()),
            ", ".join(added) or "none",
            ", ".join(revoked) or "none",
        )
        self._metrics.reloads.labels(outcome="ok").inc()
        self._metrics.loaded.set(time.time())
        return True

    async def run(self, stop: asyncio.Event) -> None:
        """Check every interval, and at once when woken (SIGHUP, see :func:`watching`),
        until ``stop``."""
        while not stop.is_set():
            self.check()
            self._wake.clear()
            waiting = {asyncio.create_task(stop.wait()), asyncio.create_task(self._wake.wait())}
            _, pending = await asyncio.wait(
                waiting, timeout=self._interval, return_when=asyncio.FIRST_COMPLETED
            )
            for task in pending:
                task.cancel()


@contextlib.asynccontextmanager
async def watching(watcher: TrustWatcher) -> AsyncIterator[None]:
    """Run ``watcher`` in the background while in the block; SIGHUP wakes it (the handler
    is in place before the block starts)."""
    stop = asyncio.Event()
    with _hangup(watcher._wake):
        task = asyncio.create_task(watcher.run(stop))
        try:
            yield
        finally:
            stop.set()
            await task
