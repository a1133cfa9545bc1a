"""Reports how many fuzz examples ran (tests/fuzz/harness.py counts them)."""

from __future__ import annotations

import pytest

from tests.fuzz.harness import EXAMPLES, EXAMPLES_PER_TARGET, EXPLORING


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not EXAMPLES:
        return
    mode = "exploring" if EXPLORING else "CI, derandomized"
    terminalreporter.write_sep("-", "civic fuzz")
    terminalreporter.write_line(
        f"{sum(EXAMPLES.values())} examples over {len(EXAMPLES)} parser targets "
        f"({EXAMPLES_PER_TARGET} per target, {mode})"
    )
