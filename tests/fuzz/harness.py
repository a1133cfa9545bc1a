"""The fuzzing harness: one settings profile, an example counter, and the only-civic-errors rule.

CI mode (the default): a bounded, derandomized number of examples per target, so a failure in CI
reproduces on any machine. Exploration mode: ``CIVIC_FUZZ_EXAMPLES=5000`` runs that many
examples per target with fresh randomness (and the example database, so failures found are
replayed first next time).
"""

from __future__ import annotations

import functools
import os
from collections import Counter
from collections.abc import Callable
from typing import Any, TypeVar

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from civic.errors import MalformedError, VerificationError

_EXPLORE = os.environ.get("CIVIC_FUZZ_EXAMPLES", "").strip()
EXPLORING = bool(_EXPLORE)
EXAMPLES_PER_TARGET = int(_EXPLORE) if EXPLORING else 200

settings.register_profile(
    "civic-fuzz",
    max_examples=EXAMPLES_PER_TARGET,
    deadline=None,
    derandomize=not EXPLORING,
    print_blob=True,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.filter_too_much,
        HealthCheck.large_base_example,
    ],
)
FUZZ = settings.get_profile("civic-fuzz")

# Examples run per fuzz target in this process; the conftest prints the totals.
EXAMPLES: Counter[str] = Counter()

# The only exceptions a parser or verifier may raise on hostile input. UsageError is left out
# on purpose: it means the caller misused an API, and fuzzed data is not a caller.
EXPECTED = (MalformedError, VerificationError)

_T = TypeVar("_T")


def fuzz(*strategies: st.SearchStrategy[Any]) -> Callable[[Callable[..., None]], Any]:
    """``@given(*strategies)`` under the fuzz profile, counting the examples it runs."""

    def decorate(test: Callable[..., None]) -> Any:
        @functools.wraps(test)
        def counted(*args: Any, **kwargs: Any) -> None:
            EXAMPLES[test.__name__] += 1
            test(*args, **kwargs)

        return FUZZ(given(*strategies)(counted))

    return decorate


def civic_only(call: Callable[..., _T], *args: Any, **kwargs: Any) -> _T | None:
    """``call(*args, **kwargs)``; ``None`` if it refused the input with a civic error.

    Anything else (ValueError, KeyError, RecursionError, UnicodeError, zlib.error, ...)
    propagates and fails the test with the input that caused it.
    """
    try:
        return call(*args, **kwargs)
    except EXPECTED:
        return None
