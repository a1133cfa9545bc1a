"""Reports how many fuzz examples ran (tests/fuzz/harness.py counts them)."""

from __future__ import annotations

import pytest

from tests.fuzz.harness import EXAMPLES, EXAMPLES_PER_TARGET, EXPLORING


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not EXAMPLES:
        return
    mode = "exploring" if EXPLORING else "CI, derandomized"
    parsers = {name: count for name, count in EXAMPLES.items() if not name.startswith("openapi ")}
    api = {name: count for name, count in EXAMPLES.items() if name.startswith("openapi ")}
    terminalreporter.write_sep("-", "civic fuzz")
    if parsers:
        terminalreporter.write_line(
            f"parsers: {sum(parsers.values())} examples over {len(parsers)} targets "
            f"(up to {EXAMPLES_PER_TARGET} each, {mode})"
        )
    if api:
        terminalreporter.write_line(
            f"OpenAPI: {sum(api.values())} requests over {len(api)} operations"
        )
        for name, count in sorted(api.items()):
            terminalreporter.write_line(f"  {name.removeprefix('openapi ')}: {count}")
