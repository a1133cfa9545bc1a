"""Fixtures the core attack modules share."""

from __future__ import annotations

import pytest

from tests.security.forge import Scene


@pytest.fixture(scope="module")
def scene() -> Scene:
    """The city each core attack module forges against (one per module: attacks that spend a
    nonce must not see another module's spends)."""
    return Scene.create()
