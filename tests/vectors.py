"""Access to the public test vectors in ../shared/vectors (provenance in its README).

Tests that read them skip with a clear message when the folder is absent, except in CI
(``CI`` or ``CIVIC_REQUIRE_VECTORS`` set), where a missing folder is a failure.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

VECTORS_DIR = Path(
    os.environ.get(
        "CIVIC_VECTORS_DIR", Path(__file__).resolve().parents[1].parent / "shared" / "vectors"
    )
)


def vectors_path(*parts: str) -> Path:
    if not VECTORS_DIR.is_dir():
        message = f"public test vectors not found at {VECTORS_DIR} (set CIVIC_VECTORS_DIR)"
        if os.environ.get("CIVIC_REQUIRE_VECTORS") or os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return VECTORS_DIR.joinpath(*parts)


def load_json(*parts: str) -> Any:
    return json.loads(vectors_path(*parts).read_text(encoding="utf-8"))
