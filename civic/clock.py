"""Injectable time and randomness.

Everything in the core whose result depends on the time or on random bytes takes a ``now`` (a
:data:`Clock`) or ``random`` (a :data:`RandomBytes`) argument defaulting to the system source,
so that tests pass fixed values instead of sleeping or patching :mod:`datetime`.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable

from civic.errors import ReasonCode, UsageError

Clock = Callable[[], int]
"""Returns the current time as whole seconds since the Unix epoch (JWT NumericDate)."""

RandomBytes = Callable[[int], bytes]
"""Returns ``n`` cryptographically random bytes."""


def system_clock() -> int:
    return int(time.time())


system_random: RandomBytes = secrets.token_bytes


class FixedClock:
    """A clock that only moves when told to. For tests and for replaying recorded data."""

    def __init__(self, at: int) -> None:
        self.at = at

    def __call__(self) -> int:
        return self.at

    def advance(self, seconds: int) -> None:
        self.at += seconds


def random_below(bound: int, random: RandomBytes = system_random) -> int:
    """A uniform integer in ``[0, bound)``, by rejection sampling (no modulo bias)."""
    if bound <= 0:
        raise UsageError(ReasonCode.MALFORMED_INPUT, "bound must be positive")
    nbytes = (bound.bit_length() + 7) // 8
    limit = (256**nbytes // bound) * bound
    while True:
        value = int.from_bytes(random(nbytes), "big")
        if value < limit:
            return value % bound
