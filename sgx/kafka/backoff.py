"""Capped exponential backoff with "equal jitter" (half the delay fixed, half random), as
in the AWS Architecture Blog's "Exponential Backoff and Jitter".

A few lines of our own because every caller's wait must also end when the service is
stopped, or under its own time limit; none of the project's dependencies offers it, and
tenacity/stamina wrap a call rather than a loop like these. Used by the outbox relay,
the receipts listener and the gateway's claim of its audit chains.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass(slots=True)
class Backoff:
    """Capped exponential backoff with equal jitter; :meth:`reset` after a success."""

    initial: float = 0.2
    cap: float = 30.0
    factor: float = 2.0
    _failures: int = field(default=0, init=False)

    def next_delay(self) -> float:
        ceiling = min(self.cap, self.initial * self.factor ** min(self._failures, 64))
        self._failures += 1
        return ceiling / 2 + random.uniform(0, ceiling / 2)  # noqa: S311 (timing, not secrets)

    def reset(self) -> None:
        self._failures = 0
