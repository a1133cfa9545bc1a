"""Shared pytest configuration."""

from __future__ import annotations

from hypothesis import HealthCheck, settings

# Bounded, deterministic property tests: CI time is budgeted and failures must reproduce.
settings.register_profile(
    "civic",
    max_examples=200,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile("civic")
