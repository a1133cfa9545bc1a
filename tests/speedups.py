"""Which decoders a test runs: the pure-Python references, or the C accelerator civic._speedups.

The accelerator is optional (setup.py builds it where a C compiler exists; CIVIC_PURE_PYTHON=1
keeps it unloaded). Tests that need it skip with a clear message when it is not loaded, except
where ``CIVIC_REQUIRE_SPEEDUPS=1`` (CI), where its absence is a failure.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

import civic.encoding
import civic.sdjwt

IMPLEMENTATIONS = ("pure", "c")
REQUIRED = os.environ.get("CIVIC_REQUIRE_SPEEDUPS", "") not in ("", "0")
NOT_LOADED = (
    "civic._speedups is not loaded (not built for lack of a C compiler, or CIVIC_PURE_PYTHON=1)"
)


def loaded_speedups() -> Any:
    """The C module; without it the calling test skips, or fails where it is required."""
    if civic.encoding.speedups is None:
        if REQUIRED:
            pytest.fail(
                f"{NOT_LOADED}: CIVIC_REQUIRE_SPEEDUPS=1 requires it, so the extension was not "
                "built here (pip install -e . needs a C compiler and the Python headers)"
            )
        pytest.skip(NOT_LOADED)
    return civic.encoding.speedups


@contextmanager
def bound(implementation: str) -> Iterator[None]:
    """Bind civic.encoding's and civic.sdjwt's accelerated functions to one implementation.

    Module globals are what the callers look up at each call: ``json_loads_object``,
    ``parse_sd_jwt`` and ``process_disclosures`` then run on the chosen ones only (the
    ``*_py`` references call each other directly).
    """
    if implementation == "c":
        c = loaded_speedups()
        chosen = (c.b64url_decode, c.json_loads, c.parse_disclosures, c.resolve_disclosures)
    elif implementation == "pure":
        chosen = (
            civic.encoding.b64url_decode_py,
            civic.encoding.json_loads_py,
            civic.sdjwt.parse_disclosures_py,
            civic.sdjwt.resolve_disclosures_py,
        )
    else:
        raise ValueError(implementation)
    b64url_decode, json_loads, parse_disclosures, resolve_disclosures = chosen
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(civic.encoding, "b64url_decode", b64url_decode)
        patch.setattr(civic.encoding, "json_loads", json_loads)
        patch.setattr(civic.sdjwt, "_parse_disclosures", parse_disclosures)
        patch.setattr(civic.sdjwt, "_resolve_disclosures", resolve_disclosures)
        yield
