"""The sealers of one sender to many recipients, the least recently used dropped.

The gateway seals to every party it delivers or answers to: with 25,000 agencies a
:class:`~sgx.wire.envelope.Sealer` each (its data key, its AES-GCM context and the
encoded header fields: about 1.4 KB) would hold some 34 MB for ever, most of it for
agencies that sent once. :class:`Sealers` keeps the ``size`` most recently used; a
recipient dropped gets a new sealer, and so a new data key (one X25519 exchange and
one Ed25519 signature, about 150 µs), when next sealed to. Nothing a recipient reads
changes: every envelope names its data key, and a recipient's :class:`Opener` opens
one sealed under any data key signed by the sender.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

from sgx.errors import ConfigError
from sgx.keys.identity import Identity
from sgx.keys.trust import TrustDirectory
from sgx.wire.envelope import Sealer

DEFAULT_SEALERS = 4096


class Sealers:
    """A :class:`Sealer` from ``identity`` for each recipient, at most ``size`` kept
    (LRU). ``make`` builds one (default: ``Sealer(identity, trust, recipient)``)."""

    def __init__(
        self,
        identity: Identity,
        trust: TrustDirectory,
        *,
        size: int = DEFAULT_SEALERS,
        make: Callable[[str], Sealer] | None = None,
    ) -> None:
        if size < 1:
            raise ConfigError(f"a sealer cache must hold at least one sealer, got {size}")
        self._make = make or (lambda recipient: Sealer(identity, trust, recipient))
        self._size = size
        self._held: OrderedDict[str, Sealer] = OrderedDict()

    def __len__(self) -> int:
        return len(self._held)

    def __contains__(self, recipient: object) -> bool:
        return recipient in self._held

    def get(self, recipient: str) -> Sealer:
        """The sealer to ``recipient``: the one held (now the most recently used), or a
        new one, the least recently used dropped if the cache is full."""
        sealer = self._held.get(recipient)
        if sealer is not None:
            self._held.move_to_end(recipient)
            return sealer
        sealer = self._make(recipient)
        self._held[recipient] = sealer
        if len(self._held) > self._size:
            self._held.popitem(last=False)
        return sealer
